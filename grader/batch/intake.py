"""Archive intake: find the submissions of a folder and the folder shaped like ``stu_upload/`` in each.

Every sub-folder and every ``*.zip`` of the submissions folder is one submission. Zips are
extracted by :func:`safe_extract`, which refuses absolute or ``..`` paths and links and caps
the member count and the bytes written, so a hostile archive cannot escape or flood the
private extraction folder.
"""
from __future__ import annotations

import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from grader.kit.paths import EXPERIMENTS

MAX_ZIP_BYTES = 200 * 2**20      # uncompressed total per submission
MAX_ZIP_MEMBERS = 5000
MAX_SEARCH_DEPTH = 3             # how deep to look for the folder holding exp_* inside a submission


class UnsafeArchive(Exception):
    """A zip member would escape the extraction folder or exceed the caps."""


@dataclass
class Entry:
    id: str
    source: Path                 # the sub-folder or the zip file
    root: Path | None = None     # the folder shaped like stu_upload/, once known
    problem: str = ""            # why it cannot be graded (bad zip, ...)


def discover(folder: Path) -> list[Entry]:
    """Sub-folders and zip files of ``folder``, sorted by name; ids are unique.

    Hidden names and symbolic links are skipped. A zip takes its stem as id unless a
    folder or an earlier zip already holds that id; then it keeps its full file name.
    """
    entries: list[Entry] = []
    taken: set[str] = set()
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or path.is_symlink():
            continue
        if path.is_dir():
            ident = path.name
        elif path.is_file() and path.suffix.lower() == ".zip":
            ident = path.stem if path.stem not in taken and not (folder / path.stem).is_dir() else path.name
        else:
            continue
        taken.add(ident)
        entries.append(Entry(ident, path))
    return entries


def find_root(folder: Path) -> Path:
    """The shallowest folder at or below ``folder`` holding an ``exp_*`` experiment folder.

    Students zip ``stu_upload/`` itself, its contents, or a folder named after themselves;
    all three grade the same. With no experiment folder anywhere, ``folder`` itself is
    returned and the grader reports what is missing.
    """
    level = [folder]
    for _ in range(MAX_SEARCH_DEPTH + 1):
        for candidate in level:
            if any((candidate / exp).is_dir() for exp in EXPERIMENTS):
                return candidate
        level = [p for d in level for p in sorted(d.iterdir())
                 if p.is_dir() and not p.is_symlink() and not p.name.startswith((".", "__"))]
        if not level:
            break
    return folder


def safe_extract(archive: Path, dest: Path, max_bytes: int = MAX_ZIP_BYTES,
                 max_members: int = MAX_ZIP_MEMBERS) -> None:
    """Extract ``archive`` into ``dest`` refusing anything that could escape or flood it.

    Sizes are counted on the bytes actually written, not the sizes the archive claims.
    ``__MACOSX/`` resource forks are dropped.
    """
    dest = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        if len(members) > max_members:
            raise UnsafeArchive(f"{len(members)} entries (at most {max_members} allowed)")
        written = 0
        for info in members:
            name = info.filename.replace("\\", "/")
            parts = [p for p in name.split("/") if p not in ("", ".")]
            if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
                raise UnsafeArchive(f"entry {info.filename!r} points outside the submission")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafeArchive(f"entry {info.filename!r} is a symbolic link")
            if not parts or "__MACOSX" in parts:
                continue
            target = dest.joinpath(*parts)
            if not target.resolve().is_relative_to(dest):
                raise UnsafeArchive(f"entry {info.filename!r} points outside the submission")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > max_bytes:
                        raise UnsafeArchive(f"more than {max_bytes >> 20} MiB once extracted")
                    out.write(chunk)


def prepare(entries: list[Entry], scratch: Path) -> None:
    """Set ``root`` of every entry, extracting zips into numbered folders of ``scratch``.

    A zip that cannot be extracted safely gets ``problem`` instead, so it costs one
    row of the gradebook and never the batch.
    """
    for i, entry in enumerate(entries):
        if entry.source.is_dir():
            entry.root = find_root(entry.source)
            continue
        dest = scratch / f"{i:05d}"
        dest.mkdir()
        try:
            safe_extract(entry.source, dest)
            entry.root = find_root(dest)
        except (UnsafeArchive, zipfile.BadZipFile, OSError, ValueError) as exc:
            entry.problem = f"zip refused: {exc}"
