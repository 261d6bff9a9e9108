"""What cuts the grader's own cost: reference runs beside the submission, merged and cancellable,
the child's timeline read as hostile input, and the goldens' shortcuts giving the same numbers."""
from __future__ import annotations

import contextlib
import io
import json
import sys
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from grader import groups, session as session_mod
from grader.background import Worker
from grader.groups import CaseOutcome, GroupRun, read_timeline
from grader.sandbox import Limits, run_sandboxed

EXP33 = "exp_3_3_style_transfer"


# ----- background jobs and cancellation ---------------------------------------------------

def test_worker_runs_jobs_in_order_and_skips_cancelled_ones():
    worker, seen = Worker(), []
    gate = threading.Event()
    first = worker.submit(lambda cancel: (gate.wait(5), seen.append("first"))[1])
    skipped = worker.submit(lambda cancel: seen.append("skipped"))
    last = worker.submit(lambda cancel: seen.append("last") or 42)
    skipped.cancel.set()
    gate.set()
    assert last.result() == 42
    first.result()
    with pytest.raises(CancelledError):
        skipped.result()
    assert seen == ["first", "last"]


def test_worker_hands_over_a_job_exception():
    job = Worker().submit(lambda cancel: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        job.result()


def test_sandboxed_child_stops_when_cancelled(tmp_path):
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    start = time.monotonic()
    result = run_sandboxed([sys.executable, "-c", "import time; time.sleep(60)"], workdir=tmp_path,
                           limits=Limits(wall_seconds=60, cpu_seconds=60), drop_privileges=False, cancel=cancel)
    assert result.status == "cancelled", result
    assert time.monotonic() - start < 10
    assert {"prepare", "spawn", "exit"} <= set(result.timeline)


# ----- the child's timeline ---------------------------------------------------------------

def _out(tmp_path: Path, text: str | bytes) -> Path:
    out = tmp_path / "out"
    out.mkdir(parents=True)
    data = text.encode() if isinstance(text, str) else text
    (out / "_timeline.json").write_bytes(data)
    return out


def test_timeline_keeps_numbers_only(tmp_path):
    doc = {"started": 1.5, "imported": "soon", "done": True, "cpu_done": -1,
           "cases": {"a": {"start": 2.0, "end": 3.0, "weights": "\x1b[31m", "cpu": 0.5}, "b": [1, 2]}}
    found = read_timeline(_out(tmp_path, json.dumps(doc)))
    assert found["started"] == 1.5
    assert found["imported"] is None and found["done"] is None and found["cpu_done"] is None
    assert found["cases"] == {"a": {"start": 2.0, "end": 3.0, "cpu": 0.5, "weights": None}}


@pytest.mark.parametrize("content", ["not json", "[1, 2]", "{" * 5000, b"\xff\xfe" * 10])
def test_timeline_garbage_is_ignored(tmp_path, content):
    assert read_timeline(_out(tmp_path, content)) == {}


def test_timeline_link_or_oversized_file_is_ignored(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"started": 1.0}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "_timeline.json").symlink_to(secret)
    assert read_timeline(out) == {}
    big = tmp_path / "big"
    assert read_timeline(_out(big, json.dumps({"started": 1.0, "pad": "x" * groups.MAX_TIMELINE_BYTES}))) == {}
    assert read_timeline(tmp_path / "missing") == {}


# ----- the session: reference runs merged, started beside the submission, cancelled --------

class FakeRuns:
    """Stands in for groups.run_group: records each call, answers every case with zeros."""

    def __init__(self, hold: float = 0.0):
        self.calls: list[dict] = []
        self.hold = hold
        self.lock = threading.Lock()

    def __call__(self, submission, experiment, spec, cases, resources, *, trusted=False, golden=False,
                 cancel=None, **kwargs):
        call = {"group": spec.name, "trusted": trusted, "golden": golden, "cases": [c.name for c in cases],
                "cancelled": False}
        with self.lock:
            self.calls.append(call)
        if self.hold and trusted and cancel is not None:
            call["cancelled"] = cancel.wait(self.hold)
        outcomes = {c.name: CaseOutcome("ok", {"x": np.zeros(1)}) for c in cases}
        return GroupRun(experiment, spec.name, outcomes, None, 0.0)

    def reference(self) -> list[dict]:
        return [c for c in self.calls if c["trusted"]]


@pytest.fixture
def fake_session(monkeypatch, tmp_path):
    def make(hold: float = 0.0, **env):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        fake = FakeRuns(hold)
        monkeypatch.setattr(session_mod, "run_group", fake)
        weights = SimpleNamespace(path=tmp_path / "w.mat", sha256="0" * 64, kind="custom", short=lambda: "000")
        session = session_mod.GradingSession(tmp_path / "submission", weights, seed=7)
        assert session.hidden, "these tests need grader/reference/"
        return session, fake
    return make


def _wait_for(predicate, seconds: float = 5.0) -> None:
    end = time.monotonic() + seconds
    while not predicate() and time.monotonic() < end:
        time.sleep(0.01)


def test_reference_starts_beside_the_submission_and_merges_groups_by_cost(fake_session):
    session, fake = fake_session()
    hidden_conv = next(c.name for c in session.cases(EXP33) if c.hidden and c.group == "loops")
    session.outcome(EXP33, "conv_k3_p1_s1_raw")
    _wait_for(lambda: fake.reference())
    cheap = fake.reference()
    assert [c["group"] for c in cheap] == ["loops+losses+fast"] and cheap[0]["golden"]
    assert hidden_conv in cheap[0]["cases"]
    # The golden is the background run's: no second reference process.
    assert "x" in session.golden(EXP33, hidden_conv)
    session.golden(EXP33, next(c.name for c in session.cases(EXP33) if c.hidden and c.group == "fast"))
    assert len(fake.reference()) == 1
    # The whole networks start only once the submission's first network group does.
    session.outcome(EXP33, "network_backward")
    session.golden(EXP33, "hidden_network_speedup")
    assert [c["group"] for c in fake.reference()] == ["loops+losses+fast", "transfer+speedup_network"]
    session.finish(EXP33)


def test_unneeded_reference_run_is_cancelled_at_the_end(fake_session):
    session, fake = fake_session(hold=30.0)
    session.outcome(EXP33, "network_backward")
    _wait_for(lambda: fake.reference())
    start = time.monotonic()
    session.finish(EXP33)
    assert time.monotonic() - start < 10
    assert fake.reference()[0]["cancelled"] is True
    assert not session._pending


def test_switches_turn_prefetch_and_shortcuts_off(fake_session):
    session, fake = fake_session(AICS_GRADER_PREFETCH="0", AICS_GRADER_GOLDEN_SHORTCUTS="0")
    hidden_conv = next(c.name for c in session.cases(EXP33) if c.hidden and c.group == "loops")
    session.outcome(EXP33, "conv_k3_p1_s1_raw")
    time.sleep(0.1)
    assert fake.reference() == []
    session.golden(EXP33, hidden_conv)
    assert [(c["group"], c["golden"]) for c in fake.reference()] == [("loops", False)]


# ----- the goldens' shortcuts compute the same numbers -------------------------------------

def test_speed_up_network_gives_the_loops_golden(monkeypatch):
    """For a golden the reference's speed-up layers replace its loops: the same function in float64."""
    from grader.drivers import exp_3_3_style_transfer as driver
    from grader.kit.paths import REFERENCE_DIR
    from grader.kit.weights import resolve_weights
    import scipy.io
    import scipy.io.matlab
    # The driver puts its loadmat hook in place; the test process gets scipy's back afterwards.
    monkeypatch.setattr(scipy.io, "loadmat", scipy.io.loadmat)
    monkeypatch.setattr(scipy.io.matlab, "loadmat", scipy.io.matlab.loadmat)
    rng = np.random.default_rng(1)
    inputs = {"input": rng.uniform(-100, 100, (1, 3, 8, 8))}   # small: the loops are the book's
    weights = str(resolve_weights().path)
    out = {}
    for golden in (False, True):
        ctx = driver.Context(submission=REFERENCE_DIR, resources={"weights": weights}, golden=golden)
        with contextlib.redirect_stdout(io.StringIO()):
            out[golden] = driver.network_backward(ctx, {}, inputs)
    for key in ("feature", "grad"):
        scale = np.max(np.abs(out[False][key]))
        assert scale > 0 and np.max(np.abs(out[True][key] - out[False][key])) <= 1e-10 * scale, key


# ----- the benchmark's arithmetic -------------------------------------------------------

def _bench():
    import importlib.util
    from grader.kit.paths import REPO_ROOT
    spec = importlib.util.spec_from_file_location("bench_grading", REPO_ROOT / "benchmarks" / "bench_grading.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_breakdown_adds_up_to_the_process_wall_time():
    """Every second of the process lands in one category; a prefetched golden costs its wait only."""
    def group(name, reference, start, end, cases=(), **extra):
        child = {"started": start + 0.1, "imported": start + 0.2, "done": end - 0.1,
                 "cases": {c: {"start": s, "end": e, "cpu": e - s, "weights": w} for c, s, e, w in cases}}
        return {"event": "group", "experiment": "e", "group": name, "reference": reference,
                "timeline": {"start": start, "spawn": start + 0.05, "end": end, "cpu": end - start, "child": child},
                **extra}
    records = [{"event": "session", "t": 1.0},
               group("layers", False, 2.0, 3.0, [("a", 2.2, 2.9, 0.0)]),
               group("layers", True, 2.0, 6.0, [("h", 2.2, 5.9, 0.0)]),   # ran beside, 0.5 s waited
               {"event": "golden_wait", "experiment": "e", "group": "layers", "t": 3.0, "end": 3.5},
               group("network", False, 3.5, 9.0, [("n", 3.7, 8.9, 1.0)]),
               group("network", True, 4.0, 9.0, [], unused=True),
               {"event": "experiment", "experiment": "e", "t": 1.5, "end": 9.5}]
    run = {"spawn": 0.0, "end": 10.0, "cpu": 20.0, "records": records, "scores": {"e": 100}}
    got = _bench().breakdown(run)
    total = got["total"]
    assert sum(total.values()) == pytest.approx(got["wall"])
    assert total["golden computation"] == pytest.approx(0.5)
    assert total["weights loading"] == pytest.approx(1.0)
    assert total["student compute"] == pytest.approx(0.7 + 5.2 - 1.0)
    assert total["process start + imports"] == pytest.approx(1.5)
    assert got["own_cost"] == pytest.approx(10.0 - total["student compute"])
