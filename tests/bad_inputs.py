"""The bad inputs users actually produce, and the one-line answer each gets.

    uv run python -m tests.bad_inputs > docs/bad_inputs.md     # regenerate the table

Each case prepares a scratch folder, runs one command on it in-process, and records what the
command printed on stderr. tests/test_bad_inputs.py runs every case and checks the answer is one
line, exit code 2, no traceback, and that no file in the folder changed.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app.storage import Transitions

COLLECT = "app.data_collection"
TRAIN = "app.train_model"
PLAN = "app.plan_with_model"
AGENT = "app.agent"
EXPERIMENTS = "app.experiments"


def valid_transitions(n: int = 200) -> Transitions:
    rng = np.random.default_rng(0)
    episode = np.repeat(np.arange(n // 20), 20)
    terminated = np.zeros(n, bool)
    terminated[19::20] = True
    state = rng.normal(size=(n, 4)).astype(np.float32)
    return Transitions(
        state,
        rng.integers(0, 2, n),
        np.ones(n, np.float32),
        state + 0.01,
        terminated,
        np.zeros(n, bool),
        episode,
    )


def write_npz(root: Path, **changes) -> None:
    """data/transitions.npz with some arrays replaced (None drops one)."""
    data = valid_transitions()
    arrays = {name: getattr(data, name) for name in Transitions.SCHEMA}
    for name, value in changes.items():
        if value is None:
            arrays.pop(name)
        else:
            arrays[name] = value(arrays[name]) if callable(value) else value
    (root / "data").mkdir(exist_ok=True)
    np.savez(root / "data" / "transitions.npz", **arrays)


def write_bytes(relative: str, content: bytes) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)

    return setup


def good_npz_bytes() -> bytes:
    buffer = io.BytesIO()
    data = valid_transitions()
    np.savez(buffer, **{name: getattr(data, name) for name in Transitions.SCHEMA})
    return buffer.getvalue()


def write_checkpoint(root: Path, change: Callable[[dict], None] | None = None) -> None:
    from app.train_model import save_world_model
    from app.world_model import WorldModel, WorldModelConfig

    path = root / "checkpoints" / "world_model.pt"
    save_world_model(path, WorldModel(WorldModelConfig(hidden_size=16)), meta={})
    if change:
        payload = torch.load(path, weights_only=True)
        change(payload)
        torch.save(payload, path)


def other_state_size(payload: dict) -> None:
    from app.world_model import WorldModel, WorldModelConfig

    model = WorldModel(WorldModelConfig(state_dim=3, hidden_size=16))
    payload["state_dict"] = model.state_dict()
    payload["config"]["state_dim"] = 3


class NeedsUnpickling:
    pass


@dataclass
class Case:
    group: str
    what: str
    command: str
    args: tuple[str, ...] = ()
    setup: Callable[[Path], None] | None = None


CASES = [
    Case("npz", "missing", TRAIN),
    Case("npz", "empty file", TRAIN, setup=write_bytes("data/transitions.npz", b"")),
    Case(
        "npz",
        "truncated mid-file",
        TRAIN,
        setup=lambda root: write_bytes("data/transitions.npz", good_npz_bytes()[:3000])(root),
    ),
    Case(
        "npz",
        "not an npz (text)",
        TRAIN,
        setup=write_bytes("data/transitions.npz", b"state,action\n1,2\n"),
    ),
    Case(
        "npz",
        "a pickle, not an npz",
        TRAIN,
        setup=write_bytes("data/transitions.npz", pickle.dumps({"state": [1, 2]})),
    ),
    Case(
        "npz",
        "an object array (pickle payload)",
        TRAIN,
        setup=lambda root: write_npz(root, state=np.array([object()] * 200, dtype=object)),
    ),
    Case(
        "npz",
        "wrong keys (no terminated)",
        TRAIN,
        setup=lambda root: write_npz(root, terminated=None),
    ),
    Case(
        "npz",
        "wrong dtype (float actions)",
        TRAIN,
        setup=lambda root: write_npz(root, action=lambda a: a.astype(np.float32)),
    ),
    Case(
        "npz",
        "wrong shape (3 state dims)",
        TRAIN,
        setup=lambda root: write_npz(root, state=lambda a: a[:, :3]),
    ),
    Case(
        "npz",
        "rows disagree between arrays",
        TRAIN,
        setup=lambda root: write_npz(root, reward=lambda a: a[:-1]),
    ),
    Case(
        "npz",
        "NaN values",
        TRAIN,
        setup=lambda root: write_npz(root, next_state=lambda a: np.where(a > 1, np.nan, a)),
    ),
    Case(
        "npz", "inf values", TRAIN, setup=lambda root: write_npz(root, reward=lambda a: a * np.inf)
    ),
    Case(
        "npz",
        "zero transitions",
        TRAIN,
        setup=lambda root: write_npz(root, **{n: (lambda a: a[:0]) for n in Transitions.SCHEMA}),
    ),
    Case(
        "npz",
        "actions outside {0, 1}",
        TRAIN,
        setup=lambda root: write_npz(root, action=lambda a: a + 5),
    ),
    Case(
        "npz",
        "a single episode (nothing to validate on)",
        TRAIN,
        setup=lambda root: write_npz(root, episode=lambda a: a * 0),
    ),
    Case("checkpoint", "missing", PLAN),
    Case(
        "checkpoint",
        "truncated",
        PLAN,
        setup=lambda root: (
            write_checkpoint(root),
            (root / "checkpoints/world_model.pt").write_bytes(
                (root / "checkpoints/world_model.pt").read_bytes()[:500]
            ),
        ),
    ),
    Case(
        "checkpoint",
        "not a checkpoint (text)",
        PLAN,
        setup=write_bytes("checkpoints/world_model.pt", b"hello"),
    ),
    Case(
        "checkpoint",
        "another hidden size than its config says",
        PLAN,
        setup=lambda root: write_checkpoint(root, lambda p: p["config"].update(hidden_size=64)),
    ),
    Case(
        "checkpoint",
        "another architecture (missing layer)",
        PLAN,
        setup=lambda root: write_checkpoint(root, lambda p: p["state_dict"].pop("done_head.bias")),
    ),
    Case(
        "checkpoint",
        "another state size",
        PLAN,
        setup=lambda root: write_checkpoint(root, other_state_size),
    ),
    Case(
        "checkpoint",
        "needs full unpickling (arbitrary object)",
        PLAN,
        setup=lambda root: write_checkpoint(root, lambda p: p.update(meta=NeedsUnpickling())),
    ),
    Case(
        "checkpoint",
        "NaN weights",
        PLAN,
        setup=lambda root: write_checkpoint(
            root, lambda p: p["state_dict"]["state_head.weight"].fill_(float("nan"))
        ),
    ),
    Case(
        "checkpoint",
        "a Q-network file, not a world model",
        PLAN,
        setup=lambda root: write_checkpoint(root, lambda p: p.update(kind="q_network")),
    ),
    Case("cli", "negative size", COLLECT, ("--num-transitions", "-5")),
    Case("cli", "zero size", TRAIN, ("--batch-size", "0")),
    Case("cli", "not a number", TRAIN, ("--epochs", "many")),
    Case("cli", "horizon 0", PLAN, ("--horizon", "0")),
    Case("cli", "K < 0", AGENT, ("--planning-steps", "-1")),
    Case("cli", "epsilon above 1", COLLECT, ("--epsilon", "1.5")),
    Case("cli", "epsilon below 0", AGENT, ("--epsilon-end", "-0.1")),
    Case("cli", "Polyak weight 0", AGENT, ("--tau", "0")),
    Case("cli", "more terminal samples than a batch", AGENT, ("--terminal-samples", "65")),
    Case("cli", "negative screen interval", AGENT, ("--screen-interval", "-1")),
    Case("cli", "unknown device", TRAIN, ("--device", "tpu")),
    Case("cli", "cuda on a machine without it", TRAIN, ("--device", "cuda")),
    Case("cli", "unknown flag", PLAN, ("--horizn", "5")),
    Case("cli", "negative seed", COLLECT, ("--seed", "-1")),
    Case("cli", "unknown study", EXPERIMENTS, ("--studies", "k_swep")),
    Case("cli", "unknown sweep backend", EXPERIMENTS, ("--backend", "spark")),
    Case("cli", "rollout length 0", EXPERIMENTS, ("--rollout-lengths", "0", "5")),
    Case(
        "disk",
        "output folder not writable (a file is in the way)",
        COLLECT,
        ("--num-transitions", "50", "--output", "blocked/t.npz"),
        setup=write_bytes("blocked", b"a file, not a folder"),
    ),
]


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def run_case(case: Case, root: Path) -> tuple[int, str, dict, dict]:
    """Prepare `root`, run the command in-process there; (exit code, stderr, before, after)."""
    import importlib

    from app.common import cli

    if case.setup:
        case.setup(root)
    before = snapshot(root)
    module = importlib.import_module(case.command)
    previous = Path.cwd()
    err = io.StringIO()
    os.chdir(root)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            cli(module.main, module.Config, list(case.args))
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 0
    finally:
        os.chdir(previous)
    return code, err.getvalue(), before, snapshot(root)


def table() -> str:
    import tempfile

    rows = [
        "| input | what is wrong | command | answer (stderr, exit code 2) |",
        "| --- | --- | --- | --- |",
    ]
    for case in CASES:
        with tempfile.TemporaryDirectory() as folder:
            _, err, _, _ = run_case(case, Path(folder))
        shown = " ".join(case.args)
        command = f"`python -m {case.command}{' ' + shown if shown else ''}`"
        answer = err.strip().replace("|", "\\|").replace(folder, "<tmp>")
        rows.append(f"| {case.group} | {case.what} | {command} | {answer} |")
    return "\n".join(rows)


HEADER = """# Bad inputs and the answers they get

Generated by `uv run python -m tests.bad_inputs > docs/bad_inputs.md` from the cases that
tests/test_bad_inputs.py runs: each answer is one line on stderr, exit code 2, no traceback, and
no file in the folder changes.

"""


if __name__ == "__main__":
    print(HEADER + table())
