"""Figure 3.21 as the student's code: style_transfer() of a completed style_transfer.py, called and run."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grader.kit import style
from grader.refnet import styleloop
from grader.kit.paths import DEFAULT_CONTENT, DEFAULT_STYLE, REFERENCE_DIR, REPO_ROOT
from grader.kit.submission import load_module
from grader.kit.weights import resolve_weights

EXP = "exp_3_3_style_transfer"


@pytest.fixture(scope="module")
def st():
    load_module(REFERENCE_DIR, EXP, "style_transfer")
    return sys.modules["style_transfer"]


@pytest.fixture(scope="module")
def vgg(st):
    net = st.VGG19(param_path=str(resolve_weights().path))
    net.build_model()
    net.init_model()
    net.load_model()
    return net


def test_hyper_parameters_are_the_books(st):
    assert st.CONTENT_LOSS_LAYERS == ['relu4_2']
    assert st.STYLE_LOSS_LAYERS == ['relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu5_1']
    assert (st.NOISE, st.ALPHA, st.BETA, st.TRAINTEP, st.LEARNING_RATE) == (0.5, 1, 500, 2001, 1.0)
    assert (st.IMAGE_HEIGHT, st.IMAGE_WIDTH) == (192, 320)


def test_build_model_builds_the_speedup_network_with_the_books_calls(vgg):
    assert list(vgg.layers) == list(vgg.param_layer_name)
    conv = vgg.layers['conv3_2']
    assert (conv.kernel_size, conv.channel_in, conv.channel_out, conv.padding, conv.stride) == (3, 256, 256, 1, 1)
    assert conv.forward == conv.forward_speedup and vgg.layers['pool4'].forward == vgg.layers['pool4'].forward_speedup


def test_style_transfer_runs_two_steps_saves_each_and_lowers_the_loss(st, vgg, tmp_path, capsys):
    seen = []
    original = st.AdamOptimizer
    st.AdamOptimizer = style.recording_optimizer(original, lambda i, image, grad, out, s: seen.append(
        (np.array(image, dtype=np.float64), np.array(out, dtype=np.float64))))
    try:
        np.random.seed(0)
        final = st.style_transfer(vgg, str(DEFAULT_CONTENT), str(DEFAULT_STYLE), output_dir=str(tmp_path / "out"),
                                  train_steps=2, image_height=32, image_width=32, save_every=1)
    finally:
        st.AdamOptimizer = original
    assert np.shape(final) == (1, 3, 32, 32) and len(seen) == 2
    np.testing.assert_allclose(np.asarray(final, dtype=np.float64), seen[-1][1])
    printed = capsys.readouterr().out
    assert "Step 0, loss = " in printed and "Step 1, loss = " in printed
    for step in (0, 1):
        with Image.open(tmp_path / "out" / f"output_{step}.jpg") as img:
            assert img.size == Image.open(DEFAULT_CONTENT).size
    layers_3 = sys.modules["layers_3"]
    content, style_image = (vgg.load_image(str(p), 32, 32)[0] for p in (DEFAULT_CONTENT, DEFAULT_STYLE))
    targets = style.target_features(vgg, content, style_image)
    objective = styleloop.StyleObjective(vgg, layers_3.ContentLossLayer(), layers_3.StyleLossLayer(), *targets)
    assert objective.loss(np.asarray(final)) < objective.loss(seen[0][0])


def _completed_copy(root: Path) -> Path:
    folder = root / "stu_upload" / EXP
    shutil.copytree(REFERENCE_DIR / EXP, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _run_file(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python <script>`` in ``cwd`` after ``source env.sh``, as a student runs it, in quick mode."""
    command = (f"source {shlex.quote(str(REPO_ROOT / 'env.sh'))} >/dev/null && cd {shlex.quote(str(cwd))} && "
               f"STYLE_TRANSFER_QUICK=1 python {shlex.quote(script)}")
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_file_runs_from_its_folder_and_from_the_kit_root(tmp_path):
    """From stu_upload/<exp>/ and from a folder laid out like the kit root (output/ lands in the cwd)."""
    folder = _completed_copy(tmp_path)
    for cwd, script in ((folder, "style_transfer.py"), (tmp_path, f"stu_upload/{EXP}/style_transfer.py")):
        proc = _run_file(script, cwd)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "Step 1, loss = " in proc.stdout
        assert sorted(p.name for p in (cwd / "output").iterdir()) == ["output_0.jpg", "output_1.jpg"]
