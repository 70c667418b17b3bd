"""The whole pipeline, every phase in order, with each phase's default settings.

    uv run python -m app              # every phase, about 2 minutes on a 2-core laptop
    uv run python -m app --quick      # a tour of every phase in quick/, about 10 s

Runs app.world_model (self-check), app.data_collection, app.train_model, app.plan_with_model and
app.agent, each exactly as its own `python -m` command would, then prints what was written where
and the headline figures. Phases pass data through files: data/, checkpoints/, plots/, results/.
With --quick every file goes under quick/ instead, so a tour never replaces the real outputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from app import agent, data_collection, plan_with_model, train_model, world_model
from app.common import CHECKPOINT_PATH, DATA_PATH, PLOTS_DIR, RESULTS_DIR, UserError, cli
from app.runs import Budget
from app.screen import ScreenConfig


@dataclass
class Config:
    """Run every phase in order."""

    seed: int = 0
    """seed passed to every phase (plan_with_model uses seed + 1 for fresh episodes, the agent
    seeds seed, seed + 1, seed + 2)"""
    device: str = "cpu"
    """cpu, or cuda when a GPU is present"""
    skip_agent: bool = False
    """stop after phase 4 (the agent's DQN vs Dyna comparison takes about 1.5 minutes)"""
    quick: bool = False
    """a tour in seconds: tiny data, few epochs, few episodes (the figures will be poor), written
    under --quick-dir so that the real outputs stay as they are"""
    quick_dir: Path = Path("quick")
    """where --quick writes its data, checkpoints, plots and results"""


# Budgets for --quick: enough to exercise every line, not to learn anything.
QUICK = {
    "collect": {"num_transitions": 1_000},
    "train": {"epochs": 3, "hidden_size": 32},
    "plan": {"num_episodes": 10, "horizon": 20, "coverage_states": 500, "map_cells": 11},
    "agent": {
        "budget": Budget(min_steps=600, max_steps=600, eval_interval=300, eval_episodes=2),
        "learning_starts": 200,
        "model_initial_epochs": 5,
        "model_hidden_size": 32,
        "screen": ScreenConfig(screen_horizon=50, screen_starts=8),
        "workers": 1,
    },
}


def phase_configs(cfg: Config) -> dict:
    """Every phase's config: the defaults, or with --quick tiny budgets and paths in quick/."""
    root = cfg.quick_dir if cfg.quick else Path(".")
    small = QUICK if cfg.quick else {phase: {} for phase in QUICK}
    data, checkpoint, plots = root / DATA_PATH, root / CHECKPOINT_PATH, root / PLOTS_DIR
    seeds = tuple(cfg.seed + i for i in range(1 if cfg.quick else len(agent.Config.seeds)))
    return {
        "collect": data_collection.Config(seed=cfg.seed, output=data, **small["collect"]),
        "train": train_model.Config(
            seed=cfg.seed, device=cfg.device, data=data, checkpoint=checkpoint,
            plot=plots / "training_curve.png", **small["train"],
        ),  # fmt: skip
        "plan": plan_with_model.Config(
            seed=cfg.seed + 1, device=cfg.device, checkpoint=checkpoint, data=data,
            plots_dir=plots, results=root / RESULTS_DIR / "model_accuracy.json", **small["plan"],
        ),  # fmt: skip
        "agent": replace(
            agent.Config(**small["agent"]),
            seeds=seeds, device=cfg.device, plot=plots / "dqn_vs_dyna.png",
            results=root / RESULTS_DIR / "agent.json", q_checkpoint=root / "checkpoints/dqn.pt",
        ),  # fmt: skip
    }


def main(cfg: Config) -> dict:
    started = time.perf_counter()
    configs = phase_configs(cfg)
    lines: list[str] = []
    if cfg.quick:
        print(f"== A quick tour: tiny budgets, poor figures, every file under {cfg.quick_dir}/ "
              "(data/, checkpoints/, plots/ and results/ stay as they are)")  # fmt: skip

    print("== Phase 2: world model self-check")
    if not world_model.main(world_model.Config(seed=cfg.seed, device=cfg.device)):
        raise UserError("the world model self-check failed: see the FAIL lines above")

    print("\n== Phase 3: data collection")
    collect_cfg = configs["collect"]
    data = data_collection.main(collect_cfg).summary()
    lines.append(
        f"{collect_cfg.output}: {data['transitions']:,} transitions, {data['episodes']} episodes"
    )

    print("\n== Phase 3: world model training")
    train_cfg = configs["train"]
    val = train_model.main(train_cfg)
    lines.append(
        f"{train_cfg.checkpoint}: 1-step state MSE {val['state_mse_raw']:.1e}, done "
        f"precision {val['done_precision']:.2f} / recall {val['done_recall']:.2f}"
    )
    lines.append(f"{train_cfg.plot}: train and validation loss per head")

    print("\n== Phase 4: planning with the model")
    plan_cfg = configs["plan"]
    plan = plan_with_model.main(plan_cfg)
    crossing = plan["crossing"]
    lines.append(
        f"{plan_cfg.plots_dir}/trajectory_comparison.png, compounding_error.png, "
        "dream_vs_reality.gif: error "
        + (
            f"passes {plan_cfg.error_threshold:g} at step {crossing}"
            if crossing
            else f"stays under {plan_cfg.error_threshold:g}"
        )
    )

    if not cfg.skip_agent:
        duration = "" if cfg.quick else " (about 1.5 minutes)"
        print(f"\n== Phase 5: model-free DQN vs Dyna-DQN{duration}")
        agent_cfg = configs["agent"]
        result = agent.main(agent_cfg)
        lines.append(f"{agent_cfg.plot}: {result['headline']}")

    print(f"\n== Done in {time.perf_counter() - started:.0f} s. Written:")
    for line in lines:
        print(f"  {line}")
    print("Next, phase 6's experiments (about 10 min): uv run python -m app.experiments")
    return {"lines": lines}


if __name__ == "__main__":
    cli(main, Config)
