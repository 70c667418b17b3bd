"""Every bad input in tests/bad_inputs.py gets one line, exit code 2, and leaves files alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.bad_inputs import CASES, HEADER, run_case, table
from tests.conftest import REPO


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.command} {c.group}: {c.what}")
def test_bad_input_gets_one_line(case, tmp_path: Path) -> None:
    if case.what == "cuda on a machine without it" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, err, before, after = run_case(case, tmp_path)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    fixes = ("uv run python -m", "--", "cannot write", "choose", "give the path", "pass the file")
    assert any(word in lines[0] for word in fixes), lines[0]  # it says what to do
    assert before == after  # nothing overwritten, nothing half-written left behind


def test_docs_table_is_current() -> None:
    doc = (REPO / "docs" / "bad_inputs.md").read_text()
    assert doc.strip() == (HEADER + table()).strip(), (
        "regenerate it: uv run python -m tests.bad_inputs > docs/bad_inputs.md"
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    position=st.integers(min_value=0),
    value=st.integers(min_value=0, max_value=255),
    cut=st.booleans(),
)
def test_mangled_npz_is_loaded_whole_or_refused(
    tmp_path: Path, position: int, value: int, cut: bool
) -> None:
    """Flip a byte (or cut the file) anywhere: the loader returns checked data or a UserError."""
    from app.common import UserError
    from app.storage import load_transitions
    from tests.bad_inputs import good_npz_bytes

    content = bytearray(good_npz_bytes())
    position %= len(content)
    if cut:
        content = content[:position]
    else:
        content[position] = value
    path = tmp_path / "t.npz"
    path.write_bytes(bytes(content))
    try:
        data = load_transitions(path)
    except UserError:
        return
    assert data.state.shape[1] == 4 and len(data) == len(data.episode)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    flag=st.sampled_from(["--num-transitions", "--epsilon", "--seed", "--policy"]),
    value=st.one_of(
        st.integers(-(10**6), 0).map(str),
        st.floats(allow_nan=True).map(str),
        st.text(alphabet="abc-.,e", min_size=1, max_size=6),
    ),
)
def test_nonsense_cli_values_never_crash(flag: str, value: str, tmp_path: Path) -> None:
    """Any value for a flag either runs (tiny budget) or is refused with one line."""
    from tests.bad_inputs import Case

    args = (
        (flag, value) if flag == "--num-transitions" else (flag, value, "--num-transitions", "20")
    )
    code, err, _, _ = run_case(Case("app.data_collection", "cli", "fuzz", args), tmp_path)
    assert code in (0, 2), err
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
