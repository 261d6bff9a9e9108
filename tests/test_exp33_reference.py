"""Experiment 3.3 reference solution: gradients, loop vs fast layers, losses, Adam, runner.

Oracles are independent of the code under test: centered-difference gradients
(grader.gradcheck), einsum formulas written from the book's equations, and a real
MatConvNet-layout .mat written with scipy.io.savemat.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, rel_error
from grader.authoring.markers import leaked_lines, strip_solutions
from grader.kit import style
from grader.refnet import styleloop
from grader.kit.paths import DEFAULT_CONTENT, REFERENCE_DIR, REPO_ROOT
from grader.kit.submission import load_module

EXP = "exp_3_3_style_transfer"
RUNNER = REPO_ROOT / EXP / "main_exp_3_3.py"
GRAD_TOL = 1e-6  # float64 centered differences; correct code gives ~1e-9

VGG_NAMES = (
    'conv1_1', 'relu1_1', 'conv1_2', 'relu1_2', 'pool1',
    'conv2_1', 'relu2_1', 'conv2_2', 'relu2_2', 'pool2',
    'conv3_1', 'relu3_1', 'conv3_2', 'relu3_2', 'conv3_3', 'relu3_3', 'conv3_4', 'relu3_4', 'pool3',
    'conv4_1', 'relu4_1', 'conv4_2', 'relu4_2', 'conv4_3', 'relu4_3', 'conv4_4', 'relu4_4', 'pool4',
    'conv5_1', 'relu5_1', 'conv5_2', 'relu5_2', 'conv5_3', 'relu5_3', 'conv5_4', 'relu5_4', 'pool5',
    'fc6', 'relu6', 'fc7', 'relu7', 'fc8', 'prob')
STAGE_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}


@pytest.fixture(scope="module")
def ref():
    """The reference modules, imported the way a runner imports a submission."""
    mods = {name: load_module(REFERENCE_DIR, EXP, name)
            for name in ("layers_1", "layers_2", "layers_3", "style_transfer")}
    # style_transfer imported its own copies of the layer modules last: use those.
    return {name: sys.modules[name] for name in mods}


# --------------------------------------------------------------------------- helpers

def conv_oracle(x, weight, bias, padding, stride):
    """Formula 3.3 written with einsum over sliding windows: x [N,Cin,H,W], weight [Cin,K,K,Cout]."""
    k = weight.shape[1]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,cijo->nohw", win, weight) + bias[None, :, None, None]


def make_conv(ref, k, cin, cout, p, s, layer_type, rng):
    layer = ref["layers_2"].ConvolutionalLayer(k, cin, cout, p, s, layer_type)
    layer.init_param()
    layer.load_param(rng.standard_normal((cin, k, k, cout)), rng.standard_normal(cout))
    return layer


def write_vgg19_mat(path: Path, seed: int = 0, mean=(123.68, 116.779, 103.939)) -> dict:
    """A VGG19 .mat in MatConvNet's layout (43 entries, conv weights [K,K,Cin,Cout] float32,
    bias [Cout,1], normalization.averageImage HxWx3), He-scaled random conv weights.
    The fc entries carry no weights: style transfer never loads them."""
    rng = np.random.default_rng(seed)
    layers = np.empty((1, len(VGG_NAMES)), dtype=object)
    weights = {}
    cin = 3
    for idx, name in enumerate(VGG_NAMES):
        kind = name.rstrip("0123456789_")
        if kind == "conv":
            cout = STAGE_CHANNELS[int(name[4])]
            w = (rng.standard_normal((3, 3, cin, cout), dtype=np.float32) * np.float32(np.sqrt(2.0 / (9 * cin))))
            b = (0.01 * rng.standard_normal((cout, 1))).astype(np.float32)
            cell = np.empty((1, 2), dtype=object)
            cell[0, 0], cell[0, 1] = w, b
            layers[0, idx] = {"weights": cell, "name": name, "type": "conv", "pad": 1.0, "stride": 1.0}
            weights[name] = (w, b)
            cin = cout
        else:
            layers[0, idx] = {"name": name, "type": kind}
    average = np.ones((4, 4, 3), dtype=np.float32) * np.asarray(mean, dtype=np.float32)
    scipy.io.savemat(path, {"layers": layers, "normalization": {"averageImage": average}})
    return weights


@pytest.fixture(scope="module")
def vgg_mat(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "vgg19_small_test.mat"
    weights = write_vgg19_mat(path)
    return path, weights


# --------------------------------------------------------------------------- conv

CONV_CASES = [  # kernel, cin, cout, padding, stride, H, W
    (3, 3, 4, 1, 1, 5, 6),
    (3, 2, 3, 0, 1, 6, 5),
    (3, 2, 3, 0, 2, 7, 8),
    (3, 2, 3, 2, 2, 6, 5),
    (1, 3, 2, 0, 1, 4, 4),
    (5, 2, 2, 2, 3, 9, 7),
]


@pytest.mark.parametrize("layer_type", [0, 1], ids=["raw", "speedup"])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "k%d_c%d-%d_p%d_s%d_%dx%d" % c)
def test_conv_forward_matches_formula_and_gradients_match_numerical(ref, case, layer_type):
    k, cin, cout, p, s, h, w = case
    rng = np.random.default_rng(sum(case))
    layer = make_conv(ref, k, cin, cout, p, s, layer_type, rng)
    x = rng.standard_normal((2, cin, h, w))
    out = layer.forward(x)
    np.testing.assert_allclose(out, conv_oracle(x, layer.weight, layer.bias, p, s), rtol=1e-10, atol=1e-10)
    if layer_type == 0:   # figure 3.27, the given forward_speedup, records no time
        assert layer.forward_time >= 0

    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    assert dx.shape == x.shape
    assert layer.backward_time >= 0
    d_weight, d_bias = np.array(layer.d_weight), np.array(layer.d_bias)

    num_dx = eval_numerical_gradient_array(lambda v: layer.forward(v).copy(), x, dout)
    weight = layer.weight.copy()
    num_dw = eval_numerical_gradient_array(
        lambda v: conv_oracle(x, v, layer.bias, p, s), weight, dout)
    num_db = eval_numerical_gradient_array(
        lambda v: conv_oracle(x, layer.weight, v, p, s), layer.bias.copy(), dout)
    assert rel_error(num_dx, dx) < GRAD_TOL
    assert rel_error(num_dw, d_weight) < GRAD_TOL
    assert rel_error(num_db, d_bias) < GRAD_TOL


def test_conv_gradient_check_detects_a_wrong_backward(ref):
    """The checker itself must fail on a plausible mistake (weights not flipped back)."""
    rng = np.random.default_rng(5)
    layer = make_conv(ref, 3, 2, 3, 1, 1, 1, rng)
    x = rng.standard_normal((1, 2, 5, 5))
    dout = rng.standard_normal(layer.forward(x).shape)
    good = layer.backward(dout)
    num = eval_numerical_gradient_array(lambda v: layer.forward(v).copy(), x, dout)
    wrong = np.roll(good, 1, axis=3)
    assert rel_error(num, good) < GRAD_TOL
    assert rel_error(num, wrong) > 1e-2


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_conv_raw_and_speedup_agree(ref, dtype, tol):
    """Loop and fast conv on one input; float32 tolerance is relative to the output scale."""
    rng = np.random.default_rng(3)
    w, b = rng.standard_normal((8, 3, 3, 6)), rng.standard_normal(6)
    x = rng.standard_normal((2, 8, 9, 11)).astype(dtype)
    raw = ref["layers_2"].ConvolutionalLayer(3, 8, 6, 1, 1, 0)
    fast = ref["layers_2"].ConvolutionalLayer(3, 8, 6, 1, 1, 1)
    for layer in (raw, fast):
        layer.init_param()
        layer.load_param(w.astype(dtype), b.astype(dtype))
    y_raw, y_fast = raw.forward(x), fast.forward(x)
    assert y_fast.dtype == dtype, "the fast conv must keep the input dtype"
    dy = rng.standard_normal(y_raw.shape).astype(dtype)
    dx_raw, dx_fast = raw.backward(dy), fast.backward(dy)
    assert dx_fast.dtype == dtype
    for got, want in ((y_fast, y_raw), (dx_fast, dx_raw), (fast.d_weight, raw.d_weight), (fast.d_bias, raw.d_bias)):
        scale = np.max(np.abs(want))
        assert np.max(np.abs(np.asarray(got, np.float64) - want)) <= tol * scale


def test_conv_rejects_wrong_shapes_with_clear_messages(ref):
    layer = ref["layers_2"].ConvolutionalLayer(3, 4, 5, 1, 1, 1)
    layer.init_param()
    with pytest.raises(ValueError, match=r"\[N, 4, H, W\].*\(1, 3, 6, 6\)"):
        layer.forward(np.zeros((1, 3, 6, 6)))
    with pytest.raises(ValueError, match=r"\(4, 3, 3, 5\).*\(3, 3, 4, 5\)"):
        layer.load_param(np.zeros((3, 3, 4, 5)), np.zeros(5))


# --------------------------------------------------------------------------- pooling

@pytest.mark.parametrize("layer_type", [0, 1], ids=["raw", "speedup"])
@pytest.mark.parametrize("k, s, h, w", [(2, 2, 6, 8), (2, 2, 7, 5), (3, 2, 7, 8), (2, 1, 5, 6)])
def test_pool_matches_formula_and_numerical_gradient(ref, layer_type, k, s, h, w):
    rng = np.random.default_rng(k * 10 + s)
    layer = ref["layers_2"].MaxPoolingLayer(k, s, layer_type)
    x = rng.standard_normal((2, 3, h, w))
    out = layer.forward(x)
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    np.testing.assert_array_equal(out, win.max(axis=(4, 5)))
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    num = eval_numerical_gradient_array(lambda v: layer.forward(v).copy(), x, dout)
    layer.forward(x)
    assert rel_error(num, dx) < GRAD_TOL


@pytest.mark.parametrize("layer_type", [0, 1], ids=["raw", "speedup"])
def test_pool_routes_ties_to_the_first_maximum(ref, layer_type):
    layer = ref["layers_2"].MaxPoolingLayer(2, 2, layer_type)
    x = np.array([[[[1.0, 3.0, 5.0, 5.0],
                    [3.0, 2.0, 5.0, 5.0]]]])
    layer.forward(x)
    dx = layer.backward(np.array([[[[10.0, 20.0]]]]))
    np.testing.assert_array_equal(dx, [[[[0, 10, 20, 0], [0, 0, 0, 0]]]])


def test_pool_speedup_keeps_float32(ref):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 8, 10)).astype(np.float32)
    raw, fast = ref["layers_2"].MaxPoolingLayer(2, 2, 0), ref["layers_2"].MaxPoolingLayer(2, 2, 1)
    y = fast.forward(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, raw.forward(x))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = fast.backward(dy)
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, raw.backward(dy))


# --------------------------------------------------------------------------- losses

def test_content_loss_value_and_gradient(ref):
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 4, 5))
    layer = ref["layers_3"].ContentLossLayer()
    want = np.einsum("nchw,nchw->", x - y, x - y) / (2 * x.size)  # formula 3.10
    assert abs(layer.forward(x, y) - want) <= 1e-12 * abs(want)
    grad = layer.backward(x, y)
    num = eval_numerical_gradient(lambda v: layer.forward(v, y), x.copy())
    assert rel_error(num, grad) < GRAD_TOL


def test_style_loss_value_and_gradient(ref):
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((2, 4, 3, 5)), rng.standard_normal((2, 4, 3, 5))
    n, c, h, w = x.shape
    layer = ref["layers_3"].StyleLossLayer()
    gram_x = np.einsum("nihw,njhw->nij", x, x)  # formula 3.12
    gram_y = np.einsum("nihw,njhw->nij", y, y)
    want = np.sum((gram_x - gram_y) ** 2) / (4 * n * c**2 * h**2 * w**2)  # formula 3.13
    got = layer.forward(x, y)
    assert abs(got - want) <= 1e-12 * abs(want)
    np.testing.assert_allclose(layer.gram_input, gram_x, rtol=1e-12)
    np.testing.assert_allclose(layer.gram_style, gram_y, rtol=1e-12)
    grad = layer.backward(x, y)
    want_grad = np.einsum("njhw,nji->nihw", x, gram_x - gram_y) / (n * c**2 * h**2 * w**2)  # formula 3.15
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-14)

    def loss_of(v):
        return layer.forward(v, y)
    num = eval_numerical_gradient(loss_of, x.copy())
    assert rel_error(num, grad) < GRAD_TOL


def test_style_loss_float32_stays_float32(ref):
    rng = np.random.default_rng(9)
    x, y = (np.abs(rng.standard_normal((1, 8, 6, 7))).astype(np.float32) for _ in range(2))
    layer = ref["layers_3"].StyleLossLayer()
    loss32 = layer.forward(x, y)
    grad32 = layer.backward(x, y)
    assert grad32.dtype == np.float32
    loss64 = layer.forward(x.astype(np.float64), y.astype(np.float64))
    grad64 = layer.backward(x.astype(np.float64), y.astype(np.float64))
    assert abs(loss32 - loss64) <= 1e-5 * abs(loss64)
    assert np.max(np.abs(grad32 - grad64)) <= 1e-5 * np.max(np.abs(grad64))


# --------------------------------------------------------------------------- Adam

def test_adam_matches_formula_3_17_for_three_steps(ref):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 3, 4, 4))
    grads = [rng.standard_normal(x.shape) for _ in range(3)]
    adam = ref["style_transfer"].AdamOptimizer(0.5, x.shape)
    beta1, beta2, eps, lr = 0.9, 0.999, 1e-8, 0.5
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    want = x.copy()
    got = x.copy()
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        want = want - lr * m_hat / (np.sqrt(v_hat) + eps)
        got = adam.update(got, g)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    # First Adam step moves every pixel by about lr (m_hat / sqrt(v_hat) = sign(g)).
    first = ref["style_transfer"].AdamOptimizer(0.5, x.shape).update(x, grads[0])
    np.testing.assert_allclose(np.abs(first - x), 0.5, rtol=1e-6)


# --------------------------------------------------------------------------- whole network

def tiny_vgg(ref, rng, width=(3, 4, 5, 6, 6)):
    """The real VGG19 class and layer order, with few channels per stage (float64)."""
    st = ref["style_transfer"]
    vgg = st.VGG19(param_path="unused.mat")
    vgg.build_model()
    cin = 3
    for name in vgg.param_layer_name:
        if name.startswith("conv"):
            cout = width[int(name[4]) - 1]
            layer = ref["layers_2"].ConvolutionalLayer(3, cin, cout, 1, 1, 1)
            layer.init_param()
            layer.load_param(rng.standard_normal((cin, 3, 3, cout)) * np.sqrt(2.0 / (9 * cin)),
                             0.1 * rng.standard_normal(cout))
            vgg.layers[name] = layer
            cin = cout
    return vgg


@pytest.mark.parametrize("fused", [False, True], ids=["book_backward", "fused_backward"])
def test_style_transfer_gradient_from_losses_to_image(ref, fused):
    """Total loss of figure 3.21 (content relu4_2, style relu1_1..relu5_1) through the
    whole VGG19 structure back to the image, against centered differences."""
    rng = np.random.default_rng(21)
    vgg = tiny_vgg(ref, rng)
    shape = (1, 3, 16, 16)
    content, style_image = rng.standard_normal(shape) * 20, rng.standard_normal(shape) * 20
    content_layers, style_layers = style.target_features(vgg, content, style_image)
    objective = styleloop.StyleObjective(vgg, ref["layers_3"].ContentLossLayer(), ref["layers_3"].StyleLossLayer(),
                                     content_layers, style_layers, alpha=1.0, beta=500.0, tv_weight=0.01,
                                     fused=fused)
    image = rng.standard_normal(shape) * 20
    total, content_loss, style_loss, tv, grad = objective(image)
    assert grad.shape == shape and np.all(np.isfinite(grad)) and np.any(grad != 0)
    assert total == pytest.approx(np.mean(content_loss) + 500 * np.mean(style_loss) + tv, rel=1e-12)
    # 40 random pixels: a full check would cost 2 network passes per pixel.
    picks = [tuple(int(rng.integers(0, d)) for d in shape) for _ in range(40)]
    num = []
    for ix in picks:
        old = image[ix]
        image[ix] = old + 1e-5
        plus = objective(image)[0]
        image[ix] = old - 1e-5
        minus = objective(image)[0]
        image[ix] = old
        num.append((plus - minus) / 2e-5)
    got = np.array([grad[ix] for ix in picks])
    assert rel_error(np.array(num), got) < GRAD_TOL


def test_fused_and_book_backward_give_the_same_gradient(ref):
    rng = np.random.default_rng(22)
    vgg = tiny_vgg(ref, rng)
    shape = (1, 3, 32, 32)
    content_layers = vgg.forward(rng.standard_normal(shape), style.CONTENT_LOSS_LAYERS)
    style_layers = vgg.forward(rng.standard_normal(shape), style.STYLE_LOSS_LAYERS)
    image = rng.standard_normal(shape)
    results = [styleloop.StyleObjective(vgg, ref["layers_3"].ContentLossLayer(), ref["layers_3"].StyleLossLayer(),
                                    content_layers, style_layers, 1.0, 500.0, 0.0, fused)(image)
               for fused in (False, True)]
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    np.testing.assert_allclose(results[0][4], results[1][4], rtol=1e-9, atol=1e-12 * np.max(np.abs(results[0][4])))


# --------------------------------------------------------------------------- model and image I/O

def test_load_model_reads_conv_weights_and_mean_from_mat(ref, vgg_mat):
    path, weights = vgg_mat
    vgg = ref["style_transfer"].VGG19(param_path=str(path))
    vgg.build_model()
    vgg.init_model()
    vgg.load_model()
    np.testing.assert_allclose(vgg.image_mean, [123.68, 116.779, 103.939], rtol=1e-6)
    for name in ("conv1_1", "conv3_2", "conv5_4"):
        w, b = weights[name]
        np.testing.assert_array_equal(vgg.layers[name].weight, w.transpose(2, 0, 1, 3))
        np.testing.assert_array_equal(vgg.layers[name].bias, b.reshape(-1))
    assert set(vgg.param_layer_name) == set(vgg.layers)
    assert vgg.param_layer_name[-1] == "pool5"


def test_load_image_and_save_image_with_real_files(ref, tmp_path, vgg_mat):
    vgg = ref["style_transfer"].VGG19(param_path=str(vgg_mat[0]))
    vgg.build_model()
    vgg.load_model()
    image, shape = vgg.load_image(str(DEFAULT_CONTENT), 24, 40)
    original = np.asarray(Image.open(DEFAULT_CONTENT).convert("RGB"))
    assert shape[:2] == original.shape[:2]
    assert image.shape == (1, 3, 24, 40) and image.dtype == np.float32
    want = np.asarray(Image.fromarray(original).resize((40, 24), Image.BILINEAR), dtype=np.float32)
    np.testing.assert_allclose(image[0].transpose(1, 2, 0) + vgg.image_mean, want, atol=1e-4)
    out = tmp_path / "saved.jpg"
    vgg.save_image(image, shape, str(out))
    saved = Image.open(out)
    assert (saved.height, saved.width) == original.shape[:2]
    # A mean-subtracted image far outside [0, 255] is clipped, not wrapped around.
    vgg.save_image(np.full((1, 3, 8, 8), 1000.0, np.float32), (8, 8, 3), str(tmp_path / "white.png"))
    assert np.all(np.asarray(Image.open(tmp_path / "white.png")) == 255)


def test_get_random_img_mixes_noise_and_content(ref):
    np.random.seed(0)
    content = np.full((1, 3, 6, 7), 10.0, np.float32)
    img = ref["style_transfer"].get_random_img(content, 0.5)
    assert img.shape == content.shape and img.dtype == np.float32
    # 0.5 * U(-20, 20) + 0.5 * 10 lies in [-5, 15]
    assert img.min() >= -5 and img.max() <= 15 and img.std() > 1


# --------------------------------------------------------------------------- skeleton

@pytest.mark.parametrize("name", ["layers_1", "layers_2", "layers_3", "style_transfer"])
def test_skeleton_keeps_book_todos_and_hides_solutions(name):
    source = (REFERENCE_DIR / EXP / f"{name}.py").read_text(encoding="utf-8")
    skeleton = strip_solutions(source, f"{EXP}/{name}.py")
    compile(skeleton, f"{name}.py", "exec")
    assert skeleton.count("raise NotImplementedError") >= 1
    # Every code line of the skeleton must be given code (outside the solution blocks).
    leaked = leaked_lines(source, skeleton, f"{EXP}/{name}.py")
    assert not leaked, f"solution lines leaked into the {name} skeleton: {leaked}"
    assert not any(line.strip().startswith("###") for line in skeleton.splitlines())
    book_todos = {
        "layers_2": ["# TODO: 计算卷积层的前向传播", "# TODO: 计算卷积层的反向传播",
                     "# TODO: 最大池化层的反向传播", "self.d_bias[idxc] += ______"],
        "layers_3": ["# TODO: 计算风格迁移图像和目标内容图像的内容损失", "# TODO: 计算风格损失的反向传播",
                     "self.gram_style = ______"],
        "style_transfer": ["# TODO: 计算 VGG19 网络的前向传播", "# TODO: 利用梯度的一阶矩和二阶矩的无偏估计更新风格迁移图像",
                           "output = ______", "def get_random_img(content_image, noise)"],
        "layers_1": ["# TODO：ReLU层的前向传播，计算输出结果"],
    }[name]
    for todo in book_todos:
        assert todo in skeleton


# --------------------------------------------------------------------------- runner

def run_runner(*args, cwd):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    return subprocess.run([sys.executable, str(RUNNER), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_runner_runs_the_students_style_transfer_with_an_estimate(tmp_path, vgg_mat):
    out = tmp_path / "out"
    proc = run_runner("--submission", REFERENCE_DIR, "--weights", vgg_mat[0], "--steps", 3, "--size", "32x48",
                      "--skip-speed-test", "--save-every", 2, "--output", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "your style_transfer()" in proc.stdout
    assert re.search(r"^step 1 took [0-9.]+ s; 2 more steps: about ", proc.stdout, re.M), proc.stdout
    # The submission's own loop prints every save_every steps, as figure 3.21.
    assert [line.split(",")[0] for line in proc.stdout.splitlines() if line.startswith("Step ")] == ["Step 0", "Step 2"]
    assert "3 Adam steps" in proc.stdout
    assert {p.name for p in out.iterdir()} == {"output_0.jpg", "output_2.jpg"}
    assert Image.open(out / "output_2.jpg").size == Image.open(DEFAULT_CONTENT).size


@pytest.mark.slow
def test_runner_kit_loop_writes_images_and_loss_curve(tmp_path, vgg_mat):
    out = tmp_path / "out"
    proc = run_runner("--submission", REFERENCE_DIR, "--weights", vgg_mat[0], "--steps", 3, "--size", "32x48",
                      "--skip-speed-test", "--save-every", 2, "--output", out, "--kit-loop", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    step_lines = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert len(step_lines) == 3, proc.stdout
    totals = [float(line.split("total")[1].split()[0]) for line in step_lines]
    assert totals[-1] < totals[0], f"loss did not fall: {totals}"
    assert {p.name for p in out.iterdir()} == {"output_0.jpg", "output_2.jpg", "loss_curve.png"}
    content = Image.open(DEFAULT_CONTENT)
    assert Image.open(out / "output_2.jpg").size == content.size
    curve = np.asarray(Image.open(out / "loss_curve.png").convert("RGB"))
    assert curve.shape == (420, 720, 3) and (curve != 255).any()


def test_runner_estimate_reads_like_hours_and_minutes():
    import importlib.util
    spec = importlib.util.spec_from_file_location("main_exp_3_3_under_test", RUNNER)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    assert runner.eta_line(48.2, 199) == "step 1 took 48.2 s; 199 more steps: about 2 h 40 min"
    assert runner.format_duration(30) == "30 s" and runner.format_duration(600) == "10 min"


def test_runner_reports_a_missing_content_image(tmp_path, vgg_mat):
    missing = tmp_path / "nope.jpg"
    proc = run_runner("--submission", REFERENCE_DIR, "--weights", vgg_mat[0], "--steps", 1, "--size", "32x48",
                      "--skip-speed-test", "--content", missing, "--output", tmp_path / "o", cwd=tmp_path)
    assert proc.returncode == 2
    assert str(missing) in proc.stdout and "content image not found" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_runner_names_the_missing_todo_of_a_skeleton(tmp_path, vgg_mat):
    sub = tmp_path / "submission" / EXP
    sub.mkdir(parents=True)
    for name in ("layers_1", "layers_2", "layers_3", "style_transfer"):
        source = (REFERENCE_DIR / EXP / f"{name}.py").read_text(encoding="utf-8")
        (sub / f"{name}.py").write_text(strip_solutions(source, f"{EXP}/{name}.py"), encoding="utf-8")
    proc = run_runner("--submission", sub.parent, "--weights", vgg_mat[0], "--steps", 1, "--size", "32x48",
                      "--skip-speed-test", "--output", tmp_path / "o", cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "TODO not done yet" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "style_transfer.py" in proc.stdout and "build_model" in proc.stdout
