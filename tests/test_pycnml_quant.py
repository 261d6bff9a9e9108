"""Quantization rules of the pycnml emulator: rounding, clamping, QuantTool, course files."""
from fractions import Fraction
import math

import numpy as np
import pytest

import pycnml
from grader.kit.paths import COURSE_DIR
from pycnml.quant import QMAX, QMIN, quant_param_for_max, quantize, round_half_away


def _round_half_away_exact(v: float) -> int:
    """Oracle in exact rational arithmetic."""
    f = Fraction(v)
    r = math.floor(abs(f) + Fraction(1, 2))
    return r if f >= 0 else -r


def test_round_half_away_ties_go_away_from_zero():
    v = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -127.5])
    np.testing.assert_array_equal(round_half_away(v), [1, 2, 3, -1, -2, -3, 127, -128])


def test_round_half_away_just_below_half_rounds_down():
    below = np.nextafter(0.5, 0.0)  # floor(x + 0.5) would give 1 here
    np.testing.assert_array_equal(round_half_away(np.array([below, -below])), [0.0, 0.0])


def test_round_half_away_matches_exact_oracle_on_random_values():
    rng = np.random.default_rng(1)
    v = np.concatenate([rng.uniform(-130, 130, 500), rng.integers(-130, 130, 200) + 0.5,
                        np.nextafter(rng.integers(-130, 130, 100) + 0.5, 0.0)])
    want = np.array([_round_half_away_exact(float(x)) for x in v], dtype=np.float64)
    np.testing.assert_array_equal(round_half_away(v), want)


def test_quantize_clamps_to_int8_range():
    qp = pycnml.QuantParam(0, 1.0)
    q = quantize(np.array([1e6, -1e6, 127.49, 127.5, -128.49, -128.5, -129.0]), qp)
    np.testing.assert_array_equal(q, [127, -128, 127, 127, -128, -128, -128])


def test_quantize_uses_position_and_scale():
    qp = pycnml.QuantParam(-3, 1.5)          # step = 2**-3 / 1.5
    x = np.array([10 * qp.step(), 10.5 * qp.step(), -2.5 * qp.step()])
    np.testing.assert_array_equal(quantize(x, qp), [10, 11, -3])
    assert quantize(np.array([0.0]), qp).dtype == np.float32


def test_quantize_error_is_within_half_lsb_in_range():
    rng = np.random.default_rng(2)
    x = rng.uniform(-50, 50, 10000)
    qp = pycnml.QuantTool().getQuantParam(x, "t")
    err = np.abs(quantize(x, qp).astype(np.float64) * qp.step() - x)
    assert err.max() <= qp.step() / 2 * (1 + 1e-12)
    assert err.max() > qp.step() / 4        # the codes really are coarse
    assert set(np.unique(quantize(x, qp))) <= set(range(QMIN, QMAX + 1))


def test_quant_param_default_and_attributes():
    qp = pycnml.QuantParam()
    assert (qp.position, qp.scale) == (1, 1.0)
    qp.position, qp.scale = -7, 1.25
    assert (qp.position, qp.scale) == (-7, 1.25)
    assert pycnml.QuantParam(3, 1.5) == pycnml.QuantParam(3, 1.5)


@pytest.mark.parametrize("absmax, position, scale", [
    (151.061, 1, 1.68144),   # conv1_1 input of the course's VGG19 file
    (255.0, 2, 1.99216),     # fc1 input of the course's MNIST file
])
def test_quant_tool_known_values(absmax, position, scale):
    qp = pycnml.QuantTool().getQuantParam(np.array([[0.0, -absmax / 2], [absmax, 1.0]]), "l")
    assert qp.position == position
    assert f"{qp.scale:.5g}" == f"{scale:.5g}"


def test_quant_tool_zero_tensor():
    qp = pycnml.QuantTool().getQuantParam(np.zeros(10), "z")
    assert (qp.position, qp.scale) == (0, 1.0)


def test_quant_tool_keeps_running_max_per_name():
    tool = pycnml.QuantTool()
    first = tool.getQuantParam(np.array([255.0]), "conv1")
    smaller = tool.getQuantParam(np.array([-3.0]), "conv1")
    assert smaller == first                    # 255 is still the max for conv1
    other = tool.getQuantParam(np.array([-3.0]), "conv2")
    assert other != first                      # names do not share a max
    larger = tool.getQuantParam(np.array([-1000.0]), "conv1")
    assert tool.absmax("conv1") == 1000.0 and larger != first


@pytest.mark.parametrize("absmax", [1e-6, 0.01, 0.7, 1.0, 3.3, 126.0, 127.0, 151.061, 4000.0, 1e9])
def test_quant_tool_maps_max_to_127_with_scale_in_1_2(absmax):
    qp = quant_param_for_max(absmax)
    assert math.isclose(absmax * qp.scale / 2.0 ** qp.position, 127.0, rel_tol=1e-12)
    assert 1.0 <= qp.scale < 2.0 + 1e-12


def test_course_vgg19_quant_file():
    params = np.load(COURSE_DIR / "vgg19_quant_param_new.npz")
    assert params["input"].shape == (38,) and params["filter"].shape == (38,)
    ours = quant_param_for_max(255 - 103.939)
    assert int(params["input"][0]) == ours.position
    assert f"{params['input'][1]:.5g}" == f"{ours.scale:.5g}"
    positions = params["filter"][0::2]
    assert positions.min() == -12 and positions.max() == -7


def test_course_mnist_quant_file():
    params = np.load(COURSE_DIR / "mnist_mlp_quant_param.npz")
    ours = quant_param_for_max(255.0)
    assert int(params["input"][0]) == ours.position
    assert math.isclose(params["input"][1], ours.scale, rel_tol=1e-6)
