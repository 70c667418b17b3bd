"""Phase 4: plan with the learned model: imagined rollouts, and how fast their error compounds.

    uv run python -m app.plan_with_model

Reads checkpoints/world_model.pt (from `python -m app.train_model`).
Writes plots/trajectory_comparison.png (real vs imagined state variables for a few episodes),
plots/compounding_error.png (error against rollout length, over many start states) and
plots/dream_vs_reality.gif (one episode animated, real and imagined CartPole side by side).

Open-loop evaluation: record real episodes, then feed the model the same start state and the same
action sequence and let it run on its own predictions. A 1-step error that looks tiny (1e-5) is fed
back in as the next input, so errors grow with the horizon; this is why Dyna-style agents only
trust short imagined rollouts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch

from app.common import (
    CHECKPOINT_PATH,
    COLLECT_COMMAND,
    DATA_PATH,
    ENV_ID,
    PLOTS_DIR,
    RESULTS_DIR,
    STATE_DIM,
    THETA_LIMIT,
    X_LIMIT,
    cli,
    configure_threads,
    progress,
    require,
    require_memory,
    require_positive,
    require_probability,
    resolve_device,
    seed_everything,
)
from app.planning_plots import (
    plot_compounding_error,
    plot_coverage_map,
    plot_trajectories,
    save_dream_gif,
)
from app.policies import TorchPolicy, mixed_policy, random_policy
from app.storage import load_transitions, require_file, require_writable, run_metadata, save_json
from app.train_model import load_world_model
from app.world_model import WorldModel


@dataclass
class Config:
    """Roll the trained world model out against real CartPole episodes."""

    checkpoint: Path = CHECKPOINT_PATH
    """the trained world model"""
    data: Path = DATA_PATH
    """the transitions the model was trained on: the coverage map draws where they lie, and the
    accuracy table measures the model on them"""
    plots_dir: Path = PLOTS_DIR
    """where to write the figures"""
    results: Path = RESULTS_DIR / "model_accuracy.json"
    """where to write the compounding error and the accuracy table"""
    num_episodes: int = 200
    """B: real episodes (start states) to compare against"""
    horizon: int = 100
    """H: open-loop rollout length in steps"""
    policy: str = "mixed"
    """policy that drives the real episodes: random | mixed (a balancing heuristic with random
    actions; its episodes last long enough to see errors compound)"""
    epsilon: float = 0.5
    """random-action probability of the mixed policy"""
    error_threshold: float = 1e-2
    """mean squared state error (raw units) that counts as 'diverged'"""
    num_plotted: int = 3
    """episodes drawn in trajectory_comparison.png"""
    seed: int = 1
    """seeds the real episodes (1, not data collection's 0, so the episodes are new to the model)"""
    animation: bool = True
    """also write plots/dream_vs_reality.gif: the longest episode, real and imagined side by side"""
    coverage_states: int = 10_000
    """states per row of the accuracy table (each checked against CartPole's own physics)"""
    map_cells: int = 41
    """cells per axis of each slice of the coverage map"""
    device: str = "cpu"
    """cpu, or cuda when a GPU is present"""

    def __post_init__(self) -> None:
        require_positive(
            self, "num_episodes", "horizon", "error_threshold", "num_plotted", "coverage_states",
            "map_cells",
        )  # fmt: skip
        require_memory(
            (self.coverage_states + 2 * 4 * self.map_cells**2) * STATE_DIM * 4 * 16,
            f"--coverage-states {self.coverage_states:,} and --map-cells {self.map_cells:,}",
        )
        require_probability(self, "epsilon")
        require_memory(
            self.num_episodes * (self.horizon + 1) * STATE_DIM * 4 * 8,
            f"--num-episodes {self.num_episodes:,} x --horizon {self.horizon:,}",
        )
        require(
            self.policy in ("random", "mixed"),
            f"--policy must be random or mixed, got {self.policy!r}",
        )


class Rollout(NamedTuple):
    """B imagined trajectories of H steps. Row b, step t is the transition s_t -a_t-> s_{t+1}."""

    states: torch.Tensor  # (B, H, S)
    actions: torch.Tensor  # (B, H) int64
    rewards: torch.Tensor  # (B, H)
    next_states: torch.Tensor  # (B, H, S)
    dones: torch.Tensor  # (B, H) bool: the model predicts the episode terminates at this step
    valid: torch.Tensor  # (B, H) bool: step was reached (no done predicted before it)


class RealTrajectories(NamedTuple):
    """B real episodes, truncated or padded to H steps."""

    states: np.ndarray  # (B, H + 1, S): s_0 .. s_H (held constant after the episode ends)
    actions: np.ndarray  # (B, H) int64
    alive: np.ndarray  # (B, H + 1) bool: s_t is a real state of the running episode


@torch.no_grad()  # no_grad rather than inference_mode: the Dyna agent trains on these tensors
def imagine_rollout(
    model: WorldModel,
    start_states: torch.Tensor,
    policy_or_actions: TorchPolicy | torch.Tensor,
    horizon: int,
    stop_at_done: bool = True,
) -> Rollout:
    """Roll `model` forward from `start_states`, entirely in imagination.

    Args:
        model: a trained `WorldModel`, used through its batched `step`.
        start_states: (B, S) real states, raw units.
        policy_or_actions: a policy mapping (B, S) states to (B,) actions, or a fixed (B, H)
            action sequence (open-loop replay).
        horizon: H, steps to imagine.
        stop_at_done: mark steps after a predicted done invalid, as a real episode would end there.
            False keeps every step valid (used to measure open-loop error against real episodes).
    Returns:
        A `Rollout` of (B, H) tensors; use `valid` to keep only the steps that happened.
    """
    B, S = start_states.shape
    device = start_states.device
    states = torch.zeros(B, horizon, S, device=device)
    next_states = torch.zeros(B, horizon, S, device=device)
    actions = torch.zeros(B, horizon, dtype=torch.long, device=device)
    rewards = torch.zeros(B, horizon, device=device)
    dones = torch.zeros(B, horizon, dtype=torch.bool, device=device)
    valid = torch.zeros(B, horizon, dtype=torch.bool, device=device)

    # TODO(phase 4): step the model `horizon` times from `start_states`, filling the tensors above.
    # HINT: the action at step t is policy_or_actions[:, t] for a tensor, else
    #       policy_or_actions(state); `model.step` then `model.is_done` give s', r and done.
    # HINT: `alive` tracks trajectories with no done yet: valid[:, t] = alive (the done step
    #       itself is valid), and after a done (when stop_at_done) the trajectory stays dead;
    #       stop early once none is alive. Fill the tensors above in place: states[:, t] = ...
    # ### BEGIN SOLUTION (phase 4: imagine_rollout)
    state = start_states
    alive = torch.ones(B, dtype=torch.bool, device=device)
    for t in range(horizon):
        if isinstance(policy_or_actions, torch.Tensor):
            action = policy_or_actions[:, t]
        else:
            action = policy_or_actions(state)
        next_state, reward, done_probability = model.step(state, action)
        done = model.is_done(done_probability)
        states[:, t], actions[:, t], rewards[:, t] = state, action, reward
        next_states[:, t], dones[:, t], valid[:, t] = next_state, done, alive
        if stop_at_done:
            alive = alive & ~done
            if not alive.any():
                break
            # An ended trajectory stays where it ended instead of drifting into nonsense states.
            next_state = torch.where(alive[:, None], next_state, state)
        state = next_state
    # ### END SOLUTION
    return Rollout(states, actions, rewards, next_states, dones, valid)


def collect_real_trajectories(
    env: gym.Env, policy, num_episodes: int, horizon: int, seed: int
) -> RealTrajectories:
    """Run `num_episodes` real episodes for up to `horizon` steps each with a numpy `policy`."""
    states = np.zeros((num_episodes, horizon + 1, STATE_DIM), np.float32)
    actions = np.zeros((num_episodes, horizon), np.int64)
    alive = np.zeros((num_episodes, horizon + 1), np.bool_)
    state, _ = env.reset(seed=seed)
    for episode in progress(range(num_episodes), desc="real episodes", unit="episode"):
        states[episode, 0], alive[episode, 0] = state, True
        for t in range(horizon):
            action = policy(state)
            state, _, terminated, truncated, _ = env.step(action)
            actions[episode, t] = action
            states[episode, t + 1], alive[episode, t + 1] = state, True
            if terminated or truncated:  # s_{t+1} is still real: the model must predict it
                states[episode, t + 2 :] = state  # pad; masked out by `alive`
                break
        state, _ = env.reset()
    return RealTrajectories(states, actions, alive)


class Accuracy(NamedTuple):
    """Open-loop error of the model against real episodes."""

    squared_error: np.ndarray  # (B, H): mean over S of (imagined - real)^2 at step h+1; NaN once
    #                              the real episode has ended
    imagined_states: np.ndarray  # (B, H + 1, S)

    def per_step(self) -> dict[str, np.ndarray]:
        """(H,) summaries over start states: mean, 10th/50th/90th percentile, number of episodes."""
        e = self.squared_error
        counted = ~np.isnan(e)
        steps = counted.any(axis=0)
        e = e[:, steps]
        return {
            "step": np.flatnonzero(steps) + 1,
            "mean": np.nanmean(e, axis=0),
            "p10": np.nanpercentile(e, 10, axis=0),
            "median": np.nanmedian(e, axis=0),
            "p90": np.nanpercentile(e, 90, axis=0),
            "count": counted[:, steps].sum(axis=0),
        }


def evaluate_model_accuracy(model: WorldModel, real: RealTrajectories) -> Accuracy:
    """Replay each real episode's actions through the model open-loop from its real start state.

    Args:
        model: the world model (its device is used).
        real: B real episodes with (B, H + 1, S) states, (B, H) actions and (B, H + 1) alive masks.
    Returns:
        `Accuracy` whose (B, H) `squared_error` counts a step only while the real episode is alive.
    """
    device = next(model.parameters()).device
    # TODO(phase 4): replay the real actions open-loop from the real start states and compare.
    # HINT: imagine_rollout(model, start, actions, H, stop_at_done=False) keeps going past a
    #       predicted done, so every step can be compared with the real episode.
    # HINT: the error at step h is the mean over S of (imagined s_h - real s_h)^2, in column
    #       h - 1 of the (B, H) squared_error; the model's s_h is rollout.next_states[:, h - 1].
    #       Set it to NaN where real.alive[:, 1:] is False (the real episode had ended).
    # HINT: leave imagined ((B, H + 1, S) numpy: the real s_0, then the model's s_1 .. s_H)
    #       and squared_error ((B, H) numpy).
    # ### BEGIN SOLUTION (phase 4: evaluate_model_accuracy)
    start = torch.as_tensor(real.states[:, 0], device=device)  # (B, S)
    actions = torch.as_tensor(real.actions, device=device)  # (B, H)
    horizon = actions.shape[1]
    rollout = imagine_rollout(model, start, actions, horizon, stop_at_done=False)
    imagined = torch.cat([start[:, None], rollout.next_states], dim=1).cpu().numpy()  # (B, H+1, S)
    squared_error = ((imagined[:, 1:] - real.states[:, 1:]) ** 2).mean(axis=-1)  # (B, H)
    squared_error[~real.alive[:, 1:]] = np.nan  # only steps the real episode reached
    # ### END SOLUTION
    assert squared_error.shape == real.actions.shape, "squared_error must be (B, H)"
    assert imagined.shape == real.states.shape, "imagined states must be (B, H + 1, S)"
    return Accuracy(squared_error, imagined)


@torch.no_grad()
def predicted_ends(model: WorldModel, real: RealTrajectories) -> np.ndarray:
    """(B,) the step at which the model, fed each real episode's actions, says the episode ended
    (H + 1 where it never does): where an imagined rollout of it would stop."""
    device = next(model.parameters()).device
    start = torch.as_tensor(real.states[:, 0], device=device)
    actions = torch.as_tensor(real.actions, device=device)
    dones = imagine_rollout(model, start, actions, actions.shape[1]).dones.cpu().numpy()  # (B, H)
    return np.where(dones.any(axis=1), dones.argmax(axis=1) + 1, actions.shape[1] + 1)


def first_crossing(step: np.ndarray, error: np.ndarray, threshold: float) -> int | None:
    """The first rollout step whose error is above `threshold`, or None."""
    above = np.flatnonzero(error > threshold)
    return int(step[above[0]]) if len(above) else None


# ----------------------------------------------------------------------------- the true physics


class TrueRollout(NamedTuple):
    """What real CartPole does from the same start states under the same actions."""

    next_states: np.ndarray  # (B, H, S) s_{t+1}; held at the last real state once the episode ended
    terminated: np.ndarray  # (B, H) bool: the real episode ends at this step
    reached: np.ndarray  # (B, H) bool: the real episode was still running before this step


def true_rollout(start_states: np.ndarray, actions: np.ndarray) -> TrueRollout:
    """Step gymnasium's own CartPole physics from arbitrary (B, S) start states with (B, H) actions.

    The ground truth for imagined transitions: same start, same actions, the real equations.
    """
    B, H = actions.shape
    next_states = np.zeros((B, H, STATE_DIM), np.float32)
    terminated = np.zeros((B, H), bool)
    reached = np.zeros((B, H), bool)
    with gym.make(ENV_ID) as env:
        physics = env.unwrapped  # no time limit, no wrappers: only the equations of motion
        physics.reset(seed=0)
        for b in range(B):
            physics.state = np.asarray(start_states[b], np.float64)
            physics.steps_beyond_terminated = None
            state, running = np.asarray(start_states[b], np.float32), True
            for t in range(H):
                reached[b, t] = running
                if running:
                    state, _, ended, _, _ = physics.step(int(actions[b, t]))
                    terminated[b, t], running = ended, not ended
                next_states[b, t] = state
    return TrueRollout(next_states, terminated, reached)


def wrong_transitions(rollout: Rollout, truth: TrueRollout, threshold: float) -> np.ndarray:
    """(B, H) bool over the valid imagined steps: the imagined transition is wrong.

    Wrong means the imagined next state is more than `threshold` (squared error, raw units, mean
    over S) from the true one, the imagined done disagrees with the real termination, or the
    imagined episode goes on although the real one had already ended.
    """
    error = ((rollout.next_states.cpu().numpy() - truth.next_states) ** 2).mean(axis=-1)
    done_mismatch = rollout.dones.cpu().numpy() != truth.terminated
    return rollout.valid.cpu().numpy() & (~truth.reached | (error > threshold) | done_mismatch)


# ----------------------------------------------------------------------------- where to trust it


class OneStep(NamedTuple):
    """The model's one-step predictions from N states, checked against CartPole's own physics."""

    squared_error: np.ndarray  # (N,) mean over S of (predicted s' - true s')^2, raw units
    predicted_done: np.ndarray  # (N,) bool: the model says the episode ends here
    terminated: np.ndarray  # (N,) bool: it truly does


@torch.no_grad()
def one_step_accuracy(model: WorldModel, states: np.ndarray, actions: np.ndarray) -> OneStep:
    """Step the model and gymnasium's physics (`true_rollout`) once from the same (N, S) states
    with the same (N,) actions, and compare."""
    device = next(model.parameters()).device
    truth = true_rollout(states, actions[:, None])
    state = torch.as_tensor(states, dtype=torch.float32, device=device)
    next_state, _, done_probability = model.step(state, torch.as_tensor(actions, device=device))
    error = ((next_state.cpu().numpy() - truth.next_states[:, 0]) ** 2).mean(axis=-1)
    return OneStep(error, model.is_done(done_probability).cpu().numpy(), truth.terminated[:, 0])


def summarize_one_step(check: OneStep) -> dict[str, float]:
    """The figures of one set of states: MSE, and the model's done against the true one."""
    predicted, actual = check.predicted_done, check.terminated
    hits = int((predicted & actual).sum())
    return {  # precision (recall) is None where the model (CartPole) never says "done"
        "states": len(actual),
        "state_mse": float(check.squared_error.mean()),
        "done_precision": hits / int(predicted.sum()) if predicted.any() else None,
        "done_recall": hits / int(actual.sum()) if actual.any() else None,
        "false_done_rate": float((predicted & ~actual).sum() / max(int((~actual).sum()), 1)),
    }


# Half-widths of the state box the map and the table cover: CartPole's non-terminal region in x
# and theta, and the velocities a balancing or falling pole reaches.
STATE_BOX = np.array([X_LIMIT, 2.0, THETA_LIMIT, 2.5])
# The slices of the coverage map: two state variables on a grid, the other two near zero.
SLICES = {
    "position x angle": ((0, STATE_BOX[0]), (2, STATE_BOX[2])),
    "velocity x angular velocity": ((1, STATE_BOX[1]), (3, STATE_BOX[3])),
}


def coverage_map(model: WorldModel, cells: int, rng: np.random.Generator) -> dict[str, dict]:
    """Per slice: the (cells, cells) one-step error and false-done rate, each cell averaged over
    8 states drawn within it, half with each action (the other two variables within +-5% of
    their range around zero)."""
    maps = {}
    for name, ((i, half_i), (j, half_j)) in SLICES.items():
        edges_i, edges_j = (
            np.linspace(-half_i, half_i, cells + 1),
            np.linspace(-half_j, half_j, cells + 1),
        )
        scale = STATE_BOX * 0.05
        states = rng.uniform(-1, 1, (cells, cells, 8, STATE_DIM)) * scale
        width_i, width_j = np.diff(edges_i)[0], np.diff(edges_j)[0]
        states[..., i] = edges_i[:-1, None, None] + rng.uniform(0, width_i, (cells, cells, 8))
        states[..., j] = edges_j[None, :-1, None] + rng.uniform(0, width_j, (cells, cells, 8))
        actions = np.tile(np.array([0, 1] * 4), (cells, cells, 1))
        check = one_step_accuracy(model, states.reshape(-1, STATE_DIM), actions.reshape(-1))
        false_done = check.predicted_done & ~check.terminated
        maps[name] = {
            "axes": (i, j), "edges": (edges_i, edges_j),
            "error": check.squared_error.reshape(cells, cells, 8).mean(-1),
            "false_done": false_done.reshape(cells, cells, 8).mean(-1),
            "terminal": check.terminated.reshape(cells, cells, 8).mean(-1),
        }  # fmt: skip
    return maps


def balancing_transitions(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, S) states and (count,) actions that a balancing policy visits (phase 3's
    heuristic, with 10% random actions): upright, slow, and wandering along the whole track.
    Gathered over as many episodes as it takes (CartPole ends each after 500 steps)."""
    rng = np.random.default_rng(seed)
    states, actions, have = [], [], 0
    with gym.make(ENV_ID) as env:
        limit = env.spec.max_episode_steps
        while have < count:
            episodes = math.ceil((count - have) / limit)
            real = collect_real_trajectories(env, mixed_policy(rng, 0.1), episodes, limit, seed)
            alive = real.alive[:, :-1] & real.alive[:, 1:]  # (B, H): s_t and s_t+1 both real
            states.append(real.states[:, :-1][alive])
            actions.append(real.actions[alive])
            have, seed = have + int(alive.sum()), seed + 1
    return np.concatenate(states)[:count], np.concatenate(actions)[:count]


def accuracy_table(
    model: WorldModel, data_states: np.ndarray, data_actions: np.ndarray, count: int, seed: int
) -> dict[str, dict[str, float]]:
    """The model's one-step accuracy where its data lie, where a balancing policy goes, in a box
    over the whole non-terminal region, and upright near the track's edge."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(data_states), size=min(count, len(data_states)), replace=False)
    box = rng.uniform(-1, 1, (count, STATE_DIM)) * STATE_BOX
    edge = rng.uniform(-1, 1, (count, STATE_DIM)) * np.array([1.0, 1.0, 0.05, 0.5])
    edge[:, 0] = rng.choice([-1, 1], count) * rng.uniform(1.0, 2.0, count)
    balancing = balancing_transitions(count, seed)
    sets = {
        "the training data": (data_states[rows], data_actions[rows]),
        "a balancing policy's states": balancing,
        "the whole region (a box)": (box, rng.integers(0, 2, count)),
        "upright, 1 < |x| < 2": (edge, rng.integers(0, 2, count)),
    }
    return {
        name: summarize_one_step(one_step_accuracy(model, states.astype(np.float32), actions))
        for name, (states, actions) in sets.items()
    }


def format_accuracy_table(table: dict[str, dict[str, float]]) -> str:
    lines = [
        "| states | 1-step MSE (raw units) | done precision | done recall | false done |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, f in table.items():
        precision, recall = (
            "–" if f[key] is None else f"{f[key]:.2f}" for key in ("done_precision", "done_recall")
        )
        lines.append(
            f"| {name} | {f['state_mse']:.1e} | {precision} | {recall} | "
            f"{f['false_done_rate']:.3f} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


OUTPUTS = (
    "trajectory_comparison.png",
    "compounding_error.png",
    "dream_vs_reality.gif",
    "model_coverage.png",
)


def main(cfg: Config) -> dict:
    require_writable(*(cfg.plots_dir / name for name in OUTPUTS), cfg.results)  # before the work
    configure_threads()
    device = resolve_device(cfg.device)
    model = load_world_model(cfg.checkpoint, device)
    data = load_transitions(require_file(cfg.data, COLLECT_COMMAND))
    rng = seed_everything(cfg.seed)
    policy = random_policy(rng) if cfg.policy == "random" else mixed_policy(rng, cfg.epsilon)
    balancer = mixed_policy(np.random.default_rng(cfg.seed + 1), 0.1)
    with gym.make(ENV_ID) as env:
        real = collect_real_trajectories(env, policy, cfg.num_episodes, cfg.horizon, cfg.seed)
        balanced = collect_real_trajectories(env, balancer, cfg.num_episodes, cfg.horizon, cfg.seed)
    accuracy = evaluate_model_accuracy(model, real)
    summary = accuracy.per_step()
    crossing = first_crossing(summary["step"], summary["mean"], cfg.error_threshold)
    balanced_summary = evaluate_model_accuracy(model, balanced).per_step()
    balanced_crossing = first_crossing(
        balanced_summary["step"], balanced_summary["mean"], cfg.error_threshold
    )

    setting = (
        f"{cfg.num_episodes} real episodes ({cfg.policy} policy"
        f"{f', epsilon {cfg.epsilon:g}' if cfg.policy == 'mixed' else ''}), seed {cfg.seed}, "
        f"model {cfg.checkpoint}."
    )
    meta = run_metadata(cfg)
    lengths = real.alive.sum(axis=1)
    longest = [int(i) for i in np.argsort(-lengths, kind="stable")[: cfg.num_plotted]]
    model_done = predicted_ends(model, real)
    trajectory_path = cfg.plots_dir / "trajectory_comparison.png"
    error_path = cfg.plots_dir / "compounding_error.png"
    plot_trajectories(
        real.states, real.alive, accuracy.imagined_states, accuracy.squared_error, model_done,
        longest, cfg.error_threshold, trajectory_path,
        f"The {len(longest)} longest of {setting} Open-loop: the model is fed each real "
        "episode's actions from its real start state; a dashed line ends where the model says the "
        "episode ended (x), as an imagined rollout would.",
        meta,
    )  # fmt: skip
    randomness = f" ({cfg.epsilon:g} random)" if cfg.policy == "mixed" else ""
    plot_compounding_error(
        {
            f"{cfg.policy} policy{randomness}": {**summary, "crossing": crossing},
            "balancing policy (0.1 random)": {**balanced_summary, "crossing": balanced_crossing},
        },
        cfg.error_threshold,
        error_path,
        f"{setting} Second curve: the same number of episodes driven by a balancing policy (the "
        "heuristic with 10% random actions): start states and actions where a good agent goes. "
        "Counted only while the real episode is running.",
        meta,
    )  # fmt: skip

    table = accuracy_table(model, data.state, data.action, cfg.coverage_states, cfg.seed)
    maps = coverage_map(model, cfg.map_cells, np.random.default_rng(cfg.seed))
    coverage_path = cfg.plots_dir / "model_coverage.png"
    plot_coverage_map(
        maps, data.state, coverage_path,
        f"Model {cfg.checkpoint}, trained on {len(data):,} transitions of {cfg.data}. Each cell: "
        "the model's one-step prediction from 8 states in it (both actions, the other two "
        "variables within 5% of zero), checked against gymnasium's own CartPole physics. "
        "Contours: where the training data lie (all of them, projected on the two variables; "
        "each line 10x the count of the next); hatched: CartPole itself ends the episode there.",
        meta,
    )  # fmt: skip
    written = [trajectory_path, error_path, coverage_path]
    if cfg.animation:
        episode = longest[0]
        length = int(real.alive[episode].sum())
        errors = accuracy.squared_error[episode, : length - 1]
        diverged = first_crossing(np.arange(1, length), errors, cfg.error_threshold)
        done_at = int(model_done[episode])
        gif_path = cfg.plots_dir / "dream_vs_reality.gif"
        save_dream_gif(
            real.states[episode, :length],
            accuracy.imagined_states[episode, :length],
            diverged,
            done_at if done_at < length else None,
            cfg.error_threshold,
            gif_path,
        )
        written.append(gif_path)

    at = {
        h: float(summary["mean"][summary["step"] == h][0])
        for h in (1, 5, 10, 25, 50)
        if h in summary["step"]
    }
    print(
        "Open-loop squared state error (raw units, mean over start states): "
        + ", ".join(f"{h} step{'s' if h > 1 else ''} {e:.1e}" for h, e in at.items())
    )
    if crossing is None:
        print(f"The mean error stays below {cfg.error_threshold:g} for all {cfg.horizon} steps.")
    elif crossing <= 2:
        print(
            f"The mean error exceeds {cfg.error_threshold:g} already at step {crossing}: this "
            "model is not accurate even one step ahead (too little data or training?)."
        )
    else:
        print(
            f"The mean error first exceeds {cfg.error_threshold:g} at step {crossing}: trust "
            f"imagined rollouts well short of that."
        )
    print("One-step accuracy against CartPole's own physics:")
    print(format_accuracy_table(table))
    save_json(
        cfg.results,
        {
            "compounding_error": {"crossing": crossing, "error_at": at},
            "balancing_policy": {"crossing": balanced_crossing},
            "one_step_accuracy": table,
            **meta,
        },
    )
    written.append(cfg.results)
    print(f"Wrote {', '.join(map(str, written))}")
    return {"crossing": crossing, "error_at": at, "accuracy": table}


if __name__ == "__main__":
    cli(main, Config)
