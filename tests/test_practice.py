"""Practice mode: exact generation, stubs that point at the right TODO, and no lost learner work."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import pytest

from app import practice
from app.common import UserError
from app.practice import Workspace, parse_regions, replace_bodies, to_exercise
from tests.conftest import REPO, run_module

FILES = ["app/world_model.py", "app/train_model.py", "app/plan_with_model.py", "app/agent.py"]
EXPECTED_REGIONS = {
    2: {"WorldModel.__init__", "WorldModel.forward", "WorldModel.compute_loss"},
    3: {"train_epoch", "evaluate"},
    4: {"imagine_rollout", "evaluate_model_accuracy"},
    5: {
        "DQNAgent.select_action",
        "DQNAgent.td_target",
        "DQNAgent.train_on_batch",
        "_train_on_simulated_data",
        "train_dyna_agent",
    },
}


def copy_project(target: Path) -> Path:
    for folder in ("app", "tests", "docs"):
        shutil.copytree(
            REPO / folder, target / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy2(REPO / "pyproject.toml", target / "pyproject.toml")
    return target


# ----------------------------------------------------------------------------- generation


def test_regions_are_the_ones_the_learner_implements() -> None:
    found: dict[int, set[str]] = {}
    for file in FILES:
        for region in parse_regions((REPO / file).read_text(), file):
            found.setdefault(region.phase, set()).add(region.name)
            assert any(h.startswith("# TODO") for h in region.hints), region.name
            assert any(h.startswith("# HINT") for h in region.hints), region.name
    assert found == EXPECTED_REGIONS
    assert not parse_regions((REPO / "app/data_collection.py").read_text(), "dc")


@pytest.mark.parametrize("file", FILES)
def test_generation_is_deterministic_and_exact(file: str) -> None:
    reference = (REPO / file).read_text()
    exercise = to_exercise(reference, file)
    assert exercise == to_exercise(reference, file)
    assert exercise != reference
    solutions = {
        r.name: reference.splitlines(keepends=True)[r.begin + 1 : r.end]
        for r in parse_regions(reference, file)
    }
    assert replace_bodies(exercise, file, solutions) == reference  # byte-identical round trip
    for region in parse_regions(exercise, file):  # markers, TODO and HINT lines stay visible
        assert practice.is_open(exercise, region)
    compile(exercise, file, "exec")  # the exercise version is valid Python


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("# ### BEGIN SOLUTION (phase 2: a)\n# ### BEGIN SOLUTION (phase 2: b)\n", "cannot nest"),
        ("x = 1\n    # ### BEGIN SOLUTION (phase 2: a)\n", "never closed"),
        ("# ### END SOLUTION\n", "without a BEGIN"),
        ("# ### BEGIN SOLUTION phase 2\n", "malformed"),
    ],
)
def test_broken_markers_are_errors(text: str, problem: str) -> None:
    with pytest.raises(UserError, match=problem):
        parse_regions(text, "f.py")


def test_start_then_reset_is_byte_identical(tmp_path: Path) -> None:
    ws = Workspace(copy_project(tmp_path))
    before = {file: (tmp_path / file).read_bytes() for file in FILES}
    practice.start(ws)
    assert all((tmp_path / file).read_bytes() != before[file] for file in FILES)
    assert "NotImplementedError" in (tmp_path / "app/world_model.py").read_text()
    practice.reset(ws)
    assert {file: (tmp_path / file).read_bytes() for file in FILES} == before
    assert not (tmp_path / ".practice" / "backups").exists()  # nothing of the learner's to keep


# ----------------------------------------------------------------------------- no lost work

EDIT = "# LEARNER EDIT"


def learner_edits(ws: Workspace) -> None:
    """Write an attempt into an open region and a note outside any region."""
    path = ws.root / "app/plan_with_model.py"
    text = path.read_text()
    text = text.replace(
        'raise NotImplementedError("Phase 4: imagine_rollout — see TODO above")',
        f"{EDIT} A\n    raise ValueError('my attempt')",
    )
    path.write_text(text + f"\n{EDIT} B\n")


def edit_survives(ws: Workspace) -> bool:
    places = [
        ws.root / "app/plan_with_model.py",
        *(ws.root / ".practice" / "backups").glob("*/app/plan_with_model.py"),
    ]
    texts = [p.read_text() for p in places if p.is_file()]
    return any(f"{EDIT} A" in t and f"{EDIT} B" in t for t in texts)


COMMANDS = {
    "start": lambda ws: practice.start(ws),
    "start --force": lambda ws: practice.start(ws, force=True),
    "reveal imagine_rollout": lambda ws: practice.reveal(ws, "imagine_rollout"),
    "reveal forward": lambda ws: practice.reveal(ws, "forward"),
    "reset": lambda ws: practice.reset(ws),
}


@pytest.mark.parametrize(
    "sequence", list(itertools.permutations(COMMANDS, 3)), ids=lambda seq: " / ".join(seq)
)
def test_no_command_order_loses_learner_work(tmp_path: Path, sequence: tuple[str, ...]) -> None:
    for folder in ("app",):
        shutil.copytree(
            REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    ws = Workspace(tmp_path)
    practice.start(ws)
    learner_edits(ws)
    for command in sequence:
        try:
            COMMANDS[command](ws)
        except UserError as error:  # a refusal is fine; losing the edit is not
            assert command == "start" and "--force" in str(error)
        assert edit_survives(ws), f"learner edit lost after {command!r}"


def test_start_refuses_to_overwrite_learner_work(tmp_path: Path) -> None:
    shutil.copytree(REPO / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    ws = Workspace(tmp_path)
    practice.start(ws)
    learner_edits(ws)
    edited = (tmp_path / "app/plan_with_model.py").read_text()
    with pytest.raises(UserError, match="start --force"):
        practice.start(ws)
    assert (tmp_path / "app/plan_with_model.py").read_text() == edited


def test_reveal_keeps_attempt_and_fills_one_region(tmp_path: Path) -> None:
    shutil.copytree(REPO / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    ws = Workspace(tmp_path)
    practice.start(ws)
    learner_edits(ws)
    practice.reveal(ws, "imagine_rollout")
    text = (tmp_path / "app/plan_with_model.py").read_text()
    regions = {r.name: r for r in parse_regions(text, "app/plan_with_model.py")}
    assert not practice.is_open(text, regions["imagine_rollout"])
    assert practice.is_open(text, regions["evaluate_model_accuracy"])
    assert f"{EDIT} B" in text and f"{EDIT} A" not in text
    assert edit_survives(ws)


# ----------------------------------------------------------------------------- phase checks


def check(root: Path, phase: int) -> tuple[int, str]:
    result = run_module("app.practice", "check", str(phase), cwd=root, timeout=900)
    return result.returncode, result.stdout + result.stderr


def todo_names(output: str) -> set[str]:
    return set(re.findall(r"TODO  ([\w.]+) \(", output))


@pytest.mark.parametrize("phase", sorted(EXPECTED_REGIONS))
def test_phase_check_points_at_each_todo(tmp_path: Path, phase: int) -> None:
    """Earlier phases solved, this one stubbed: every failure is this phase's NotImplementedError.
    Then each region alone stubbed: exactly its tests fail, all of them at its own TODO."""
    ws = Workspace(copy_project(tmp_path))
    practice.start(ws)
    for earlier in [r for r in ws.regions() if r.phase < phase]:
        practice.reveal(ws, earlier.name)
    code, output = check(tmp_path, phase)
    assert code == 1 and "FAIL " not in output, output
    assert todo_names(output) <= EXPECTED_REGIONS[phase] and todo_names(output), output
    assert "Traceback" not in output

    for region in sorted(EXPECTED_REGIONS[phase]):
        others = EXPECTED_REGIONS[phase] - {region}
        for name in others:
            practice.reveal(ws, name)
        code, output = check(tmp_path, phase)
        assert code == 1 and todo_names(output) == {region}, (region, output)
        assert "FAIL " not in output, output
        practice.start(ws, force=True)
        for earlier in [r for r in ws.regions() if r.phase < phase]:
            practice.reveal(ws, earlier.name)

    for name in EXPECTED_REGIONS[phase]:
        practice.reveal(ws, name)
    code, output = check(tmp_path, phase)
    assert code == 0 and "all" in output and "Key question" in output, output


def test_answer_needs_a_passed_check(tmp_path: Path, capsys) -> None:
    ws = Workspace(copy_project(tmp_path))
    practice.start(ws)
    assert practice.main(["answer", "2"], root=tmp_path) == 2
    assert "check 2" in capsys.readouterr().err
    assert practice.main(["answer", "1"], root=tmp_path) == 0  # phase 1 has no check
    assert "tabular" in capsys.readouterr().out.lower()
    ws.save_state({"passed": [2]})
    assert practice.main(["answer", "2"], root=tmp_path) == 0
    assert "sigmoid" in capsys.readouterr().out


def test_every_phase_has_a_question() -> None:
    questions = practice.key_questions(Workspace(REPO))
    assert sorted(questions) == [1, 2, 3, 4, 5, 6]
    assert all(
        question.endswith("?") and len(answer) > 200 for question, answer in questions.values()
    )


def test_exercise_commands_name_the_todo(tmp_path: Path) -> None:
    ws = Workspace(copy_project(tmp_path))
    practice.start(ws)
    result = run_module("app.world_model", cwd=tmp_path)
    assert result.returncode == 1 and "TODO: Phase 2: WorldModel.__init__" in result.stdout
    collect = run_module("app.data_collection", "--num-transitions", "300", cwd=tmp_path)
    assert collect.returncode == 0, collect.stderr  # data collection stays fully implemented
    train = run_module("app.train_model", "--epochs", "1", cwd=tmp_path)
    assert train.returncode == 2 and "Traceback" not in train.stderr
    assert "Phase 2: WorldModel.__init__" in train.stderr


@pytest.mark.parametrize(
    "argv", [["bogus"], ["answer", "x"], ["check", "9"], ["reveal", "no_such_function"]]
)
def test_practice_bad_input_is_one_line(argv: list[str], tmp_path: Path, capsys) -> None:
    shutil.copytree(REPO / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    assert practice.main(argv, root=tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
