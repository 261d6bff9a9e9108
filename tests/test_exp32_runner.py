"""Experiment 3.2's float reference network and runner."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from grader.kit import goldens
from grader.kit.compare import NETWORK_TOL, assert_close
from grader.kit.images import load_image
from grader.refnet.floatnet import FloatVGG19
from grader.kit.vgg_layout import LAYER_NAMES
from grader.kit.paths import DEFAULT_CAT, REFERENCE_DIR, REPO_ROOT, STU_UPLOAD_DIR
from grader.kit.weights import resolve_weights

RUNNER = REPO_ROOT / "exp_3_2_dlp" / "main_exp_3_2.py"


@pytest.mark.slow
def test_floatnet_agrees_with_the_exp31_reference_golden():
    """grader.refnet.floatnet and the 3.1 reference solution are independent implementations."""
    weights = resolve_weights(generate=False)
    stored = goldens.load(goldens.golden_path("exp_3_1_vgg", weights.sha256)).get("vgg_network")
    if stored is None:
        pytest.skip(f"no 3.1 golden for weights {weights.short()}")
    net = FloatVGG19.from_mat(weights.path, dtype=np.float32)
    outputs = net.forward(load_image(DEFAULT_CAT, net.image_mean))
    assert list(outputs) == list(LAYER_NAMES) and len(LAYER_NAMES) == 44
    assert outputs["flatten"].shape == (1, 25088) and outputs["Softmax"].shape == (1, 1000)
    assert_close(outputs["pool5"], stored["out"]["pool5"], "floatnet pool5", NETWORK_TOL)
    assert_close(outputs["Softmax"], stored["out"]["prob"], "floatnet softmax", NETWORK_TOL)
    assert set(net.seconds) == set(LAYER_NAMES)


def test_runner_stops_cleanly_on_the_skeleton(tmp_path):
    sub = tmp_path / "sub" / "exp_3_2_dlp"
    sub.mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "exp_3_2_dlp" / "skeleton" / "vgg19_demo.py", sub / "vgg19_demo.py")
    proc = subprocess.run([sys.executable, str(RUNNER), "--submission", str(sub.parent)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "TODO in exp_3_2_dlp/vgg19_demo.py: complete VGG19.build_model" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_runner_from_its_folder_uses_the_kits_stu_upload():
    """The book's way: cd exp_3_2_dlp && python main_exp_3_2.py."""
    proc = subprocess.run([sys.executable, RUNNER.name], cwd=RUNNER.parent, capture_output=True, text=True,
                          timeout=300)
    assert "does not exist" not in proc.stderr
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"Submission: {STU_UPLOAD_DIR / 'exp_3_2_dlp'}" in proc.stdout
    assert "TODO in exp_3_2_dlp/vgg19_demo.py" in proc.stderr and "Traceback" not in proc.stderr


def test_relative_submission_is_taken_from_the_current_folder(tmp_path):
    proc = subprocess.run([sys.executable, str(RUNNER), "--submission", "stu_upload"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert f"submission folder {tmp_path / 'stu_upload'} does not exist" in proc.stderr


@pytest.mark.slow
def test_runner_prints_top5_accuracy_and_the_cpu_dlp_comparison(tmp_path):
    listing = tmp_path / "list"
    listing.write_text("data/images/chelsea.png 281\n")
    proc = subprocess.run([sys.executable, str(RUNNER), "--submission", str(REFERENCE_DIR), "--file-list",
                           str(listing)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "Top 5 of" in out and "accuracy1:" in out and "accuracy5:" in out
    if resolve_weights(generate=False).kind != "real":
        assert "MEANINGLESS" in out
    row = next(line for line in out.splitlines() if line.startswith("chelsea.png"))
    fields = row.split()
    max_dp, l1, kl = float(fields[4]), float(fields[5]), float(fields[6])
    assert 0 < max_dp < 0.5 and 0 < l1 < 1 and 0 <= kl < 0.5 and fields[-1] == "yes"
    assert "MODELLED" in out and "round trips cost x" in out and "CONVOLUTION" in out
    assert "CPU side (1 image):  conv1_1 took" in out and "whole network" in out
