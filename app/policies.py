"""Policies that act in CartPole, and the Q-network they may read: shared by phases 3, 4 and 5.

Phase 3 collects data with these policies (random, a balancing heuristic, or epsilon-greedy over a
Q-network that phase 5 trained); phase 4 drives its real episodes with them; phase 5 defines its
DQN with `q_network` and saves it with `save_q_network`. They live here, below every phase, so that
no phase imports a later one.

Two kinds of policy, one per side of the numpy/torch edge:
    Policy       (S,) numpy state -> int action          (stepping a gymnasium environment)
    TorchPolicy  (B, S) tensor of states -> (B,) actions (batched, e.g. inside the world model)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from app.common import NUM_ACTIONS, STATE_DIM, UserError
from app.storage import load_checkpoint, save_checkpoint

Policy = Callable[[np.ndarray], int]
TorchPolicy = Callable[[torch.Tensor], torch.Tensor]

Q_KIND = "q_network"
AGENT_COMMAND = "uv run python -m app.agent"


def q_network(hidden_size: int) -> nn.Sequential:
    """The DQN's network: (B, S) states -> (B, A) action values, two hidden ReLU layers."""
    return nn.Sequential(
        nn.Linear(STATE_DIM, hidden_size),
        nn.ReLU(),
        nn.Linear(hidden_size, hidden_size),
        nn.ReLU(),
        nn.Linear(hidden_size, NUM_ACTIONS),
    )


def greedy(q_function: nn.Module) -> TorchPolicy:
    """The greedy policy of a Q-function: argmax over the (B, A) action values of each state."""
    return lambda states: q_function(states).argmax(dim=1)


# ----------------------------------------------------------------------------- numpy policies


def random_policy(rng: np.random.Generator) -> Policy:
    """A uniformly random action, whatever the state."""
    return lambda state: int(rng.integers(NUM_ACTIONS))


def mixed_policy(rng: np.random.Generator, epsilon: float) -> Policy:
    """Push towards where the pole is falling (angle + angular velocity), except a random action
    with probability `epsilon`: long episodes, yet still varied."""

    def act(state: np.ndarray) -> int:
        if rng.random() < epsilon:
            return int(rng.integers(NUM_ACTIONS))
        return int(state[2] + 0.5 * state[3] > 0)

    return act


def epsilon_greedy_policy(rng: np.random.Generator, epsilon: float, path: Path) -> Policy:
    """Greedy over the Q-network saved at `path`, except a random action with probability
    `epsilon`."""
    network = load_q_network(path)

    @torch.inference_mode()
    def act(state: np.ndarray) -> int:
        if rng.random() < epsilon:
            return int(rng.integers(NUM_ACTIONS))
        return int(greedy(network)(torch.as_tensor(state, dtype=torch.float32)[None]).item())

    return act


# ----------------------------------------------------------------------------- Q-network files


def save_q_network(path: Path, weights: dict, hidden_size: int, meta: dict) -> None:
    """A Q-network checkpoint: its weights and the width that rebuilds it."""
    save_checkpoint(path, Q_KIND, weights, {"hidden_size": hidden_size}, meta=meta)


def load_q_network(path: Path) -> nn.Sequential:
    """Rebuild a saved Q-network in eval mode; any mismatch is one `UserError` naming the fix."""
    payload = load_checkpoint(path, Q_KIND, AGENT_COMMAND, config_keys={"hidden_size": int})
    hidden_size = payload["config"]["hidden_size"]
    redo = f"re-create it with `{AGENT_COMMAND}`"
    if not 0 < hidden_size <= 65_536:
        raise UserError(f"{path}: hidden_size {hidden_size} is out of range: {redo}")
    network = q_network(hidden_size)
    try:
        network.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1].strip()[:140]
        raise UserError(
            f"{path} does not match a Q-network of width {hidden_size} ({reason}): {redo}"
        ) from None
    return network.eval()
