"""Experiment 3.2 graded end to end: the reference, the pristine skeleton, planted bugs.

Each planted bug is a textual edit of the reference (asserted to apply exactly once) and
must score exactly its tier. A grading run that reaches the network costs one emulated
VGG19 (load_model ~10 s, forward ~3 s); runs that fail while building take ~2 s.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grader.kit.paths import REFERENCE_DIR, REPO_ROOT
from tests import gradeutil
from tests.gradeutil import checks

EXP = "exp_3_2_dlp"
DEMO = "vgg19_demo.py"


def grade(submission: Path, tmp_path: Path, *extra: str) -> dict:
    return gradeutil.grade(submission, tmp_path, EXP, *extra, timeout=600)


def broken_copy(tmp_path: Path, edits: list[tuple[str, str]]) -> Path:
    return gradeutil.broken_copy(tmp_path, EXP, {DEMO: edits})


@pytest.mark.slow
def test_reference_scores_100_with_hidden_check(tmp_path):
    doc = grade(REFERENCE_DIR, tmp_path, "--seed", "7")
    exp = doc["experiments"][0]
    assert exp["score"] == 100, doc["_stdout"]
    by_name = checks(doc)
    assert {"vgg19_layer_count", "vgg19_layer_names", "vgg19_layer_types", "vgg19_output_shapes",
            "vgg19_conv1_1", "vgg19_pool5", "vgg19_softmax", "vgg19_top1", "vgg19_evaluate"} <= set(by_name)
    assert by_name["hidden_vgg_image"]["hidden"] and by_name["hidden_vgg_image"]["passed"]
    assert "max abs err 0" in by_name["vgg19_softmax"]["message"]   # the emulator is deterministic


def test_pristine_skeleton_scores_0_with_clean_messages(tmp_path):
    sub = tmp_path / "sub"
    (sub / EXP).mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / EXP / "skeleton" / DEMO, sub / EXP / DEMO)
    doc = grade(sub, tmp_path, "--visible-only")
    exp = doc["experiments"][0]
    assert exp["score"] == 0 and not exp.get("error")
    for check in exp["checks"]:
        assert not check["passed"]
        if check["tier"] == 60:
            assert ("NotImplementedError: TODO in exp_3_2_dlp/vgg19_demo.py: complete VGG19.build_model"
                    in check["message"])
        else:   # the whole network is not run once tier 60 failed
            assert check["message"] == "skipped: tier 60 failed", check
    assert "Traceback" not in doc["_stdout"]


def test_build_model_done_but_load_model_todo_scores_60(tmp_path):
    """The skeleton's load_model TODOs with the reference's build_model: structure only."""
    skeleton = (REPO_ROOT / EXP / "skeleton" / DEMO).read_text()
    reference = (REFERENCE_DIR / EXP / DEMO).read_text()
    start = reference.index("    def load_model(self):")
    end = reference.index("    def load_image(self, image_dir):")
    sk_start = skeleton.index("    def load_model(self):")
    sk_end = skeleton.index("    def load_image(self, image_dir):")
    sub = tmp_path / "sub"
    (sub / EXP).mkdir(parents=True)
    (sub / EXP / DEMO).write_text(reference[:start] + skeleton[sk_start:sk_end] + reference[end:])
    doc = grade(sub, tmp_path, "--visible-only")
    by_name = checks(doc)
    assert doc["experiments"][0]["score"] == 60
    assert "complete VGG19.load_model" in by_name["vgg19_conv1_1"]["message"]


# (id, edits, expected score, check that must fail, words its message must contain)
BROKEN = [
    pytest.param("relu6_missing", [("        self.net.createReLuLayer('relu6')\n", "")], 0,
                 "vgg19_layer_count", ["43", "relu6"], id="relu6_missing"),
    pytest.param("flatten_count_wrong", [("self.net.createFlattenLayer('flatten', [1, 512 * 7 * 7, 1, 1])",
                                          "self.net.createFlattenLayer('flatten', [1, 512 * 7, 1, 1])")], 0,
                 "vgg19_layer_count", ["createFlattenLayer", "[1, 3584, 1, 1]"], id="flatten_count_wrong"),
    pytest.param("conv_kernel_transposed", [("np.transpose(weight, [3, 2, 0, 1])", "np.transpose(weight, [3, 2, 1, 0])")],
                 60, "vgg19_conv1_1", ["conv1_1 output", "worst element", "np.transpose(weight, [3, 2, 0, 1])"],
                 id="conv_kernel_transposed"),
    pytest.param("quant_params_swapped",
                 [("                                         self.input_quant_params[quant_idx])",
                   "                                         self.filter_quant_params[quant_idx])")],
                 60, "vgg19_pool5", ["pool5 output", "first layer that differs: conv2_1"],
                 id="quant_params_swapped"),
    pytest.param("fc_not_transposed", [("np.transpose(weight, [1, 0]).flatten()", "weight.flatten()")], 80,
                 "vgg19_softmax", ["softmax", "first layer that differs: fc6"], id="fc_not_transposed"),
    pytest.param("softmax_axis_0", [("createSoftmaxLayer('Softmax', 1)", "createSoftmaxLayer('Softmax', 0)")], 80,
                 "vgg19_softmax", ["softmax", "first layer that differs: Softmax"], id="softmax_axis_0"),
    # evaluate() is the student's: the grader calls it and reads what get_top5 prints.
    pytest.param("labels_shifted", [("            self.labels = f.readlines()\n",
                                     "            self.labels = f.readlines()[1:]\n")], 80,
                 "vgg19_evaluate", ["first class get_top5 printed", "top-1"], id="labels_shifted"),
    pytest.param("evaluate_raises", [("        print('Global accuracy : ')\n",
                                      "        print('Global accuracy : ' + top1_num)\n")], 80,
                 "vgg19_evaluate", ["evaluate(file_list, synset_path) raised TypeError"], id="evaluate_raises"),
]
# Bugs that need a whole emulated VGG19 run (13-30 s each); the quick suite keeps the others.
SLOW = {"quant_params_swapped", "softmax_axis_0", "fc_not_transposed", "conv_kernel_transposed", "relu6_missing",
        "labels_shifted", "evaluate_raises"}


@pytest.mark.parametrize("bug, edits, score, failing, words",
                         [pytest.param(*p.values, id=p.id, marks=[pytest.mark.slow] if p.id in SLOW else [])
                          for p in BROKEN])
def test_planted_bug_scores_its_tier(tmp_path, bug, edits, score, failing, words):
    sub = broken_copy(tmp_path, edits)
    doc = grade(sub, tmp_path, "--visible-only")
    exp = doc["experiments"][0]
    by_name = checks(doc)
    assert exp["score"] == score, f"{bug}: scored {exp['score']}, expected {score}\n{doc['_stdout']}"
    check = by_name[failing]
    assert not check["passed"], f"{bug}: {failing} passed"
    for word in words:
        assert word in check["message"], f"{bug}: {word!r} not in {check['message']!r}"


def test_printed_top1_is_read_after_the_last_top5_header():
    from grader.drivers.exp_3_2_dlp import printed_top1_ids
    synset = ["n0 cat", "n1 dog", "n0 cat"]
    text = ("------ Top 5 of a.png ------\n0.5 - n1 dog\ninference time: 1\n"
            "------ Top 5 of b.png ------\n0.700195 - n0 cat\n0.1 - n1 dog\n")
    assert printed_top1_ids(text, synset) == [0, 2]
    assert printed_top1_ids("0.5 - n1 dog\n", synset) == []
