"""Model-based RL on CartPole-v1: a learned world model and a Dyna-style DQN, one phase per module.

When a phase starts as `python -m app.<phase>`, importing PyTorch and Matplotlib takes seconds.
A Ctrl-C (SIGINT) or a SIGTERM (sent by `timeout`, batch schedulers, `kill`) in that window ends as
quietly as one later on (which `app.common.cli` handles), not with a traceback from deep inside a
library import. Later, a SIGTERM is raised as `Terminated`, a kind of KeyboardInterrupt, so every
command stops on it exactly as on Ctrl-C (finished work kept, workers stopped), with exit code 143.
"""

import signal
import sys


class Terminated(KeyboardInterrupt):
    """A SIGTERM, raised where Ctrl-C would be: the same clean stop, exit code 143."""


def stopped_by(stop: BaseException) -> tuple[str, int]:
    """How a stop is named in its one line, and the exit code it ends with."""
    if isinstance(stop, Terminated):
        return "terminated (SIGTERM)", 143
    return "interrupted (Ctrl-C)", 130


def say_stopped(message: str) -> None:
    """Print a stop's one line to stderr: in a terminal on a fresh line (past a progress bar or the
    echoed "^C"), in a log with no blank line before it."""
    print(("\n" if sys.stderr.isatty() else "") + message, file=sys.stderr)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _quit_quietly(signum: int, frame: object) -> None:
    what, code = stopped_by(Terminated() if signum == signal.SIGTERM else KeyboardInterrupt())
    say_stopped(f"{what} while starting up: nothing was written.")
    raise SystemExit(code)


def startup_finished() -> None:
    """Give Ctrl-C back its usual KeyboardInterrupt (and SIGTERM its `Terminated`), now that the
    command's own code runs."""
    if signal.getsignal(signal.SIGINT) is _quit_quietly:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is _quit_quietly:
        signal.signal(signal.SIGTERM, _terminate)


# While `python -m` imports the package, sys.argv[0] is "-m" (see the docs of the -m option).
# Leave a signal alone where it is ignored (SIGINT in a background job) or already customised.
if sys.argv[:1] == ["-m"]:
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _quit_quietly)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _quit_quietly)
