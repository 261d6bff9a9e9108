"""Experiment 3.3's check functions and the kit's hooks into a submission's loop, without a sandbox."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from grader.experiments import exp_3_3_style_transfer as spec
from grader.kit import style
from grader.kit.compare import CheckFailure
from grader.kit.paths import REFERENCE_DIR
from grader.kit.submission import load_module

EXP = "exp_3_3_style_transfer"


@pytest.fixture(scope="module")
def ref():
    mods = {name: load_module(REFERENCE_DIR, EXP, name) for name in ("layers_2", "layers_3", "style_transfer")}
    return {name: sys.modules[name] for name in mods}


# --------------------------------------------------------------------------- Adam: both places of eps

def _eps_inside_optimizer(ref):
    """The reference's AdamOptimizer with the other reading of formula 3.17: sqrt(v_hat + eps)."""
    class Inside(ref["style_transfer"].AdamOptimizer):
        def update(self, input, grad):
            self.step += 1
            self.mt = self.beta1 * self.mt + (1 - self.beta1) * grad
            self.vt = self.beta2 * self.vt + (1 - self.beta2) * np.square(grad)
            mt_hat = self.mt / (1 - self.beta1 ** self.step)
            vt_hat = self.vt / (1 - self.beta2 ** self.step)
            return input - self.lr * mt_hat / np.sqrt(vt_hat + self.eps)
    return Inside


def _run_adam(optimizer_class, case) -> dict:
    """What the driver returns for an adam case: the image after each update call."""
    opt = optimizer_class(case.params["lr"], case.inputs["input"].shape)
    current, out = case.inputs["input"].copy(), {}
    for step, grad in enumerate(case.inputs["grads"], start=1):
        current = opt.update(current, grad)
        out[f"step{step}"] = np.array(current, dtype=np.float64)
    return out


def _adam_cases(seed):
    return [c for c in spec.hidden_cases(seed) if c.kind == "adam"]


@pytest.mark.parametrize("form", ["outside", "inside"])
def test_adam_check_accepts_eps_inside_and_outside_the_root_over_40_seeds(ref, form):
    optimizer = ref["style_transfer"].AdamOptimizer if form == "outside" else _eps_inside_optimizer(ref)
    for seed in range(40):
        for case in _adam_cases(seed):
            message = spec.adam_verdict(_run_adam(optimizer, case), case.inputs, case.params["lr"], case.label)
            assert spec.ADAM_FORMS[form] in message, (seed, message)


def test_the_two_forms_differ_for_some_seed(ref):
    """The second form is needed: for some hidden inputs the inside form fails the outside one."""
    inside = _eps_inside_optimizer(ref)
    differs = 0
    for seed in range(40):
        for case in _adam_cases(seed):
            expected = spec.adam_trajectory(case.inputs["input"], case.inputs["grads"], case.params["lr"], False)
            got = _run_adam(inside, case)
            differs += any(not np.allclose(got[f"step{i}"], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
                           for i, want in enumerate(expected, start=1))
    assert differs > 0


def test_adam_check_rejects_a_missing_bias_correction(ref):
    class NoCorrection(ref["style_transfer"].AdamOptimizer):
        def update(self, input, grad):
            self.mt = self.beta1 * self.mt + (1 - self.beta1) * grad
            self.vt = self.beta2 * self.vt + (1 - self.beta2) * np.square(grad)
            return input - self.lr * self.mt / (np.sqrt(self.vt) + self.eps)
    case = _adam_cases(3)[0]
    with pytest.raises(CheckFailure, match="step1"):
        spec.adam_verdict(_run_adam(NoCorrection, case), case.inputs, case.params["lr"], case.label)


# --------------------------------------------------------------------------- the kit's hooks

def _tiny_net(ref):
    layers_2 = ref["layers_2"]
    conv = layers_2.ConvolutionalLayer(3, 2, 3, 1, 1)
    conv.init_param()
    return SimpleNamespace(layers={"conv": conv, "pool": layers_2.MaxPoolingLayer(2, 2), "relu": object()})


def test_layers_are_built_as_speedup_by_default_and_use_loop_layers_switches_them(ref):
    net = _tiny_net(ref)
    assert net.layers["conv"].forward == net.layers["conv"].forward_speedup
    assert sorted(style.use_loop_layers(net)) == ["conv", "pool"]
    for name in ("conv", "pool"):
        layer = net.layers[name]
        assert layer.forward == layer.forward_raw and layer.backward == layer.backward_raw


def test_note_layer_errors_names_the_layer_and_method(ref):
    net = _tiny_net(ref)
    style.note_layer_errors(net)
    with pytest.raises(ValueError) as info:
        net.layers["conv"].forward(np.zeros((1, 5, 4, 4)))    # 5 channels, the layer takes 2
    assert "while running conv.forward" in getattr(info.value, "__notes__", [])
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4))
    np.testing.assert_allclose(net.layers["conv"].forward(x), net.layers["conv"].forward_speedup(x))


def test_recording_optimizer_sees_every_update_and_keeps_the_result(ref):
    adam = ref["style_transfer"].AdamOptimizer
    seen = []
    recording = style.recording_optimizer(adam, lambda i, image, grad, out, s: seen.append((i, image, grad, out, s)))
    assert issubclass(recording, adam) and recording.__name__ == "AdamOptimizer"
    rng = np.random.default_rng(1)
    image, grads = rng.standard_normal((1, 3, 2, 2)), rng.standard_normal((2, 1, 3, 2, 2))
    plain, watched = adam(0.5, image.shape), recording(0.5, image.shape)
    a = b = image
    for grad in grads:
        a, b = plain.update(a, grad), watched.update(b, grad)
    np.testing.assert_array_equal(a, b)
    assert [s[0] for s in seen] == [0, 1]
    np.testing.assert_array_equal(seen[1][2], grads[1])
    assert all(s[4] >= 0 for s in seen)


# --------------------------------------------------------------------------- the transfer check

class _Ctx:
    """The part of CheckContext the transfer check reads."""

    def __init__(self, outputs, golden, steps=2):
        self.case = SimpleNamespace(label="style_transfer()", params={"steps": steps}, hidden=False)
        self.outputs, self.golden, self.seconds = outputs, golden, 1.0


def _transfer_outputs(rng):
    return {"updates": np.array([2.0]), "start_image": rng.uniform(-20, 20, (1, 3, 4, 4)),
            "grad0": rng.standard_normal((1, 3, 4, 4)), "losses": np.array([10.0, 9.0]),
            "image_shape": np.array([4.0, 6.0, 3.0]), "image_std": np.array([30.0])}


def test_transfer_check_passes_a_matching_run_and_names_the_gradient():
    out = _transfer_outputs(np.random.default_rng(2))
    message = spec.mini_transfer(_Ctx(out, dict(out)))
    assert "gradient passed to Adam" in message and "10 -> 9" in message


@pytest.mark.parametrize("change,words", [
    (lambda o: o.update(grad0=o["grad0"] * 2), "the gradient passed to Adam at step 0"),
    (lambda o: o.update(start_image=o["start_image"] + 1, grad0=o["grad0"] + 1), "check get_random_img"),
    (lambda o: o.update(updates=np.array([0.0])), "AdamOptimizer.update was never called"),
    (lambda o: o.update(updates=np.array([1.0])), "called 1 times in 2 steps"),
    (lambda o: o.update(losses=np.array([9.0, 10.0])), "did not fall"),
    (lambda o: o.pop("image_shape"), "no output_<step>.jpg"),
    (lambda o: o.update(image_std=np.array([0.0])), "single flat colour"),
], ids=["gradient", "start_image", "no_update", "one_update", "loss_rises", "no_image", "flat_image"])
def test_transfer_check_failures_say_what_differs(change, words):
    golden = _transfer_outputs(np.random.default_rng(3))
    out = {k: np.array(v) for k, v in golden.items()}
    change(out)
    with pytest.raises(CheckFailure) as info:
        spec.mini_transfer(_Ctx(out, golden))
    assert words in str(info.value)


def test_network_images_reach_pool5_with_2x2():
    assert (spec.NET_HEIGHT // 16, spec.NET_WIDTH // 16) == (2, 2)
    assert spec.GROUPS["transfer"].expensive and spec.GROUPS["speedup_network"].expensive
    tiers = {c.name: c.tier for c in spec.checks(spec.visible_cases())}
    assert tiers["mini_transfer"] == tiers["network_backward"] == 80 and tiers["network_speedup"] == 100


# --------------------------------------------------------------------------- figure 3.27 in the skeleton

def _skeleton_layers_2():
    import importlib.util
    from grader.kit.paths import REPO_ROOT
    path = REPO_ROOT / EXP / "skeleton" / "layers_2.py"
    spec_ = importlib.util.spec_from_file_location("skeleton_layers_2_exp33", path)
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    return module


@pytest.mark.parametrize("k,cin,cout,pad,stride", [(3, 2, 3, 1, 1), (3, 3, 2, 0, 2)])
def test_skeleton_gives_figure_3_27_and_the_book_layout_of_img2col(k, cin, cout, pad, stride):
    layers_2 = _skeleton_layers_2()
    fast = layers_2.ConvolutionalLayer(k, cin, cout, pad, stride)      # the book's five arguments
    assert fast.forward == fast.forward_speedup
    slow = layers_2.ConvolutionalLayer(k, cin, cout, pad, stride, 0)
    rng = np.random.default_rng(k + stride)
    weight, bias = rng.standard_normal((cin, k, k, cout)), rng.standard_normal(cout)
    for layer in (fast, slow):
        layer.load_param(weight, bias)
    x = rng.standard_normal((2, cin, 7, 6))
    with pytest.raises(NotImplementedError):
        slow.forward(x)          # the loops are the student's
    out = fast.forward(x)
    hout, wout = (7 + 2 * pad - k) // stride + 1, (6 + 2 * pad - k) // stride + 1
    assert out.shape == (2, cout, hout, wout)
    assert fast.img2col.shape == (2 * hout * wout, cin * k * k)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))),
                                                       (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    np.testing.assert_allclose(out, np.einsum("nchwij,cijo->nohw", windows, weight) + bias[None, :, None, None],
                               rtol=1e-10, atol=1e-10)
    with pytest.raises(NotImplementedError):
        fast.backward(np.ones_like(out))
