"""The timed-call channel without a sandbox: wire format, budgets, timeouts, the server's rules.

The child's side (grader.kit.timing.TimedCalls) runs in a thread of this process, or in
a plain subprocess where the peer's pid and CPU time matter.
"""
from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from grader import timing_server
from grader.experiments import Case
from grader.kit import timing
from grader.kit.paths import REPO_ROOT
from grader.timing_server import TimedInput, TimingServer

SHAPE = (1, 4, 6, 5)
BUDGET = 8 * int(np.prod(SHAPE))


def _npy(array, allow_pickle=False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _array_frame(payload: bytes) -> bytes:
    header = json.dumps({"op": "output", "array": True}).encode()
    return struct.pack(">I", len(header)) + header + struct.pack(">Q", len(payload)) + payload


# ----- wire format ----------------------------------------------------------------------

@pytest.mark.parametrize("array", [np.arange(24.0).reshape(2, 3, 4), np.ones((3, 2), np.float32),
                                   np.asfortranarray(np.arange(12).reshape(3, 4)), np.array(2.5),
                                   np.zeros((0, 3)), np.array([True, False])])
def test_arrays_round_trip(array):
    payload = timing.encode_array(array)
    back = timing.decode_array(payload, max_bytes=array.nbytes)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    back[...] = 0   # a private, writable copy


def test_a_message_crosses_a_socket_with_its_array():
    a, b = socket.socketpair()
    with a, b:
        data = np.random.default_rng(0).standard_normal(SHAPE)
        timing.send_message(a, {"op": "input", "label": "x"}, data)
        timing.send_message(a, {"op": "done"})
        header, got = timing.recv_message(b, max_array_bytes=BUDGET, deadline=time.monotonic() + 5)
        assert header == {"op": "input", "label": "x", "array": True}
        np.testing.assert_array_equal(got, data)
        assert timing.recv_message(b, max_array_bytes=0) == ({"op": "done", "array": False}, None)


def test_objects_and_records_are_refused_both_ways():
    with pytest.raises(timing.TimingError, match="only bool, int and float"):
        timing.encode_array(np.array([object()], dtype=object))
    pickled = _npy(np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(timing.TimingError, match="refused an array of dtype object"):
        timing.decode_array(pickled, 10**6)
    records = _npy(np.zeros(3, dtype=[("a", "f8"), ("b", "i4")]))
    with pytest.raises(timing.TimingError, match="refused an array of dtype"):
        timing.decode_array(records, 10**6)


def _npy_header(descr: str, shape: tuple) -> bytes:
    """A version 1.0 .npy header claiming ``descr`` and ``shape``, with no data after it."""
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def test_an_array_over_budget_is_refused_from_its_header():
    big = timing.encode_array(np.zeros(SHAPE))
    with pytest.raises(timing.TimingBudgetError, match="larger than the 100 bytes allowed"):
        timing.decode_array(big, 100)
    # A header that claims 8 PB over a few bytes of data: refused before any allocation.
    lying = _npy_header("<f8", (100_000, 100_000, 100_000)) + b"\0" * 64
    with pytest.raises(timing.TimingBudgetError, match=r"shape \(100000, 100000, 100000\)"):
        timing.decode_array(lying, 10**6)


def test_data_shorter_or_longer_than_the_header_says_is_refused():
    payload = timing.encode_array(np.zeros(SHAPE))
    for bad in (payload[:-8], payload + b"\0" * 8):
        with pytest.raises(timing.TimingError, match="its header says"):
            timing.decode_array(bad, BUDGET)
    with pytest.raises(timing.TimingError, match="malformed|unsupported"):
        timing.decode_array(b"not an npy file at all", BUDGET)


def test_recv_refuses_an_array_message_over_budget_before_reading_it():
    a, b = socket.socketpair()
    with a, b:
        header = json.dumps({"op": "output", "array": True}).encode()
        a.sendall(struct.pack(">I", len(header)) + header + struct.pack(">Q", 2**40))
        with pytest.raises(timing.TimingBudgetError, match="larger than the 480 bytes allowed"):
            timing.recv_message(b, max_array_bytes=480, deadline=time.monotonic() + 5)


@pytest.mark.parametrize("body,match", [
    (b"x" * 10, "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_recv_refuses_bad_headers(body, match):
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack(">I", len(body)) + body)
        with pytest.raises(timing.TimingError, match=match):
            timing.recv_message(b, max_array_bytes=0, deadline=time.monotonic() + 5)


def test_deeply_nested_json_is_a_protocol_error_not_a_recursion_error():
    body = b"[" * 30_000 + b"]" * 30_000
    assert len(body) <= timing.MAX_HEADER_BYTES
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack(">I", len(body)) + body)
        with pytest.raises(timing.TimingError, match="not valid JSON"):
            timing.recv_message(b, max_array_bytes=0, deadline=time.monotonic() + 5)


def test_a_header_larger_than_allowed_is_refused_unread():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack(">I", timing.MAX_HEADER_BYTES + 1))
        with pytest.raises(timing.TimingBudgetError, match="header"):
            timing.recv_message(b, max_array_bytes=0)


def test_a_half_sent_message_times_out():
    a, b = socket.socketpair()
    with a, b:
        header = json.dumps({"op": "output", "array": True}).encode()
        a.sendall(struct.pack(">I", len(header)) + header + struct.pack(">Q", 1000) + b"\x93NUMPY")
        start = time.monotonic()
        with pytest.raises(timing.TimingTimeout):
            timing.recv_message(b, max_array_bytes=2000, deadline=start + 0.3)
        assert time.monotonic() - start < 3


def test_a_closed_connection_is_a_timing_error():
    a, b = socket.socketpair()
    with b:
        a.sendall(struct.pack(">I", 100) + b"{")
        a.close()
        with pytest.raises(timing.TimingError, match="closed the connection"):
            timing.recv_message(b, max_array_bytes=0, deadline=time.monotonic() + 5)


def test_socket_address_fits_the_kernel_limit_for_a_deep_folder(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    with timing.socket_address(deep) as address:
        assert address.startswith("/proc/self/fd/") and len(address) < 100
        server = socket.socket(socket.AF_UNIX)
        server.bind(address)
    assert (deep / timing.SOCKET_NAME).exists()
    server.close()
    with timing.socket_address(tmp_path) as address:
        assert address == str(tmp_path / timing.SOCKET_NAME)


# ----- the server's rules -----------------------------------------------------------------

def _server(workdir, calls=2, timeout=5.0, budget=BUDGET, **kw) -> TimingServer:
    plans = {"case": {"double": TimedInput(SHAPE, calls, budget)}}
    return TimingServer(workdir, plans, call_timeout=timeout, require_descendant=False, **kw).start()


def _in_thread(fn):
    errors = []

    def run():
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_the_server_times_each_call_on_a_fresh_input(tmp_path):
    server = _server(tmp_path)
    outputs = []

    def child():
        with timing.TimedCalls(tmp_path, "case") as calls:
            for _ in range(2):
                outputs.append(calls.call("double", lambda x: (time.sleep(0.05), 2 * x)[1]))
    thread, errors = _in_thread(child)
    thread.join(10)
    runs = server.stop()
    assert not errors, errors
    run = runs["case"]
    assert run.errors == [] and len(run.calls) == 2
    first, second = run.of("double")
    for call, sent_back in zip((first, second), outputs):
        assert call.input.shape == SHAPE and call.output.dtype == np.float64
        np.testing.assert_array_equal(call.output, 2 * call.input)
        np.testing.assert_array_equal(sent_back, call.output)
        assert call.wall_seconds >= 0.05
    assert not np.array_equal(first.input, second.input)
    assert not (tmp_path / timing.SOCKET_NAME).exists()


@pytest.mark.parametrize("label,calls,match", [("other", 1, "no timed call 'other' is planned"),
                                                ("double", 2, "more than the 1 planned")])
def test_the_server_refuses_unplanned_calls(tmp_path, label, calls, match):
    server = _server(tmp_path, calls=1)
    refused = []

    def child():
        with timing.TimedCalls(tmp_path, "case") as timed:
            try:
                for _ in range(calls):
                    timed.call(label, lambda x: x)
            except timing.TimingError as exc:
                refused.append(str(exc))
    thread, errors = _in_thread(child)
    thread.join(10)
    runs = server.stop()
    assert not errors and refused and match in refused[0], refused
    assert any(match in e for e in runs["case"].errors + server.problems)


def test_an_output_over_budget_is_refused_and_recorded(tmp_path):
    server = _server(tmp_path, budget=64)

    def child():
        with timing.TimedCalls(tmp_path, "case") as calls:
            calls.call("double", lambda x: np.zeros((1000, 1000)))
    thread, _ = _in_thread(child)
    thread.join(10)
    run = server.stop()["case"]
    assert run.calls == [] and any("larger than the 64 bytes allowed" in e for e in run.errors), run.errors


def test_a_call_that_never_answers_times_out_and_the_server_stops_promptly(tmp_path):
    server = _server(tmp_path, timeout=0.3)
    released = threading.Event()

    def child():
        with timing.TimedCalls(tmp_path, "case") as calls:
            calls.call("double", lambda x: released.wait(5) and x)
    thread, _ = _in_thread(child)
    time.sleep(1.0)
    start = time.monotonic()
    run = server.stop()["case"]
    released.set()
    thread.join(10)
    assert time.monotonic() - start < 3
    assert run.calls == [] and any("timed out" in e for e in run.errors), run.errors


def test_a_child_that_never_connects_is_reported(tmp_path):
    run = _server(tmp_path).stop()["case"]
    assert run.calls == [] and run.errors == ["the submission's process never asked the grader for a timed call"]


def test_a_socket_that_cannot_be_made_is_reported_per_case(tmp_path):
    case = Case("speed", "speed_test", "fast", "label",
                {"timed_calls": {"x": {"shape": [2], "calls": 1, "max_output_bytes": 16}}})
    plain = Case("plain", "conv_raw", "fast", "label", {})
    assert timing_server.start_for_cases(tmp_path, [plain], call_timeout=1) is None
    stand_in = timing_server.start_for_cases(tmp_path / "missing", [case, plain], call_timeout=1)
    runs = stand_in.stop()
    assert list(runs) == ["speed"] and "could not open its timing socket" in runs["speed"].errors[0]


def test_the_child_says_when_the_grader_is_not_there(tmp_path):
    with pytest.raises(timing.TimingError, match="could not reach the grader's timing socket"):
        timing.TimedCalls(tmp_path, "case")


# ----- the peer process: ancestry and CPU time --------------------------------------------

def test_descendants_are_recognised():
    me = os.getpid()
    assert timing_server.is_descendant(me, me)
    assert not timing_server.is_descendant(os.getppid(), me)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert timing_server.is_descendant(child.pid, me)
        assert timing_server.cpu_seconds(child.pid, timing_server._start_time(child.pid)) is not None
        assert timing_server.cpu_seconds(child.pid, -1) is None   # another process behind a reused pid
    finally:
        child.kill()
        child.wait()


CHILD = """
import sys, time
from grader.kit import timing
with timing.TimedCalls(sys.argv[1], "case") as calls:
    calls.call("sleep", lambda x: (time.sleep(0.6), x)[1])
    def spin(x):
        end = time.process_time() + 0.4   # CPU seconds, whatever else the machine runs
        while time.process_time() < end:
            pass
        return x
    calls.call("spin", spin)
"""


def test_a_real_child_process_is_timed_with_its_cpu_time(tmp_path):
    plans = {"case": {"sleep": TimedInput(SHAPE, 1, BUDGET), "spin": TimedInput(SHAPE, 1, BUDGET)}}
    server = TimingServer(tmp_path, plans, call_timeout=10).start()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    run = server.stop()["case"]
    assert proc.returncode == 0, proc.stderr
    assert run.errors == [], run.errors
    (sleep,), (spin,) = run.of("sleep"), run.of("spin")
    # Sleeping costs wall time but no CPU time; spinning costs both.
    assert sleep.wall_seconds >= 0.6 and sleep.cpu_seconds is not None and sleep.cpu_seconds < 0.3
    assert spin.wall_seconds >= 0.4 and spin.cpu_seconds is not None and spin.cpu_seconds >= 0.3


def test_a_connection_from_a_process_the_grader_did_not_start_is_refused(tmp_path, monkeypatch):
    plans = {"case": {"x": TimedInput(SHAPE, 1, BUDGET)}}
    server = TimingServer(tmp_path, plans, call_timeout=5).start()
    monkeypatch.setattr(timing_server, "is_descendant", lambda pid, ancestor: False)

    def child():
        with timing.TimedCalls(tmp_path, "case") as calls:
            calls.call("x", lambda x: x)
    thread, errors = _in_thread(child)
    thread.join(10)
    run = server.stop()["case"]
    assert errors and isinstance(errors[0], timing.TimingError)
    assert run.calls == [] and any("which the grader did not start" in e for e in run.errors), run.errors


# Kept for the parent-side check tests: the socket path is under the work folder by name.
def test_socket_name_is_in_the_work_folder(tmp_path):
    server = _server(tmp_path)
    assert (Path(tmp_path) / timing.SOCKET_NAME).is_socket()
    assert oct((Path(tmp_path) / timing.SOCKET_NAME).stat().st_mode & 0o777) == oct(0o777)
    server.stop()
