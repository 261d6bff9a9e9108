"""Experiment 3.1 graded end to end: the reference, the pristine skeleton, planted bugs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from grader.kit.paths import REFERENCE_DIR, REPO_ROOT, STU_UPLOAD_DIR
from tests import gradeutil
from tests.gradeutil import checks

EXP = "exp_3_1_vgg"


def grade(submission: Path, tmp_path: Path, *extra: str) -> dict:
    return gradeutil.grade(submission, tmp_path, EXP, *extra)


def broken_copy(tmp_path: Path, edits: dict[str, list[tuple[str, str]]]) -> Path:
    """A reference copy with planted bugs; its layers_2.py is the student-style vectorised one."""
    return gradeutil.broken_copy(tmp_path, EXP, edits)


@pytest.mark.slow
def test_reference_scores_100_with_hidden_checks(tmp_path):
    doc = grade(REFERENCE_DIR, tmp_path)
    assert doc["total"] == 100 and doc["max_total"] == 100
    exp = doc["experiments"][0]
    assert exp["score"] == 100
    assert doc["hidden_checks"]["enabled"] and isinstance(doc["hidden_checks"]["seed"], int)
    names = {c["name"] for c in exp["checks"]}
    assert {"vgg19_pool5", "vgg19_softmax", "vgg19_top1", "vgg19_forward", "vgg19_evaluate"} <= names
    assert any(n.startswith("hidden_conv") for n in names)
    assert doc["weights"]["kind"] in ("synthetic", "real", "custom") and len(doc["weights"]["sha256"]) == 64
    for check in exp["checks"]:
        assert set(check) >= {"name", "tier", "passed", "message", "seconds"}


def test_pristine_stu_upload_scores_0_with_clean_messages(tmp_path):
    doc = grade(STU_UPLOAD_DIR, tmp_path, "--visible-only")
    exp = doc["experiments"][0]
    assert exp["score"] == 0 and not exp.get("error")
    by_name = checks(doc)
    conv = by_name["conv_k3_p1_s1"]
    assert not conv["passed"]
    assert "NotImplementedError" in conv["message"] and "exp_3_1_vgg/layers_2.py" in conv["message"]
    assert "ConvolutionalLayer.forward" in conv["message"]
    # The whole network is not run once tier 60 failed: it could not count.
    for name in ("vgg19_pool5", "vgg19_softmax", "vgg19_top1", "vgg19_forward", "vgg19_evaluate"):
        assert not by_name[name]["passed"] and by_name[name]["message"] == "skipped: tier 60 failed"
    assert "Traceback" not in doc["_stdout"]


# (name, edits, expected score, a check that must fail, words its message must contain)
BROKEN = [
    ("conv_missing_bias", {"layers_2.py": [(") + self.bias\n", ")\n")]}, 0, "conv_k3_p1_s1", "worst element"),
    ("pool_mean_not_max", {"layers_2.py": [("windows.max(axis=(4, 5))", "windows.mean(axis=(4, 5))")]}, 0,
     "pool_k2_s2", "elements differ"),
    ("softmax_whole_batch", {"layers_1.py": [("np.sum(input_exp, axis=1, keepdims=True)", "np.sum(input_exp)")]}, 0,
     "softmax_forward", "elements differ"),
    ("load_weights_wrong_transpose", {"vgg_cpu.py": [("np.transpose(weight, [2, 0, 1, 3])",
                                                      "np.transpose(weight, [2, 1, 0, 3])")]}, 60,
     "vgg19_pool5", "first layer that differs: conv1_1"),
    ("flatten_wrong_order", {"layers_2.py": [("np.transpose(input, [0, 2, 3, 1])",
                                              "np.transpose(input, [0, 1, 2, 3])")]}, 80,
     "vgg19_softmax", "first layer that differs: flatten"),
    ("fc_bias_dropped", {"vgg_cpu.py": [("self.layers[self.param_layer_name[idx]].load_param(weight, bias)\n\n",
                                         "self.layers[self.param_layer_name[idx]].load_param(weight, bias * 0)\n\n")]},
     80, "vgg19_softmax", "first layer that differs: fc6"),
    # forward() and evaluate() are called as the book's __main__ calls them.
    ("forward_returns_none", {"vgg_cpu.py": [("        return current\n", "        current\n")]}, 80,
     "vgg19_forward", "VGG19.forward() returned None"),
    ("forward_skips_softmax", {"vgg_cpu.py": [("for idx in range(len(self.param_layer_name)):",
                                               "for idx in range(len(self.param_layer_name) - 1):")]}, 80,
     "vgg19_forward", "forward() ran 43 layer call(s) instead of the 44"),
    ("evaluate_prints_wrong_class", {"vgg_cpu.py": [("top1 = np.argmax(prob[0])", "top1 = np.argmin(prob[0])")]}, 80,
     "vgg19_evaluate", "VGG19.evaluate() printed class id"),
    ("evaluate_raises", {"vgg_cpu.py": [("prob[0, top1]))", "prob[0, top1], prob))")]}, 80,
     "vgg19_evaluate", "VGG19.evaluate() raised TypeError"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,edits,expected,failing,words", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_submission_scores_expected_tier(tmp_path, name, edits, expected, failing, words):
    doc = grade(broken_copy(tmp_path, edits), tmp_path, "--visible-only")
    exp = doc["experiments"][0]
    by_name = checks(doc)
    assert exp["score"] == expected, f"{name}: score {exp['score']}, expected {expected}\n" + gradeutil.failures(doc)
    assert not by_name[failing]["passed"]
    assert words in by_name[failing]["message"], by_name[failing]["message"]


def test_reference_loops_agree_with_fast_path(monkeypatch):
    """The book's loops in the reference and the BLAS fast path give the same layers."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 7))
    w = rng.standard_normal((3, 3, 3, 4))
    b = rng.standard_normal(4)
    results = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("AICS_REFERENCE_LOOPS", mode)
        code = ("import sys, numpy as np; from grader.kit.submission import load_module; "
                "m = load_module(sys.argv[1], 'exp_3_1_vgg', 'layers_2'); d = np.load(sys.argv[2]); "
                "c = m.ConvolutionalLayer(3, 3, 4, 1, 2); c.load_param(d['w'], d['b']); "
                "p = m.MaxPoolingLayer(3, 2); np.savez(sys.argv[3], conv=c.forward(d['x']), pool=p.forward(d['x']))")
        tmp = Path(os.environ.get("TMPDIR", "/tmp"))
        inp, out = tmp / f"aics-loop-in-{mode}.npz", tmp / f"aics-loop-out-{mode}.npz"
        np.savez(inp, x=x, w=w, b=b)
        subprocess.run([sys.executable, "-c", code, str(REFERENCE_DIR), str(inp), str(out)], check=True,
                       cwd=REPO_ROOT, capture_output=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
        with np.load(out) as data:
            results[mode] = {k: data[k] for k in data.files}
    np.testing.assert_allclose(results["1"]["conv"], results["0"]["conv"], rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(results["1"]["pool"], results["0"]["pool"])


@pytest.mark.slow
def test_runner_prints_labelled_top5(tmp_path):
    proc = subprocess.run([sys.executable, "exp_3_1_vgg/main_exp_3_1.py", "--submission", str(REFERENCE_DIR)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "pool5" in out and "[44/44] Softmax" in out
    assert "Top-5 of chelsea.png" in out
    if "SYNTHETIC" in out.splitlines()[0]:
        assert "NOT a classification of the image" in out
    assert "pool5 check: pool5: matches" in out, out[-1500:]
    top_lines = [line for line in out.splitlines() if line.startswith("  0.") or line.startswith("  1.")]
    assert len(top_lines) == 5


def test_runner_on_pristine_skeleton_says_what_is_missing():
    proc = subprocess.run([sys.executable, "exp_3_1_vgg/main_exp_3_1.py"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1
    assert "Not finished yet" in proc.stderr and "VGG19.build_model" in proc.stderr
    assert "Traceback" not in proc.stderr


class _Scale:
    """A toy layer: multiplies its input by ``factor``."""

    def __init__(self, factor):
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class _ToyNet:
    """A three-layer stand-in for the book's VGG19: ``param_layer_name``, ``layers``, forward, evaluate."""

    def __init__(self, skip_last=False):
        self.param_layer_name = ("a", "b", "c")
        self.layers = {"a": _Scale(2.0), "b": _Scale(3.0), "c": _Scale(5.0)}
        self.input_image = np.ones((1, 4))
        self.skip_last = skip_last

    def forward(self):
        current = self.input_image
        for name in self.param_layer_name[:2 if self.skip_last else 3]:
            current = self.layers[name].forward(current)
        return current

    def evaluate(self):
        prob = self.forward()
        print('Classification result: id = %d, prob = %f' % (int(np.argmax(prob[0])) + 7, prob[0, 0]))


@pytest.mark.parametrize("skip_last", [False, True])
def test_driver_sees_the_layers_the_students_forward_runs(skip_last):
    from grader.drivers.exp_3_1_vgg import LayerRecorder, run_evaluate
    net = _ToyNet(skip_last)
    seen = []
    recorder = LayerRecorder(net, list(net.param_layer_name), lambda i, name, out, s: seen.append(name))
    recorder.install()
    out, facts = {}, {}
    run_evaluate(net, out, facts)
    recorder.remove()
    assert seen == (["a", "b"] if skip_last else ["a", "b", "c"])
    assert recorder.complete() is (not skip_last)
    np.testing.assert_array_equal(out["forward_prob"], np.full((1, 4), 6.0 if skip_last else 30.0))
    assert out["evaluate_top1"].tolist() == [7.0] and facts["forward_calls"] == 1
    # The wrappers are gone: the layers and the net are as the student built them.
    assert "forward" not in vars(net) and all("forward" not in vars(layer) for layer in net.layers.values())


def test_driver_records_evaluate_errors_and_missing_prints():
    from grader.drivers.exp_3_1_vgg import printed_class_id, run_evaluate
    net = _ToyNet()
    net.evaluate = lambda: net.forward()[5]
    out, facts = {}, {}
    run_evaluate(net, out, facts)
    assert facts["evaluate_error"].startswith("IndexError") and "evaluate_top1" not in out
    assert printed_class_id("x\nClassification result: id = 3, prob = 1\nClassification result: id = 12") == 12
    assert printed_class_id("id: 3") is None
