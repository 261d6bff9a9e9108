"""Experiment 3.3 graded end to end: the reference, the pristine skeleton, planted bugs."""
from __future__ import annotations

from pathlib import Path

import pytest

from grader.kit.paths import REFERENCE_DIR, STU_UPLOAD_DIR
from tests import gradeutil
from tests.gradeutil import checks as by_name

EXP = "exp_3_3_style_transfer"


def grade(submission: Path, tmp_path: Path, *extra: str) -> dict:
    return gradeutil.grade(submission, tmp_path, EXP, *extra)


@pytest.mark.slow
def test_reference_scores_100(tmp_path):
    doc = grade(REFERENCE_DIR, tmp_path)
    exp = doc["experiments"][0]
    assert exp["score"] == 100, [c for c in exp["checks"] if not c["passed"]]
    checks = by_name(doc)
    assert "ratio" in checks["speed_test"]["message"]
    assert "forward_time" in checks["conv_k3_p1_s1_raw"]["message"]   # the book asks for the times
    assert "->" in checks["mini_transfer"]["message"]


def test_pristine_scores_0(tmp_path):
    doc = grade(STU_UPLOAD_DIR, tmp_path, "--visible-only")
    exp = doc["experiments"][0]
    assert exp["score"] == 0 and not exp.get("error")
    failed = [c for c in exp["checks"] if not c["passed"]]
    # The whole-network groups are not run once a lower tier failed; the others name the TODO.
    assert all("NotImplementedError" in c["message"] or c["message"].startswith("skipped") for c in failed)
    assert sum("NotImplementedError" in c["message"] for c in failed) >= len(failed) // 2


CONV_FORWARD_DOC = "replaces the four loops.\n        \"\"\"\n"
CONV_BACKWARD_DOC = "transfer never reads them).\n        \"\"\"\n"
POOL_FORWARD_DOC = "\"\"\"input: [N, C, H, W] -> output: [N, C, Hout, Wout], same dtype as input.\"\"\"\n"
POOL_BACKWARD_DOC = "\"\"\"top_diff: [N, C, Hout, Wout] -> bottom_diff: [N, C, H, W], dtype of the input.\"\"\"\n"
# The reference's forward stops after the deepest requested layer; a student's runs all 37.
NO_EARLY_STOP = ("            if len(layer_forward) == len(set(layer_list)):\n                break\n", "")


def _first_line(doc: str, line: str) -> tuple[str, str]:
    """An edit that puts ``line`` first in the body whose docstring ends with ``doc``."""
    return doc, doc + "        " + line + "\n"


SLIDING_WINDOW_POOL = (
    "windows = np.lib.stride_tricks.sliding_window_view(input, (self.kernel_size, self.kernel_size), "
    "axis=(2, 3))[:, :, ::self.stride, ::self.stride]; "
    "flat = windows.reshape(windows.shape[:4] + (-1,)); self.input = input; "
    "self.max_arg = np.argmax(flat, axis=4); self.output = np.max(flat, axis=4); return self.output")

# (name, edits, expected score, a failing check or None, words of its message)
BROKEN = [
    ("style_grad_missing_factor", {"layers_3.py": [("scale = 1.0 / (float(n) * c * c * float(hw) * hw)",
                                                    "scale = 1.0")]}, 60, "style_loss", "bottom_diff"),
    ("pool_backward_wrong_element", {"layers_2.py": [
        ("bottom_diff[idxn, idxc, idxh*self.stride+max_index[0], idxw*self.stride+max_index[1]] += \\",
         "bottom_diff[idxn, idxc, idxh*self.stride+max_index[1], idxw*self.stride+max_index[0]] += \\")]},
     0, "pool_k2_s2_raw", "bottom_diff"),
    ("conv_backward_no_bias_grad", {"layers_2.py": [("self.d_bias[idxc] += top_diff[idxn, idxc, idxh, idxw]\n",
                                                     "pass\n")]}, 0, "conv_k3_p1_s1_raw", "d_bias"),
    ("adam_without_bias_correction", {"style_transfer.py": [
        ("output = input - self.lr * mt_hat / (np.sqrt(vt_hat) + self.eps)",
         "output = input - self.lr * self.mt / (np.sqrt(self.vt) + self.eps)")]}, 60, "adam_3_steps", "step1"),
    ("speedup_calls_loop", {"layers_2.py": [_first_line(CONV_FORWARD_DOC, "return self.forward_raw(input)"),
                                            _first_line(CONV_BACKWARD_DOC, "return self.backward_raw(top_diff)")]},
     80, "speed_test", "below the required 10x"),
    # Tier 80 runs the network on the loop layers: speed-ups that do not exist yet cost tier 100 only.
    ("loops_only", {"layers_2.py": [_first_line(doc, "raise NotImplementedError('speed-up')") for doc in
                                    (CONV_FORWARD_DOC, CONV_BACKWARD_DOC, POOL_FORWARD_DOC, POOL_BACKWARD_DOC)]},
     80, "conv_k3_p1_s1_speedup", "NotImplementedError"),
    ("col2im_overwrites", {"layers_2.py": [("s * (self.width_out - 1) + 1:s] += \\",
                                            "s * (self.width_out - 1) + 1:s] = \\")]},
     80, "conv_k3_p1_s1_speedup", "bottom_diff"),
    # 32x32 images leave pool5 a 2x2 input, so a window view never gets an empty input.
    ("sliding_window_pool", {"layers_2.py": [_first_line(POOL_FORWARD_DOC, SLIDING_WINDOW_POOL)],
                             "style_transfer.py": [NO_EARLY_STOP]}, 100, None, ""),
    # The book asks the speed-up for bottom_diff; d_weight and d_bias are the loops' job.
    ("speedup_without_parameter_gradients", {"layers_2.py": [
        ("        self.d_weight = np.dot(self.img2col.T, top_mat).reshape(self.weight.shape)\n", ""),
        ("        self.d_bias = np.sum(top_mat, axis=0)\n", "")]}, 100, None, ""),
    # Figure 3.21 is the student's code: a wrong gradient sum is found in the loop itself.
    ("style_diff_takes_content_gradient", {"style_transfer.py": [
        ("style_diff += vgg.backward(dloss, layer)", "style_diff += content_diff")]},
     60, "mini_transfer", "the gradient passed to Adam at step 0"),
    ("adam_line_missing", {"style_transfer.py": [
        ("transfer_image = adam_optimizer.update(transfer_image, image_diff)", "pass")]},
     60, "mini_transfer", "no gradient was passed to Adam"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,edits,expected,failing,words", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_submission_scores_expected_tier(tmp_path, name, edits, expected, failing, words):
    doc = grade(gradeutil.broken_copy(tmp_path, EXP, edits), tmp_path, "--visible-only")
    exp = doc["experiments"][0]
    assert exp["score"] == expected, f"{name}: score {exp['score']}, expected {expected}\n" + gradeutil.failures(doc)
    if failing is not None:
        checks = by_name(doc)
        assert not checks[failing]["passed"]
        assert words in checks[failing]["message"], checks[failing]["message"]
