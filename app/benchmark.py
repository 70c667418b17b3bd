"""Benchmark: Dyna-DQN against honest controls, all measured the same way on the same seeds.

    uv sync --group benchmark                             # adds stable-baselines3 for the peer arm
    uv run --group benchmark python -m app.benchmark      # 4 arms x 10 seeds, about 30-40 min

Arms (every run uses app.agent's measurement: evaluation every 500 real steps, solved at a mean
return >= 475, run to 10,000 steps or 5,000 past the solve, at most 50,000):
  dqn          model-free DQN, 1 update per real step (app.agent with K = 0)
  dqn_matched  model-free DQN with as many updates per real step as Dyna makes (1 + K): is it the
               model that helps, or just more gradient steps?
  dyna         Dyna-DQN, app.agent's default configuration
  sb3_zoo      Stable-Baselines3 DQN with the rl-baselines3-zoo CartPole-v1 hyperparameters
Writes results/benchmark.json (per arm: steps_to_solve, median_steps, stability, auc_10k, wall_s,
median_wall_s; plus machine, versions, config), results/benchmark.md (the table) and
results/benchmark.png (learning curves).
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from app import agent
from app.common import RESULTS_DIR, UserError, cli, progress, require, require_positive
from app.storage import atomic_path, run_metadata, save_json

ARMS = ("dqn", "dqn_matched", "dyna", "sb3_zoo")

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
    """where benchmark.json, benchmark.md and benchmark.png go"""
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
    base = replace(
        agent.Config(),
        max_steps=cfg.max_steps,
        min_steps=min(10_000, cfg.max_steps),
        q_loss=cfg.q_loss,
    )
    if arm == "dqn":
        return replace(base, planning_steps=0)
    if arm == "dqn_matched":
        return replace(base, planning_steps=0, real_updates=base.real_updates + base.planning_steps)
    return base


def run_sb3_zoo(seed: int, base: agent.Config) -> dict:
    """SB3 DQN with zoo settings, measured by a callback with app.agent's definition."""
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    class Measure(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.eval_steps: list[int] = []
            self.eval_returns: list[float] = []
            self.solved_at: int | None = None
            self.wall_to_solve: float | None = None
            self.started = time.perf_counter()

        def _on_step(self) -> bool:
            step = self.num_timesteps
            if step % base.eval_interval == 0:
                seeds = agent.eval_seeds(seed, len(self.eval_steps), base.eval_episodes)
                score = agent.evaluate_policy(self.model.q_net, seeds, torch.device("cpu"))
                self.eval_steps.append(step)
                self.eval_returns.append(score)
                if self.solved_at is None and score >= agent.SOLVED_RETURN:
                    self.solved_at, self.wall_to_solve = step, time.perf_counter() - self.started
            return step < agent.run_length(base, self.solved_at)

    env = gym.make("CartPole-v1")
    model = DQN("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **SB3_ZOO)
    measure = Measure()
    model.learn(total_timesteps=max(SB3_TOTAL_TIMESTEPS, base.max_steps), callback=measure)
    return agent.summarize_run(
        base,
        seed,
        measure.eval_steps,
        measure.eval_returns,
        measure.solved_at,
        measure.wall_to_solve,
        time.perf_counter() - measure.started,
        None,
        0,
        None,
    )


def _run(job: tuple[str, int, Config]) -> tuple[str, dict]:
    arm, seed, cfg = job
    torch.set_num_threads(1)
    config = arm_config(arm, cfg)
    sb3 = arm == "sb3_zoo"
    result = run_sb3_zoo(seed, config) if sb3 else agent.train_dyna_agent(config, seed)
    result.pop("q_weights", None)
    return arm, result


def main(cfg: Config) -> dict:
    jobs = [(arm, seed, cfg) for arm in cfg.arms for seed in cfg.seeds]
    # Longest jobs first keeps both workers busy to the end.
    order = {"dyna": 0, "dqn_matched": 1, "sb3_zoo": 2, "dqn": 3}
    jobs.sort(key=lambda job: order[job[0]])
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    runs: dict[str, list[dict]] = {arm: [] for arm in cfg.arms}
    with context.Pool(cfg.workers, maxtasksperchild=1) as pool:
        for arm, result in progress(
            pool.imap_unordered(_run, jobs),
            total=len(jobs),
            desc="benchmark",
            unit="run",
            disable=False,
        ):
            runs[arm].append(result)
    for arm in runs:
        runs[arm].sort(key=lambda run: run["seed"])

    summary = {arm: agent.aggregate(arm_runs) for arm, arm_runs in runs.items()}
    table = agent.format_table(summary)
    stem = cfg.output_dir / cfg.tag
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
            **run_metadata(cfg),
        },
    )
    with atomic_path(stem.with_suffix(".md")) as tmp:
        tmp.write_text(f"# Benchmark ({len(cfg.seeds)} seeds)\n\n{table}\n")
    agent.plot_comparison(
        runs,
        stem.with_suffix(".png"),
        f"Seeds {', '.join(map(str, cfg.seeds))}; every arm measured with the "
        "same evaluation (10 greedy episodes every 500 real steps); "
        f"{cfg.q_loss} TD loss in the three DQN arms; app.agent's defaults otherwise "
        f"(Dyna{agent.screen_rule(agent.Config())}).",
        meta=run_metadata(cfg),
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
