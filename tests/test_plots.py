"""The plots, checked where code can check them: labels, axis limits that show every reported
figure, bands inside the range the values can take, integer ticks for counts."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from app import benchmark, planning_plots, plotting, train_model
from app import plan_with_model as planning
from app.data_collection import collect_transitions
from app.policies import random_policy
from app.storage import save_transitions

CAPTURING = (plotting, train_model, planning_plots, benchmark)


@pytest.fixture
def figures(monkeypatch) -> dict:
    """Every figure the code saves, by file name, kept open for inspection."""
    kept: dict = {}

    def keep(fig, path, meta=None):
        kept[path.name] = fig
        return path

    for module in CAPTURING:
        monkeypatch.setattr(module, "save_figure", keep)
    yield kept
    import matplotlib.pyplot as plt

    plt.close("all")


def integer_ticks(axis) -> bool:
    low, high = axis.get_view_interval()
    ticks = [t for t in axis.get_majorticklocs() if low <= t <= high]
    return bool(ticks) and all(float(t).is_integer() for t in ticks)


def fake_run(seed: int, solved_at: int | None, last: int, level: float = 490.0) -> dict:
    steps = list(range(500, last + 1, 500))
    returns = [level if solved_at and s >= solved_at else 100.0 + 30 * (seed % 3) for s in steps]
    return {"seed": seed, "eval_steps": steps, "eval_returns": returns, "steps_to_solve": solved_at}


def test_learning_curves_show_every_solve_and_keep_the_band_in_range(figures, tmp_path) -> None:
    arms = {
        "dqn (K=0)": [fake_run(0, 13_000, 18_000, 500.0), fake_run(1, 7_000, 12_000, 480.0)],
        "dyna (K=10, k=3)": [fake_run(0, 1_500, 10_000), fake_run(1, 2_000, 10_000, 500.0)],
    }
    plotting.plot_learning_curves(arms, tmp_path / "curves.png", "caption")
    ax = figures["curves.png"].axes[0]
    assert ax.get_xlim()[1] >= 13_000  # the latest printed solve is on the plot
    labels = ax.get_legend_handles_labels()[1]
    assert "dqn (K=0), 2 seeds" in labels and "dyna (K=10, k=3), 2 seeds" in labels
    solve_marks = [line for line in ax.lines if line.get_marker() == "v"]
    shown = sorted(x for line in solve_marks for x in line.get_xdata())
    assert shown == [1_500, 2_000, 7_000, 13_000]  # every run's first solve is marked
    for band in [c for c in ax.collections if isinstance(c, PolyCollection)]:
        ys = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
        assert ys.min() >= 0 and ys.max() <= 500  # a return lies in [0, 500]
    assert integer_ticks(ax.xaxis)


def test_training_curve_names_the_kept_epoch_and_labels_every_panel(figures, tmp_path) -> None:
    data = tmp_path / "t.npz"
    import gymnasium as gym

    with gym.make("CartPole-v1") as env:
        transitions = collect_transitions(env, random_policy(np.random.default_rng(0)), 600, 0)
    save_transitions(data, transitions, {})
    cfg = train_model.Config(
        data=data, checkpoint=tmp_path / "wm.pt", plot=tmp_path / "curve.png", epochs=3,
        hidden_size=16,
    )  # fmt: skip
    train_model.main(cfg)
    fig = figures["curve.png"]
    assert all(ax.get_ylabel() for ax in fig.axes)  # every panel has its y-label
    assert all(integer_ticks(ax.xaxis) for ax in fig.axes)  # 3 epochs: ticks 1, 2, 3
    assert (
        "total" in fig.axes[0].get_title() and "lowest total validation" in fig._suptitle.get_text()
    )


def test_phase_4_plots_from_a_tiny_model(figures, tmp_path) -> None:
    import gymnasium as gym

    data = tmp_path / "t.npz"
    with gym.make("CartPole-v1") as env:
        transitions = collect_transitions(env, random_policy(np.random.default_rng(0)), 600, 0)
    save_transitions(data, transitions, {})
    checkpoint = tmp_path / "wm.pt"
    train_model.main(
        train_model.Config(
            data=data, checkpoint=checkpoint, plot=tmp_path / "c.png", epochs=2, hidden_size=16
        )  # fmt: skip
    )
    cfg = planning.Config(
        checkpoint=checkpoint, data=data, plots_dir=tmp_path, results=tmp_path / "acc.json",
        num_episodes=6, horizon=30, animation=False, coverage_states=300, map_cells=9,
    )  # fmt: skip
    planning.main(cfg)
    trajectories = figures["trajectory_comparison.png"]
    labels = trajectories.axes[0].get_legend_handles_labels()[1]
    assert any(label.startswith("episode ") and "steps)" in label for label in labels)
    assert "the model says: ended" in [
        t.get_text() for t in trajectories.axes[0].get_legend().texts
    ]
    error = figures["compounding_error.png"]
    assert all(integer_ticks(ax.xaxis) for ax in error.axes)  # rollout lengths are counts
    assert integer_ticks(error.axes[1].yaxis)  # so are the episodes still running
    coverage = figures["model_coverage.png"]
    titles = [ax.get_title() for ax in coverage.axes if ax.get_title()]
    assert sum("squared error" in t for t in titles) == 2 and sum("false" in t for t in titles) == 2
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in coverage.axes if ax.get_title())


def test_benchmark_caption_names_the_learner_of_the_model_free_arms(
    figures, tmp_path, monkeypatch
) -> None:
    runs = {"dyna": [fake_run(0, 1_500, 10_000)], "dqn_matched": [fake_run(0, 3_000, 10_000)]}
    cfg = benchmark.Config(arms=("dyna", "dqn_matched"), output_dir=tmp_path)
    for double_q, words in ((False, "the max target in the"), (True, "Double DQN in the")):
        monkeypatch.setitem(benchmark.agent.MODEL_FREE, "double_q", double_q)
        benchmark.plot_benchmark(runs, tmp_path / "b.png", cfg, "tuning seeds 0", meta=None)
        caption = " ".join(text.get_text() for text in figures["b.png"].texts)
        assert f"{words} model-free ones" in caption


def test_benchmark_plot_shows_every_solve_and_a_performance_profile(figures, tmp_path) -> None:
    runs = {
        "dyna": [fake_run(0, 1_500, 10_000), fake_run(1, 31_000, 36_000)],
        "dqn_matched": [fake_run(0, 3_000, 10_000), fake_run(1, None, 50_000)],
    }
    cfg = benchmark.Config(arms=("dyna", "dqn_matched"), output_dir=tmp_path)
    benchmark.plot_benchmark(runs, tmp_path / "b.png", cfg, "tuning seeds 0-1", meta=None)
    curves, profile = figures["b.png"].axes
    assert curves.get_xlim()[1] >= 31_000 and profile.get_xlim()[1] >= 31_000
    assert profile.get_ylim()[1] >= 100 and "runs solved" in profile.get_ylabel()
