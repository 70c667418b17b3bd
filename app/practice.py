"""Practice mode: turn the reference into TODO stubs, check each phase, reveal, answer.

    uv run python -m app.practice start          # exercise version: every solution becomes a stub
    uv run python -m app.practice status         # which TODOs are still open, per phase
    uv run python -m app.practice check 2        # run phase 2's tests, one screen of feedback
    uv run python -m app.practice reveal WorldModel.forward   # put one reference solution back
    uv run python -m app.practice answer 2       # our answer to phase 2's key question
    uv run python -m app.practice reset          # back to the full reference (alias: solution)

The reference code is the single source of truth. Each gap is a region between
`# ### BEGIN SOLUTION (phase N: name)` and `# ### END SOLUTION`, under TODO and HINT comment lines
that stay visible in both versions. The exercise version is generated from the reference, never
edited by hand: each region's body becomes `raise NotImplementedError("Phase N: name — see TODO
above")`. The reference is kept in .practice/reference/; whenever a command would replace code
that differs from both the reference and the fresh exercise version (that is, your work), it first
copies the file to .practice/backups/<time>/ and says so.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as dt
import io
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from app import startup_finished
from app.common import OneLineParser, UserError

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ".practice"
COMMAND = "uv run python -m app.practice"
BEGIN = re.compile(
    r"^(?P<indent>[ ]*)# ### BEGIN SOLUTION \(phase (?P<phase>\d+): (?P<name>[\w.]+)\)$"
)
END = re.compile(r"^[ ]*# ### END SOLUTION$")
PHASE_TESTS = {
    2: ["tests/test_world_model.py"],
    3: ["tests/test_data_collection.py", "tests/test_train_model.py"],
    4: ["tests/test_plan_with_model.py"],
    5: ["tests/test_agent.py"],
}
QUESTIONS_FILE = "docs/key_questions.md"


# ----------------------------------------------------------------------------- regions


@dataclass(frozen=True)
class Region:
    """One learner gap in one file. Line numbers are 0-based indices into the file's lines."""

    file: str  # relative to the project root, e.g. "app/world_model.py"
    phase: int
    name: str
    indent: str
    begin: int  # index of the BEGIN marker line
    end: int  # index of the END marker line
    hints: tuple[str, ...]  # the TODO / HINT comment lines right above the BEGIN marker

    def stub(self) -> str:
        return f'{self.indent}raise NotImplementedError("Phase {self.phase}: {self.name} — see TODO above")\n'  # noqa: E501


def parse_regions(text: str, file: str) -> list[Region]:
    """Every region of `text`, in order. Nested, unclosed or stray markers are an error."""
    lines = text.splitlines(keepends=True)
    regions: list[Region] = []
    open_match, open_at = None, -1
    for i, line in enumerate(lines):
        line = line.rstrip("\n")
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if open_match:
                raise UserError(
                    f"{file}:{i + 1}: a BEGIN SOLUTION inside the region opened at line "
                    f"{open_at + 1} (regions cannot nest)"
                )
            open_match, open_at = begin, i
        elif end:
            if not open_match:
                raise UserError(f"{file}:{i + 1}: END SOLUTION without a BEGIN SOLUTION")
            hints = []
            j = open_at - 1
            while j >= 0 and lines[j].strip().startswith("#"):
                hints.insert(0, lines[j].strip())
                j -= 1
            regions.append(
                Region(
                    file,
                    int(open_match["phase"]),
                    open_match["name"],
                    open_match["indent"],
                    open_at,
                    i,
                    tuple(hints),
                )
            )
            open_match = None
        elif line.lstrip().startswith("# ###") and "SOLUTION" in line:
            raise UserError(f"{file}:{i + 1}: malformed solution marker: {line.strip()!r}")
    if open_match:
        raise UserError(f"{file}:{open_at + 1}: BEGIN SOLUTION is never closed")
    return regions


def _body(text: str, region: Region) -> list[str]:
    return text.splitlines(keepends=True)[region.begin + 1 : region.end]


def replace_bodies(text: str, file: str, bodies: dict[str, list[str]]) -> str:
    """`text` with the body of each region named in `bodies` replaced by the given lines."""
    lines = text.splitlines(keepends=True)
    for region in reversed(parse_regions(text, file)):
        if region.name in bodies:
            lines[region.begin + 1 : region.end] = bodies[region.name]
    return "".join(lines)


def to_exercise(reference: str, file: str) -> str:
    """The exercise version of one file: every region's body becomes its stub."""
    return replace_bodies(
        reference, file, {r.name: [r.stub()] for r in parse_regions(reference, file)}
    )


def is_open(text: str, region: Region) -> bool:
    return _body(text, region) == [region.stub()]


# ----------------------------------------------------------------------------- the workspace


class Workspace:
    """The project's practice files, the kept reference, and the backups, under `root`."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = Path(root)
        self.state_dir = self.root / STATE_DIR

    def files(self) -> list[str]:
        """Relative paths of every app module that has solution regions (in the reference)."""
        base = self.state_dir / "reference" if self.has_reference() else self.root
        return sorted(
            str(path.relative_to(base))
            for path in (base / "app").glob("*.py")
            if any(BEGIN.match(line) for line in path.read_text().splitlines())
        )

    def has_reference(self) -> bool:
        return (self.state_dir / "reference" / "app").is_dir()

    def reference(self, file: str) -> str:
        kept = self.state_dir / "reference" / file
        return kept.read_text() if kept.is_file() else (self.root / file).read_text()

    def current(self, file: str) -> str:
        return (self.root / file).read_text()

    def keep_reference(self) -> None:
        """Copy the reference aside once, before the first exercise version replaces it."""
        if self.has_reference():
            return
        for file in self.files():
            parse_regions(self.current(file), file)  # refuse broken markers before writing
            target = self.state_dir / "reference" / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.root / file, target)

    def has_learner_work(self, file: str) -> bool:
        """True unless every region holds its stub or its reference solution, and the code
        outside the regions is the reference's (that is, unless the learner wrote something)."""
        current, reference = self.current(file), self.reference(file)
        try:
            regions = parse_regions(current, file)
        except UserError:
            return True  # markers edited by hand: certainly the learner's
        solutions = {r.name: _body(reference, r) for r in parse_regions(reference, file)}
        if set(solutions) != {r.name for r in regions}:
            return True
        if any(_body(current, r) not in ([r.stub()], solutions[r.name]) for r in regions):
            return True
        return replace_bodies(current, file, solutions) != reference

    def backup(self, files: list[str]) -> Path | None:
        """Copy `files` to a new timestamped folder; return it (None when there is nothing)."""
        if not files:
            return None
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        folder = self.state_dir / "backups" / stamp
        for file in files:
            target = folder / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.root / file, target)
        return folder

    def write(self, file: str, text: str) -> None:
        path = self.root / file
        tmp = path.with_name(f".{path.name}.practice.tmp")
        tmp.write_text(text)
        tmp.replace(path)

    def regions(self) -> list[Region]:
        """Regions of the current files (as the learner has them)."""
        return [
            region for file in self.files() for region in parse_regions(self.current(file), file)
        ]

    def find(self, name: str) -> Region:
        regions = self.regions()
        matches = [r for r in regions if r.name == name or r.name.split(".")[-1] == name]
        if len(matches) != 1:
            names = ", ".join(r.name for r in regions)
            problem = "is ambiguous" if matches else "is not a TODO region"
            raise UserError(f"{name!r} {problem}; choose one of: {names}")
        return matches[0]

    def load_state(self) -> dict:
        path = self.state_dir / "state.json"
        return json.loads(path.read_text()) if path.is_file() else {"passed": []}

    def save_state(self, state: dict) -> None:
        self.state_dir.mkdir(exist_ok=True)
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")


# ----------------------------------------------------------------------------- commands


def start(ws: Workspace, force: bool = False) -> list[str]:
    """Write the exercise version of every practice file. Returns the report lines."""
    ws.keep_reference()
    touched = [file for file in ws.files() if ws.has_learner_work(file)]
    if touched and not force:
        raise UserError(
            f"{', '.join(touched)} hold(s) your own changes; `{COMMAND} start --force` "
            "saves a copy in .practice/backups/ and starts over"
        )
    report = []
    folder = ws.backup(touched)
    if folder:
        report.append(f"Your previous work is saved in {folder.relative_to(ws.root)}/")
    for file in ws.files():
        ws.write(file, to_exercise(ws.reference(file), file))
    report.append(
        f"Exercise version written: {len(ws.regions())} TODOs in "
        f"{', '.join(ws.files())}. Next: `{COMMAND} status`."
    )
    return report


def reset(ws: Workspace) -> list[str]:
    """Put the full reference back, saving any of the learner's work first."""
    if not ws.has_reference():
        return ["Already the reference version (practice was never started)."]
    touched = [file for file in ws.files() if ws.has_learner_work(file)]
    folder = ws.backup(touched)
    for file in ws.files():
        ws.write(file, ws.reference(file))
    report = [f"Your work is saved in {folder.relative_to(ws.root)}/"] if folder else []
    return [*report, "Reference version restored."]


def reveal(ws: Workspace, name: str) -> list[str]:
    """Put the reference solution of one region back, keeping the learner's attempt."""
    ws.keep_reference()
    region = ws.find(name)
    current = ws.current(region.file)
    reference = ws.reference(region.file)
    report = []
    if ws.has_learner_work(region.file):
        folder = ws.backup([region.file])
        report.append(f"Your version of {region.file} is saved in {folder.relative_to(ws.root)}/")
    solution = {r.name: _body(reference, r) for r in parse_regions(reference, region.file)}
    ws.write(
        region.file, replace_bodies(current, region.file, {region.name: solution[region.name]})
    )
    report.append(f"Revealed {region.name} (phase {region.phase}) in {region.file}.")
    return report


def status(ws: Workspace) -> list[str]:
    regions = ws.regions()
    if not ws.has_reference() or not any(is_open(ws.current(r.file), r) for r in regions):
        mode = "reference" if not ws.has_reference() else "exercise (every TODO filled)"
    else:
        mode = "exercise"
    lines = [f"Mode: {mode}"]
    passed = set(ws.load_state()["passed"])
    for phase in sorted({r.phase for r in regions}):
        in_phase = [r for r in regions if r.phase == phase]
        open_ = [r.name for r in in_phase if is_open(ws.current(r.file), r)]
        check = " (check passed)" if phase in passed else ""
        state = f"{len(open_)} open: {', '.join(open_)}" if open_ else "all filled in"
        lines.append(f"  Phase {phase}: {len(in_phase)} TODOs, {state}{check}")
    return lines


# ----------------------------------------------------------------------------- check


class _Collector:
    """A pytest plugin that keeps each test's outcome and failure details."""

    def __init__(self) -> None:
        self.results: list[dict] = []

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or report.outcome == "failed":
            detail = {"test": report.nodeid, "outcome": report.outcome}
            if report.failed:
                crash = getattr(report.longrepr, "reprcrash", None)
                detail["message"] = crash.message if crash else str(report.longrepr)
                entries = getattr(
                    getattr(report.longrepr, "reprtraceback", None), "reprentries", []
                )
                detail["frames"] = [
                    (e.reprfileloc.path, e.reprfileloc.lineno)
                    for e in entries
                    if getattr(e, "reprfileloc", None)
                ]
            self.results.append(detail)

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.results.append(
                {
                    "test": report.nodeid or "collection",
                    "outcome": "failed",
                    "message": str(report.longrepr).strip().splitlines()[-1],
                    "frames": [],
                }
            )


def _function_spans(text: str) -> list[tuple[int, int]]:
    """(first, last) 1-based lines of every function in `text`."""
    return [
        (node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def region_for_failure(ws: Workspace, result: dict) -> Region | None:
    """The region a failure points at: named by a stub's message, else the deepest app frame."""
    regions = ws.regions()
    stub = re.search(r"Phase \d+: ([\w.]+) — see TODO above", result.get("message", ""))
    if stub:
        return next((r for r in regions if r.name == stub[1]), None)
    for path, lineno in reversed(result.get("frames", [])):
        path = Path(path)
        if "app" not in path.parts or not path.name.endswith(".py"):
            continue
        file = f"app/{path.name}"
        in_file = [r for r in regions if r.file == file]
        if not in_file:
            continue
        spans = _function_spans(ws.current(file))
        for region in in_file:
            around = [s for s in spans if s[0] <= region.begin + 1 <= s[1]]
            if around and any(a <= lineno <= b for a, b in around):
                return region
    return None


def check(ws: Workspace, phase: int | str) -> tuple[bool, list[str]]:
    """Run the tests of `phase` ("all" for every phase); return (passed, report lines)."""
    import pytest

    phases = sorted(PHASE_TESTS) if phase == "all" else [int(phase)]
    report: list[str] = []
    all_passed = True
    state = ws.load_state()
    for number in phases:
        collector = _Collector()
        files = [str(ws.root / f) for f in PHASE_TESTS[number]]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            exit_code = pytest.main(
                [*files, "-p", "no:cacheprovider", f"--rootdir={ws.root}"], plugins=[collector]
            )
        failures = [r for r in collector.results if r["outcome"] == "failed"]
        total = len([r for r in collector.results if r["outcome"] != "skipped"])
        if exit_code not in (0, 1) and not failures:
            failures = [
                {
                    "test": "pytest",
                    "outcome": "failed",
                    "frames": [],
                    "message": f"pytest could not run the tests (exit code {exit_code})",
                }
            ]
        if not failures and total:
            report.append(f"Phase {number}: all {total} tests pass.")
            question = key_questions(ws).get(number)
            if question:
                report.append(f"  Key question: {question[0]}")
                report.append(f"  Think it through, then compare: `{COMMAND} answer {number}`")
            state["passed"] = sorted(set(state["passed"]) | {number})
            continue
        all_passed = False
        state["passed"] = sorted(set(state["passed"]) - {number})
        report.append(f"Phase {number}: {len(failures)} of {total} tests fail.")
        report += _describe_failures(ws, failures)
        report.append(
            f"  Stuck? `{COMMAND} reveal <name>` puts one reference solution back "
            "(your attempt is kept)."
        )
    ws.save_state(state)
    return all_passed, report


def _describe_failures(ws: Workspace, failures: list[dict]) -> list[str]:
    """Open TODOs grouped (one line each), then every real failure with its message and hints."""
    lines: list[str] = []
    todos: dict[str, list[str]] = {}
    wrong: list[tuple[dict, Region | None]] = []
    for failure in failures:
        region = region_for_failure(ws, failure)
        test = failure["test"].split("::")[-1]
        if failure.get("message", "").startswith("NotImplementedError") and region:
            todos.setdefault(region.name, []).append(test)
        else:
            wrong.append((failure, region))
    regions = {r.name: r for r in ws.regions()}
    for name, tests in todos.items():
        region = regions[name]
        lines.append(
            f"  TODO  {name} ({region.file}) is still a stub; {len(tests)} test(s) stop "
            f"there: {', '.join(tests[:4])}{' ...' if len(tests) > 4 else ''}"
        )
    shown: set[str] = set(todos)
    for failure, region in wrong:
        message = failure.get("message", "").strip().splitlines() or ["(no message)"]
        lines.append(f"  FAIL  {failure['test'].split('::')[-1]}")
        if region:
            lines.append(f"        in:   {region.name} ({region.file})")
        lines.append(f"        got:  {message[0][:150]}")
        lines += [f"              {extra[:150]}" for extra in message[1:3]]
        if region and region.name not in shown:
            shown.add(region.name)
            lines += [f"        {hint.lstrip('# ')}" for hint in region.hints]
    if todos:
        first = regions[next(iter(todos))]
        lines.append(f"  Start with {first.name}:")
        lines += [f"        {hint.lstrip('# ')}" for hint in first.hints]
    return lines


# ----------------------------------------------------------------------------- key questions


def key_questions(ws: Workspace) -> dict[int, tuple[str, str]]:
    """{phase: (question, answer)} read from docs/key_questions.md."""
    path = ws.root / QUESTIONS_FILE
    if not path.is_file():
        return {}
    found = {}
    for block in re.split(r"^## ", path.read_text(), flags=re.M)[1:]:
        heading, _, rest = block.partition("\n")
        number = re.match(r"Phase (\d+)", heading)
        question = re.search(r"\*\*Question:\*\*\s*(.+?)\n\n", rest, re.S)
        answer = re.search(r"<details>.*?</summary>\s*(.+?)</details>", rest, re.S)
        if number and question and answer:
            found[int(number[1])] = (" ".join(question[1].split()), answer[1].strip())
    return found


def answer(ws: Workspace, phase: int, anyway: bool = False) -> list[str]:
    questions = key_questions(ws)
    if phase not in questions:
        raise UserError(f"no key question for phase {phase}: phases {sorted(questions)} have one")
    passed = (
        phase in ws.load_state()["passed"] or phase not in PHASE_TESTS or not ws.has_reference()
    )
    if not passed and not anyway:
        raise UserError(
            f"pass `{COMMAND} check {phase}` first, think about the question, then "
            f"ask again (or add --anyway)"
        )
    question, text = questions[phase]
    return [f"Phase {phase}. {question}", "", text]


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m app.practice",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("start", help="write the exercise version (TODO stubs)")
    p.add_argument(
        "--force",
        action="store_true",
        help="start over even if you changed files (they are copied to .practice/backups/ first)",
    )
    sub.add_parser("status", help="which TODOs are open, per phase")
    p = sub.add_parser("check", help="run one phase's tests with focused feedback")
    p.add_argument("phase", help="2, 3, 4, 5 or all")
    p = sub.add_parser("reveal", help="put one reference solution back (your attempt is kept)")
    p.add_argument("name", help="a region name, e.g. WorldModel.forward or imagine_rollout")
    p = sub.add_parser("answer", help="our answer to a phase's key question")
    p.add_argument("phase", type=int)
    p.add_argument("--anyway", action="store_true", help="show it before the check passes")
    sub.add_parser("reset", help="back to the full reference (your work is kept in a copy)")
    sub.add_parser("solution", help="the same as reset")
    return parser


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    startup_finished()
    ws = Workspace(root)
    code = 0
    try:
        args = build_parser().parse_args(argv)
        if args.command == "start":
            lines = start(ws, args.force)
        elif args.command == "status":
            lines = status(ws)
        elif args.command == "check":
            if args.phase != "all" and (
                not args.phase.isdigit() or int(args.phase) not in PHASE_TESTS
            ):
                raise UserError(
                    f"no phase {args.phase!r}: use one of {', '.join(map(str, PHASE_TESTS))} or all"
                )
            passed, lines = check(ws, args.phase)
            code = 0 if passed else 1
        elif args.command == "reveal":
            lines = reveal(ws, args.name)
        elif args.command == "answer":
            lines = answer(ws, args.phase, args.anyway)
        else:
            lines = reset(ws)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
