"""Fast feedback: a failed lower tier skips the expensive checks above it; --quick runs tier 60 only."""
from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from grader.checks import plugin as plugin_module
from grader.checks.plugin import NOT_RUN_QUICK, GradingPlugin, grade_experiment, skipped_message
from grader.experiments import Case, Check, GroupSpec
from grader.kit.compare import CheckFailure
from grader.kit.paths import REPO_ROOT, STU_UPLOAD_DIR

EXP = "exp_3_1_vgg"


class FakeSession:
    """The parts of a GradingSession the plugin uses, with cases of a made-up experiment."""

    def __init__(self, cases: list[Case], quick: bool = False):
        self._cases = cases
        self.quick = quick
        self.progress = None
        self.notes: dict[str, list[str]] = {}

    def cases(self, experiment: str) -> list[Case]:
        return self._cases

    def case(self, experiment: str, name: str) -> Case:
        return next(c for c in self._cases if c.name == name)


def fake_experiment(monkeypatch, rows: list[tuple[str, int, str, bool]]) -> tuple[FakeSession, list[str]]:
    """An experiment of checks (name, tier, group, passes); returns its session and the run log.

    Groups: "cheap" and "costly" (expensive). A check appends its name to the log when it runs.
    """
    ran: list[str] = []
    groups = {"cheap": GroupSpec("cheap", 10, 10), "costly": GroupSpec("costly", 10, 10, expensive=True)}
    cases = [Case(name, "none", group, f"case {name}") for name, _, group, _ in rows]

    def check_function(name: str, passes: bool):
        def run(ctx) -> str:
            ran.append(name)
            if not passes:
                raise CheckFailure(f"{name} is wrong")
            return f"{name} ok"
        return run

    module = SimpleNamespace(
        GROUPS=groups,
        checks=lambda cases_: [Check(name, tier, name, check_function(name, passes))
                               for name, tier, _, passes in rows])
    monkeypatch.setattr(plugin_module, "spec_of", lambda experiment: module)
    return FakeSession(cases), ran


def by_name(result) -> dict:
    return {r.name: r for r in result.checks}


def test_a_failed_tier_skips_expensive_checks_above_it_and_runs_cheap_ones(monkeypatch):
    # Declared out of tier order: the plugin must still run every tier-60 check first.
    rows = [("net_80", 80, "costly", True), ("layer_a", 60, "cheap", True), ("net_100", 100, "costly", True),
            ("cheap_100", 100, "cheap", True), ("layer_b", 60, "cheap", False)]
    session, ran = fake_experiment(monkeypatch, rows)
    result = grade_experiment(session, "fake")
    checks = by_name(result)
    assert ran == ["layer_a", "layer_b", "cheap_100"]
    assert not checks["layer_b"].passed and checks["layer_b"].message == "layer_b is wrong"
    for name in ("net_80", "net_100"):
        assert not checks[name].passed
        assert checks[name].message == "skipped: tier 60 failed"
    assert checks["cheap_100"].passed
    assert result.notes == ["the 'costly' checks did not run (skipped: tier 60 failed): fix the lower tier first, "
                            "they could not count"]
    # The report keeps the declared order.
    assert [r.name for r in result.checks] == [name for name, *_ in rows]
    assert result.score == 0


def test_the_lowest_failed_tier_is_named(monkeypatch):
    rows = [("layer", 60, "cheap", True), ("mid", 80, "cheap", False), ("net", 100, "costly", True)]
    session, ran = fake_experiment(monkeypatch, rows)
    checks = by_name(grade_experiment(session, "fake"))
    assert ran == ["layer", "mid"]
    assert checks["net"].message == skipped_message(80) == "skipped: tier 80 failed"


def test_expensive_checks_run_when_lower_tiers_pass(monkeypatch):
    rows = [("layer", 60, "cheap", True), ("net_80", 80, "costly", True), ("net_100", 100, "costly", False)]
    session, ran = fake_experiment(monkeypatch, rows)
    result = grade_experiment(session, "fake")
    assert ran == ["layer", "net_80", "net_100"]
    assert result.score == 80
    # A failure inside the same tier never skips a check of that tier.
    assert by_name(result)["net_100"].message == "net_100 is wrong"


def test_quick_runs_tier_60_only(monkeypatch):
    rows = [("layer", 60, "cheap", True), ("mid", 80, "cheap", True), ("net", 100, "costly", True)]
    session, ran = fake_experiment(monkeypatch, rows)
    session.quick = True
    result = grade_experiment(session, "fake")
    checks = by_name(result)
    assert ran == ["layer"]
    assert checks["layer"].passed
    assert [checks[n].message for n in ("mid", "net")] == [NOT_RUN_QUICK] * 2 == ["not run (--quick)"] * 2
    assert not checks["mid"].passed and not checks["net"].passed
    assert result.score == 60
    assert len(result.notes) == 1 and result.notes[0].startswith("--quick: only the tier-60 checks ran")


def test_the_31_network_group_is_declared_expensive():
    from grader.experiments import spec_of
    assert spec_of(EXP).GROUPS["network"].expensive
    assert not spec_of(EXP).GROUPS["layers"].expensive


def test_plugin_skip_reason_on_the_real_31_checks(monkeypatch):
    from grader.experiments import spec_of
    module = spec_of(EXP)
    cases = module.visible_cases()
    plugin = GradingPlugin(FakeSession(cases), EXP)
    pool5 = next(c for c in plugin.checks if c.name == "vgg19_pool5")
    conv = next(c for c in plugin.checks if c.tier == 60)
    assert plugin.skip_reason(pool5) is None
    plugin.results.append(plugin_module.CheckResult(conv.name, 60, False, "wrong", 0.0))
    assert plugin.skip_reason(pool5) == "skipped: tier 60 failed"
    assert [c.tier for c in plugin.checks] == sorted(c.tier for c in plugin.checks)


def grade_cli(submission, tmp_path, *extra: str) -> tuple[dict, str]:
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "grader", "--submission", str(submission), "--experiments", EXP,
                           "--visible-only", "--json", str(out), *extra], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(out.read_text()), proc.stdout


def test_pristine_skeleton_does_not_start_the_network(tmp_path):
    doc, stdout = grade_cli(STU_UPLOAD_DIR, tmp_path)
    checks = {c["name"]: c for c in doc["experiments"][0]["checks"]}
    assert "running the 'layers' checks" in stdout
    assert "running the 'network' checks" not in stdout
    for name in ("vgg19_pool5", "vgg19_softmax", "vgg19_top1"):
        assert checks[name]["message"] == "skipped: tier 60 failed" and not checks[name]["passed"]
    assert doc["experiments"][0]["score"] == 0


def test_quick_flag_on_the_command_line(tmp_path):
    doc, stdout = grade_cli(STU_UPLOAD_DIR, tmp_path, "--quick")
    assert doc["quick"] is True
    checks = doc["experiments"][0]["checks"]
    assert {c["message"] for c in checks if c["tier"] > 60} == {"not run (--quick)"}
    assert all("not run" not in c["message"] for c in checks if c["tier"] == 60)
    assert "running the 'network' checks" not in stdout


@pytest.mark.slow
def test_a_tier_60_bug_does_not_run_the_network_but_a_clean_layer_set_does(tmp_path):
    from tests.gradeutil import broken_copy, reference_copy
    bug = broken_copy(tmp_path / "bug", EXP, {"layers_2.py": [("windows.max(axis=(4, 5))",
                                                                "windows.mean(axis=(4, 5))")]})
    doc, stdout = grade_cli(bug, tmp_path)
    checks = {c["name"]: c for c in doc["experiments"][0]["checks"]}
    assert not checks["pool_k2_s2"]["passed"]
    assert checks["vgg19_pool5"]["message"] == "skipped: tier 60 failed"
    assert "running the 'network' checks" not in stdout
    good = tmp_path / "good"
    reference_copy(good / EXP, EXP)
    doc, stdout = grade_cli(good, tmp_path)
    assert "running the 'network' checks" in stdout and doc["experiments"][0]["score"] == 100
