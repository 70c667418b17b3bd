"""The house: imports point down the phase order, no cycle, no module too long, no private APIs.

A reader should be able to read the phases in order. Each module of app/ has a level; a module may
import only modules of a lower level (the shared helpers at level 0 may also import each other, as
long as no cycle forms). Every import counts, also one inside a function.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

LEVELS = {
    # shared helpers, one home each: no phase in them
    "__init__": 0,
    "common": 0,
    "storage": 0,
    "policies": 0,
    "runner": 0,
    "runs": 0,
    "plotting": 0,
    # the phases, in the order a learner reads them
    "world_model": 2,
    "data_collection": 3,
    "train_model": 3.5,
    "planning_plots": 3.9,  # phase 4's figures, beside the shared plot helpers
    "plan_with_model": 4,
    "replay": 4.5,  # engineering around phase 5: the replay buffer
    "screen": 4.5,  # engineering around phase 5, below the agent that calls it
    "agent": 5,
    "experiments": 6,
    "benchmark": 6,
    # commands over all of it
    "workspace": 6.8,  # practice mode: the files and their gaps
    "grader": 6.9,  # practice mode: the checks
    "__main__": 7,
    "practice": 7,
}
MAX_LINES = 600


def app_imports(source: str) -> set[str]:
    """The app modules that `source` imports, wherever the import statement stands
    (`from app import x` is module x where app/x.py exists, else a name of app/__init__.py)."""
    modules = {path.stem for path in (REPO / "app").glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("app.")}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "app":
                found |= {a.name if a.name in modules else "__init__" for a in node.names}
            elif node.module.startswith("app."):
                found.add(node.module.split(".")[1])
    return found


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    return {path.stem: app_imports(path.read_text()) for path in (root / "app").glob("*.py")}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle (as the modules on it), found by depth-first search."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_module_has_a_level() -> None:
    assert set(import_graph()) == set(LEVELS), "give each new module of app/ a level above"


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module at the same or a higher level (shared helpers excepted)."""
    return [
        f"app.{module} (level {LEVELS[module]}) imports app.{target} (level {LEVELS[target]})"
        for module, targets in graph.items()
        for target in targets
        if LEVELS[target] > LEVELS[module] or (LEVELS[target] == LEVELS[module] > 0)
    ]


def test_imports_point_down_the_phase_order() -> None:
    assert upward(import_graph()) == []


def test_the_checks_catch_a_cycle_and_an_upward_import() -> None:
    """The checks above can fail: phase 3 importing phase 5 for its epsilon-greedy policy, as it
    once did (agent -> plan_with_model -> data_collection -> agent)."""
    graph = import_graph()
    graph["data_collection"] = graph["data_collection"] | {"agent"}
    assert upward(graph) == ["app.data_collection (level 3) imports app.agent (level 5)"]
    graph["plan_with_model"] = graph["plan_with_model"] | {"data_collection"}
    assert ["agent", "plan_with_model", "data_collection", "agent"] in cycles(graph)
    source = "def f():\n    from app.agent import q_network\n"
    assert app_imports(source) == {"agent"}  # a lazy import inside a function counts too


@pytest.mark.parametrize("path", sorted((REPO / "app").glob("*.py")), ids=lambda p: p.name)
def test_no_module_too_long(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it by job"


def test_agent_tells_phase_5_in_at_most_500_lines() -> None:
    assert len((REPO / "app" / "agent.py").read_text().splitlines()) <= 500


PRIVATE = re.compile(r"\b(torch|ray|np|numpy|gym|gymnasium)\.(\w+\.)*_[a-z]\w*")


@pytest.mark.parametrize("path", sorted((REPO / "app").glob("*.py")), ids=lambda p: p.name)
def test_no_private_api_in_teaching_code(path: Path) -> None:
    """A learner copies what they read: no `torch._foreach_*`, no `ray._private`."""
    found = [match[0] for match in PRIVATE.finditer(path.read_text())]
    assert found == []


def test_the_dyna_loop_gap_is_the_dyna_idea_alone() -> None:
    """The learner's loop: real updates, the model refit, K imagined updates, at most ~25 code
    lines, and no word of the screen in it, its TODO and HINT lines, or the phase-5 tests."""
    from app.workspace import Workspace, _body

    (region,) = [r for r in Workspace(REPO).regions() if r.name == "train_dyna_agent"]
    body = _body((REPO / region.file).read_text(), region)
    code = [line for line in body if line.strip() and not line.strip().startswith("#")]
    assert len(code) <= 25, len(code)
    words = re.compile(r"screen|acting|proven|\brests?\b", re.IGNORECASE)
    assert not words.findall("".join(body) + "\n".join(region.hints))
    assert not words.findall((REPO / "tests" / "test_agent.py").read_text())
