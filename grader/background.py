"""Jobs the grader runs in the background, one at a time, each cancellable.

The session computes the reference's outputs (hidden goldens) while the submission's own
process of the same kind of checks runs: both children then use one core each, and the
checks rarely wait for a golden. :class:`Worker` runs submitted jobs in order on one
daemon thread (a daemon, so that a stopping grader never waits for it; the trusted
children die with the grader through their parent-death signal). Each job gets a
``threading.Event`` that asks it to stop; a job cancelled before it started never runs.
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import CancelledError, Future
from typing import Callable


class Job:
    """A submitted job: its result (:attr:`future`) and its stop request (:attr:`cancel`)."""

    def __init__(self, run: Callable[[threading.Event], object]):
        self.run = run
        self.future: Future = Future()
        self.cancel = threading.Event()

    def result(self):
        """The job's return value (waiting for it); raises what the job raised, or CancelledError."""
        return self.future.result()


class Worker:
    """One daemon thread running :class:`Job` objects in submission order."""

    def __init__(self, name: str = "grader-background"):
        self._name = name
        self._queue: queue.Queue[Job] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, run: Callable[[threading.Event], object]) -> Job:
        """Queue ``run(cancel_event)``; returns its :class:`Job` at once."""
        job = Job(run)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
        self._queue.put(job)
        return job

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job.cancel.is_set():
                job.future.set_exception(CancelledError())
                continue
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                job.future.set_result(job.run(job.cancel))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the job
                job.future.set_exception(exc)
