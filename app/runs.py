"""Runs of a DQN agent, measured one way everywhere: evaluation, records, statistics, the runner.

Shared by app.agent (phase 5), app.experiments (phase 6) and app.benchmark, so that a number means
the same thing in each of them:

    evaluation  every `eval_interval` real steps, `eval_episodes` greedy episodes on seeded
                evaluation environments (their steps are not counted as real steps)
    solved      the first evaluation whose mean return is at least 475
    stability   the share of the next 10 evaluations (after the solving one) that stay >= 475
    AUC 10k     the mean evaluation return over the first 10,000 real steps
    run length  until `min_steps`, or `steps_after_solve` past the solve if later, at most
                `max_steps` (a run that never solves goes on to the cap)

The runner executes one function over many jobs, in local processes of one thread each or as Ray
actors through the same `multiprocessing.Pool` interface, and caches each finished job as a JSON
file, so that a long sweep survives an interruption and a rerun computes only what is missing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from app.common import ENV_ID, UserError, progress, require_positive
from app.policies import greedy
from app.storage import save_json

SOLVED_RETURN = 475.0
STABILITY_WINDOW = 10  # evaluations after the solve that count towards stability
AUC_STEPS = 10_000
RAY_HINT = "uv sync --group ray, then run with `uv run --group ray python -m ...`"


# ----------------------------------------------------------------------------- evaluation


@dataclass
class Budget:
    """How a run is evaluated and how long it lasts (see the module docstring)."""

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

    def __post_init__(self) -> None:
        require_positive(self, "eval_interval", "eval_episodes", "min_steps", "max_steps")
        if self.steps_after_solve < 0:
            raise UserError(f"--steps-after-solve must be >= 0, got {self.steps_after_solve}")
        if self.min_steps > self.max_steps:
            raise UserError("--min-steps must not exceed --max-steps")

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


_REPORT: Callable[[str], None] | None = None  # where `report` sends news; None: nobody listens


def report(text: str) -> None:
    """News from inside a run (its latest evaluation) for the progress display of the command
    that runs it, also from a worker process; nothing when no command listens."""
    if _REPORT is not None:
        with contextlib.suppress(Exception):  # news is never worth failing a run for
            _REPORT(text)


class Evaluations:
    """One run's evaluation curve as it is measured: when to evaluate, the first solve, when the
    run ends, the probes' measurements, and the run's record at the end.

    Args:
        budget: when to evaluate, and how long the run lasts.
        seed: the run's seed (it fixes the evaluation episodes).
        label: names the run in progress lines.
        probe: called after each evaluation (see `Probe`); its dicts go to the record's "probes".
    """

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
    if not all(w.isfinite().all() for w in weights.values() if w.is_floating_point()):
        raise UserError(
            f"training diverged in {run}: its Q-network holds NaN or inf; try a smaller --lr "
            "(this run was not saved)"
        )


# ----------------------------------------------------------------------------- many runs' figures


def aggregate(runs: list[dict]) -> dict:
    """The figures of one arm over its seeds (median: an unsolved run counts as slowest)."""
    solves = [run["steps_to_solve"] for run in runs]
    solved = [s for s in solves if s is not None]
    walls = [run["wall_s"] for run in runs if run["wall_s"] is not None]
    stabilities = [run["stability"] for run in runs if run["stability"] is not None]
    return {
        "seeds": [run["seed"] for run in runs],
        "steps_to_solve": solves,
        "median_steps": _median_or_none([s if s is not None else math.inf for s in solves]),
        "worst_steps": max(solved) if solved and len(solved) == len(solves) else None,
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
    return "\n".join(lines)


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
    bootstrap intervals, and P(`reference` solves earlier than this arm) with its interval.

    Each figure is (point, low, high). The bootstrap resamples each arm's runs on its own (the
    runs of two arms are not paired: a seed fixes nothing shared between them).
    """
    rng = np.random.default_rng(seed)
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
        f"P({reference} solves earlier) [95% CI] |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, figures in estimates.items():
        lines.append(
            f"| {name} | {figures['solved']}/{figures['runs']} | {cell(figures['iqm'], ',.0f')} | "
            f"{cell(figures['median'], ',.0f')} | "
            f"{cell(figures.get(f'p_{reference}_earlier'), '.2f')} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the runner


def spec_key(spec: dict) -> str:
    """12 hex digits of the SHA-256 of `spec` as sorted JSON: equal specs, equal keys."""
    text = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def record_path(root: Path, group: str, arm: str, seed: int, key: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", arm.lower()).strip("-")
    return Path(root) / group / f"{slug}-seed{seed}-{key}.json"


def load_cached(job, root: Path) -> dict | None:
    """The finished record of `job`, or None if it must (still) be computed."""
    path = job.path(root)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if isinstance(record, dict) and record.get("key") == job.key() and "run" in record:
            return record
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    print(f"warning: {path} is unreadable or from another config; running it again")
    return None


def one_thread(news=None) -> None:
    """Worker set-up: one torch thread (a run's numbers depend on the thread count, through the
    order of the sums in a matrix product), Ctrl-C left to the parent, which stops the pool, and
    `report` sending its news to the parent through the queue `news`."""
    global _REPORT
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if news is not None:
        _REPORT = news.put_nowait


def run_pool(
    function: Callable[[Any], Any],
    jobs: list,
    workers: int,
    backend: str = "local",
    address: str = "",
    on_report: Callable[[str], None] | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield (index into `jobs`, result) as each `function(job)` finishes.

    local: in this process when `workers` is 1 (with one torch thread, as in a worker), else
    `workers` spawned processes of one thread each. ray: the same through Ray's multiprocessing
    Pool (actors on a local Ray instance of `workers` CPUs, or on the cluster at `address`).
    `on_report` receives the runs' news (`report`), from local workers too. A Ctrl-C or SIGTERM
    stops the workers at once; results already yielded are the caller's.
    """
    global _REPORT
    indexed = list(enumerate(jobs))
    if backend == "local" and (workers == 1 or len(jobs) == 1):
        threads, listening = torch.get_num_threads(), _REPORT
        torch.set_num_threads(1)
        _REPORT = on_report
        try:
            for i, job in indexed:
                yield i, function(job)
        finally:
            torch.set_num_threads(threads)
            _REPORT = listening
        return
    news = None
    if backend == "local":
        context = multiprocessing.get_context("spawn")
        news = context.Queue(maxsize=1000)
        pool = context.Pool(min(workers, len(jobs)), initializer=one_thread, initargs=(news,))
        if on_report is not None:
            threading.Thread(target=_relay, args=(news, on_report), daemon=True).start()
    else:
        pool = _ray_pool(workers, address)
    try:
        for i, result in pool.imap_unordered(functools.partial(_indexed, function), indexed):
            yield i, result
    except BaseException:  # Ctrl-C, SIGTERM or the caller stopped early: stop the workers now
        pool.terminate()
        raise
    else:
        pool.close()  # all done: a clean shutdown (no leaked-semaphore warning at exit)
    finally:
        pool.join()
        if news is not None:
            news.put(None)  # ends the relay
        if backend == "ray":
            import ray

            ray.shutdown()


def _relay(news, on_report: Callable[[str], None]) -> None:
    """Hand the workers' news to `on_report` until the pool is done (a None)."""
    while (text := news.get()) is not None:
        with contextlib.suppress(Exception):
            on_report(text)


def _indexed(function: Callable[[Any], Any], item: tuple[int, Any]) -> tuple[int, Any]:
    """`function` applied to the job of an (index, job) pair, the index passed through."""
    return item[0], function(item[1])


def _ray_pool(workers: int, address: str):
    """Ray actors behind the `multiprocessing.Pool` interface. The `app` package travels with
    them, so the nodes of a cluster only need this project's dependencies installed."""
    # Under `uv run`, Ray would start every worker through `uv run` in a copy of this folder,
    # building a fresh environment (minutes); the workers use this interpreter instead, unless
    # the user asks for Ray's behaviour with RAY_ENABLE_UV_RUN_RUNTIME_ENV=1.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import ray
        from ray.util.multiprocessing import Pool
    except ImportError:
        raise UserError(f"--backend ray needs Ray, an optional dependency: {RAY_HINT}") from None
    options: dict[str, Any] = dict(
        runtime_env={"py_modules": [str(Path(__file__).resolve().parent)]},
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    ours = signal.getsignal(signal.SIGTERM)
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(num_cpus=workers, **options)
    signal.signal(signal.SIGTERM, ours)  # ray.init replaces it; SIGTERM stops this run cleanly
    return Pool(processes=None if address else workers, initializer=one_thread)


def run_cached(
    jobs: list,
    function: Callable[[Any], dict],
    root: Path,
    workers: int,
    backend: str = "local",
    address: str = "",
    desc: str = "runs",
) -> tuple[dict[str, dict], int]:
    """Every job's record, read from `root` or computed now and saved there the moment it
    finishes; returns (records by key, how many were computed). A job has `key()` (a hash of what
    fixes its numbers), `path(root)` (its cache file) and `cost()` (a rough run time); costliest
    jobs start first. An interrupted call resumes where it stopped."""
    records: dict[str, dict] = {}
    todo = []
    for job in jobs:
        record = load_cached(job, root)
        if record is None:
            todo.append(job)
        else:
            records[job.key()] = record
    print(f"{len(jobs)} runs: {len(records)} cached in {root}/, {len(todo)} to compute", flush=True)
    todo.sort(key=lambda job: job.cost(), reverse=True)
    done = 0
    bar = progress(total=len(todo), desc=desc, unit="run")
    results = run_pool(function, todo, workers, backend, address, bar.set_postfix_str)
    try:
        for i, record in results if todo else ():
            save_json(todo[i].path(root), record)  # at once: a stopped sweep keeps it
            records[todo[i].key()] = record
            done += 1
            bar.update(1)
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: the workers are stopped by now
        bar.close()
        raise type(stop)(
            f"stopped after {done} new runs, all saved in {root}/; run the same command to resume"
        ) from None
    bar.close()
    return records, len(todo)


def run_all(
    function: Callable[[Any], dict],
    jobs: Iterable,
    workers: int,
    cost: Callable[[Any], float] | None = None,
    desc: str = "runs",
) -> list[dict]:
    """`function(job)` for every job, in `workers` local processes; results in job order. With
    `cost`, the costliest jobs start first, so that the cheap ones fill the gaps at the end."""
    jobs = list(jobs)
    order = sorted(range(len(jobs)), key=lambda i: -cost(jobs[i])) if cost else range(len(jobs))
    order = list(order)
    results: list[dict] = [{}] * len(jobs)
    with contextlib.closing(progress(total=len(jobs), desc=desc, unit="run")) as bar:
        ordered = [jobs[j] for j in order]
        for i, result in run_pool(function, ordered, workers, on_report=bar.set_postfix_str):
            results[order[i]] = result
            bar.update(1)
    at_once, cores = min(workers, len(jobs)), os.cpu_count() or 1
    if at_once > cores:
        print(f"(wall times: {at_once} runs at a time shared {cores} CPU cores)")
    return results
