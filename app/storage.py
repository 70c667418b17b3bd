"""Files on disk, in one place: atomic writes, the transitions schema, checkpoints, JSON metrics.

Every writer goes through `atomic_path`: the bytes land in a temporary file beside the target and
are renamed over it only once complete, so a crash or Ctrl-C mid-save leaves the previous file
intact. Every reader checks what it loads and raises a `UserError` naming the command that
(re)makes the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import platform
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from app.common import COLLECT_COMMAND, DATA_PATH, STATE_DIM, UserError


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, else delete it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise UserError(
            f"cannot write to {path.parent}/ ({error.strerror}): "
            "choose a writable folder or fix its permissions"
        ) from None
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode of a new file
        os.replace(tmp, path)
        # A writer killed mid-save (SIGKILL, power loss) leaves its temporary file behind.
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def require_file(path: Path, command: str) -> Path:
    """`path` if it is a file, else a `UserError` naming the `command` that makes it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: run `{command}` first")
    return path


# ----------------------------------------------------------------------------- provenance


def run_metadata(config: Any) -> dict[str, Any]:
    """What produced an output: config, package versions, git commit, machine."""
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or None
        )
    except OSError:
        commit = None
    versions = {}
    for package in ("torch", "gymnasium", "numpy", "matplotlib"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "config": {k: _plain(v) for k, v in dataclasses.asdict(config).items()},
        "versions": {"python": platform.python_version(), **versions},
        "git_commit": commit,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def save_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")


# ----------------------------------------------------------------------------- transitions (.npz)


@dataclasses.dataclass
class Transitions:
    """N real transitions, one row each. Dtypes and shapes are fixed by `SCHEMA`.

    `terminated` is the MDP's own end (pole fell, cart left the track): the only done target.
    `truncated` is the 500-step time limit: the episode stops but the state is not terminal, so it
    is kept apart and never used as a done target or to cut a TD target.
    """

    state: np.ndarray  # (N, S) float32
    action: np.ndarray  # (N,) int64
    reward: np.ndarray  # (N,) float32
    next_state: np.ndarray  # (N, S) float32
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    episode: np.ndarray  # (N,) int64, episode index within the file

    SCHEMA = {
        "state": (np.float32, (STATE_DIM,)),
        "action": (np.int64, ()),
        "reward": (np.float32, ()),
        "next_state": (np.float32, (STATE_DIM,)),
        "terminated": (np.bool_, ()),
        "truncated": (np.bool_, ()),
        "episode": (np.int64, ()),
    }

    def __len__(self) -> int:
        return len(self.action)

    def subset(self, rows: np.ndarray) -> Transitions:
        return Transitions(**{name: getattr(self, name)[rows] for name in self.SCHEMA})

    def summary(self) -> dict[str, float]:
        ends = self.terminated | self.truncated
        episodes = len(np.unique(self.episode))
        return {
            "transitions": len(self),
            "episodes": episodes,
            "mean_episode_length": len(self) / max(episodes, 1),
            "done_rate": float(self.terminated.mean()),
            "truncated": int(self.truncated.sum()),
            "complete_episodes": int(ends.sum()),
        }


def save_transitions(path: Path, data: Transitions, meta: dict[str, Any]) -> None:
    """Write named arrays with fixed dtypes plus a JSON `meta` string (no pickles)."""
    arrays = {name: getattr(data, name).astype(dtype) for name, (dtype, _) in data.SCHEMA.items()}
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_transitions(path: Path = DATA_PATH) -> Transitions:
    """Load and check an npz of transitions; any problem is one `UserError` naming the fix."""
    path = require_file(path, COLLECT_COMMAND)
    redo = f"re-create it with `{COLLECT_COMMAND}`"
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    # zipfile answers a damaged header with NotImplementedError (a "compression method") or
    # RuntimeError (an "encrypted" flag): both mean the file is damaged, not that code is missing.
    except (
        zipfile.BadZipFile,
        OSError,
        EOFError,
        ValueError,
        KeyError,
        NotImplementedError,
        RuntimeError,
    ) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "pickle" in reason:
            reason = "not an npz archive; pickled data are never loaded"
        raise UserError(f"{path} is not a readable .npz file ({reason}): {redo}") from None

    missing = [name for name in Transitions.SCHEMA if name not in arrays]
    if missing:
        raise UserError(f"{path} lacks the arrays {', '.join(missing)}: {redo}")
    rows = len(arrays["action"])
    if rows == 0:
        raise UserError(f"{path} holds zero transitions: {redo}")
    for name, (dtype, row_shape) in Transitions.SCHEMA.items():
        array = arrays[name]
        if array.dtype != dtype or array.shape != (rows, *row_shape):
            raise UserError(
                f"{path}: array {name!r} is {array.dtype}{list(array.shape)}, expected "
                f"{np.dtype(dtype)}{[rows, *row_shape]}: {redo}"
            )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise UserError(f"{path}: array {name!r} holds NaN or inf values: {redo}")
    if not np.isin(arrays["action"], np.arange(2)).all():
        raise UserError(f"{path}: actions must be 0 or 1: {redo}")
    return Transitions(**{name: arrays[name] for name in Transitions.SCHEMA})


# ----------------------------------------------------------------------------- checkpoints (.pt)


def save_checkpoint(path: Path, kind: str, state_dict: dict, config: dict, **extra: Any) -> None:
    """A checkpoint is plain data: `state_dict` plus the config needed to rebuild the module."""
    import torch  # imported here so that npz-only users of this module stay light

    payload = {"kind": kind, "state_dict": state_dict, "config": config, **extra}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_checkpoint(
    path: Path, kind: str, command: str, config_keys: dict[str, type] | None = None
) -> dict[str, Any]:
    """Load with `weights_only=True` (never unpickle code) and check it is a `kind` checkpoint:
    a `state_dict` of finite tensors and a `config` dict holding `config_keys` with their types.

    `command` is the one that (re)makes the file; every error message names it.
    """
    import torch

    path = require_file(path, command)
    redo = f"re-create it with `{command}`"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        if "Weights only load failed" in str(error):
            reason = "it holds objects that need full unpickling, which is never done"
        else:
            reason = "truncated, or not a PyTorch file"
        raise UserError(f"{path} is not a readable checkpoint ({reason}): {redo}") from None
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        found = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
        raise UserError(f"{path} is a {found!r} file, expected a {kind!r} checkpoint: {redo}")
    state_dict = payload.get("state_dict")
    if not isinstance(state_dict, dict) or not all(
        isinstance(name, str) and isinstance(tensor, torch.Tensor)
        for name, tensor in state_dict.items()
    ):
        raise UserError(f"{path} holds no state_dict of named tensors: {redo}")
    config = payload.get("config")
    if not isinstance(config, dict):
        raise UserError(f"{path} lacks the config that rebuilds its network: {redo}")
    for key, expected in (config_keys or {}).items():
        value = config.get(key)
        allowed = (int, float) if expected is float else (expected,)  # 1 is a fine float
        if not isinstance(value, allowed) or (expected is not bool and isinstance(value, bool)):
            found = "missing" if key not in config else f"{type(value).__name__} {value!r}"
            raise UserError(
                f"{path}: config {key!r} is {found}, expected {expected.__name__}: {redo}"
            )
    for name, tensor in state_dict.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UserError(f"{path}: weight {name!r} holds NaN or inf values: {redo}")
    return payload
