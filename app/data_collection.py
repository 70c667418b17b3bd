"""Phase 3a: collect real CartPole-v1 transitions for the world model to learn from.

    uv run python -m app.data_collection                   # 10,000 random-policy transitions
    uv run python -m app.data_collection --policy mixed    # a balancing heuristic + random actions

Reads nothing (or, with --policy epsilon_greedy, a Q-network checkpoint from app.agent).
Writes data/transitions.npz: named arrays state, action, reward, next_state, terminated, truncated,
episode (fixed dtypes, no pickles) plus a JSON `meta` string recording how it was made.

The model can only be accurate where the data are: a random policy drops the pole within ~22 steps,
so it rarely sees a cart far from the centre moving fast. The `mixed` policy keeps the pole up for
longer and so covers more of the state space a good agent will visit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from app.common import (
    DATA_PATH,
    ENV_ID,
    STATE_DIM,
    cli,
    progress,
    require,
    require_memory,
    require_positive,
    require_probability,
    seed_everything,
)
from app.policies import Policy, epsilon_greedy_policy, mixed_policy, random_policy
from app.storage import Transitions, require_writable, run_metadata, save_transitions


@dataclass
class Config:
    """Collect CartPole-v1 transitions into an npz file."""

    num_transitions: int = 10_000
    """N: how many environment steps to record"""
    policy: str = "random"
    """random | mixed (balancing heuristic, random action with prob. --epsilon) |
    epsilon_greedy (a trained Q-network from --q-network, random action with prob. --epsilon)"""
    epsilon: float = 0.3
    """probability of a uniformly random action, for the mixed and epsilon_greedy policies"""
    q_network: Path = Path("checkpoints/dqn.pt")
    """Q-network checkpoint for --policy epsilon_greedy (written by `python -m app.agent`)"""
    output: Path = DATA_PATH
    """where to write the transitions"""
    seed: int = 0
    """seeds the environment resets and the policy's random actions"""

    def __post_init__(self) -> None:
        require_positive(self, "num_transitions")
        require_memory(self.num_transitions * 60, f"--num-transitions {self.num_transitions:,}")
        require_probability(self, "epsilon")
        require(
            self.policy in POLICIES,
            f"--policy must be one of {', '.join(POLICIES)}, got {self.policy!r}",
        )


POLICIES = ("random", "mixed", "epsilon_greedy")


def make_policy(cfg: Config, rng: np.random.Generator) -> Policy:
    if cfg.policy == "random":
        return random_policy(rng)
    if cfg.policy == "mixed":
        return mixed_policy(rng, cfg.epsilon)
    return epsilon_greedy_policy(rng, cfg.epsilon, cfg.q_network)


def collect_transitions(
    env: gym.Env, policy: Policy, num_transitions: int, seed: int
) -> Transitions:
    """Step `env` with `policy` for exactly `num_transitions` steps.

    The last episode may be cut short by the budget: it then ends neither terminated nor truncated,
    which is correct (its last next_state is simply not terminal).
    """
    N = num_transitions
    data = Transitions(
        state=np.empty((N, STATE_DIM), np.float32),
        action=np.empty(N, np.int64),
        reward=np.empty(N, np.float32),
        next_state=np.empty((N, STATE_DIM), np.float32),
        terminated=np.empty(N, np.bool_),
        truncated=np.empty(N, np.bool_),
        episode=np.empty(N, np.int64),
    )
    state, _ = env.reset(seed=seed)  # seed once per run; later resets continue the same stream
    env.action_space.seed(seed)
    episode = 0
    for i in progress(range(N), desc="collecting", unit="step"):
        action = policy(state)
        next_state, reward, terminated, truncated, _ = env.step(action)
        data.state[i], data.action[i], data.reward[i] = state, action, reward
        data.next_state[i], data.terminated[i], data.truncated[i] = (
            next_state,
            terminated,
            truncated,
        )
        data.episode[i] = episode
        if terminated or truncated:  # the episode ends on either; only `terminated` is a done
            state, _ = env.reset()
            episode += 1
        else:
            state = next_state
    return data


def main(cfg: Config) -> Transitions:
    require_writable(cfg.output)  # before the work, not after it
    rng = seed_everything(cfg.seed)
    policy = make_policy(cfg, rng)
    with gym.make(ENV_ID) as env:
        data = collect_transitions(env, policy, cfg.num_transitions, cfg.seed)
    save_transitions(cfg.output, data, run_metadata(cfg))
    s = data.summary()
    print(
        f"Wrote {cfg.output}: {s['transitions']:,} transitions from {s['episodes']} episodes "
        f"({cfg.policy} policy), mean length {s['mean_episode_length']:.1f} steps, "
        f"done rate {s['done_rate']:.3f}, {s['truncated']} time-limit truncations."
    )
    return data


if __name__ == "__main__":
    cli(main, Config)
