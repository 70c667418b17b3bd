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

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from app.common import (
    CHECKPOINT_PATH,
    ENV_ID,
    PLOTS_DIR,
    STATE_DIM,
    STATE_NAMES,
    STATE_UNITS,
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
from app.plotting import COLORS, CYCLE, add_caption, new_figure, save_figure
from app.policies import TorchPolicy, mixed_policy, random_policy
from app.storage import atomic_path, require_writable, run_metadata
from app.train_model import load_world_model
from app.world_model import WorldModel

# CartPole-v1 ends an episode when the cart or the pole crosses these (gymnasium's values).
X_LIMIT, THETA_LIMIT = 2.4, 12 * 2 * np.pi / 360


@dataclass
class Config:
    """Roll the trained world model out against real CartPole episodes."""

    checkpoint: Path = CHECKPOINT_PATH
    """the trained world model"""
    plots_dir: Path = PLOTS_DIR
    """where to write trajectory_comparison.png and compounding_error.png"""
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
    device: str = "cpu"
    """cpu, or cuda when a GPU is present"""

    def __post_init__(self) -> None:
        require_positive(self, "num_episodes", "horizon", "error_threshold", "num_plotted")
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


# ----------------------------------------------------------------------------- plots


def plot_trajectories(
    real: RealTrajectories,
    accuracy: Accuracy,
    episodes: list[int],
    threshold: float,
    path: Path,
    caption: str,
    meta: dict | None = None,
) -> None:
    fig, axes = new_figure(STATE_DIM, 1, width=8.0, height=2.0, sharex=True)
    limits = {0: X_LIMIT, 2: THETA_LIMIT}
    for color, episode in zip(CYCLE, episodes, strict=False):
        length = int(real.alive[episode].sum())
        t = np.arange(length)
        diverged = np.flatnonzero(accuracy.squared_error[episode, : length - 1] > threshold)
        for dim, ax in enumerate(axes[:, 0]):
            ax.plot(
                t,
                real.states[episode, :length, dim],
                color=color,
                lw=1.8,
                label=f"episode {episode}" if dim == 0 else None,
            )
            ax.plot(
                t, accuracy.imagined_states[episode, :length, dim], color=color, lw=1.8, ls="--"
            )
            if len(diverged):
                ax.axvline(diverged[0] + 1, color=color, ls=":", lw=1.2)
    for dim, ax in enumerate(axes[:, 0]):
        # Zoom on the real motion: a diverged imagination would otherwise flatten everything.
        shown = real.states[episodes][real.alive[episodes]][:, dim]
        low, high = shown.min(), shown.max()
        if dim in limits:
            low, high = min(low, -limits[dim]), max(high, limits[dim])
            for sign in (-1, 1):
                ax.axhline(sign * limits[dim], color="#888888", ls=":", lw=1)
        pad = 0.15 * (high - low)
        ax.set_ylim(low - pad, high + pad)
        ax.set_ylabel(f"{STATE_NAMES[dim]}\n[{STATE_UNITS[dim]}]")
    handles = axes[0, 0].get_legend_handles_labels()[0]
    handles += [
        Line2D([], [], color="black", lw=1.8, label="real"),
        Line2D([], [], color="black", lw=1.8, ls="--", label="imagined"),
        Line2D([], [], color="black", lw=1.2, ls=":", label=f"error > {threshold:g} from here"),
    ]
    axes[0, 0].legend(handles=handles, loc="upper left", ncol=2, fontsize=8)
    axes[-1, 0].set_xlabel("time step (20 ms each)")
    fig.suptitle(
        "Real CartPole (solid) vs the world model's open-loop imagination (dashed):\n"
        "same start state, same actions; grey lines are where CartPole ends an episode"
    )
    add_caption(fig, caption)
    save_figure(fig, path, meta)


def plot_compounding_error(
    summary: dict[str, np.ndarray],
    threshold: float,
    crossing: int | None,
    path: Path,
    caption: str,
    meta: dict | None = None,
) -> None:
    fig, axes = new_figure(
        2, 1, width=7.0, height=2.6, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax, ax_count = axes[:, 0]
    step = summary["step"]
    ax.plot(step, summary["mean"], color=COLORS["model"], lw=2, label="mean over start states")
    ax.plot(step, summary["median"], color=COLORS["model"], lw=1, ls="--", label="median")
    ax.fill_between(
        step,
        summary["p10"],
        summary["p90"],
        color=COLORS["model"],
        alpha=0.25,
        lw=0,
        label="10th-90th percentile",
    )
    ax.axhline(threshold, color="#444444", ls=":", lw=1, label=f"threshold {threshold:g}")
    if crossing is not None:
        ax.axvline(crossing, color="#444444", ls=":", lw=1)
        ax.annotate(
            f"mean crosses at step {crossing}",
            (crossing, threshold),
            xytext=(6, 6),
            textcoords="offset points",
            fontsize=9,
        )
    ax.set_yscale("log")
    ax.set_ylabel("squared state error\n(raw units, mean of 4 dims)")
    ax.legend(loc="lower right")
    ax.set_title("Compounding error: the model fed its own predictions, open-loop")
    ax_count.plot(step, summary["count"], color="#444444")
    ax_count.set_ylabel("real episodes\nstill running")
    ax_count.set_xlabel("rollout length (steps)")
    add_caption(fig, caption)
    save_figure(fig, path, meta)


def save_dream_gif(
    real: np.ndarray,
    imagined: np.ndarray,
    diverged_at: int | None,
    threshold: float,
    path: Path,
    every: int = 2,
) -> int:
    """Animate one episode: real CartPole (left) and the model's dream of it (right).

    Args:
        real, imagined: (T + 1, S) states of the same episode: same start state, same actions.
        diverged_at: the first step whose squared error passes `threshold` (None: never), marked
            in red from that frame on.
        every: draw every `every`-th step (fewer frames, a smaller file).
    Returns:
        The number of frames written.
    """
    from PIL import Image  # Pillow comes with matplotlib

    fig, axes = new_figure(1, 2, width=3.6, height=2.0, dpi=80)
    pole_length = 1.0  # gymnasium's pole is 2 x 0.5 m
    carts, poles = [], []
    titles = ("reality: gymnasium's CartPole", "dream: the world model")
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set_xlim(-X_LIMIT - 0.3, X_LIMIT + 0.3)
        ax.set_ylim(-0.35, 1.35)
        ax.set_aspect("equal")
        ax.grid(False)
        ax.set_yticks([])
        ax.set_xlabel("cart position [m]", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.axhline(0, color="#888888", lw=1)
        for spine in ax.spines.values():
            spine.set_visible(True)
        for sign in (-1, 1):
            ax.axvline(sign * X_LIMIT, color="#888888", ls=":", lw=1)
        cart = ax.add_patch(Rectangle((0, -0.1), 0.5, 0.2, color="#444444"))
        pole = ax.plot([], [], color=COLORS["model" if "dream" in title else "real"], lw=4)[0]
        ax.set_title(title, fontsize=9)
        carts.append(cart)
        poles.append(pole)
    ghost = axes[0, 1].plot([], [], color=COLORS["real"], lw=3, alpha=0.25)[0]  # reality, faint
    label = fig.suptitle("", fontsize=9)

    def pole_xy(state: np.ndarray) -> tuple[list[float], list[float]]:
        x, theta = cart_x(state), float(state[2])
        return [x, x + pole_length * np.sin(theta)], [0.1, 0.1 + pole_length * np.cos(theta)]

    def cart_x(state: np.ndarray) -> float:  # a dream that left the track stays at its edge
        return float(np.clip(state[0], -X_LIMIT - 0.25, X_LIMIT + 0.25))

    frames = []
    for t in range(0, len(real), every):
        for cart, pole, states in zip(carts, poles, (real, imagined), strict=True):
            cart.set_x(cart_x(states[t]) - 0.25)
            pole.set_data(*pole_xy(states[t]))
        ghost.set_data(*pole_xy(real[t]))  # the dream panel's faint copy of reality
        off = diverged_at is not None and t >= diverged_at
        for spine in axes[0, 1].spines.values():
            spine.set_color("#D55E00" if off else "#888888")
        label.set_text(
            f"step {t} (20 ms each): same start, same actions"
            + (f" - diverged at step {diverged_at} (error > {threshold:g})" if off else "")
        )
        label.set_color("#D55E00" if off else "black")
        fig.canvas.draw()
        frame = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
        frames.append(frame.quantize(colors=32))
    plt.close(fig)
    with atomic_path(path) as tmp:
        frames[0].save(
            tmp, format="GIF", save_all=True, append_images=frames[1:], duration=40 * every, loop=0
        )
    return len(frames)


# ----------------------------------------------------------------------------- main


OUTPUTS = ("trajectory_comparison.png", "compounding_error.png", "dream_vs_reality.gif")


def main(cfg: Config) -> dict:
    require_writable(*(cfg.plots_dir / name for name in OUTPUTS))  # before the work
    configure_threads()
    device = resolve_device(cfg.device)
    model = load_world_model(cfg.checkpoint, device)
    rng = seed_everything(cfg.seed)
    policy = random_policy(rng) if cfg.policy == "random" else mixed_policy(rng, cfg.epsilon)
    with gym.make(ENV_ID) as env:
        real = collect_real_trajectories(env, policy, cfg.num_episodes, cfg.horizon, cfg.seed)
    accuracy = evaluate_model_accuracy(model, real)
    summary = accuracy.per_step()
    crossing = first_crossing(summary["step"], summary["mean"], cfg.error_threshold)

    setting = (
        f"{cfg.num_episodes} real episodes ({cfg.policy} policy"
        f"{f', epsilon {cfg.epsilon:g}' if cfg.policy == 'mixed' else ''}), seed {cfg.seed}, "
        f"model {cfg.checkpoint}."
    )
    meta = run_metadata(cfg)
    lengths = real.alive.sum(axis=1)
    longest = [int(i) for i in np.argsort(-lengths, kind="stable")[: cfg.num_plotted]]
    trajectory_path = cfg.plots_dir / "trajectory_comparison.png"
    error_path = cfg.plots_dir / "compounding_error.png"
    plot_trajectories(
        real,
        accuracy,
        longest,
        cfg.error_threshold,
        trajectory_path,
        f"The {len(longest)} longest of {setting}",
        meta,
    )
    plot_compounding_error(
        summary,
        cfg.error_threshold,
        crossing,
        error_path,
        f"{setting} Band: spread over start states; counted only while the real "
        "episode is running.",
        meta,
    )

    written = [trajectory_path, error_path]
    if cfg.animation:
        episode = longest[0]
        length = int(real.alive[episode].sum())
        errors = accuracy.squared_error[episode, : length - 1]
        diverged = first_crossing(np.arange(1, length), errors, cfg.error_threshold)
        gif_path = cfg.plots_dir / "dream_vs_reality.gif"
        save_dream_gif(
            real.states[episode, :length],
            accuracy.imagined_states[episode, :length],
            diverged,
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
    else:
        print(
            f"The mean error first exceeds {cfg.error_threshold:g} at step {crossing}: trust "
            f"imagined rollouts well short of that."
        )
    print(f"Wrote {', '.join(map(str, written))}")
    return {"crossing": crossing, "error_at": at}


if __name__ == "__main__":
    cli(main, Config)
