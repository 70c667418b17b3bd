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
    time.sleep(5)  # the first epoch (lazy imports inside), then many tiny ones
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
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
    for name in ("training_curve", "trajectory_comparison", "compounding_error"):
        meta = json.loads(Image.open(tmp_path / "plots" / f"{name}.png").info["Description"])
        assert {"config", "versions", "git_commit"} <= set(meta)


def test_outputs_get_the_usual_file_mode(tmp_path: Path) -> None:
    """Atomic writes go through a private temporary file; the result must not stay private."""
    path = tmp_path / "out.json"
    save_json(path, {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
