"""Pool held-out seeds 5000-5019 with 6000-6059 for the steps-to-solve figures (information only).

usage, from the repository root:
    uv run python -m docs.pool_held_out [results/benchmark_held_out_6000.json]

Without an argument it reports the 20 seeds of 5000-5019 alone, from the per-seed table in
docs/results.md, and reproduces that section's figures: a check that the table was read right.
Only steps-to-solve figures (IQM, median, P(Dyna solves earlier), solved within 6,000, slowest):
the table has no per-seed stability or AUC. Same functions, cap and bootstrap seed as app.benchmark,
arms in its order (the bootstrap's draws follow it).
"""

import json
import sys
from pathlib import Path

from app.benchmark import ARMS
from app.runs import format_estimates, interval_estimates

CAP = 50_000
RESULTS = Path(__file__).with_name("results.md")
SECTION = "## The twentieth round's held-out benchmark, complete"
ROWS = {
    "**dyna** (Double DQN)": "dyna",
    "dqn_matched (max target)": "dqn_matched",
    "dqn (max target)": "dqn",
    "sb3_zoo": "sb3_zoo",
}


def runs_5000() -> dict[str, list[dict]]:
    """Per arm, the runs of seeds 5000-5019 as the benchmark's JSON has them (steps only)."""
    section = RESULTS.read_text().split(SECTION)[1].split("\n## ")[0]
    header = next(line for line in section.splitlines() if line.startswith("| arm | 5000"))
    seeds = [int(c) for c in header.strip("|").split("|")[1:21]]
    assert seeds == list(range(5000, 5020)), seeds
    runs = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in ROWS and len(cells) == 23:
            steps = [None if c == "never" else int(c.replace(",", "")) for c in cells[1:21]]
            runs[ROWS[cells[0]]] = [
                {"seed": s, "steps_to_solve": v} for s, v in zip(seeds, steps, strict=True)
            ]
    assert sorted(runs) == sorted(ARMS), list(runs)
    return {arm: runs[arm] for arm in ARMS}


def report(arms: dict[str, list[dict]], title: str) -> None:
    arms = {a: [{**r, "auc_10k": 0.0, "stability": None} for r in runs] for a, runs in arms.items()}
    estimates = interval_estimates(arms, CAP, "dyna")
    for figures in estimates.values():  # steps figures only
        figures["stability"] = figures["auc_10k"] = None
    dyna = [CAP if r["steps_to_solve"] is None else r["steps_to_solve"] for r in arms["dyna"]]
    within = sum(steps <= 6000 for steps in dyna)
    ratio = estimates["dyna"]["iqm"][0] / estimates["sb3_zoo"]["iqm"][0]
    print(f"## {title} ({len(dyna)} seeds per arm)\n")
    print(format_estimates(estimates, "dyna", CAP))
    print(
        f"\nDyna solved within 6,000: {within}/{len(dyna)}; slowest {max(dyna):,}; "
        f"IQM / SB3's IQM {ratio:.3f}"
    )


if __name__ == "__main__":
    old = runs_5000()
    if len(sys.argv) == 1:
        report(old, "held-out 5000-5019 (from the table in docs/results.md)")
    else:
        new = json.loads(Path(sys.argv[1]).read_text())["runs"]
        seeds = [r["seed"] for r in new["dyna"]]
        assert all(6000 <= s <= 6059 for s in seeds), seeds
        pooled = {arm: old[arm] + new[arm] for arm in ARMS}
        report(pooled, f"held-out 5000-5019 and {min(seeds)}-{max(seeds)} pooled")
