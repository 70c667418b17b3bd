"""Reliability: unwritable outputs, refused pickles, Ctrl-C, kills mid-save, reproducibility."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from app.common import UserError
from app.storage import (
    Transitions,
    load_checkpoint,
    load_transitions,
    processor_name,
    save_json,
    save_transitions,
)
from tests.conftest import (
    REPO,
    assert_one_line_error,
    run_in_process,
    run_module,
    start_interruptible,
)

KILL_ROUNDS = int(os.environ.get("KILL_ROUNDS", "200"))


def test_output_folder_not_writable(tmp_path: Path, capsys) -> None:
    (tmp_path / "data").write_text("a file where a folder should be")
    result = run_in_process(
        "app.data_collection",
        "--num-transitions",
        "50",
        "--output",
        "data/t.npz",
        cwd=tmp_path,
        capsys=capsys,
    )
    assert_one_line_error(result, "cannot write to data/")
    assert (tmp_path / "data").read_text() == "a file where a folder should be"


class Payload:
    """Any class: loading it needs full unpickling, which weights_only refuses."""


def test_checkpoint_needing_unpickling_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"kind": "world_model", "state_dict": {}, "config": Payload()}, path)
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(path, "world_model", "uv run python -m app.train_model")


def test_checkpoint_with_nan_weights_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nan.pt"
    torch.save(
        {"kind": "world_model", "state_dict": {"w": torch.tensor([float("nan")])}, "config": {}},
        path,
    )
    with pytest.raises(UserError, match="NaN or inf"):
        load_checkpoint(path, "world_model", "uv run python -m app.train_model")


def test_ctrl_c_during_training_keeps_finished_epochs(tmp_path: Path) -> None:
    assert (
        run_module("app.data_collection", "--num-transitions", "800", cwd=tmp_path).returncode == 0
    )
    process = start_interruptible(
        ["app.train_model", "--epochs", "100000", "--hidden-size", "16"], tmp_path
    )
    assert process.stdout.readline().startswith("Training on")  # past the imports and the data
    # Wait for a finished epoch, not for a fixed time: a progress line comes every ~10 s, and on a
    # slow or busy machine 5 s once held no finished epoch (nothing to keep, the test failed).
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("training: ") and not line.startswith("training: 0/"):
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    err = "".join(seen) + err
    assert process.returncode == 130, (out, err)
    assert "Traceback" not in err and "run `uv run python -m app.train_model` again" in err
    from app.train_model import load_world_model

    load_world_model(tmp_path / "checkpoints" / "world_model.pt")  # complete and loadable


def test_ctrl_c_while_starting_up_is_quiet(tmp_path: Path) -> None:
    """The imports take seconds; a Ctrl-C among them ends like any other: one line, exit 130."""
    process = start_interruptible(["app.train_model"], tmp_path)
    time.sleep(0.5)  # well inside `import torch`
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, (out, err)
    assert err.strip().splitlines() == [
        "interrupted (Ctrl-C) while starting up: nothing was written."
    ]
    assert not any(tmp_path.iterdir())


WRITER = """
import sys, numpy as np
from pathlib import Path
from app.storage import Transitions, save_transitions
n = int(sys.argv[2])
data = Transitions(np.zeros((n, 4), np.float32), np.zeros(n, np.int64), np.ones(n, np.float32),
                   np.zeros((n, 4), np.float32), np.zeros(n, bool), np.zeros(n, bool),
                   np.zeros(n, np.int64))
print("ready", flush=True)
i = 0
while True:
    data.state[:, 0] = i  # every complete file is uniform: a torn write would mix values
    save_transitions(Path(sys.argv[1]), data, {"i": i})
    i += 1
"""


def test_kill_during_save_never_corrupts(tmp_path: Path) -> None:
    """SIGKILL a writer at random moments; the file on disk must always load whole."""
    path = tmp_path / "t.npz"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rng = random.Random(0)
    corrupt = 0
    for _ in range(KILL_ROUNDS):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), "20000"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.05))
        writer.kill()
        writer.wait()
        if not path.exists():
            continue  # killed before the first save finished: nothing there yet is fine
        try:
            data = load_transitions(path)
            assert len(np.unique(data.state[:, 0])) == 1
        except (UserError, AssertionError):
            corrupt += 1
    save_transitions(path, load_transitions(path), {})  # the next good save sweeps up
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert corrupt == 0
    assert not leftovers
    print(f"{KILL_ROUNDS} kills, {corrupt} corrupt files, {len(leftovers)} stray temporary files")


def _run_twice(tmp_path: Path, *args: str) -> tuple[Path, Path]:
    roots = []
    for name in ("a", "b"):
        root = tmp_path / name
        root.mkdir()
        assert (
            run_module("app.data_collection", "--num-transitions", "700", cwd=root).returncode == 0
        )
        if args:
            result = run_module(*args, cwd=root)
            assert result.returncode == 0, result.stderr
        roots.append(root)
    return roots[0], roots[1]


def test_same_seed_bit_identical_across_processes(tmp_path: Path) -> None:
    a, b = _run_twice(tmp_path, "app.train_model", "--epochs", "3", "--hidden-size", "32")
    first, second = (
        load_transitions(a / "data/transitions.npz"),
        load_transitions(b / "data/transitions.npz"),
    )
    for name in Transitions.SCHEMA:
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    wa = torch.load(a / "checkpoints/world_model.pt", weights_only=True)["state_dict"]
    wb = torch.load(b / "checkpoints/world_model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    meta = torch.load(a / "checkpoints/world_model.pt", weights_only=True)["meta"]
    assert meta["config"]["seed"] == 0 and "torch" in meta["versions"] and "git_commit" in meta
    # identical on one machine only: another processor's arithmetic can move a run, so say which
    assert processor_name() in meta["machine"] and processor_name() != "processor unknown"


def test_agent_evaluation_returns_identical_across_processes(tmp_path: Path) -> None:
    args = (
        "app.agent --seeds 0 --planning-steps 2 --min-steps 400 --max-steps 400 "
        "--learning-starts 100 --eval-interval 200 --eval-episodes 2 --model-initial-epochs 2 "
        "--hidden-size 16 --model-hidden-size 16 --workers 1"
    ).split()
    results = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        run = run_module(*args, cwd=tmp_path / name)
        assert run.returncode == 0, run.stderr
        results.append(json.loads((tmp_path / name / "results/agent.json").read_text()))
    for arm in results[0]["runs"]:
        assert [r["eval_returns"] for r in results[0]["runs"][arm]] == [
            r["eval_returns"] for r in results[1]["runs"][arm]
        ]


def test_plots_record_what_made_them(tmp_path: Path) -> None:
    from PIL import Image

    assert run_module("app", "--quick", "--skip-agent", cwd=tmp_path).returncode == 0
    for name in ("training_curve", "trajectory_comparison", "compounding_error", "model_coverage"):
        png = tmp_path / "quick" / "plots" / f"{name}.png"
        meta = json.loads(Image.open(png).info["Description"])
        assert {"config", "versions", "git_commit"} <= set(meta)


def test_outputs_get_the_usual_file_mode(tmp_path: Path) -> None:
    """Atomic writes go through a private temporary file; the result must not stay private."""
    path = tmp_path / "out.json"
    save_json(path, {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


# ----------------------------------------------------------------------------- second round

CONCURRENT_WRITER = """
import sys, numpy as np
from pathlib import Path
from app.common import UserError
from app.storage import Transitions, save_transitions
who, n, rounds = int(sys.argv[2]), 3000, int(sys.argv[3])
data = Transitions(np.zeros((n, 4), np.float32), np.zeros(n, np.int64), np.ones(n, np.float32),
                   np.zeros((n, 4), np.float32), np.zeros(n, bool), np.zeros(n, bool),
                   np.zeros(n, np.int64))
failures = 0
for i in range(rounds):
    data.state[:, 0] = 1000 * who + i  # a complete file holds one writer's one version
    try:
        save_transitions(Path(sys.argv[1]), data, {"who": who, "i": i})
    except (UserError, OSError):
        failures += 1
print(failures)
"""


def test_two_writers_of_one_path_never_break_each_other(tmp_path: Path) -> None:
    """Two processes save the same file 200 times each: no save fails, the file is always one
    writer's complete version (the last to finish wins), and no temporary file is left."""
    path = tmp_path / "shared.npz"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_WRITER, str(path), str(who), str(KILL_ROUNDS)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in (1, 2)
    ]
    outputs = [writer.communicate(timeout=300) for writer in writers]
    assert [int(out.strip()) for out, _ in outputs] == [0, 0], outputs
    data = load_transitions(path)  # complete and loadable
    values = np.unique(data.state[:, 0])
    assert len(values) == 1 and values[0] in (1000 + KILL_ROUNDS - 1, 2000 + KILL_ROUNDS - 1)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_temporary_file_of_a_live_writer_is_left_alone(tmp_path: Path) -> None:
    """Another writer, still filling its temporary file, keeps it; a dead writer's is swept."""
    from app.storage import _HOST

    path = tmp_path / "out.json"
    live = tmp_path / f".out.json.{_HOST}-{os.getpid()}-abc.tmp"  # this process: alive
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout.strip()  # fmt: skip
    dead = tmp_path / f".out.json.{_HOST}-{dead_pid}-xyz.tmp"
    live.write_text("half")
    dead.write_text("half")
    save_json(path, {"a": 1})
    assert live.exists() and not dead.exists()


def test_sigterm_stops_experiments_workers_and_keeps_finished_runs(tmp_path: Path) -> None:
    """A SIGTERM (as `timeout` and batch schedulers send) to a sweep with running workers: no
    process of the run is left after 5 s, the finished runs are saved, one line, exit 143. (The
    progress lines a sweep writes every 10 s on a slow machine are not about the signal.)"""
    args = (
        "app.experiments --studies k_sweep --k-values 0 1 4 --seeds 0 1 --steps 1500 "
        "--model-hidden-size 16 --workers 2"
    ).split()
    process = start_interruptible(args, tmp_path)
    results = tmp_path / "results" / "experiments" / "k_sweep"
    deadline = time.monotonic() + 240
    while not list(results.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.5)  # until the first (cheapest) run is saved
    children = _children(process.pid)
    assert children, "the sweep should be running worker processes"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, (out, err)
    lines = [line for line in err.strip().splitlines() if not line.startswith("runs: ")]
    assert len(lines) == 1 and lines[0].startswith("terminated (SIGTERM): stopped after"), err
    time.sleep(5)
    assert [pid for pid in children if _alive(pid)] == []
    saved = list(results.glob("*.json"))
    assert saved and all(json.loads(path.read_text())["run"] for path in saved)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_while_training_keeps_finished_epochs(tmp_path: Path) -> None:
    assert (
        run_module("app.data_collection", "--num-transitions", "800", cwd=tmp_path).returncode == 0
    )
    checkpoint = tmp_path / "checkpoints" / "world_model.pt"
    for wait in (5, 20, 60):  # a loaded machine may not finish the first epoch in 5 s
        process = start_interruptible(
            ["app.train_model", "--epochs", "100000", "--hidden-size", "16"], tmp_path
        )
        assert process.stdout.readline().startswith("Training on")
        time.sleep(wait)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 143, (out, err)
        last = err.strip().splitlines()[-1]
        if not last.startswith("terminated (SIGTERM): nothing half-written"):
            break
        assert not checkpoint.exists()  # no finished epoch: nothing saved
    assert last.startswith("Terminated (SIGTERM) after"), last
    from app.train_model import load_world_model

    load_world_model(checkpoint)


def test_an_extra_array_with_a_huge_header_is_never_loaded(tmp_path: Path) -> None:
    from tests.bad_inputs import crafted_npz

    crafted_npz(10**12, in_extra_key=True)(tmp_path)
    data = load_transitions(tmp_path / "data" / "transitions.npz")  # no MemoryError
    assert len(data) == 40


def test_a_full_disk_at_write_time_replaces_nothing(tmp_path: Path, monkeypatch) -> None:
    """ENOSPC (or EPERM) when the finished file is put in place: one UserError that says the
    previous file is unchanged, and it is."""
    import errno

    path = tmp_path / "metrics.json"
    save_json(path, {"epoch": 1})

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(UserError, match="No space left on device.*nothing was replaced"):
        save_json(path, {"epoch": 2})
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_an_immutable_output_is_refused_before_the_work(tmp_path: Path, capsys) -> None:
    target = tmp_path / "data" / "transitions.npz"
    target.parent.mkdir()
    target.write_bytes(b"the user's file")
    if subprocess.run(["chattr", "+i", str(target)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        result = run_in_process("app.data_collection", cwd=tmp_path, capsys=capsys)
        assert_one_line_error(result, "cannot replace data/transitions.npz")
        assert target.read_bytes() == b"the user's file"
    finally:
        subprocess.run(["chattr", "-i", str(target)], check=False)


def test_json_is_strict(tmp_path: Path) -> None:
    """No NaN or Infinity in a written JSON file: an infinite setting reads "inf", a number that
    was not measured reads null."""
    path = tmp_path / "out.json"
    save_json(path, {"max_disagreement": float("inf"), "wrong_share": float("nan"), "a": 1.5})

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "max_disagreement": "inf",
        "wrong_share": None,
        "a": 1.5,
    }
