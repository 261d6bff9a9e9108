"""The grader's reports and options, through real ``python -m grader`` runs.

Two runs are shared by the module: the reference with hidden checks on (seed 7) and the
pristine skeleton with ``--visible-only``; each writes the kit JSON, Gradescope's
results.json and JUnit XML.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from grader import report
from grader.groups import run_group, work_root
from grader.session import GradingSession
from grader.kit.paths import REFERENCE_DIR, REPO_ROOT, STU_UPLOAD_DIR
from grader.sandbox import Limits, run_sandboxed
from grader.kit.weights import resolve_weights

EXP = "exp_3_1_vgg"


def grade(submission: Path, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    cmd = [sys.executable, "-m", "grader", "--submission", str(submission), "--experiments", EXP,
           "--json", str(out / "report.json"), "--results-json", str(out / "results.json"),
           "--junit", str(out / "junit.xml"), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
                          timeout=600)
    return proc, (json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {})


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    proc, doc = grade(REFERENCE_DIR, out, "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    return out, proc, doc


@pytest.fixture(scope="module")
def pristine_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pristine")
    proc, doc = grade(STU_UPLOAD_DIR, out, "--visible-only")
    assert proc.returncode == 0, proc.stderr
    return out, proc, doc


@pytest.mark.slow
def test_kit_json_has_the_documented_shape(reference_run):
    _, _, doc = reference_run
    assert doc["total"] == 100 and doc["max_total"] == 100
    assert set(doc["weights"]) >= {"kind", "sha256"}
    (exp,) = doc["experiments"]
    assert exp["id"] == EXP and exp["score"] == 100 and exp["max_score"] == 100
    for check in exp["checks"]:
        assert set(check) >= {"name", "tier", "passed", "message", "seconds"}
        assert check["tier"] in (60, 80, 100)
    assert doc["hidden_checks"] == {"enabled": True, "seed": 7}
    assert any(c["hidden"] for c in exp["checks"])


def test_visible_only_turns_hidden_checks_off(pristine_run):
    _, _, doc = pristine_run
    assert doc["hidden_checks"]["enabled"] is False and doc["total"] == 0
    assert not any(c["hidden"] for c in doc["experiments"][0]["checks"])


@pytest.mark.slow
@pytest.mark.parametrize("run", ["reference_run", "pristine_run"])
def test_gradescope_results_follow_the_spec(request, run):
    out, _, doc = request.getfixturevalue(run)
    gs = json.loads((out / "results.json").read_text())
    assert isinstance(gs["score"], float) and gs["score"] == doc["total"]
    assert isinstance(gs["execution_time"], int) and isinstance(gs["output"], str)
    assert abs(sum(t["max_score"] for t in gs["tests"]) - 100) < 1e-9
    assert abs(sum(t["score"] for t in gs["tests"]) - doc["total"]) < 1e-9
    numbers = [t["number"] for t in gs["tests"]]
    assert len(set(numbers)) == len(numbers)
    for t in gs["tests"]:
        assert set(t) >= {"name", "number", "score", "max_score", "status", "output", "visibility"}
        assert t["status"] in ("passed", "failed")
        assert t["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
        assert 0 <= t["score"] <= t["max_score"]
    hidden = [t for t in gs["tests"] if "hidden_" in t["name"]]
    assert all(t["visibility"] == "after_published" for t in hidden)


@pytest.mark.slow
@pytest.mark.parametrize("run", ["reference_run", "pristine_run"])
def test_junit_is_valid_and_counts_failures(request, run):
    out, _, doc = request.getfixturevalue(run)
    root = ET.parse(out / "junit.xml").getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    checks = doc["experiments"][0]["checks"]
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests")) == len(checks)
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == int(suite.get("failures")) == sum(not c["passed"] for c in checks)
    assert all(c.get("classname").startswith(f"{EXP}.tier") for c in cases)


@pytest.mark.slow
def test_terminal_output_has_no_pytest_noise(reference_run, pristine_run):
    for _, proc, _ in (reference_run, pristine_run):
        assert not re.search(r"^[.FEsx]{5,}", proc.stdout, re.M), proc.stdout
        assert "FAILED " not in proc.stdout and "passed in" not in proc.stdout
    summary = pristine_run[1].stdout
    assert re.search(r"exp_3_1_vgg: 0/100 +\(0 of \d+ checks passed\) +- tier 60 needs: conv_k3_p1_s1", summary)
    assert "13 hidden check(s)" in reference_run[1].stdout


def test_table_wraps_long_messages_and_flags_reduced_isolation():
    doc = {"total": 0, "max_total": 100, "weights": {"kind": "synthetic", "sha256": "ab" * 32},
           "hidden_checks": {"enabled": False}, "isolation": {"privilege_drop": False, "reason_off": "not root"},
           "experiments": [{"id": EXP, "score": 0, "max_score": 100, "notes": [], "error": "",
                            "checks": [{"name": "conv", "tier": 60, "passed": False, "seconds": 0.1,
                                        "message": "x" * 150 + " " + "word " * 60, "hidden": False}]}]}
    text = report.table(doc, width=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "isolation: reduced (not root)" in text
    doc["isolation"] = {"privilege_drop": True}
    assert "isolation: reduced" not in report.table(doc)


def test_bad_time_scale_is_refused_clearly(tmp_path):
    proc, _ = grade(STU_UPLOAD_DIR, tmp_path, "--time-scale", "0")
    assert proc.returncode == 2 and "--time-scale='0' must be in (0, 100]" in proc.stderr


def test_reference_runs_leave_nothing_readable(tmp_path, monkeypatch):
    """Hidden goldens come from a root-only work folder that is gone afterwards."""
    # A private work root: other graders on this machine may be running at the same time.
    monkeypatch.setenv("AICS_GRADER_TMP", str(tmp_path / "work"))
    weights = resolve_weights(generate=False)
    session = GradingSession(REFERENCE_DIR, weights, seed=3, golden_cache=tmp_path / "cache")
    hidden = next(c for c in session.cases(EXP) if c.hidden)
    before = set(work_root().iterdir())
    golden = session.golden(EXP, hidden.name)
    assert golden["output"].size > 0
    assert set(work_root().iterdir()) == before
    cache = tmp_path / "cache"
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in cache.glob("*.npz"))
    # A second session of the same batch reads the cache instead of running the reference.
    again = GradingSession(REFERENCE_DIR, weights, seed=3, golden_cache=cache)
    run = again._group_run(EXP, hidden.group, reference=True)
    assert run.result is None and "batch cache" in run.notes[0]
    # The (default) work root cannot be listed by a student process.
    monkeypatch.delenv("AICS_GRADER_TMP")
    if os.geteuid() == 0:
        workdir = tmp_path / "probe"
        workdir.mkdir()
        result = run_sandboxed([sys.executable, "-c", f"import os; os.listdir({str(work_root())!r})"],
                               workdir=workdir, limits=Limits(wall_seconds=30, cpu_seconds=30))
        # Not listable: mode 0711 where the child sees the host's /tmp, absent from its private view otherwise.
        assert result.status == "exit" and ("PermissionError" in result.stderr or "FileNotFoundError" in result.stderr)


def test_time_scale_shortens_limits(tmp_path):
    """A group's limits are multiplied; the reference keeps at least its normal limits."""
    from grader.experiments import GroupSpec
    from grader.experiments import spec_of as case_module
    cases = [c for c in case_module(EXP).visible_cases() if c.name == "relu_forward"]
    spec = GroupSpec("layers", wall_seconds=40, cpu_seconds=40)
    hang = tmp_path / "sub" / EXP
    hang.mkdir(parents=True)
    (hang / "layers_1.py").write_text("class ReLULayer:\n    def forward(self, x):\n        while True:\n"
                                      "            pass\n")
    run = run_group(tmp_path / "sub", EXP, spec, cases, {}, time_scale=0.05)
    assert run.result.status == "timeout" and "timed out after 2.0 s" in run.outcome("relu_forward").error
