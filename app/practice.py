"""Practice mode: turn the reference into TODO stubs, check each phase or gap, reveal, answer.

    uv run python -m app.practice start          # exercise version: every solution becomes a stub
    uv run python -m app.practice status         # which TODOs are still open, per phase
    uv run python -m app.practice check 2        # grade phase 2, test by test
    uv run python -m app.practice check forward  # grade one gap (here WorldModel.forward)
    uv run python -m app.practice reveal WorldModel.forward   # put one reference solution back
    uv run python -m app.practice answer 2       # our answer to phase 2's key question
    uv run python -m app.practice reset          # back to the full reference (alias: solution)

The reference code is the single source of truth. Each gap is a region between
`# ### BEGIN SOLUTION (phase N: name)` and `# ### END SOLUTION`, under TODO and HINT comment lines
that stay visible in both versions. The exercise version is generated from the reference, never
edited by hand: each region's body becomes `raise NotImplementedError("Phase N: name — see TODO
above")`. The reference is kept in .practice/reference/; whenever a command would replace code
that differs from both the reference and the fresh exercise version (that is, your work), it first
copies the file to .practice/backups/<time>/ and says so. The checks run in app/grader.py, the
files are handled in app/workspace.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app import grader, startup_finished, stopped_by
from app.common import OneLineParser, UserError
from app.workspace import (  # noqa: F401 - the names tests and learners reach through practice
    COMMAND,
    ROOT,
    Region,
    Workspace,
    _body,
    is_open,
    key_questions,
    parse_regions,
    replace_bodies,
    to_exercise,
)

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


def reset(ws: Workspace, files: list[str] | None = None) -> list[str]:
    """Put the reference back (of `files`, or of every practice file), restoring missing files
    and saving any of the learner's work first."""
    known = ws.files()
    unknown = [file for file in files or [] if file not in known]
    if unknown:
        raise UserError(f"{unknown[0]} is not a practice file: choose from {', '.join(known)}")
    if not ws.has_reference():
        return ["Already the reference version (practice was never started)."]
    chosen = files or known
    present = [file for file in chosen if (ws.root / file).is_file()]
    folder = ws.backup([file for file in present if ws.has_learner_work(file)])
    for file in chosen:
        ws.write(file, ws.reference(file))
    report = [f"Your work is saved in {folder.relative_to(ws.root)}/"] if folder else []
    missing = sorted(set(chosen) - set(present))
    report += [f"Restored the missing {', '.join(missing)}."] if missing else []
    return [
        *report,
        f"Reference version restored{'' if files is None else ' in ' + ', '.join(chosen)}.",
    ]


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


def answer(ws: Workspace, phase: int, anyway: bool = False) -> list[str]:
    questions = key_questions(ws)
    if phase not in questions:
        raise UserError(f"no key question for phase {phase}: phases {sorted(questions)} have one")
    checked = {r.phase for r in ws.regions()}
    passed = phase in ws.load_state()["passed"] or phase not in checked or not ws.has_reference()
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
    p = sub.add_parser("check", help="grade a phase or one gap, test by test")
    p.add_argument(
        "target",
        metavar="PHASE_OR_GAP",
        help="a phase (2, 3, 4 or 5), all, or one gap's name (e.g. forward, train_dyna_agent)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=grader.DEFAULT_TIMEOUT,
        help="seconds a test may run before it counts as an endless loop (default: %(default)g)",
    )
    p = sub.add_parser("reveal", help="put one reference solution back (your attempt is kept)")
    p.add_argument("name", help="a gap's name, e.g. WorldModel.forward or imagine_rollout")
    p = sub.add_parser("answer", help="our answer to a phase's key question")
    p.add_argument("phase", type=int, help="the phase (1 to 6) whose key question to answer")
    p.add_argument("--anyway", action="store_true", help="show it before the check passes")
    for name in ("reset", "solution"):
        p = sub.add_parser(
            name,
            help="back to the full reference (your work is kept in a copy)"
            if name == "reset"
            else "the same as reset",
        )
        p.add_argument(
            "files", nargs="*", metavar="FILE", help="only these files (e.g. app/agent.py)"
        )
    return parser


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    """Run one practice command; exit codes: 0 done, 1 a check failed, 2 a problem to fix,
    130 Ctrl-C, 143 SIGTERM."""
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
            if not args.timeout > 0:
                raise UserError(f"--timeout must be positive, got {args.timeout}")
            code, lines = (0 if grader.check(ws, args.target, args.timeout) else 1), []
        elif args.command == "reveal":
            lines = reveal(ws, args.name)
        elif args.command == "answer":
            lines = answer(ws, args.phase, args.anyway)
        else:
            lines = reset(ws, args.files or None)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        what, stop_code = stopped_by(stop)
        print(f"\n{what}: the tests were stopped; your files are as they were.", file=sys.stderr)
        return stop_code
    if lines:
        print("\n".join(lines))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
