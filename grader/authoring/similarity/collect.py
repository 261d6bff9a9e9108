"""Read the students' Python files of every submission of a folder, as ``python -m grader batch`` finds them.

Every sub-folder and every ``*.zip`` of the folder is one submission
(:func:`grader.batch.intake.discover`); a zip is extracted safely into its own folder of a
private scratch folder, read, and removed before the next one, so the disk holds one
extracted submission at a time. What is read is hostile input: only regular files named
``*.py`` directly inside a real (not linked) ``exp_3_x_*/`` folder, opened without
following links, at most :data:`MAX_FILES` per experiment and :data:`MAX_FILE_BYTES` each.
A submission that cannot be read (a broken zip, no experiment files) is *skipped* with its
reason; it never stops the run.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from grader.batch.intake import discover, prepare_one, remove_tree
from grader.results import printable

MAX_FILE_BYTES = 256 * 1024   # the largest reference file is ~15 KB; more is not hand-written code
MAX_FILES = 32                # per experiment folder: the skeleton has at most 4
MAX_ID_CHARS = 120


@dataclass
class Submission:
    """One submission's files: ``files[(experiment, file name)]`` is the text of that file."""
    id: str
    files: dict[tuple[str, str], str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)   # files left out or cut short, and why


@dataclass
class Skipped:
    """A submission that could not be compared, and why (shown in the output and the page)."""
    id: str
    reason: str


def display_id(raw: str, taken: set[str]) -> str:
    """A printable, bounded, unique id for ``raw`` (a folder or zip name chosen by a student).

    Control characters become ``?`` and long names are cut; when that makes two ids equal,
    the later one gets a ``#2``, ``#3``... suffix so that rows stay distinguishable.
    """
    text = printable(raw)
    if len(text) > MAX_ID_CHARS:
        text = text[:MAX_ID_CHARS] + "..."
    ident, n = text, 1
    while ident in taken:
        n += 1
        ident = f"{text}#{n}"
    taken.add(ident)
    return ident


def collect(folder: Path, experiments: list[str], scratch: Path) -> tuple[list[Submission], list[Skipped]]:
    """The submissions of ``folder`` with their files of ``experiments``, and those skipped.

    ``scratch`` is a private folder (mode 0700) for extracting zips, one at a time; each
    extraction is removed right after reading. Raises OSError only when ``scratch`` itself
    cannot be written (a full disk), which is no fault of a student.
    """
    found: list[Submission] = []
    skipped: list[Skipped] = []
    taken: set[str] = set()
    for i, entry in enumerate(discover(folder)):
        ident = display_id(entry.id, taken)
        dest = scratch / f"{i:05d}"
        try:
            prepare_one(entry, dest)
            if entry.problem:
                skipped.append(Skipped(ident, printable(entry.problem)))
                continue
            sub = Submission(ident)
            for exp in experiments:
                _read_experiment(entry.root / exp, exp, sub)
        finally:
            if dest.exists():
                remove_tree(dest)
        if sub.files:
            found.append(sub)
        else:
            names = ", ".join(f"{e}/*.py" for e in experiments)
            why = "".join(f"; {note}" for note in sub.notes)
            skipped.append(Skipped(ident, f"no Python file found in {names} (is it shaped like stu_upload/?){why}"))
    return found, skipped


def _read_experiment(folder: Path, exp: str, sub: Submission) -> None:
    """Add the ``*.py`` files directly inside ``folder`` to ``sub`` (links and oddities are noted, not read)."""
    try:
        info = os.lstat(folder)
    except OSError:
        return   # the experiment is not in this submission
    if not stat.S_ISDIR(info.st_mode):
        sub.notes.append(f"{exp} is not a folder (a link?): not read")
        return
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
    except OSError as exc:
        sub.notes.append(f"{exp}/ cannot be listed: {printable(exc.strerror or exc)}")
        return
    if len(names) > MAX_FILES:
        sub.notes.append(f"{exp}/ holds {len(names)} Python files; only the first {MAX_FILES} by name are compared")
        names = names[:MAX_FILES]
    for name in names:
        shown = printable(name)
        text = _read_file(folder / name, f"{exp}/{shown}", sub)
        if text is not None:
            sub.files[(exp, shown)] = text


def _read_file(path: Path, label: str, sub: Submission) -> str | None:
    """The text of one regular file, at most :data:`MAX_FILE_BYTES` of it; None (with a note) otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        sub.notes.append(f"{label} cannot be opened (a link?): {printable(exc.strerror or exc)}")
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            sub.notes.append(f"{label} is not a regular file: not read")
            return None
        data = os.read(fd, MAX_FILE_BYTES + 1)
    except OSError as exc:
        sub.notes.append(f"{label} cannot be read: {printable(exc.strerror or exc)}")
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        sub.notes.append(f"{label} is larger than {MAX_FILE_BYTES // 1024} KiB: only its beginning is compared")
        data = data[:MAX_FILE_BYTES]
    return data.decode("utf-8", errors="replace").lstrip("\ufeff")
