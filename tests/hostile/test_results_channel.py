"""A hostile results channel: what the child leaves in ``out/`` cannot hang, flood or fool the parent.

The unit tests plant files in a temporary ``out/`` and call the parent's reader
(``grader.results`` through ``grader.groups._collect``): each attack must come back as a
refused outcome for its own case, with a clear one-line reason, in well under 5 s. One
end-to-end run grades a 3.1 submission that plants a FIFO in its own ``out/`` folder.
Also here: a group's run is cached even when the parent fails, and the work root is a
fresh private folder of this process.
"""
from __future__ import annotations

import io
import json
import os
import stat
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from grader import groups, results, sandbox
from grader.experiments import Case
from grader.kit.paths import REPO_ROOT
from hostile import EXP, Hostile

CASE = "c"
FAST = 5.0   # seconds any refusal may take


# ----- helpers ------------------------------------------------------------------------------

def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _zip(members, *, count: int | None = None) -> bytes:
    """A zip archive built by hand, so that sizes and counts can lie.

    ``members``: ``(name, method, payload, crc, declared_size)`` each, the payload already
    compressed for method 8. ``count`` overrides the member count in the end record.
    """
    body, directory = bytearray(), bytearray()
    for name, method, payload, crc, size in members:
        raw = name.encode()
        offset = len(body)
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(payload), size, len(raw), 0)
        body += raw + payload
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(payload), size,
                                 len(raw), 0, 0, 0, 0, 0, offset) + raw
    total = min(len(members) if count is None else count, 0xFFFF)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, total, total, len(directory), len(body), 0)
    return bytes(body + directory + end)


def _stored(name: str, data: bytes, size: int | None = None):
    return (name, zipfile.ZIP_STORED, data, zlib.crc32(data), len(data) if size is None else size)


@pytest.fixture
def out(tmp_path) -> Path:
    folder = tmp_path / "work" / "out"
    folder.mkdir(parents=True)
    (folder / "_done").write_text("")
    return folder


def _ok_record(out: Path, **fields) -> None:
    record = {"name": CASE, "status": "ok", "seconds": 0.5, **fields}
    (out / f"{CASE}.json").write_text(json.dumps(record))


def collect(out: Path, *names: str) -> dict:
    """Outcomes of cases ``names`` (default: the one case) as the parent collects them, timed."""
    cases = [Case(n, "k", "g", f"case {n}") for n in (names or (CASE,))]
    result = sandbox.RunResult("ok", 0, None, 1.0, "", "", False, "exited with code 0", {})
    start = time.monotonic()
    outcomes = groups._collect(out, cases, result)
    assert time.monotonic() - start < FAST, "the parent took too long over a hostile results file"
    return outcomes


def refused(out: Path, pattern: str):
    outcome = collect(out)[CASE]
    assert outcome.status == "error", outcome
    assert outcome.outputs == {}
    assert "\n" not in outcome.error
    assert pattern in outcome.error, outcome.error
    assert "the grader refused this check's results" in outcome.error
    return outcome


# ----- what a well-behaved probe writes still comes through ---------------------------------

def test_probe_results_are_read_unchanged(out):
    arrays = {"output": np.arange(12.0).reshape(3, 4), "sample/conv1_1": np.linspace(0, 1, 7),
              "shape/conv1_1": np.array([1.0, 64, 224, 224])}
    np.savez(out / f"{CASE}.npz", **arrays)
    _ok_record(out, extra={"layers": ["conv1_1", "relu1_1"], "timings": [0.1, 0.2]})
    outcome = collect(out)[CASE]
    assert outcome.status == "ok" and outcome.seconds == 0.5
    assert outcome.extra == {"layers": ["conv1_1", "relu1_1"], "timings": [0.1, 0.2]}
    assert set(outcome.outputs) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(outcome.outputs[key], value)
        assert outcome.outputs[key].dtype == np.float64


def test_fortran_order_bool_and_int_arrays_become_float64(out):
    np.savez(out / f"{CASE}.npz", f=np.asfortranarray(np.arange(6).reshape(2, 3)), b=np.array([True, False]))
    _ok_record(out)
    outputs = collect(out)[CASE].outputs
    np.testing.assert_array_equal(outputs["f"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(outputs["b"], [1.0, 0.0])


# ----- files that are not what they claim ---------------------------------------------------

def test_fifo_as_record_is_refused_without_blocking(out):
    os.mkfifo(out / f"{CASE}.json")
    refused(out, f"the results file out/{CASE}.json is not a regular file (FIFO)")


def test_fifo_as_arrays_is_refused_without_blocking(out):
    _ok_record(out)
    os.mkfifo(out / f"{CASE}.npz")
    refused(out, f"the results file out/{CASE}.npz is not a regular file (FIFO)")


def test_symlink_to_dev_zero_is_not_followed(out):
    _ok_record(out)
    (out / f"{CASE}.npz").symlink_to("/dev/zero")
    refused(out, f"the results file out/{CASE}.npz is not a regular file (symlink)")


def test_symlink_to_a_root_only_file_is_not_followed(out, tmp_path):
    secret = tmp_path / "secret.npz"
    np.savez(secret, output=np.array([4242.0]))
    os.chmod(secret, 0o600)
    _ok_record(out)
    (out / f"{CASE}.npz").symlink_to(secret)
    outcome = refused(out, "is not a regular file (symlink)")
    assert "4242" not in outcome.error


def test_hard_link_to_a_file_elsewhere_is_refused(out, tmp_path):
    secret = tmp_path / "secret.npz"
    np.savez(secret, output=np.array([4242.0]))
    _ok_record(out)
    os.link(secret, out / f"{CASE}.npz")
    refused(out, "is a hard link")


def test_results_folder_that_is_a_symlink_is_refused_for_every_case(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    np.savez(elsewhere / f"{CASE}.npz", output=np.array([1.0]))
    _ok_record(elsewhere)
    (elsewhere / "_done").write_text("")
    link = tmp_path / "out"
    link.symlink_to(elsewhere)
    outcome = collect(link)[CASE]
    assert outcome.status == "error" and "the results folder out/ is not a real folder (symlink)" in outcome.error


def test_socket_and_folder_are_refused(out, monkeypatch):
    import socket
    _ok_record(out)
    monkeypatch.chdir(out)   # a relative name: socket paths are limited to 108 bytes
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(f"{CASE}.npz")
        refused(out, "is not a regular file (socket)")
    finally:
        server.close()
    os.unlink(out / f"{CASE}.npz")
    (out / f"{CASE}.npz").mkdir()
    refused(out, "is not a regular file (folder)")


def test_oversized_file_is_refused_from_its_size(out):
    _ok_record(out)
    with open(out / f"{CASE}.npz", "wb") as f:
        f.truncate(results.MAX_FILE_BYTES + 1)   # sparse: costs no disk
    refused(out, f"is {results.MAX_FILE_BYTES + 1} bytes, more than the grader's 64 MiB limit")


# ----- zip bombs and floods ---------------------------------------------------------------------

BOOLS = 400_000_000     # 400 MB of bools in the archive, 3.2 GB as float64 in the parent


@pytest.fixture(scope="module")
def bomb_stream() -> tuple[bytes, int, int]:
    """A deflated ``.npy`` of 400 million False values: (compressed bytes, crc, size)."""
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "|b1", "fortran_order": False, "shape": (BOOLS,)})
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts, crc = [packer.compress(header.getvalue())], zlib.crc32(header.getvalue())
    zeros = bytes(16 * 2**20)
    left = BOOLS
    while left:
        chunk = zeros[:min(left, len(zeros))]
        parts.append(packer.compress(chunk))
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
    parts.append(packer.flush())
    return b"".join(parts), crc, len(header.getvalue()) + BOOLS


def test_zip_bomb_is_refused_from_its_declared_size(out, bomb_stream):
    data, crc, size = bomb_stream
    archive = _zip([("output.npy", zipfile.ZIP_DEFLATED, data, crc, size)])
    assert len(archive) < 400_000, "the bomb should be the issue's 389 KB"
    (out / f"{CASE}.npz").write_bytes(archive)
    _ok_record(out)
    refused(out, f"declares {size} bytes for 'output'")


def test_zip_bomb_with_a_lying_directory_is_refused_from_its_npy_header(out, bomb_stream):
    data, _, _ = bomb_stream
    # The directory claims 1000 bytes, with a matching CRC: zipfile hands out just those.
    first = zlib.decompressobj(-15).decompress(data, 1000)
    (out / f"{CASE}.npz").write_bytes(_zip([("output.npy", zipfile.ZIP_DEFLATED, data, zlib.crc32(first), 1000)]))
    _ok_record(out)
    refused(out, f"announces array 'output' of shape ({BOOLS},) and dtype bool ({8 * BOOLS} bytes as float64)")


def test_npy_header_claiming_gigabytes_is_refused_before_reading_data(out):
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**31,)})
    (out / f"{CASE}.npz").write_bytes(_zip([_stored("output.npy", header.getvalue() + bytes(64))]))
    _ok_record(out)
    refused(out, "announces array 'output' of shape (2147483648,)")


def test_group_budget_covers_all_cases(out):
    # Each case is within the per-file limit; together they are not. A file counts twice:
    # its bytes as read (24 MiB), and its arrays as held (24 MiB of float64).
    names = [f"case{i}" for i in range(3)]
    for name in names:
        np.savez(out / f"{name}.npz", output=np.zeros(3 * 2**20))
        (out / f"{name}.json").write_text(json.dumps({"status": "ok", "seconds": 1.0}))
    outcomes = collect(out, *names)
    assert outcomes["case0"].status == "ok" and outcomes["case1"].status == "ok"
    assert outcomes["case2"].status == "error"
    assert "past the grader's 128 MiB limit" in outcomes["case2"].error


def _npy_member(i: int) -> tuple:
    return _stored(f"k{i}.npy", ONE_NPY)


ONE_NPY = _npy(np.zeros(1))


def test_100k_members_are_refused_from_the_end_record(out):
    members = [_npy_member(i) for i in range(100_000)]
    (out / f"{CASE}.npz").write_bytes(_zip(members))
    _ok_record(out)
    refused(out, f"has 65535 arrays; the grader reads at most {results.MAX_MEMBERS}")


def test_100k_members_behind_an_end_record_claiming_one_are_refused(out):
    members = [_npy_member(i) for i in range(100_000)]
    (out / f"{CASE}.npz").write_bytes(_zip(members, count=1))
    _ok_record(out)
    refused(out, "-byte zip directory; the grader reads at most")


def test_more_members_than_allowed_are_refused(out):
    np.savez(out / f"{CASE}.npz", **{f"k{i}": np.zeros(1) for i in range(results.MAX_MEMBERS + 1)})
    _ok_record(out)
    refused(out, f"has {results.MAX_MEMBERS + 1} arrays")


def test_duplicate_member_names_are_refused(out):
    (out / f"{CASE}.npz").write_bytes(_zip([_stored("output.npy", ONE_NPY), _stored("output.npy", _npy(np.ones(1)))]))
    _ok_record(out)
    refused(out, "holds 'output.npy' more than once")


def test_unexpected_keys_are_never_read(out):
    (out / f"{CASE}.npz").write_bytes(_zip([_stored("output.npy", ONE_NPY),
                                            _stored("junk.npy", b"not an npy at all")]))
    with results.ResultsFolder(out) as folder:
        assert set(folder.read_arrays(f"{CASE}.npz", expected={"output"})) == {"output"}
        with pytest.raises(results.Refused, match="unreadable array 'junk'"):
            folder.read_arrays(f"{CASE}.npz")


# ----- arrays the parent must not load -------------------------------------------------------

def test_object_dtype_is_refused_and_never_unpickled(out, tmp_path):
    marker = tmp_path / "unpickled"
    np.savez(out / f"{CASE}.npz", output=np.array([{"a": 1}, None], dtype=object))
    _ok_record(out)
    refused(out, "holds array 'output' of dtype object; the grader reads numeric and bool arrays only")
    assert not marker.exists()


@pytest.mark.parametrize("array, shown", [
    (np.zeros(2, dtype=[("a", "<f8"), ("b", "<i4")]), "dtype [('a', '<f8'), ('b', '<i4')]"),
    (np.array(["text"]), "dtype <U4"),
    (np.zeros(2, dtype="V8"), "dtype |V8"),
    (np.array([1 + 2j]), "dtype complex128"),
    (np.array(["2024-01-01"], dtype="datetime64[D]"), "dtype datetime64[D]"),
])
def test_non_numeric_dtypes_are_refused(out, array, shown):
    np.savez(out / f"{CASE}.npz", output=array)
    _ok_record(out)
    refused(out, shown)


def test_truncated_zip_is_refused(out):
    np.savez(out / f"{CASE}.npz", output=np.arange(1000.0))
    data = (out / f"{CASE}.npz").read_bytes()
    (out / f"{CASE}.npz").write_bytes(data[:len(data) // 2])
    _ok_record(out)
    refused(out, "is not a valid .npz archive (no zip directory: truncated?)")


def test_truncated_member_is_refused(out):
    payload = _npy(np.arange(100.0))
    (out / f"{CASE}.npz").write_bytes(_zip([_stored("output.npy", payload[:200], size=len(payload))]))
    _ok_record(out)
    refused(out, "unreadable array 'output'")


def test_corrupt_member_crc_is_refused(out):
    payload = _npy(np.arange(100.0))
    name, method, data, crc, size = _stored("output.npy", payload)
    (out / f"{CASE}.npz").write_bytes(_zip([(name, method, data, crc ^ 1, size)]))
    _ok_record(out)
    refused(out, "unreadable array 'output' (BadZipFile")


def test_garbage_npy_header_is_refused(out):
    header = b"\x93NUMPY\x01\x00" + struct.pack("<H", 16) + b"{'descr': (((((("
    (out / f"{CASE}.npz").write_bytes(_zip([_stored("output.npy", header)]))
    _ok_record(out)
    refused(out, "unreadable array 'output'")


def test_huge_npy_header_is_refused_before_it_is_read(out):
    header = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + b" " * 100
    (out / f"{CASE}.npz").write_bytes(_zip([_stored("output.npy", header)]))
    _ok_record(out)
    refused(out, f"has a {2**31}-byte header for 'output'")


# ----- records -----------------------------------------------------------------------------

def test_deeply_nested_json_is_refused_without_recursion(out):
    depth = 200_000
    (out / f"{CASE}.json").write_text('{"status": "ok", "extra": ' + "[" * depth + "]" * depth + "}")
    refused(out, f"is nested {depth + 1} levels deep; the grader reads at most {results.MAX_JSON_DEPTH}")


def test_brackets_inside_strings_do_not_count_as_nesting(out):
    np.savez(out / f"{CASE}.npz", output=np.zeros(1))
    _ok_record(out, error="[" * 10_000, extra={"note": "{" * 10_000})
    outcome = collect(out)[CASE]
    assert outcome.status == "ok" and outcome.extra == {"note": "{" * results.MAX_EXTRA_TEXT}


def test_unterminated_strings_and_escapes_are_scanned_in_linear_time():
    start = time.monotonic()
    assert results.json_depth('"' + '\\"' * 500_000) == 0
    assert results.json_depth('"a' * 500_000) == 0
    assert time.monotonic() - start < FAST


def test_record_larger_than_its_limit_is_refused(out):
    (out / f"{CASE}.json").write_text(json.dumps({"status": "ok", "error": "x" * results.MAX_JSON_BYTES}))
    refused(out, f"is {(out / f'{CASE}.json').stat().st_size} bytes, more than the grader's 1 MiB limit")


@pytest.mark.parametrize("text", ["[1, 2]", '"ok"', "{not json", "\xff\xfe"])
def test_records_that_are_not_json_objects_are_refused(out, text):
    (out / f"{CASE}.json").write_text(text, encoding="latin-1")
    outcome = collect(out)[CASE]
    assert outcome.status == "error" and "the results file out/c.json is not" in outcome.error


@pytest.mark.parametrize("seconds", ["NaN", "Infinity", "-Infinity", "-1", "1e400", "true", '"3"', "null"])
def test_non_finite_or_negative_seconds_are_refused(out, seconds):
    np.savez(out / f"{CASE}.npz", output=np.zeros(1))
    (out / f"{CASE}.json").write_text('{"status": "ok", "seconds": %s}' % seconds)
    outcome = collect(out)[CASE]
    assert outcome.status == "ok" and outcome.seconds is None


def test_record_fields_keep_their_types_and_lengths(out):
    (out / f"{CASE}.json").write_text(json.dumps({
        "status": "error", "seconds": 2, "error": "E" * 5000, "traceback": ["not", "text"],
        "extra": {"t": [1.0, float("nan")], "x": float("inf"), "deep": [[[[[[1]]]]]], "big": 10**30}}))
    outcome = collect(out)[CASE]
    assert outcome.status == "error" and outcome.seconds == 2.0
    assert outcome.error == "E" * results.MAX_ERROR_CHARS and outcome.traceback == ""
    assert outcome.extra == {"t": [1.0, None], "deep": [[[None]]], "big": None}


def test_status_other_than_ok_is_an_error(out):
    np.savez(out / f"{CASE}.npz", output=np.zeros(1))
    (out / f"{CASE}.json").write_text(json.dumps({"status": "OK!", "error": "nope"}))
    outcome = collect(out)[CASE]
    assert outcome.status == "error" and outcome.error == "nope" and outcome.outputs == {}


# ----- a fault of the parent itself ------------------------------------------------------------

def test_unexpected_reader_fault_fails_only_its_case(out, monkeypatch):
    for name in ("a", "b"):
        np.savez(out / f"{name}.npz", output=np.zeros(1))
        (out / f"{name}.json").write_text(json.dumps({"status": "ok", "seconds": 1.0}))
    real = results.ResultsFolder.read_arrays

    def flaky(self, name, expected=None):
        if name == "a.npz":
            raise ValueError("the reader broke")
        return real(self, name, expected)

    monkeypatch.setattr(results.ResultsFolder, "read_arrays", flaky)
    outcomes = collect(out, "a", "b")
    assert outcomes["a"].status == "error"
    assert "the grader could not read this check's results (ValueError: the reader broke)" in outcomes["a"].error
    assert outcomes["b"].status == "ok"


def test_group_run_is_cached_when_the_parent_fails(tmp_path, monkeypatch):
    """One process start per group even when collecting raises: never 13 restarts."""
    from grader import session as session_module
    from grader.kit.weights import resolve_weights

    folder = tmp_path / "sub" / EXP
    folder.mkdir(parents=True)
    (folder / "layers_1.py").write_text("raise RuntimeError('a submission that fails fast')\n")
    starts = []
    real_sandboxed, real_run_group = sandbox.run_sandboxed, session_module.run_group

    def counting(*args, **kwargs):
        starts.append(args[0])
        return real_sandboxed(*args, **kwargs)

    def run_then_fail(*args, **kwargs):
        real_run_group(*args, **kwargs)
        raise RuntimeError("collecting exploded")

    monkeypatch.setattr(sandbox, "run_sandboxed", counting)
    monkeypatch.setattr(session_module, "run_group", run_then_fail)
    session = session_module.GradingSession(tmp_path / "sub", resolve_weights(generate=False), visible_only=True)
    session.progress = io.StringIO()
    layer_cases = [c for c in session.cases(EXP) if c.group == "layers"]
    assert len(layer_cases) == 13
    for _ in range(2):
        for case in layer_cases:
            outcome = session.outcome(EXP, case.name)
            assert outcome.status == "error"
            assert "the grader failed while running or collecting this group (RuntimeError: collecting " \
                   "exploded)" in outcome.error
    assert len(starts) == 1 and "grader.probe" in starts[0]
    assert session.progress.getvalue().count("running the 'layers' checks") == 1
    assert any("collecting exploded" in note for note in session.notes[EXP])


# ----- the work root --------------------------------------------------------------------------

def test_work_root_is_fresh_private_and_never_adopted(tmp_path, monkeypatch):
    parent = tmp_path / "tmp"
    parent.mkdir()
    squatted = parent / "aics-grader"          # what an earlier grader, or another user, left
    squatted.mkdir(mode=0o777)
    os.chown(squatted, 65534, 65534) if os.geteuid() == 0 else None
    monkeypatch.setenv("AICS_GRADER_TMP", str(parent))
    root = groups.work_root()
    assert root.parent == parent.resolve() and root.name.startswith("aics-grader-") and root != squatted
    info = root.lstat()
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
    assert stat.S_IMODE(info.st_mode) == 0o711
    assert groups.work_root() == root           # once per process
    child = os.fork()
    if child == 0:                              # a forked child uses it but never removes it
        code = 0 if groups.work_root() == root else 3
        groups._remove_work_roots()
        os._exit(code)
    assert os.waitpid(child, 0)[1] == 0 and root.is_dir()
    other = tmp_path / "other"
    monkeypatch.setenv("AICS_GRADER_TMP", str(other))
    assert groups.work_root().parent == other.resolve()   # made if missing


def test_work_root_in_a_shared_folder_without_sticky_bit_is_refused(tmp_path, monkeypatch):
    parent = tmp_path / "open"
    parent.mkdir()
    os.chmod(parent, 0o777)
    monkeypatch.setenv("AICS_GRADER_TMP", str(parent))
    with pytest.raises(RuntimeError, match="writable by other users without the sticky bit"):
        groups.work_root()


def test_work_root_is_removed_when_the_grader_exits(tmp_path):
    code = "from grader.groups import work_root; r = work_root(); (r / 'x').mkdir(); print(r)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, AICS_GRADER_TMP=str(tmp_path), PYTHONPATH=str(REPO_ROOT)))
    assert proc.returncode == 0, proc.stderr
    root = Path(proc.stdout.strip())
    assert root.parent == tmp_path.resolve() and not root.exists()


# ----- end to end ---------------------------------------------------------------------------------

FIFO_IN_OUT = Hostile("fifo_results", 0, append={"layers_1.py": """

import os as _os

_original_relu_forward = ReLULayer.forward


def _hostile_relu_forward(self, input):
    # fc_forward ran just before this case: swap its record for a FIFO the parent would block on.
    record = _os.path.join(_os.getcwd(), "out", "fc_forward.json")
    if _os.path.isfile(record) and not _os.path.islink(record):
        _os.unlink(record)
        _os.mkfifo(record)
    return _original_relu_forward(self, input)


ReLULayer.forward = _hostile_relu_forward
"""})


@pytest.mark.slow
def test_fifo_planted_by_the_submission_fails_only_its_check(tmp_path):
    from gradeutil import checks, grade

    submission = FIFO_IN_OUT.build(tmp_path)
    start = time.monotonic()
    doc = grade(submission, tmp_path, EXP, "--visible-only", timeout=900)
    assert time.monotonic() - start < 900
    rows = checks(doc)
    failing = {name for name, row in rows.items() if not row["passed"]}
    # The whole network is not run once a tier-60 check failed; everything else ran and passed.
    skipped = {name for name in failing if rows[name]["message"].startswith("skipped: tier 60 failed")}
    assert failing - skipped == {"fc_forward"}, {n: rows[n]["message"][:200] for n in failing}
    assert skipped and all(name.startswith("vgg19_") for name in skipped), sorted(skipped)
    assert "the results file out/fc_forward.json is not a regular file (FIFO)" in rows["fc_forward"]["message"]
    assert len(rows) == 18
