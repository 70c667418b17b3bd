"""Practice mode: exact generation, stubs that point at the right TODO, and no lost learner work."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from app import practice
from app.common import UserError
from app.practice import Workspace, parse_regions, replace_bodies, to_exercise
from tests.conftest import REPO, run_module, start_interruptible

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
    "argv",
    [
        ["bogus"],
        ["answer", "x"],
        ["check", "9"],
        ["check", "no_such_gap"],
        ["check", "2", "--timeout", "0"],
        ["reveal", "no_such_function"],
        ["reset", "app/no_such_file.py"],
    ],
)
def test_practice_bad_input_is_one_line(argv: list[str], tmp_path: Path, capsys) -> None:
    shutil.copytree(REPO / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    assert practice.main(argv, root=tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


# ----------------------------------------------------------------------------- the grader itself


def test_check_shows_progress_test_by_test_and_grades_one_gap(tmp_path: Path) -> None:
    copy_project(tmp_path)
    result = run_module("app.practice", "check", "forward", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Checking WorldModel.forward (phase 2): WorldModel.forward"
    progress = [line for line in lines if re.match(r"\s+\[\s*\d+/\d+\] ok ", line)]
    assert len(progress) >= 4  # one line per test, as each one finishes
    assert not any("compute_loss_hand" in line for line in progress)  # only tests of forward
    state = json.loads((tmp_path / ".practice" / "state.json").read_text())
    assert state == {"passed": []}  # a single gap does not pass its phase


def test_failure_screen_names_the_gap_expected_got_hints_and_reveal(tmp_path: Path) -> None:
    copy_project(tmp_path)
    path = tmp_path / "app/world_model.py"
    path.write_text(path.read_text().replace(", pos_weight=self.done_pos_weight\n", "\n", 1))
    result = run_module("app.practice", "check", "2", cwd=tmp_path)
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL  test_compute_loss_hand_computed" in out
    assert "in    WorldModel.compute_loss (app/world_model.py, phase 2)" in out
    assert "the done loss" in out and "expected 1.15525" in out and "got      0.693147" in out
    assert "HINT: F.binary_cross_entropy_with_logits(..., pos_weight=self.done_pos_weight)" in out
    assert "`uv run python -m app.practice reveal WorldModel.compute_loss`" in out
    assert "Traceback" not in out + result.stderr


def assert_one_line(result, *fragments: str) -> None:
    assert result.returncode not in (0, 1), (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_an_endless_loop_ends_in_one_line_naming_the_gap(tmp_path: Path) -> None:
    copy_project(tmp_path)
    path = tmp_path / "app/agent.py"
    original = path.read_text()
    looping = original.replace(
        "            for _ in range(cfg.real_updates):  # learn from real experience\n",
        "            while True:  # learn from real experience\n",
    )
    assert looping != original
    path.write_text(looping)
    result = run_module("app.practice", "check", "train_dyna_agent", "--timeout", "4", cwd=tmp_path)
    assert_one_line(result, "did not finish within 4 s", "endless loop in train_dyna_agent")
    assert path.read_text() == looping  # the learner's code is untouched


@pytest.mark.parametrize(
    ("stop", "code", "said"),
    [(signal.SIGINT, 130, "interrupted (Ctrl-C)"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
)
def test_ctrl_c_or_sigterm_stops_a_check_at_once(tmp_path: Path, stop, code, said) -> None:
    copy_project(tmp_path)
    process = start_interruptible(["app.practice", "check", "5"], tmp_path)
    assert process.stdout.readline().startswith("Checking Phase 5")
    time.sleep(3)  # inside the tests
    started = time.perf_counter()
    process.send_signal(stop)
    out, err = process.communicate(timeout=30)
    assert process.returncode == code and time.perf_counter() - started < 5, (out, err)
    assert err.strip().splitlines()[-1].startswith(said)


def test_a_syntax_error_names_file_line_and_gap(tmp_path: Path, capsys) -> None:
    copy_project(tmp_path)
    path = tmp_path / "app/plan_with_model.py"
    text = path.read_text()
    path.write_text(
        text.replace("    for t in range(horizon):\n", "    for t in range(horizon)\n", 1)
    )
    assert practice.main(["check", "4"], root=tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"error: app/plan_with_model.py:\d+: ", err[0]), err
    assert "in your imagine_rollout, phase 4" in err[0]


def test_a_deleted_module_is_named_and_reset_brings_it_back(tmp_path: Path, capsys) -> None:
    ws = Workspace(copy_project(tmp_path))
    practice.start(ws)
    learner_edits(ws)  # work in another file, which must survive
    (tmp_path / "app/agent.py").unlink()
    for argv in (["check", "5"], ["status"]):
        assert practice.main(argv, root=tmp_path) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "app/agent.py is missing" in err[0], err
        assert "reset app/agent.py" in err[0]
    assert practice.main(["reset", "app/agent.py"], root=tmp_path) == 0
    assert "Restored the missing app/agent.py" in capsys.readouterr().out
    assert (tmp_path / "app/agent.py").read_text() == (REPO / "app/agent.py").read_text()
    assert f"{EDIT} A" in (tmp_path / "app/plan_with_model.py").read_text()  # untouched


@pytest.mark.parametrize("content", ["", "{not json", '{"passed": "2"}', "[1, 2]"])
def test_a_damaged_state_file_is_one_line_and_loses_nothing(
    tmp_path: Path, capsys, content
) -> None:
    ws = Workspace(copy_project(tmp_path))
    practice.start(ws)
    learner_edits(ws)
    before = (tmp_path / "app/plan_with_model.py").read_text()
    (tmp_path / ".practice" / "state.json").write_text(content)
    for argv in (["status"], ["check", "2"], ["answer", "2"]):
        assert practice.main(argv, root=tmp_path) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "state.json is damaged" in err[0] and "rm .practice" in err[0]
    assert (tmp_path / "app/plan_with_model.py").read_text() == before


def test_state_is_written_atomically(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    ws.save_state({"passed": [2, 3]})
    assert ws.load_state() == {"passed": [2, 3]}
    assert [p.name for p in (tmp_path / ".practice").iterdir()] == ["state.json"]  # no temp left


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (("# ### END SOLUTION", "# ## END SOLUTION"), "malformed solution marker"),
        (("# ### END SOLUTION\n", ""), "has no END SOLUTION line"),
        (("# ### BEGIN SOLUTION (phase 2: WorldModel.forward)", "# BEGIN SOLUTION"), "malformed"),
    ],
)
def test_a_damaged_marker_names_the_line_and_the_repair(tmp_path: Path, capsys, damage, says):
    ws = Workspace(copy_project(tmp_path))
    practice.start(ws)
    path = tmp_path / "app/world_model.py"
    path.write_text(path.read_text().replace(*damage, 1))
    damaged = path.read_text()
    assert practice.main(["check", "2"], root=tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"error: app/world_model.py:\d+: ", err[0]), err
    assert says in err[0] and "reset app/world_model.py" in err[0]
    assert path.read_text() == damaged
    assert practice.main(["reset", "app/world_model.py"], root=tmp_path) == 0  # the repair works
    assert any(p.read_text() == damaged for p in (tmp_path / ".practice").rglob("world_model.py"))
