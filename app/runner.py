"""The one multi-seed runner: a function over many jobs, in local processes or on Ray, cached.

Used by app.agent, app.experiments and app.benchmark. Jobs run in this process (workers = 1),
in spawned processes of one torch thread each, or as Ray actors behind the same
`multiprocessing.Pool` interface (`--backend ray`). `run_cached` saves each finished job's record
as a JSON file the moment it arrives, so a long sweep survives an interruption and a rerun
computes only what is missing; `run_all` returns the results in job order. A Ctrl-C or SIGTERM
stops the workers at once. Runs send news (their latest evaluation, `report`) to the progress
display of the command that runs them, from worker processes too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import multiprocessing
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from app.common import UserError, progress
from app.storage import save_json

RAY_HINT = "uv sync --group ray, then run with `uv run --group ray python -m ...`"


_REPORT: Callable[[str], None] | None = None  # where `report` sends news; None: nobody listens


def report(text: str) -> None:
    """News from inside a run (its latest evaluation) for the progress display of the command
    that runs it, also from a worker process; nothing when no command listens."""
    if _REPORT is not None:
        with contextlib.suppress(Exception):  # news is never worth failing a run for
            _REPORT(text)


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
    news, done = None, threading.Event()  # the workers' news, and the end of relaying it
    if backend == "local":
        context = multiprocessing.get_context("spawn")
        news = context.Queue(maxsize=1000) if on_report is not None else None
        pool = context.Pool(min(workers, len(jobs)), initializer=one_thread, initargs=(news,))
        if news is not None:
            threading.Thread(target=_relay, args=(news, on_report, done), daemon=True).start()
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
        done.set()
        if news is not None:
            news.cancel_join_thread()  # a terminated worker may have held the queue's lock
        if backend == "ray":
            import ray

            ray.shutdown()


def _relay(news, on_report: Callable[[str], None], done: threading.Event) -> None:
    """Hand the workers' news to `on_report` until the pool is done."""
    while not done.is_set():
        with contextlib.suppress(Exception):  # queue.Empty every 0.2 s; a failed report
            on_report(news.get(timeout=0.2))


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
    try:  # closing the results stops the workers, wherever in this loop a Ctrl-C lands
        with contextlib.closing(results):
            for i, record in results if todo else ():
                save_json(todo[i].path(root), record)  # at once: a stopped sweep keeps it
                records[todo[i].key()] = record
                done += 1
                bar.update(1)
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: the workers are stopped by now
        raise type(stop)(
            f"stopped after {done} new runs, all saved in {root}/; run the same command to resume"
        ) from None
    finally:
        bar.close()
    return records, len(todo)


def run_all(
    function: Callable[[Any], dict],
    jobs: Iterable,
    workers: int,
    cost: Callable[[Any], float] | None = None,
    desc: str = "runs",
    note: str = "",
) -> list[dict]:
    """`function(job)` for every job, in `workers` local processes; results in job order. The
    costliest jobs (`cost`) start first; `note` (how long it takes) is printed before they do."""
    jobs = list(jobs)
    print(f"{len(jobs)} runs in {min(workers, len(jobs))} processes" + f" ({note})" * bool(note))
    order = sorted(range(len(jobs)), key=lambda i: -cost(jobs[i])) if cost else range(len(jobs))
    order = list(order)
    results: list[dict] = [{}] * len(jobs)
    with contextlib.closing(progress(total=len(jobs), desc=desc, unit="run")) as bar:
        pool = run_pool(function, [jobs[j] for j in order], workers, on_report=bar.set_postfix_str)
        with contextlib.closing(pool):  # a Ctrl-C anywhere here stops the workers
            for i, result in pool:
                results[order[i]] = result
                bar.update(1)
    at_once, cores = min(workers, len(jobs)), os.cpu_count() or 1
    if at_once > cores:
        print(f"(wall times: {at_once} runs at a time shared {cores} CPU cores)")
    return results
