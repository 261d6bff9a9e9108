"""The grader's end of timed calls: fresh inputs, the parent's own clock, the child's CPU time.

A case that wants calls timed by the grader puts a plan in its params,
``params["timed_calls"] = {label: {"shape": [...], "calls": n, "max_output_bytes": b}}``.
:func:`start_for_cases` then binds ``WORKDIR/timing.sock`` (before the sandbox starts, so
the work folder's hand-over to the sandbox user covers it) and serves it from a thread
while the child runs. For each request the server

* refuses a label not in the plan, or asked for more often than ``calls``;
* draws a fresh standard-normal float64 input of ``shape`` from the OS's entropy, so no
  two calls (and no earlier run) share an input;
* reads its own ``time.perf_counter()`` and the peer process's CPU time (from
  ``/proc/<pid>/stat``; the peer's pid comes from ``SO_PEERCRED``), sends the input,
  waits for the whole output, and reads both again.

Only processes descended from this grader process may connect (the sandbox's stages are
its children), one connection at a time. The wire format is :mod:`grader.kit.timing`'s.
Nothing the child does can move these clocks; it can only make its calls slower.
"""
from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grader.kit import timing

_ACCEPT_POLL = 0.2
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_MAX_ANCESTRY = 64


@dataclass(frozen=True)
class TimedInput:
    shape: tuple[int, ...]
    calls: int                  # how many timed calls of this label the child may ask for
    max_output_bytes: int       # the byte budget of one output


@dataclass
class TimedCall:
    """One call timed by the grader: its input and output, wall and CPU seconds."""
    label: str
    input: np.ndarray
    output: np.ndarray          # float64
    wall_seconds: float         # the grader's clock, from sending the input to the last output byte
    cpu_seconds: float | None   # the peer process's CPU time in that window (None: not readable)


@dataclass
class TimedRun:
    """What the server saw for one case."""
    calls: list[TimedCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    connected: bool = False

    def of(self, label: str) -> list[TimedCall]:
        return [c for c in self.calls if c.label == label]


def plan_of(params: dict) -> dict[str, TimedInput]:
    """A case's timed-call plan from its params (empty when it has none)."""
    plan = {}
    for label, item in (params.get("timed_calls") or {}).items():
        plan[label] = TimedInput(tuple(int(v) for v in item["shape"]), int(item["calls"]),
                                 int(item["max_output_bytes"]))
    return plan


# ----- the peer process -----------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (the command name, which may hold spaces, cut off)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def _start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def cpu_seconds(pid: int, start_time: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads), None if it is gone.

    ``start_time`` guards against a reused pid: another process's time is never read.
    """
    fields = _stat_fields(pid)
    if not fields or len(fields) <= 19 or start_time is None or int(fields[19]) != start_time:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def is_descendant(pid: int, ancestor: int) -> bool:
    """Whether ``ancestor`` is on ``pid``'s chain of parents."""
    for _ in range(_MAX_ANCESTRY):
        if pid == ancestor:
            return True
        fields = _stat_fields(pid)
        if not fields or len(fields) < 2:
            return False
        pid = int(fields[1])
        if pid <= 1:
            return ancestor == pid
    return False


def _peer_pid(conn: socket.socket) -> int:
    pid, _uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                            struct.calcsize("3i")))
    return pid


# ----- the server -----------------------------------------------------------------------

class TimingServer:
    """Serve timed calls for ``plans`` (case -> label -> :class:`TimedInput`) in ``workdir``.

    ``call_timeout`` bounds one call, from the input sent to the output received.
    ``require_descendant`` refuses peers that are not processes started by this one
    (tests that play the child in a thread turn it off).
    """

    def __init__(self, workdir: Path, plans: dict[str, dict[str, TimedInput]], *, call_timeout: float,
                 require_descendant: bool = True, rng: np.random.Generator | None = None):
        self.workdir = Path(workdir)
        self.plans = plans
        self.call_timeout = float(call_timeout)
        self.require_descendant = require_descendant
        self.rng = rng if rng is not None else np.random.default_rng()
        self.runs = {case: TimedRun() for case in plans}
        self.problems: list[str] = []      # failures not tied to one case
        self._stop = threading.Event()
        self._conn: socket.socket | None = None
        self._in_call: str | None = None     # the label of the call in progress
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with timing.socket_address(self.workdir) as address:
                self._listener.bind(address)
            # The sandbox user connects; the work folder itself keeps everyone else out.
            os.chmod(self.workdir / timing.SOCKET_NAME, 0o777)
            self._listener.listen(1)
        except OSError:
            self._listener.close()
            raise
        self._thread = threading.Thread(target=self._serve, name="timing-server", daemon=True)

    def start(self) -> "TimingServer":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> dict[str, TimedRun]:
        """Stop serving (the child has ended); the runs per case, with a reason where none ran."""
        self._stop.set()
        with self._lock:
            conn = self._conn
        for sock in (conn, self._listener):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._listener.close()
        with contextlib.suppress(OSError):
            (self.workdir / timing.SOCKET_NAME).unlink()
        for run in self.runs.values():
            if not run.connected and not run.errors:
                run.errors.append("the submission's process never asked the grader for a timed call")
            run.errors[:0] = [p for p in self.problems if p not in run.errors]
        return self.runs

    # The thread ---------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            self._listener.settimeout(_ACCEPT_POLL)
            while not self._stop.is_set():
                try:
                    conn, _ = self._listener.accept()
                except socket.timeout:
                    continue
                except OSError:
                    break
                with self._lock:
                    self._conn = conn
                try:
                    self._converse(conn)
                finally:
                    with self._lock:
                        self._conn = None
                    conn.close()
        except Exception as exc:  # noqa: BLE001 - the thread must report, never die silently
            self.problems.append(f"the grader's timing server failed: {type(exc).__name__}: {exc}")

    def _converse(self, conn: socket.socket) -> None:
        try:
            pid = _peer_pid(conn)
        except OSError as exc:
            self.problems.append(f"could not identify the process on the timing socket: {exc}")
            return
        if self.require_descendant and not is_descendant(pid, os.getpid()):
            self.problems.append(f"refused a timing connection from process {pid}, which the grader did not start")
            return
        start = _start_time(pid)
        case = None
        try:
            while not self._stop.is_set():
                header, _ = timing.recv_message(conn, max_array_bytes=0)
                if header.get("op") == "done":
                    return
                case = header.get("case")
                self._one_call(conn, pid, start, header)
        except _Refused:
            return
        except timing.TimingError as exc:
            errors = self._errors_of(case)
            if not self._stop.is_set():
                errors.append(f"timed calls stopped: {exc}")
            elif self._in_call is not None:
                # Our own shutdown broke the call off: the child ended in the middle of it.
                errors.append(f"the submission's process ended during timed call {self._in_call!r}")
        finally:
            self._in_call = None

    def _errors_of(self, case) -> list[str]:
        run = self.runs.get(case) if isinstance(case, str) else None
        return run.errors if run is not None else self.problems

    def _refuse(self, conn: socket.socket, case, reason: str) -> None:
        # Recorded before the child hears of it: the child may end, and the grader stop
        # serving, as soon as the refusal arrives.
        self._errors_of(case).append(reason)
        with contextlib.suppress(timing.TimingError):
            timing.send_message(conn, {"op": "refused", "message": reason}, timeout=self.call_timeout)
        raise _Refused(reason)

    def _one_call(self, conn: socket.socket, pid: int, start: int | None, header: dict) -> None:
        case, label = header.get("case"), header.get("label")
        run = self.runs.get(case) if isinstance(case, str) else None
        item = self.plans.get(case, {}).get(label) if run is not None and isinstance(label, str) else None
        if header.get("op") != "ready" or item is None:
            self._refuse(conn, case, f"no timed call {label!r} is planned for case {case!r}")
        run.connected = True
        if len(run.of(label)) >= item.calls:
            self._refuse(conn, case, f"timed call {label!r} was asked for more than the {item.calls} planned")
        data = self.rng.standard_normal(item.shape)
        # Encoded before the clock starts: the window holds only the child's side of the work.
        message = timing.encode_message({"op": "input", "case": case, "label": label}, data)
        self._in_call = label
        cpu_before = cpu_seconds(pid, start)
        began = time.perf_counter()
        timing.send_bytes(conn, message, timeout=self.call_timeout)
        reply, output = timing.recv_message(conn, max_array_bytes=item.max_output_bytes,
                                            deadline=time.monotonic() + self.call_timeout)
        wall = time.perf_counter() - began
        cpu_after = cpu_seconds(pid, start)
        if reply.get("op") != "output" or output is None:
            raise timing.TimingError(f"expected the output of {label!r}, got {reply.get('op')!r}")
        cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
        run.calls.append(TimedCall(label, data, np.asarray(output, dtype=np.float64), wall, cpu))
        self._in_call = None


class _Refused(Exception):
    """A request the plan does not allow; already recorded and answered."""


class _Unavailable:
    """Stands in for a server whose socket could not be made: every planned case gets the reason."""

    def __init__(self, plans: dict, reason: str):
        self.runs = {case: TimedRun(errors=[reason]) for case in plans}

    def stop(self, timeout: float = 0.0) -> dict[str, TimedRun]:
        return self.runs


def start_for_cases(workdir: Path, cases, *, call_timeout: float) -> TimingServer | _Unavailable | None:
    """A started server for the cases whose params plan timed calls, or None if none do.

    Call ``stop()`` on it once the child has ended. If the socket cannot be made, the
    returned stand-in reports that for every planned case: such a speed check fails,
    it is never timed any other way.
    """
    plans = {c.name: plan_of(c.params) for c in cases}
    plans = {name: plan for name, plan in plans.items() if plan}
    if not plans:
        return None
    try:
        return TimingServer(workdir, plans, call_timeout=call_timeout).start()
    except OSError as exc:
        return _Unavailable(plans, f"the grader could not open its timing socket in the work folder: {exc}")
