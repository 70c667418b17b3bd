"""The figures of phase 4 (app/plan_with_model.py): real vs imagined trajectories, compounding
error, the dream animation, and the map of where the model can be trusted.

They live beside the shared plot helpers (app/plotting.py) so that phase 4's module keeps to the
ideas: imagined rollouts, open-loop accuracy, the true physics. Every figure says in its title and
caption what is drawn, so it reads without the code.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from app.common import STATE_DIM, STATE_NAMES, STATE_UNITS, THETA_LIMIT, X_LIMIT
from app.plotting import COLORS, CYCLE, add_caption, new_figure, save_figure
from app.storage import atomic_path

ORANGE = "#D55E00"


def plot_trajectories(
    real_states: np.ndarray,
    alive: np.ndarray,
    imagined_states: np.ndarray,
    squared_error: np.ndarray,
    model_done: np.ndarray,
    episodes: list[int],
    threshold: float,
    path: Path,
    caption: str,
    meta: dict | None = None,
) -> None:
    """Real (solid) and imagined (dashed) state variables of a few episodes.

    Args:
        real_states, imagined_states: (B, H + 1, S); alive: (B, H + 1) bool.
        squared_error: (B, H), column h - 1 is step h.
        model_done: (B,) the first step at which the model says the episode ends (H + 1: never);
            the dashed line stops there, with an x.
        episodes: the rows to draw.
    """
    fig, axes = new_figure(STATE_DIM, 1, width=8.0, height=2.0, sharex=True)
    limits = {0: X_LIMIT, 2: THETA_LIMIT}
    for color, episode in zip(CYCLE, episodes, strict=False):
        length = int(alive[episode].sum())
        t = np.arange(length)
        stop = min(int(model_done[episode]), length - 1)  # the dream ends at the model's done
        diverged = np.flatnonzero(squared_error[episode, : length - 1] > threshold)
        for dim, ax in enumerate(axes[:, 0]):
            label = f"episode {episode} ({length - 1} steps)" if dim == 0 else None
            ax.plot(t, real_states[episode, :length, dim], color=color, lw=1.8, label=label)
            dream = imagined_states[episode, : stop + 1, dim]
            ax.plot(t[: stop + 1], dream, color=color, lw=1.8, ls="--")
            if stop < length - 1:
                ax.plot(stop, dream[-1], marker="x", color=color, ms=8, mew=2)
            if len(diverged):
                ax.axvline(diverged[0] + 1, color=color, ls=":", lw=1.2)
    for dim, ax in enumerate(axes[:, 0]):
        # Zoom on the real motion: a diverged imagination would otherwise flatten everything.
        shown = real_states[episodes][alive[episodes]][:, dim]
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
        Line2D([], [], color="black", ls="", marker="x", mew=2, label="the model says: ended"),
        Line2D([], [], color="black", lw=1.2, ls=":", label=f"error > {threshold:g} from here"),
    ]
    axes[0, 0].legend(handles=handles, loc="upper left", ncol=2, fontsize=8)
    axes[-1, 0].set_xlabel("time step (20 ms each)")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(
        "Real CartPole (solid) vs the world model's open-loop imagination (dashed):\n"
        "same start state, same actions; grey lines are where CartPole ends an episode"
    )
    add_caption(fig, caption)
    save_figure(fig, path, meta)


def plot_compounding_error(
    summaries: dict[str, dict[str, np.ndarray]],
    threshold: float,
    path: Path,
    caption: str,
    meta: dict | None = None,
) -> None:
    """Squared error against rollout length, one curve (mean, median, 10-90% band) per set of
    start states and actions, e.g. {"random-ish episodes": ..., "a balancing policy": ...}."""
    fig, axes = new_figure(
        2, 1, width=7.0, height=2.6, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax, ax_count = axes[:, 0]
    colors = [COLORS["model"], COLORS["dqn"], COLORS["sb3_zoo"]]
    for k, (color, (name, summary)) in enumerate(zip(colors, summaries.items(), strict=False)):
        step = summary["step"]
        ax.plot(step, summary["mean"], color=color, lw=2, label=f"{name}: mean")
        ax.plot(step, summary["median"], color=color, lw=1, ls="--", label=f"{name}: median")
        band = f"{name}: 10th-90th percentile"
        ax.fill_between(
            step, summary["p10"], summary["p90"], color=color, alpha=0.2, lw=0, label=band
        )
        crossing = summary.get("crossing")
        if crossing is not None:
            ax.axvline(crossing, color=color, ls=":", lw=1)
            ax.annotate(f"step {crossing}", (crossing, threshold), xytext=(4, 6 + 14 * k),
                        textcoords="offset points", fontsize=8, color=color)  # fmt: skip
        ax_count.plot(step, summary["count"], color=color)
    ax.axhline(threshold, color="#444444", ls=":", lw=1, label=f"threshold {threshold:g}")
    ax.set_yscale("log")
    ax.set_ylabel("squared state error\n(raw units, mean of 4 dims)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Compounding error: the model fed its own predictions (open-loop)")
    ax_count.set_ylabel("real episodes\nstill running")
    ax_count.set_xlabel("rollout length (steps)")
    ax_count.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_count.yaxis.set_major_locator(MaxNLocator(integer=True))
    add_caption(fig, caption)
    save_figure(fig, path, meta)


def save_dream_gif(
    real: np.ndarray,
    imagined: np.ndarray,
    diverged_at: int | None,
    model_done: int | None,
    threshold: float,
    path: Path,
    every: int = 2,
) -> int:
    """Animate one episode: real CartPole (left) and the model's dream of it (right).

    Args:
        real, imagined: (T + 1, S) states of the same episode: same start state, same actions.
        diverged_at: the first step whose squared error passes `threshold` (None: never); the
            dream panel's frame turns orange from there.
        model_done: the step at which the model says the episode ended (None: never): the dream
            stops there and says so, where an imagined rollout would stop.
        every: draw every `every`-th step (fewer frames, a smaller file).
    Returns:
        The number of frames written.
    """
    from PIL import Image  # Pillow comes with matplotlib

    fig, axes = new_figure(1, 2, width=4.2, height=2.6, dpi=80)
    pole_length = 1.0  # gymnasium's pole is 2 x 0.5 m
    carts, poles = [], []
    titles = ("reality: gymnasium's CartPole", "dream: the world model")
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set_xlim(-X_LIMIT - 0.3, X_LIMIT + 0.3)
        ax.set_ylim(-0.35, 1.35)
        ax.set_aspect("equal")
        ax.grid(False)
        ax.set_yticks([])
        ax.set_xlabel("cart position [m]", fontsize=10)
        ax.tick_params(labelsize=9)
        ax.axhline(0, color="#888888", lw=1)
        for spine in ax.spines.values():
            spine.set_visible(True)
        for sign in (-1, 1):
            ax.axvline(sign * X_LIMIT, color="#888888", ls=":", lw=1)
        cart = ax.add_patch(Rectangle((0, -0.1), 0.5, 0.2, color="#444444"))
        pole = ax.plot([], [], color=COLORS["model" if "dream" in title else "real"], lw=4)[0]
        ax.set_title(title, fontsize=11)
        carts.append(cart)
        poles.append(pole)
    ghost = axes[0, 1].plot([], [], color=COLORS["real"], lw=3, alpha=0.25)[0]
    axes[0, 1].legend(
        [ghost, poles[1]], ["reality, faint", "the dream"], loc="upper right", fontsize=8
    )
    note = axes[0, 1].text(0, 1.15, "", ha="center", fontsize=9, color=ORANGE)
    label = fig.suptitle("", fontsize=11)

    def pole_xy(state: np.ndarray) -> tuple[list[float], list[float]]:
        x, theta = cart_x(state), float(state[2])
        return [x, x + pole_length * np.sin(theta)], [0.1, 0.1 + pole_length * np.cos(theta)]

    def cart_x(state: np.ndarray) -> float:  # a dream that left the track stays at its edge
        return float(np.clip(state[0], -X_LIMIT - 0.25, X_LIMIT + 0.25))

    frames = []
    for t in range(0, len(real), every):
        dream_t = t if model_done is None else min(t, model_done)  # the dream ends at its done
        for cart, pole, state in zip(carts, poles, (real[t], imagined[dream_t]), strict=True):
            cart.set_x(cart_x(state) - 0.25)
            pole.set_data(*pole_xy(state))
        ghost.set_data(*pole_xy(real[t]))  # the dream panel's faint copy of reality
        off = diverged_at is not None and t >= diverged_at
        ended = model_done is not None and t >= model_done
        for spine in axes[0, 1].spines.values():
            spine.set_color(ORANGE if off else "#888888")
        note.set_text(f"the model ended this episode at step {model_done}" if ended else "")
        label.set_text(
            f"step {t} (20 ms each): same start, same actions"
            + (f"; diverged at step {diverged_at} (error > {threshold:g})" if off else "")
        )
        label.set_color(ORANGE if off else "black")
        fig.canvas.draw()
        frame = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
        frames.append(frame.quantize(colors=32))
    plt.close(fig)
    with atomic_path(path) as tmp:
        frames[0].save(
            tmp, format="GIF", save_all=True, append_images=frames[1:], duration=40 * every, loop=0
        )
    return len(frames)


def plot_coverage_map(
    maps: dict[str, dict],
    data_states: np.ndarray,
    path: Path,
    caption: str,
    meta: dict | None = None,
) -> None:
    """Where the model can be trusted: per slice of the state space (two variables on a grid,
    the other two near zero) its one-step error (left) and its false-done rate (right), with the
    training data's density drawn over both.

    Args:
        maps: `plan_with_model.coverage_map`'s result: per slice the axes (i, j), the cell edges
            and (cells, cells) arrays "error", "false_done", "terminal".
        data_states: (N, S) the training data's states.
    """
    from matplotlib.colors import LogNorm

    fig, axes = new_figure(len(maps), 2, width=5.0, height=4.0)
    for row, (name, found) in enumerate(maps.items()):
        i, j = found["axes"]
        edges_i, edges_j = found["edges"]
        extent = (edges_i[0], edges_i[-1], edges_j[0], edges_j[-1])
        density, _, _ = np.histogram2d(  # all the data, projected onto these two variables
            data_states[:, i], data_states[:, j], bins=(edges_i, edges_j)
        )
        panels = (
            ("error", "one-step squared error (raw units)", LogNorm(1e-7, 1e-1), "viridis"),
            ("false_done", "false 'done' rate", None, "Oranges"),
        )
        for col, (key, title, norm, cmap) in enumerate(panels):
            ax = axes[row, col]
            values = np.clip(found[key], 1e-7, None) if key == "error" else found[key]
            scale = {"norm": norm} if norm else {"vmin": 0, "vmax": 1}
            image = ax.imshow(
                values.T, origin="lower", extent=extent, aspect="auto", cmap=cmap, **scale
            )
            fig.colorbar(image, ax=ax, shrink=0.85)
            ax.contourf(
                *np.meshgrid(_centres(edges_i), _centres(edges_j), indexing="ij"),
                found["terminal"], levels=[0.5, 1.01], colors="none", hatches=["///"],
            )  # fmt: skip
            if density.max() > 0:
                levels = 10.0 ** np.arange(0, np.log10(density.max()) + 1)
                ax.contour(
                    _centres(edges_i), _centres(edges_j), density.T, levels=levels,
                    colors="white" if key == "error" else "black", linewidths=0.8,
                )  # fmt: skip
            ax.set_xlabel(f"{STATE_NAMES[i]} [{STATE_UNITS[i]}]")
            ax.set_ylabel(f"{STATE_NAMES[j]} [{STATE_UNITS[j]}]")
            ax.set_title(f"{title}\n{name} slice", fontsize=10)
            ax.grid(False)
    fig.suptitle(
        "Where the world model can be trusted: one step, against CartPole's own physics\n"
        "(contours: the training data; accurate inside them, wrong away from them)"
    )
    add_caption(fig, caption)
    save_figure(fig, path, meta)


def _centres(edges: np.ndarray) -> np.ndarray:
    return (edges[:-1] + edges[1:]) / 2
