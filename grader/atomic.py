"""Write a file whole or not at all: the gradebook and the reports never end up half written.

The new text goes to a temporary file in the same folder, is flushed to the disk, and then
replaces the old file in one ``os.replace``. A failure on the way (a full disk, a quota, a
read-only folder, an interruption) removes the temporary file and leaves the old file as it
was; the ``OSError`` (or the interruption) is raised again for the caller to report.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

# Errors that say the storage itself cannot take the write (rather than one bad file name):
# a batch that meets one of them stops instead of recording every later row as a failure.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM,
                            errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EFBIG})


def temp_name(path: Path) -> Path:
    """The temporary file :func:`write_text` uses for ``path`` (hidden, named after this process)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def stale_temps(path: Path) -> list[Path]:
    """Temporary files of ``path`` that earlier, killed processes left behind (``.<name>.<pid>.tmp``).

    Names are compared as text, never as a glob pattern: a file named ``*.json`` or ``[a].csv``
    matches only its own temporary files, not those of every other file in the folder.
    """
    head, tail = f".{path.name}.", ".tmp"
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    found = []
    for name in names:
        pid = name[len(head):-len(tail)] if name.startswith(head) and name.endswith(tail) else ""
        if pid.isascii() and pid.isdigit():
            candidate = path.parent / name
            if candidate.is_file() and not candidate.is_symlink():
                found.append(candidate)
    return sorted(found)


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8, line ends as given) atomically; raises OSError, old file intact.

    A lone surrogate (an undecodable byte in a student's message) is written as ``?``.
    """
    write_bytes(path, text.encode("utf-8", errors="replace"))


def write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically; raises OSError with the old file intact."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        tmp.unlink(missing_ok=True)     # a leftover of an earlier process with the same pid
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    # Makes the rename itself durable; some file systems cannot fsync a folder, which is fine.
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
