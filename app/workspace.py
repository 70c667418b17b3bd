"""The practice workspace: the gaps (solution regions) in the reference, the learner's files, the
kept reference, the backups, and the practice state. Used by app/practice.py and app/grader.py.

A gap is a region between `# ### BEGIN SOLUTION (phase N: name)` and `# ### END SOLUTION`, under
TODO and HINT comment lines that stay visible in both versions.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from app.common import UserError
from app.storage import atomic_path, save_json

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ".practice"
COMMAND = "uv run python -m app.practice"
BEGIN = re.compile(
    r"^(?P<indent>[ ]*)# ### BEGIN SOLUTION \(phase (?P<phase>\d+): (?P<name>[\w.]+)\)$"
)
END = re.compile(r"^[ ]*# ### END SOLUTION$")
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
                    f"{file}:{open_at + 1}: the region opened here has no END SOLUTION line "
                    f"before the next BEGIN SOLUTION at line {i + 1} (regions cannot nest)"
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
        elif line.lstrip().startswith("#") and re.search(r"\b(BEGIN|END)\s+SOLUTION\b", line):
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
            if any(BEGIN.match(line) for line in path.read_text(errors="replace").splitlines())
        )

    def has_reference(self) -> bool:
        return (self.state_dir / "reference" / "app").is_dir()

    def reference(self, file: str) -> str:
        kept = self.state_dir / "reference" / file
        return kept.read_text() if kept.is_file() else (self.root / file).read_text()

    def current(self, file: str) -> str:
        """The learner's version of `file`; a missing one is an error that names the fix."""
        path = self.root / file
        if not path.is_file():
            fix = (
                f"`{COMMAND} reset {file}` puts the reference version back (your other files stay "
                "as they are)"
                if self.has_reference()
                else f"`git checkout -- {file}` restores it"
            )
            raise UserError(f"{file} is missing: {fix}")
        return path.read_text()

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
        """Replace `file` whole or not at all (app/storage.py's atomic write)."""
        with atomic_path(self.root / file) as tmp:
            tmp.write_text(text)

    def regions(self) -> list[Region]:
        """Regions of the current files (as the learner has them); a damaged marker is an error
        that says where it is and how to repair it."""
        found = []
        for file in self.files():
            text = self.current(file)  # a missing file is an error of its own
            try:
                found += parse_regions(text, file)
            except UserError as error:
                raise UserError(
                    f"{error}: put the marker line back as it was (compare "
                    f"{STATE_DIR}/reference/{file}), or `{COMMAND} reset {file}` (your file is "
                    f"copied to {STATE_DIR}/backups/ first)"
                ) from None
        return found

    def find(self, name: str) -> Region:
        regions = self.regions()
        matches = [r for r in regions if r.name == name or r.name.split(".")[-1] == name]
        if len(matches) != 1:
            names = ", ".join(r.name for r in regions)
            problem = "is ambiguous" if matches else "is not a TODO region"
            raise UserError(f"{name!r} {problem}; choose one of: {names}")
        return matches[0]

    def load_state(self) -> dict:
        """Which phases passed their check; a damaged state file is an error naming the fix."""
        path = self.state_dir / "state.json"
        if not path.exists():
            return {"passed": []}
        try:
            state = json.loads(path.read_text())
            passed = state["passed"]
            if not (isinstance(passed, list) and all(isinstance(n, int) for n in passed)):
                raise ValueError("'passed' is not a list of phase numbers")
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            reason = type(error).__name__ if isinstance(error, KeyError | TypeError) else error
            raise UserError(
                f"{STATE_DIR}/state.json is damaged ({str(reason).splitlines()[0][:80]}): delete "
                f"it (`rm {STATE_DIR}/state.json`; it only records which checks passed, your code "
                "is not in it) and run the command again"
            ) from None
        return {"passed": passed}

    def save_state(self, state: dict) -> None:
        """Written whole or not at all (app/storage.py's atomic write): never half a file."""
        save_json(self.state_dir / "state.json", state)


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
