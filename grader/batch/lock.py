"""One batch per gradebook and per results folder: exclusive, non-blocking ``flock`` locks.

Two batches writing the same CSV would each rewrite it from their own rows, so one would
drop the other's, and they could grade with two seeds; two batches sharing a results folder
(with two CSVs) would overwrite and clean up each other's reports. A batch holds
``<csv>.lock`` (:class:`GradebookLock`) and ``<results>/.batch.lock`` (:class:`FolderLock`)
for its whole run; a second batch is refused before it writes anything. A lock file holds
the pid of the batch that holds it, for the message; the kernel drops the lock when that
process ends, however it ends, so a killed batch never leaves a stale lock.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path


class LockHeld(Exception):
    """Another process holds the lock; ``pid`` is what its lock file says (None if unreadable)."""

    def __init__(self, path: Path, pid: int | None):
        self.path, self.pid = path, pid
        super().__init__(f"{path} is locked by pid {pid}")


def lock_path(csv_path: Path) -> Path:
    """The lock file of a gradebook, beside it."""
    return csv_path.with_name(csv_path.name + ".lock")


def folder_lock_path(folder: Path) -> Path:
    """The lock file of a results folder, inside it (hidden)."""
    return Path(folder) / ".batch.lock"


class ExclusiveLock:
    """``with ExclusiveLock(file):`` holds an exclusive lock on ``file`` or raises :class:`LockHeld`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self) -> None:
        # The holder removes the file when it is done. If that happens between our open and
        # our flock, we hold a lock on a name nobody else will find: try again on the new file.
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise LockHeld(self.path, pid) from None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.path):
                self.fd = fd
                break
            os.close(fd)
        else:
            raise LockHeld(self.path, None)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass   # the pid is only for the message; a full disk is reported by the first real write

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if _same_file(self.fd, self.path):
                self.path.unlink()   # still holding the lock, so no other batch is using this file
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "ExclusiveLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class GradebookLock(ExclusiveLock):
    """``with GradebookLock(csv):`` holds the lock of the gradebook ``csv`` (``<csv>.lock``)."""

    def __init__(self, csv_path: Path):
        super().__init__(lock_path(Path(csv_path)))


class FolderLock(ExclusiveLock):
    """``with FolderLock(results):`` holds the lock of a results folder (``<results>/.batch.lock``)."""

    def __init__(self, folder: Path):
        super().__init__(folder_lock_path(folder))


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
