"""Shared fixtures: tiny data sets, and helpers that run `python -m app.*` commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from app.common import ENV_ID
from app.data_collection import collect_transitions
from app.policies import random_policy
from app.storage import Transitions

REPO = Path(__file__).resolve().parents[1]


def _module_env() -> dict[str, str]:
    """This environment with the repo importable and one torch thread per child process."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def run_module(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m <args>` in `cwd` (a scratch folder) with the repo importable."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=_module_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_interruptible(module_and_args: list[str], cwd: Path) -> subprocess.Popen:
    """`python -m ...` in the background, with Ctrl-C (SIGINT) at its default action.

    A shell starts background jobs with SIGINT ignored and children inherit that, so without the
    reset these tests would fail whenever the suite itself runs in the background (`... &`).
    """
    return subprocess.Popen(
        [sys.executable, "-m", *module_and_args],
        cwd=cwd,
        env=_module_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def run_in_process(module: str, *args: str, cwd: Path, capsys) -> subprocess.CompletedProcess:
    """Like `run_module` but inside this interpreter (no 5 s torch import per call)."""
    import importlib

    from app.common import cli

    mod = importlib.import_module(module if module != "app" else "app.__main__")
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        if hasattr(mod, "Config"):
            cli(mod.main, mod.Config, list(args))
            code = 0
        else:  # app.practice: subcommands, its own parser
            code = mod.main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 0
    finally:
        os.chdir(previous)
    out = capsys.readouterr()
    return subprocess.CompletedProcess([module, *args], code, out.out, out.err)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A bad-input answer: non-zero exit, one line on stderr, no traceback, naming the fix."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="session")
def random_transitions() -> Transitions:
    """3,000 random-policy CartPole transitions (seed 0)."""
    with gym.make(ENV_ID) as env:
        return collect_transitions(env, random_policy(np.random.default_rng(0)), 3_000, seed=0)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
