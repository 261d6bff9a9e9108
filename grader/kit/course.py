"""The course's choices (``course.toml`` at the kit's root) and the edition a submission targets.

Experiment 3.2 exists in two editions of the course, called *tracks* here:

* ``pycnml``: the book's edition (``pycnml.CnmlNet``, int8 quant parameters, NCHW input,
  a flatten layer); its reference is ``grader/reference/exp_3_2_dlp/``;
* ``pycnnl``: the newer edition (``pycnnl.CnnlNet``, float32, NHWC input, shape vectors,
  no flatten layer); its reference is ``grader/reference/tracks/pycnnl/exp_3_2_dlp/``.

The student's folder is ``exp_3_2_dlp/`` in both. The instructor picks the course's track in
``course.toml`` (``[exp_3_2_dlp] track = "..."``); ``$AICS_EXP_3_2_TRACK`` overrides it for one
shell. A submission that imports only the other track's module is graded on that track
(:func:`choose_track`), so that published solutions of either edition get real scores.
"""
from __future__ import annotations

import ast
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from grader.kit.paths import REFERENCE_DIR, REPO_ROOT

COURSE_FILE = REPO_ROOT / "course.toml"
TRACK_ENV = "AICS_EXP_3_2_TRACK"
TRACKED_EXPERIMENT = "exp_3_2_dlp"
TRACKS = ("pycnml", "pycnnl")
DEFAULT_TRACK = "pycnml"
# What each track is, in the words a report note or a runner banner uses.
EDITIONS = {
    "pycnml": "the book's edition (pycnml.CnmlNet, int8, NCHW, flatten layer)",
    "pycnnl": "the newer edition (pycnnl.CnnlNet, float32, NHWC, no flatten layer)",
}
DEMO_FILE = "vgg19_demo.py"
# A submission's source is read only this far: the book's file is a few kB.
MAX_SOURCE_BYTES = 1 << 20


class CourseError(ValueError):
    """``course.toml`` or ``$AICS_EXP_3_2_TRACK`` holds something the kit cannot use."""


# --------------------------------------------------------------------------- course.toml

def read_course(path: Path = COURSE_FILE) -> dict:
    """The settings of ``course.toml`` as nested dicts; ``{}`` when the file does not exist."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:   # Python 3.10: the same parser, from PyPI (pyproject.toml installs it there)
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CourseError(f"{path} is not valid TOML ({exc}); fix it or remove it to use the defaults") from None


def _checked(track, where: str) -> str:
    value = str(track).strip().lower()
    if value not in TRACKS:
        raise CourseError(f"{where} is {track!r}; choose one of {', '.join(repr(t) for t in TRACKS)}")
    return value


def course_track(path: Path = COURSE_FILE) -> str:
    """The track the course teaches for experiment 3.2: ``$AICS_EXP_3_2_TRACK``, else ``course.toml``, else pycnml."""
    override = os.environ.get(TRACK_ENV, "").strip()
    if override:
        return _checked(override, f"${TRACK_ENV}")
    section = read_course(path).get(TRACKED_EXPERIMENT, {})
    if not isinstance(section, dict):
        raise CourseError(f"{path}: [{TRACKED_EXPERIMENT}] must be a table holding track = \"pycnml\" or \"pycnnl\"")
    if "track" not in section:
        return DEFAULT_TRACK
    return _checked(section["track"], f"track in [{TRACKED_EXPERIMENT}] of {path}")


def reference_root(track: str) -> Path:
    """The folder shaped like ``stu_upload/`` that holds ``track``'s reference of experiment 3.2."""
    _checked(track, "the track")
    return REFERENCE_DIR if track == DEFAULT_TRACK else REFERENCE_DIR / "tracks" / track


# --------------------------------------------------------------------------- a submission's target

_IMPORT_LINE = re.compile(r"^\s*(?:from\s+(pycn[mn]l)\b|import\s+([^#\n]*))", re.M)


def imported_tracks(source: str) -> set[str]:
    """The tracks whose module (``pycnml``, ``pycnnl``) ``source`` imports, anywhere in the file.

    Read with :mod:`ast`; a file Python cannot parse is scanned line by line instead, so
    that a submission with a syntax error still names its edition.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        found = set()
        for match in _IMPORT_LINE.finditer(source):
            if match.group(1):
                found.add(match.group(1))
            else:
                found |= {t for t in TRACKS if re.search(rf"(^|[\s,]){t}(\s|,|$)", match.group(2))}
        return found
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names & set(TRACKS)


def read_source(path: Path, limit: int = MAX_SOURCE_BYTES) -> str | None:
    """The text of a submission's file, or None when it is not a plain regular file.

    Hostile input: a final symbolic link is not followed and the open never blocks (a FIFO
    planted under the book's file name is not read), and at most ``limit`` bytes are read.
    """
    if path.parent.is_symlink():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        data = handle.read(limit)
    return data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class TrackChoice:
    track: str          # the track the submission is graded (or run) on
    course: str         # the course's track
    note: str = ""      # why ``track`` differs from ``course``; empty when it does not


def choose_track(submission: Path, course: str | None = None) -> TrackChoice:
    """The track to grade ``submission/exp_3_2_dlp/vgg19_demo.py`` on.

    The course's track, unless the file plainly targets the other one: it imports that
    track's module and not the course's. A file importing both or neither, or one that
    cannot be read, is graded on the course's track. Deterministic: the same file and the
    same course always give the same track.
    """
    course = course or course_track()
    source = read_source(Path(submission) / TRACKED_EXPERIMENT / DEMO_FILE)
    targets = imported_tracks(source) if source is not None else set()
    if len(targets) == 1 and course not in targets:
        track = targets.pop()
        note = (f"{TRACKED_EXPERIMENT}/{DEMO_FILE} imports {track} and not {course}: it is run and graded on the "
                f"{track} track, {EDITIONS[track]}, while the course teaches the {course} track")
        return TrackChoice(track, course, note)
    return TrackChoice(course, course)
