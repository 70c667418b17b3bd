"""Benchmark: Dyna-DQN against honest controls, all measured the same way on the same seeds.

    uv sync --group benchmark                             # adds stable-baselines3 for the peer arm
    uv run --group benchmark python -m app.benchmark      # 4 arms x 10 seeds, about 30-40 min

Arms (every run uses app/runs.py's measurement: evaluation every 500 real steps, solved at a mean
return >= 475, run to 10,000 steps or 5,000 past the solve, at most 50,000):
  dqn          model-free DQN, 1 update per real step (app.agent with K = 0)
  dqn_matched  model-free DQN with as many updates per real step as Dyna makes (1 + K): is it the
               model that helps, or just more gradient steps?
  dyna         Dyna-DQN, app.agent's default configuration
  sb3_zoo      Stable-Baselines3 DQN with the rl-baselines3-zoo CartPole-v1 hyperparameters
Every (arm, seed) run is cached in results/benchmark_runs/ the moment it finishes, so a stopped
benchmark resumes where it was. Writes results/benchmark.json (per arm: steps_to_solve,
median_steps, stability, auc_10k, wall_s, median_wall_s; plus machine, versions, config),
results/benchmark.md (the table) and results/benchmark.png (learning curves).
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from app import agent
from app.common import RESULTS_DIR, UserError, cli, require, require_positive
from app.plotting import plot_learning_curves
from app.runs import (
    Budget,
    Evaluations,
    aggregate,
    format_table,
    record_path,
    run_cached,
    spec_key,
)
from app.storage import atomic_path, run_metadata, save_json

ARMS = ("dqn", "dqn_matched", "dyna", "sb3_zoo")
CACHE_VERSION = 1  # bump when a change to the code changes what a cached run would contain

# rl-baselines3-zoo, hyperparams/dqn.yml, CartPole-v1.
SB3_ZOO = dict(
    learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1_000, gamma=0.99,
    target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
    exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]),
)  # fmt: skip
SB3_TOTAL_TIMESTEPS = 50_000  # the zoo's n_timesteps; exploration_fraction is relative to it


@dataclass
class Config:
    """Run the benchmark arms on the same seeds, in parallel processes."""

    seeds: tuple[int, ...] = tuple(range(10))
    """one run per seed and arm"""
    arms: tuple[str, ...] = ARMS
    """which arms to run (dqn, dqn_matched, dyna, sb3_zoo)"""
    max_steps: int = 50_000
    """cap on real steps per run"""
    q_loss: str = agent.Config.q_loss
    """TD loss of the three DQN arms (mse or huber, as app.agent's --q-loss; SB3 keeps its own)"""
    workers: int = 2
    """parallel processes, one thread each"""
    output_dir: Path = RESULTS_DIR
    """where benchmark.json, benchmark.md, benchmark.png and the run cache benchmark_runs/ go"""
    tag: str = "benchmark"
    """file name stem of the outputs"""

    def __post_init__(self) -> None:
        require_positive(self, "max_steps", "workers")
        arm_config("dyna", self)  # app.agent's Config checks --q-loss
        require(len(self.seeds) > 0, "--seeds needs at least one seed")
        unknown = set(self.arms) - set(ARMS)
        require(not unknown, f"unknown --arms {sorted(unknown)}: choose from {', '.join(ARMS)}")
        if "sb3_zoo" in self.arms and importlib.util.find_spec("stable_baselines3") is None:
            raise UserError(
                "the sb3_zoo arm needs stable-baselines3: run `uv sync --group "
                "benchmark` and use `uv run --group benchmark python -m app.benchmark`"
                " (or leave it out with --arms dqn dqn_matched dyna)"
            )


def arm_config(arm: str, cfg: Config) -> agent.Config:
    """app.agent's settings for one arm of this benchmark."""
    base = agent.Config(
        budget=Budget(max_steps=cfg.max_steps, min_steps=min(10_000, cfg.max_steps)),
        q_loss=cfg.q_loss,
    )
    if arm == "dqn":
        return replace(base, planning_steps=0)
    if arm == "dqn_matched":
        return replace(base, planning_steps=0, real_updates=base.real_updates + base.planning_steps)
    return base


@dataclass(frozen=True)
class Job:
    """One benchmark run: an arm on a seed, with the arm's full settings."""

    arm: str
    seed: int
    config: agent.Config

    def spec(self) -> dict:
        settings = asdict(self.config) if self.arm != "sb3_zoo" else {
            "sb3_zoo": SB3_ZOO, "budget": asdict(self.config.budget)
        }  # fmt: skip
        for name in ("seeds", "workers", "plot", "results", "q_checkpoint"):
            settings.pop(name, None)  # no effect on a run's numbers
        return {"arm": self.arm, "seed": self.seed, "settings": settings, "version": CACHE_VERSION}

    def key(self) -> str:
        return spec_key(self.spec())

    def path(self, root: Path) -> Path:
        return record_path(root, "benchmark_runs", self.arm, self.seed, self.key())

    def cost(self) -> float:
        return {"dyna": 4, "dqn_matched": 3, "sb3_zoo": 2, "dqn": 1}[self.arm]


def run_sb3_zoo(seed: int, budget: Budget) -> dict:
    """SB3 DQN with zoo settings, measured by a callback with app/runs.py's definitions."""
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    class Measure(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.evaluations = Evaluations(budget, seed)

        def _on_step(self) -> bool:
            step = self.num_timesteps
            if self.evaluations.due(step):
                self.evaluations.evaluate(step, self.model.q_net, torch.device("cpu"))
            return self.evaluations.running(step)

    env = gym.make("CartPole-v1")
    model = DQN("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **SB3_ZOO)
    measure = Measure()
    model.learn(total_timesteps=max(SB3_TOTAL_TIMESTEPS, budget.max_steps), callback=measure)
    return measure.evaluations.record(updates=None, imagined_transitions=0)


def run_job(job: Job) -> dict:
    """One run's cacheable record (in a worker process or a Ray actor)."""
    if job.arm == "sb3_zoo":
        run = run_sb3_zoo(job.seed, job.config.budget)
    else:
        run = agent.train_dyna_agent(job.config, job.seed)
        run.pop("q_weights")
    return {"arm": job.arm, "seed": job.seed, "key": job.key(), "run": run}


def main(cfg: Config) -> dict:
    jobs = [Job(arm, seed, arm_config(arm, cfg)) for arm in cfg.arms for seed in cfg.seeds]
    started = time.perf_counter()
    records, computed = run_cached(jobs, run_job, cfg.output_dir, cfg.workers, desc="benchmark")
    runs = {arm: [records[job.key()]["run"] for job in jobs if job.arm == arm] for arm in cfg.arms}

    summary = {arm: aggregate(arm_runs) for arm, arm_runs in runs.items()}
    table = format_table(summary)
    stem = cfg.output_dir / cfg.tag
    meta = run_metadata(cfg)
    save_json(
        stem.with_suffix(".json"),
        {
            "arms": summary,
            "runs": runs,
            "arm_configs": {
                arm: run_metadata(arm_config(arm, cfg))["config"]
                for arm in cfg.arms
                if arm != "sb3_zoo"
            },
            "sb3_zoo": {k: str(v) for k, v in SB3_ZOO.items()},
            "benchmark_wall_s": time.perf_counter() - started,
            "computed_runs": computed,
            **meta,
        },
    )
    with atomic_path(stem.with_suffix(".md")) as tmp:
        tmp.write_text(f"# Benchmark ({len(cfg.seeds)} seeds)\n\n{table}\n")
    plot_learning_curves(
        runs,
        stem.with_suffix(".png"),
        f"Seeds {', '.join(map(str, cfg.seeds))}; every arm measured with the "
        "same evaluation (10 greedy episodes every 500 real steps); "
        f"{cfg.q_loss} TD loss in the three DQN arms; app.agent's defaults otherwise "
        f"(Dyna{agent.Config().screen.describe()}).",
        meta=meta,
    )
    print(table)
    if "dyna" in summary and "sb3_zoo" in summary:
        dyna, zoo = summary["dyna"]["median_steps"], summary["sb3_zoo"]["median_steps"]
        if dyna and zoo and np.isfinite(zoo):
            print(f"Dyna median / SB3-zoo median = {dyna / zoo:.2f}")
    print(f"Wrote {stem}.json, {stem}.md and {stem}.png ({time.perf_counter() - started:.0f} s)")
    return summary


if __name__ == "__main__":
    cli(main, Config)
