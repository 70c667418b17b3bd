"""The whole pipeline, every phase in order, with each phase's default settings.

    uv run python -m app

Runs app.world_model (self-check), app.data_collection, app.train_model, app.plan_with_model and
app.agent, each exactly as its own `python -m` command would, then prints what was written where
and the headline figures. Phases pass data through files: data/, checkpoints/, plots/.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from app import agent, data_collection, plan_with_model, train_model, world_model
from app.common import UserError, cli
from app.runs import Budget


@dataclass
class Config:
    """Run every phase in order."""

    seed: int = 0
    """seed passed to every phase (plan_with_model uses seed + 1 for fresh episodes, the agent
    seeds seed, seed + 1, seed + 2)"""
    device: str = "cpu"
    """cpu, or cuda when a GPU is present"""
    skip_agent: bool = False
    """stop after phase 4 (the agent's DQN vs Dyna comparison takes a few minutes)"""
    quick: bool = False
    """a tour in seconds: tiny data, few epochs, few episodes (the figures will be poor)"""


# Budgets for --quick: enough to exercise every line, not to learn anything.
QUICK = {
    "collect": {"num_transitions": 1_000},
    "train": {"epochs": 3, "hidden_size": 32},
    "plan": {"num_episodes": 10, "horizon": 20},
    "agent": {
        "budget": Budget(min_steps=600, max_steps=600, eval_interval=300, eval_episodes=2),
        "learning_starts": 200,
        "model_initial_epochs": 5,
        "workers": 1,
    },
}


def main(cfg: Config) -> dict:
    started = time.perf_counter()
    lines: list[str] = []

    print("== Phase 2: world model self-check")
    if not world_model.main(world_model.Config(seed=cfg.seed, device=cfg.device)):
        raise UserError("the world model self-check failed: see the FAIL lines above")

    print("\n== Phase 3: data collection")
    collect_cfg = data_collection.Config(seed=cfg.seed, **QUICK["collect"] if cfg.quick else {})
    data = data_collection.main(collect_cfg).summary()
    lines.append(
        f"{collect_cfg.output}: {data['transitions']:,} transitions, {data['episodes']} episodes"
    )

    print("\n== Phase 3: world model training")
    train_cfg = train_model.Config(
        seed=cfg.seed, device=cfg.device, **QUICK["train"] if cfg.quick else {}
    )
    val = train_model.main(train_cfg)
    lines.append(
        f"{train_cfg.checkpoint}: 1-step state MSE {val['state_mse_raw']:.1e}, done "
        f"precision {val['done_precision']:.2f} / recall {val['done_recall']:.2f}"
    )
    lines.append(f"{train_cfg.plot}: train and validation loss per head")

    print("\n== Phase 4: planning with the model")
    plan_cfg = plan_with_model.Config(
        seed=cfg.seed + 1, device=cfg.device, **QUICK["plan"] if cfg.quick else {}
    )
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
        print("\n== Phase 5: model-free DQN vs Dyna-DQN")
        seeds = tuple(cfg.seed + i for i in range(1 if cfg.quick else len(agent.Config.seeds)))
        agent_cfg = agent.Config(
            seeds=seeds, device=cfg.device, **QUICK["agent"] if cfg.quick else {}
        )
        result = agent.main(agent_cfg)
        lines.append(f"{agent_cfg.plot}: {result['headline']}")

    print(f"\n== Done in {time.perf_counter() - started:.0f} s. Written:")
    for line in lines:
        print(f"  {line}")
    print("Next, phase 6's experiments (about 10 min): uv run python -m app.experiments")
    return {"lines": lines}


if __name__ == "__main__":
    cli(main, Config)
