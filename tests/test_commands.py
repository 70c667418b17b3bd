"""Every `python -m app.*` command: --help, a smoke run with a tiny budget, one-line errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, assert_one_line_error, run_in_process, run_module

COMMANDS = [
    "app",
    "app.world_model",
    "app.data_collection",
    "app.train_model",
    "app.plan_with_model",
    "app.agent",
    "app.benchmark",
    "app.experiments",  # its runs are in test_experiments.py
    "app.practice",  # its smoke runs are in test_practice.py
]
TINY = {
    "app.data_collection": ["--num-transitions", "600"],
    "app.train_model": ["--epochs", "2", "--hidden-size", "32"],
    "app.plan_with_model": ["--num-episodes", "5", "--horizon", "15"],
    "app.agent": (
        "--seeds 0 1 --min-steps 400 --max-steps 400 --learning-starts 100 --eval-interval 200 "
        "--eval-episodes 2 --model-initial-epochs 2 --hidden-size 16 --model-hidden-size 16 "
        "--planning-steps 2"
    ).split(),
}


def test_every_module_is_listed() -> None:
    found = {
        f"app.{p.stem}"
        for p in (REPO / "app").glob("*.py")
        if 'if __name__ == "__main__":' in p.read_text() and p.stem != "__main__"
    }
    internal = {"app.grader"}  # the practice checks' child process, not a user's command
    assert found - internal <= set(COMMANDS), f"add {found - set(COMMANDS)} to COMMANDS (and TINY)"


@pytest.mark.parametrize("module", COMMANDS)
def test_help(module: str, tmp_path: Path, capsys) -> None:
    result = run_in_process(module, "--help", cwd=tmp_path, capsys=capsys)
    assert result.returncode == 0, result.stderr
    assert ("--seed" in result.stdout) == (module != "app.practice")  # practice is not random
    assert not any(tmp_path.iterdir())  # --help writes nothing


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    """Run the phases in order with tiny budgets in a scratch folder."""
    root = tmp_path_factory.mktemp("pipeline")
    for module in ("app.world_model", *TINY):
        result = run_module(module, *TINY.get(module, []), cwd=root)
        assert result.returncode == 0, f"{module}:\n{result.stdout}\n{result.stderr}"
    return root


@pytest.mark.parametrize(
    "output",
    [
        "data/transitions.npz",
        "checkpoints/world_model.pt",
        "checkpoints/world_model_metrics.json",
        "plots/training_curve.png",
        "plots/trajectory_comparison.png",
        "plots/compounding_error.png",
        "plots/dream_vs_reality.gif",
    ],
)
def test_pipeline_writes(pipeline: Path, output: str) -> None:
    path = pipeline / output
    assert path.is_file() and path.stat().st_size > 0
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers  # atomic writes leave no temporary files behind


def test_agent_table(pipeline: Path) -> None:
    results = json.loads((pipeline / "results" / "agent.json").read_text())
    assert set(results["arms"]) == {"dqn (K=0)", "dyna (K=2, k=1, H=3)"}
    for arm in results["arms"].values():
        assert arm["seeds"] == [0, 1]


def test_collect_with_trained_q_network(pipeline: Path, tmp_path: Path) -> None:
    shutil.copytree(pipeline, tmp_path, dirs_exist_ok=True)
    result = run_module(
        "app.data_collection",
        "--policy",
        "epsilon_greedy",
        "--num-transitions",
        "300",
        "--output",
        "data/greedy.npz",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "greedy.npz").is_file()


def test_benchmark_smoke_then_resume_from_its_cache(tmp_path: Path) -> None:
    args = ["app.benchmark", "--seeds", "0", "--arms", "dqn", "dyna", "--max-steps", "1000"]
    result = run_module(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "results" / "benchmark_custom.json").read_text())
    assert set(summary["arms"]) == {"dqn", "dyna"} and summary["seed_set"] == "custom"
    for arm in summary["arms"].values():
        assert {
            "steps_to_solve",
            "median_steps",
            "stability",
            "auc_10k",
            "wall_s",
            "median_wall_s",
        } <= set(arm)
    assert set(summary["estimates"]["dqn"]) >= {"iqm", "median", "p_dyna_earlier"}
    assert "IQM steps-to-solve" in (tmp_path / "results" / "benchmark_custom.md").read_text()
    assert len(list((tmp_path / "results" / "benchmark_runs").glob("*.json"))) == 2
    again = run_module(*args, cwd=tmp_path)  # every run is cached: nothing to compute
    assert again.returncode == 0 and "2 cached" in again.stdout and "0 to compute" in again.stdout


def test_benchmark_arms_are_the_learners_each_screen_chose() -> None:
    from dataclasses import replace

    from app.benchmark import Config, arm_config

    cfg = Config(seeds=(0,), arms=("dqn", "dqn_matched", "dyna"))
    plain, matched, dyna = (arm_config(arm, cfg) for arm in ("dqn", "dqn_matched", "dyna"))
    assert dyna.double_q and not matched.double_q  # Double DQN suited Dyna, not the control
    assert matched.real_updates == dyna.real_updates + dyna.planning_steps  # update-matched
    assert matched.planning_steps == matched.value_expansion == 0  # no model at all
    assert replace(matched, real_updates=dyna.real_updates) == plain  # the same learner


def test_benchmark_time_estimate_follows_the_runs_asked() -> None:
    from app.benchmark import ARMS, SEED_SETS, estimated_minutes

    held_out = estimated_minutes(ARMS, len(SEED_SETS["held-out"]), workers=2)
    assert round(held_out) == 88  # the measured run the per-arm times come from
    assert estimated_minutes(ARMS, 10, workers=2) == held_out / 2  # half the seeds
    one_dyna = estimated_minutes(("dyna",), 1, workers=1)
    assert estimated_minutes(("dyna",), 1, workers=2) == one_dyna  # one run cannot use two
    assert estimated_minutes(("dyna",), 20, workers=1) == 20 * one_dyna
    assert estimated_minutes(("dyna",), 20, workers=2) == 10 * one_dyna
    assert estimated_minutes(("dqn",), 4, workers=2) < estimated_minutes(("dyna",), 4, workers=2)


def test_benchmark_names_its_seeds_as_ranges() -> None:
    from app.benchmark import SEED_SETS, _seed_list

    assert _seed_list(SEED_SETS["held-out"]) == "5000-5019"
    assert _seed_list(SEED_SETS["spent-3"]) == "3000-3019 and 4000-4039"
    assert _seed_list((0, 1, 2, 7, 9, 10)) == "0-2, 7, 9 and 10"
    assert _seed_list((5,)) == "5"


def test_benchmark_seed_sets_share_no_seed() -> None:
    from app.benchmark import SEED_SETS

    chosen_on = set(range(140))  # every tuning seed a round of docs/results.md has used
    held_out = [set(seeds) for name, seeds in SEED_SETS.items() if name != "tuning"]
    assert set(SEED_SETS["tuning"]) <= chosen_on
    assert all(not seeds & chosen_on for seeds in held_out)
    assert sum(map(len, held_out)) == len(set().union(*held_out))  # no seed in two sets


def test_whole_pipeline_quick_writes_only_in_its_own_folder(tmp_path: Path) -> None:
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "compounding_error.png").write_bytes(b"the real run's plot")
    result = run_module("app", "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Written:" in result.stdout and "quick/" in result.stdout
    assert (tmp_path / "quick" / "plots" / "compounding_error.png").is_file()
    assert (tmp_path / "quick" / "results" / "agent.json").is_file()
    outside = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert [p for p in outside if not p.startswith("quick/")] == ["plots/compounding_error.png"]
    assert (tmp_path / "plots" / "compounding_error.png").read_bytes() == b"the real run's plot"


def test_world_model_self_check_fails_loudly(tmp_path: Path) -> None:
    """A broken model is reported as FAIL lines and exit code 1, not a traceback."""
    package = tmp_path / "app"
    shutil.copytree(REPO / "app", package)
    source = package / "world_model.py"
    original = source.read_text()
    broken = original.replace("delta = self.state_head(h)", "delta = self.state_head(h)[:, :2]")
    assert broken != original, "the line this test breaks has moved: update the test"
    source.write_text(broken)
    result = run_module("app.world_model", cwd=tmp_path)
    assert result.returncode == 1
    assert "[FAIL] forward" in result.stdout and "Traceback" not in result.stderr


def test_train_before_collect(tmp_path: Path) -> None:
    result = run_module("app.train_model", cwd=tmp_path)
    assert_one_line_error(
        result, "data/transitions.npz not found", "uv run python -m app.data_collection"
    )


def test_plan_before_train(tmp_path: Path) -> None:
    result = run_module("app.plan_with_model", cwd=tmp_path)
    assert_one_line_error(
        result, "checkpoints/world_model.pt not found", "uv run python -m app.train_model"
    )


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04truncated"])
def test_corrupt_npz(tmp_path: Path, content: bytes, capsys) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "transitions.npz").write_bytes(content)
    result = run_in_process("app.train_model", cwd=tmp_path, capsys=capsys)
    assert_one_line_error(result, "data/transitions.npz", "app.data_collection")
    assert not (tmp_path / "checkpoints").exists()


def test_pickled_npz_is_not_loaded(tmp_path: Path, capsys) -> None:
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "transitions.npz", state=np.array([object()], dtype=object))
    result = run_in_process("app.train_model", cwd=tmp_path, capsys=capsys)
    assert_one_line_error(result, "data/transitions.npz", "app.data_collection")


def test_checkpoint_truncated_and_not_overwritten(pipeline: Path, tmp_path: Path, capsys) -> None:
    shutil.copytree(pipeline, tmp_path, dirs_exist_ok=True)
    checkpoint = tmp_path / "checkpoints" / "world_model.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:300])
    plot = tmp_path / "plots" / "compounding_error.png"
    before = plot.read_bytes()
    result = run_in_process("app.plan_with_model", cwd=tmp_path, capsys=capsys)
    assert_one_line_error(result, "world_model.pt", "app.train_model")
    assert plot.read_bytes() == before


@pytest.mark.parametrize(
    ("module", "args", "fragment"),
    [
        ("app.data_collection", ["--num-transitions", "0"], "--num-transitions must be positive"),
        ("app.data_collection", ["--epsilon", "1.5"], "--epsilon must be in [0, 1]"),
        ("app.data_collection", ["--policy", "clever"], "--policy must be one of"),
        ("app.train_model", ["--epochs", "-1"], "--epochs must be positive"),
        ("app.train_model", ["--device", "tpu"], "unknown --device"),
        ("app.plan_with_model", ["--horizon", "0"], "--horizon must be positive"),
        ("app.plan_with_model", ["--horizon", "ten"], "expected int"),
        ("app.agent", ["--planning-steps", "-1"], "--planning-steps must be >= 0"),
        ("app.agent", ["--epsilon-end", "2"], "--epsilon-end must be in [0, 1]"),
        ("app.agent", ["--seeds"], "expected at least one argument"),
        ("app.benchmark", ["--arms", "ppo"], "unknown --arms"),
        ("app.agent", ["--q-loss", "l1"], "--q-loss must be huber or mse"),
        ("app.benchmark", ["--q-loss", "l1"], "--q-loss must be huber or mse"),
    ],
)
def test_nonsense_flags(
    tmp_path: Path, module: str, args: list[str], fragment: str, capsys
) -> None:
    assert_one_line_error(run_in_process(module, *args, cwd=tmp_path, capsys=capsys), fragment)
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- README vs --help

SUBCOMMANDS = {"app.practice": ["start", "check", "answer", "reset", "reveal", "status"]}
NOT_OURS = {"--group", "--locked", "--compile-bytecode", "--no-project", "--with"}  # uv's flags


def helps(tmp_path: Path, capsys) -> dict[str, str]:
    """Every command's --help (and its subcommands'), by module."""
    texts = {}
    for module in COMMANDS:
        parts = [run_in_process(module, "--help", cwd=tmp_path, capsys=capsys).stdout]
        for sub in SUBCOMMANDS.get(module, []):
            parts.append(run_in_process(module, sub, "--help", cwd=tmp_path, capsys=capsys).stdout)
        texts[module] = "\n".join(parts)
    return texts


FLAG = re.compile(r"--[a-z][a-z0-9-]*")


def test_every_flag_the_readme_names_exists(tmp_path: Path, capsys) -> None:
    readme = (REPO / "README.md").read_text()
    texts = helps(tmp_path, capsys)
    flags = {module: set(FLAG.findall(text)) for module, text in texts.items()}
    # a flag written after a command, in one line or code span, belongs to that command
    for found in re.finditer(r"python -m (app(?:\.\w+)?)([^`\n]*)", readme):
        for flag in FLAG.findall(found[2]):
            assert flag in flags[found[1]], f"README: `{found[0]}`: {found[1]} has no {flag}"
    # and every other flag the README names belongs to some command
    known = set().union(*flags.values()) | NOT_OURS
    unknown = sorted(set(FLAG.findall(readme)) - known)
    assert unknown == [], f"README names flags no command has: {unknown}"


def test_the_readme_is_right_about_seed_and_device(tmp_path: Path, capsys) -> None:
    texts = helps(tmp_path, capsys)
    for module in ("app", "app.world_model", "app.train_model", "app.plan_with_model", "app.agent"):
        assert "--device" in texts[module], module
    for module in ("app.agent", "app.experiments", "app.benchmark"):
        assert "--seeds" in texts[module], module
    for module in ("app", "app.world_model", "app.data_collection", "app.train_model"):
        assert "--seed " in texts[module] or "--seed SEED" in texts[module], module
    assert "usage: python -m app " in texts["app"]  # not app.__main__
    assert "(default: )" not in "".join(texts.values())
    assert "(default: every core" not in texts["app.experiments"]
