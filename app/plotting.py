"""Plot style and saving, in one place, so every figure in plots/ looks and behaves the same; and
the learning-curve plot that app.agent, app.experiments and app.benchmark share."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed: every figure goes straight to a PNG file

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from app.runs import (  # noqa: E402
    SOLVED_RETURN,
    learning_curves,
    mean_and_ci,
    performance_profile,
    steps_or_cap,
)
from app.storage import atomic_path  # noqa: E402

# A colour-blind-safe palette (Okabe-Ito); the same arm keeps the same colour in every plot.
COLORS = {
    "real": "#000000",
    "model": "#E69F00",
    "dqn": "#0072B2",
    "dqn_matched": "#56B4E9",
    "dyna": "#D55E00",
    "sb3_zoo": "#009E73",
    "train": "#0072B2",
    "validation": "#D55E00",
}
CYCLE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

plt.rcParams.update(
    {
        "figure.dpi": 110,
        "savefig.dpi": 110,
        "savefig.bbox": "tight",
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 9,
        "axes.prop_cycle": matplotlib.cycler(color=CYCLE),
    }
)


def new_figure(rows: int = 1, cols: int = 1, width: float = 6.0, height: float = 4.0, **kwargs):
    """A figure with a `rows x cols` grid of axes; `width`/`height` are per panel in inches."""
    kwargs.setdefault("layout", "constrained")  # titles and labels never overlap
    fig, axes = plt.subplots(
        rows, cols, figsize=(width * cols, height * rows), squeeze=False, **kwargs
    )
    return fig, axes


def add_caption(fig: Figure, text: str) -> None:
    """Small print under the figure: seeds, settings, what a band means."""
    fig.text(0.01, -0.01, text, ha="left", va="top", fontsize=8, color="#444444", wrap=True)


def save_figure(fig: Figure, path: Path, meta: dict | None = None) -> Path:
    """Write `fig` to `path` as PNG (atomically) and close it.

    `meta` (config, versions, git commit: `storage.run_metadata`) is stored in the PNG's text
    chunks, so a plot found on its own still says what produced it.
    """
    info = {"Software": "world-model-rl"}
    if meta:
        info["Description"] = json.dumps(meta)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=info)
    plt.close(fig)
    return Path(path)


def band(
    ax,
    x: np.ndarray,
    values: np.ndarray,
    color: str,
    label: str,
    clip: tuple[float, float] | None = None,
) -> None:
    """The mean of (R, T) `values` over runs, with the 95% confidence band of that mean (normal
    approximation; none for one run). Columns with a NaN (not measured) are left out; `clip`
    keeps the band inside the range the values can take (a return lies in [0, 500])."""
    measured = ~np.isnan(values).any(axis=0)
    x, values = np.asarray(x)[measured], values[:, measured]
    mean, half = mean_and_ci(values)
    low, high = mean - half, mean + half
    if clip is not None:
        low, high = np.clip(low, *clip), np.clip(high, *clip)
    ax.plot(x, mean, color=color, lw=2, label=label)
    ax.fill_between(x, low, high, color=color, alpha=0.2, lw=0)


def arm_color(name: str, i: int) -> str:
    """An arm's colour: fixed per arm kind (its first word), else the i-th of the cycle."""
    return COLORS.get(name.split(" ")[0], CYCLE[i % len(CYCLE)])


def draw_learning_curves(ax, arms: dict[str, list[dict]], until: int) -> None:
    """Evaluation return against real steps on `ax`: per arm the mean and 95% confidence band
    while every run is going, thin lines for single runs that go on after the others ended, and
    a triangle at each run's first solve."""
    for i, (name, runs) in enumerate(arms.items()):
        steps, returns = learning_curves(runs, until)
        color = arm_color(name, i)
        band(ax, steps, returns, color, f"{name}, {len(runs)} seeds", clip=(0, 500))
        for run in runs:  # a run that goes on after the others: its own, thin line
            s, r = np.asarray(run["eval_steps"]), np.asarray(run["eval_returns"], dtype=float)
            later = (s >= steps[-1]) & (s <= until)
            if later.sum() > 1:
                ax.plot(s[later], r[later], color=color, lw=0.8, alpha=0.6)
        solves = [r["steps_to_solve"] for r in runs if r["steps_to_solve"] is not None]
        solves = [s for s in solves if s <= until]
        ax.plot(solves, [SOLVED_RETURN + 12] * len(solves), ls="", marker="v", ms=6, color=color,
                alpha=0.7, label="a run's first solve" if i == 0 else None)  # fmt: skip
    ax.axhline(SOLVED_RETURN, color="#444444", ls=":", lw=1, label="solved (475)")
    ax.set_xlabel("real environment steps (evaluation episodes not counted)")
    ax.set_ylabel("evaluation return\n(mean of 10 greedy episodes)")
    ax.set_ylim(0, 530)
    ax.set_xlim(0, until)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="lower right")


def steps_shown(arms: dict[str, list[dict]], at_least: int = 10_000) -> int:
    """How far along real steps to draw: at least `at_least`, and far enough to show every solve
    the command reports (rounded up to 2,500), but not past the longest run."""
    solves = [r["steps_to_solve"] for runs in arms.values() for r in runs if r["steps_to_solve"]]
    until = int(np.ceil(max([at_least, *solves]) / 2_500) * 2_500)
    last = max(r["eval_steps"][-1] for runs in arms.values() for r in runs if r["eval_steps"])
    return min(until, last)


def plot_learning_curves(
    arms: dict[str, list[dict]],
    path: Path,
    caption: str,
    until: int | None = None,
    meta: dict | None = None,
    title: str = "Model-free DQN vs Dyna-DQN on CartPole-v1",
) -> None:
    """Evaluation return against real steps, mean and 95% confidence band over seeds, per arm
    (`until`: the last step drawn; None: `steps_shown`)."""
    until = steps_shown(arms) if until is None else until
    fig, axes = new_figure(1, 1, width=8.0, height=4.6)
    draw_learning_curves(axes[0, 0], arms, until)
    axes[0, 0].set_title(
        f"{title}; band: 95% confidence interval of the mean over seeds", fontsize=10
    )
    add_caption(fig, caption)
    save_figure(fig, path, meta)


def draw_performance_profile(ax, arms: dict[str, list[dict]], cap: int) -> None:
    """The share of each arm's runs that have solved by each number of real steps (Agarwal et
    al., 2021): a curve further up and to the left solves more runs sooner."""
    grid = np.arange(0, cap + 1, 250)
    for i, (name, runs) in enumerate(arms.items()):
        color = arm_color(name, i)
        share = performance_profile(steps_or_cap(runs, cap + 1), grid)
        label = f"{name} ({len(runs)} runs)"
        ax.step(grid, 100 * share, where="post", color=color, lw=2, label=label)
    ax.set_xlabel("real environment steps")
    ax.set_ylabel("runs solved so far [%]")
    ax.set_ylim(0, 102)
    ax.set_xlim(0, cap)
    ax.legend(loc="lower right")
