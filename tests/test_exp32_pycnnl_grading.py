"""Experiment 3.2 on the pycnnl track graded end to end: the reference, its skeleton, planted bugs,
and a submission written as the newer edition's published template is.

The course's track stays the kit's default (pycnml): each submission here imports pycnnl only,
so the grader grades it on the pycnnl track and says so in a note. A grading run that reaches
the network costs one emulated float32 VGG19 (load_model, then about three forwards); runs that
fail while building take a few seconds. Bugs of one tier share a grading where their messages
can both be checked.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from grader.authoring.markers import strip_solutions
from grader.kit.course import reference_root
from tests import gradeutil
from tests.gradeutil import apply_edits, checks

EXP = "exp_3_2_dlp"
DEMO = "vgg19_demo.py"
ROOT = reference_root("pycnnl")
REFERENCE = ROOT / EXP / DEMO
TRACK_NOTE = "imports pycnnl and not pycnml: it is run and graded on the pycnnl track"

pytestmark = pytest.mark.slow


def grade(submission: Path, tmp_path: Path, *extra: str) -> dict:
    return gradeutil.grade(submission, tmp_path, EXP, *extra, timeout=900)


def submission(tmp_path: Path, text: str) -> Path:
    sub = tmp_path / "sub"
    (sub / EXP).mkdir(parents=True)
    (sub / EXP / DEMO).write_text(text, encoding="utf-8")
    return sub


def edited(tmp_path: Path, edits: list[tuple[str, str]]) -> Path:
    sub = submission(tmp_path, REFERENCE.read_text(encoding="utf-8"))
    apply_edits(sub / EXP, {DEMO: edits})
    return sub


def notes(doc: dict) -> list[str]:
    return doc["experiments"][0].get("notes", [])


def test_reference_scores_100_with_hidden_check(tmp_path):
    doc = grade(ROOT, tmp_path, "--seed", "11")
    exp = doc["experiments"][0]
    assert exp["score"] == 100, doc["_stdout"][-4000:]
    by_name = checks(doc)
    assert {"vgg19_layer_count", "vgg19_layer_names", "vgg19_layer_types", "vgg19_pycnnl_accepts",
            "vgg19_shape_vectors", "vgg19_output_shapes", "vgg19_conv1_1", "vgg19_pool5", "vgg19_softmax",
            "vgg19_top1", "vgg19_evaluate"} == {n for n, c in by_name.items() if not c["hidden"]}
    assert by_name["hidden_cnnl_image"]["hidden"] and by_name["hidden_cnnl_image"]["passed"]
    assert "max abs err 0" in by_name["vgg19_softmax"]["message"]   # the same float32 emulator
    assert any(TRACK_NOTE in n for n in notes(doc)), notes(doc)
    assert not any("grader.kit.compat" in n for n in notes(doc))     # the kit's file needs no shim


def test_pristine_skeleton_scores_0_with_clean_messages(tmp_path):
    sub = submission(tmp_path, strip_solutions(REFERENCE.read_text(encoding="utf-8"), f"{EXP}/{DEMO}"))
    doc = grade(sub, tmp_path, "--visible-only")
    exp = doc["experiments"][0]
    assert exp["score"] == 0 and not exp.get("error")
    for check in exp["checks"]:
        assert not check["passed"]
        if check["tier"] == 60:
            assert "NotImplementedError: TODO in exp_3_2_dlp/vgg19_demo.py: complete VGG19.build_model" in check["message"]
        else:
            assert check["message"] == "skipped: tier 60 failed", check
    assert "Traceback" not in doc["_stdout"]


# (edits, the checks that must fail, words each message must contain); every one scores 0.
STRUCTURE_BUGS = [
    pytest.param([("        self.net.createPoolingLayer('pool1', vector(last), 2, 2)\n"
                   "        last = [1, last[1], last[2] // 2, last[3] // 2]\n",
                   "        self.net.createPoolingLayer('pool1', vector(last), 2, 2)\n")],
                 {"vgg19_shape_vectors": ["layer 5 ('conv2_1') has in_shape [1, 64, 224, 224]",
                                          "pool1 outputs [1, 64, 112, 112]", "not updated after pool1"],
                  "vgg19_pycnnl_accepts": ["pycnnl refused", "conv2_1"]},
                 id="shape_not_updated_after_a_pool"),
    pytest.param([("vector([1, 1, features, 4096])", "vector([1, 1, 4096, features])")],
                 {"vgg19_shape_vectors": ["fc6's w_shape [1, 1, 4096, 25088] is transposed",
                                          "[1, 1, 25088, 4096]"],
                  "vgg19_pycnnl_accepts": ["createMlpLayer", "fc6"]},
                 id="fc6_w_shape_transposed"),
]


@pytest.mark.parametrize("edits, failing", STRUCTURE_BUGS)
def test_structure_bug_scores_0_and_says_which_shape(tmp_path, edits, failing):
    doc = grade(edited(tmp_path, edits), tmp_path, "--visible-only")
    by_name = checks(doc)
    assert doc["experiments"][0]["score"] == 0, doc["_stdout"][-3000:]
    for name, words in failing.items():
        assert not by_name[name]["passed"], name
        for word in words:
            assert word in by_name[name]["message"], (name, word, by_name[name]["message"])
    for name in ("vgg19_layer_count", "vgg19_layer_names", "vgg19_layer_types"):
        assert by_name[name]["passed"], by_name[name]
    assert by_name["vgg19_pool5"]["message"] == "skipped: tier 60 failed"


def test_nchw_input_and_pycnml_conv_layout_score_60_with_both_hints(tmp_path):
    """Two pycnml habits at once: the input transposed to NCHW and conv W as [Cout, Cin, kh, kw]."""
    sub = edited(tmp_path, [
        ("np.transpose(weight, [3, 0, 1, 2])", "np.transpose(weight, [3, 2, 0, 1])"),
        ("        self.input_data = input_image.flatten().astype(np.float64)\n",
         "        input_image = np.transpose(input_image, [0, 3, 1, 2])\n"
         "        self.input_data = input_image.flatten().astype(np.float64)\n"),
    ])
    doc = grade(sub, tmp_path, "--visible-only")
    by_name = checks(doc)
    assert doc["experiments"][0]["score"] == 60, doc["_stdout"][-3000:]
    message = by_name["vgg19_conv1_1"]["message"]
    assert "conv1_1 output" in message and "worst element" in message
    assert "the input is in NCHW order" in message and "pycnnl takes the image in NHWC order" in message
    assert "pycnml's [Cout, Cin, kh, kw]" in message
    assert "conv weights must be [Cout, kh, kw, Cin] for pycnnl" in message
    assert "[Cout, kh, kw, Cin]" in by_name["vgg19_pool5"]["message"] or "NCHW" in by_name["vgg19_pool5"]["message"]


# The newer edition's template as courses publish it: scipy.misc in load_image, np.float,
# get_top5 reading ../synset_words.txt with result.index, evaluate(file_list) on the global vgg.
TEMPLATE_TAIL = '''    def get_top5(self, label):
        start = time.time()
        self.forward()
        end = time.time()

        result = self.net.getOutputData()

        # 读取类别名称
        labels = []
        with open('../synset_words.txt', 'r') as f:
            labels = f.readlines()

        top1 = False
        top5 = False
        print('------ Top 5 of ' + self.image + ' ------')
        prob = sorted(list(result), reverse=True)[:6]
        if result.index(prob[0]) == label:
            top1 = True
        for i in range(5):
            top = prob[i]
            idx = result.index(top)
            if idx == label:
                top5 = True
            print('%f - ' % top + labels[idx].strip())

        print('inference time: %f' % (end - start))
        return top1, top5

    def evaluate(self, file_list):
        top1_num = 0
        top5_num = 0
        total_num = 0

        start = time.time()
        with open(file_list, 'r') as f:
            file_list = f.readlines()
            total_num = len(file_list)
            for line in file_list:
                image = line.split()[0].strip()
                label = int(line.split()[1].strip())
                vgg.load_image(image)
                top1, top5 = vgg.get_top5(label)
                if top1:
                    top1_num += 1
                if top5:
                    top5_num += 1
        end = time.time()

        print('Global accuracy : ')
        print('accuracy1: %f (%d/%d) ' % (float(top1_num) / float(total_num), top1_num, total_num))
        print('accuracy5: %f (%d/%d) ' % (float(top5_num) / float(total_num), top5_num, total_num))
        print('Total execution time: %f' % (end - start))


if __name__ == '__main__':
    vgg = VGG19()
    vgg.build_model()
    vgg.load_model()
    vgg.evaluate('../file_list')
'''


def published_template() -> str:
    text = REFERENCE.read_text(encoding="utf-8")
    assert text.count(".astype(np.float64)\n                self.net.loadParams") == 2
    text = text.replace("bias = bias.reshape(-1).astype(np.float64)", "bias = bias.reshape(-1).astype(np.float)")
    pairs = [
        ("from PIL import Image\n", "import os\n"),
        ("        # Pillow replaces scipy.misc.imread/imresize: bilinear resize of the uint8 image.\n"
         "        input_image = Image.open(image_dir).convert('RGB')\n"
         "        input_image = input_image.resize((224, 224), Image.BILINEAR)\n",
         "        input_image = scipy.misc.imread(image_dir)\n"
         "        input_image = scipy.misc.imresize(input_image, [224, 224, 3])\n"),
        ("        self.input_data = input_image.flatten().astype(np.float64)\n",
         "        input_data = input_image.flatten().astype(np.float)\n"),
        ("        self.net.setInputData(self.input_data)\n", "        self.net.setInputData(input_data)\n"),
    ]
    for old, new in pairs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text[:text.index("    def get_top5(self, label):")] + TEMPLATE_TAIL


def test_published_template_scores_100_with_notes(tmp_path):
    source = published_template()
    assert "Image" not in source and "scipy.misc.imresize" in source and "np.float)" in source
    doc = grade(submission(tmp_path, source), tmp_path, "--visible-only")
    exp = doc["experiments"][0]
    assert exp["score"] == 100, doc["_stdout"][-4000:]
    assert "max abs err 0" in checks(doc)["vgg19_conv1_1"]["message"]   # the same pixels as Pillow's resize
    shims = [n for n in notes(doc) if "grader.kit.compat" in n]
    assert len(shims) == 1 and "scipy.misc.imread/imresize" in shims[0] and "np.float" in shims[0], notes(doc)
    assert any(TRACK_NOTE in n for n in notes(doc))
