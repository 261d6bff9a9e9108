"""pycnnl and pycnml run the same VGG19 (the synthetic weights) and agree with a float64 reference.

pycnnl (float32, NHWC, the newer edition's layouts) must match the float64 network tightly;
pycnml (int8/fp16, NCHW, the older layouts) within its quantization error; both pick the
same class. The fast test uses VGG19's topology with an eighth of the channels (the kit's
synthetic generator, ``channels_divisor=8``); the slow one the full synthetic .mat, loaded
the way the newer template's load_model does.
"""
import contextlib
import io

import numpy as np
import pytest
import scipy.io
from numpy.lib.stride_tricks import sliding_window_view

import pycnml
import pycnnl
from grader.kit import images, synthetic
from grader.kit.paths import REPO_ROOT
from grader.kit.vgg_layout import MAT_LAYER_NAMES

MAT = REPO_ROOT / "data" / "generated" / "vgg19_synthetic.mat"


def quiet(factory, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return factory(*args)


# ---- float64 reference, NHWC, written from the definitions ---------------------------------

def reference(params, image_hwc):
    """Softmax (1000,) and the input of every conv/fc layer (for pycnml's calibration), plus
    fc8's output under "logits"."""
    x = image_hwc.astype(np.float64)
    inputs = {}
    for name in MAT_LAYER_NAMES:
        if name.startswith("conv"):
            inputs[name] = x
            w, b = params[name]
            xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
            win = sliding_window_view(xp, (3, 3), axis=(0, 1))          # (H, W, C, 3, 3)
            x = np.tensordot(win, w.astype(np.float64), axes=([3, 4, 2], [0, 1, 2])) + b.ravel()
        elif name.startswith("relu"):
            x = np.maximum(x, 0)
        elif name.startswith("pool"):
            h, w_, c = x.shape
            x = x.reshape(h // 2, 2, w_ // 2, 2, c).max(axis=(1, 3))
        elif name.startswith("fc"):
            inputs[name] = x
            w, b = params[name]
            x = x.reshape(-1) @ w.astype(np.float64).reshape(-1, w.shape[3]) + b.ravel()
            inputs["logits"] = x
        else:
            e = np.exp(x - x.max())
            x = e / e.sum()
    return x, inputs


# ---- the two APIs ----------------------------------------------------------------------------

def run_pycnnl(params, image_hwc):
    """The newer template's network: 43 layers, IntVector shapes, [Cout,kh,kw,Cin] and [in,out]."""
    net = quiet(pycnnl.CnnlNet)
    size = image_hwc.shape[0]
    net.setInputShape(1, 3, size, size)
    c, h = 3, size

    def vec(*dims):
        v = pycnnl.IntVector(len(dims))
        for i, d in enumerate(dims):
            v[i] = d
        return v

    for name in MAT_LAYER_NAMES:
        if name.startswith("conv"):
            cout = params[name][0].shape[3]
            net.createConvLayer(name, vec(1, c, h, h), cout, 3, 1, 1, 1)
            c = cout
        elif name.startswith("relu"):
            net.createReLuLayer(name)
        elif name.startswith("pool"):
            net.createPoolingLayer(name, vec(1, c, h, h), 2, 2)
            h //= 2
        elif name.startswith("fc"):
            k, n = c * h * h, params[name][0].shape[3]
            net.createMlpLayer(name, vec(1, 1, 1, k), vec(1, 1, k, n), vec(1, 1, 1, n))
            c, h = n, 1
        else:
            net.createSoftmaxLayer(name, vec(1, 1, c), 1)
    assert net.size() == 43
    for idx in range(net.size()):
        name = net.getLayerName(idx)
        if name.startswith("conv"):
            w, b = params[name]
            net.loadParams(idx, np.transpose(w, [3, 0, 1, 2]).flatten().astype(np.float64),
                           b.reshape(-1).astype(np.float64))
        elif name.startswith("fc"):
            w, b = params[name]
            net.loadParams(idx, w.reshape(-1, w.shape[3]).flatten().astype(np.float64),
                           b.reshape(-1).astype(np.float64))
    net.setInputData(image_hwc.flatten().astype(np.float64))
    net.forward()
    return net


def run_pycnml(params, image_hwc, inputs):
    """The older API on the same weights: 44 layers with flatten, [Cout,Cin,kh,kw], [out,in]."""
    tool = pycnml.QuantTool()
    iq = {n: tool.getQuantParam(a, n) for n, a in inputs.items() if n != "logits"}
    fq = {n: tool.getQuantParam(w, n + "/w") for n, (w, _) in params.items()}
    net = quiet(pycnml.CnmlNet, 16)
    size = image_hwc.shape[0]
    net.setInputShape(1, 3, size, size)
    c, h = 3, size
    for name in MAT_LAYER_NAMES:
        if name.startswith("conv"):
            c = params[name][0].shape[3]
            net.createConvLayer(name, c, 3, 1, 1, 1, iq[name])
        elif name.startswith("relu"):
            net.createReLuLayer(name)
        elif name.startswith("pool"):
            net.createPoolingLayer(name, 2, 2)
            h //= 2
        elif name.startswith("fc"):
            if name == "fc6":
                net.createFlattenLayer("flatten", [1, c * h * h, 1, 1])
            net.createMlpLayer(name, params[name][0].shape[3], iq[name])
        else:
            net.createSoftmaxLayer("Softmax", 1)
    for idx in range(net.size()):
        name = net.getLayerName(idx)
        if name in params:
            w, b = params[name]
            flat = (np.transpose(w, [3, 2, 0, 1]) if name.startswith("conv")
                    else w.reshape(-1, w.shape[3]).T).flatten()
            net.loadParams(idx, flat.astype(np.float64), b.reshape(-1).astype(np.float64), fq[name])
    net.setInputData(np.transpose(image_hwc, [2, 0, 1]).flatten().astype(np.float64))
    net.forward()
    return net


def make_image():
    """chelsea.png as the template feeds it: [224, 224, 3] float32 RGB minus the mean."""
    x = images.load_image(REPO_ROOT / "data" / "images" / "chelsea.png", synthetic.IMAGE_MEAN)
    return np.transpose(x[0], (1, 2, 0)).astype(np.float32)


def compare_apis(params, image):
    """(reference, pycnnl, pycnml) for the softmax and for fc8's output, and the two nets."""
    want, inputs = reference(params, image)
    new = run_pycnnl(params, image)
    old = run_pycnml(params, image, inputs)
    names_new = [new.getLayerName(i) for i in range(new.size())]
    names_old = [old.getLayerName(i) for i in range(old.size())]
    probs = (want, np.array(new.getOutputData()), np.array(old.getOutputData()))
    logits = (inputs["logits"], new.getLayerOutput(names_new.index("fc8")).ravel(),
              old.getLayerOutput(names_old.index("fc8")).ravel())
    return probs, logits, new, old


# float32 through 19 layers: measured ~1e-6 of the largest value; 1e-4 still sits two
# orders below what a wrong layout or a dropped bias moves.
NEW_RTOL = 1e-4
# int8 activations and weights (0.5 LSB of 127 levels per tensor) over 19 layers: measured
# up to 6.2 % of the largest value (full net, softmax), 2.3 % (eighth channels, fc8).
OLD_RTOL = 1e-1


def check_agreement(probs, logits):
    for want, got_new, got_old in (probs, logits):
        scale = np.abs(want).max()
        assert got_new.shape == got_old.shape == want.shape == (1000,)
        assert np.abs(got_new - want).max() <= NEW_RTOL * scale
        assert np.abs(got_old - want).max() <= OLD_RTOL * scale
    top = int(np.argmax(probs[0]))
    assert int(np.argmax(probs[1])) == top == int(np.argmax(probs[2]))
    assert abs(probs[1].sum() - 1) < 1e-5


def test_vgg19_topology_eighth_channels_both_apis_agree():
    params = {name: (w, b) for name, w, b in synthetic.synthetic_params(channels_divisor=8)}
    probs, logits, new, _ = compare_apis(params, make_image())
    check_agreement(probs, logits)
    # pycnnl's pool5 is an NHWC device tensor: the same numbers as the reference's (H, W, C).
    pool5 = [new.getLayerName(i) for i in range(new.size())].index("pool5")
    assert new.getLayerOutput(pool5).shape == (1, 7, 7, 64)
    assert new.getLayerOutputShape(pool5) == (1, 64, 7, 7)


@pytest.mark.slow
def test_full_vgg19_synthetic_mat_both_apis_agree():
    mat = scipy.io.loadmat(str(MAT))
    params = {}
    for idx, name in enumerate(MAT_LAYER_NAMES):
        if name.startswith(("conv", "fc")):
            w, b = mat["layers"][0][idx][0][0][0][0]     # the template's indexing
            params[name] = (w, b)
    probs, logits, new, _ = compare_apis(params, make_image())
    check_agreement(probs, logits)
    tot = pycnnl.modelled_totals(new)
    assert tot["per_layer_launches"] == 43 and tot["whole_net_seconds"] > 0
