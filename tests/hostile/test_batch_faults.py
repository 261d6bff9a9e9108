"""Batch faults that must not lose an instructor's night, and reports that must stay strict.

* Broken zips (encrypted, corrupt deflate data, an unsupported compression method,
  truncated, a bad CRC, not a zip at all) are ``bad-submission`` rows with their reason;
  the batch grades the others and leaves no extraction folder behind.
* A second batch on the same CSV is refused (exit 2) and leaves the CSV alone.
* A failed write (ENOSPC, injected in-process or real on a tiny tmpfs) stops the batch
  with the CSV whole, no temporary file, and a message saying how to resume (exit 3).
* SIGTERM and SIGHUP stop a batch like Ctrl-C: graders killed, CSV whole, one message,
  exit 128 + signal, no traceback.
* ``--json``, Gradescope's results.json and JUnit XML stay strict with NaN/inf times.

The unit tests drive ``grader.batch.main`` in this process with a stand-in for the
grading subprocess, so they take a second; the end-to-end runs are marked slow.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

import grader.batch
from grader import report
from grader.batch import scheduler
from grader.batch.gradebook import BAD_SUBMISSION, GRADED, INTERRUPTED, Outcome, columns, read_csv, write_csv
from grader.batch.intake import Entry, UnsafeArchive, prepare_one, safe_extract
from grader.batch.lock import GradebookLock, LockHeld, lock_path
from grader.batch.stopping import WriteFailed
from grader.gradescope import to_gradescope
from grader.kit.paths import REPO_ROOT, STU_UPLOAD_DIR

EXP = "exp_3_1_vgg"
MEMBER = f"{EXP}/layers_1.py"
IS_ROOT = os.geteuid() == 0


# --------------------------------------------------------------------------- broken zips


def _zip_bytes(method: int = zipfile.ZIP_DEFLATED) -> bytearray:
    """A one-entry zip of ``MEMBER`` (1.2 kB of Python) compressed with ``method``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo(MEMBER)
        info.compress_type = method
        zf.writestr(info, b"x = 1\n" * 200)
    return bytearray(buffer.getvalue())


def _headers(raw: bytearray) -> tuple[int, int]:
    """Offsets of the local file header and of the central directory header of the one entry."""
    return raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")


def _data_offset(raw: bytearray) -> int:
    local, _ = _headers(raw)
    name_len, extra_len = struct.unpack_from("<HH", raw, local + 26)
    return local + 30 + name_len + extra_len


def encrypted() -> bytes:
    # zipfile cannot encrypt and clears flag_bits on write: set bit 0 (encrypted) in both headers.
    raw = _zip_bytes()
    local, central = _headers(raw)
    for offset in (local + 6, central + 8):
        struct.pack_into("<H", raw, offset, struct.unpack_from("<H", raw, offset)[0] | 0x1)
    return bytes(raw)


def corrupt_deflate() -> bytes:
    raw = _zip_bytes()
    start = _data_offset(raw)
    for i in range(start, start + 4):
        raw[i] ^= 0xFF
    return bytes(raw)


def unsupported_method() -> bytes:
    # Method 99 (WinZip AES) in both headers of a stored entry.
    raw = _zip_bytes(zipfile.ZIP_STORED)
    local, central = _headers(raw)
    struct.pack_into("<H", raw, local + 8, 99)
    struct.pack_into("<H", raw, central + 10, 99)
    return bytes(raw)


def truncated() -> bytes:
    raw = _zip_bytes()
    return bytes(raw[:len(raw) // 2])


def bad_crc() -> bytes:
    raw = _zip_bytes(zipfile.ZIP_STORED)
    raw[_data_offset(raw) + 3] ^= 0x01
    return bytes(raw)


def not_a_zip() -> bytes:
    return b"%PDF-1.4 my homework, exported as a PDF and renamed\n"


# id -> (bytes, text the reason in the row must contain)
BROKEN = {
    "encrypted": (encrypted, "password-protected"),
    "corrupt_deflate": (corrupt_deflate, "is corrupt (Error -3 while decompressing"),
    "unsupported_method": (unsupported_method, "compression method 99"),
    "truncated": (truncated, "truncated"),
    "bad_crc": (bad_crc, "Bad CRC-32"),
    "not_a_zip": (not_a_zip, "not a readable zip file"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_zip_is_refused_with_its_reason_and_leaves_nothing(tmp_path, kind):
    build, reason = BROKEN[kind]
    archive = tmp_path / f"{kind}.zip"
    archive.write_bytes(build())
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchive) as info:
        safe_extract(archive, dest)
    assert reason in str(info.value)
    entry = Entry(kind, archive)
    prepare_one(entry, tmp_path / "scratch")
    assert entry.problem.startswith("zip refused: ") and reason in entry.problem and entry.root is None
    assert list((tmp_path / "scratch").iterdir()) == []    # nothing half-extracted is left


def test_extraction_on_a_full_disk_raises_instead_of_blaming_the_student(tmp_path, monkeypatch):
    archive = tmp_path / "good.zip"
    archive.write_bytes(bytes(_zip_bytes()))
    real_open = open

    def full_disk_open(path, mode="r", *a, **k):
        if "w" in mode and Path(path).is_relative_to(tmp_path / "scratch"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr("builtins.open", full_disk_open)
    entry = Entry("good", archive)
    with pytest.raises(OSError) as info:
        prepare_one(entry, tmp_path / "scratch")
    assert info.value.errno == errno.ENOSPC and entry.problem == ""
    assert list((tmp_path / "scratch").iterdir()) == []


# --------------------------------------------------------------------------- atomic gradebook


HEADER = columns([EXP])
OLD_ROWS = {"alice": Outcome("alice", GRADED, 3.0, {EXP: 60}, 60, 100).row(5)}


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_csv_rewrite_under_injected_enospc_keeps_the_old_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "grades.csv"
    write_csv(path, HEADER, OLD_ROWS)
    before = path.read_bytes()
    real = getattr(os, failing)

    def full_disk(*args, **kwargs):
        if failing == "write":
            real(args[0], bytes(args[1])[:10])   # part of the data made it before the disk filled
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, failing, full_disk)
    rows = dict(OLD_ROWS, bob=Outcome("bob", GRADED, 1.0, {EXP: 0}, 0, 100).row(5))
    with pytest.raises(OSError) as info:
        write_csv(path, HEADER, rows)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and _no_temp_files(tmp_path)
    assert set(read_csv(path)[1]) == {"alice"}


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs mounted for the test (root only); unmounted afterwards."""
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(folder: Path) -> None:
    """Write into ``folder`` until its file system is full."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_csv_rewrite_on_a_full_tmpfs_keeps_the_old_file(tiny_tmpfs):
    path = tiny_tmpfs / "grades.csv"
    write_csv(path, HEADER, OLD_ROWS)
    before = path.read_bytes()
    _fill(tiny_tmpfs)
    rows = dict(OLD_ROWS, **{f"s{i}": Outcome(f"s{i}", GRADED, 1.0, {EXP: 0}, 0, 100, message="m" * 400).row(5)
                             for i in range(20)})
    with pytest.raises(OSError) as info:
        write_csv(path, HEADER, rows)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and _no_temp_files(tiny_tmpfs)


# --------------------------------------------------------------------------- the lock


def test_the_lock_is_exclusive_names_its_holder_and_goes_away(tmp_path):
    csv_path = tmp_path / "grades.csv"
    with GradebookLock(csv_path):
        assert lock_path(csv_path).read_text().strip() == str(os.getpid())
        with pytest.raises(LockHeld) as info:
            GradebookLock(csv_path).acquire()
        assert info.value.pid == os.getpid()
    assert not lock_path(csv_path).exists()
    with GradebookLock(csv_path):   # free again
        pass


def test_a_second_batch_is_refused_without_touching_the_csv(tmp_path):
    subs, csv_path = tmp_path / "subs", tmp_path / "out" / "grades.csv"
    (subs / "alice").mkdir(parents=True)
    csv_path.parent.mkdir()
    write_csv(csv_path, HEADER, OLD_ROWS)
    before = (csv_path.read_bytes(), csv_path.stat().st_mtime_ns)
    with GradebookLock(csv_path):   # this test plays the first batch
        proc = subprocess.run([sys.executable, "-m", "grader", "batch", str(subs), "--csv", str(csv_path),
                               "--experiments", EXP, "--visible-only"], capture_output=True, text=True,
                              timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert proc.returncode == 2, proc.stderr
    assert f"another batch is writing grades.csv (pid {os.getpid()})" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (csv_path.read_bytes(), csv_path.stat().st_mtime_ns) == before
    assert not (tmp_path / "out" / "grades-results").exists()


# --------------------------------------------------------------------------- the run loop, in process


@pytest.fixture
def batch_dirs(tmp_path, monkeypatch):
    """Five folder submissions, an output folder and a private work root; (subs, out, work)."""
    subs, out, work = tmp_path / "subs", tmp_path / "out", tmp_path / "work"
    for name in ("s1", "s2", "s3", "s4", "s5"):
        (subs / name / EXP).mkdir(parents=True)
    out.mkdir()
    monkeypatch.setenv("AICS_GRADER_TMP", str(work))
    return subs, out, work


def _main(subs: Path, csv_path: Path, *extra: str) -> int:
    return grader.batch.main([str(subs), "--csv", str(csv_path), "--jobs", "1", "--experiments", EXP,
                              "--visible-only", "--timeout", "30", "--results-dir", str(csv_path.parent / "res"),
                              *extra])


def _leftovers(work: Path) -> list[str]:
    """Scratch folders of batches, and extracted submission files, left under the work folder."""
    if not work.exists():
        return []
    left = [p for p in work.glob("*/batch-*")] + [p for p in work.rglob("*.py")]
    return sorted(str(p.relative_to(work)) for p in left)


def _fake_grade(on_call=None):
    """A stand-in for grading one submission: ``on_call(n, entry, stop)`` runs first (n from 1)."""
    calls = []

    def grade_one(entry, args, experiments, seed, hide, cache, results_dir, timeout, stop, scratch=None):
        if stop.is_set():
            return None   # as the real one: the batch stopped before this submission began
        calls.append(entry.id)
        if on_call is not None:
            on_call(len(calls), entry, stop)
        if stop.is_set():
            return Outcome(entry.id, INTERRUPTED, 0.1, message="batch interrupted")
        return Outcome(entry.id, GRADED, 0.1, {EXP: 60}, 60, 100, "abc", message="m" * 400)

    grade_one.calls = calls
    return grade_one


def test_injected_enospc_on_the_csv_stops_the_batch_cleanly(batch_dirs, monkeypatch, capsys):
    subs, out, work = batch_dirs
    csv_path = out / "grades.csv"
    monkeypatch.setattr(scheduler, "grade_one", _fake_grade())
    real_write = scheduler.write_csv
    calls = []

    def fsync_on_a_full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write_csv_until_full(path, header, rows):
        calls.append(len(rows))
        if len(calls) < 4:   # the empty CSV, then s1 and s2; the rewrite for s3 meets a full disk
            return real_write(path, header, rows)
        with monkeypatch.context() as m:
            m.setattr(os, "fsync", fsync_on_a_full_disk)
            real_write(path, header, rows)

    monkeypatch.setattr(scheduler, "write_csv", write_csv_until_full)
    code = _main(subs, csv_path, "--seed", "4")
    err = capsys.readouterr().err
    assert code == 3, err
    assert "could not write the gradebook" in err and "No space left on device" in err
    assert "free some disk space" in err and "run the same command again" in err and "Traceback" not in err
    header, rows = read_csv(csv_path)
    assert header == HEADER and set(rows) == {"s1", "s2"} and {r["status"] for r in rows.values()} == {GRADED}
    assert _no_temp_files(out) and _leftovers(work) == [] and not lock_path(csv_path).exists()
    # The same command again resumes: the two graded rows are kept, the seed is reused.
    monkeypatch.setattr(scheduler, "write_csv", real_write)
    resumed = _fake_grade()
    monkeypatch.setattr(scheduler, "grade_one", resumed)
    assert _main(subs, csv_path) == 0
    assert resumed.calls == ["s3", "s4", "s5"] and "seed 4" in capsys.readouterr().err
    assert set(read_csv(csv_path)[1]) == {"s1", "s2", "s3", "s4", "s5"}


def test_a_full_tmpfs_under_the_csv_stops_the_batch_cleanly(batch_dirs, tiny_tmpfs, monkeypatch, capsys):
    subs, _, work = batch_dirs
    csv_path = tiny_tmpfs / "grades.csv"

    def fill_on_third(n, entry, stop):
        if n == 3:   # once s2's row is in: the rewrite for s3 then meets a full disk
            _wait_for(lambda: "s2" in read_csv(csv_path)[1], 10, "the row of s2")
            _fill(tiny_tmpfs)

    monkeypatch.setattr(scheduler, "grade_one", _fake_grade(fill_on_third))
    code = grader.batch.main([str(subs), "--csv", str(csv_path), "--jobs", "1", "--experiments", EXP,
                              "--visible-only", "--timeout", "30", "--results-dir", str(work / "res")])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "could not write the gradebook" in err and "run the same command again" in err
    assert "Traceback" not in err
    _, rows = read_csv(csv_path)
    assert set(rows) == {"s1", "s2"}
    assert _no_temp_files(tiny_tmpfs) and _leftovers(work) == []


def test_a_failed_write_in_a_worker_stops_the_batch(batch_dirs, monkeypatch, capsys):
    subs, out, work = batch_dirs

    def log_fails(n, entry, stop):
        if n == 2:
            raise WriteFailed("the grader's log", out / "res" / f"{entry.id}.log",
                              OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    monkeypatch.setattr(scheduler, "grade_one", _fake_grade(log_fails))
    code = _main(subs, out / "grades.csv", "--force")
    err = capsys.readouterr().err
    assert code == 3 and "could not write the grader's log" in err and "Traceback" not in err
    assert "without --force" in err and "--force" not in err.rstrip().rsplit(": ", 1)[-1]
    assert set(read_csv(out / "grades.csv")[1]) == {"s1"}
    assert _leftovers(work) == [] and not lock_path(out / "grades.csv").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_ends_the_batch_cleanly(batch_dirs, monkeypatch, capsys, signum):
    subs, out, work = batch_dirs
    before = signal.getsignal(signum)
    if before is signal.SIG_IGN:
        pytest.skip(f"{signal.Signals(signum).name} is ignored in this session (nohup?)")

    def signal_on_second(n, entry, stop):
        if n == 2:
            os.kill(os.getpid(), signum)
            assert stop.wait(10), "the batch did not tell the running grader to stop"

    monkeypatch.setattr(scheduler, "grade_one", _fake_grade(signal_on_second))
    code = _main(subs, out / "grades.csv")
    err = capsys.readouterr().err
    assert code == 128 + signum, err
    assert f"stopped by {signal.Signals(signum).name}" in err and "run the same command again" in err
    assert "Traceback" not in err
    _, rows = read_csv(out / "grades.csv")
    assert rows["s1"]["status"] == GRADED and rows["s2"]["status"] == INTERRUPTED and set(rows) == {"s1", "s2"}
    assert _leftovers(work) == [] and not lock_path(out / "grades.csv").exists() and _no_temp_files(out)
    assert signal.getsignal(signum) == before   # the batch put the handler back


# --------------------------------------------------------------------------- strict reports


def _raise_on_constant(name):
    raise ValueError(f"non-strict JSON constant {name}")


def _doc_with_bad_times() -> dict:
    check = {"name": "conv", "tier": 60, "passed": True, "message": "ok", "seconds": math.nan, "hidden": False}
    slow = dict(check, name="pool", seconds=math.inf, passed=False, message="1 of 9 elements differ")
    hidden = dict(check, name="hidden_conv", seconds=-math.inf, hidden=True)
    return {"total": 0, "max_total": 100, "seconds": math.nan, "submission": "/x",
            "weights": {"kind": "synthetic", "sha256": "ab" * 32},
            "hidden_checks": {"enabled": True, "seed": 3}, "isolation": {"privilege_drop": True},
            "experiments": [{"id": EXP, "score": 0, "max_score": 100, "seconds": math.inf, "notes": [],
                             "error": None, "checks": [check, slow, hidden]}]}


def test_kit_json_and_gradescope_json_are_strict_with_nan_times(tmp_path):
    doc = _doc_with_bad_times()
    report.write_json(doc, tmp_path / "report.json")
    report.write_gradescope(doc, tmp_path / "results.json")
    kit = json.loads((tmp_path / "report.json").read_text(), parse_constant=_raise_on_constant)
    assert kit["seconds"] is None and kit["experiments"][0]["seconds"] is None
    assert [c["seconds"] for c in kit["experiments"][0]["checks"]] == [None, None, None]
    assert kit["total"] == 0 and kit["weights"] == doc["weights"]
    gradescope = json.loads((tmp_path / "results.json").read_text(), parse_constant=_raise_on_constant)
    assert gradescope["execution_time"] == 0 and gradescope == to_gradescope(doc)
    assert math.isnan(doc["seconds"])   # the document in memory is left as it was
    assert "nan" not in report.table(doc).lower()   # the table shows "-" for an unknown time


def test_junit_times_are_finite_floats_with_nan_times(tmp_path):
    report.write_junit(_doc_with_bad_times(), tmp_path / "junit.xml")
    root = ET.parse(tmp_path / "junit.xml").getroot()
    times = [el.get("time") for el in root.iter() if el.get("time") is not None]
    assert len(times) == 1 + 1 + 3   # testsuites, the suite, three cases
    assert all(math.isfinite(float(t)) and float(t) == 0.0 for t in times), times


def test_strict_keeps_finite_numbers_and_structure():
    value = {"a": [1, 2.5, (math.nan, "x")], "b": {"c": -math.inf, "d": True, "e": None}}
    assert report.strict(value) == {"a": [1, 2.5, [None, "x"]], "b": {"c": None, "d": True, "e": None}}
    assert report.finite(3) == 3 and report.finite(True) is None and report.finite("1") is None


def test_the_batch_reads_back_a_report_with_nan_without_losing_the_row(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"total": 60, "max_total": 100, "seconds": NaN, "experiments": '
                    '[{"id": "exp_3_1_vgg", "score": 60, "seconds": Infinity, "checks": []}]}')
    doc = scheduler.read_report(path)
    assert doc["seconds"] is None and doc["experiments"][0]["score"] == 60
    path.write_text("[" * 100_000)   # nesting too deep for the parser
    assert scheduler.read_report(path) is None


# --------------------------------------------------------------------------- end to end


def run_batch(folder: Path, out: Path, *extra: str, work: Path | None = None, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "grader", "batch", str(folder), "--jobs", "2", "--csv", str(out / "grades.csv"),
           "--experiments", EXP, "--visible-only", "--time-scale", "0.05", "--seed", "3", *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    if work is not None:
        env["AICS_GRADER_TMP"] = str(work)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen)


def csv_rows(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def _good_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted((STU_UPLOAD_DIR / EXP).rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                zf.write(file, f"good/{EXP}/{file.relative_to(STU_UPLOAD_DIR / EXP)}")


def _wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_batch_over_broken_zips_grades_the_good_one(tmp_path):
    folder, out, work = tmp_path / "subs", tmp_path / "out", tmp_path / "work"
    folder.mkdir()
    for kind, (build, _) in BROKEN.items():
        (folder / f"{kind}.zip").write_bytes(build())
    _good_zip(folder / "good.zip")
    proc = run_batch(folder, out, work=work)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    rows = csv_rows(out / "grades.csv")
    assert set(rows) == set(BROKEN) | {"good"}
    for kind, (_, reason) in BROKEN.items():
        assert rows[kind]["status"] == BAD_SUBMISSION and reason in rows[kind]["message"], rows[kind]
    assert rows["good"]["status"] == GRADED and rows["good"][EXP] == "0", rows["good"]
    assert _leftovers(work) == [] and list(work.iterdir()) == []   # no work folder of the batch or a grader
    # no .tmp, no .lock; the settings file stays beside the CSV
    assert sorted(p.name for p in out.iterdir()) == ["grades-results", "grades.csv", "grades.csv.batch.json"]
    assert sorted(p.name for p in (out / "grades-results").iterdir() if p.name.startswith(".")) == []


def _processes_mentioning(marker: str, exclude: int) -> list[int]:
    """Pids of processes (but ``exclude`` and this one) whose command line mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(), exclude):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


def _pristine_submissions(folder: Path, names) -> None:
    for name in names:
        shutil.copytree(STU_UPLOAD_DIR / EXP, folder / name / EXP, ignore=shutil.ignore_patterns("__pycache__"))


@pytest.mark.slow
def test_two_batches_on_one_csv_the_second_is_refused(tmp_path):
    folder, out = tmp_path / "subs", tmp_path / "out"
    _pristine_submissions(folder, ["a", "b", "c"])
    first = run_batch(folder, out, "--jobs", "1", work=tmp_path / "work")
    lock = lock_path(out / "grades.csv")
    _wait_for(lambda: lock.exists() and lock.read_text().strip().isdigit(), 60, "the first batch's lock")
    second = run_batch(folder, out, work=tmp_path / "work2")
    _, err2 = second.communicate(timeout=120)
    _, err1 = first.communicate(timeout=600)
    assert second.returncode == 2 and f"another batch is writing grades.csv (pid {first.pid})" in err2, err2
    assert first.returncode == 0, err1
    rows = csv_rows(out / "grades.csv")
    assert set(rows) == {"a", "b", "c"} and {r["status"] for r in rows.values()} == {GRADED}
    assert {r["seed"] for r in rows.values()} == {"3"}


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_a_real_batch_kills_its_graders_and_keeps_the_csv(tmp_path, signum):
    folder, out, work = tmp_path / "subs", tmp_path / "out", tmp_path / "work"
    _pristine_submissions(folder, ["a", "b", "c", "d", "e", "f"])
    proc = run_batch(folder, out, work=work)
    _wait_for(lambda: (out / "grades-results" / "a.log").exists() and _processes_mentioning(str(folder), proc.pid),
              120, "a grader subprocess")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and f"stopped by {signal.Signals(signum).name}" in err
    lines = [line for line in err.splitlines() if line.startswith("grader batch:")]
    assert len(lines) == 1 and "run the same command again" in lines[0]
    header, rows = read_csv(out / "grades.csv")
    assert header == HEADER and all(r["status"] in (GRADED, INTERRUPTED) for r in rows.values())
    _wait_for(lambda: not _processes_mentioning(str(folder), proc.pid), 10, "the graders to be gone")
    assert list(work.iterdir()) == []   # neither the batch's scratch nor the killed graders' work folders
    assert _leftovers(work) == [] and _no_temp_files(out) and not lock_path(out / "grades.csv").exists()


@pytest.mark.slow
def test_a_full_results_folder_stops_a_real_batch_cleanly(tmp_path, tiny_tmpfs):
    folder, out, work = tmp_path / "subs", tmp_path / "out", tmp_path / "work"
    folder.mkdir()
    (folder / "bad.zip").write_bytes(not_a_zip())
    _pristine_submissions(folder, ["good"])
    _fill(tiny_tmpfs)   # the graders cannot write their logs or reports there
    proc = run_batch(folder, out, "--jobs", "1", "--results-dir", str(tiny_tmpfs), work=work)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 3, err
    assert "could not write the report" in err and "free some disk space" in err and "Traceback" not in err
    assert "run the same command again" in err
    rows = csv_rows(out / "grades.csv")
    assert "good" not in rows and rows["bad"]["status"] == BAD_SUBMISSION
    assert list(work.iterdir()) == [] and _no_temp_files(tiny_tmpfs) and _no_temp_files(out)
