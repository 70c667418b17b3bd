"""Plot style and saving, in one place, so every figure in plots/ looks and behaves the same."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed: every figure goes straight to a PNG file

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

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
    ax, x: np.ndarray, values: np.ndarray, color: str, label: str, low: float = 10, high: float = 90
) -> None:
    """Plot the mean of `values` (R, T) over its first axis with a percentile band."""
    ax.plot(x, values.mean(axis=0), color=color, label=label, lw=2)
    ax.fill_between(
        x,
        np.percentile(values, low, axis=0),
        np.percentile(values, high, axis=0),
        color=color,
        alpha=0.2,
        lw=0,
    )
