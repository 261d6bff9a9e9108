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
    assert all("NotImplementedError" in c["message"] for c in exp["checks"] if not c["passed"])


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
    ("speedup_calls_loop", {"layers_2.py": [
        ("        im2col + one matrix product (section 3.3.8, figure 3.27).\n        \"\"\"\n",
         "        im2col + one matrix product (section 3.3.8, figure 3.27).\n        \"\"\"\n"
         "        return self.forward_raw(input)\n"),
        ("        Also provides d_weight [Cin, K, K, Cout] and d_bias [Cout].\n        \"\"\"\n",
         "        Also provides d_weight [Cin, K, K, Cout] and d_bias [Cout].\n        \"\"\"\n"
         "        return self.backward_raw(top_diff)\n")]}, 80, "speed_test", "below the required 10x"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,edits,expected,failing,words", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_submission_scores_expected_tier(tmp_path, name, edits, expected, failing, words):
    doc = grade(gradeutil.broken_copy(tmp_path, EXP, edits), tmp_path, "--visible-only")
    exp = doc["experiments"][0]
    checks = by_name(doc)
    assert exp["score"] == expected, f"{name}: score {exp['score']}, expected {expected}\n" + gradeutil.failures(doc)
    assert not checks[failing]["passed"]
    assert words in checks[failing]["message"], checks[failing]["message"]
