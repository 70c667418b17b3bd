"""Runs of a DQN agent, measured one way everywhere: evaluation, records, statistics, the runner.
Shared by app.agent, app.experiments and app.benchmark, so a number means the same in each:

    evaluation  every `eval_interval` real steps, `eval_episodes` greedy episodes on seeded
                evaluation environments (their steps are not counted as real steps)
    solved      the first evaluation whose mean return is at least 475
    stability   the share of the next 10 evaluations (after the solving one) that stay >= 475
    AUC 10k     the mean evaluation return over the first 10,000 real steps
    run length  until `min_steps`, or `steps_after_solve` past the solve if later, at most
                `max_steps` (a run that never solves goes on to the cap)

The runner that runs many of them, locally or on Ray, with its cache, is app/runner.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from app.common import (
    ENV_ID,
    UserError,
    require,
    require_non_negative,
    require_positive,
)
from app.policies import greedy
from app.runner import report
from app.storage import nonfinite_weights

SOLVED_RETURN = 475.0
STABILITY_WINDOW = 10  # evaluations after the solve that count towards stability
AUC_STEPS = 10_000


# ----------------------------------------------------------------------------- evaluation


@dataclass
class Budget:
    """How a run is evaluated and how long it lasts (see the module docstring)."""

    eval_interval: int = 500
    """real steps between evaluations"""
    eval_episodes: int = 10
    """greedy episodes per evaluation"""
    min_steps: int = AUC_STEPS
    """every run lasts at least this many real steps"""
    steps_after_solve: int = 5_000
    """and this many past its first solve"""
    max_steps: int = 20_000
    """cap on real steps per run: where a run that never solves stops (app.benchmark: 50,000)"""

    def __post_init__(self) -> None:
        require_positive(self, "eval_interval", "eval_episodes", "min_steps", "max_steps")
        require_non_negative(self, "steps_after_solve")
        require(self.min_steps <= self.max_steps, "--min-steps must not exceed --max-steps")
        evaluations = self.max_steps // self.eval_interval  # `eval_seeds` keeps runs apart to 100
        require(
            self.eval_episodes <= 100 and evaluations <= 100,
            f"at most 100 evaluations of at most 100 episodes, got {evaluations} of "
            f"{self.eval_episodes}: raise --eval-interval or lower --max-steps",
        )

    def run_length(self, solved_at: int | None) -> int:
        """Real steps a run lasts, given the step of its first solve (None: not solved yet)."""
        if solved_at is None:
            return self.max_steps
        return min(max(self.min_steps, solved_at + self.steps_after_solve), self.max_steps)


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
    act = greedy(q_function)
    envs = [gym.make(ENV_ID) for _ in seeds]
    states = np.stack([env.reset(seed=seed)[0] for env, seed in zip(envs, seeds, strict=True)])
    returns = np.zeros(len(envs))
    running = np.ones(len(envs), dtype=bool)
    while running.any():
        actions = act(torch.as_tensor(states, device=device)).cpu().numpy()
        for i in np.flatnonzero(running):
            states[i], reward, terminated, truncated, _ = envs[i].step(int(actions[i]))
            returns[i] += reward
            running[i] = not (terminated or truncated)
    for env in envs:
        env.close()
    return float(returns.mean())


# Phase 6 measures a run's world model as it learns: a probe is called after every evaluation with
# keyword arguments step, eval_seeds, device and what the agent's loop passes (config, agent, model
# (None before its first fit), buffer). It must change none of them, nor draw the run's random
# numbers, so that a probed run learns exactly as an unprobed one.
Probe = Callable[..., dict]


class Evaluations:
    """One run's evaluation curve as it is measured: when to evaluate (`budget`), the first solve,
    when the run ends, and the run's record. `seed` fixes the evaluation episodes, `label` names
    the run in progress lines, `probe` (see `Probe`) measures after each evaluation."""

    def __init__(self, budget: Budget, seed: int, label: str = "", probe: Probe | None = None):
        self.budget, self.seed, self.label, self.probe = budget, seed, label, probe
        self.probes: list[dict] = []
        self.steps: list[int] = []
        self.returns: list[float] = []
        self.solved_at: int | None = None
        self.wall_to_solve: float | None = None
        self.started = time.perf_counter()

    def due(self, step: int) -> bool:
        return step % self.budget.eval_interval == 0

    def running(self, step: int) -> bool:
        return step < self.budget.run_length(self.solved_at)

    def evaluate(
        self, step: int, q_function: nn.Module, device: torch.device, **run_state: Any
    ) -> float:
        """Evaluate `q_function` greedily at real step `step`, record the result, and let the
        probe (if any) measure `run_state`."""
        seeds = eval_seeds(self.seed, len(self.steps), self.budget.eval_episodes)
        score = evaluate_policy(q_function, seeds, device)
        self.steps.append(step)
        self.returns.append(score)
        if self.solved_at is None and score >= SOLVED_RETURN:
            self.solved_at, self.wall_to_solve = step, time.perf_counter() - self.started
        if self.probe is not None:
            self.probes.append(self.probe(step=step, eval_seeds=seeds, device=device, **run_state))
        report(f"{self.label or f'seed {self.seed}'}: step {step:,}, eval return {score:.0f}")
        return score

    def record(self, **extra: Any) -> dict:
        """The run's record: its curve and figures (see `summarize`), plus `extra` fields."""
        record = summarize(
            self.seed, self.steps, self.returns, self.solved_at, self.wall_to_solve,
            time.perf_counter() - self.started, **extra,
        )  # fmt: skip
        return record | {"probes": self.probes} if self.probe is not None else record


# ----------------------------------------------------------------------------- one run's figures


def stability(
    steps: Sequence[int], returns: Sequence[float], solved_at: int | None
) -> float | None:
    """Share of the (up to) 10 evaluations after the solving one that stay solved; None when the
    run never solved or ended at its solve. The solving evaluation itself is not counted."""
    if solved_at is None:
        return None
    after = np.asarray(returns)[np.asarray(steps) > solved_at][:STABILITY_WINDOW]
    return float((after >= SOLVED_RETURN).mean()) if len(after) else None


def summarize(
    seed: int,
    eval_steps: list[int],
    eval_returns: list[float],
    solved_at: int | None,
    wall_to_solve: float | None,
    wall_total: float,
    **extra: Any,
) -> dict:
    """One run's record: its curve plus steps-to-solve, stability, AUC 10k and wall times."""
    steps, returns = np.array(eval_steps), np.array(eval_returns, dtype=float)
    return {
        "seed": seed,
        "planning_steps": extra.pop("planning_steps", 0),
        "eval_steps": list(eval_steps),
        "eval_returns": list(eval_returns),
        "steps_to_solve": solved_at,
        "stability": stability(steps, returns, solved_at),
        "auc_10k": float(returns[steps <= AUC_STEPS].mean()) if len(steps) else math.nan,
        "wall_s": wall_to_solve,
        "wall_total_s": wall_total,
        **extra,
    }


def finite_weights(weights: dict, run: str) -> None:
    """A run's result is cached or written only if its network is finite (a diverged run is an
    error that names the run, not a record of nonsense)."""
    if nonfinite_weights(weights):
        raise UserError(
            f"training diverged in {run}: its Q-network holds NaN or inf; try a smaller --lr "
            "(this run was not saved)"
        )


# ----------------------------------------------------------------------------- many runs' figures


def stabilities(runs: list[dict]) -> list[float]:
    """The stability of each solved run (an unsolved run has none: it is left out, not zero)."""
    return [run["stability"] for run in runs if run["stability"] is not None]


def aggregate(runs: list[dict]) -> dict:
    """The figures of one arm over its seeds (median: an unsolved run counts as slowest)."""
    solves = [run["steps_to_solve"] for run in runs]
    solved = [s for s in solves if s is not None]
    walls = [run["wall_s"] for run in runs if run["wall_s"] is not None]
    stable = stabilities(runs)
    return {
        "seeds": [run["seed"] for run in runs],
        "steps_to_solve": solves,
        "median_steps": _median_or_none([s if s is not None else math.inf for s in solves]),
        "worst_steps": max(solved) if solved and len(solved) == len(solves) else None,
        "solved": f"{len(solved)}/{len(solves)}",
        "stability": float(np.mean(stable)) if stable else None,
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
    common = min(len(run["eval_returns"]) for run in runs)
    steps = steps[:common]
    returns = np.array([run["eval_returns"][: len(steps)] for run in runs], dtype=float)
    return steps, returns


def mean_and_ci(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the first axis of (R, T) `values` and the half-width of its 95% confidence
    interval (normal approximation; zero for a single run)."""
    mean = values.mean(axis=0)
    if len(values) < 2:
        return mean, np.zeros_like(mean)
    return mean, 1.96 * values.std(axis=0, ddof=1) / np.sqrt(len(values))


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
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {_fmt(a['median_steps'], ',.0f')} | "
            f"{a['solved']} | {_fmt(a['stability'], '.2f')} | {a['auc_10k']:.0f} | "
            f"{_fmt(a['median_wall_s'], '.1f')} |"
        )
    over = "the first 10,000 real steps" if auc_label == "AUC 10k" else "the run"
    return "\n".join(lines) + (
        "\n\n(– not solved; stability: share of the 10 evaluations after the solve that stay at "
        f"475 or more; {auc_label}: mean evaluation return over {over}; wall s: to the solve)"
    )


def _fmt(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "–"


# ----------------------------------------------------------------------------- interval estimates


def steps_or_cap(runs: list[dict], cap: int) -> np.ndarray:
    """(R,) steps-to-solve, an unsolved run counted at the cap (never dropped)."""
    return np.array([cap if r["steps_to_solve"] is None else r["steps_to_solve"] for r in runs])


def iqm(values: np.ndarray) -> np.ndarray:
    """Interquartile mean over the last axis: the mean of the middle 50% of the values, with
    floor(n / 4) cut from each end, as rliable and scipy's `trim_mean(values, 0.25)` compute it
    (Agarwal et al., 2021). Robust to a few outlying runs, yet uses half of them."""
    values = np.sort(np.asarray(values, dtype=float), axis=-1)
    cut = values.shape[-1] // 4
    return values[..., cut : values.shape[-1] - cut].mean(axis=-1)


def bootstrap_interval(
    statistic: Callable[..., np.ndarray],
    samples: Sequence[np.ndarray],
    rng: np.random.Generator,
    reps: int = 20_000,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Point estimate and percentile-bootstrap interval of `statistic(*samples)`.

    Each sample (one arm's runs) is resampled with replacement on its own, `reps` times: the
    stratified bootstrap of Agarwal et al. (2021) with one stratum per arm (there is one task).
    `statistic` gets arrays of shape (reps, n_i) and returns (reps,) values.
    """
    point = float(statistic(*(np.asarray(s, dtype=float)[None] for s in samples))[0])
    resampled = [
        np.asarray(s, dtype=float)[rng.integers(len(s), size=(reps, len(s)))] for s in samples
    ]
    values = statistic(*resampled)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return point, float(low), float(high)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X < Y): the chance that a random run of X solves in fewer steps than a random run of Y,
    ties counted half (the Mann-Whitney statistic). Arrays (..., n) and (..., m) -> (...)."""
    x, y = np.asarray(x)[..., :, None], np.asarray(y)[..., None, :]
    return ((x < y) + 0.5 * (x == y)).mean(axis=(-2, -1))


def performance_profile(steps: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Share of runs solved by each step of `grid` (runs at the cap count as unsolved)."""
    return (np.asarray(steps)[None, :] <= np.asarray(grid)[:, None]).mean(axis=1)


def interval_estimates(
    arms: dict[str, list[dict]], cap: int, reference: str, seed: int = 0
) -> dict[str, dict]:
    """Per arm, the IQM and median of steps-to-solve (unsolved runs at `cap`) with 95% stratified
    bootstrap intervals, P(`reference` solves earlier than this arm), and the mean stability (of
    the solved runs) and AUC 10k, each with its interval.

    Each figure is (point, low, high), or None for the stability of an arm that never solved. The
    bootstrap resamples each arm's runs on its own (the runs of two arms are not paired: a seed
    fixes nothing shared between them).
    """
    rng = np.random.default_rng(seed)
    means = np.random.default_rng([seed, 1])  # own draws: the steps figures keep theirs
    mean = lambda v: v.mean(axis=-1)  # noqa: E731
    steps = {name: steps_or_cap(runs, cap) for name, runs in arms.items()}
    estimates = {}
    for name, values in steps.items():
        figures = {
            "iqm": bootstrap_interval(iqm, [values], rng),
            "median": bootstrap_interval(lambda v: np.median(v, axis=-1), [values], rng),
            "solved": int((values < cap).sum()),
            "runs": len(values),
        }
        if reference in steps and name != reference:
            figures[f"p_{reference}_earlier"] = bootstrap_interval(
                probability_of_improvement, [steps[reference], values], rng
            )
        stable = stabilities(arms[name])
        figures["stability"] = bootstrap_interval(mean, [stable], means) if stable else None
        figures["auc_10k"] = bootstrap_interval(mean, [[r["auc_10k"] for r in arms[name]]], means)
        estimates[name] = figures
    return estimates


def format_estimates(estimates: dict[str, dict], reference: str, cap: int) -> str:
    """Markdown table of `interval_estimates`: point [low, high] for each figure."""

    def cell(figure: tuple[float, float, float] | None, spec: str) -> str:
        if figure is None:
            return "–"
        point, low, high = figure
        return f"{point:{spec}} [{low:{spec}}, {high:{spec}}]"

    lines = [
        f"| arm | solved (by {cap:,}) | IQM steps-to-solve [95% CI] | median [95% CI] | "
        f"P({reference} solves earlier) [95% CI] | stability [95% CI] | AUC 10k [95% CI] |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, figures in estimates.items():
        lines.append(
            f"| {name} | {figures['solved']}/{figures['runs']} | {cell(figures['iqm'], ',.0f')} | "
            f"{cell(figures['median'], ',.0f')} | "
            f"{cell(figures.get(f'p_{reference}_earlier'), '.2f')} | "
            f"{cell(figures.get('stability'), '.2f')} | {cell(figures.get('auc_10k'), '.0f')} |"
        )
    return "\n".join(lines)
