"""Experiment 3.2 quant parameters: which file goes with which weights, and calibration."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import pycnml
from grader.kit import quantparams
from grader.refnet.floatnet import load_image
from grader.kit.vgg_layout import PARAM_LAYERS
from grader.kit.paths import DEFAULT_CAT, REPO_ROOT
from grader.kit.weights import REAL_SHA256, SYNTHETIC_SHA256, WeightsInfo, resolve_weights


def info(sha: str, kind: str) -> WeightsInfo:
    return WeightsInfo(Path("/nonexistent/vgg19.mat"), kind, sha, "test")


def test_real_weights_get_the_course_file():
    assert quantparams.resolve_quant_params(info(REAL_SHA256, "real")) == quantparams.COURSE_QUANT_FILE


def test_course_file_is_never_used_with_other_weights():
    synthetic = quantparams.resolve_quant_params(info(SYNTHETIC_SHA256, "synthetic"))
    assert synthetic == quantparams.committed_path(SYNTHETIC_SHA256) and synthetic.is_file()
    assert synthetic != quantparams.COURSE_QUANT_FILE
    custom_sha = "0" * 64
    with pytest.raises(FileNotFoundError) as err:
        quantparams.resolve_quant_params(info(custom_sha, "custom"))
    text = str(err.value)
    assert "python -m grader calibrate" in text and quantparams.quant_file_name(custom_sha) in text
    assert "vgg19_quant_param_new" not in text


@pytest.mark.parametrize("path", [quantparams.COURSE_QUANT_FILE, quantparams.committed_path(SYNTHETIC_SHA256)],
                         ids=["course", "synthetic"])
def test_quant_files_hold_19_pairs_with_scale_in_1_2(path):
    inputs, filters = quantparams.load_quant_params(path)
    assert len(inputs) == len(filters) == 19
    for position, scale in inputs + filters:
        assert 1.0 <= scale < 2.0 and -32 <= position <= 32


def test_quant_tool_reproduces_the_course_files_first_entries():
    """PYCNML.md's checks: conv1_1's input (max 255 - 103.939) and MNIST fc1's input (max 255)."""
    course_in, _ = quantparams.load_quant_params(quantparams.COURSE_QUANT_FILE)
    qp = pycnml.QuantTool().getQuantParam(np.array([-(255 - 103.939), 3.0]), "conv1_1")
    assert qp.position == course_in[0][0] == 1 and qp.scale == pytest.approx(course_in[0][1], rel=1e-5)
    mnist = np.load(REPO_ROOT / "data" / "course" / "mnist_mlp_quant_param.npz")["input"]
    qp = pycnml.QuantTool().getQuantParam(np.array([255.0]), "fc1")
    assert (qp.position, qp.scale) == (int(mnist[0]), pytest.approx(float(mnist[1]), rel=1e-5))


def test_quant_tool_keeps_a_running_max_per_layer():
    tool = pycnml.QuantTool()
    first = tool.getQuantParam(np.array([10.0]), "a")
    wider = tool.getQuantParam(np.array([-40.0]), "a")
    kept = tool.getQuantParam(np.array([1.0]), "a")
    other = tool.getQuantParam(np.array([1.0]), "b")
    assert kept == wider != first and other != wider
    assert 127 * 2.0 ** wider.position / wider.scale == pytest.approx(40.0)


@pytest.mark.slow
def test_calibrate_cli_writes_a_valid_file(tmp_path):
    """One image through the float net: filter pairs equal the committed file's (weights only),
    conv1_1's input pair is the image's own range, and no input range exceeds the 3-image one."""
    weights = resolve_weights(generate=False)
    if weights.kind == "real":
        pytest.skip("the committed calibration belongs to the synthetic weights")
    out = tmp_path / "q.npz"
    proc = subprocess.run([sys.executable, "-m", "grader", "calibrate", "--images", str(DEFAULT_CAT),
                           "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {out}" in proc.stdout
    with np.load(out) as data:
        assert sorted(data.files) == ["filter", "input"]
        assert data["input"].shape == data["filter"].shape == (38,) and data["input"].dtype == np.float64
    inputs, filters = quantparams.load_quant_params(out)
    committed_in, committed_filters = quantparams.load_quant_params(quantparams.committed_path(weights.sha256))
    assert filters == committed_filters
    params = scipy.io.loadmat(str(weights.path))
    mean = np.mean(params["normalization"][0][0][0], axis=(0, 1))
    image_max = float(np.max(np.abs(load_image(DEFAULT_CAT, mean))))
    first = pycnml.QuantTool().getQuantParam(np.array([image_max]), "x")
    assert inputs[0] == (first.position, pytest.approx(first.scale, rel=1e-5))
    conv1_1 = params["layers"][0][0][0][0][0][0][0]
    fq = pycnml.QuantTool().getQuantParam(np.transpose(conv1_1, [3, 2, 0, 1]).astype(np.float64), "w")
    assert filters[0] == (fq.position, pytest.approx(fq.scale, rel=1e-6))
    for (p1, s1), (p3, s3) in zip(inputs, committed_in):
        assert 127 * 2.0 ** p1 / s1 <= 127 * 2.0 ** p3 / s3 * (1 + 1e-9)
    assert len(PARAM_LAYERS) == 19
