"""Shared fixtures: tiny data sets, and a helper that runs a `python -m app.*` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from app.common import ENV_ID
from app.data_collection import collect_transitions, random_policy
from app.storage import Transitions

REPO = Path(__file__).resolve().parents[1]


def run_module(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m <args>` in `cwd` (a scratch folder) with the repo importable."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
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
