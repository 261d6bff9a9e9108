"""Hostile submissions cost only their own checks, and the grader reports why.

All hostile submissions (tests/hostile) and one correct one are graded by one real
``python -m grader batch`` run (two jobs, hidden checks on, limits scaled down so a hang
costs seconds); each test then reads its submission's JSON report. The 20-submission
batch at the end is marked slow.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader.kit.paths import GOLDEN_DIR, REPO_ROOT
from grader.kit.weights import resolve_weights
from gradeutil import reference_copy
from hostile import BY_NAME, EXP, HOSTILE  # tests/hostile, on sys.path beside this file

# Every test here reads the shared batch run (minutes), so the whole module is slow.
pytestmark = pytest.mark.slow

TIME_SCALE = "0.05"   # layers group 9 s, network group 60 s
SEED = 11
IS_ROOT = os.geteuid() == 0


def _golden_file() -> Path:
    files = sorted((GOLDEN_DIR / EXP).glob("*.npz"))
    assert files, f"no visible goldens in {GOLDEN_DIR / EXP}; run `python -m grader goldens`"
    return files[0]


def _digest(paths) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _weights_stamp(path: Path) -> tuple:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def run_batch(folder: Path, out: Path, *extra: str, jobs: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "grader", "batch", str(folder), "--jobs", str(jobs), "--csv", str(out / "grades.csv"),
           "--results-dir", str(out / "results"), "--experiments", EXP, "--seed", str(SEED),
           "--time-scale", TIME_SCALE, *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def build_all(folder: Path, names, copies_of_good: int = 1) -> None:
    weights = resolve_weights(generate=False).path
    values = dict(golden=str(_golden_file()), weights=str(weights), golden_dir=str(GOLDEN_DIR),
                  sibling=str(folder / "good_0" / EXP / "layers_1.py"))
    for name in names:
        BY_NAME[name].build(folder, **values)
    for i in range(copies_of_good):
        reference_copy(folder / f"good_{i}" / EXP, EXP)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade every hostile submission and one correct one in one batch; {id: report}."""
    import json
    base = tmp_path_factory.mktemp("hostile")
    folder, out = base / "submissions", base / "out"
    folder.mkdir()
    build_all(folder, [h.name for h in HOSTILE])
    weights = resolve_weights(generate=False).path
    before = _digest([p for p in GOLDEN_DIR.rglob("*") if p.is_file()])
    stamp = _weights_stamp(weights)
    start = time.monotonic()
    proc = run_batch(folder, out)
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    return dict(reports=reports, csv=out / "grades.csv", stderr=proc.stderr, seconds=seconds,
                goldens_before=before, weights_stamp=stamp, weights=weights)


def _checks(report: dict) -> dict:
    (exp,) = report["experiments"]
    return {c["name"]: c for c in exp["checks"]}


@pytest.mark.parametrize("name", [h.name for h in HOSTILE])
def test_hostile_submission_costs_only_its_own_checks(graded, name):
    hostile = BY_NAME[name]
    report = graded["reports"][name]
    checks = _checks(report)
    failing = {n for n, c in checks.items() if not c["passed"]}
    (exp,) = report["experiments"]
    assert not exp["error"], exp["error"]
    assert failing == hostile.failing, f"{name}: unexpected failures {sorted(failing ^ hostile.failing)}"
    assert report["total"] == hostile.score
    for check in failing:
        message = checks[check]["message"]
        # A failed tier 60 leaves the network unrun: it could not count.
        assert message.startswith("skipped: tier 60 failed") or re.search(hostile.reason, message), (check, message)
    if hostile.note:
        assert any(hostile.note in n for n in exp["notes"]), exp["notes"]
    # Everything the submission did not break still passes: 60-tier layers or the network.
    assert len(checks) == 31


def test_correct_submission_in_the_same_batch_scores_100(graded):
    assert graded["reports"]["good_0"]["total"] == 100
    rows = list(csv.DictReader(open(graded["csv"], encoding="utf-8")))
    assert {r["id"] for r in rows} == {h.name for h in HOSTILE} | {"good_0"}
    assert all(r["status"] == "graded" for r in rows), [(r["id"], r["status"], r["message"]) for r in rows]
    assert {r["seed"] for r in rows} == {str(SEED)}


def test_hang_is_reported_with_its_limit_and_where_it_happened(graded):
    checks = _checks(graded["reports"]["hang"])
    assert re.search(r"timed out after 9\.0 s \(wall-clock limit\) while running this check",
                     checks["pool_k3_s2_overlap"]["message"])
    assert "before reaching this check" in checks["softmax_forward"]["message"]
    assert checks["pool_k2_s2_odd"]["passed"] and checks["vgg19_top1"]["message"].startswith("skipped: tier 60")


def test_import_guard_names_the_rule(graded):
    message = _checks(graded["reports"]["import_reference"])["fc_forward"]["message"]
    assert "importing 'grader.reference' is not allowed in a submission" in message


@pytest.mark.skipif(not IS_ROOT, reason="hiding paths needs the grader to run as root")
@pytest.mark.parametrize("name", ["read_reference_by_path", "read_other_submission"])
def test_hidden_paths_are_unreadable_because_of_the_sandbox(graded, name):
    message = _checks(graded["reports"][name])["vgg19_pool5"]["message"]
    # Not the import guard: the file itself cannot be opened.
    assert "not allowed in a submission" not in message
    assert re.search(r"(PermissionError|FileNotFoundError|IsADirectoryError): \[Errno (13|2|21)\]", message), message


@pytest.mark.skipif(not IS_ROOT, reason="dropping privileges needs the grader to run as root")
def test_goldens_and_weights_cannot_be_written(graded):
    message = _checks(graded["reports"]["write_goldens_and_weights"])["vgg19_pool5"]["message"]
    assert "WROTE" not in message
    assert re.search(r"could not write: (EACCES|EROFS|EPERM), (EACCES|EROFS|EPERM), (EACCES|EROFS|EPERM)", message)
    after = _digest([p for p in GOLDEN_DIR.rglob("*") if p.is_file()])
    assert after == graded["goldens_before"]
    assert _weights_stamp(graded["weights"]) == graded["weights_stamp"]


def test_hidden_failure_shows_name_and_kind_not_data(graded):
    checks = _checks(graded["reports"]["monkeypatch_numpy"])
    hidden = checks["hidden_relu_forward"]["message"]
    assert hidden.startswith("hidden check hidden_relu_forward (relu_forward): wrong values")
    assert "worst element" not in hidden and "index" not in hidden
    assert "worst element" in checks["relu_forward"]["message"]


def test_output_coercion_ignores_fake_equality(graded):
    checks = _checks(graded["reports"]["always_true_eq"])
    assert "not a numeric array" in checks["softmax_forward"]["message"]
    network = _checks(graded["reports"]["always_true_eq_network"])
    assert "elements differ" in network["vgg19_softmax"]["message"]


def test_batch_progress_and_memory_lines(graded):
    err = graded["stderr"]
    lines = [line for line in err.splitlines() if re.match(r"\[\s*\d+/\d+\] ", line)]
    assert len(lines) == len(HOSTILE) + 1 and "ETA" in lines[-1]
    assert re.search(r"peak memory: this process \d+ MiB", err)
    print(f"\nhostile batch ({len(HOSTILE) + 1} submissions, jobs 2): {graded['seconds']:.1f} s")


@pytest.mark.slow
def test_batch_of_twenty_mixed_submissions_completes(tmp_path):
    """20 submissions (all hostile kinds plus correct copies) at --jobs 2; prints wall time and memory."""
    folder, out = tmp_path / "submissions", tmp_path / "out"
    folder.mkdir()
    names = [h.name for h in HOSTILE]
    build_all(folder, names, copies_of_good=20 - len(names))
    # One correct submission zipped, as students hand them in.
    shutil.make_archive(str(folder / "zipped"), "zip", folder / "good_1")
    shutil.rmtree(folder / "good_1")
    start = time.monotonic()
    proc = run_batch(folder, out)
    wall = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["id"]: r for r in csv.DictReader(open(out / "grades.csv", encoding="utf-8"))}
    assert len(rows) == 20
    assert all(r["status"] == "graded" for r in rows.values()), {k: r["message"] for k, r in rows.items()}
    for h in HOSTILE:
        assert int(rows[h.name]["total"]) == h.score, (h.name, rows[h.name]["message"])
    good = [r for k, r in rows.items() if k.startswith("good_") or k == "zipped"]
    assert len(good) == 20 - len(names) and all(r["total"] == "100" for r in good)
    memory = re.search(r"peak memory: this process (\d+) MiB, largest grader process (\d+) MiB", proc.stderr)
    assert memory and int(memory.group(1)) < 500
    print(f"\n20-submission batch, jobs 2: {wall:.1f} s wall; parent peak {memory.group(1)} MiB, "
          f"largest grader process {memory.group(2)} MiB")
    # Resuming grades nothing twice.
    again = run_batch(folder, out)
    assert "0 to grade, 20 already graded" in again.stderr
