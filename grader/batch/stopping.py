"""How a batch stops before its end: on a signal, or when a write fails. Always cleanly.

Either way the running graders are killed, the gradebook keeps every row finished so far
(it is only ever replaced whole), the scratch folder is removed, and the instructor reads
one message saying to run the same command again, which resumes where the batch stopped.

* :class:`Interrupted` is raised in the main thread by SIGINT, SIGTERM or SIGHUP while
  :func:`stop_signals` is active; it derives from BaseException like KeyboardInterrupt,
  so no ``except Exception`` on the way swallows it.
* :class:`WriteFailed` wraps the OSError of a write the batch cannot do without: the CSV,
  a grader's log or report, an extraction folder (a full disk, a read-only folder).
"""
from __future__ import annotations

import errno
import shlex
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """A stop signal arrived; the exit status is 128 + ``signum`` (130 SIGINT, 143 SIGTERM)."""

    finished = 0   # rows the stopped batch had recorded, set by the run loop for the message

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class WriteFailed(Exception):
    """A write the batch needs failed; ``what`` names the file's role, ``path`` the file."""

    finished = 0   # rows the stopped batch had recorded, set by the run loop for the message

    def __init__(self, what: str, path: Path, error: OSError | str):
        self.what, self.path = what, Path(path)
        self.errno = error.errno if isinstance(error, OSError) else None
        reason = (error.strerror or str(error)) if isinstance(error, OSError) else str(error)
        super().__init__(f"could not write {what} {self.path}: {reason}")

    @property
    def hint(self) -> str:
        """What to do before running the batch again."""
        if self.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return "free some disk space (or point --csv / --results-dir at another disk)"
        if self.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return f"make {self.path.parent} writable"
        return "fix the cause above (a full disk is the usual one)"


def resume_command(argv: list[str]) -> str:
    """The command that resumes a stopped batch: the same one, without ``--force``."""
    kept = [a for a in argv if a != "--force"]
    return shlex.join(["python", "-m", "grader", "batch", *kept])


@contextmanager
def stop_signals():
    """Within the block, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` once.

    A second signal while the batch is stopping is ignored, so the clean-up (killing the
    graders, the last CSV write) runs to its end. A signal that was ignored when the block
    started (``nohup``, a background job) stays ignored. Outside the main thread nothing
    is installed: only the main thread can receive Python signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            # None: a handler installed outside Python, which cannot be put back; use the default.
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


@contextmanager
def deferred_signals():
    """Hold stop signals back for a few statements that must not be cut in half.

    Used around creating the scratch folder and remembering its name: a signal between
    the two would leave a folder nobody removes. Held signals arrive at the block's end.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
