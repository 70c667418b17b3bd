"""Files on disk, in one place: atomic writes, the transitions schema, checkpoints, JSON metrics.

Every writer goes through `atomic_path`: the bytes land in a temporary file beside the target and
are renamed over it only once complete, so a crash, a kill or a full disk mid-save leaves the
previous file intact. Writers of the same path at the same time (a class sharing one results
folder) never disturb each other: each writes its own temporary file, and the last one to finish
wins: the file is always one writer's complete version, never a mix. Every reader checks what it
loads, before it allocates, and raises a `UserError` naming the command that (re)makes the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import platform
import re
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from app.common import COLLECT_COMMAND, DATA_PATH, STATE_DIM, UserError, require_memory

_HOST = re.sub(r"[^A-Za-z0-9]+", "-", platform.node())[:40] or "host"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, else delete it.

    The temporary name carries this machine's name and this process's id, so a later save can
    tell a file left by a writer that was killed (its process is gone: removed) from one that
    another writer is still filling (left alone). A failure to write (a full disk, a file that may
    not be replaced) is one `UserError` that says the previous file is unchanged.
    """
    path = Path(path)
    require_writable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{path.name}.{_HOST}-{os.getpid()}-"
        handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    except OSError as error:
        raise UserError(
            f"cannot write to {path.parent}/ ({error.strerror}): "
            "choose a writable folder or fix its permissions"
        ) from None
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
            with open(tmp, "rb+") as written:
                os.fsync(written.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600: the usual mode of a new file
            os.replace(tmp, path)
        except OSError as error:
            raise UserError(
                f"could not write {path} ({error.strerror or error}): nothing was replaced, the "
                f"previous {path.name} (if any) is as it was; free some space or fix the "
                "permissions, then run the command again"
            ) from None
        _sweep_abandoned(path)
    finally:
        tmp.unlink(missing_ok=True)


def _sweep_abandoned(path: Path) -> None:
    """Remove the temporary files of `path` that writers on this machine left when they were
    killed mid-save (SIGKILL, power loss): those whose process no longer exists."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.{re.escape(_HOST)}-(\d+)-[^.]*\.tmp$")
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        found = pattern.match(stale.name)
        if found and not _alive(int(found[1])):
            stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import, before any thread could create a file meanwhile


def require_file(path: Path, command: str) -> Path:
    """`path` if it is a regular file, else a `UserError` naming the `command` that makes it."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a file: pass the file that `{command}` writes")
    if path.exists() and not path.is_file():
        raise UserError(
            f"{path} is not a regular file (a pipe or a device?): pass the file that "
            f"`{command}` writes"
        )
    if not path.is_file():
        raise UserError(f"{path} not found: run `{command}` first")
    return path


def require_writable(*paths: Path) -> None:
    """Check, before any work, that each path can be written as a file: not a folder, in a folder
    that exists or can be made and that is writable, and not a file that may not be replaced."""
    for path in paths:
        _require_writable(Path(path))


def _require_writable(path: Path) -> None:
    if str(path) in ("", ".") or path.is_dir():
        raise UserError(f"{path} is a folder: give the path of a file to write")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"cannot write to {path.parent}/ ({folder} is a file, not a folder): "
                        "choose another output path")  # fmt: skip
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to {folder}/ (permission denied): choose a writable folder")
    if path.is_file() and path.stat().st_uid == os.geteuid():  # (another user's file: a shared
        try:  # folder decides, and os.replace says.) Setting a file's times to their own values
            status = path.stat()  # changes nothing, but fails on a file that may not be replaced
            os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
        except OSError as error:
            raise UserError(
                f"cannot replace {path} ({error.strerror}): make it writable or choose another "
                "output path"
            ) from None


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
        "config": _plain(dataclasses.asdict(config)),
        "versions": {"python": platform.python_version(), **versions},
        "git_commit": commit,
        "machine": f"{platform.system()} {platform.machine()}, {processor_name()}, "
        f"{os.cpu_count()} CPUs",
    }


def processor_name() -> str:
    """The processor's model name: another processor's arithmetic can move a seed's run."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "processor unknown"


def _plain(value: Any) -> Any:
    """`value` as strict JSON can hold it: paths as text, tuples as lists, nested configs as dicts,
    an infinite setting as "inf" (e.g. --max-disagreement inf), a number not measured (NaN) as
    null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_json(path: Path, payload: dict[str, Any]) -> None:
    """Strict JSON (no NaN or Infinity, which other readers refuse), written atomically."""
    text = json.dumps(_plain(payload), indent=2, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


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
    """Load and check an npz of transitions; any problem is one `UserError` naming the fix.

    Each array's shape and dtype are read from its header and checked against `SCHEMA`, and the
    bytes it declares against the member's size in the zip, before anything is loaded; the rows
    must also fit in memory. A damaged or crafted header cannot make this allocate more than the
    machine holds. Only the schema's arrays are loaded (an extra one is ignored).
    """
    path = require_file(path, COLLECT_COMMAND)
    redo = f"re-create it with `{COLLECT_COMMAND}`"
    try:
        rows = _check_headers(path, redo)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in Transitions.SCHEMA}
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
        if "not a zip file" in reason:
            reason = "not an npz archive: not even a zip file"
        raise UserError(f"{path} is not a readable .npz file ({reason[:120]}): {redo}") from None
    for name, (dtype, row_shape) in Transitions.SCHEMA.items():
        array = arrays[name]
        if array.dtype != dtype or array.shape != (rows, *row_shape):  # (the headers said so)
            raise UserError(f"{path}: array {name!r} does not match its header: {redo}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise UserError(f"{path}: array {name!r} holds NaN or inf values: {redo}")
    if not np.isin(arrays["action"], np.arange(2)).all():
        raise UserError(f"{path}: actions must be 0 or 1: {redo}")
    return Transitions(**arrays)


def _check_headers(path: Path, redo: str) -> int:
    """The row count N that every schema array of the npz at `path` declares, after checking
    each header (dtype, shape) and that the file holds the bytes it declares."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        missing = [name for name in Transitions.SCHEMA if f"{name}.npy" not in members]
        if missing:
            raise UserError(f"{path} lacks the arrays {', '.join(missing)}: {redo}")
        rows = None
        for name, (dtype, row_shape) in Transitions.SCHEMA.items():
            info = members[f"{name}.npy"]
            with archive.open(info) as handle:
                version = np.lib.format.read_magic(handle)
                read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                    version, np.lib.format.read_array_header_2_0
                )
                shape, _, found = read(handle)
                header = handle.tell()
            rows = shape[0] if rows is None and shape else rows
            expected = (rows, *row_shape)
            if found != np.dtype(dtype) or tuple(shape) != expected:
                raise UserError(
                    f"{path}: array {name!r} is {found}{list(shape)}, expected "
                    f"{np.dtype(dtype)}{list(expected)}: {redo}"
                )
            declared = int(np.prod(shape)) * found.itemsize
            if info.file_size != header + declared:
                raise UserError(
                    f"{path}: the header of array {name!r} declares {list(shape)} ({declared:,} "
                    f"bytes), the file holds {max(info.file_size - header, 0):,}: {redo}"
                )
        if not rows:
            raise UserError(f"{path} holds zero transitions: {redo}")
        row_bytes = sum(
            np.dtype(d).itemsize * int(np.prod(s)) for d, s in Transitions.SCHEMA.values()
        )
        require_memory(rows * row_bytes * 2, f"{path} ({rows:,} transitions)")
    return rows


# ----------------------------------------------------------------------------- checkpoints (.pt)


def nonfinite_weights(state_dict: dict) -> list[str]:
    """Names of the floating-point tensors of `state_dict` that hold NaN or inf."""
    return [n for n, w in state_dict.items() if w.is_floating_point() and not w.isfinite().all()]


def save_checkpoint(path: Path, kind: str, state_dict: dict, config: dict, **extra: Any) -> None:
    """A checkpoint is plain data: `state_dict` plus the config needed to rebuild the module."""
    import torch  # imported here so that npz-only users of this module stay light

    bad = nonfinite_weights(state_dict)
    if bad:
        raise UserError(
            f"training diverged: weight {bad[0]!r} holds NaN or inf values, so {path} was not "
            "written (the previous file is unchanged); try a smaller --lr"
        )
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
        # mmap: tensors are read from the file where they are used, so a damaged size in the
        # file cannot make this allocate more memory than the file holds
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
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
