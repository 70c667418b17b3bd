"""Phase 6: the experiment runner's cache and resume, its backends, the agent's phase 6 options
(ensemble truncation, a frozen model) and what the probes measure."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import sys
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from app import agent as dyna
from app import experiments, train_model
from app.agent import _train_on_simulated_data
from app.common import ENV_ID, flat_settings, with_settings
from app.plan_with_model import (
    Rollout,
    TrueRollout,
    imagine_rollout,
    true_rollout,
    wrong_transitions,
)
from app.runner import spec_key
from app.world_model import WorldModelConfig, WorldModelEnsemble, trusted_steps
from tests.conftest import assert_one_line_error, run_in_process
from tests.test_agent import filled_buffer, make_agent, tiny_run
from tests.test_plan_with_model import CountingModel

KEYS_BEFORE = {
    "rollout_length/k=5, ensemble of 3/2": "c3a437db3b5f",
    "exploitation/frozen model/1": "8da7df7c969d",
}


@pytest.fixture(autouse=True)
def _restore_threads():
    """run_job pins torch to one thread (as in a worker); give the test process its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_agent(cfg: experiments.Config) -> dyna.Config:
    return tiny_run(
        min_steps=cfg.steps,
        max_steps=cfg.steps,
        steps_after_solve=0,
        learning_starts=100,
        eval_interval=100,
        model_hidden_size=16,
        model_sample=256,
        workers=1,
    )


@pytest.fixture
def tiny(monkeypatch, tmp_path) -> experiments.Config:
    """Seconds-long runs: small networks, 300 real steps, one seed, results in a scratch folder."""
    monkeypatch.setattr(experiments, "base_agent_config", tiny_agent)
    return experiments.Config(
        seeds=(0,),
        k_values=(0, 1),
        rollout_lengths=(1, 2),
        rollout_k=1,
        ensemble_size=2,
        steps=300,
        exploitation_steps=300,
        exploitation_data=100,
        probe_starts=16,
        workers=1,
        results_dir=tmp_path / "results",
        plots_dir=tmp_path / "plots",
    )


def counting(monkeypatch) -> list:
    """Record every job that actually runs (the in-process path of the local backend)."""
    calls = []
    real = experiments.run_job

    def run_job(job):
        calls.append(job.arm)
        return real(job)

    monkeypatch.setattr(experiments, "run_job", run_job)
    return calls


def test_every_study_then_a_rerun_computes_nothing(tiny, monkeypatch) -> None:
    first = experiments.main(tiny)
    assert first["computed"] == 2 + 3 + 2  # K sweep, rollout lengths + ensemble, exploitation
    for name in ("k_sweep.png", "rollout_length.png", "model_exploitation.png"):
        assert (tiny.plots_dir / name).stat().st_size > 0
    assert len(list(tiny.results_dir.rglob("*-seed0-*.json"))) == 7
    rollout = first["studies"]["rollout_length"]
    assert set(rollout) == {"k=1", "k=2", "k=2, ensemble of 2"}
    assert all(0.0 <= arm["wrong_share"] <= 1.0 for arm in rollout.values())

    calls = counting(monkeypatch)
    again = experiments.main(tiny)
    assert calls == [] and again["computed"] == 0
    assert again["studies"] == first["studies"]


def test_interrupted_sweep_resumes_and_keeps_finished_runs(tiny, monkeypatch) -> None:
    cfg = replace(tiny, studies=("k_sweep",), k_values=(0, 1, 2))
    real = experiments.run_job
    finished = []

    def interrupted_after_two(job):
        if len(finished) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the third run is going
        finished.append(job.arm)
        return real(job)

    monkeypatch.setattr(experiments, "run_job", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        experiments.main(cfg)
    saved = {path: path.read_bytes() for path in cfg.results_dir.rglob("*-seed0-*.json")}
    assert len(saved) == 2

    monkeypatch.setattr(experiments, "run_job", real)
    calls = counting(monkeypatch)
    result = experiments.main(cfg)
    assert len(calls) == 1 and calls[0] not in finished
    assert result["computed"] == 1
    assert all(path.read_bytes() == content for path, content in saved.items())  # untouched

    calls.clear()
    result = experiments.main(replace(cfg, k_values=(0, 1, 2, 3)))  # a new arm: only it runs
    assert calls == ["K=3"]


def test_changed_agent_setting_is_a_new_run(tiny) -> None:
    cfg = replace(tiny, studies=("k_sweep",), k_values=(1,))
    job = experiments.plan_jobs(cfg)[0]
    assert replace(job, agent=replace(job.agent, lr=1e-3)).key() != job.key()
    assert replace(job, seed=1).key() != job.key()
    assert replace(job, agent=replace(job.agent, workers=4)).key() == job.key()  # no effect
    assert replace(job, agent=replace(job.agent, tau=0.5)).key() != job.key()


def test_an_option_added_later_keeps_cached_runs_valid(tiny) -> None:
    """`tau` came after runs were cached: at its old-behaviour value it is not in the hash."""
    job = experiments.plan_jobs(replace(tiny, studies=("k_sweep",), k_values=(1,)))[0]
    assert job.agent.tau == 1.0
    later = experiments._ADDED_LATER
    before_tau = {  # the spec as it was hashed before `tau` existed
        k: v
        for k, v in flat_settings(job.agent).items()
        if k not in experiments._NOT_HASHED and k != "tau" and later.get(k, object()) != v
    }
    spec = {"agent": before_tau, "probe": job.probe, "seed": job.seed, "version": 1}
    assert job.key() == spec_key(spec)


def test_cache_keys_of_the_default_studies_are_the_ones_runs_were_saved_under() -> None:
    """The keys of cached runs, as the code computed them before the agent's settings were grouped
    into budget, screen and ensemble: a rerun of the default studies finds its cached runs."""
    jobs = experiments.plan_jobs(experiments.Config())
    keys = {f"{job.study}/{job.arm}/{job.seed}": job.key() for job in jobs}
    assert keys["k_sweep/K=0/0"] == "3364d6547acf"
    assert keys["k_sweep/K=1/0"] == "6960fb20e0a4"
    for name, key in KEYS_BEFORE.items():
        assert keys[name] == key, name


def test_corrupt_cached_run_is_recomputed(tiny, monkeypatch, capsys) -> None:
    cfg = replace(tiny, studies=("k_sweep",), k_values=(0,))
    experiments.main(cfg)
    (path,) = cfg.results_dir.rglob("*-seed0-*.json")
    path.write_text('{"run": ')  # a half-written file from some other tool
    calls = counting(monkeypatch)
    experiments.main(cfg)
    assert calls == ["K=0"]
    assert "running it again" in capsys.readouterr().out
    assert json.loads(path.read_text())["key"] == experiments.plan_jobs(cfg)[0].key()


def strip_timing(record: dict) -> dict:
    run = {k: v for k, v in record["run"].items() if k not in ("wall_s", "wall_total_s")}
    return {**record, "run": run}


def test_ray_backend_gives_the_same_numbers_as_local(tiny) -> None:
    # find_spec, not importorskip: Ray must not be imported before the runner configures it
    # (imported early under `uv run`, Ray would start its workers through `uv run`, without Ray)
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is optional: `uv sync --group ray` to test its backend")
    cfg = replace(tiny, studies=("rollout_length",), rollout_lengths=(2,), ensemble_size=1)
    local = experiments.main(replace(cfg, results_dir=cfg.results_dir / "local"))
    on_ray = experiments.main(
        replace(cfg, results_dir=cfg.results_dir / "ray", backend="ray", workers=1)
    )
    assert on_ray["computed"] == local["computed"] == 1
    (local_file,) = (cfg.results_dir / "local").rglob("*-seed0-*.json")
    (ray_file,) = (cfg.results_dir / "ray").rglob("*-seed0-*.json")
    assert local_file.name == ray_file.name
    local_record = strip_timing(json.loads(local_file.read_text()))
    assert local_record == strip_timing(json.loads(ray_file.read_text()))
    assert local_record["run"]["probes"][-1]["wrong"] is not None


def test_ray_backend_without_ray_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    args = "--backend ray --studies k_sweep --k-values 0 --seeds 0".split()
    result = run_in_process("app.experiments", *args, cwd=tmp_path, capsys=capsys)
    assert_one_line_error(result, "uv sync --group ray")


# ----------------------------------------------------------------------------- agent options


def ensemble_of_two(max_disagreement: float = math.inf) -> WorldModelEnsemble:
    return WorldModelEnsemble(WorldModelConfig(hidden_size=16), 2, max_disagreement)


def test_trusted_steps_end_a_dream_at_the_first_disagreement() -> None:
    ensemble = ensemble_of_two(max_disagreement=0.5)
    spread = torch.tensor([0.1, 0.9, 0.1, 0.2, 0.2, 0.2])  # 2 dreams x 3 steps
    ensemble.disagreement = lambda states, actions: spread
    rollout = imagine_rollout(CountingModel(), torch.full((2, 4), -9.0), torch.zeros(2, 3), 3)
    trusted = trusted_steps(ensemble, rollout)
    assert trusted.tolist() == [[True, False, False], [True, True, True]]  # no trust after 0.9
    ensemble.max_disagreement = math.inf
    assert trusted_steps(ensemble, rollout).all()
    assert trusted_steps(CountingModel(), rollout).all()  # one model: nothing to cut


def test_untrusted_dreams_make_no_updates() -> None:
    dqn = make_agent()
    batches = []
    dqn.train_on_batch = batches.append
    used = _train_on_simulated_data(
        dqn, ensemble_of_two(max_disagreement=1e-9), filled_buffer(), 4, 3, 6, epsilon=0.5
    )
    assert used == 0 and batches == []


@pytest.mark.parametrize("refit, epochs", [(True, 2 + 1 + 1), (False, 2)])
def test_frozen_model_is_fitted_once(monkeypatch, refit: bool, epochs: int) -> None:
    fitted = []
    real = train_model.train_epoch
    monkeypatch.setattr(train_model, "train_epoch", lambda *args: fitted.append(1) or real(*args))
    cfg = tiny_run(
        planning_steps=1,
        learning_starts=100,
        eval_interval=300,
        model_hidden_size=16,
        refit_model=refit,
    )
    dyna.train_dyna_agent(cfg, seed=0)
    assert len(fitted) == epochs  # first fit at step 100 (2 epochs), refits at 200 and 300


# ----------------------------------------------------------------------------- probes


def test_probes_do_not_change_the_run(tiny) -> None:
    cfg = with_settings(tiny_agent(tiny), planning_steps=1)
    probe = functools.partial(experiments.measure_model_error, starts=16, threshold=1e-2)
    plain = dyna.train_dyna_agent(cfg, seed=0)
    probed = dyna.train_dyna_agent(cfg, seed=0, probe=probe)
    assert probed["eval_returns"] == plain["eval_returns"]
    for name, weights in plain["q_weights"].items():
        torch.testing.assert_close(probed["q_weights"][name], weights, rtol=0, atol=0)
    assert len(probed["probes"]) == len(probed["eval_steps"]) == 3
    assert all(0.0 <= probe["wrong"] <= 1.0 for probe in probed["probes"])


def test_true_rollout_is_gymnasiums_cartpole() -> None:
    with gym.make(ENV_ID) as env:
        start, _ = env.reset(seed=3)
        actions = np.zeros((1, 30), np.int64)  # always push left: the pole falls right, soon
        real, ends = [], []
        for a in actions[0]:
            state, _, terminated, _, _ = env.step(int(a))
            real.append(state)
            ends.append(terminated)
            if terminated:
                break
    truth = true_rollout(start[None], actions)
    n = len(real)
    assert ends[-1] and n < 30
    np.testing.assert_allclose(truth.next_states[0, :n], np.array(real), atol=1e-5)
    assert truth.terminated[0].tolist() == ends + [False] * (30 - n)
    assert truth.reached[0].tolist() == [True] * n + [False] * (30 - n)


def test_wrong_transitions_counts_error_done_and_dreams_past_the_end() -> None:
    next_states = torch.zeros(1, 4, 4)
    next_states[0, 1, 2] = 1.0  # step 1: pole angle off by 1 rad
    dones = torch.zeros(1, 4, dtype=torch.bool)
    rollout = Rollout(
        states=torch.zeros(1, 4, 4),
        actions=torch.zeros(1, 4, dtype=torch.long),
        rewards=torch.ones(1, 4),
        next_states=next_states,
        dones=dones,
        valid=torch.ones(1, 4, dtype=torch.bool),
    )
    truth = TrueRollout(
        next_states=np.zeros((1, 4, 4), np.float32),
        terminated=np.array([[False, False, True, False]]),  # the real episode ends at step 2
        reached=np.array([[True, True, True, False]]),
    )
    wrong = wrong_transitions(rollout, truth, threshold=1e-2)
    assert wrong[0].tolist() == [False, True, True, True]  # error, missed end, dreaming on
    unreached = rollout._replace(valid=torch.tensor([[True, False, False, False]]))
    assert not wrong_transitions(unreached, truth, threshold=1e-2)[0, 1:].any()
