"""The runners as a student runs them (from the experiment's folder), their ETA and golden checks."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from grader.kit import goldens, netloop
from grader.kit.paths import GOLDEN_DIR, REPO_ROOT, STU_UPLOAD_DIR
from grader.kit.vgg_layout import LAYER_NAMES

EXP = "exp_3_1_vgg"
RUNNER_31 = REPO_ROOT / EXP / "main_exp_3_1.py"


def runner_module():
    spec = importlib.util.spec_from_file_location("main_exp_3_1_under_test", RUNNER_31)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_31(*args: str, cwd: Path = REPO_ROOT / EXP, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUNNER_31), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


# ----- the ETA -----------------------------------------------------------------------------

@pytest.mark.parametrize("seconds,text", [(0.2, "under 1 s"), (42, "42 s"), (540, "9 min"), (3900, "1 h 05 min")])
def test_format_duration(seconds, text):
    assert netloop.format_duration(seconds) == text


def test_progress_prints_the_whole_network_estimate_once_after_the_first_layer():
    names = list(LAYER_NAMES)
    lines: list[str] = []
    hook = netloop.progress_printer(names, lines.append)
    for index, name in enumerate(names, start=1):
        hook(index, name, np.zeros((1, 4)), 12.3 if index == 1 else 0.01)
    work = netloop.layer_work(names)
    expected = netloop.whole_network_estimate(12.3, work)
    assert lines[1] == f"  conv1_1 took 12.3 s; whole network about {netloop.format_duration(expected)}"
    assert sum("whole network" in line for line in lines) == 1
    assert lines[-1].startswith("  forward total:")
    # Every later layer costs something: the estimate is longer than the first layer alone.
    assert expected > 12.3 * 5


def test_estimate_from_the_first_layer_scales_with_its_time():
    work = netloop.layer_work(list(LAYER_NAMES))
    assert netloop.whole_network_estimate(2.0, work) == pytest.approx(2 * netloop.whole_network_estimate(1.0, work))
    # A loop conv costs per output element, so conv1_2 (64 input channels) is not 21x conv1_1 (3).
    assert 1 < work[2] / work[0] < 3


def test_no_estimate_without_eta():
    lines: list[str] = []
    hook = netloop.progress_printer(["a", "b"], lines.append, eta=False)
    hook(1, "a", np.zeros(3), 5.0)
    assert len(lines) == 1 and "whole network" not in lines[0]


def test_runner_fingerprints_match_the_graders():
    from grader.drivers import fingerprint as driver_fingerprint
    rng = np.random.default_rng(3)
    for shape in [(1, 64, 14, 14), (1, 25088), (1, 10)]:
        arr = rng.standard_normal(shape).astype(np.float32)
        mine, theirs = {}, {}
        netloop.fingerprint(mine, "layer", arr)
        driver_fingerprint(theirs, "layer", arr)
        assert mine.keys() == theirs.keys()
        for key in mine:
            np.testing.assert_array_equal(mine[key], theirs[key])


# ----- the golden checks of the 3.1 runner ----------------------------------------------------

def golden_weights() -> SimpleNamespace:
    """Weights as the runner sees them, for the first 3.1 network golden in data/golden."""
    path = sorted((GOLDEN_DIR / EXP).glob("weights-*.npz"))[0]
    sha = path.stem.split("-", 1)[1]
    return SimpleNamespace(sha256=sha, kind="synthetic", short=lambda: sha)


def golden_outputs(weights) -> dict:
    stored = goldens.load(goldens.golden_path(EXP, weights.sha256))["vgg_network"]["out"]
    return {key: np.array(value) for key, value in stored.items()}


def test_golden_checks_pass_on_the_golden_itself():
    runner = runner_module()
    weights = golden_weights()
    ok, lines = runner.golden_checks(golden_outputs(weights), weights, runner.DEFAULT_CAT)
    assert ok and len(lines) == 3
    assert lines[0].startswith("pool5 check: pool5: matches")
    assert lines[1].startswith("softmax check: softmax: matches")
    want = int(np.argmax(golden_outputs(weights)["prob"]))
    assert lines[2].startswith(f"top-1 check: class {want}, the same as the golden's")
    assert "not a classification" in lines[2]


def test_a_flatten_bug_is_reported_with_both_top1_classes():
    """pool5 right, softmax wrong from flatten on: the runner must not let the top-5 speak alone."""
    runner = runner_module()
    weights = golden_weights()
    outputs = golden_outputs(weights)
    want = int(np.argmax(outputs["prob"]))
    other = (want + 7) % outputs["prob"].size
    prob = outputs["prob"].copy()
    prob[0, other] = prob[0, want] * 2
    outputs["prob"] = prob / prob.sum()
    for name in ("flatten", "fc6", "relu6", "fc7", "relu7", "fc8", "Softmax"):
        outputs[f"sample/{name}"] = outputs[f"sample/{name}"] + 1.0
    ok, lines = runner.golden_checks(outputs, weights, runner.DEFAULT_CAT)
    assert not ok
    assert lines[0].startswith("pool5 check: pool5: matches")
    assert lines[1].startswith("softmax check FAILED") and "first layer that differs: flatten" in lines[1]
    assert f"your top-1 is class {other}, the golden's is {want}" in lines[2]


def test_golden_checks_are_skipped_for_another_image(tmp_path):
    runner = runner_module()
    ok, lines = runner.golden_checks({}, golden_weights(), tmp_path / "dog.png")
    assert ok and lines == ["golden check skipped: goldens exist only for the default cat image"]


# ----- the runners run as the book says: from the experiment's folder ------------------------

def test_31_runner_from_its_folder_uses_the_kits_stu_upload():
    proc = run_31(timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "does not exist" not in proc.stderr
    assert "Not finished yet" in proc.stderr and "VGG19.build_model" in proc.stderr
    assert f"Submission: {STU_UPLOAD_DIR / EXP}" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_31_runner_takes_a_relative_submission_from_the_current_folder(tmp_path):
    sub = tmp_path / "mine" / EXP
    shutil.copytree(REPO_ROOT / EXP / "skeleton", sub)
    proc = run_31("--submission", "mine", cwd=tmp_path, timeout=300)
    assert proc.returncode == 1 and "Not finished yet" in proc.stderr
    assert f"Submission: {sub}" in proc.stdout
    missing = run_31("--submission", "stu_upload", cwd=tmp_path, timeout=300)
    assert missing.returncode == 2
    assert f"submission folder {tmp_path / 'stu_upload'} does not exist" in missing.stderr


def test_33_runner_from_its_folder_uses_the_kits_stu_upload(tmp_path):
    folder = REPO_ROOT / "exp_3_3_style_transfer"
    proc = subprocess.run([sys.executable, "main_exp_3_3.py", "--steps", "1", "--skip-speed-test", "--output",
                           str(tmp_path / "out")], cwd=folder, capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert "does not exist" not in text
    assert "TODO" in text and str(STU_UPLOAD_DIR / "exp_3_3_style_transfer") in text
    assert proc.returncode != 0 and "Traceback" not in text


@pytest.mark.slow
def test_31_runner_flatten_bug_says_the_top1_differs(tmp_path):
    from tests.gradeutil import broken_copy
    sub = broken_copy(tmp_path, EXP, {"layers_2.py": [("np.transpose(input, [0, 2, 3, 1])",
                                                      "np.transpose(input, [0, 1, 2, 3])")]})
    proc = run_31("--submission", str(sub))
    assert proc.returncode == 1, proc.stderr[-2000:]
    out = proc.stdout
    assert "conv1_1 took" in out and "whole network" in out
    assert "pool5 check: pool5: matches" in out
    assert "softmax check FAILED" in out and "first layer that differs: flatten" in out
    assert "top-1 check FAILED: your top-1 is class" in out and "the golden's is" in out
    assert "differs from the golden" in proc.stderr
    if "SYNTHETIC" in out.splitlines()[0]:
        assert "NOT a classification of the image" in out


@pytest.mark.slow
def test_31_runner_on_the_reference_from_its_folder_matches_the_golden():
    proc = run_31("--submission", "../grader/reference")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "conv1_1 took" in out
    assert "pool5 check: pool5: matches" in out and "softmax check: softmax: matches" in out
    assert "the same as the golden's" in out and "Top-5 of chelsea.png" in out
