"""Calls timed by the grader: the wire format both sides speak, and the child's side.

A speed check must not trust any clock in the student's process: the student's code can
patch ``time.perf_counter`` there. So the trusted grader times the calls itself. It
listens on a UNIX stream socket in the work folder (:data:`SOCKET_NAME`). The child sets
a layer up and warms it up, then asks for an input by label. Only then does the grader
draw a fresh random input, note its own clock and send the input; it stops the clock
when the whole output has come back (``grader.timing_server``). The child cannot compute
ahead, because it does not know the input, and nothing it patches changes the grader's
clock.

Wire format: a message is one header frame, optionally followed by one array frame.

* header frame: a 4-byte big-endian length, then a UTF-8 JSON object of at most
  :data:`MAX_HEADER_BYTES`; ``"array": true`` announces an array frame;
* array frame: an 8-byte big-endian length, then one array in ``.npy`` format. Only
  boolean, integer and float dtypes are accepted, never pickled objects, and the
  receiver refuses any array larger than its byte budget before reading its data.

Conversation for one timed call (child -> grader, then grader -> child)::

    {"op": "ready", "case": CASE, "label": LABEL}
                        {"op": "input", "case": CASE, "label": LABEL, "array": true} + input
    {"op": "output", "array": true} + output
    ... more calls ...
    {"op": "done"}

The grader answers a request it will not serve with ``{"op": "refused", "message": ...}``.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import struct
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

SOCKET_NAME = "timing.sock"
MAX_HEADER_BYTES = 64 * 1024
# Room for an .npy header on top of the data itself (numpy caps headers at 10000 bytes).
NPY_HEADER_SLACK = 16 * 1024
# The child's budget for the inputs the grader sends (the grader is trusted; this is
# only a bound on mistakes).
MAX_INPUT_BYTES = 512 * 2**20
# AF_UNIX addresses are limited to 108 bytes; longer paths go through /proc/self/fd.
_MAX_ADDRESS = 100
_CHUNK = 1 << 20
_NUMERIC_KINDS = "biuf"


class TimingError(Exception):
    """The timed-call conversation broke down; the message says how."""


class TimingTimeout(TimingError):
    """The other side did not send a whole message in time."""


class TimingBudgetError(TimingError):
    """A message was larger than the receiver allows."""


# ----- addresses ----------------------------------------------------------------------

@contextlib.contextmanager
def socket_address(directory: str | os.PathLike, name: str = SOCKET_NAME) -> Iterator[str]:
    """An AF_UNIX address for ``directory/name`` that fits the kernel's length limit.

    A long path (a deep temporary folder) is reached through an open descriptor of the
    folder, ``/proc/self/fd/N/name``; the descriptor stays open inside the ``with``.
    """
    path = os.path.join(os.fspath(directory), name)
    if len(os.fsencode(path)) <= _MAX_ADDRESS:
        yield path
        return
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


# ----- frames -------------------------------------------------------------------------

def encode_array(array: np.ndarray) -> bytes:
    """``array`` as ``.npy`` bytes (C order, no pickling); refuses non-numeric dtypes."""
    array = np.asarray(array, order="C")   # (ascontiguousarray would make a 0-d array 1-d)
    if array.dtype.hasobject or array.dtype.kind not in _NUMERIC_KINDS:
        raise TimingError(f"cannot send an array of dtype {array.dtype}: only bool, int and float arrays travel")
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def decode_array(payload: bytes | bytearray, max_bytes: int) -> np.ndarray:
    """The array in ``payload`` (``.npy`` bytes), after checking its header against ``max_bytes``.

    Refuses object and structured dtypes, a header that does not parse, and a data part
    whose length is not exactly shape x itemsize.
    """
    buffer = io.BytesIO(payload)
    try:
        version = np.lib.format.read_magic(buffer)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buffer)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buffer)
        else:
            raise TimingError(f"unsupported .npy version {version}")
    except TimingError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed header is one protocol error
        raise TimingError(f"malformed .npy header: {type(exc).__name__}: {exc}") from None
    if dtype.hasobject or dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
        raise TimingError(f"refused an array of dtype {dtype}: only bool, int and float arrays are accepted")
    count = 1
    for side in shape:
        count *= int(side)
    nbytes = count * dtype.itemsize
    if nbytes > max_bytes:
        raise TimingBudgetError(f"an array of shape {tuple(shape)} and dtype {dtype} ({nbytes} bytes) is larger "
                                f"than the {max_bytes} bytes allowed")
    offset = buffer.tell()
    if len(payload) - offset != nbytes:
        raise TimingError(f"the array's data is {len(payload) - offset} bytes, its header says {nbytes}")
    flat = np.frombuffer(payload, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C").copy()


def _recv_exact(sock: socket.socket, size: int, deadline: float | None) -> bytearray:
    """Exactly ``size`` bytes; ``deadline`` is a ``time.monotonic()`` value or None (wait)."""
    data = bytearray(size)
    view = memoryview(data)
    got = 0
    while got < size:
        if deadline is None:
            sock.settimeout(None)
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimingTimeout("timed out waiting for the rest of a message")
            sock.settimeout(remaining)
        try:
            n = sock.recv_into(view[got:], min(size - got, _CHUNK))
        except socket.timeout:
            raise TimingTimeout("timed out waiting for the rest of a message") from None
        except OSError as exc:
            raise TimingError(f"the connection failed: {exc}") from None
        if n == 0:
            raise TimingError("the other side closed the connection in the middle of the conversation"
                              if got or size else "the other side closed the connection")
        got += n
    return data


def encode_message(header: dict, array: np.ndarray | None = None) -> bytes:
    """The bytes of one message: ``header`` (a JSON object), then ``array`` when given."""
    header = dict(header, array=array is not None)
    body = json.dumps(header).encode("utf-8")
    if len(body) > MAX_HEADER_BYTES:
        raise TimingError(f"a header of {len(body)} bytes is larger than {MAX_HEADER_BYTES}")
    parts = [struct.pack(">I", len(body)), body]
    if array is not None:
        payload = encode_array(array)
        parts += [struct.pack(">Q", len(payload)), payload]
    return b"".join(parts)


def send_bytes(sock: socket.socket, message: bytes, timeout: float | None = None) -> None:
    """Send an encoded message; ``timeout`` in seconds, or None to wait."""
    try:
        sock.settimeout(timeout)
        sock.sendall(message)
    except socket.timeout:
        raise TimingTimeout("timed out sending a message: the other side does not read") from None
    except OSError as exc:
        raise TimingError(f"could not send: {exc}") from None


def send_message(sock: socket.socket, header: dict, array: np.ndarray | None = None,
                 timeout: float | None = None) -> None:
    """Send ``header`` (a JSON object), then ``array`` when given; ``timeout`` in seconds or None."""
    send_bytes(sock, encode_message(header, array), timeout)


def recv_message(sock: socket.socket, *, max_array_bytes: int,
                 deadline: float | None = None) -> tuple[dict, np.ndarray | None]:
    """One message: (header, array or None).

    ``max_array_bytes`` bounds the array's data (0: no array allowed); ``deadline`` (a
    ``time.monotonic()`` value) bounds the whole message, None waits without end.
    """
    (length,) = struct.unpack(">I", _recv_exact(sock, 4, deadline))
    if length > MAX_HEADER_BYTES:
        raise TimingBudgetError(f"a header of {length} bytes is larger than the {MAX_HEADER_BYTES} allowed")
    raw = bytes(_recv_exact(sock, length, deadline))
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise TimingError(f"a header is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(header, dict):
        raise TimingError(f"a header must be a JSON object, got {type(header).__name__}")
    if header.get("array") is not True:
        return header, None
    (size,) = struct.unpack(">Q", _recv_exact(sock, 8, deadline))
    if size > max_array_bytes + NPY_HEADER_SLACK:
        raise TimingBudgetError(f"an array message of {size} bytes is larger than the {max_array_bytes} "
                                f"bytes allowed")
    payload = _recv_exact(sock, size, deadline)
    return header, decode_array(payload, max_array_bytes)


# ----- the child's side ---------------------------------------------------------------

class TimedCalls:
    """The child's end: fetch each timed input from the grader and return the output.

    ``directory`` is the work folder holding the grader's socket; ``case`` names the case
    whose plan the grader serves. Raises :class:`TimingError` when the grader cannot be
    reached or refuses, so the case fails with that reason.
    """

    def __init__(self, directory: str | os.PathLike, case: str, timeout: float = 30.0):
        self.case = case
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            with socket_address(Path(directory)) as address:
                self.sock.connect(address)
        except OSError as exc:
            self.sock.close()
            raise TimingError(f"could not reach the grader's timing socket in {directory}: {exc}") from None

    def call(self, label: str, fn: Callable[[np.ndarray], object]) -> np.ndarray:
        """Ask for input ``label``, return ``fn(input)`` to the grader (which times it) and here."""
        send_message(self.sock, {"op": "ready", "case": self.case, "label": label})
        header, data = recv_message(self.sock, max_array_bytes=MAX_INPUT_BYTES)
        if header.get("op") == "refused":
            raise TimingError(f"the grader refused timed call {label!r}: {header.get('message', '')}")
        if header.get("op") != "input" or data is None:
            raise TimingError(f"expected the input for {label!r}, the grader sent {header.get('op')!r}")
        result = np.asarray(fn(data))
        if result.dtype.kind not in _NUMERIC_KINDS:
            result = result.astype(np.float64)
        send_message(self.sock, {"op": "output"}, result)
        return result

    def close(self) -> None:
        with contextlib.suppress(TimingError, OSError):
            send_message(self.sock, {"op": "done"})
        self.sock.close()

    def __enter__(self) -> "TimedCalls":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
