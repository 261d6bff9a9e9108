"""Archive intake: find the submissions of a folder and the folder shaped like ``stu_upload/`` in each.

Every sub-folder and every ``*.zip`` of the submissions folder is one submission. Zips are
extracted by :func:`safe_extract`, which refuses absolute or ``..`` paths and links and caps
the member count and the bytes written, so a hostile archive cannot escape or flood the
private extraction folder. A zip that is broken in any way (encrypted, corrupt, truncated,
an unknown compression method, not a zip at all) is refused with a reason for that one row.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from grader.atomic import STORAGE_ERRNOS
from grader.kit.paths import EXPERIMENTS

MAX_ZIP_BYTES = 200 * 2**20      # uncompressed total per submission
MAX_ZIP_MEMBERS = 5000
MAX_ZIP_DEPTH = 32               # path parts per zip entry: no real submission nests deeper
MAX_SEARCH_DEPTH = 3             # how deep to look for the folder holding exp_* inside a submission


class UnsafeArchive(Exception):
    """A zip that must not or cannot be extracted: an entry would escape the folder, exceed the
    caps, is encrypted or compressed in a way the grader cannot read. The message says which."""


class BrokenArchive(UnsafeArchive):
    """A file that is not a zip, a truncated zip, or an entry with corrupt data (deflate, CRC)."""


# Compression methods zipfile can read here (bzip2 and LZMA need their modules compiled in).
_READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED} | \
    ({zipfile.ZIP_BZIP2} if importlib.util.find_spec("bz2") else set()) | \
    ({zipfile.ZIP_LZMA} if importlib.util.find_spec("lzma") else set())
_METHOD_NAMES = {1: "Shrink", 6: "Implode", 9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "xz",
                 98: "PPMd", 99: "WinZip AES encryption"}


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

    Every entry is checked before anything is written: names outside the folder, links,
    password protection and compression methods the grader cannot read are refused with
    :class:`UnsafeArchive`. Sizes are counted on the bytes actually written, not the sizes
    the archive claims. ``__MACOSX/`` resource forks are dropped. An archive that is not a
    zip, truncated, or corrupt (bad deflate data, a bad CRC) raises :class:`BrokenArchive`.

    Only a failure of the storage under ``dest`` (see :data:`grader.atomic.STORAGE_ERRNOS`:
    a full disk, a read-only folder) is raised as OSError: that is no fault of the student.
    """
    dest = dest.resolve()
    try:
        zf = zipfile.ZipFile(archive)
    except Exception as exc:   # BadZipFile, but also OSError, ValueError, struct.error on junk
        raise BrokenArchive(f"not a readable zip file, or a truncated one ({_reason(exc)}); "
                            f"upload a freshly made zip") from None
    with zf:
        members = zf.infolist()
        if len(members) > max_members:
            raise UnsafeArchive(f"{len(members)} entries (at most {max_members} allowed)")
        wanted = []
        for info in members:
            parts = _checked_parts(info)
            if parts and "__MACOSX" not in parts:
                wanted.append((info, parts))
        written = 0
        for info, parts in wanted:
            with _writing(info):
                target = dest.joinpath(*parts)
                if not target.resolve().is_relative_to(dest):
                    raise UnsafeArchive(f"entry {info.filename!r} points outside the submission")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                out = open(target, "wb")
            try:
                with _reading(info):
                    src = zf.open(info)
                with src:
                    while True:
                        with _reading(info):
                            chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > max_bytes:
                            raise UnsafeArchive(f"more than {max_bytes >> 20} MiB once extracted")
                        with _writing(info):
                            out.write(chunk)
            finally:
                with _writing(info):
                    out.close()   # a full disk may show only when the last buffer is flushed


def _checked_parts(info: zipfile.ZipInfo) -> list[str]:
    """The path parts of one entry, or UnsafeArchive when it must not be extracted at all."""
    name = info.filename.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise UnsafeArchive(f"entry {info.filename!r} points outside the submission")
    if len(parts) > MAX_ZIP_DEPTH:
        # checked before anything is written: a tree this deep is slow to resolve and
        # deeper than the recursion limit of shutil.rmtree
        raise UnsafeArchive(f"an entry nested {len(parts)} folders deep (at most {MAX_ZIP_DEPTH} allowed): "
                            f"{info.filename[:80]!r}...")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeArchive(f"entry {info.filename!r} is a symbolic link")
    if info.flag_bits & 0x1:
        raise UnsafeArchive(f"entry {info.filename!r} is password-protected (encrypted); "
                            f"zip the files again without a password")
    if info.compress_type not in _READABLE_METHODS and not info.is_dir():
        label = _METHOD_NAMES.get(info.compress_type, "unknown")
        raise UnsafeArchive(f"entry {info.filename!r} uses compression method {info.compress_type} ({label}), "
                            f"which the grader cannot read; zip the files again with the standard "
                            f"(deflate) method")
    return parts


class _reading:
    """Turn any failure to read one entry of the archive into :class:`BrokenArchive`."""

    def __init__(self, info: zipfile.ZipInfo):
        self.info = info

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, UnsafeArchive):
            return False
        # zlib.error (bad deflate data), BadZipFile (bad CRC, bad header), EOFError (data
        # cut short), lzma/bz2 errors, NotImplementedError (a method this Python lacks).
        raise BrokenArchive(f"entry {self.info.filename!r} is corrupt ({_reason(exc)}); "
                            f"upload a freshly made zip") from None


class _writing:
    """Turn a failure to write one entry into :class:`UnsafeArchive`, unless the storage failed.

    A file and a folder of the same name, a name too long or with a NUL byte are the
    archive's fault; a full disk or a read-only folder is not, and stays an OSError.
    """

    def __init__(self, info: zipfile.ZipInfo):
        self.info = info

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            return False
        if isinstance(exc, (OSError, ValueError)):
            raise UnsafeArchive(f"entry {self.info.filename!r} cannot be extracted ({_reason(exc)})") from None
        return False


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def prepare_one(entry: Entry, dest: Path | None) -> None:
    """Set ``root`` of one entry, extracting a zip into ``dest`` (created here; unused for a folder).

    A folder that cannot be read or a zip that cannot be extracted safely gets
    ``problem`` instead, and ``dest`` is left empty: it costs one row of the gradebook,
    never the batch. Only a failure of the storage under ``dest`` raises (OSError).
    """
    if entry.source.is_dir():
        try:
            entry.root = find_root(entry.source)
        except OSError as exc:
            entry.problem = f"the folder cannot be read: {_reason(exc)}"
        return
    dest.mkdir()
    try:
        safe_extract(entry.source, dest)
        entry.root = find_root(dest)
    except UnsafeArchive as exc:
        entry.problem = f"zip refused: {exc}"
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            clear(dest)
            raise
        entry.problem = f"zip refused: {_reason(exc)}"
    except Exception as exc:   # never let one archive cost the batch
        entry.problem = f"zip refused: {type(exc).__name__}: {_reason(exc)}"
    except BaseException:
        clear(dest)   # interrupted: leave no half-extracted submission behind
        raise
    if entry.problem:
        clear(dest)


def prepare(entries: list[Entry], scratch: Path) -> None:
    """Set ``root`` of every entry, extracting zips into numbered folders of ``scratch``.

    A zip that cannot be extracted safely gets ``problem`` instead (and an empty folder),
    so it costs one row of the gradebook and never the batch.
    """
    for i, entry in enumerate(entries):
        prepare_one(entry, scratch / f"{i:05d}")


def clear(folder: Path) -> None:
    """Remove everything inside ``folder``, keeping the folder itself (best effort)."""
    try:
        children = list(folder.iterdir())
    except OSError:
        return
    for child in children:
        if child.is_dir() and not child.is_symlink():
            remove_tree(child)
        else:
            try:
                child.unlink()
            except OSError:
                pass


def remove_tree(folder: Path) -> None:
    """Remove ``folder`` and everything under it, best effort, never raising.

    ``shutil.rmtree`` recurses once per level and raises RecursionError on a tree deeper
    than the interpreter's limit; such a tree is then removed bottom-up without recursion.
    """
    try:
        shutil.rmtree(folder, ignore_errors=True)
        return
    except RecursionError:
        pass
    try:
        for root, dirs, files in os.walk(folder, topdown=False, followlinks=False):
            for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
                try:
                    os.unlink(os.path.join(root, name))
                except OSError:
                    pass
            for name in dirs:
                try:
                    os.rmdir(os.path.join(root, name))
                except OSError:
                    pass
        os.rmdir(folder)
    except (OSError, RecursionError):
        pass
