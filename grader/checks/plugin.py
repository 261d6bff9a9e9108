"""Drive pytest with one experiment's declared checks and turn its reports into scores.

:class:`GradingPlugin` is handed to ``pytest.main``: it parametrizes the single test of
``run_checks.py`` with the experiment's :class:`~grader.experiments.Check` objects,
gives that test the ``grading`` fixture (the plugin itself, which carries the session),
and records one :class:`~grader.scoring.CheckResult` per check from pytest's report.

Checks run in tier order (60, then 80, then 100; the report keeps the declared order).
Two rules save minutes without changing any score:

* once a check of a lower tier has failed, a higher tier's check whose case is in an
  *expensive* group (``GroupSpec.expensive``: a whole network) that has not started yet is not run, so its group
  never starts; it fails with "skipped: tier 60 failed" (a tier counts only when every
  lower tier passed, so it could not count anyway). Cheap checks of higher tiers still
  run: their messages help;
* with ``session.quick`` (``python -m grader --quick``) only the lowest tier's checks run;
  the others fail with "not run (--quick)".
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from pathlib import Path

import pytest

from grader.experiments import Check, CheckContext, spec_of
from grader.kit.compare import CheckFailure
from grader.kit.paths import REPO_ROOT
from grader.scoring import TIERS, CheckResult, ExperimentResult

CHECKS_DIR = Path(__file__).resolve().parent
QUICK_TIER = TIERS[0]      # the one tier `--quick` runs
NOT_RUN_QUICK = "not run (--quick)"


def skipped_message(failed_tier: int) -> str:
    """The message of an expensive check not run because ``failed_tier`` already failed."""
    return f"skipped: tier {failed_tier} failed"


class GradingPlugin:
    """pytest plugin for one experiment of one :class:`~grader.session.GradingSession`."""

    def __init__(self, session, experiment: str):
        self.session = session
        self.experiment = experiment
        declared: list[Check] = spec_of(experiment).checks(session.cases(experiment))
        self.order = {check.name: index for index, check in enumerate(declared)}
        # Lower tiers first (stable): their failures decide which expensive checks run.
        self.checks: list[Check] = sorted(declared, key=lambda check: check.tier)
        self.results: list[CheckResult] = []
        self._messages: dict[str, str] = {}
        self._seconds: dict[str, float | None] = {}

    # ----- what the test calls ------------------------------------------------------
    def is_expensive(self, check: Check) -> bool:
        """True when the check's case belongs to a group declared expensive."""
        group = self.session.case(self.experiment, check.case).group
        spec = spec_of(self.experiment).GROUPS.get(group)
        return bool(getattr(spec, "expensive", False))

    def skip_reason(self, check: Check) -> str | None:
        """Why ``check`` is not run (see the module's docstring), or None to run it."""
        if getattr(self.session, "quick", False) and check.tier > QUICK_TIER:
            return NOT_RUN_QUICK
        failed = [r.tier for r in self.results if not r.passed and r.tier < check.tier]
        # A group that already ran costs nothing more: its checks report what it did.
        if failed and self.is_expensive(check) and not self._group_started(check):
            return skipped_message(min(failed))
        return None

    def _group_started(self, check: Check) -> bool:
        group = self.session.case(self.experiment, check.case).group
        started = getattr(self.session, "group_started", None)
        return bool(started and started(self.experiment, group))

    def _note_skip(self, check: Check, reason: str) -> None:
        """Say once per group, in the experiment's notes, that its checks were not run and why."""
        group = self.session.case(self.experiment, check.case).group
        if reason == NOT_RUN_QUICK:
            note = f"--quick: only the tier-{QUICK_TIER} checks ran; run without --quick for the others"
        else:
            note = f"the {group!r} checks did not run ({reason}): fix the lower tier first, they could not count"
        notes = self.session.notes.setdefault(self.experiment, [])
        if note not in notes:
            notes.append(note)

    def run(self, check: Check) -> None:
        """Run one check; its pass message is kept for the report, a failure raises."""
        reason = self.skip_reason(check)
        if reason is not None:
            self._seconds[check.name] = 0.0
            self._note_skip(check, reason)
            raise CheckFailure(reason)
        ctx = CheckContext(self.session, self.experiment, check)
        try:
            self._messages[check.name] = check.run(ctx)
        finally:
            self._seconds[check.name] = ctx.seconds

    # ----- pytest hooks and fixture ---------------------------------------------------
    def pytest_generate_tests(self, metafunc):
        if "check" in metafunc.fixturenames:
            metafunc.parametrize("check", self.checks, ids=[c.name for c in self.checks])

    @pytest.fixture
    def grading(self):
        return self

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
            return
        callspec = getattr(item, "callspec", None)
        check = callspec.params.get("check") if callspec is not None else None
        if not isinstance(check, Check):
            return
        if report.passed:
            message = self._messages.get(check.name, "ok")
        elif call.excinfo is not None and isinstance(call.excinfo.value, CheckFailure):
            message = str(call.excinfo.value)
        elif call.excinfo is not None:
            message = f"grader error in this check: {call.excinfo.typename}: {call.excinfo.value}"
        else:
            message = str(report.longrepr)[-2000:]
        if report.skipped:
            message = f"not checked: {message}"   # a skipped check never counts as passed
        seconds = self._seconds.get(check.name)
        self.results.append(CheckResult(check.name, check.tier, report.passed, message,
                                        float(seconds if seconds is not None else report.duration), check.hidden))


def _progress_stream():
    """A writer to the real stdout that pytest's output capture cannot swallow (or None)."""
    try:
        return os.fdopen(os.dup(sys.__stdout__.fileno()), "w", buffering=1)
    except (AttributeError, OSError, ValueError):
        return None


def grade_experiment(session, experiment: str, verbose: bool = False) -> ExperimentResult:
    """Run the declared checks of ``experiment`` under pytest in this process."""
    start = time.perf_counter()
    start_mark = time.monotonic()
    plugin = GradingPlugin(session, experiment)
    args = [str(CHECKS_DIR / "run_checks.py"), "-p", "no:cacheprovider", "-p", "no:randomly", "-q", "--no-header",
            "-o", "console_output_style=classic", "--rootdir", str(REPO_ROOT), "-c", str(CHECKS_DIR / "pytest.ini")]
    captured = io.StringIO()
    session.progress = _progress_stream()
    try:
        if verbose:
            code = pytest.main(args, plugins=[plugin])
        else:
            args += ["--tb=short", "-qq", "--disable-warnings"]
            # pytest's dots and FAILED lines mean nothing to a student; the table says it all.
            with contextlib.redirect_stdout(captured):
                code = pytest.main(args, plugins=[plugin])
    finally:
        if session.progress is not None:
            session.progress.close()
            session.progress = None
        # Reference runs started beside the submission that no check needed are stopped.
        finish = getattr(session, "finish", None)
        if finish is not None:
            finish(experiment)
    record = getattr(session, "_record", None)
    if record is not None:   # the benchmark's timeline (grader.session.TIMELINE_ENV)
        record({"event": "experiment", "experiment": experiment, "t": start_mark, "end": time.monotonic()})
    # Run in tier order, reported in the declared order.
    ordered = sorted(plugin.results, key=lambda r: plugin.order.get(r.name, len(plugin.order)))
    result = ExperimentResult(experiment, ordered, session.notes.get(experiment, []),
                              time.perf_counter() - start)
    if code not in (0, 1) or (plugin.checks and not plugin.results):
        tail = captured.getvalue().strip()[-1500:]
        result.error = (f"pytest exited with code {int(code)} while grading {experiment}"
                        + (f":\n{tail}" if tail else " (rerun with --verbose for pytest's output)"))
    return result
