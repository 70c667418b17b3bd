"""The grader validated: every plausible learner mistake in tests/mutations.py fails its check."""

from __future__ import annotations

import io

import pytest

from tests import mutations


def test_every_gap_has_at_least_three_mistakes_and_the_issue_examples_are_there() -> None:
    from app.practice import Workspace
    from tests.conftest import REPO

    gaps = {r.name for r in Workspace(REPO).regions()}
    per_gap = {gap: sum(m.gap == gap for m in mutations.MISTAKES) for gap in gaps}
    assert min(per_gap.values()) >= 3, per_gap
    assert len(mutations.MISTAKES) >= 36
    named = {m.what for m in mutations.MISTAKES}
    for example in (
        "skips the input normalisation",
        "de-normalises in the wrong order",
        "the state target is s', not the normalised change",
        "compares s_{t+1} with s_t (off by one)",
        "imagined transitions are never terminal",
        "stability counts the solving evaluation too",
    ):
        assert example in named, example


@pytest.mark.slow
def test_every_plausible_mistake_fails_its_check() -> None:
    out = io.StringIO()
    verdicts = mutations.run(mutations.MISTAKES, workers=2, out=out)
    missed = [f"{v.mistake.gap}: {v.mistake.what}" for v in verdicts if not v.caught]
    assert missed == [], out.getvalue()


def test_a_mistake_that_passes_is_reported_as_missed() -> None:
    """The suite can fail: a 'mistake' that changes nothing is not caught."""
    harmless = mutations.Mistake(
        "WorldModel.forward", "a comment", mutations.WM, "# (B, H)\n", "# (B, H) hidden\n"
    )
    (verdict,) = mutations.run([harmless], workers=1, out=io.StringIO())
    assert not verdict.caught and verdict.by == "nothing failed"
