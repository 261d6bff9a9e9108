"""Experiment 3.2's pycnnl track, piece by piece: the course's choice, which track a submission
targets, the scipy.misc / np.float shims, the skeleton, the driver's recorder and the checks' hints.

The end-to-end gradings are in test_exp32_pycnnl_grading.py (slow).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from grader.authoring.markers import leaked_lines, strip_solutions
from grader.experiments import exp_3_2_dlp, exp_3_2_pycnnl as cnnl
from grader.kit import compat, course
from grader.kit.cnnl_layout import LAYER_NAMES_CNNL, vgg19_layers
from grader.kit.paths import DEFAULT_CAT, REFERENCE_DIR, REPO_ROOT

EXP = "exp_3_2_dlp"
REFERENCE = course.reference_root("pycnnl") / EXP / "vgg19_demo.py"
RUNNER = REPO_ROOT / EXP / "main_exp_3_2.py"


def demo(tmp_path: Path, text: str, name: str = "sub") -> Path:
    sub = tmp_path / name
    (sub / EXP).mkdir(parents=True)
    (sub / EXP / "vgg19_demo.py").write_text(text, encoding="utf-8")
    return sub


# ----- the course's track ----------------------------------------------------------------------

def test_course_file_sets_the_track_and_the_environment_overrides_it(tmp_path, monkeypatch):
    monkeypatch.delenv(course.TRACK_ENV, raising=False)
    path = tmp_path / "course.toml"
    assert course.course_track(path) == "pycnml"                      # no file: the book's edition
    path.write_text('[exp_3_2_dlp]\ntrack = "pycnnl"   # the newer edition\n')
    assert course.course_track(path) == "pycnnl"
    monkeypatch.setenv(course.TRACK_ENV, "pycnml")
    assert course.course_track(path) == "pycnml"
    monkeypatch.setenv(course.TRACK_ENV, "pycnnnl")
    with pytest.raises(course.CourseError, match=r"\$AICS_EXP_3_2_TRACK is 'pycnnnl'; choose one of 'pycnml', 'pycnnl'"):
        course.course_track(path)
    monkeypatch.delenv(course.TRACK_ENV)
    path.write_text('[exp_3_2_dlp]\ntrack = "cnnl"\n')
    with pytest.raises(course.CourseError, match="course.toml is 'cnnl'"):
        course.course_track(path)
    path.write_text('[exp_3_2_dlp\ntrack = "pycnnl"\n')
    with pytest.raises(course.CourseError, match="not valid TOML"):
        course.course_track(path)


def test_the_kits_course_file_names_a_track():
    assert course.read_course()[EXP]["track"] in course.TRACKS


def test_each_track_has_its_reference():
    assert course.reference_root("pycnml") == REFERENCE_DIR
    assert (course.reference_root("pycnnl") / EXP / "vgg19_demo.py").is_file()


IMPORTS = [
    ("import pycnnl\n", "pycnnl"),
    ("import numpy as np, pycnnl as cn\n", "pycnnl"),
    ("def f():\n    from pycnnl import CnnlNet\n", "pycnnl"),
    ("import pycnml\nimport pycnnl\n", "pycnml"),                 # both: the course's track
    ("# import pycnnl\nx = 'import pycnnl'\n", "pycnml"),         # a comment and a string import nothing
    ("import pycnnl\ndef broken(:\n", "pycnnl"),                  # unparsable: read line by line
    ("import numpy\n", "pycnml"),
]


@pytest.mark.parametrize("source, track", IMPORTS)
def test_a_submission_is_graded_on_the_track_it_plainly_targets(tmp_path, source, track):
    choice = course.choose_track(demo(tmp_path, source), course="pycnml")
    assert choice.track == track and choice.course == "pycnml"
    assert bool(choice.note) == (track != "pycnml")
    if choice.note:
        assert "imports pycnnl and not pycnml" in choice.note and "graded on the pycnnl track" in choice.note


def test_the_newer_course_grades_a_pycnml_file_on_the_books_track(tmp_path):
    choice = course.choose_track(demo(tmp_path, "import pycnml\n"), course="pycnnl")
    assert choice.track == "pycnml" and "teaches the pycnnl track" in choice.note


def test_a_link_or_fifo_is_not_read(tmp_path):
    target = tmp_path / "elsewhere.py"
    target.write_text("import pycnnl\n")
    linked = tmp_path / "linked" / EXP
    linked.mkdir(parents=True)
    (linked / "vgg19_demo.py").symlink_to(target)
    assert course.choose_track(linked.parent, course="pycnml").track == "pycnml"
    fifo = tmp_path / "fifo" / EXP
    fifo.mkdir(parents=True)
    os.mkfifo(fifo / "vgg19_demo.py")
    assert course.read_source(fifo / "vgg19_demo.py") is None          # returns at once, no reader waits
    assert course.choose_track(fifo.parent, course="pycnnl").track == "pycnnl"


def test_a_session_keeps_one_tracks_cases_and_notes_why(tmp_path):
    cases = exp_3_2_dlp.visible_cases() + exp_3_2_dlp.hidden_cases(3)
    session = SimpleNamespace(submission=demo(tmp_path, REFERENCE.read_text(encoding="utf-8")), notes={})
    kept = exp_3_2_dlp.select_cases(session, cases)
    assert {c.name for c in kept} == {"cnnl_structure", "cnnl_network", "hidden_cnnl_image"}
    assert {exp_3_2_dlp.reference_root(c) for c in kept} == {course.reference_root("pycnnl")}
    assert len(session.notes[EXP]) == 1 and "graded on the pycnnl track" in session.notes[EXP][0]
    books = SimpleNamespace(submission=REFERENCE_DIR, notes={})
    kept = exp_3_2_dlp.select_cases(books, cases)
    assert {c.name for c in kept} == {"vgg_structure", "vgg_network", "hidden_vgg_image"}
    assert {exp_3_2_dlp.reference_root(c) for c in kept} == {REFERENCE_DIR} and not books.notes[EXP]
    names = [c.name for c in exp_3_2_dlp.checks(kept)]
    assert len(names) == len(set(names))


# ----- scipy.misc and np.float ----------------------------------------------------------------

def test_shims_are_found_in_code_only():
    assert compat.needed("import scipy.io\nx = scipy.misc.imread(p)\ny = x.astype(np.float)\n") == [
        "scipy.misc", "np.float"]
    assert compat.needed("from scipy.misc import imresize\nfrom scipy import misc\n") == ["scipy.misc"]
    assert compat.needed("# scipy.misc.imread is gone\ns = 'np.float'\nz = np.float32(1) + np.float64(2)\n") == []
    assert compat.needed("def broken(:\n    scipy.misc.imread(p)\n") == []
    assert "scipy.misc.imread/imresize" in compat.describe(["scipy.misc", "np.float"])
    assert "np.float (removed from NumPy 1.24)" in compat.describe(["scipy.misc", "np.float"])


def test_imread_and_imresize_give_the_kits_pixels():
    """Old SciPy's imread + imresize(x, [224, 224, 3]) equals the kit's Pillow load_image, pixel for pixel."""
    pixels = compat.imresize(compat.imread(str(DEFAULT_CAT)), [224, 224, 3])
    kit = np.array(Image.open(DEFAULT_CAT).convert("RGB").resize((224, 224), Image.BILINEAR))
    assert pixels.dtype == np.uint8 and pixels.shape == (224, 224, 3)
    assert np.array_equal(pixels, kit)


def test_imresize_sizes_and_float_input():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    assert compat.imresize(image, 50).shape == (2, 3, 3)                # a percentage
    assert compat.imresize(image, 2.0).shape == (8, 12, 3)              # a fraction
    assert compat.imresize(image, (5, 7)).shape == (5, 7, 3)            # (height, width)
    ramp = compat.imresize(np.linspace(-1.0, 1.0, 12).reshape(3, 4), (3, 4), interp="nearest")
    assert ramp.dtype == np.uint8 and ramp.min() == 0 and ramp.max() == 255   # bytescaled as old SciPy did
    with pytest.raises(ValueError, match="interp='area'"):
        compat.imresize(image, 50, interp="area")


def test_install_makes_the_old_names_importable():
    code = ("import numpy as np, scipy.io\n"
            "from grader.kit import compat\n"
            "print(compat.install(['scipy.misc', 'np.float', 'np.nothing']))\n"
            "from scipy.misc import imresize\n"
            f"a = scipy.misc.imread({str(DEFAULT_CAT)!r})\n"
            "print(imresize(a, [224, 224, 3]).shape, np.float is float, np.float64 is not float)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["['scipy.misc', 'np.float']", "(224, 224, 3) True True"]


def test_the_books_scipy_misc_load_image_gives_the_kits_input_on_the_pycnml_track(tmp_path):
    """The older track's benefit: Fig. 3.10's scipy.misc and np.float, with the shims, feed pycnml the kit's input."""
    kit = (REFERENCE_DIR / EXP / "vgg19_demo.py").read_text(encoding="utf-8")
    pillow = ("        input_image = Image.open(image_dir).convert('RGB')\n"
              "        input_image = input_image.resize((224, 224), Image.BILINEAR)\n")
    book = kit.replace(pillow, "        input_image = scipy.misc.imread(image_dir)\n"
                               "        input_image = scipy.misc.imresize(input_image, [224, 224, 3])\n")
    book = book.replace("self.input_data = input_image.flatten().astype(np.float64)",
                        "self.input_data = input_image.flatten().astype(np.float)")
    assert "scipy.misc.imresize(input_image, [224, 224, 3])" in book and "np.float)" in book
    assert exp_3_2_dlp.submission_shims(SimpleNamespace(submission=demo(tmp_path, book, "book"))) == [
        "scipy.misc", "np.float"]
    demo(tmp_path, kit, "kit")
    code = ("import sys, numpy as np\n"
            "from grader.kit import compat\n"
            "from grader.kit.submission import load_module\n"
            "def run(name):\n"
            "    vgg = load_module(sys.argv[1] + '/' + name, 'exp_3_2_dlp', 'vgg19_demo').VGG19()\n"
            "    vgg.net.setInputShape(1, 3, 224, 224)\n"
            "    vgg.load_image(sys.argv[2])\n"
            "    return vgg.input_data\n"
            "kit = run('kit')\n"
            "compat.install(['scipy.misc', 'np.float'])\n"
            "print(np.array_equal(run('book'), kit), kit.size)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(DEFAULT_CAT)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == "True 150528"


# ----- the skeleton --------------------------------------------------------------------------

def test_skeleton_keeps_the_templates_todos_and_no_solution():
    text = REFERENCE.read_text(encoding="utf-8")
    skeleton = strip_solutions(text, f"{EXP}/vgg19_demo.py")
    assert not leaked_lines(text, skeleton, REFERENCE.name)
    for method in ("build_model", "load_model", "load_image"):
        assert f'raise NotImplementedError("TODO in {EXP}/vgg19_demo.py: complete VGG19.{method}")' in skeleton
    assert skeleton.count("# TODO") == 3 and "import pycnnl" in skeleton and "pycnml" not in skeleton.replace(
        "pycnnl", "")


def test_release_writes_the_chosen_tracks_skeleton(monkeypatch):
    from grader.authoring.skeletons import expected_skeletons
    monkeypatch.setenv(course.TRACK_ENV, "pycnnl")
    newer = expected_skeletons()
    monkeypatch.setenv(course.TRACK_ENV, "pycnml")
    books = expected_skeletons()
    for rel in (Path(EXP) / "skeleton" / "vgg19_demo.py", Path("stu_upload") / EXP / "vgg19_demo.py"):
        assert "pycnnl.CnnlNet()" in newer[rel] and "pycnml.CnmlNet(16)" in books[rel]
    assert {k: v for k, v in newer.items() if EXP not in k.parts} == {k: v for k, v in books.items()
                                                                       if EXP not in k.parts}


# ----- the driver's recorder, on the emulator ---------------------------------------------------

def _module(tmp_path: Path, text: str):
    from grader.kit.submission import load_module
    return load_module(demo(tmp_path, text), EXP, "vgg19_demo")


def _tapped(module, strict=False):
    from grader.drivers.exp_3_2_pycnnl import NetTap
    vgg = module.VGG19()
    vgg.net = NetTap(vgg.net, strict=strict)
    return vgg


def test_recorder_records_the_references_build_as_the_template_creates_it(tmp_path):
    vgg = _tapped(_module(tmp_path, REFERENCE.read_text(encoding="utf-8")))
    vgg.build_model(param_path="unused.mat")
    tap = vgg.net
    assert tap.refused is None and tap.count == 43 and tap.names() == list(LAYER_NAMES_CNNL)
    want = vgg19_layers()
    for got, layer in zip(tap.layers, want):
        assert {k: v for k, v in got.items()} == {k: v for k, v in layer.items() if k != "output"}
    arrays = tap.structure()
    assert arrays["size"].tolist() == [43] and arrays["input_shape"].tolist() == [1, 3, 224, 224]
    assert arrays["in_shape"][42].tolist() == [1, 1, 1000, -1] and arrays["in_shape_len"][42] == 3


def test_recorder_keeps_recording_after_pycnnl_refuses(tmp_path):
    text = REFERENCE.read_text(encoding="utf-8").replace(
        "        last = [1, last[1], last[2] // 2, last[3] // 2]\n", "", 1)
    vgg = _tapped(_module(tmp_path, text))
    vgg.build_model(param_path="unused.mat")
    assert vgg.net.count == 43
    assert "createConvLayer" in vgg.net.refused and "conv2_1" in vgg.net.refused


def test_recorder_names_the_pycnml_habits(tmp_path):
    vgg = _tapped(_module(tmp_path, REFERENCE.read_text(encoding="utf-8")))
    with pytest.raises(TypeError, match="takes 7 arguments, got 6; pycnml's createConvLayer"):
        vgg.net.createConvLayer("conv1_1", 64, 3, 1, 1, 1)
    with pytest.raises(AttributeError, match="pycnnl has no flatten layer"):
        vgg.net.createFlattenLayer("flatten", [1, 25088, 1, 1])
    with pytest.raises(TypeError, match="kernel must be an int"):
        vgg.net.createPoolingLayer("pool1", [1, 64, 224, 224], 2.0, 2)


# ----- the checks' hints ----------------------------------------------------------------------

def _golden_input() -> np.ndarray:
    pixels = np.array(Image.open(DEFAULT_CAT).convert("RGB").resize((224, 224), Image.BILINEAR), dtype=np.float32)
    return (pixels - cnnl.MEAN).astype(np.float32).astype(np.float64)   # [224, 224, 3]


@pytest.mark.parametrize("layout, words", [
    ("nhwc", ""),
    ("nchw", "the input is in NCHW order"),
    ("bgr", "channels are BGR"),
    ("mean", "the mean was not subtracted"),
    ("short", "setInputData got 50176 values"),
])
def test_input_hint_tells_the_layout(layout, words):
    image = _golden_input()
    golden = {"input/head": image.reshape(-1)[:672], "input/size": np.array([150528.0])}
    given = {"nhwc": image, "nchw": image.transpose(2, 0, 1), "bgr": image[:, :, ::-1],
             "mean": image + cnnl.MEAN, "short": image[:, :, 0]}[layout]
    outputs = {"input/head": given.reshape(-1)[:672], "input/size": np.array([float(given.size)])}
    hint = cnnl.input_hint(outputs, golden)
    assert (words in hint) if words else hint == ""


@pytest.mark.parametrize("axes, words", [
    ((3, 0, 1, 2), ""),
    ((3, 2, 0, 1), "pycnml's [Cout, Cin, kh, kw]"),
    ((0, 1, 2, 3), "not transposed"),
    ((2, 0, 1, 3), "experiment 3.1's layout"),
])
def test_conv_weight_hint_names_the_layout(axes, words):
    mat = np.random.default_rng(0).standard_normal((3, 3, 3, 64))     # MatConvNet's [kh, kw, Cin, Cout]
    golden = {"conv1_1/weight": mat.transpose(3, 0, 1, 2).reshape(-1)}
    hint = cnnl.conv_weight_hint({"conv1_1/weight": mat.transpose(axes).reshape(-1)}, golden)
    assert (words in hint and "np.transpose(weight, [3, 0, 1, 2])" in hint) if words else hint == ""


def test_mlp_and_shape_hints():
    layer = {"name": "fc6", "in_shape": [1, 1, 1, 25088], "w_shape": [1, 1, 4096, 25088], "out_shape": [1, 1, 1, 4096]}
    assert "is transposed" in cnnl._mlp_problem(layer) and "[1, 1, 25088, 4096]" in cnnl._mlp_problem(layer)
    assert cnnl._mlp_problem(dict(layer, w_shape=[1, 1, 25088, 4096])) == ""
    assert "do not describe x @ W" in cnnl._mlp_problem(dict(layer, w_shape=[1, 1, 25088, 1000]))
    outputs = [("the input (setInputShape)", [1, 3, 224, 224]), ("conv1_1", [1, 64, 224, 224])]
    assert "NHWC order" in cnnl._shape_hint([1, 224, 224, 64], [1, 64, 224, 224], outputs)
    assert cnnl._shape_hint([1, 64, 224, 224], [1, 64, 224, 224], outputs) == ""


# ----- the runner ---------------------------------------------------------------------------

def test_runner_stops_cleanly_on_the_pycnnl_skeleton(tmp_path):
    sub = demo(tmp_path, strip_solutions(REFERENCE.read_text(encoding="utf-8"), f"{EXP}/vgg19_demo.py"))
    proc = subprocess.run([sys.executable, str(RUNNER), "--submission", str(sub), "--no-compare"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "track: pycnnl, the newer edition" in proc.stdout and "quant parameters" not in proc.stdout
    assert "TODO in exp_3_2_dlp/vgg19_demo.py: complete VGG19.build_model" in proc.stderr
    assert "Traceback" not in proc.stderr
