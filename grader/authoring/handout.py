"""The student handout (``python -m grader release OUT_DIR``).

What a course gives to students: the lab handouts and runners, pristine skeletons, the
grader with its visible checks only, the pycnml and pycnnl shims and the data the labs read. What it
must never contain: ``grader/reference/``, anything computed from hidden cases, and any
solution line. After copying, every file of the release is scanned for every solution
line of every reference file; one hit fails the build and the folder is removed.
"""
from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from grader.authoring.markers import MARKERS, given_lines, solution_lines
from grader.kit.paths import EXPERIMENTS, HANDOUT_MARKER, REFERENCE_DIR, REPO_ROOT

# Shorter lines (`else:`, `return x`, `import os`) are not evidence of a leak.
MIN_LEAK_CHARS = 13
SCAN_MAX_BYTES = 8 * 2**20
# course.toml: the course's choices (3.2's track), which the handout's grader and runners read too.
TOP_FILES = ("env.sh", "pyproject.toml", "course.toml", ".gitignore", "LICENSE")
# The DLP APIs the labs import: the book's pycnml and the newer edition's pycnnl.
API_PACKAGES = ("pycnml", "pycnnl")
# Data a student needs; data/generated is rebuilt by env.sh and real weights are never shipped.
DATA_SKIP = {"generated", "vgg19_data"}
# The rooms of grader/ that never ship: the reference solutions, the kit's own working
# network (it would hand out 3.1's answers and 3.3's speed-up) and the instructor's tools.
GRADER_SKIP = {"reference", "refnet", "authoring"}
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints", "output", ".git"}
SKIP_SUFFIXES = {".pyc", ".pyo"}
MAX_DATA_FILE = 50 * 2**20


# Markdown shared by the kit and the handout marks what only one of them says:
#   <!-- kit-only --> ... <!-- /kit-only -->   dropped from the handout (tests/, benchmarks/,
#                                              instructor commands: the handout has none of them)
#   <!-- handout-only ... -->                  an HTML comment in the kit, plain text in the handout
KIT_ONLY = re.compile(r"[ \t]*<!-- kit-only -->.*?<!-- /kit-only -->[ \t]*\n?", re.S)
HANDOUT_ONLY = re.compile(r"<!-- handout-only\n(.*?)-->[ \t]*\n?", re.S)


def handout_markdown(text: str) -> str:
    """``text`` as the handout shows it: kit-only blocks removed, handout-only blocks revealed."""
    return HANDOUT_ONLY.sub(lambda m: m.group(1), KIT_ONLY.sub("", text))


def _rewrite_markdown(root: Path) -> None:
    """Apply :func:`handout_markdown` to every Markdown file of the handout at ``root``."""
    for path in sorted(root.rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        new = handout_markdown(text)
        if new != text:
            path.write_text(new, encoding="utf-8")


class ReleaseError(Exception):
    """The release could not be built safely; nothing is left in the output folder."""


@dataclass(frozen=True)
class Leak:
    file: str
    line_no: int
    text: str
    source: str   # the reference file the solution line comes from

    def __str__(self) -> str:
        return f"{self.file}:{self.line_no}: {self.text!r} (solution line of {self.source})"


# --------------------------------------------------------------------------- leak scan


def reference_sources(reference_dir: Path = REFERENCE_DIR) -> list[Path]:
    return sorted(p for p in reference_dir.rglob("*.py") if "__pycache__" not in p.parts)


def secret_lines(reference_dir: Path = REFERENCE_DIR) -> dict[str, str]:
    """Solution lines worth scanning for -> the reference file they come from.

    A line that also stands outside the solution blocks of any reference file is given
    code (the book prints it) and is not a secret. ``REFERENCE ONLY`` blocks hold the
    kit's own glue (``from grader import fastops``), not answers, so they are not scanned.
    """
    given: set[str] = set()
    found: dict[str, str] = {}
    for path in reference_sources(reference_dir):
        rel = path.relative_to(reference_dir).as_posix()
        text = path.read_text(encoding="utf-8")
        given |= given_lines(text, rel)
        for s in solution_lines(text, rel):
            if len(s) >= MIN_LEAK_CHARS:
                found.setdefault(s, rel)
    return {s: src for s, src in found.items() if s not in given}


def scan_for_leaks(root: Path, reference_dir: Path = REFERENCE_DIR) -> list[Leak]:
    """Every line of every file under ``root`` that is a solution line or a marker."""
    secrets = secret_lines(reference_dir)
    leaks: list[Leak] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        if path.stat().st_size > SCAN_MAX_BYTES:
            continue  # images and weights; text files of the kit are far smaller
        data = path.read_bytes()
        if b"\0" in data[:4096]:
            continue  # binary (png, npz): cannot hold a Python line as text
        for no, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
            s = line.strip()
            if s in MARKERS:
                leaks.append(Leak(rel, no, s, "a solution marker"))
            elif s in secrets:
                leaks.append(Leak(rel, no, s, secrets[s]))
    return leaks


# --------------------------------------------------------------------------- copying


def _wanted(rel: Path) -> bool:
    return not any(part in SKIP_PARTS for part in rel.parts) and rel.suffix not in SKIP_SUFFIXES


def _copy_tree(src: Path, dest: Path, skip_top: set[str] = frozenset(), max_file: int | None = None,
               notes: list | None = None) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if not _wanted(rel) or (rel.parts and rel.parts[0] in skip_top) or path.is_symlink():
            continue
        target = dest / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if max_file is not None and path.stat().st_size > max_file:
            if notes is not None:
                notes.append(f"left out {src.name}/{rel} ({path.stat().st_size >> 20} MiB)")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def _fix_course_track(path: Path) -> None:
    """The handout's ``course.toml`` names the track its skeletons were built for, even when
    ``$AICS_EXP_3_2_TRACK`` chose it: the handout's grader and runner read that file."""
    from grader.kit.course import TRACKED_EXPERIMENT, course_track
    track = course_track()
    text = path.read_text(encoding="utf-8") if path.is_file() else f"[{TRACKED_EXPERIMENT}]\ntrack = \"{track}\"\n"
    text, count = re.subn(r'^(\s*track\s*=\s*)"[^"]*"', lambda m: f'{m.group(1)}"{track}"', text, count=1, flags=re.M)
    if not count:
        text += f'\n[{TRACKED_EXPERIMENT}]\ntrack = "{track}"\n'
    path.write_text(text, encoding="utf-8")


def student_readme() -> str:
    from grader.kit.course import course_track
    rows = []
    runners = {"exp_3_1_vgg": ("3.1 VGG19 on the CPU", "main_exp_3_1.py"),
               "exp_3_2_dlp": (f"3.2 VGG19 on the DLP ({course_track()})", "main_exp_3_2.py"),
               "exp_3_3_style_transfer": ("3.3 style transfer", "main_exp_3_3.py")}
    for exp in EXPERIMENTS:
        if not (REPO_ROOT / exp).is_dir():
            continue
        title, runner = runners.get(exp, (exp, ""))
        run = f"`python {exp}/{runner}`" if runner and (REPO_ROOT / exp / runner).exists() else ""
        rows.append(f"| {title} | [{exp}/README.md]({exp}/README.md) | `stu_upload/{exp}/` | {run} |")
    table = "\n".join(rows)
    return f"""# AICS chapter 3 labs (student handout)

Labs for chapter 3 of 《智能计算系统》 (AI Computing Systems): VGG19 classification on the
CPU (3.1), VGG19 on a deep-learning processor through `{course_track()}` (3.2), and non-real-time
style transfer (3.3).

## Quick start

You need Python 3.10 or newer. In this folder:

```bash
source env.sh          # first time: creates .venv, installs numpy/scipy/pillow/numba/pytest, writes data
python -m grader       # checks your work in stu_upload/ and prints your score per experiment
```

`source env.sh` is safe to repeat; later runs only activate the environment and print
which VGG19 weights are in use. Without the real MatConvNet file (`$VGG19_MAT` or
`data/vgg19_data/imagenet-vgg-verydeep-19.mat`) the labs run on deterministic
**synthetic** weights: class ids are then the network's argmax, not a real classification.

## What to do

Fill in the TODOs in `stu_upload/` (the same files as in each experiment's `skeleton/`,
which you can keep as a clean copy). Each handout follows the book's section.

| experiment | handout | you edit | run |
|---|---|---|---|
{table}

## Checking your work

Run these from this folder:

```bash
python -m grader --experiments exp_3_1_vgg                   # one experiment
python -m grader --experiments exp_3_1_vgg --time-scale 2    # a slow machine: every time limit doubled
```

Each check prints PASS or FAIL; a failure names the layer and its parameters, the shapes,
the worst element (index, your value, the expected value, the errors) and the tolerance.
Each experiment scores 60, 80 or 100 points, and a tier counts only when every check of it
and of the tiers below passes. Each handout has a table of the book's criterion beside the
kit's checks for every tier, saying where the kit checks more than the book (for 3.2 the
book defines the 100 tier only; 60 and 80 are the kit's).

This grader runs the **visible** checks only. Your instructor grades with more checks on
fresh random inputs, so code that matches the visible cases by accident will not pass:
implement the general formula.

Hand in the `stu_upload/` folder (zip it as it is) unless your course says otherwise.
"""


def build_student_release(out_dir: Path, *, out=print) -> list[str]:
    """Write the student handout into ``out_dir`` (new or empty); returns notes for the instructor."""
    out_dir = Path(out_dir).resolve()
    if out_dir == REPO_ROOT or REPO_ROOT in out_dir.parents:
        raise ReleaseError(f"{out_dir} is inside the kit; choose a folder outside {REPO_ROOT}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ReleaseError(f"{out_dir} is not empty; remove it or choose a new folder")
    if not REFERENCE_DIR.is_dir():
        raise ReleaseError(f"{REFERENCE_DIR} is missing: a release is built from the instructor's kit")
    from grader.authoring.skeletons import expected_skeletons
    notes: list[str] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        (out_dir / "README.md").write_text(student_readme(), encoding="utf-8")
        # The one fact the handout's code reads to know it is a handout (grader.kit.paths).
        (out_dir / HANDOUT_MARKER.name).write_text(
            "This folder is the chapter-3 student handout: no reference solutions, no hidden checks.\n",
            encoding="utf-8")
        for name in TOP_FILES:
            if (REPO_ROOT / name).is_file():
                shutil.copy2(REPO_ROOT / name, out_dir / name)
        _fix_course_track(out_dir / "course.toml")
        for exp in EXPERIMENTS:
            if (REPO_ROOT / exp).is_dir():
                _copy_tree(REPO_ROOT / exp, out_dir / exp)
        # Skeletons and the pristine stu_upload come from the reference, never from the
        # repo's stu_upload/ (it may hold the instructor's own attempts).
        for rel, text in expected_skeletons().items():
            target = out_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        _copy_tree(REPO_ROOT / "grader", out_dir / "grader", skip_top=GRADER_SKIP)
        for package in API_PACKAGES:
            if (REPO_ROOT / package).is_dir():
                _copy_tree(REPO_ROOT / package, out_dir / package)
        _copy_tree(REPO_ROOT / "data", out_dir / "data", skip_top=DATA_SKIP, max_file=MAX_DATA_FILE, notes=notes)
        _rewrite_markdown(out_dir)
        _check_release(out_dir)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    for exp in EXPERIMENTS:
        if (REPO_ROOT / exp).is_dir() and not any((out_dir / "data" / "golden" / exp).glob("*.npz")):
            notes.append(f"no visible goldens for {exp}: run `python -m grader goldens` before releasing, "
                         f"or students' visible checks of {exp} cannot compare")
    files = sum(1 for p in out_dir.rglob("*") if p.is_file())
    out(f"release: wrote {files} files to {out_dir}; leak scan clean")
    for note in notes:
        out(f"release: note: {note}")
    return notes


def _check_release(out_dir: Path) -> None:
    problems = []
    for name in sorted(GRADER_SKIP):
        if (out_dir / "grader" / name).exists():
            problems.append(f"grader/{name} is in the release")
    for name in ("tests", "benchmarks", ".ci", "data/generated"):
        if (out_dir / name).exists():
            problems.append(f"{name}/ is in the release")
    leaks = scan_for_leaks(out_dir)
    problems += [f"solution text: {leak}" for leak in leaks[:50]]
    if len(leaks) > 50:
        problems.append(f"... and {len(leaks) - 50} more solution lines")
    if problems:
        raise ReleaseError("the student release would leak; nothing was written:\n  " + "\n  ".join(problems))


def main(argv: list[str]) -> int:
    """Entry for tools that call the builder directly; ``python -m grader release OUT`` is the usual way."""
    if len(argv) != 1:
        print("usage: python -m grader.authoring.handout OUT_DIR", file=sys.stderr)
        return 2
    try:
        build_student_release(Path(argv[0]))
    except ReleaseError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
