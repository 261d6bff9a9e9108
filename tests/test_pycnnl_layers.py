"""pycnnl's numerics and layouts on a small net, its quirks, exports and modelled time."""
import contextlib
import io

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import pycnnl
from pycnml import devmodel
from pycnnl import quirks


def new_net():
    with contextlib.redirect_stdout(io.StringIO()):
        return pycnnl.CnnlNet()


# A net with every layer kind: conv (stride 2, pad 1) -> relu -> pool -> fc -> softmax.
N, H, W, CIN, COUT, K, STRIDE, PAD, CLASSES = 1, 9, 7, 3, 5, 3, 2, 1, 6
HO, WO = (H + 2 * PAD - K) // STRIDE + 1, (W + 2 * PAD - K) // STRIDE + 1     # 5 x 4
HP, WP = HO // 2, WO // 2                                                     # 2 x 2
FEATURES = HP * WP * COUT


def case(seed=0):
    rng = np.random.default_rng(seed)
    return dict(x=rng.normal(0, 2, (N, H, W, CIN)),                  # NHWC image
                w=rng.normal(0, 0.5, (K, K, CIN, COUT)),             # matconvnet [kh,kw,Cin,Cout]
                b=rng.normal(0, 0.5, COUT),
                fw=rng.normal(0, 0.05, (HP, WP, COUT, CLASSES)),       # matconvnet fc [h,w,Cin,Cout]
                fb=rng.normal(0, 0.3, CLASSES))


def reference(c, flatten="hwc"):
    """float64, from the definitions: (softmax, fc logits)."""
    xp = np.pad(c["x"][0], ((PAD, PAD), (PAD, PAD), (0, 0)))
    win = sliding_window_view(xp, (K, K), axis=(0, 1))[::STRIDE, ::STRIDE]    # (Ho,Wo,C,K,K)
    y = np.einsum("hwcij,ijco->hwo", win, c["w"]) + c["b"]
    y = np.maximum(y, 0)
    p = y[:2 * HP, :2 * WP].reshape(HP, 2, WP, 2, COUT).max(axis=(1, 3))
    feats = p.reshape(-1) if flatten == "hwc" else p.transpose(2, 0, 1).reshape(-1)
    logits = feats @ c["fw"].reshape(-1, CLASSES) + c["fb"]
    e = np.exp(logits - logits.max())
    return e / e.sum(), logits


def build(c, conv_w=None, fc_w=None, x=None, axis=1):
    """The net on the emulator with the newer edition's layouts (or the given flat arrays)."""
    net = new_net()
    net.setInputShape(N, CIN, H, W)
    net.createConvLayer("conv", pycnnl.IntVector([N, CIN, H, W]), COUT, K, STRIDE, 1, PAD)
    net.createReLuLayer("relu")
    net.createPoolingLayer("pool", pycnnl.IntVector([N, COUT, HO, WO]), 2, 2)
    net.createMlpLayer("fc", pycnnl.IntVector([1, 1, 1, FEATURES]),
                       pycnnl.IntVector([1, 1, FEATURES, CLASSES]), pycnnl.IntVector([1, 1, 1, CLASSES]))
    net.createSoftmaxLayer("softmax", pycnnl.IntVector([1, 1, CLASSES]), axis)
    if conv_w is None:
        conv_w = np.transpose(c["w"], [3, 0, 1, 2]).flatten()             # [Cout,kh,kw,Cin]
    if fc_w is None:
        fc_w = c["fw"].reshape(-1, CLASSES).flatten()                       # [in,out]
    net.loadParams(0, conv_w, c["b"])
    net.loadParams(3, fc_w, c["fb"])
    net.setInputData((c["x"] if x is None else x).flatten())
    net.forward()
    return net


def probs_and_logits(net):
    return np.array(net.getOutputData()), net.getLayerOutput(3).ravel().astype(np.float64)


def close(got, want, rtol=1e-5):
    return np.abs(got - want).max() <= rtol * np.abs(want).max()


def test_float32_forward_matches_float64_reference_tightly():
    c = case()
    want_p, want_l = reference(c)
    got_p, got_l = probs_and_logits(build(c))
    assert close(got_l, want_l) and close(got_p, want_p)
    assert want_p.max() < 0.9                       # not saturated: the comparison means something


@pytest.mark.parametrize("mistake", ["pycnml conv layout [Cout,Cin,kh,kw]", "NCHW input",
                                     "fc weights transposed [out,in]", "NCHW flatten order"])
def test_the_other_editions_layouts_give_wrong_numbers(mistake):
    c = case()
    _, want_l = reference(c)
    if mistake.startswith("pycnml conv"):
        net = build(c, conv_w=np.transpose(c["w"], [3, 2, 0, 1]).flatten())
    elif mistake == "NCHW input":
        net = build(c, x=np.transpose(c["x"], [0, 3, 1, 2]))
    elif mistake.startswith("fc weights"):
        net = build(c, fc_w=c["fw"].reshape(-1, CLASSES).T.flatten())
    else:                                           # the device reads pool's NHWC memory as is
        net = build(c)
        _, want_l = reference(c, flatten="chw")
    _, got_l = probs_and_logits(net)
    assert not close(got_l, want_l, rtol=1e-2), f"{mistake} went unnoticed"


def test_softmax_axis_is_ignored_and_output_is_a_tuple_of_floats():
    c = case()
    outs = [build(c, axis=a).getOutputData() for a in (0, 1, 2, 3, 99)]
    assert all(o == outs[0] for o in outs)
    out = outs[0]
    assert isinstance(out, tuple) and all(type(v) is float for v in out) and len(out) == CLASSES
    assert out.index(max(out)) == int(np.argmax(reference(c)[0]))
    assert abs(sum(out) - 1) < 1e-6


def test_layer_queries():
    net = build(case())
    assert net.size() == 5
    assert [net.getLayerName(i) for i in range(5)] == ["conv", "relu", "pool", "fc", "softmax"]
    assert [net.needToBeQuantized(i) for i in range(5)] == [True, False, False, True, False]
    assert net.getLayerType(2) == pycnnl.POOL and net.getLayerOutputShape(0) == (N, COUT, HO, WO)
    assert net.getLayerOutput(0).shape == (N, HO, WO, COUT)       # NHWC on the device


def test_mlp_batch_copies_the_weights_for_every_batch_row():
    rng = np.random.default_rng(2)
    b, k, n = 3, 4, 2
    x, w, bias = rng.normal(size=(b, k)), rng.normal(size=(k, n)), rng.normal(size=n)
    net = new_net()
    net.setInputShape(b, k, 1, 1)
    net.createMlpLayer("fc1", [b, 1, 1, k], [b, 1, k, n], [b, 1, 1, n])
    net.loadParams(0, w.flatten(), bias)                          # one batch's weights
    net.setInputData(x.flatten().tolist())                        # a list of Python floats
    net.forward()
    assert close(np.array(net.getOutputData()), (x @ w + bias).ravel())


def test_ints_work_as_input_and_float32_arrays_do_not():
    net = new_net()
    net.setInputShape(1, 4, 1, 1)
    net.createReLuLayer("relu")
    net.setInputData([1, -2, 3, -4])                              # MNIST passes tolist() of ints
    net.forward()
    assert net.getOutputData() == (1.0, 0.0, 3.0, 0.0)
    with pytest.raises(TypeError, match="numpy array of float32"):
        net.setInputData(np.ones(4, dtype=np.float32))


def test_modelled_time_of_a_pycnnl_net():
    net = build(case())
    rows = net.getProfile()
    dev = devmodel.MLU370
    assert [r["name"] for r in rows] == ["conv", "relu", "pool", "fc", "softmax"]
    conv = rows[0]
    assert conv["macs"] == N * COUT * HO * WO * CIN * K * K
    assert conv["modelled_compute_seconds"] == pytest.approx(2 * conv["macs"] / dev.fp32_ops_per_s)
    assert conv["bytes"] == 4 * (N * H * W * CIN + N * HO * WO * COUT + COUT * (CIN * K * K + 1))
    assert all(r["host_seconds"] is not None for r in rows)
    tot = pycnnl.modelled_totals(net)
    assert tot["core_num"] is None and tot["per_layer_launches"] == 5
    assert tot["whole_net_pcie_bytes"] == 4 * (N * H * W * CIN + CLASSES)
    text = pycnnl.format_profile(net)
    assert text.splitlines()[0].startswith("pycnnl emulator profile -- modelled DLP times for MLU370")
    assert "the whole device" in text.splitlines()[0] and "model assumptions" in text


def test_every_quirk_names_its_source():
    assert len(quirks.QUIRKS) >= 15
    for key, q in quirks.QUIRKS.items():
        assert q.behaviour and q.source, key
    for key in ("softmax_axis_ignored", "output_tuple", "float_elements", "no_flatten_layer"):
        assert key in quirks.QUIRKS
    assert quirks.QUIRKS["float_elements"].guess and quirks.QUIRKS["softmax_axis_ignored"].single_source


def test_unused_exports_are_present():
    net = new_net()
    net.setOutputShape(1, 1, 1000)
    with pytest.raises(NotImplementedError, match="CnnlNet_setOutputShape"):
        net.setOutputShape(1)
    qp = pycnnl.QuantParam()
    assert (qp.position, qp.scale) == (1, 1.0)
    assert pycnnl.QuantTool().getQuantParam([127.0], "x").position == 0
    s = pycnnl.Shape2D()
    s.n, s.c, s.h, s.w = 1, 2, 3, 4
    assert s.size() == 24 and pycnnl.Kernel().sh == 1 and pycnnl.Pad().pt == 0
    assert pycnnl.ShapeParam().group_count == 1 and not pycnnl.ShapeParam().has_bias
    assert (pycnnl.CAST, pycnnl.CONVOLUTION, pycnnl.MLP, pycnnl.SOFTMAX, pycnnl.FLATTEN) == (0, 1, 3, 6, 8)
    for name in ("initDevice", "dataSize", "mallocDataRandf", "computeDiff1"):
        with pytest.raises(pycnnl.CnnlError, match="the labs never call it"):
            getattr(pycnnl, name)()
    with pytest.raises(pycnnl.CnnlError):
        pycnnl.Layer()
    for name in ("DataType", "DataAddress", "HostTimer", "FloatVector2", "DoubleVector2", "OPT_LEN"):
        assert hasattr(pycnnl, name)
