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
import zipfile
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
    command: str
    group: str  # what kind of input: cli, npz, checkpoint, q-network, size, disk
    what: str
    args: tuple[str, ...] = ()
    setup: Callable[[Path], None] | None = None


def crafted_npz(fake_rows: int, in_extra_key: bool = False) -> Callable[[Path], None]:
    """A small, valid-looking npz whose header declares `fake_rows` rows: in a schema array, or in
    an extra array the loader does not need."""

    def setup(root: Path) -> None:
        data = valid_transitions(40)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for name in Transitions.SCHEMA:
                array = getattr(data, name)
                member = io.BytesIO()
                shape = array.shape
                if name == "state" and not in_extra_key:
                    shape = (fake_rows, *array.shape[1:])
                np.lib.format.write_array_header_1_0(
                    member, {"descr": np.lib.format.dtype_to_descr(array.dtype),
                             "fortran_order": False, "shape": shape}
                )  # fmt: skip
                archive.writestr(f"{name}.npy", member.getvalue() + array.tobytes())
            if in_extra_key:
                member = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    member, {"descr": "<f8", "fortran_order": False, "shape": (fake_rows, 4)}
                )
                archive.writestr("extra.npy", member.getvalue() + b"\0" * 64)
        (root / "data").mkdir(exist_ok=True)
        (root / "data" / "transitions.npz").write_bytes(buffer.getvalue())

    return setup


def write_q_network(root: Path, change: Callable[[dict], None] | None = None) -> None:
    from app.policies import q_network, save_q_network

    path = root / "checkpoints" / "dqn.pt"
    save_q_network(path, q_network(8).state_dict(), 8, meta={})
    if change:
        payload = torch.load(path, weights_only=True)
        change(payload)
        torch.save(payload, path)


def fifo(relative: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(root / relative)

    return setup


def folder(relative: str) -> Callable[[Path], None]:
    return lambda root: (root / relative).mkdir(parents=True)


def trained_pipeline(root: Path) -> None:
    """A tiny data file and world model, as the first phases would leave them."""
    (root / "data").mkdir(exist_ok=True)
    write_npz(root)
    write_checkpoint(root)


TINY_AGENT = (
    "--seeds 0 --min-steps 200 --max-steps 200 --learning-starts 100 --eval-interval 200 "
    "--eval-episodes 1 --model-initial-epochs 1 --hidden-size 8 --model-hidden-size 8 "
    "--workers 1"
).split()
TINY_TRAIN = ("--epochs", "1", "--hidden-size", "8")
BENCH = "app.benchmark"


CASES = [
    # ------------------------------------------------------------------ app.data_collection
    Case(COLLECT, "cli", "negative size", ("--num-transitions", "-5")),
    Case(COLLECT, "cli", "epsilon above 1", ("--epsilon", "1.5")),
    Case(COLLECT, "cli", "epsilon not a number (nan)", ("--epsilon", "nan")),
    Case(COLLECT, "cli", "negative seed", ("--seed", "-1")),
    Case(COLLECT, "cli", "seed beyond 2^32 - 1", ("--seed", "4294967296")),
    Case(COLLECT, "size", "a trillion transitions (terabytes)", ("--num-transitions", str(10**12))),
    Case(COLLECT, "disk", "output folder not writable (a file is in the way)",
         ("--num-transitions", "50", "--output", "blocked/t.npz"),
         setup=write_bytes("blocked", b"a file, not a folder")),  # fmt: skip
    Case(COLLECT, "disk", "output path is an existing folder", ("--output", "data"),
         setup=folder("data")),  # fmt: skip
    Case(COLLECT, "disk", "empty output path", ("--output", "")),
    Case(COLLECT, "q-network", "missing, for --policy epsilon_greedy",
         ("--policy", "epsilon_greedy", "--num-transitions", "50")),  # fmt: skip
    Case(COLLECT, "q-network", "of another width than its config says",
         ("--policy", "epsilon_greedy", "--num-transitions", "50"),
         setup=lambda root: write_q_network(root, lambda p: p["config"].update(hidden_size=16))),  # fmt: skip
    Case(COLLECT, "q-network", "without its config",
         ("--policy", "epsilon_greedy", "--num-transitions", "50"),
         setup=lambda root: write_q_network(root, lambda p: p.pop("config"))),  # fmt: skip
    Case(COLLECT, "q-network", "a world-model file instead",
         ("--policy", "epsilon_greedy", "--num-transitions", "50", "--q-network",
          "checkpoints/world_model.pt"), setup=lambda root: write_checkpoint(root)),  # fmt: skip
    Case(COLLECT, "q-network", "NaN weights", ("--policy", "epsilon_greedy", "--num-transitions", "50"),
         setup=lambda root: write_q_network(root, lambda p: p["state_dict"]["0.weight"].fill_(float("nan")))),  # fmt: skip
    Case(COLLECT, "q-network", "truncated", ("--policy", "epsilon_greedy", "--num-transitions", "50"),
         setup=lambda root: (write_q_network(root), (root / "checkpoints/dqn.pt").write_bytes(
             (root / "checkpoints/dqn.pt").read_bytes()[:400]))),  # fmt: skip
    Case(COLLECT, "q-network", "a width of 0 in its config",
         ("--policy", "epsilon_greedy", "--num-transitions", "50"),
         setup=lambda root: write_q_network(root, lambda p: p["config"].update(hidden_size=0))),  # fmt: skip
    Case(COLLECT, "q-network", "needs full unpickling (arbitrary object)",
         ("--policy", "epsilon_greedy", "--num-transitions", "50"),
         setup=lambda root: write_q_network(root, lambda p: p.update(meta=NeedsUnpickling()))),  # fmt: skip
    Case(COLLECT, "cli", "unknown policy", ("--policy", "clever")),
    Case(COLLECT, "q-network", "a folder", ("--policy", "epsilon_greedy", "--q-network", "checkpoints"),
         setup=folder("checkpoints")),  # fmt: skip
    # ------------------------------------------------------------------ app.train_model
    Case(TRAIN, "npz", "missing"),
    Case(TRAIN, "npz", "empty file", setup=write_bytes("data/transitions.npz", b"")),
    Case(TRAIN, "npz", "truncated mid-file",
         setup=lambda root: write_bytes("data/transitions.npz", good_npz_bytes()[:3000])(root)),  # fmt: skip
    Case(TRAIN, "npz", "not an npz (text)",
         setup=write_bytes("data/transitions.npz", b"state,action\n1,2\n")),  # fmt: skip
    Case(TRAIN, "npz", "a pickle, not an npz",
         setup=write_bytes("data/transitions.npz", pickle.dumps({"state": [1, 2]}))),  # fmt: skip
    Case(TRAIN, "npz", "an object array (pickle payload)",
         setup=lambda root: write_npz(root, state=np.array([object()] * 200, dtype=object))),  # fmt: skip
    Case(TRAIN, "npz", "wrong keys (no terminated)",
         setup=lambda root: write_npz(root, terminated=None)),  # fmt: skip
    Case(TRAIN, "npz", "wrong dtype (float actions)",
         setup=lambda root: write_npz(root, action=lambda a: a.astype(np.float32))),  # fmt: skip
    Case(TRAIN, "npz", "wrong shape (3 state dims)",
         setup=lambda root: write_npz(root, state=lambda a: a[:, :3])),  # fmt: skip
    Case(TRAIN, "npz", "rows disagree between arrays",
         setup=lambda root: write_npz(root, reward=lambda a: a[:-1])),  # fmt: skip
    Case(TRAIN, "npz", "NaN values",
         setup=lambda root: write_npz(root, next_state=lambda a: np.where(a > 1, np.nan, a))),  # fmt: skip
    Case(TRAIN, "npz", "inf values", setup=lambda root: write_npz(root, reward=lambda a: a * np.inf)),
    Case(TRAIN, "npz", "zero transitions",
         setup=lambda root: write_npz(root, **{n: (lambda a: a[:0]) for n in Transitions.SCHEMA})),  # fmt: skip
    Case(TRAIN, "npz", "actions outside {0, 1}",
         setup=lambda root: write_npz(root, action=lambda a: a + 5)),  # fmt: skip
    Case(TRAIN, "npz", "a single episode (nothing to validate on)",
         setup=lambda root: write_npz(root, episode=lambda a: a * 0)),  # fmt: skip
    Case(TRAIN, "npz", "a 600-byte file whose header declares 10^12 rows",
         setup=crafted_npz(10**12)),  # fmt: skip
    Case(TRAIN, "npz", "a header that declares more rows than the file holds",
         setup=crafted_npz(41)),  # fmt: skip
    Case(TRAIN, "npz", "the data path is a folder", ("--data", "data"), setup=folder("data")),
    Case(TRAIN, "npz", "the data path is a pipe (FIFO)", setup=fifo("data/transitions.npz")),
    Case(TRAIN, "npz", "the data path is a device (/dev/zero)", ("--data", "/dev/zero")),
    Case(TRAIN, "cli", "zero size", ("--batch-size", "0")),
    Case(TRAIN, "cli", "not a number", ("--epochs", "many")),
    Case(TRAIN, "cli", "unknown device", ("--device", "tpu")),
    Case(TRAIN, "cli", "cuda on a machine without it", ("--device", "cuda")),
    Case(TRAIN, "cli", "learning rate inf", ("--lr", "inf")),
    Case(TRAIN, "cli", "learning rate nan", ("--lr", "nan")),
    Case(TRAIN, "cli", "weight decay -inf", ("--weight-decay=-inf",)),
    Case(TRAIN, "cli", "done-loss weight nan", ("--done-loss-weight", "nan")),
    Case(TRAIN, "cli", "negative done-loss weight", ("--done-loss-weight", "-1")),
    Case(TRAIN, "cli", "zero epochs", ("--epochs", "0")),
    Case(TRAIN, "cli", "zero hidden layers", ("--num-layers", "0")),
    Case(TRAIN, "cli", "validation share 0", ("--val-fraction", "0")),
    Case(TRAIN, "cli", "validation share 1", ("--val-fraction", "1")),
    Case(TRAIN, "cli", "validation share that leaves nothing to train on",
         ("--val-fraction", "0.99", *TINY_TRAIN), setup=lambda root: write_npz(root)),  # fmt: skip
    Case(TRAIN, "cli", "a learning rate that makes the loss diverge", ("--lr", "1e30", *TINY_TRAIN),
         setup=lambda root: write_npz(root)),  # fmt: skip
    Case(TRAIN, "size", "a million hidden units (terabytes)", ("--hidden-size", "1000000")),
    Case(TRAIN, "disk", "checkpoint path is a folder", ("--checkpoint", "checkpoints"),
         setup=lambda root: (write_npz(root), folder("checkpoints")(root))),  # fmt: skip
    Case(TRAIN, "disk", "empty plot path", ("--plot", ""), setup=lambda root: write_npz(root)),
    Case(TRAIN, "disk", "plot folder is a file", ("--plot", "blocked/curve.png"),
         setup=lambda root: (write_npz(root), write_bytes("blocked", b"x")(root))),  # fmt: skip
    # ------------------------------------------------------------------ app.plan_with_model
    Case(PLAN, "checkpoint", "missing"),
    Case(PLAN, "checkpoint", "truncated",
         setup=lambda root: (
             write_checkpoint(root),
             (root / "checkpoints/world_model.pt").write_bytes(
                 (root / "checkpoints/world_model.pt").read_bytes()[:500]
             ),
         )),  # fmt: skip
    Case(PLAN, "checkpoint", "not a checkpoint (text)",
         setup=write_bytes("checkpoints/world_model.pt", b"hello")),  # fmt: skip
    Case(PLAN, "checkpoint", "another hidden size than its config says",
         setup=lambda root: write_checkpoint(root, lambda p: p["config"].update(hidden_size=64))),  # fmt: skip
    Case(PLAN, "checkpoint", "another architecture (missing layer)",
         setup=lambda root: write_checkpoint(root, lambda p: p["state_dict"].pop("done_head.bias"))),  # fmt: skip
    Case(PLAN, "checkpoint", "another state size",
         setup=lambda root: write_checkpoint(root, other_state_size)),  # fmt: skip
    Case(PLAN, "checkpoint", "needs full unpickling (arbitrary object)",
         setup=lambda root: write_checkpoint(root, lambda p: p.update(meta=NeedsUnpickling()))),  # fmt: skip
    Case(PLAN, "checkpoint", "NaN weights",
         setup=lambda root: write_checkpoint(
             root, lambda p: p["state_dict"]["state_head.weight"].fill_(float("nan"))
         )),  # fmt: skip
    Case(PLAN, "checkpoint", "a Q-network file, not a world model",
         setup=lambda root: write_checkpoint(root, lambda p: p.update(kind="q_network"))),  # fmt: skip
    Case(PLAN, "checkpoint", "without a state_dict",
         setup=lambda root: write_checkpoint(root, lambda p: p.pop("state_dict"))),  # fmt: skip
    Case(PLAN, "checkpoint", "a state_dict that is a list, not a dict",
         setup=lambda root: write_checkpoint(root, lambda p: p.update(state_dict=[1, 2]))),  # fmt: skip
    Case(PLAN, "checkpoint", "without its config",
         setup=lambda root: write_checkpoint(root, lambda p: p.pop("config"))),  # fmt: skip
    Case(PLAN, "checkpoint", "a config whose hidden size is text",
         setup=lambda root: write_checkpoint(root, lambda p: p["config"].update(hidden_size="16"))),  # fmt: skip
    Case(PLAN, "checkpoint", "the checkpoint path is a folder", ("--checkpoint", "checkpoints"),
         setup=folder("checkpoints")),  # fmt: skip
    Case(PLAN, "checkpoint", "a config that is a list",
         setup=lambda root: write_checkpoint(root, lambda p: p.update(config=[16, 3]))),  # fmt: skip
    Case(PLAN, "checkpoint", "a config without its state size",
         setup=lambda root: write_checkpoint(root, lambda p: p["config"].pop("state_dim"))),  # fmt: skip
    Case(PLAN, "cli", "horizon 0", ("--horizon", "0")),
    Case(PLAN, "cli", "unknown policy", ("--policy", "clever")),
    Case(PLAN, "cli", "no episode to plot", ("--num-plotted", "0")),
    Case(PLAN, "cli", "epsilon above 1", ("--epsilon", "2")),
    Case(PLAN, "cli", "unknown flag", ("--horizn", "5")),
    Case(PLAN, "cli", "error threshold inf", ("--error-threshold", "inf")),
    Case(PLAN, "cli", "epsilon nan", ("--epsilon", "nan")),
    Case(PLAN, "size", "a billion episodes of a million steps",
         ("--num-episodes", str(10**9), "--horizon", str(10**6))),  # fmt: skip
    Case(PLAN, "disk", "the plots folder is a file", ("--plots-dir", "blocked"),
         setup=lambda root: (trained_pipeline(root), write_bytes("blocked", b"x")(root))),  # fmt: skip
    # ------------------------------------------------------------------ app.agent
    Case(AGENT, "cli", "K < 0", ("--planning-steps", "-1")),
    Case(AGENT, "cli", "epsilon below 0", ("--epsilon-end", "-0.1")),
    Case(AGENT, "cli", "Polyak weight 0", ("--tau", "0")),
    Case(AGENT, "cli", "more terminal samples than a batch", ("--terminal-samples", "65")),
    Case(AGENT, "cli", "negative screen interval", ("--screen-interval", "-1")),
    Case(AGENT, "cli", "learning rate inf", ("--lr", "inf")),
    Case(AGENT, "cli", "zero batch size", ("--batch-size", "0")),
    Case(AGENT, "cli", "zero buffer", ("--buffer-size", "0")),
    Case(AGENT, "cli", "rollout length 0", ("--rollout-length", "0")),
    Case(AGENT, "cli", "value expansion < 0", ("--value-expansion", "-1")),
    Case(AGENT, "cli", "no evaluation episodes", ("--eval-episodes", "0")),
    Case(AGENT, "cli", "evaluation interval 0", ("--eval-interval", "0")),
    Case(AGENT, "cli", "negative steps after the solve", ("--steps-after-solve", "-1")),
    Case(AGENT, "cli", "zero-step screening episodes", ("--screen-horizon", "0")),
    Case(AGENT, "cli", "an ensemble of 0 models", ("--ensemble-size", "0")),
    Case(AGENT, "cli", "warm start of an ensemble", ("--warm-start", "--ensemble-size", "3")),
    Case(AGENT, "cli", "unknown TD loss", ("--q-loss", "l1")),
    Case(AGENT, "cli", "unknown device", ("--device", "tpu")),
    Case(AGENT, "cli", "discount nan", ("--gamma", "nan")),
    Case(AGENT, "cli", "disagreement cut nan", ("--max-disagreement", "nan")),
    Case(AGENT, "cli", "a seed beyond 2^32 - 1", ("--seeds", "0", "4294967296")),
    Case(AGENT, "cli", "fewer max steps than min steps", ("--max-steps", "100", "--min-steps", "200")),
    Case(AGENT, "cli", "warm start from a missing world model", ("--warm-start", *TINY_AGENT)),
    Case(AGENT, "cli", "a learning rate that makes the Q-network diverge",
         ("--lr", "1e30", "--planning-steps", "0", *TINY_AGENT)),  # fmt: skip
    Case(AGENT, "size", "a million hidden units", ("--hidden-size", "1000000")),
    Case(AGENT, "size", "a world model of a million units", ("--model-hidden-size", "1000000")),
    Case(AGENT, "disk", "results path is a folder", ("--results", "results"), setup=folder("results")),
    Case(AGENT, "disk", "empty plot path", ("--plot", "")),
    Case(AGENT, "disk", "Q-network path in a file, not a folder",
         ("--q-checkpoint", "blocked/dqn.pt"), setup=write_bytes("blocked", b"x")),  # fmt: skip
    # ------------------------------------------------------------------ app.experiments
    Case(EXPERIMENTS, "cli", "unknown study", ("--studies", "k_swep")),
    Case(EXPERIMENTS, "cli", "unknown sweep backend", ("--backend", "spark")),
    Case(EXPERIMENTS, "cli", "rollout length 0", ("--rollout-lengths", "0", "5")),
    Case(EXPERIMENTS, "cli", "disagreement cut nan", ("--max-disagreement", "nan")),
    Case(EXPERIMENTS, "cli", "error threshold inf", ("--error-threshold", "inf")),
    Case(EXPERIMENTS, "cli", "zero workers", ("--workers", "0")),
    Case(EXPERIMENTS, "cli", "negative K in the sweep", ("--k-values", "0", "-1")),
    Case(EXPERIMENTS, "cli", "a negative seed", ("--seeds", "0", "-3")),
    Case(EXPERIMENTS, "cli", "warm-up data longer than the run",
         ("--exploitation-data", "5000", "--exploitation-steps", "3000")),  # fmt: skip
    Case(EXPERIMENTS, "cli", "zero steps per run", ("--steps", "0")),
    Case(EXPERIMENTS, "cli", "no probe start states", ("--probe-starts", "0")),
    Case(EXPERIMENTS, "size", "a world model of a million units",
         ("--model-hidden-size", "1000000")),  # fmt: skip
    Case(EXPERIMENTS, "disk", "results folder is a file", ("--results-dir", "blocked"),
         setup=write_bytes("blocked", b"x")),  # fmt: skip
    Case(EXPERIMENTS, "disk", "a plot path is a folder", ("--studies", "k_sweep", "--seeds", "0"),
         setup=folder("plots/k_sweep.png")),  # fmt: skip
    # ------------------------------------------------------------------ app.benchmark
    Case(BENCH, "cli", "unknown arm", ("--arms", "ppo")),
    Case(BENCH, "cli", "unknown TD loss", ("--q-loss", "l1")),
    Case(BENCH, "cli", "unknown seed set", ("--seed-set", "validation")),
    Case(BENCH, "cli", "zero max steps", ("--max-steps", "0")),
    Case(BENCH, "cli", "zero workers", ("--workers", "0")),
    Case(BENCH, "cli", "a negative seed", ("--seeds", "-1")),
    Case(BENCH, "cli", "infinite max steps", ("--max-steps", "inf")),
    Case(BENCH, "disk", "output folder is a file", ("--output-dir", "blocked", "--arms", "dqn"),
         setup=write_bytes("blocked", b"x")),  # fmt: skip
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
    """The cases and their answers, one section per command."""
    import tempfile

    sections = []
    for command in dict.fromkeys(case.command for case in CASES):
        rows = [
            f"## `python -m {command}`",
            "",
            "| input | what is wrong | command line | answer (stderr, exit code 2) |",
            "| --- | --- | --- | --- |",
        ]
        for case in [c for c in CASES if c.command == command]:
            with tempfile.TemporaryDirectory() as scratch:
                _, err, _, _ = run_case(case, Path(scratch))
            shown = " ".join(arg if arg else "''" for arg in case.args)
            line = f"`python -m {case.command}{' ' + shown if shown else ''}`"
            answer = err.strip().replace("|", "\\|").replace(scratch, "<tmp>")
            rows.append(f"| {case.group} | {case.what} | {line} | {answer} |")
        sections.append("\n".join(rows))
    return f"{len(CASES)} cases.\n\n" + "\n\n".join(sections)


HEADER = """# Bad inputs and the answers they get

Generated by `uv run python -m tests.bad_inputs > docs/bad_inputs.md` from the cases that
tests/test_bad_inputs.py runs: each answer is one line on stderr, exit code 2, no traceback, and
no file in the folder changes.

"""


if __name__ == "__main__":
    print(HEADER + table())
