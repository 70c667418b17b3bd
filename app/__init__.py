"""Model-based RL on CartPole-v1: a learned world model and a Dyna-style DQN, one phase per module.

When a phase starts as `python -m app.<phase>`, importing PyTorch and Matplotlib takes seconds.
A Ctrl-C in that window should end as quietly as one later on (which `app.common.cli` handles),
not with a traceback from deep inside a library import.
"""

import signal
import sys


def _quit_quietly(signum: int, frame: object) -> None:
    print("\ninterrupted (Ctrl-C) while starting up: nothing was written.", file=sys.stderr)
    raise SystemExit(130)


def startup_finished() -> None:
    """Give Ctrl-C back its usual KeyboardInterrupt, now that the command's own code runs."""
    if signal.getsignal(signal.SIGINT) is _quit_quietly:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# While `python -m` imports the package, sys.argv[0] is "-m" (see the docs of the -m option).
# Leave SIGINT alone where it is ignored (a background job) or already customised.
if sys.argv[:1] == ["-m"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _quit_quietly)
