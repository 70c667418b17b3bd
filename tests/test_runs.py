"""app/runs.py: how a run is measured and summarised, and the runner that all commands share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app import runner, runs
from app.runs import Budget
from tests.grading import expect_close


def test_run_length() -> None:
    budget = Budget()
    assert budget.run_length(None) == budget.max_steps  # unsolved: keep going to the cap
    assert budget.run_length(2_000) == 10_000
    assert budget.run_length(8_000) == 13_000
    assert Budget(max_steps=50_000).run_length(48_000) == 50_000


@pytest.mark.phase(5)
def test_summary_of_one_run() -> None:
    """Solved at step 1,000 (the first mean return >= 475); stability counts the 10 evaluations
    after that one, not the solving evaluation itself: 8 of them stay >= 475."""
    steps = list(range(500, 6_501, 500))
    returns = [100, 500, 500, 480, 300, 500, 500, 500, 500, 500, 500, 100, 500]
    run = runs.summarize(0, steps, returns, 1_000, 1.0, 2.0)
    expect_close(run["stability"], 0.8, "stability: share of the 10 evaluations after the solve")
    expect_close(run["auc_10k"], np.mean(returns), "AUC 10k: the mean evaluation return")
    expect_close(runs.stability(steps, returns, None) is None, True, "stability when unsolved")
    expect_close(runs.stability([500], [490.0], 500) is None, True, "stability of a run that "
                 "ended at its solve")  # fmt: skip


def test_aggregate_median_ignores_nothing() -> None:
    arm = [
        {"seed": s, "steps_to_solve": v, "stability": 1.0, "auc_10k": 1.0, "wall_s": 1.0}
        for s, v in enumerate([1_000, 3_000, None])
    ]
    summary = runs.aggregate(arm)
    assert summary["median_steps"] == 3_000  # an unsolved run counts as slower than any solve
    assert summary["worst_steps"] is None and summary["solved"] == "2/3"


def _job(job: tuple[int, int]) -> dict:
    return {"planning_steps": job[0], "seed": job[1], "threads": torch.get_num_threads()}


def test_run_all_returns_runs_in_job_order() -> None:
    """The costliest runs start first, but each run comes back in its job's place."""
    results = runner.run_all(_job, [(0, 5), (1, 6), (2, 7)], workers=2, cost=lambda job: job[0])
    assert [(r["planning_steps"], r["seed"]) for r in results] == [(0, 5), (1, 6), (2, 7)]
    assert {r["threads"] for r in results} == {1}  # one thread in every worker


def test_run_all_in_process_uses_one_thread_like_the_workers() -> None:
    """A run's numbers depend on torch's thread count (the order of the sums in a matrix product),
    so runs made in this process use one thread, as the worker processes do; the caller's thread
    count comes back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        results = runner.run_all(_job, [(0, 0), (0, 1)], workers=1)
        assert [r["threads"] for r in results] == [1, 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- statistics


def fake_runs(steps: list[int | None], stability=None, auc=None) -> list[dict]:
    """Run records as the statistics read them: steps-to-solve (None: unsolved), stability
    (None when unsolved) and AUC 10k."""
    stability = stability or [None if s is None else 1.0 for s in steps]
    auc = auc or [100.0] * len(steps)
    return [
        {"steps_to_solve": s, "stability": st, "auc_10k": a}
        for s, st, a in zip(steps, stability, auc, strict=True)
    ]


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    assert runs.iqm(np.array([8, 1, 7, 2, 6, 3, 5, 4])) == 4.5  # 3, 4, 5, 6
    assert runs.iqm(np.array([1, 2, 3, 1000])) == 2.5  # an outlier does not move it
    assert runs.iqm(np.arange(10)).item() == 4.5  # 2 cut from each end: 2..7
    assert runs.iqm(np.array([[1, 2, 3, 4], [5, 6, 7, 80]])).tolist() == [2.5, 6.5]


def test_probability_of_improvement_counts_ties_half() -> None:
    # pairs (1, 2) and (1, 3) earlier, (2, 2) a tie, (2, 3) earlier: 3.5 of 4
    assert runs.probability_of_improvement(np.array([1, 2]), np.array([2, 3])) == 0.875
    assert runs.probability_of_improvement(np.array([5, 5]), np.array([5])) == 0.5


def test_bootstrap_interval_is_the_percentile_interval_of_resampled_statistics() -> None:
    sample = np.array([0.0, 1, 2, 3, 5, 8, 13, 21, 34, 55])
    mean = lambda v: v.mean(axis=-1)  # noqa: E731
    point, low, high = runs.bootstrap_interval(mean, [sample], np.random.default_rng(3), reps=500)
    draws = np.random.default_rng(3).integers(10, size=(500, 10))
    expected_low, expected_high = np.percentile(sample[draws].mean(axis=1), [2.5, 97.5])
    assert point == sample.mean() and low < point < high
    assert (low, high) == (expected_low, expected_high)
    constant = runs.bootstrap_interval(mean, [[7.0] * 5], np.random.default_rng(0), reps=50)
    assert constant == (7.0, 7.0, 7.0)


def test_interval_estimates_count_unsolved_runs_at_the_cap() -> None:
    arms = {
        "dyna": fake_runs([1000, None, 2000, 3000], stability=[0.5, None, 1.0, 1.0]),
        "dqn": fake_runs([None, None], auc=[10.0, 30.0]),
    }
    estimates = runs.interval_estimates(arms, cap=50_000, reference="dyna")
    dyna, dqn = estimates["dyna"], estimates["dqn"]
    assert dyna["median"][0] == 2500 and dyna["solved"] == 3 and dyna["runs"] == 4
    assert dyna["stability"][0] == pytest.approx(2.5 / 3)  # the solved runs' stability
    assert dqn["solved"] == 0 and dqn["stability"] is None and dqn["auc_10k"][0] == 20.0
    assert dqn["p_dyna_earlier"][0] == 0.875  # 3 of 4 runs earlier, the unsolved one a tie
    rows = runs.format_estimates(estimates, "dyna", 50_000).splitlines()
    assert rows[0].count("|") == rows[2].count("|") == 8
    assert rows[3].split(" | ")[-2:] == ["–", "20 [10, 30] |"]


def test_the_mean_figures_draw_apart_from_the_step_figures() -> None:
    """Adding the stability and AUC intervals left every steps-to-solve interval as it was: the
    step figures are the same draws, in the same order, as before."""
    arms = {  # enough distinct values that two streams of draws give different intervals
        "dyna": fake_runs([500, 1500, 2000, 2500, 3500, 4500, 6000, None]),
        "dqn": fake_runs([3000, 2500, 9000, 1000, 13500, 5500, 7000, 4000]),
    }
    estimates = runs.interval_estimates(arms, cap=50_000, reference="dyna")
    steps = {name: runs.steps_or_cap(arm, 50_000) for name, arm in arms.items()}
    rng = np.random.default_rng(0)
    median = lambda v: np.median(v, axis=-1)  # noqa: E731
    for name in ("dyna", "dqn"):
        assert estimates[name]["iqm"] == runs.bootstrap_interval(runs.iqm, [steps[name]], rng)
        assert estimates[name]["median"] == runs.bootstrap_interval(median, [steps[name]], rng)
    p = runs.bootstrap_interval(runs.probability_of_improvement, [steps["dyna"], steps["dqn"]], rng)
    assert estimates["dqn"]["p_dyna_earlier"] == p
