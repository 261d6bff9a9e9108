"""The kit's experiment 3.3 helpers: loss curve, speed test, TV term, the Adam loop."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from gradcheck import eval_numerical_gradient, rel_error
from grader.kit import plots, speedtest, style
from grader.refnet import styleloop
from grader.kit.paths import REFERENCE_DIR
from grader.kit.submission import load_module

EXP = "exp_3_3_style_transfer"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ref():
    mods = {name: load_module(REFERENCE_DIR, EXP, name) for name in ("layers_2", "layers_3", "style_transfer")}
    return {name: sys.modules[name] for name in mods}


# --------------------------------------------------------------------------- loss curve

@pytest.mark.parametrize("losses", [[8e8, 7.6e8, 7.3e8, 6.9e8], [5.0], [], [float("nan"), 0.0, -1.0, 3.0, 2.0]],
                         ids=["falling", "one_step", "empty", "not_all_drawable"])
def test_loss_curve_is_a_real_png_of_720x420(tmp_path, losses):
    path = tmp_path / "loss_curve.png"
    assert plots.draw_loss_curve(losses, path) == path
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (720, 420)
        pixels = np.asarray(img.convert("RGB"))
    assert (pixels != 255).any(), "the curve is blank"


def test_loss_curve_draws_the_line_in_red(tmp_path):
    path = plots.draw_loss_curve([10.0 ** -k for k in range(20)], tmp_path / "c.png")
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red = (rgb[..., 0] > 150) & (rgb[..., 1] < 100) & (rgb[..., 2] < 100)
    assert red.sum() > 200


# --------------------------------------------------------------------------- speed test

def test_speed_test_on_a_small_shape_agrees_and_returns_the_driver_arrays(ref):
    shape = (1, 8, 6, 8)
    seen = []
    result = speedtest.run_speed_test(ref["layers_2"], shape, progress=lambda *a: seen.append(a[:3]))
    assert result.ok
    assert seen == [(kind, path, direction) for kind in ("conv", "pool") for path in ("raw", "speedup")
                    for direction in ("forward", "backward")]
    for layer in (result.conv, result.pool):
        assert [a.direction for a in layer.agreement()] == ["forward", "backward"]
        assert layer.forward_ratio > 0 and layer.backward_ratio > 0
    arrays = result.arrays()
    assert set(arrays) == {"times", "conv_raw", "conv_fast", "pool_raw", "pool_fast"}
    assert arrays["times"].shape == (4,) and np.all(arrays["times"] > 0)
    assert arrays["conv_raw"].shape == shape and arrays["pool_raw"].shape == (1, 8, 3, 4)
    np.testing.assert_allclose(arrays["conv_fast"], arrays["conv_raw"], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(arrays["pool_fast"], arrays["pool_raw"])


def test_speed_test_forward_only_and_a_wrong_speedup_disagrees(ref):
    class WrongPool(ref["layers_2"].MaxPoolingLayer):
        def forward_speedup(self, input):
            return super().forward_speedup(input) + 1.0

    class Layers:
        ConvolutionalLayer = ref["layers_2"].ConvolutionalLayer
        MaxPoolingLayer = WrongPool

    result = speedtest.run_speed_test(Layers, (1, 4, 4, 6), backward=False)
    assert result.conv.ok and not result.pool.ok and not result.ok
    assert result.pool.backward_ratio is None and result.pool.raw.bottom_diff is None
    assert [a.direction for a in result.pool.agreement()] == ["forward"]


def test_speed_inputs_are_seeded():
    a, b = speedtest.speed_inputs((1, 4, 6, 6)), speedtest.speed_inputs((1, 4, 6, 6))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert a["pool_top_diff"].shape == (1, 4, 3, 3) and a["weight"].shape == (4, 3, 3, 4)


# --------------------------------------------------------------------------- objective and loop

def test_tv_loss_gradient_matches_numerical():
    rng = np.random.default_rng(4)
    image = rng.standard_normal((1, 3, 5, 6))
    loss, grad = styleloop.tv_loss_and_grad(image, 0.3)
    num = eval_numerical_gradient(lambda v: styleloop.tv_loss_and_grad(v, 0.3)[0], image.copy())
    assert loss > 0 and rel_error(num, grad) < 1e-7
    assert styleloop.tv_loss_and_grad(image, 0.0)[0] == 0.0


class _Quadratic:
    """A stand-in objective: 0.5 * |x - 3|^2, so every step's loss is known."""

    def __call__(self, image):
        diff = image - 3.0
        return styleloop.StyleLoss(float(0.5 * np.sum(diff * diff)), [0.0], [0.0], 0.0, diff)


def test_run_adam_reports_the_loss_before_each_update_and_casts(ref):
    image = np.zeros((1, 3, 2, 2), np.float32)
    adam = ref["style_transfer"].AdamOptimizer(0.5, image.shape)
    calls = []
    final, losses = styleloop.run_adam(_Quadratic(), adam, image, 4, dtype=np.float32,
                                   on_step=lambda step, loss, img, s: calls.append((step, loss.total, img.dtype)))
    assert losses[0] == pytest.approx(0.5 * 9 * image.size)
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert [c[0] for c in calls] == [0, 1, 2, 3] and [c[1] for c in calls] == losses
    assert final.dtype == np.float32 and all(c[2] == np.float32 for c in calls)
    # First Adam step moves every pixel by lr towards the minimum.
    np.testing.assert_allclose(styleloop.adam_step(_Quadratic(), ref["style_transfer"].AdamOptimizer(0.5, image.shape),
                                               image)[0], 0.5, rtol=1e-6)


def test_start_image_choices(ref):
    content = np.full((1, 3, 4, 4), 10.0, np.float32)
    style_image = np.full((1, 3, 4, 4), -10.0, np.float32)
    np.testing.assert_array_equal(style.start_image("content", content, style_image, None), content)
    np.testing.assert_allclose(style.start_image("mixed", content, style_image, None), 9.0)
    np.random.seed(0)
    noisy = style.start_image("noise", content, style_image, ref["style_transfer"].get_random_img)
    assert noisy.shape == content.shape and noisy.std() > 1
    with pytest.raises(ValueError, match="noise, content, mixed"):
        style.start_image("zeros", content, style_image, None)
