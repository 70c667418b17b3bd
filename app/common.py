"""Shared helpers, one home each: user-facing errors, the command line, seeding, device, progress.

Every `python -m app.<phase>` command is a `Config` dataclass plus a `main(cfg)` function; `cli()`
turns the dataclass into `--flags` (help text comes from the docstring under each field), validates
it, runs `main`, and turns a `UserError` into one line on stderr instead of a traceback.

Shape legend used across the project:
    B batch, H horizon (rollout steps), S state dim (4 for CartPole), A number of actions (2),
    E ensemble members, N transitions in a data set.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import os
import random
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

import numpy as np
from tqdm.auto import tqdm

from app import say_stopped, startup_finished, stopped_by

if TYPE_CHECKING:
    import torch

ENV_ID = "CartPole-v1"
STATE_DIM = 4  # S: cart position, cart velocity, pole angle, pole angular velocity
NUM_ACTIONS = 2  # A: push left, push right
STATE_NAMES = ("cart position", "cart velocity", "pole angle", "pole angular velocity")
STATE_UNITS = ("m", "m/s", "rad", "rad/s")
# CartPole-v1 ends an episode when the cart or the pole crosses these (gymnasium's values).
X_LIMIT, THETA_LIMIT = 2.4, 12 * 2 * 3.141592653589793 / 360

# Where each phase reads and writes, relative to the directory the command runs in.
DATA_PATH = Path("data/transitions.npz")
CHECKPOINT_PATH = Path("checkpoints/world_model.pt")
PLOTS_DIR = Path("plots")
RESULTS_DIR = Path("results")

# The command that makes each input, named in every "missing input" error.
COLLECT_COMMAND = "uv run python -m app.data_collection"
TRAIN_COMMAND = "uv run python -m app.train_model"


MAX_SEED = 2**32 - 1  # what every generator here (NumPy, PyTorch, Gymnasium) accepts


class UserError(Exception):
    """A problem the user can fix (bad flag, missing or corrupt input). Printed as one line."""


# ----------------------------------------------------------------------------- the command line


def _field_docs(cls: type) -> dict[str, str]:
    """Read the docstring written under each dataclass field (the CleanRL `Args` convention)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _parse_scalar(kind: type, allow_inf: bool = False) -> Callable[[str], Any]:
    """A parser of one value: a float must be finite (inf only where the default is inf)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if kind is float and not (math.isfinite(value) or (allow_inf and value == math.inf)):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if kind is Path and not str(text).strip():
            raise argparse.ArgumentTypeError("expected a file path, got an empty one")
        return value

    return parse


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where its help already says it, or it is empty."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in ("", None, argparse.SUPPRESS, ()):
            return text
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one `UserError` line like every other bad input."""

    def error(self, message: str):  # one line, like every other bad-input answer
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _is_config(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _options(cls: type, group: str = "") -> Iterator[tuple[dataclasses.Field, Any, Any, str, str]]:
    """(field, type, default, help, group) of every command-line option of `cls`. A field whose
    type is itself a config dataclass (e.g. the agent's `budget`) contributes its own fields, under
    their own names (a flag's name says what it sets, wherever that setting lives), in a group
    titled by that field's docstring."""
    docs = _field_docs(cls)
    hints = get_type_hints(cls)
    for field in dataclasses.fields(cls):
        default = field.default
        if default is dataclasses.MISSING:
            default = field.default_factory()  # type: ignore[misc]
        if _is_config(hints[field.name]):
            title = docs.get(field.name, field.name)
            for sub, kind, _, text, sub_group in _options(hints[field.name], title):
                yield sub, kind, getattr(default, sub.name), text, sub_group
        else:
            yield field, hints[field.name], default, docs.get(field.name, ""), group


def build_parser(
    cls: type, description: str | None, prog: str | None = None
) -> argparse.ArgumentParser:
    """An argparse parser with one `--flag` per dataclass field, its docstring as help; the fields
    of a nested config dataclass get a group of their own."""
    parser = OneLineParser(prog=prog, description=description, formatter_class=_HelpFormatter)
    groups: dict[str, Any] = {"": parser}
    for field, kind, default, help_text, title in _options(cls):
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        group = groups[title]
        flag = "--" + field.name.replace("_", "-")
        if kind is bool:
            group.add_argument(
                flag, default=default, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif kind in (int, float, str, Path):
            allow_inf = kind is float and default == math.inf
            parse = _parse_scalar(kind, allow_inf)
            group.add_argument(flag, type=parse, default=default, help=help_text)
        elif getattr(kind, "__origin__", None) is tuple:
            item = kind.__args__[0]
            group.add_argument(
                flag, type=_parse_scalar(item), nargs="+", default=default, help=help_text
            )
        else:  # pragma: no cover - a programming error, not a user error
            raise TypeError(f"{cls.__name__}.{field.name}: unsupported CLI type {kind}")
    return parser


T = TypeVar("T")


def build_config[T](cls: type[T], values: dict[str, Any]) -> T:
    """`cls` from flat option values (nested config dataclasses built from their own fields);
    each `__post_init__` validates and raises `UserError`."""
    hints = get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if _is_config(kind):
            kwargs[field.name] = build_config(kind, values)
        elif field.name in values:
            value = values[field.name]
            is_tuple = getattr(kind, "__origin__", None) is tuple
            kwargs[field.name] = tuple(value) if is_tuple else value
    return cls(**kwargs)


def flat_settings(config: Any) -> dict[str, Any]:
    """A config's settings as one flat dict, keyed as on the command line (the fields of nested
    config dataclasses under their own names)."""
    flat: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        flat.update(flat_settings(value) if _is_config(type(value)) else {field.name: value})
    return flat


def with_settings[T](config: T, **changes: Any) -> T:
    """A copy of `config` with settings changed by their command-line names, wherever they live
    (e.g. `with_settings(agent_cfg, max_steps=600)` changes `agent_cfg.budget.max_steps`)."""
    unknown = set(changes) - set(flat_settings(config))
    if unknown:
        raise TypeError(f"{type(config).__name__} has no settings {sorted(unknown)}")
    return build_config(type(config), flat_settings(config) | changes)


def parse_config[T](
    cls: type[T],
    argv: list[str] | None = None,
    description: str | None = None,
    prog: str | None = None,
) -> T:
    """Parse `argv` into a `cls` instance; `cls.__post_init__` validates and raises `UserError`."""
    values = vars(build_parser(cls, description, prog).parse_args(argv))
    flag, seeds = ("seed", [values["seed"]]) if "seed" in values else ("seeds", values.get("seeds"))
    bad = [seed for seed in seeds or () if not 0 <= seed <= MAX_SEED]
    require(not bad, f"--{flag} must be in [0, {MAX_SEED:,}], got {bad[0] if bad else ''}")
    return build_config(cls, values)


def cli[T](main: Callable[[T], Any], cls: type[T], argv: list[str] | None = None) -> None:
    """Run `main(parse_config(cls))` as a command: one-line errors, a clean stop on Ctrl-C and
    SIGTERM (workers stopped, finished work kept, one line).

    Exit codes: 0 done, 1 when `main` returns False (a check failed), 2 bad input, 130 Ctrl-C,
    143 SIGTERM.
    """
    module = sys.modules[main.__module__]
    description = (module.__doc__ or "").strip().split("\n\n")[0]
    name = module.__spec__.name if module.__spec__ else module.__name__
    prog = f"python -m {name.removesuffix('.__main__')}"  # `python -m app`, not app.__main__
    startup_finished()  # from here on, Ctrl-C is a KeyboardInterrupt handled below
    try:
        cfg = parse_config(cls, argv, description, prog)
        result = main(cfg)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except NotImplementedError as todo:  # practice mode: a TODO stub was reached
        if "see TODO above" not in str(todo):
            raise  # PyTorch's own (a missing kernel): not a learner's TODO
        print(
            f"error: {todo} (still a TODO; `uv run python -m app.practice status` lists what is "
            "open)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (`Terminated`)
        what, code = stopped_by(stop)
        said = str(stop) or "nothing half-written was kept"
        say_stopped(f"{what}: {said}.")
        raise SystemExit(code) from None
    if result is False:
        raise SystemExit(1)


def require(condition: bool, message: str) -> None:
    """Config validation: raise a `UserError` with `message` unless `condition` holds."""
    if not condition:
        raise UserError(message)


def require_positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        require(value > 0, f"--{name.replace('_', '-')} must be positive, got {value}")


def require_non_negative(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        require(value >= 0, f"--{name.replace('_', '-')} must be >= 0, got {value}")


def require_probability(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        require(0.0 <= value <= 1.0, f"--{name.replace('_', '-')} must be in [0, 1], got {value}")


def available_memory() -> int:
    """Bytes of physical memory on this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def network_bytes(hidden_size: int, num_layers: int, batch_size: int, copies: int = 1) -> float:
    """Rough memory of training `copies` MLPs of `num_layers` hidden layers on CartPole's state and
    action: weights, gradients, two Adam moments and two saved copies (24 bytes a weight), and the
    activations of a batch."""
    weights = (STATE_DIM + NUM_ACTIONS) * hidden_size + (num_layers - 1) * hidden_size**2
    return copies * (24 * weights + 16 * batch_size * hidden_size * num_layers)


def require_memory(needed: float, what: str) -> None:
    """Refuse, before any work, a size whose memory the machine does not have (an estimate)."""
    have = available_memory()
    if needed > have:
        raise UserError(
            f"{what}: needs about {_bytes(needed)} of memory, more than this machine's "
            f"{_bytes(have)}; choose a smaller value"
        )


def _bytes(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if count < 1024 or unit == "PB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1024
    return f"{count} PB"  # pragma: no cover


# ----------------------------------------------------------------------------- seeding and device


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and PyTorch; return the NumPy generator to pass to whatever samples.

    Pass the returned generator explicitly (rather than using `np.random.*`) so that the same seed
    always gives the same numbers, whatever else ran before.
    """
    import torch  # torch is imported where used: file-only helpers (storage) stay light

    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def seed_torch(seed: int) -> torch.Generator:
    """Seed PyTorch's global generator (weight initialisation) and return a fresh generator for
    everything a run samples itself, both from `seed`."""
    import torch

    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """`cpu` or `cuda` (only when asked for and present). Resolve once, pass the result down."""
    import torch

    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {name} was asked for but no CUDA GPU is visible; use --device cpu"
            )
        return torch.device(name)
    raise UserError(f"unknown --device {name!r}: use cpu or cuda")


def configure_threads() -> None:
    """Small MLPs on a laptop CPU run fastest on few threads; respect an explicit user choice."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(min(2, torch.get_num_threads()))


class LineProgress:
    """Progress for output that is not a terminal (a log file, a pipe, CI, a notebook): one plain
    line every `every` seconds while the work runs, and one when it ends, so a log shows the run
    is alive: what, done/total, elapsed, rate, time left, the latest figure. Same interface as the
    part of tqdm this project uses (iterate, update, set_postfix, set_postfix_str, close)."""

    def __init__(self, iterable=None, total=None, desc="", unit="it", every=10.0, stream=None):
        self.iterable, self.desc, self.unit, self.every = iterable, desc, unit, every
        self.total = total if total is not None else _length(iterable)
        self.n, self.postfix, self.stream = 0, "", stream or sys.stderr
        self.started, self.closed = time.monotonic(), False
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **figures: Any) -> None:
        self.postfix = ", ".join(f"{key.replace('_', ' ')} {val}" for key, val in figures.items())

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def line(self, final: bool = False) -> str:
        elapsed = time.monotonic() - self.started
        done = f"{self.n:,}/{self.total:,}" if self.total else f"{self.n:,}"
        parts = [f"{self.desc}: {done} {self.unit}s", f"{_duration(elapsed)} elapsed"]
        rate = self.n / elapsed if elapsed > 0 else 0.0
        if final:
            parts = [f"{self.desc}: {done} {self.unit}s in {_duration(elapsed)}"]
        elif rate > 0:
            speed = f"{rate:.3g} {self.unit}s/s" if rate >= 1 else f"{1 / rate:.3g} s/{self.unit}"
            parts.append(speed)
            if self.total and self.n < self.total:
                parts.append(f"about {_duration((self.total - self.n) / rate)} left")
        return ", ".join(parts) + (f"; latest: {self.postfix}" if self.postfix else "")

    def _tick(self) -> None:
        while not self._stop.wait(self.every) and self._write(self.line()):
            pass

    def _write(self, text: str) -> bool:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
            return True
        except (ValueError, OSError):  # the stream was closed under us: stop showing progress
            return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        if self._ticker is not threading.current_thread():
            self._ticker.join()
        if time.monotonic() - self.started >= self.every:  # a long step ends with a line too
            self._write(self.line(final=True))


def _length(iterable: Any) -> int | None:
    try:
        return len(iterable)
    except TypeError:
        return None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress(iterable: Iterable | None = None, **kwargs: Any) -> Any:
    """Progress on stderr: a tqdm bar on a terminal; elsewhere (a log, a pipe, CI) a plain line
    every ~10 s (`LineProgress`); nothing with disable=True."""
    disable = kwargs.pop("disable", None)
    if disable:
        return tqdm(iterable, disable=True, **kwargs)
    if sys.stderr.isatty():
        kwargs.setdefault("dynamic_ncols", True)
        kwargs.setdefault("leave", False)
        return tqdm(iterable, **kwargs)
    names = ("total", "desc", "unit")
    return LineProgress(iterable, **{name: kwargs[name] for name in names if name in kwargs})
