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
