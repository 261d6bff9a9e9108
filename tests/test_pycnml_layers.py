"""Emulator numerics layer by layer, against independent float64 computations.

Two oracles per conv/mlp layer:
* bit-exact: the quantized model computed independently here (codes from exact
  rational rounding, integer sums in int64, then the same dequantization);
* bounded: the unquantized float64 layer. Every quantized element is off by at
  most half a code step (0.5 LSB = 2**position / scale / 2), so an output
  y = sum(x_i * w_i) + b moves by at most
      dx/2 * sum|w_hat_i| + dw/2 * sum|x_i|          (dx, dw: the two steps)
  plus the fp16 roundings of bias (|b| * 2**-11), of mlp weights
  (|x|.|w| * 2**-11) and of the output (|y| * 2**-11 + 2**-25).
"""
import contextlib
import io
from fractions import Fraction
import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import pycnml
from pycnml import kernels

U = 2.0 ** -11          # fp16 unit roundoff
TINY = 2.0 ** -25       # half the smallest fp16 subnormal


def new_net(*args):
    with contextlib.redirect_stdout(io.StringIO()):
        return pycnml.CnmlNet(*args)


def fp16(x):
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float64).astype(np.float16).astype(np.float64)


def codes(x, qp):
    """int8 codes by exact rational rounding, independent of pycnml.quant."""
    step_inv = Fraction(qp.scale) / Fraction(2) ** qp.position
    out = []
    for v in np.asarray(x, dtype=np.float64).ravel():
        f = Fraction(float(v)) * step_inv
        r = math.floor(abs(f) + Fraction(1, 2))
        out.append(max(-128, min(127, r if f >= 0 else -r)))
    return np.array(out, dtype=np.int64).reshape(np.shape(x))


def conv_ref(x, w, b, stride, pad):
    """float64 / int64 direct correlation via sliding windows. x (N,C,H,W), w (Co,C,K,K)."""
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", win, w) + b[None, :, None, None]


def make_conv_case(seed, n=2, cin=3, h=7, w=6, cout=4, k=3, stride=2, pad=1):
    rng = np.random.default_rng(seed)
    x = fp16(rng.normal(0, 3, (n, cin, h, w)))
    wt = rng.normal(0, 0.2, (cout, cin, k, k))
    b = rng.normal(0, 0.5, cout)
    tool = pycnml.QuantTool()
    return x, wt, b, tool.getQuantParam(x, "in"), tool.getQuantParam(wt, "w")


def run_single(in_shape, create, x, load=None):
    net = new_net(16)
    net.setInputShape(*in_shape)
    create(net)
    if load is not None:
        net.loadParams(0, *load)
    net.setInputData(np.asarray(x, dtype=np.float64).ravel())
    net.forward()
    return net, np.array(net.getOutputData())


def test_conv_is_bit_exact_against_independent_quantized_oracle_and_within_bound():
    x, wt, b, qx, qw = make_conv_case(0)
    net, y = run_single(
        x.shape, lambda n: n.createConvLayer("conv", 4, 3, 2, 1, 1, qx), x,
        (wt.ravel(), b, qw))
    assert net.getLayerOutputShape(0) == (2, 4, 4, 3)      # (7 + 2 - 3)//2 + 1, (6 + 2 - 3)//2 + 1
    dx, dw = qx.step(), qw.step()
    acc = conv_ref(codes(x, qx), codes(wt, qw), np.zeros(4, np.int64), 2, 1)
    factor = 2.0 ** (qx.position + qw.position) / (qx.scale * qw.scale)
    want = fp16(acc * factor + fp16(b)[None, :, None, None])
    np.testing.assert_array_equal(y.reshape(want.shape), want)

    exact = conv_ref(x, wt, b, 2, 1)
    w_hat = codes(wt, qw) * dw
    bound = (dx / 2 * np.abs(w_hat).sum(axis=(1, 2, 3))[None, :, None, None]
             + dw / 2 * conv_ref(np.abs(x), np.ones_like(wt), np.zeros(4), 2, 1)
             + np.abs(b)[None, :, None, None] * U)
    bound = bound + U * (np.abs(exact) + bound) + TINY
    err = np.abs(y.reshape(exact.shape) - exact)
    assert (err <= bound).all(), f"worst excess {np.max(err - bound)}"
    assert err.max() > 0          # quantization is really applied


def test_mlp_rounds_weights_to_fp16_then_quantizes_and_stays_within_bound():
    rng = np.random.default_rng(3)
    x = fp16(rng.normal(0, 2, (3, 40)))
    wt = rng.normal(0, 0.1, (7, 40))
    b = rng.normal(0, 0.5, 7)
    tool = pycnml.QuantTool()
    qx, qw = tool.getQuantParam(x, "in"), tool.getQuantParam(fp16(wt), "w")
    _, y = run_single((3, 40, 1, 1), lambda n: n.createMlpLayer("fc", 7, qx), x, (wt.ravel(), b, qw))
    y = y.reshape(3, 7)
    acc = codes(x, qx) @ codes(fp16(wt), qw).T
    factor = 2.0 ** (qx.position + qw.position) / (qx.scale * qw.scale)
    np.testing.assert_array_equal(y, fp16(acc * factor + fp16(b)))

    exact = x @ wt.T + b
    w_hat = codes(fp16(wt), qw) * qw.step()
    bound = (qx.step() / 2 * np.abs(w_hat).sum(axis=1)[None, :]
             + qw.step() / 2 * np.abs(x).sum(axis=1)[:, None]
             + U * np.abs(x) @ np.abs(wt).T + np.abs(b) * U)
    bound = bound + U * (np.abs(exact) + bound) + TINY
    assert (np.abs(y - exact) <= bound).all()


def test_integer_accumulation_is_exact_beyond_float32_range():
    # 4608 products of up to 127*127: sums far above 2**24, where float32 loses integers.
    rng = np.random.default_rng(4)
    a = rng.integers(100, 128, (64, 4608))
    bm = rng.integers(100, 128, (4608, 50))
    blocks = kernels.k_blocks(4608)
    assert all(k1 - k0 <= kernels.MAX_EXACT_K for k0, k1 in blocks)
    got = kernels.exact_int_gemm([a[:, k0:k1].astype(np.float32) for k0, k1 in blocks],
                                 bm.astype(np.float32), blocks, a_rows_are_k=False)
    want = a @ bm
    assert want.min() > 2 ** 25
    np.testing.assert_array_equal(got, want.astype(np.float64))
    # One float32 GEMM over all 4608 terms rounds (spacing 4 above 2**25): what the blocks avoid.
    plain = a.astype(np.float32) @ bm.astype(np.float32)
    assert not np.array_equal(plain.astype(np.int64), want)


def test_relu_pool_exact_and_softmax_fp16():
    rng = np.random.default_rng(5)
    x = fp16(rng.normal(0, 2, (1, 3, 9, 7)))
    net = new_net(16)
    net.setInputShape(1, 3, 9, 7)
    net.createReLuLayer("relu")
    net.createPoolingLayer("pool", 3, 2)
    net.createSoftmaxLayer("sm", 1)
    net.setInputData(x.ravel())
    net.forward()
    r = np.maximum(x, 0)
    np.testing.assert_array_equal(net.getLayerOutput(0), r)
    pooled = np.empty((1, 3, 4, 3))                        # floor((9-3)/2)+1, floor((7-3)/2)+1
    for i in range(4):
        for j in range(3):
            pooled[:, :, i, j] = r[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(2, 3))
    np.testing.assert_array_equal(net.getLayerOutput(1), pooled)
    e = np.exp(pooled - pooled.max(axis=1, keepdims=True))
    sm = e / e.sum(axis=1, keepdims=True)
    y = np.array(net.getOutputData()).reshape(sm.shape)
    assert np.all(np.abs(y - sm) <= 2 * U * sm + 1e-6)
    np.testing.assert_array_equal(y, fp16(y))              # outputs are fp16 values


def test_cast_in_rounds_input_to_fp16():
    x = np.array([1 / 3, 1e-8, 70000.0, -2.0 ** -20, 0.1])
    _, y = run_single((1, 5, 1, 1), lambda n: n.createReLuLayer("r"), x)
    np.testing.assert_array_equal(y, np.maximum(fp16(x), 0))
    assert y[0] != 1 / 3 and y[2] == np.inf                # fp16 overflow, as on the card


def test_flatten_is_hwc_order():
    rng = np.random.default_rng(6)
    x = fp16(rng.normal(size=(2, 3, 4, 5)))
    net, y = run_single((2, 3, 4, 5), lambda n: n.createFlattenLayer("flatten", [2, 60, 1, 1]), x)
    np.testing.assert_array_equal(y, np.transpose(x, (0, 2, 3, 1)).ravel())
    assert not np.array_equal(y, x.ravel())
    assert net.getLayerOutputShape(0) == (2, 60, 1, 1)


def test_get_output_data_is_tuple_of_python_floats():
    net, _ = run_single((1, 6, 1, 1), lambda n: n.createReLuLayer("r"), [3, -1, 2, 5, 0, 4])
    out = net.getOutputData()
    assert isinstance(out, tuple) and len(out) == 6
    assert all(type(v) is float for v in out)
    assert out.index(max(out)) == 3
    assert np.array(out).dtype == np.float64


def test_dilation_other_than_one_is_refused():
    net = new_net()
    net.setInputShape(1, 1, 8, 8)
    with pytest.raises(NotImplementedError, match="dilation 2"):
        net.createConvLayer("conv", 1, 3, 1, 2, 1, pycnml.QuantParam())


def _small_float_net(x, p):
    h = conv_ref(x, p["cw"], p["cb"], 1, 1)
    h = np.maximum(h, 0)
    n, c, hh, ww = h.shape
    h = h.reshape(n, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))
    f = h.transpose(0, 2, 3, 1).reshape(n, -1)
    z = f @ p["fw"].T + p["fb"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return h, f, e / e.sum(axis=1, keepdims=True)


def test_small_net_end_to_end_matches_float_reference():
    rng = np.random.default_rng(7)
    x = rng.normal(0, 50, (1, 3, 8, 8))
    p = {"cw": rng.normal(0, 0.1, (6, 3, 3, 3)), "cb": rng.normal(0, 0.1, 6),
         "fw": rng.normal(0, 0.05, (10, 96)), "fb": rng.normal(0, 0.1, 10)}
    _, f, probs = _small_float_net(fp16(x), p)
    tool = pycnml.QuantTool()
    q_in = [tool.getQuantParam(fp16(x), "conv_in"), tool.getQuantParam(f, "fc_in")]
    q_w = [tool.getQuantParam(p["cw"], "conv_w"), tool.getQuantParam(fp16(p["fw"]), "fc_w")]
    net = new_net(16)
    net.setInputShape(1, 3, 8, 8)
    net.createConvLayer("conv1", 6, 3, 1, 1, 1, q_in[0])
    net.createReLuLayer("relu1")
    net.createPoolingLayer("pool1", 2, 2)
    net.createFlattenLayer("flatten", [1, 96, 1, 1])
    net.createMlpLayer("fc1", 10, q_in[1])
    net.createSoftmaxLayer("softmax", 1)
    assert net.size() == 6
    assert [net.needToBeQuantized(i) for i in range(6)] == [True, False, False, False, True, False]
    assert net.getLayerName(4) == "fc1"
    net.loadParams(0, p["cw"].ravel(), p["cb"], q_w[0])
    net.loadParams(4, p["fw"].ravel(), p["fb"], q_w[1])
    net.setInputData(x.ravel())
    net.forward()
    out = net.getOutputData()
    assert len(out) == 10
    got = np.array(out)
    assert abs(got.sum() - 1.0) < 5e-3
    top2 = np.sort(probs[0])[-2:]
    assert top2[1] - top2[0] > 0.05                        # the reference has a clear winner
    assert out.index(max(out)) == int(np.argmax(probs))
    assert np.abs(got - probs[0]).max() < 0.02
