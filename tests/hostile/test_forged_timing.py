"""Forging a speed-up: the grader's clocks, not the student's, decide the 3.3 speed check.

The attack: ``forward_speedup`` is the book's loop, and the submission patches
``time.perf_counter``, ``time.time`` and ``time.monotonic`` so that every interval around
``forward_speedup`` looks 150 times shorter. Timed inside the student's process, that is a
150x "speed-up". The defence (``grader.timing_server``, ``grader.kit.timing``): the grader
sends each timed input only when it starts its own clock and stops it when the output is
back, so the check sees the true ratio, about 1x, and fails with it.

The check's own rules are tested fast, on made-up timed calls: a raw loop that sleeps
gains nothing (CPU time counts), a raw loop that burns CPU is capped by the grader's
own loop estimate, a wrong fast output is refused, and an untimed run fails with
"could not time". Two slow tests grade the forged submission and an honest copy of the
reference through the sandbox.
"""
from __future__ import annotations

import io
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from grader.experiments import CheckContext
from grader.experiments import exp_3_3_style_transfer as exp33
from grader.kit.compare import CheckFailure
from grader.kit.paths import REPO_ROOT
from grader.kit.speedtest import SPEED_SHAPE, speed_inputs
from grader.timing_server import TimedCall, TimedRun
from gradeutil import reference_copy  # tests/, on sys.path

EXP = "exp_3_3_style_transfer"

FORGED_CLOCKS = '''

import time as _time

_real_clocks = {_name: getattr(_time, _name) for _name in ("perf_counter", "time", "monotonic")}
_hidden = [0.0]   # real seconds spent in forward_speedup that the clocks no longer show


def _forged(real):
    def clock():
        return real() - _hidden[0]
    return clock


for _name, _real in _real_clocks.items():
    setattr(_time, _name, _forged(_real))

_original_forward_speedup = ConvolutionalLayer.forward_speedup


def _hostile_forward_speedup(self, input):
    if tuple(getattr(input, "shape", ()))[1:2] != (256,):
        return _original_forward_speedup(self, input)
    start = _real_clocks["perf_counter"]()
    try:
        return self.forward_raw(input)          # the book's loop: no speed-up at all
    finally:
        _hidden[0] += (_real_clocks["perf_counter"]() - start) * (1 - 1 / 150)


ConvolutionalLayer.forward_speedup = _hostile_forward_speedup
'''


def forged_submission(root: Path) -> Path:
    folder = reference_copy(root / EXP, EXP)
    path = folder / "layers_2.py"
    path.write_text(path.read_text(encoding="utf-8") + FORGED_CLOCKS, encoding="utf-8")
    return root


# ----- the check's rules on made-up timed calls (fast) ----------------------------------------

@dataclass
class _Outcome:
    status: str = "ok"
    error: str = ""
    outputs: dict = field(default_factory=lambda: {"timed_calls": np.array([8.0])})
    seconds: float | None = 1.0
    extra: dict = field(default_factory=dict)
    timed: object = None


class _Session:
    """Just what CheckContext asks of a grading session."""

    def __init__(self, outcome):
        self._outcome = outcome
        self._case = next(c for c in exp33.visible_cases() if c.name == "speed_test")

    def case(self, experiment, name):
        return self._case

    def outcome(self, experiment, name):
        return self._outcome


@pytest.fixture(scope="module")
def honest_io():
    """One timed input of the test shape and the right conv and pool outputs for it."""
    data = speed_inputs(SPEED_SHAPE)
    x = np.random.default_rng(7).standard_normal(SPEED_SHAPE)
    return x, exp33.reference_conv(x, data["weight"], data["bias"]), exp33.reference_pool(x)


def _run(honest_io, raw_wall=8.0, raw_cpu=7.9, fast=0.05, fast_output=None) -> TimedRun:
    x, conv, pool = honest_io
    calls = [TimedCall("conv_raw", x, conv, raw_wall, raw_cpu)]
    calls += [TimedCall("conv_fast", x, conv if fast_output is None else fast_output, fast + i * 0.01, fast)
              for i in range(3)]
    calls += [TimedCall("pool_raw", x, pool, 0.5, 0.5)] + [TimedCall("pool_fast", x, pool, 0.01, 0.01)] * 3
    return TimedRun(calls=calls, connected=True)


def _check(outcome) -> str:
    check = next(c for c in exp33.checks(exp33.visible_cases()) if c.name == "speed_test")
    return check.run(CheckContext(_Session(outcome), EXP, check))


def _ratio(message: str) -> float:
    return float(re.search(r"conv forward raw .*?ratio ([0-9.]+)x", message).group(1))


# The grader's estimate of the book's loop conv, fixed here: the real one is timed on the
# machine (about 4 s on two idle cores) and would make these ratios depend on its load.
LOOP_ESTIMATE = 6.0
REAL_LOOP_ESTIMATE = exp33.loop_conv_estimate


@pytest.fixture(autouse=True)
def fixed_loop_estimate(monkeypatch):
    monkeypatch.setattr(exp33, "loop_conv_estimate", lambda *args, **kwargs: LOOP_ESTIMATE)


def test_an_honest_speed_up_passes_and_says_who_timed_it(honest_io):
    message = _check(_Outcome(timed=_run(honest_io)))
    assert "timed by the grader" in message and "best of 3" in message and "7.900 s CPU" in message
    assert _ratio(message) == pytest.approx(7.9 / 0.05, rel=1e-3)


def test_a_raw_loop_that_sleeps_gains_nothing(honest_io):
    # 8 s of wall time, but only 0.3 s of CPU against a 1 s "speed-up": the ratio is the
    # book's loop (the estimate, 6 s) over 1 s, not 8 s over 1 s.
    with pytest.raises(CheckFailure, match="below the required 10x") as failure:
        _check(_Outcome(timed=_run(honest_io, raw_wall=8.0, raw_cpu=0.3, fast=1.0)))
    assert _ratio(str(failure.value)) == pytest.approx(LOOP_ESTIMATE / 1.0, rel=1e-2)
    assert "faster than the book's loop" in str(failure.value)


def test_a_vectorised_raw_is_no_handicap(honest_io):
    # A correct forward_raw without loops (0.03 s): the speed-up counts against the book's loop.
    message = _check(_Outcome(timed=_run(honest_io, raw_wall=0.03, raw_cpu=0.03, fast=0.05)))
    assert _ratio(message) == pytest.approx(LOOP_ESTIMATE / 0.05, rel=1e-3)


def test_a_raw_loop_that_burns_cpu_is_capped_by_the_graders_own_loop(honest_io):
    # 1e6 s of busy raw against a 50 s "speed-up": the raw counts RAW_CAP x the grader's estimate.
    with pytest.raises(CheckFailure, match="below the required 10x") as failure:
        _check(_Outcome(timed=_run(honest_io, raw_wall=1e6, raw_cpu=1e6, fast=50.0)))
    message = str(failure.value)
    assert f"raw counted as {exp33.RAW_CAP:g}x the grader's own estimate of the book's loop" in message
    assert _ratio(message) < 10


def test_a_wrong_fast_output_cannot_be_timed_as_fast(honest_io):
    _, conv, _ = honest_io
    with pytest.raises(CheckFailure, match="forward_speedup on the grader's timed input: .* elements differ"):
        _check(_Outcome(timed=_run(honest_io, fast_output=np.zeros_like(conv))))


def test_missing_timed_calls_fail_with_could_not_time(honest_io):
    run = _run(honest_io)
    run.calls = [c for c in run.calls if c.label != "conv_fast"]
    run.errors.append("the submission's process ended during timed call 'conv_fast'")
    with pytest.raises(CheckFailure, match="could not time the speed-up: .*conv_fast.*ended during timed call"):
        _check(_Outcome(timed=run))
    with pytest.raises(CheckFailure, match="could not time the speed-up: the grader's timing server did not run"):
        _check(_Outcome(timed=None))


def test_a_child_that_cannot_reach_the_socket_fails_with_could_not_time():
    outcome = _Outcome(status="error", outputs={},
                       error="TimingError: could not reach the grader's timing socket in /w: [Errno 2] No such file",
                       timed=TimedRun(errors=["the submission's process never asked the grader for a timed call"]))
    with pytest.raises(CheckFailure, match="could not time the speed-up: TimingError: could not reach .* "
                                           r"\(grader: the submission's process never asked"):
        _check(outcome)


def test_the_submissions_own_failure_keeps_its_words():
    outcome = _Outcome(status="error", outputs={}, error="NotImplementedError (a TODO is not done yet)",
                       timed=TimedRun(connected=True))
    with pytest.raises(CheckFailure, match="NotImplementedError"):
        _check(outcome)


def test_the_loop_estimate_is_of_the_books_loop_order():
    estimate = REAL_LOOP_ESTIMATE(SPEED_SHAPE, channels=1)
    # 245760 np.sum calls on [256, 3, 3] windows: between 0.2 s (a fast machine) and minutes.
    assert 0.2 < estimate < 600


# ----- through the sandbox (slow) ------------------------------------------------------------

def _speed_check(submission: Path):
    from grader.session import GradingSession
    from grader.kit.weights import resolve_weights
    session = GradingSession(submission, resolve_weights(generate=False), visible_only=True)
    session.progress = io.StringIO()
    check = next(c for c in exp33.checks(session.cases(EXP)) if c.name == "speed_test")
    return check, CheckContext(session, EXP, check)


FORGERY_IN_PROCESS = """
import sys
from pathlib import Path
from grader.kit import speedtest
from grader.kit.submission import load_module
layers_2 = load_module(Path(sys.argv[1]), "exp_3_3_style_transfer", "layers_2")
print(speedtest.run_speed_test(layers_2, (1, 256, 6, 8), backward=False).conv.forward_ratio)
"""


@pytest.mark.slow
def test_forged_clocks_fool_a_timing_in_the_students_process(tmp_path):
    """The attack is real: the in-process speed test (the runner's) reports a large speed-up."""
    root = forged_submission(tmp_path / "sub")
    proc = subprocess.run([sys.executable, "-c", FORGERY_IN_PROCESS, str(root)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) > 20


@pytest.mark.slow
def test_forged_clocks_fail_the_graders_speed_check_with_the_true_ratio(tmp_path):
    check, ctx = _speed_check(forged_submission(tmp_path / "sub"))
    with pytest.raises(CheckFailure) as failure:
        check.run(ctx)
    message = str(failure.value)
    assert "below the required 10x" in message and "timed by the grader" in message, message
    # forward_speedup is forward_raw: the grader measures about 1x.
    assert _ratio(message) < 3, message
    # The other checks of the group are unaffected.
    other = next(c for c in exp33.checks(ctx.session.cases(EXP)) if c.name == "conv_k3_p1_s1_speedup")
    assert "matches" in other.run(CheckContext(ctx.session, EXP, other))


@pytest.mark.slow
def test_an_honest_student_copy_of_the_reference_passes_the_speed_check(tmp_path):
    root = tmp_path / "sub"
    reference_copy(root / EXP, EXP)
    check, ctx = _speed_check(root)
    message = check.run(ctx)
    assert "timed by the grader" in message and _ratio(message) >= exp33.SPEEDUP_REQUIRED, message
