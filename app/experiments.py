"""Phase 6: experiments with the Dyna agent: how much to imagine, how far to trust a dream, and
what a learner does with a bad model.

    uv run python -m app.experiments                          # every study, about 10 min on 2 cores
    uv run python -m app.experiments --studies k_sweep --seeds 0 1 2 3 4
    uv run --group ray python -m app.experiments --backend ray --address auto   # on a Ray cluster

Studies (each writes a plot; the tables go to results/experiments/summary.md):
  k_sweep         K = 0, 1, 5, 10 imagined updates per real step. plots/k_sweep.png
  rollout_length  dreams of k = 1 and k = 5 steps, and k = 5 through an ensemble that ends a dream
                  where its members disagree; beside the learning curves, the share of imagined
                  transitions that were wrong, checked against CartPole's true physics from the
                  same start state and actions. plots/rollout_length.png
  exploitation    the agent learns from imagination only, with a model fitted once on 100 random
                  steps and frozen, or one refitted as data arrive: the greedy policy's return in
                  the model's imagination against its return in the real env.
                  plots/model_exploitation.png

Every (config, seed) run is one job, saved as results/experiments/<study>/<arm>-seed<N>-<hash>.json
the moment it finishes; the hash covers the whole agent config, the probe and the seed. A rerun only
computes what is missing (nothing, if nothing changed), and an interrupted sweep resumes where it
stopped. Jobs run in local processes (one thread each) or, with --backend ray, as one Ray task each;
both run the same function on the same inputs and write identical files.

Runs here are shorter than app.agent's: a fixed budget of real steps (5,000; 3,000 for the
exploitation study), the same evaluation (10 greedy episodes every 500 steps), "stability" being the
share of the evaluations after the first solve, within the budget, that stay solved.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from app import agent as dyna
from app.common import (
    ENV_ID,
    PLOTS_DIR,
    RESULTS_DIR,
    cli,
    flat_settings,
    require,
    require_positive,
)
from app.plan_with_model import imagine_rollout, true_rollout, wrong_transitions
from app.plotting import (
    COLORS,
    CYCLE,
    add_caption,
    band,
    draw_learning_curves,
    new_figure,
    plot_learning_curves,
    save_figure,
)
from app.policies import greedy
from app.runner import record_path, run_cached, spec_key
from app.runs import (
    SOLVED_RETURN,
    Budget,
    aggregate,
    finite_weights,
    format_table,
    learning_curves,
)
from app.screen import ScreenConfig
from app.storage import atomic_path, require_writable, run_metadata, save_json
from app.world_model import EnsembleConfig, trusted_steps

STUDIES = ("k_sweep", "rollout_length", "exploitation")
BACKENDS = ("local", "ray")
CACHE_VERSION = 1  # bump when a change to the code changes what a cached run would contain


@dataclass
class Config:
    """Run the phase 6 studies (K sweep, rollout length with an ensemble arm, model exploitation),
    caching every run."""

    studies: tuple[str, ...] = STUDIES
    """which studies to run: k_sweep, rollout_length, exploitation"""
    seeds: tuple[int, ...] = (0, 1, 2)
    """one run per seed and arm"""
    k_values: tuple[int, ...] = (0, 1, 5, 10)
    """K sweep: imagined Q-updates per real step (0 = model-free DQN)"""
    rollout_lengths: tuple[int, ...] = (1, 5)
    """rollout-length study: imagined steps per dream (k)"""
    rollout_k: int = 5
    """K used by the rollout-length and exploitation studies"""
    ensemble_size: int = 3
    """E: members of the ensemble arm in the rollout-length study (1 = no ensemble arm)"""
    max_disagreement: float = 0.5
    """the ensemble arm ends a dream where its members' next states differ by more than this many
    typical one-step changes"""
    steps: int = 5_000
    """real steps per run (k_sweep, rollout_length)"""
    exploitation_steps: int = 3_000
    """real steps per run in the exploitation study"""
    exploitation_data: int = 100
    """random warm-up steps the exploitation study's models are first fitted on"""
    model_hidden_size: int = 128
    """width of the world model's layers in every run here (app.agent: 200)"""
    error_threshold: float = 1e-2
    """an imagined transition is wrong when its squared state error (raw units, mean over the 4
    variables) passes this, or its done disagrees with the true physics"""
    probe_starts: int = 256
    """real start states per model-error measurement (at every evaluation)"""
    backend: str = "local"
    """local (processes on this machine) or ray (one Ray task per run)"""
    address: str = ""
    """Ray cluster address for --backend ray, e.g. auto or ray://host:10001 ('' = start a local
    Ray instance with --workers CPUs)"""
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """parallel runs (local processes of one thread each, or CPUs of the local Ray instance);
    default: every core"""
    results_dir: Path = RESULTS_DIR / "experiments"
    """where every run is cached, and summary.md / summary.json go"""
    plots_dir: Path = PLOTS_DIR
    """where the plots go"""

    def __post_init__(self) -> None:
        require_positive(
            self, "rollout_k", "ensemble_size", "max_disagreement", "steps", "exploitation_steps",
            "exploitation_data", "model_hidden_size", "error_threshold", "probe_starts", "workers",
        )  # fmt: skip
        unknown = sorted(set(self.studies) - set(STUDIES))
        require(not unknown, f"unknown --studies {unknown}: choose from {', '.join(STUDIES)}")
        require(len(self.seeds) > 0, "--seeds needs at least one seed")
        require(self.backend in BACKENDS, f"--backend must be local or ray, got {self.backend!r}")
        require(all(k >= 0 for k in self.k_values), "--k-values must all be >= 0")
        require(all(k >= 1 for k in self.rollout_lengths), "--rollout-lengths must all be >= 1")
        require(self.exploitation_data < self.exploitation_steps, "--exploitation-data too large")


# ----------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """One run: an agent config, a seed, and what to measure at each evaluation."""

    study: str
    arm: str
    seed: int
    agent: dyna.Config
    probe: dict = field(default_factory=dict)  # {"name": ..., its settings}; {} = none

    def key(self) -> str:
        """Hash of everything that determines the run's numbers. The settings are hashed flat, as
        named on the command line: the layout the keys were first computed with, before the
        agent's settings were grouped, so cached runs stay valid."""
        agent = {
            k: v
            for k, v in flat_settings(self.agent).items()
            if k not in _NOT_HASHED and _ADDED_LATER.get(k, object()) != v
        }
        return spec_key(
            {"agent": agent, "probe": self.probe, "seed": self.seed, "version": CACHE_VERSION}
        )

    def path(self, root: Path) -> Path:
        return record_path(root, self.study, self.arm, self.seed, self.key())

    def cost(self) -> float:
        """Rough relative run time, so the longest runs start first."""
        a = self.agent
        planning = a.planning_steps * (1 + a.ensemble.ensemble_size / 4)
        return a.budget.max_steps * (1 + a.real_updates + planning)


# Output paths and parallelism do not change a run's numbers.
_NOT_HASHED = {"seeds", "workers", "plot", "results", "q_checkpoint"}
# Options added to the agent after runs were cached, with the value that reproduces the old
# behaviour: hashed only when set to something else, so a new option keeps every cached run valid.
_ADDED_LATER = {
    "tau": 1.0,
    "q_loss": "huber",
    "terminal_samples": 0,
    "screen_interval": 0,
    "screen_horizon": 500,
    "screen_starts": 64,
    "value_expansion": 0,
}


def base_agent_config(cfg: Config) -> dyna.Config:
    """app.agent's defaults, on a fixed budget of `cfg.steps` real steps: every arm starts here.

    Except six settings changed in app.agent after these studies were measured (the squared TD
    loss, terminal samples, the model screen, 1-step rollouts, value expansion and Double DQN):
    the studies keep the agent they were run with (k = 3 where a study does not choose k), so their
    cached runs and the README's figures stay valid.
    """
    return dyna.Config(
        budget=Budget(min_steps=cfg.steps, max_steps=cfg.steps, steps_after_solve=0),
        model_hidden_size=cfg.model_hidden_size,
        workers=1,
        rollout_length=3,
        q_loss="huber",
        terminal_samples=0,
        screen=ScreenConfig(screen_interval=0),
        value_expansion=0,
        double_q=False,
    )


def plan_jobs(cfg: Config) -> list[Job]:
    """Every (study, arm, seed) job the config asks for."""
    base = base_agent_config(cfg)
    error_probe = {
        "name": "model_error",
        "starts": cfg.probe_starts,
        "threshold": cfg.error_threshold,
    }
    arms: list[tuple[str, str, dyna.Config, dict]] = []
    if "k_sweep" in cfg.studies:
        for k in cfg.k_values:
            arms.append(("k_sweep", f"K={k}", replace(base, planning_steps=k), {}))
    if "rollout_length" in cfg.studies:
        at_k = replace(base, planning_steps=cfg.rollout_k)
        for length in cfg.rollout_lengths:
            arm_cfg = replace(at_k, rollout_length=length)
            arms.append(("rollout_length", f"k={length}", arm_cfg, error_probe))
        if cfg.ensemble_size > 1:
            length = max(cfg.rollout_lengths)
            arm_cfg = replace(
                at_k,
                rollout_length=length,
                ensemble=EnsembleConfig(cfg.ensemble_size, cfg.max_disagreement),
            )
            name = f"k={length}, ensemble of {cfg.ensemble_size}"
            arms.append(("rollout_length", name, arm_cfg, error_probe))
    if "exploitation" in cfg.studies:
        imagination_only = replace(
            base,
            budget=replace(
                base.budget, min_steps=cfg.exploitation_steps, max_steps=cfg.exploitation_steps
            ),
            learning_starts=cfg.exploitation_data,
            planning_steps=cfg.rollout_k,
            real_updates=0,  # the Q-network sees nothing but the model's dreams
        )
        probe = {"name": "imagined_return", "horizon": 500}
        for name, refit in (("frozen model", False), ("refitted model", True)):
            arm_cfg = replace(imagination_only, refit_model=refit)
            arms.append(("exploitation", name, arm_cfg, probe))
    return [Job(study, arm, seed, c, p) for study, arm, c, p in arms for seed in cfg.seeds]


# ----------------------------------------------------------------------------- probes


@torch.no_grad()
def measure_model_error(
    starts: int, threshold: float, *, config, agent, model, buffer, eval_seeds, **_
) -> dict:
    """Imagine from real start states as the agent does, replay the same actions through the true
    physics, and count the imagined transitions that are wrong (see `wrong_transitions`)."""
    if model is None:
        return {"wrong": None, "kept": None}
    generator = torch.Generator().manual_seed(eval_seeds[0])  # not the run's: no side effects
    start = buffer.sample(starts, generator)["state"]
    rollout = imagine_rollout(model, start, greedy(agent.q_network), config.rollout_length)
    trusted = rollout.valid & trusted_steps(model, rollout)
    truth = true_rollout(start.cpu().numpy(), rollout.actions.cpu().numpy())
    wrong = wrong_transitions(rollout._replace(valid=trusted), truth, threshold)
    used = int(trusted.sum())
    return {
        "wrong": float(wrong.sum() / used) if used else None,
        "kept": float(used / max(int(rollout.valid.sum()), 1)),  # share not cut by the ensemble
    }


@torch.no_grad()
def imagined_return(horizon: int, *, agent, model, eval_seeds, device, **_) -> dict:
    """The greedy policy's return inside the model, from the evaluation episodes' start states."""
    if model is None:
        return {"imagined_return": None}
    with gym.make(ENV_ID) as env:
        starts = np.stack([env.reset(seed=seed)[0] for seed in eval_seeds])
    start = torch.as_tensor(starts, device=device)
    rollout = imagine_rollout(model, start, greedy(agent.q_network), horizon)
    returns = (rollout.rewards * rollout.valid).sum(dim=1)
    return {"imagined_return": float(returns.mean())}


PROBES: dict[str, Callable[..., dict]] = {
    "model_error": measure_model_error,
    "imagined_return": imagined_return,
}


def run_job(job: Job) -> dict:
    """Train one agent and return its cacheable record (runs in a worker process or Ray task)."""
    torch.set_num_threads(1)  # the same arithmetic on every backend: identical numbers
    probe = None
    if job.probe:
        settings = {k: v for k, v in job.probe.items() if k != "name"}
        probe = functools.partial(PROBES[job.probe["name"]], **settings)
    run = dyna.train_dyna_agent(job.agent, job.seed, probe=probe)
    finite_weights(run.pop("q_weights"), f"{job.study} {job.arm} seed {job.seed}")
    record = {"study": job.study, "arm": job.arm, "seed": job.seed, "key": job.key()}
    return record | {"probe": job.probe, "run": run, **run_metadata(job.agent)}


# ----------------------------------------------------------------------------- plots


def _curve(runs: list[dict], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(T,) evaluation steps and (R, T) values of probe field `name` (NaN where not measured)."""
    steps = np.array(runs[0]["eval_steps"])
    values = np.array(
        [[np.nan if p[name] is None else p[name] for p in run["probes"]] for run in runs]
    )
    return steps, values


def plot_k_sweep(arms: dict[str, list[dict]], cfg: Config, path: Path, meta: dict) -> None:
    plot_learning_curves(
        arms,
        path,
        f"Seeds {_seeds(cfg)}; {cfg.steps:,} real steps per run; imagined rollouts of 3 steps; "
        f"world model {cfg.model_hidden_size} wide, refitted every 250 steps; Q-learning settings "
        "as app.agent.",
        until=cfg.steps,
        meta=meta,
        title="K imagined Q-updates per real step",
    )


def plot_rollout_length(arms: dict[str, list[dict]], cfg: Config, path: Path, meta: dict) -> None:
    fig, axes = new_figure(1, 2, width=6.0, height=4.4)
    left, right = axes[0]
    draw_learning_curves(left, arms, cfg.steps)
    left.set_title("Sample efficiency; band: 95% CI of the mean over seeds", fontsize=10)
    for i, (name, runs) in enumerate(arms.items()):
        steps, wrong = _curve(runs, "wrong")
        band(right, steps, 100 * wrong, CYCLE[i % len(CYCLE)], f"{name} ({len(runs)} seeds)")
    right.set_xlabel("real environment steps")
    right.set_ylabel("imagined transitions that are wrong [%]")
    right.set_xlim(0, cfg.steps)
    right.set_ylim(bottom=0)
    right.legend(loc="upper right")
    right.set_title("Model error, checked against the true physics", fontsize=10)
    add_caption(
        fig,
        f"K={cfg.rollout_k} imagined updates per real step; seeds {_seeds(cfg)}. Right: at every "
        f"evaluation, {cfg.probe_starts} real buffer states are dreamt forward k steps under the "
        f"greedy policy and the same actions replayed in gymnasium's CartPole; a transition is "
        f"wrong when its squared state error passes {cfg.error_threshold:g} or its done differs. "
        f"The ensemble ends a dream where its {cfg.ensemble_size} members disagree by more than "
        f"{cfg.max_disagreement:g} typical one-step changes.",
    )
    save_figure(fig, path, meta)


def plot_exploitation(arms: dict[str, list[dict]], cfg: Config, path: Path, meta: dict) -> None:
    fig, axes = new_figure(1, len(arms), width=5.0, height=4.0, sharey=True)
    for ax, (name, runs) in zip(axes[0], arms.items(), strict=True):
        steps, real = learning_curves(runs, cfg.exploitation_steps)
        band(ax, steps, real, COLORS["real"], "real environment")
        steps, dreamt = _curve(runs, "imagined_return")
        band(ax, steps, dreamt, COLORS["model"], "inside the model")
        ax.axhline(SOLVED_RETURN, color="#444444", ls=":", lw=1, label="solved (475)")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("real environment steps")
        ax.set_xlim(0, cfg.exploitation_steps)
        ax.set_ylim(0, 520)
        ax.legend(loc="lower right")
    axes[0, 0].set_ylabel("greedy policy's return\n(mean of 10 episodes)")
    fig.suptitle(
        "Model exploitation: the Q-network learns only from imagined transitions", fontsize=11
    )
    add_caption(
        fig,
        f"Both models are first fitted on {cfg.exploitation_data} random steps; the frozen one is "
        f"never refitted, the other is refitted every 250 steps on the agent's own data. "
        f"K={cfg.rollout_k}, 3-step dreams, no Q-updates on real transitions. 'Inside the "
        f"model': the same greedy policy and start states, rolled out in the model for up to 500 "
        f"steps. Band: 95% CI of the mean over seeds {_seeds(cfg)}.",
    )
    save_figure(fig, path, meta)


def _seeds(cfg: Config) -> str:
    return ", ".join(map(str, cfg.seeds))


# ----------------------------------------------------------------------------- main


def main(cfg: Config) -> dict:
    plots = {
        "k_sweep": (plot_k_sweep, "k_sweep.png"),
        "rollout_length": (plot_rollout_length, "rollout_length.png"),
        "exploitation": (plot_exploitation, "model_exploitation.png"),
    }
    outputs = [cfg.plots_dir / name for _, name in plots.values()]
    require_writable(*outputs, cfg.results_dir / "summary.md", cfg.results_dir / "summary.json")
    jobs = plan_jobs(cfg)
    print("From an empty cache the default studies take about 10 minutes on a 2-core laptop.")
    records, computed = run_cached(
        jobs, run_job, cfg.results_dir, cfg.workers, cfg.backend, cfg.address
    )
    meta = run_metadata(cfg)
    summary: dict[str, dict] = {}
    tables = []
    written = []
    for study in (s for s in STUDIES if s in cfg.studies):
        arms: dict[str, list[dict]] = {}
        for job in jobs:
            if job.study == study:
                arms.setdefault(job.arm, []).append(records[job.key()]["run"])
        figures = {name: aggregate(runs) for name, runs in arms.items()}
        if study == "rollout_length":
            for name, runs in arms.items():
                figures[name]["wrong_share"] = float(np.nanmean(_curve(runs, "wrong")[1]))
        if study == "exploitation":
            for name, runs in arms.items():
                final = [run["probes"][-1]["imagined_return"] for run in runs]
                figures[name]["final_imagined_return"] = float(
                    np.mean([value for value in final if value is not None] or [np.nan])
                )
                figures[name]["final_real_return"] = float(
                    np.mean([run["eval_returns"][-1] for run in runs])
                )
        summary[study] = figures
        plot, name = plots[study]
        plot(arms, cfg, cfg.plots_dir / name, meta)
        written.append(cfg.plots_dir / name)
        table = format_table(figures, auc_label="mean return")
        tables.append(f"## {study}\n\n{table}\n{_extra_lines(study, figures)}")
        print(f"\n{study}\n{table}\n{_extra_lines(study, figures)}")
    markdown = cfg.results_dir / "summary.md"
    with atomic_path(markdown) as tmp:
        tmp.write_text(
            "# Phase 6 experiments\n\nWritten by `uv run python -m app.experiments`. 'mean return':"
            " mean evaluation return over the whole run.\n\n" + "\n\n".join(tables) + "\n"
        )
    save_json(cfg.results_dir / "summary.json", {"studies": summary, **meta})
    written += [markdown, cfg.results_dir / "summary.json"]
    print(f"\nComputed {computed} runs. Wrote {', '.join(map(str, written))}")
    return {"studies": summary, "computed": computed}


def _extra_lines(study: str, figures: dict[str, dict]) -> str:
    if study == "rollout_length":
        return "\n".join(
            f"- {name}: {100 * f['wrong_share']:.1f}% of imagined transitions wrong"
            for name, f in figures.items()
            if not math.isnan(f["wrong_share"])
        )
    if study == "exploitation":
        return "\n".join(
            f"- {name}: final greedy return {f['final_real_return']:.0f} in the real env, "
            f"{f['final_imagined_return']:.0f} inside the model"
            for name, f in figures.items()
        )
    return ""


if __name__ == "__main__":
    cli(main, Config)
