"""Phase 5: DQN, and Dyna-DQN that also learns from k-step rollouts imagined by a world model.

    uv run python -m app.agent                 # DQN (K=0) vs Dyna-DQN (K=10), 3 seeds each
    uv run python -m app.agent --seeds 0 1 2 3 4 --planning-steps 5

Reads nothing by default: the Dyna agent learns its world model from its own replay buffer
(`--warm-start` starts it from checkpoints/world_model.pt instead; those 10,000 real transitions are
then not counted in the plot's real steps).
Writes plots/dqn_vs_dyna.png (evaluation return against real environment steps, mean and 95%
confidence band over seeds), results/agent.json (every run's curve and figures) and
checkpoints/dqn.pt (the Dyna agent's Q-network, first seed: `app.data_collection --policy
epsilon_greedy` can use it).

One code path: each real step feeds the replay buffer and one Q-learning update; with K > 0 the
agent also rolls the world model out for `rollout_length` steps from real start states and does K
more updates on those imagined transitions. K = 0 is plain DQN. With a model the agent also
screens its learner (`screen_policy`): it acts, and is evaluated, with a copy of the Q-network that
takes the learner's weights only when the model's imagined episodes with them last at least as
long, so a collapse of the learner between two checks does not reach the real environment. While
the agent's latest real episode reached the time limit, the model rests, screen and imagined
updates both: a policy proven in reality is not swapped for one that only the model vouches for,
and the learner meanwhile learns from real data alone, as plain DQN does.

How runs are measured (the same in the plot, the table and app.benchmark): every 500 real steps,
10 greedy episodes on seeded evaluation environments (their steps are not counted). "Solved" is the
first evaluation with mean return >= 475; "stability" the share of the next 10 evaluations that stay
>= 475. A run lasts until 10,000 real steps or 5,000 past its solve, whichever is later; a run that
never solves goes on to the cap (--max-steps, 20,000; app.benchmark's is 50,000). Wall time is
measured up to the solve.
"""

from __future__ import annotations

import copy
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.common import (
    CHECKPOINT_PATH,
    ENV_ID,
    NUM_ACTIONS,
    PLOTS_DIR,
    RESULTS_DIR,
    STATE_DIM,
    cli,
    configure_threads,
    progress,
    require,
    require_positive,
    require_probability,
    resolve_device,
)
from app.plan_with_model import Rollout, imagine_rollout
from app.plotting import COLORS, CYCLE, add_caption, new_figure, save_figure
from app.storage import Transitions, load_checkpoint, run_metadata, save_checkpoint, save_json
from app.train_model import load_world_model, train_epoch
from app.world_model import WorldModel, WorldModelConfig, WorldModelEnsemble

Batch = dict[str, torch.Tensor]
Q_KIND = "q_network"
AGENT_COMMAND = "uv run python -m app.agent"
SOLVED_RETURN = 475.0
Q_LOSSES = {"huber": F.smooth_l1_loss, "mse": F.mse_loss}


@dataclass
class Config:
    """Train model-free DQN and Dyna-DQN on CartPole-v1 over several seeds and compare them."""

    seeds: tuple[int, ...] = (0, 1, 2)
    """one run per seed and per arm"""
    planning_steps: int = 10
    """K: Q-updates on imagined transitions per real step, for the Dyna arm (0 = plain DQN)"""
    rollout_length: int = 3
    """k: length of each imagined rollout from a real start state"""
    real_updates: int = 1
    """Q-updates on real transitions per real step (after learning_starts)"""
    lr: float = 2e-3
    """Adam learning rate of the Q-network"""
    gamma: float = 0.99
    """discount factor"""
    batch_size: int = 64
    """transitions per Q-update, real or imagined"""
    hidden_size: int = 128
    """width of the Q-network's two hidden layers"""
    buffer_size: int = 50_000
    """replay buffer capacity (real transitions)"""
    learning_starts: int = 500
    """real steps of uniformly random actions before any update"""
    double_q: bool = False
    """Double DQN targets: the online network picks the next action, the target network values it
    (curbs the overestimation that makes a DQN drift away from a solved task)"""
    target_update_interval: int = 100
    """update the target network every this many Q-updates (real + imagined)"""
    q_loss: str = "mse"
    """loss on the TD error: mse lets a rare terminal transition's large error pull hard; huber (the
    DQN habit) grows only linearly past an error of 1, so the few transitions where the pole falls
    are outvoted and the agent forgets how it fails (docs/results.md, fifth round)"""
    terminal_samples: int = 16
    """of each real batch, this many transitions are drawn from the real terminations, so failures
    stay in view once the agent rarely fails (0 = uniform batches)"""
    screen_interval: int = 100
    """Dyna only: every this many real steps the world model screens the learner. The agent acts
    and is evaluated with an acting copy of the Q-network, which takes the learner's weights only
    if the learner's greedy episodes, imagined from real episode starts, last at least as long as
    its own. While the latest real episode reached the time limit the acting network has proven
    itself in reality, and the model rests: no screen and no imagined updates (0 = no screen: act
    with the learner itself, plan at every step)"""
    screen_horizon: int = 500
    """imagined steps per screening episode (CartPole's own time limit)"""
    screen_starts: int = 64
    """real episode-start states per screen"""
    tau: float = 1.0
    """target update weight: target <- (1 - tau) target + tau online; 1 = a hard copy, a small
    tau with --target-update-interval 1 = Polyak averaging (a slowly moving target)"""
    epsilon_start: float = 1.0
    """exploration at the first step"""
    epsilon_end: float = 0.04
    """exploration after the decay"""
    exploration_steps: int = 2_000
    """real steps over which epsilon decays linearly"""
    model_train_interval: int = 250
    """retrain the world model on the replay buffer every this many real steps"""
    model_sample: int = 8_192
    """transitions (drawn from the replay buffer) in each world-model retraining epoch"""
    model_initial_epochs: int = 100
    """epochs of the first world-model fit, on the warm-up data (skipped with --warm-start)"""
    model_hidden_size: int = 200
    """width of the world model's encoder layers"""
    warm_start: bool = False
    """start the world model from checkpoints/world_model.pt (its data are not counted as steps)"""
    refit_model: bool = True
    """refit the world model as data arrive; --no-refit-model fits it once, on the warm-up data,
    and freezes it (a deliberately poor model: app.experiments' exploitation study)"""
    ensemble_size: int = 1
    """E: world models in an ensemble (1 = a single model); see --max-disagreement"""
    max_disagreement: float = math.inf
    """end an imagined rollout where the ensemble members' next states disagree by more than this
    (in typical one-step changes; inf = never)"""
    eval_interval: int = 500
    """real steps between evaluations"""
    eval_episodes: int = 10
    """greedy episodes per evaluation"""
    min_steps: int = 10_000
    """every run lasts at least this many real steps"""
    steps_after_solve: int = 5_000
    """and this many past its first solve"""
    max_steps: int = 20_000
    """cap on real steps per run: where a run that never solves stops (app.benchmark: 50,000)"""
    workers: int = 3
    """parallel processes, one thread each (3 on a 2-core laptop: the three Dyna runs share the
    cores instead of the third running alone at the end)"""
    plot: Path = PLOTS_DIR / "dqn_vs_dyna.png"
    """where to write the learning curves"""
    results: Path = RESULTS_DIR / "agent.json"
    """where to write every run's curve and figures"""
    q_checkpoint: Path = Path("checkpoints/dqn.pt")
    """where to save the Dyna agent's Q-network (first seed)"""
    device: str = "cpu"
    """cpu, or cuda when a GPU is present"""

    def __post_init__(self) -> None:
        require_positive(
            self, "rollout_length", "lr", "batch_size", "hidden_size", "buffer_size",
            "target_update_interval", "exploration_steps", "model_train_interval", "model_sample",
            "model_initial_epochs", "model_hidden_size", "eval_interval", "eval_episodes",
            "min_steps", "max_steps", "workers", "ensemble_size", "max_disagreement",
            "screen_horizon", "screen_starts",
        )  # fmt: skip
        require(len(self.seeds) > 0, "--seeds needs at least one seed")
        require(
            self.planning_steps >= 0,
            f"--planning-steps (K) must be >= 0, got {self.planning_steps}",
        )
        require(self.real_updates >= 0, f"--real-updates must be >= 0, got {self.real_updates}")
        require(self.learning_starts >= 0, "--learning-starts must be >= 0")
        require(self.steps_after_solve >= 0, "--steps-after-solve must be >= 0")
        require(0.0 < self.gamma <= 1.0, f"--gamma must be in (0, 1], got {self.gamma}")
        require_probability(self, "epsilon_start", "epsilon_end")
        require(self.q_loss in Q_LOSSES, f"--q-loss must be huber or mse, got {self.q_loss!r}")
        require(
            0 <= self.terminal_samples <= self.batch_size,
            f"--terminal-samples must be in [0, --batch-size], got {self.terminal_samples}",
        )
        require(
            self.screen_interval >= 0,
            f"--screen-interval must be >= 0 (0 = no screen), got {self.screen_interval}",
        )
        require(0.0 < self.tau <= 1.0, f"--tau must be in (0, 1], got {self.tau}")
        require(self.min_steps <= self.max_steps, "--min-steps must not exceed --max-steps")
        require(
            not (self.warm_start and self.ensemble_size > 1),
            "--warm-start loads one model; it cannot start an --ensemble-size > 1 ensemble",
        )


# ----------------------------------------------------------------------------- replay buffer


class ReplayBuffer:
    """Preallocated ring buffer of real transitions, stored as tensors on `device`."""

    def __init__(self, capacity: int, device: torch.device) -> None:
        self.capacity, self.size, self.position = capacity, 0, 0
        self.state = torch.zeros(capacity, STATE_DIM, device=device)
        self.action = torch.zeros(capacity, dtype=torch.long, device=device)
        self.reward = torch.zeros(capacity, device=device)
        self.next_state = torch.zeros(capacity, STATE_DIM, device=device)
        self.terminated = torch.zeros(capacity, dtype=torch.bool, device=device)
        self.truncated = torch.zeros(capacity, dtype=torch.bool, device=device)
        self.episode = torch.zeros(capacity, dtype=torch.long, device=device)
        self._terminal_rows: torch.Tensor | None = None  # cache of `terminal_rows()`

    def add(self, state, action, reward, next_state, terminated, truncated, episode) -> None:
        i = self.position
        if terminated or self.terminated[i]:  # the set of terminal rows changes
            self._terminal_rows = None
        self.state[i] = torch.as_tensor(state)
        self.action[i], self.reward[i] = action, reward
        self.next_state[i] = torch.as_tensor(next_state)
        self.terminated[i], self.truncated[i], self.episode[i] = terminated, truncated, episode
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator, terminal: int = 0) -> Batch:
        """B transitions, the fields `train_on_batch` reads: uniformly drawn, except that the first
        `terminal` rows are drawn from the terminated transitions when there are any."""
        rows = torch.randint(self.size, (batch_size,), generator=generator).to(self.state.device)
        if terminal > 0:
            ends = self.terminal_rows()
            if len(ends) > 0:
                rows[:terminal] = ends[torch.randint(len(ends), (terminal,), generator=generator)]
        return {name: values[rows] for name, values in self.as_batch().items()}

    def terminal_rows(self) -> torch.Tensor:
        """(N,) rows of the terminated transitions, in order; kept until one is added or
        overwritten (a real batch asks for them at every update)."""
        if self._terminal_rows is None:
            self._terminal_rows = torch.nonzero(self.terminated[: self.size]).squeeze(1)
        return self._terminal_rows

    def episode_starts(self) -> torch.Tensor:
        """(N,) rows whose state is the first of an episode (a reset state)."""
        episode = self.episode[: self.size]
        first = torch.ones_like(episode, dtype=torch.bool)
        first[1:] = episode[1:] != episode[:-1]
        return torch.nonzero(first).squeeze(1)

    def as_batch(self) -> Batch:
        """Every stored transition (views, no copy)."""
        n = self.size
        return {
            "state": self.state[:n],
            "action": self.action[:n],
            "reward": self.reward[:n],
            "next_state": self.next_state[:n],
            "terminated": self.terminated[:n],
        }

    def to_transitions(self) -> Transitions:
        """The buffer in the data/transitions.npz schema (oldest first)."""
        n = self.size
        order = torch.arange(self.position - n, self.position) % self.capacity
        fields = {
            "state": self.state,
            "action": self.action,
            "reward": self.reward,
            "next_state": self.next_state,
            "terminated": self.terminated,
            "truncated": self.truncated,
            "episode": self.episode,
        }
        return Transitions(**{name: values[order].cpu().numpy() for name, values in fields.items()})


# ----------------------------------------------------------------------------- the DQN


def q_network(hidden_size: int) -> nn.Sequential:
    """(B, S) states -> (B, A) action values."""
    return nn.Sequential(
        nn.Linear(STATE_DIM, hidden_size),
        nn.ReLU(),
        nn.Linear(hidden_size, hidden_size),
        nn.ReLU(),
        nn.Linear(hidden_size, NUM_ACTIONS),
    )


class DQNAgent:
    """A Q-network, its target network and optimiser.

    Args:
        cfg: the run's hyperparameters (hidden_size, lr, gamma, target_update_interval).
        device: where the networks live.
        generator: draws exploration coins and random actions (seeded by the run).
    """

    def __init__(self, cfg: Config, device: torch.device, generator: torch.Generator) -> None:
        self.q_network = q_network(cfg.hidden_size).to(device)
        self.target_network = q_network(cfg.hidden_size).to(device)
        self.target_network.load_state_dict(self.q_network.state_dict())
        self.optimizer = torch.optim.Adam(self.q_network.parameters(), lr=cfg.lr, fused=True)
        self.gamma = cfg.gamma
        self.double_q = cfg.double_q
        self.target_update_interval = cfg.target_update_interval
        self.tau = cfg.tau
        self.td_loss = Q_LOSSES[cfg.q_loss]  # (prediction, target) -> scalar
        self.generator = generator
        self.updates = 0
        # The network that acts in the real environment and is evaluated: the learner itself, or
        # with a model screen (Dyna only) a copy that takes the learner's weights when the model
        # vouches for them (`screen_policy`).
        screened = cfg.screen_interval > 0 and cfg.planning_steps > 0
        self.acting_network = copy.deepcopy(self.q_network) if screened else self.q_network

    @torch.no_grad()
    def select_action(
        self, states: torch.Tensor, epsilon: float, network: nn.Module | None = None
    ) -> torch.Tensor:
        """Epsilon-greedy: (B, S) states -> (B,) actions, each random with probability epsilon.

        A random action is uniform over all A actions (so the greedy one is picked with probability
        1 - epsilon + epsilon / A). Greedy with respect to `network`, the learner by default.
        """
        # TODO(phase 5): greedy actions from the Q-network, each replaced by a uniformly random
        # action with probability epsilon.
        # HINT: argmax over dim 1 of the Q-values of `network` (None: self.q_network); draw the
        #       coins and the random actions with generator=self.generator so a seed fixes them;
        #       torch.where picks per row.
        # ### BEGIN SOLUTION (phase 5: DQNAgent.select_action)
        q_values = (self.q_network if network is None else network)(states)  # (B, A)
        greedy = q_values.argmax(dim=1)  # (B,)
        B = len(states)
        explore = torch.rand(B, generator=self.generator) < epsilon
        random_actions = torch.randint(NUM_ACTIONS, (B,), generator=self.generator)
        actions = torch.where(explore.to(greedy.device), random_actions.to(greedy.device), greedy)
        # ### END SOLUTION
        assert actions.shape == (len(states),), f"actions must be (B,), got {tuple(actions.shape)}"
        return actions

    @torch.no_grad()  # the target is a fixed regression label: no gradient flows into it
    def td_target(self, batch: Batch) -> torch.Tensor:
        """(B,) Q-learning targets r + gamma * Q_target(s', a') * (1 - terminated).

        a' is the target network's own best action, or with `double_q` the online network's
        (Double DQN: the network that picks a' is not the one that values it, so noise in the
        estimates is not systematically maximised).
        Only `terminated` cuts the bootstrap. A time-limit truncation is not an end of the MDP:
        the pole was still up, so the value of s' is real and must be counted (truncated
        transitions are stored with terminated = False).
        """
        # TODO(phase 5): the bootstrapped target, cut only where the episode truly terminated.
        # HINT: self.target_network(next_state).max(dim=1).values is max_a' Q_target(s', a').
        # HINT: for double_q, a' = argmax of self.q_network(next_state); .gather(1, a'[:, None]).
        # ### BEGIN SOLUTION (phase 5: DQNAgent.td_target)
        next_q = self.target_network(batch["next_state"])  # (B, A)
        if self.double_q:
            best = self.q_network(batch["next_state"]).argmax(dim=1, keepdim=True)  # (B, 1)
            next_value = next_q.gather(1, best).squeeze(1)  # (B,)
        else:
            next_value = next_q.max(dim=1).values  # (B,)
        not_done = 1.0 - batch["terminated"].float()
        target = batch["reward"] + self.gamma * not_done * next_value
        # ### END SOLUTION
        assert target.shape == batch["reward"].shape, "the TD target must be (B,)"
        return target

    def train_on_batch(self, batch: Batch) -> float:
        """One Q-learning step on a batch of B transitions (real or imagined); returns the loss."""
        # TODO(phase 5): regress Q(s, a) of the taken actions onto the TD target; one Adam step.
        # HINT: q_values.gather(1, action[:, None]).squeeze(1) picks Q(s, a) per row.
        # HINT: self.td_loss is the loss: F.smooth_l1_loss (Huber, less jumpy when targets move) or
        #       F.mse_loss (a large error pulls harder: rare failures are not outvoted).
        # ### BEGIN SOLUTION (phase 5: DQNAgent.train_on_batch)
        target = self.td_target(batch)  # (B,)
        q_values = self.q_network(batch["state"])  # (B, A)
        q_taken = q_values.gather(1, batch["action"][:, None]).squeeze(1)  # (B,)
        loss = self.td_loss(q_taken, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        # ### END SOLUTION
        self.updates += 1
        if self.updates % self.target_update_interval == 0:
            self.update_target_network()
        return loss.item()

    @torch.no_grad()
    def update_target_network(self) -> None:
        """target <- (1 - tau) target + tau online, every parameter in one fused op (tau = 1 copies
        exactly: lerp computes the weight-1 end point as `end` itself)."""
        targets = list(self.target_network.parameters())
        torch._foreach_lerp_(targets, list(self.q_network.parameters()), self.tau)


# ----------------------------------------------------------------------------- Dyna


def trusted_steps(
    model: WorldModel | WorldModelEnsemble, rollout: Rollout, max_disagreement: float
) -> torch.Tensor:
    """(B, k) bool: the imagined steps before the ensemble's disagreement first passes
    `max_disagreement` (MBPO's answer to compounding error: stop a dream where the models stop
    agreeing). All True for a single model or an infinite threshold."""
    if math.isinf(max_disagreement) or not isinstance(model, WorldModelEnsemble):
        return torch.ones_like(rollout.valid)
    B, k = rollout.actions.shape
    flat_states, flat_actions = rollout.states.flatten(0, 1), rollout.actions.flatten(0, 1)
    spread = model.disagreement(flat_states, flat_actions).view(B, k)
    return (spread <= max_disagreement).int().cumprod(dim=1).bool()


def _train_on_simulated_data(
    agent: DQNAgent,
    model: WorldModel | WorldModelEnsemble,
    buffer: ReplayBuffer,
    num_updates: int,
    rollout_length: int,
    batch_size: int,
    epsilon: float,
    max_disagreement: float = math.inf,
) -> int:
    """K Q-updates on transitions imagined by `model` from real start states.

    Draws enough real start states that every imagined transition is used about once, rolls each
    out `rollout_length` steps with the agent's current epsilon-greedy policy (stopping at
    predicted dones, and with an ensemble where its members disagree by more than
    `max_disagreement`), and trains on the valid imagined transitions in `num_updates`
    mini-batches. Returns the number of imagined transitions used.
    """
    num_starts = math.ceil(num_updates * batch_size / rollout_length)
    # TODO(phase 5): imagine from real start states with the current policy, keep the valid
    # transitions, and make `num_updates` Q-updates on them.
    # HINT: buffer.sample(n, agent.generator)["state"] gives real start states; reuse phase 4's
    #       imagine_rollout with the policy `lambda s: agent.select_action(s, epsilon)`.
    # HINT: rollout.valid masks out steps after a predicted done (and'ed with trusted_steps(...),
    #       which only matters for an ensemble); the model's done is the "terminated" of an
    #       imagined transition. Split a random order into num_updates chunks.
    # ### BEGIN SOLUTION (phase 5: _train_on_simulated_data)
    starts = buffer.sample(num_starts, agent.generator)["state"]  # (B, S) real states
    rollout = imagine_rollout(
        model, starts, lambda s: agent.select_action(s, epsilon), rollout_length
    )
    # (B, k): steps before (and including) a predicted done, and trusted by an ensemble
    valid = rollout.valid & trusted_steps(model, rollout, max_disagreement)
    imagined = {
        "state": rollout.states[valid],
        "action": rollout.actions[valid],
        "reward": rollout.rewards[valid],
        "next_state": rollout.next_states[valid],
        "terminated": rollout.dones[valid],  # the model's done: a termination, never truncation
    }
    count = len(imagined["action"])
    if count == 0:  # every dream was cut at its first step: nothing to learn from
        return 0
    order = torch.randperm(count, generator=agent.generator).to(imagined["action"].device)
    shuffled = {name: values[order].chunk(num_updates) for name, values in imagined.items()}
    for i in range(len(shuffled["action"])):  # chunk gives fewer pieces if count < num_updates
        agent.train_on_batch({name: pieces[i] for name, pieces in shuffled.items()})
    # ### END SOLUTION
    return count


@torch.no_grad()
def imagined_episode_lengths(
    model: WorldModel | WorldModelEnsemble,
    start_states: torch.Tensor,
    network: nn.Module,
    horizon: int,
    give_up_below: float = -math.inf,
    chunk: int = 25,
) -> torch.Tensor:
    """(B,) steps that greedy episodes with `network` last in the model, up to `horizon`.

    Phase 4's `imagine_rollout`, `chunk` steps at a time, so it can stop early: once the total
    can no longer reach `give_up_below` even if every living episode lasts to the horizon, the
    lengths so far are returned (a screen needs no more to say no). Every step of a living episode
    is computed exactly as one long rollout would compute it.
    """
    greedy = lambda s: network(s).argmax(dim=1)  # noqa: E731
    lengths = torch.zeros(len(start_states), dtype=torch.long, device=start_states.device)
    alive = torch.ones_like(lengths, dtype=torch.bool)
    states, imagined = start_states, 0
    while imagined < horizon and alive.any():
        steps = min(chunk, horizon - imagined)
        rollout = imagine_rollout(model, states, greedy, steps)
        lengths += (rollout.valid & alive[:, None]).sum(dim=1)
        alive &= rollout.valid[:, -1] & ~rollout.dones[:, -1]
        states, imagined = rollout.next_states[:, -1], imagined + steps
        if lengths.sum() + alive.sum() * (horizon - imagined) < give_up_below:
            break
    return lengths


@torch.no_grad()
def screen_policy(
    agent: DQNAgent,
    model: WorldModel | WorldModelEnsemble,
    buffer: ReplayBuffer,
    horizon: int,
    num_starts: int,
) -> bool:
    """Let the acting network take the learner's weights only if the model vouches for them.

    Imagines greedy episodes of up to `horizon` steps with both networks from the same real
    episode-start states; the learner is accepted when its imagined episodes last at least as long
    in total. A DQN's greedy policy can collapse between two evaluations and recover later; the
    screen keeps the agent on the last policy the model rated best meanwhile (the learner keeps
    learning). Returns whether the learner was accepted.
    """
    starts = buffer.episode_starts()
    rows = starts[torch.randint(len(starts), (num_starts,), generator=agent.generator)]
    states = buffer.state[rows]
    bar = imagined_episode_lengths(model, states, agent.acting_network, horizon).sum().item()
    learner = imagined_episode_lengths(model, states, agent.q_network, horizon, give_up_below=bar)
    accepted = learner.sum().item() >= bar
    if accepted:
        agent.acting_network.load_state_dict(agent.q_network.state_dict())
    return accepted


def eval_seeds(seed: int, evaluation: int, episodes: int) -> list[int]:
    """Reset seeds of the `evaluation`-th evaluation of run `seed`: the same for every arm."""
    return [10_000 * (seed + 1) + 100 * evaluation + i for i in range(episodes)]


@torch.no_grad()
def evaluate_policy(q_function: nn.Module, seeds: list[int], device: torch.device) -> float:
    """Mean return of greedy episodes, one per seed, run side by side (one batched forward).

    Args:
        q_function: maps (B, S) states to (B, A) action values (any DQN's Q-network).
        seeds: reset seed of each evaluation environment.
    """
    envs = [gym.make(ENV_ID) for _ in seeds]
    states = np.stack([env.reset(seed=seed)[0] for env, seed in zip(envs, seeds, strict=True)])
    returns = np.zeros(len(envs))
    running = np.ones(len(envs), dtype=bool)
    while running.any():
        actions = q_function(torch.as_tensor(states, device=device)).argmax(1).cpu().numpy()
        for i in np.flatnonzero(running):
            states[i], reward, terminated, truncated, _ = envs[i].step(int(actions[i]))
            returns[i] += reward
            running[i] = not (terminated or truncated)
    for env in envs:
        env.close()
    return float(returns.mean())


def linear_epsilon(cfg: Config, step: int) -> float:
    fraction = min(step / cfg.exploration_steps, 1.0)
    return cfg.epsilon_start + fraction * (cfg.epsilon_end - cfg.epsilon_start)


def run_length(cfg: Config, solved_at: int | None) -> int:
    """Real steps a run lasts: at least min_steps and steps_after_solve past the first solve, so a
    run that has not solved goes on (up to max_steps) until it does."""
    if solved_at is None:
        return cfg.max_steps
    end = max(cfg.min_steps, solved_at + cfg.steps_after_solve)
    return min(end, cfg.max_steps)


class ProbeContext(NamedTuple):
    """What a probe may look at, at each evaluation (it must not change any of it)."""

    config: Config
    step: int
    agent: DQNAgent
    model: WorldModel | WorldModelEnsemble | None  # None before the model's first fit
    buffer: ReplayBuffer
    eval_seeds: list[int]
    device: torch.device


Probe = Callable[[ProbeContext], dict]


def new_world_model(cfg: Config, device: torch.device) -> WorldModel | WorldModelEnsemble:
    config = WorldModelConfig(hidden_size=cfg.model_hidden_size)
    if cfg.ensemble_size > 1:
        return WorldModelEnsemble(config, cfg.ensemble_size).to(device)
    return WorldModel(config).to(device)


def train_dyna_agent(
    cfg: Config, seed: int, show_progress: bool = False, probe: Probe | None = None
) -> dict:
    """One run of Dyna-DQN with K = cfg.planning_steps (K = 0: plain DQN) on one seed.

    `probe`, if given, is called at every evaluation and its dicts are returned as "probes"
    (app.experiments measures the model there). It gets its own random numbers, so a probed run
    learns exactly as an unprobed one.
    Returns the evaluation curve and the figures defined in the module docstring.
    """
    configure_threads()
    device = resolve_device(cfg.device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    agent = DQNAgent(cfg, device, generator)
    buffer = ReplayBuffer(min(cfg.buffer_size, cfg.max_steps), device)
    use_model = cfg.planning_steps > 0
    model: WorldModel | WorldModelEnsemble | None = None
    if use_model and cfg.warm_start:
        model = load_world_model(CHECKPOINT_PATH, device).train()
    elif use_model:
        model = new_world_model(cfg, device)
    model_optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True) if model else None
    model_ready = cfg.warm_start

    env = gym.make(ENV_ID)
    state, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    episode = 0
    eval_steps, eval_returns, probes = [], [], []
    solved_at, wall_to_solve, imagined_total = None, None, 0
    screens, accepted = 0, 0
    screened = agent.acting_network is not agent.q_network  # a copy: Dyna with a screen
    proven = False  # screened, and the latest real episode reached the time limit: the model rests
    started = time.perf_counter()
    bar = progress(
        total=cfg.max_steps,
        desc=f"K={cfg.planning_steps} seed {seed}",
        unit="step",
        disable=None if show_progress else True,
    )

    step = 0
    while step < run_length(cfg, solved_at):
        # -- act in the real environment
        epsilon = linear_epsilon(cfg, step)
        if step < cfg.learning_starts:
            action = int(env.action_space.sample())
        else:
            state_t = torch.as_tensor(state, device=device)[None]
            action = int(agent.select_action(state_t, epsilon, agent.acting_network).item())
        next_state, reward, terminated, truncated, _ = env.step(action)
        buffer.add(state, action, reward, next_state, terminated, truncated, episode)
        step += 1
        if terminated or truncated:  # either ends the episode; only `terminated` cuts TD targets
            proven = screened and not terminated
            state, _ = env.reset()
            episode += 1
        else:
            state = next_state

        # TODO(phase 5): the Dyna loop, once `step >= cfg.learning_starts`: real Q-updates from the
        # replay buffer, a world-model refit every `cfg.model_train_interval` steps, and K
        # imagined updates per real step.
        # HINT: cfg.real_updates x agent.train_on_batch(buffer.sample(cfg.batch_size, generator,
        #       cfg.terminal_samples)).
        # HINT: before its first fit the model needs model.set_normalization(...) on the buffer;
        #       phase 3's train_epoch does the fitting. With K = 0 (`model is None`) skip the model.
        # HINT: with a screen (`screened`), every cfg.screen_interval steps after the warm-up
        #       (step - cfg.learning_starts + 1 divisible by it) count a screen in `screens` and
        #       its verdict, screen_policy(...), in `accepted`; while `proven`, skip both the
        #       imagined updates and the screen.
        # HINT: phase 6 also needs: no refit after the first when cfg.refit_model is False, and
        #       cfg.max_disagreement passed on to _train_on_simulated_data.
        # ### BEGIN SOLUTION (phase 5: train_dyna_agent)
        if step >= cfg.learning_starts:
            # -- learn from real experience
            for _ in range(cfg.real_updates):
                batch = buffer.sample(cfg.batch_size, generator, cfg.terminal_samples)
                agent.train_on_batch(batch)
            # -- keep the world model up to date with the agent's own data
            refit_due = (step - cfg.learning_starts) % cfg.model_train_interval == 0
            if model is not None and refit_due and (cfg.refit_model or not model_ready):
                epochs = 1
                if not model_ready:  # first fit: normalisation statistics from the buffer
                    data = buffer.as_batch()
                    model.set_normalization(data["state"], data["next_state"], data["terminated"])
                    epochs, model_ready = cfg.model_initial_epochs, True
                for _ in range(epochs):  # phase 3's own training epoch, on a sample of the buffer
                    sample = buffer.sample(min(cfg.model_sample, buffer.size), generator)
                    train_epoch(model, model_optimizer, sample, 128, generator)
                model.eval()
            # -- learn from imagined experience
            if model is not None and model_ready and not proven:
                imagined_total += _train_on_simulated_data(
                    agent,
                    model,
                    buffer,
                    cfg.planning_steps,
                    cfg.rollout_length,
                    cfg.batch_size,
                    epsilon,
                    cfg.max_disagreement,
                )
                if screened and (step - cfg.learning_starts + 1) % cfg.screen_interval == 0:
                    screens += 1
                    accepted += screen_policy(
                        agent, model, buffer, cfg.screen_horizon, cfg.screen_starts
                    )
        # ### END SOLUTION

        if step % cfg.eval_interval == 0:
            seeds = eval_seeds(seed, len(eval_steps), cfg.eval_episodes)
            score = evaluate_policy(agent.acting_network, seeds, device)
            eval_steps.append(step)
            eval_returns.append(score)
            if probe is not None:
                ready = model if model_ready else None
                probes.append(probe(ProbeContext(cfg, step, agent, ready, buffer, seeds, device)))
            if solved_at is None and score >= SOLVED_RETURN:
                solved_at, wall_to_solve = step, time.perf_counter() - started
            bar.set_postfix(eval_return=f"{score:.0f}")
        bar.update(1)
    bar.close()
    env.close()
    run = summarize_run(
        cfg,
        seed,
        eval_steps,
        eval_returns,
        solved_at,
        wall_to_solve,
        time.perf_counter() - started,
        agent.updates,
        imagined_total,
        agent.acting_network.state_dict(),  # the evaluated network
    )
    run["screens"], run["screens_accepted"] = screens, accepted
    if probe is not None:
        run["probes"] = probes
    return run


def summarize_run(
    cfg,
    seed,
    eval_steps,
    eval_returns,
    solved_at,
    wall_to_solve,
    wall_total,
    updates,
    imagined,
    q_weights,
) -> dict:
    """One run's record: its curve plus steps-to-solve, stability, AUC and wall time."""
    steps, returns = np.array(eval_steps), np.array(eval_returns)
    stability = None
    if solved_at is not None:
        after = returns[steps > solved_at][:10]
        stability = float((after >= SOLVED_RETURN).mean()) if len(after) else None
    return {
        "seed": seed,
        "planning_steps": getattr(cfg, "planning_steps", 0),
        "eval_steps": eval_steps,
        "eval_returns": eval_returns,
        "steps_to_solve": solved_at,
        "stability": stability,
        "auc_10k": float(returns[steps <= 10_000].mean()),
        "wall_s": wall_to_solve,
        "wall_total_s": wall_total,
        "updates": updates,
        "imagined_transitions": imagined,
        "q_weights": q_weights,
    }


# ----------------------------------------------------------------------------- many runs


def _run(args: tuple[Config, int]) -> dict:
    cfg, seed = args
    return train_dyna_agent(cfg, seed)


def run_many(jobs: list[tuple[Config, int]], workers: int, desc: str = "runs") -> list[dict]:
    """Run `train_dyna_agent` for each (config, seed), in `workers` processes of one thread.

    Returns the runs in the order of `jobs`. The costliest runs (most updates per real step)
    start first, so that the cheap ones fill the gaps at the end instead of one long run finishing
    alone.
    """
    if workers == 1 or len(jobs) == 1:
        # One thread, as in the worker processes: the thread count changes the order of the sums
        # in a matrix product, so a seed's run is the same for any --workers only this way.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return [_run(job) for job in progress(jobs, desc=desc, unit="run")]
        finally:
            torch.set_num_threads(threads)
    costliest_first = sorted(
        range(len(jobs)), key=lambda i: -(jobs[i][0].real_updates + jobs[i][0].planning_steps)
    )
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        ordered = pool.imap(_run, [jobs[i] for i in costliest_first])
        finished = list(progress(ordered, total=len(jobs), desc=desc, unit="run"))
        pool.close()  # a clean shutdown; leaving it to `with` (terminate) can make
        pool.join()  # multiprocessing warn about a leaked semaphore at exit
    runs: list[dict] = [{}] * len(jobs)
    for i, run in zip(costliest_first, finished, strict=True):
        runs[i] = run
    return runs


def aggregate(runs: list[dict]) -> dict:
    """The figures of one arm over its seeds."""
    solves = [run["steps_to_solve"] for run in runs]
    solved = [s for s in solves if s is not None]
    walls = [run["wall_s"] for run in runs if run["wall_s"] is not None]
    stabilities = [run["stability"] for run in runs if run["stability"] is not None]
    return {
        "seeds": [run["seed"] for run in runs],
        "steps_to_solve": solves,
        "median_steps": _median_or_none([s if s is not None else math.inf for s in solves]),
        "worst_steps": max(solved) if len(solved) == len(solves) else None,
        "solved": f"{len(solved)}/{len(solves)}",
        "stability": float(np.mean(stabilities)) if stabilities else None,
        "auc_10k": float(np.mean([run["auc_10k"] for run in runs])),
        "wall_s": [run["wall_s"] for run in runs],
        "median_wall_s": _median_or_none(walls),
    }


def _median_or_none(values: list[float]) -> float | None:
    """Median, or None when it is not finite (half or more of the runs never solved)."""
    median = float(np.median(values)) if values else math.inf
    return median if math.isfinite(median) else None


def learning_curves(runs: list[dict], until: int) -> tuple[np.ndarray, np.ndarray]:
    """(T,) evaluation steps and (R, T) returns up to `until`, common to all runs."""
    steps = np.array(runs[0]["eval_steps"])
    steps = steps[steps <= until]
    returns = np.array([run["eval_returns"][: len(steps)] for run in runs])
    return steps, returns


def mean_and_ci(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the first axis of (R, T) `values` and the half-width of its 95% confidence
    interval (normal approximation; zero for a single run)."""
    mean = values.mean(axis=0)
    if len(values) < 2:
        return mean, np.zeros_like(mean)
    return mean, 1.96 * values.std(axis=0, ddof=1) / np.sqrt(len(values))


def draw_learning_curves(ax, arms: dict[str, list[dict]], until: int) -> None:
    """Evaluation return against real steps on `ax`: mean and 95% confidence band per arm."""
    for i, (name, runs) in enumerate(arms.items()):
        steps, returns = learning_curves(runs, until)
        mean, half = mean_and_ci(returns)
        color = COLORS.get(name.split(" ")[0], CYCLE[i % len(CYCLE)])
        ax.plot(steps, mean, color=color, lw=2, label=f"{name} ({len(runs)} seeds)")
        low, high = np.clip(mean - half, 0, 500), np.clip(mean + half, 0, 500)
        ax.fill_between(steps, low, high, color=color, alpha=0.2, lw=0)
    ax.axhline(SOLVED_RETURN, color="#444444", ls=":", lw=1, label="solved (475)")
    ax.set_xlabel("real environment steps (evaluation episodes not counted)")
    ax.set_ylabel("evaluation return\n(mean of 10 greedy episodes)")
    ax.set_ylim(0, 520)
    ax.set_xlim(0, until)
    ax.legend(loc="lower right")


def plot_comparison(
    arms: dict[str, list[dict]],
    path: Path,
    caption: str,
    until: int = 10_000,
    meta: dict | None = None,
    title: str = "Model-free DQN vs Dyna-DQN on CartPole-v1",
) -> None:
    """Evaluation return against real steps, mean and 95% confidence band over seeds, per arm."""
    fig, axes = new_figure(1, 1, width=8.0, height=4.6)
    draw_learning_curves(axes[0, 0], arms, until)
    axes[0, 0].set_title(
        f"{title}; band: 95% confidence interval of the mean over seeds", fontsize=10
    )
    add_caption(fig, caption)
    save_figure(fig, path, meta)


def format_table(arms: dict[str, dict], auc_label: str = "AUC 10k") -> str:
    """Markdown table: steps-to-solve per seed and the summary figures of each arm."""
    seeds = next(iter(arms.values()))["seeds"]
    header = (
        "| arm | "
        + " | ".join(f"seed {s}" for s in seeds)
        + f" | median | solved | stability | {auc_label} | median wall s |"
    )
    lines = [header, "|" + " --- |" * (len(seeds) + 6)]
    for name, a in arms.items():
        cells = [f"{s:,}" if s is not None else "–" for s in a["steps_to_solve"]]
        fmt = lambda x, f: format(x, f) if x is not None else "–"  # noqa: E731
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {fmt(a['median_steps'], ',.0f')} | "
            f"{a['solved']} | {fmt(a['stability'], '.2f')} | {a['auc_10k']:.0f} | "
            f"{fmt(a['median_wall_s'], '.1f')} |"
        )
    return "\n".join(lines)


def save_q_network(path: Path, weights: dict, cfg: Config) -> None:
    save_checkpoint(path, Q_KIND, weights, {"hidden_size": cfg.hidden_size}, meta=run_metadata(cfg))


def greedy_policy_from_checkpoint(path: Path) -> Callable[[np.ndarray], int]:
    """A numpy-state -> action greedy policy from a saved Q-network."""
    payload = load_checkpoint(path, Q_KIND, AGENT_COMMAND)
    network = q_network(payload["config"]["hidden_size"])
    network.load_state_dict(payload["state_dict"])
    network.eval()

    @torch.inference_mode()
    def act(state: np.ndarray) -> int:
        return int(network(torch.as_tensor(state)[None]).argmax(1).item())

    return act


def main(cfg: Config) -> dict:
    resolve_device(cfg.device)  # fail fast on a bad --device
    if cfg.warm_start:
        load_world_model(CHECKPOINT_PATH)  # fail fast, before any run starts
    dyna_k = max(cfg.planning_steps, 1)
    arms_cfg = {
        "dqn (K=0)": replace(cfg, planning_steps=0),
        f"dyna (K={dyna_k}, k={cfg.rollout_length})": replace(cfg, planning_steps=dyna_k),
    }
    jobs = [(arm_cfg, seed) for arm_cfg in arms_cfg.values() for seed in cfg.seeds]
    runs = run_many(jobs, cfg.workers)
    arms = {
        name: runs[i * len(cfg.seeds) : (i + 1) * len(cfg.seeds)] for i, name in enumerate(arms_cfg)
    }

    summary = {name: aggregate(arm_runs) for name, arm_runs in arms.items()}
    save_q_network(cfg.q_checkpoint, arms[next(reversed(arms))][0]["q_weights"], cfg)
    for arm_runs in arms.values():
        for run in arm_runs:
            run.pop("q_weights")
    save_json(cfg.results, {"arms": summary, "runs": arms, **run_metadata(cfg)})
    plot_comparison(
        arms,
        cfg.plot,
        (
            f"Seeds {', '.join(map(str, cfg.seeds))}. Both arms: Q-net {cfg.hidden_size}x2, lr "
            f"{cfg.lr:g}, batch {cfg.batch_size} ({cfg.terminal_samples} of them real "
            f"terminations), {cfg.q_loss} loss, {target_rule(cfg)}, "
            f"{'Double DQN, ' if cfg.double_q else ''}"
            f"epsilon {cfg.epsilon_start:g}->{cfg.epsilon_end:g} over "
            f"{cfg.exploration_steps:,} steps, {cfg.learning_starts} random warm-up steps. "
            f"Dyna: world "
            f"model retrained on the agent's own buffer every {cfg.model_train_interval} steps"
            f"{' (warm-started)' if cfg.warm_start else ''}, K={dyna_k} imagined updates per real "
            f"step from {cfg.rollout_length}-step rollouts"
            f"{screen_rule(cfg)}."
        ),
        meta=run_metadata(cfg),
    )
    print(format_table(summary))
    at_once, cores = min(cfg.workers, len(jobs)), os.cpu_count() or 1
    if at_once > cores:
        print(f"(wall s: {at_once} runs at a time shared {cores} CPU cores)")
    dqn, dyna = summary.values()
    headline = (
        f"median steps to solve: DQN {_fmt_steps(dqn['median_steps'])}, Dyna "
        f"{_fmt_steps(dyna['median_steps'])}"
    )
    print(headline)
    print(f"Wrote {cfg.plot}, {cfg.results} and {cfg.q_checkpoint}")
    return {"arms": summary, "headline": headline}


def target_rule(cfg: Config) -> str:
    if cfg.tau == 1.0:
        return f"target copy every {cfg.target_update_interval} updates"
    return f"Polyak target (tau {cfg.tau:g} every {cfg.target_update_interval} updates)"


def screen_rule(cfg: Config) -> str:
    if cfg.screen_interval == 0:
        return ""
    return (
        f"; it acts with a copy of its Q-network that takes the learner's weights only when the "
        f"model's imagined episodes ({cfg.screen_horizon} steps) last as long, checked every "
        f"{cfg.screen_interval} steps; while its latest real episode reached the time limit the "
        f"model rests (no screen, no imagined updates)"
    )


def _fmt_steps(steps: float | None) -> str:
    return "not solved" if steps is None or math.isinf(steps) else f"{steps:,.0f}"


if __name__ == "__main__":
    cli(main, Config)
