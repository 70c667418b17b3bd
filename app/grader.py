"""The practice grader: run the tests that grade one phase or one gap, test by test, in a child
process, with a time limit per test.

    uv run python -m app.practice check 5            # uses this module; see app/practice.py

A grading test names the gaps it grades with `@pytest.mark.gap("WorldModel.forward", ...)`, or the
phase it belongs to with `@pytest.mark.phase(5)` (a test of code around the gaps). A check runs
only those tests, so it is fast and says nothing about the rest of the suite.

The tests run in a child process (`python -m app.grader ...`) that reports each test's start and
end as JSON lines on a pipe of its own, so a learner's print statements cannot confuse it. The
parent shows progress as the lines arrive, stops a test that runs past its time limit (an endless
loop in a gap) by killing the child, and on Ctrl-C kills the child at once.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.common import UserError
from app.workspace import COMMAND, Region, Workspace, key_questions

GRADED_FILES = (
    "tests/test_world_model.py",
    "tests/test_train_model.py",
    "tests/test_plan_with_model.py",
    "tests/test_agent.py",
    "tests/test_screen.py",
    "tests/test_runs.py",
)
DEFAULT_TIMEOUT = 30.0  # seconds per test; the slowest grading test takes about 2 s on a laptop


@dataclass
class Outcome:
    """One grading test's result, as the child reported it."""

    test: str  # pytest node id
    gaps: list[str]  # the gaps it grades ([] for a phase-level test)
    outcome: str = "running"  # passed | failed | timeout | crashed
    seconds: float = 0.0
    kind: str = ""  # the exception type, e.g. AssertionError, NotImplementedError
    message: str = ""  # the exception message, whole
    frames: list[tuple[str, int]] = field(default_factory=list)  # (file, line), innermost last

    @property
    def name(self) -> str:
        return self.test.split("::")[-1]


@dataclass
class Report:
    """What a check found: the tests in the order they ran, and how the run ended."""

    outcomes: list[Outcome]
    collected: int = 0
    problem: str = ""  # set when the tests could not run at all (a collection error)


Progress = Callable[[str, Outcome | int], None]


def run_tests(
    root: Path,
    gaps: list[str],
    phase: int | None,
    timeout: float = DEFAULT_TIMEOUT,
    on_progress: Progress | None = None,
    exitfirst: bool = False,
) -> Report:
    """Run the grading tests of `gaps` (and, with `phase`, the phase-level tests of that phase) in
    a child process in `root`, reporting each test through `on_progress("collected", count)`,
    `on_progress("start", outcome)` and `on_progress("end", outcome)`.

    A test that runs longer than `timeout` seconds ends the run with outcome "timeout"; Ctrl-C
    kills the child and re-raises KeyboardInterrupt. `exitfirst` stops at the first failure.
    """
    read_end, write_end = os.pipe()
    command = [sys.executable, "-m", "app.grader", "--fd", str(write_end), "--gaps", *gaps]
    command += ["--phase", str(phase)] if phase is not None else []
    command += ["--exitfirst"] if exitfirst else []
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        command,
        cwd=root,
        env=env,
        pass_fds=(write_end,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches only the parent, which stops the child
    )
    os.close(write_end)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(read_end, lines), daemon=True).start()
    output: list[str] = []
    drain = threading.Thread(target=_drain, args=(child.stdout, output), daemon=True)
    drain.start()
    report = Report([])
    current: Outcome | None = None
    started = time.monotonic()
    notify = on_progress or (lambda kind, value: None)
    try:
        while True:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if current is not None and time.monotonic() - started > timeout:
                    current.outcome, current.seconds = "timeout", time.monotonic() - started
                    notify("end", current)
                    break
                continue
            if line is None:  # the child closed its end: it finished or died
                break
            event = json.loads(line)
            if event["event"] == "collected":
                report.collected = event["count"]
                notify("collected", event["count"])
            elif event["event"] == "problem":
                report.problem = event["message"]
            elif event["event"] == "start":
                current = Outcome(event["test"], event["gaps"])
                report.outcomes.append(current)
                started = time.monotonic()
                notify("start", current)
            elif event["event"] == "end":
                ended = current or next(o for o in report.outcomes if o.test == event["test"])
                ended.outcome, ended.seconds = event["outcome"], event["seconds"]
                ended.kind, ended.message = event["kind"], event["message"]
                ended.frames = [tuple(frame) for frame in event["frames"]]
                if current is not None:  # (a second "end": its tear-down failed, shown below)
                    notify("end", current)
                current = None
    finally:
        _stop(child)
        drain.join(timeout=5)  # the child's last words, for a crash report
    if current is not None and current.outcome == "running":  # the child died inside a test
        current.outcome = "crashed"
        current.message = "".join(output)[-2000:].strip() or f"exit code {child.returncode}"
        notify("end", current)
    if not report.outcomes and not report.problem and child.returncode not in (0, 1, 5):
        report.problem = "".join(output)[-2000:].strip() or f"exit code {child.returncode}"
    return report


def _read_lines(fd: int, lines: queue.Queue) -> None:
    with os.fdopen(fd, "r") as pipe:
        for line in pipe:
            lines.put(line)
    lines.put(None)


def _drain(stream, output: list[str]) -> None:
    for line in stream:
        output.append(line.decode(errors="replace"))


def _stop(child: subprocess.Popen) -> None:
    """Kill the child and everything it started (its own process group), and reap it."""
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
            os.killpg(child.pid, signal.SIGKILL)
    child.wait()


# ----------------------------------------------------------------------------- check


def _function_spans(text: str) -> list[tuple[int, int]]:
    """(first, last) 1-based lines of every function in `text`."""
    return [
        (node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def region_for_failure(ws: Workspace, outcome: Outcome) -> Region | None:
    """The gap a failure points at: named by a stub's message, else the function around a gap
    where the deepest app frame stopped, else the test's own gap when it grades only one."""
    regions = ws.regions()
    stub = re.search(r"Phase \d+: ([\w.]+) — see TODO above", outcome.message)
    if stub:
        return next((r for r in regions if r.name == stub[1]), None)
    for path, lineno in reversed(outcome.frames):
        path = Path(path)
        if path.parent.name != "app" or path.suffix != ".py":
            continue
        file = f"app/{path.name}"
        in_file = [r for r in regions if r.file == file]
        if in_file:
            spans = _function_spans(ws.current(file))
            for region in in_file:
                around = [s for s in spans if s[0] <= region.begin + 1 <= s[1]]
                if around and any(a <= lineno <= b for a, b in around):
                    return region
    named = [r for r in regions if r.name in outcome.gaps]
    return named[0] if len(named) == 1 else None


def preflight(ws: Workspace) -> list[Region]:
    """Refuse to run the tests on files that cannot even be read: a missing practice file, a
    damaged marker, a syntax error (named by file, line and gap). Returns the regions."""
    regions = ws.regions()  # a missing file or a damaged marker raises here
    for file in ws.files():
        try:
            compile(ws.current(file), file, "exec")
        except SyntaxError as error:
            inside = [
                r for r in regions if r.file == file and r.begin < (error.lineno or 0) <= r.end
            ]
            where = f" (in your {inside[0].name}, phase {inside[0].phase})" if inside else ""
            raise UserError(
                f"{file}:{error.lineno}: {error.msg}{where}: fix that line, then check again"
            ) from None
    return regions


def choose(ws: Workspace, target: str, regions: list[Region]) -> tuple[list[Region], int | None]:
    """The gaps a check grades, and the phase whose phase-level tests it also runs: `target` is a
    phase number, or a gap's name (whole, or its last part)."""
    phases = sorted({r.phase for r in regions})
    if target.isdigit():
        if int(target) not in phases:
            raise UserError(
                f"no phase {target}: use one of {', '.join(map(str, phases))}, all, or a gap's name"
            )
        return [r for r in regions if r.phase == int(target)], int(target)
    return [ws.find(target)], None


def check(ws: Workspace, target: str, timeout: float = DEFAULT_TIMEOUT, out=sys.stdout) -> bool:
    """Grade a phase ("2".."5"), every phase ("all") or one gap, printing progress test by test
    and then a screen per failure. Returns whether everything passed."""
    regions = preflight(ws)
    state = ws.load_state()
    phases = sorted({r.phase for r in regions}) if target == "all" else [None]
    passed_all = True
    for phase in phases:
        gaps, number = choose(ws, str(phase) if phase else target, regions)
        passed_all &= _check_one(ws, gaps, number, timeout, state, out)
        ws.save_state(state)  # after each phase: a later one that stops loses nothing
    return passed_all


def _check_one(ws, gaps: list[Region], phase: int | None, timeout: float, state: dict, out) -> bool:
    title = f"Phase {phase}" if phase else f"{gaps[0].name} (phase {gaps[0].phase})"
    print(f"Checking {title}: {', '.join(r.name for r in gaps)}", file=out, flush=True)
    print(
        f"  starting the tests (each may take up to {timeout:g} s; Ctrl-C stops) ...",
        file=out,
        flush=True,
    )
    total, seen = [0], []

    def show(kind: str, value) -> None:
        if kind == "collected":
            total[0] = value
        elif kind == "end":
            seen.append(value)
            marks = {"passed": "ok  ", "timeout": "STOP", "skipped": "skip"}
            mark = marks.get(value.outcome, "FAIL")
            mark = "todo" if value.kind == "NotImplementedError" else mark
            count = f"[{len(seen):>2}/{total[0]}]"
            print(
                f"  {count} {mark}  {value.name:<62} {value.seconds:5.1f} s", file=out, flush=True
            )

    names = [r.name for r in gaps]
    report = run_tests(ws.root, names, phase, timeout, on_progress=show)
    if report.problem:
        raise UserError(f"the tests of {title} could not start: {report.problem}")
    stopped = [o for o in report.outcomes if o.outcome in ("timeout", "crashed")]
    if stopped:
        raise _stopped_error(ws, stopped[0], timeout, phase or gaps[0].name)
    failures = [o for o in report.outcomes if o.outcome not in ("passed", "skipped")]
    if not report.outcomes:
        raise UserError(f"no test grades {title}: is tests/ complete? (`git status tests`)")
    if phase is not None:
        state["passed"] = sorted(set(state["passed"]) - {phase} | (set() if failures else {phase}))
    if not failures:
        print(f"{title}: all {len(report.outcomes)} tests pass.", file=out)
        question = key_questions(ws).get(phase or gaps[0].phase) if phase else None
        if question:
            print(f"  Key question: {question[0]}", file=out)
            print(f"  Think it through, then compare: `{COMMAND} answer {phase}`", file=out)
        return True
    print(f"{title}: {len(failures)} of {len(report.outcomes)} tests fail.", file=out)
    for line in describe_failures(ws, failures):
        print(line, file=out)
    return False


def _stopped_error(ws: Workspace, outcome: Outcome, timeout: float, target) -> UserError:
    region = region_for_failure(ws, outcome)
    gap = f"{region.name} ({region.file})" if region else "the code this test runs"
    if outcome.outcome == "timeout":
        return UserError(
            f"{outcome.name} did not finish within {timeout:g} s: is there an endless loop in "
            f"{gap}? Fix it, then run `{COMMAND} check {target}` again"
        )
    last = outcome.message.strip().splitlines()[-1:] or ["no message"]
    return UserError(f"{outcome.name} crashed the test process ({last[0][:160]}) in {gap}")


def describe_failures(ws: Workspace, failures: list[Outcome]) -> list[str]:
    """Open TODOs grouped (one line each), then a screen per failing test: the gap, what was
    expected and what came back (in full), the gap's hints, and the exact `reveal` command."""
    lines: list[str] = []
    todos: dict[str, list[str]] = {}
    wrong: list[tuple[Outcome, Region | None]] = []
    for failure in failures:
        region = region_for_failure(ws, failure)
        if failure.kind == "NotImplementedError" and region:
            todos.setdefault(region.name, []).append(failure.name)
        else:
            wrong.append((failure, region))
    regions = {r.name: r for r in ws.regions()}
    for name, tests in todos.items():
        region, more = regions[name], " ..." if len(tests) > 4 else ""
        lines.append(
            f"\n  TODO  {name} ({region.file}, phase {region.phase}) is still a stub; "
            f"{len(tests)} test(s) stop there: {', '.join(tests[:4])}{more}"
        )
    hinted: set[str] = set()
    for failure, region in wrong:
        lines.append(f"\n  FAIL  {failure.name}")
        if region:
            lines.append(f"  in    {region.name} ({region.file}, phase {region.phase})")
        where = _learner_frame(failure, region)
        if where:
            lines.append(f"  at    {where}")
        message = failure.message.strip() or "(no message)"
        if failure.kind != "AssertionError":
            message = f"{failure.kind}: {message}"
        body = message.splitlines()[:30]
        lines += [f"  | {line}" for line in body]
        if region and region.name not in hinted:
            hinted.add(region.name)
            lines += ["  hints:"] + [f"    {hint.lstrip('# ')}" for hint in region.hints]
            lines.append(
                f"  stuck? `{COMMAND} reveal {region.name}` puts the reference solution back "
                "(your attempt is kept in a copy)"
            )
    if todos:
        first = regions[next(iter(todos))]
        lines.append(f"\n  Start with {first.name}:")
        lines += [f"    {hint.lstrip('# ')}" for hint in first.hints]
    return lines


def _learner_frame(failure: Outcome, region: Region | None) -> str:
    """file:line of the deepest frame inside the gap's file, if the failure happened there."""
    if region is None:
        return ""
    for path, lineno in reversed(failure.frames):
        if Path(path).name == Path(region.file).name and Path(path).parent.name == "app":
            return f"{region.file}:{lineno}"
    return ""


# ----------------------------------------------------------------------------- the child side


class _Reporter:
    """A pytest plugin run in the child: keeps the grading tests and reports each one."""

    def __init__(self, pipe, gaps: set[str], phase: int | None) -> None:
        self.pipe, self.gaps, self.phase = pipe, gaps, phase
        self.started = 0.0
        self.errors: dict[str, tuple[str, str, list]] = {}

    def emit(self, **event) -> None:
        self.pipe.write(json.dumps(event) + "\n")
        self.pipe.flush()

    @staticmethod
    def item_gaps(item) -> list[str]:
        return [name for mark in item.iter_markers("gap") for name in mark.args]

    def pytest_collection_modifyitems(self, config, items) -> None:
        def graded(item) -> bool:
            phases = [mark.args[0] for mark in item.iter_markers("phase")]
            return bool(set(self.item_gaps(item)) & self.gaps) or self.phase in phases

        kept = [item for item in items if graded(item)]
        config.hook.pytest_deselected(items=[item for item in items if not graded(item)])
        items[:] = kept

    def pytest_collection_finish(self, session) -> None:
        self.emit(event="collected", count=len(session.items))

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            text = str(report.longrepr).strip().splitlines()
            self.emit(event="problem", message=text[-1] if text else "could not collect")

    def pytest_runtest_logstart(self, nodeid, location) -> None:
        self.started = time.perf_counter()

    def pytest_runtest_setup(self, item) -> None:
        self.emit(event="start", test=item.nodeid, gaps=self.item_gaps(item))

    def pytest_runtest_makereport(self, item, call) -> None:
        """Keep the exception of a failing phase whole (its type, message and frames)."""
        if call.excinfo is not None:
            error = call.excinfo.value
            frames = [(f.filename, f.lineno) for f in traceback.extract_tb(error.__traceback__)]
            self.errors[item.nodeid] = (type(error).__name__, str(error), frames)

    def pytest_runtest_logreport(self, report) -> None:
        """One "end" per test: at its call, or at a set-up that failed or skipped it; a failing
        tear-down after a passed call sends a second one, which turns the test into a failure."""
        if report.when == "call" or report.outcome != "passed":
            kind, message, frames = self.errors.get(report.nodeid, ("", "", []))
            self.emit(
                event="end",
                test=report.nodeid,
                outcome=report.outcome,  # passed, failed or skipped
                seconds=time.perf_counter() - self.started,
                kind=kind if report.failed else "",
                message=message if report.failed else "",
                frames=frames if report.failed else [],
            )


def _child(argv: list[str]) -> int:
    import argparse

    import pytest

    parser = argparse.ArgumentParser(prog="python -m app.grader")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--gaps", nargs="*", default=[])
    parser.add_argument("--phase", type=int)
    parser.add_argument("--exitfirst", action="store_true")
    args = parser.parse_args(argv)
    root = Path.cwd()
    with os.fdopen(args.fd, "w") as pipe:
        reporter = _Reporter(pipe, set(args.gaps), args.phase)
        files = [str(root / name) for name in GRADED_FILES if (root / name).is_file()]
        options = ["-q", "-p", "no:cacheprovider", f"--rootdir={root}", "-W", "ignore"]
        options += ["-x"] if args.exitfirst else []
        with open(os.devnull, "w") as quiet:
            sys.stdout = sys.stderr = quiet  # pytest's own summary is not for the learner
            return pytest.main([*files, *options], plugins=[reporter])


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
