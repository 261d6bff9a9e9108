"""Experiment 3.1: 60 conv/pool (and fc/relu/softmax) forward, 80 pool5, 100 softmax + class
(the softmax and class also through the student's own VGG19.forward() and evaluate())."""
from __future__ import annotations

import numpy as np

from grader.experiments import (Case, Check, CheckContext, GroupSpec, compare_keys, describe_failure_kind, he_normal,
                                random_image)
from grader.kit.compare import LAYER_TOL, NETWORK_TOL, SOFTMAX_TOL, CheckFailure, assert_close, first_divergent_layer

EXPERIMENT = "exp_3_1_vgg"
VISIBLE_SEED = 31_2024

# Measured budget: the book's loop solution (four nested Python loops per conv, as in
# Fig. 3.3) took 730-770 s for one whole VGG19 forward on a busy two-core machine
# (conv1_2 alone ~17 s on an idle one). Rule: the wall limit is at least 3x that
# measurement, so slow but correct code passes on a loaded machine; the network group
# runs one forward (the student's own forward(), called by evaluate()), and a second one
# only when that forward does not walk every layer. The CPU limit is twice the wall
# limit (two cores). Slower machines: `python -m grader --time-scale 2` scales both.
LOOP_FORWARD_SECONDS = 770
GROUPS = {
    "layers": GroupSpec("layers", wall_seconds=180, cpu_seconds=360),
    "network": GroupSpec("network", wall_seconds=3 * LOOP_FORWARD_SECONDS + 90,
                         cpu_seconds=2 * (3 * LOOP_FORWARD_SECONDS + 90), expensive=True),
}

# (name, k, cin, cout, pad, stride, n, h, w): odd sizes, padding 0/1/2, stride 1/2, N > 1.
CONV_SHAPES = [
    ("conv_k3_p1_s1", 3, 3, 4, 1, 1, 2, 8, 8),
    ("conv_k3_p0_s1_odd", 3, 4, 5, 0, 1, 1, 9, 7),
    ("conv_k3_p2_s2", 3, 3, 3, 2, 2, 2, 11, 10),
    ("conv_k1_p0_s1", 1, 6, 2, 0, 1, 1, 5, 5),
    ("conv_k5_p2_s2_odd", 5, 2, 3, 2, 2, 1, 13, 9),
    ("conv_k2_p1_s2_n3", 2, 3, 2, 1, 2, 3, 7, 6),
]
# (name, k, stride, n, c, h, w)
POOL_SHAPES = [
    ("pool_k2_s2", 2, 2, 1, 3, 8, 8),
    ("pool_k2_s2_odd", 2, 2, 2, 2, 7, 9),
    ("pool_k3_s2_overlap", 3, 2, 1, 4, 9, 11),
    ("pool_k3_s1_n2", 3, 1, 2, 2, 6, 5),
]


def layer_cases(seed: int, hidden: bool = False) -> list[Case]:
    """All tier-60 cases drawn from ``seed``; names get a ``hidden_`` prefix when hidden."""
    rng = np.random.default_rng(seed)
    pre = "hidden_" if hidden else ""
    cases: list[Case] = []
    for name, k, cin, cout, pad, stride, n, h, w in CONV_SHAPES:
        x = rng.standard_normal((n, cin, h, w))
        weight = he_normal(rng, (cin, k, k, cout), cin * k * k)
        bias = rng.standard_normal(cout) * 0.5
        cases.append(Case(pre + name, "conv_forward", "layers",
                          f"ConvolutionalLayer({k}, {cin}, {cout}, padding={pad}, stride={stride}).forward "
                          f"on input {list(x.shape)}",
                          dict(k=k, cin=cin, cout=cout, pad=pad, stride=stride),
                          dict(input=x, weight=weight, bias=bias), hidden,
                          hint=f"kernel {k}, padding {pad}, stride {stride}, batch N = {n}, {h}x{w} input"))
    for name, k, stride, n, c, h, w in POOL_SHAPES:
        x = rng.standard_normal((n, c, h, w))
        cases.append(Case(pre + name, "pool_forward", "layers",
                          f"MaxPoolingLayer({k}, {stride}).forward on input {list(x.shape)}",
                          dict(k=k, stride=stride), dict(input=x), hidden,
                          hint=f"window {k}, stride {stride}, batch N = {n}, {h}x{w} input"))
    x = rng.standard_normal((3, 12))
    cases.append(Case(pre + "fc_forward", "fc_forward", "layers",
                      "FullyConnectedLayer(12, 5).forward on input [3, 12]", dict(nin=12, nout=5),
                      dict(input=x, weight=he_normal(rng, (12, 5), 12), bias=rng.standard_normal((1, 5))), hidden,
                      hint="batch N = 3, 12 inputs, 5 outputs"))
    cases.append(Case(pre + "relu_forward", "relu_forward", "layers",
                      "ReLULayer().forward on input [2, 3, 4, 5]", {},
                      dict(input=rng.standard_normal((2, 3, 4, 5))), hidden,
                      hint="a 4-D input with negative and positive values"))
    # Large scores: a softmax without the max-shift overflows here.
    cases.append(Case(pre + "softmax_forward", "softmax_forward", "layers",
                      "SoftmaxLossLayer().forward on scores [3, 10] of magnitude up to ~800", {},
                      dict(input=rng.standard_normal((3, 10)) * 3 + np.array([[0.0], [400.0], [-800.0]])), hidden,
                      hint="scores of magnitude up to ~800 (needs the max shift)"))
    return cases


def network_case() -> Case:
    return Case("vgg_network", "vgg_network", "network",
                "VGG19 on the cat image: build_model, init_model, load_model, load_image, then every layer's forward",
                weights_dependent=True)


def hidden_network_case(seed: int) -> Case:
    """The network on a fresh image: its golden exists only at grade time, so replaying the
    visible golden cannot pass the network tiers."""
    image = random_image(seed)
    return Case("hidden_vgg_network", "vgg_network_image", "network",
                f"VGG19 on a fresh {image.shape[1]}x{image.shape[0]} image: build_model, init_model, "
                f"load_model, load_image, then every layer's forward", inputs={"image": image},
                hidden=True, weights_dependent=True,
                hint=f"a {image.shape[1]}x{image.shape[0]} crop of a kit image with noise, resized to 224x224")


# With hidden checks on, the network runs on the fresh image instead of the cat: one
# forward either way (a book-style loop VGG19 takes minutes).
REPLACED_BY_HIDDEN = ("vgg_network",)


def visible_cases() -> list[Case]:
    return layer_cases(VISIBLE_SEED) + [network_case()]


def hidden_cases(seed: int) -> list[Case]:
    return layer_cases(seed, hidden=True) + [hidden_network_case(seed)]


# ----- checks -------------------------------------------------------------------------

def _network_output(key: str, what: str):
    """Compare one network output; on a mismatch, name the first layer that differs.

    On the hidden image the message tells the kind of error and that layer's name only.
    """
    def run(ctx: CheckContext) -> str:
        outputs, golden = ctx.outputs, ctx.golden
        label = what if not ctx.case.hidden else what.replace("the cat image", "a fresh image")
        try:
            return assert_close(outputs.get(key), golden[key], label, SOFTMAX_TOL if key == "prob" else NETWORK_TOL)
        except CheckFailure as exc:
            where = first_divergent_layer(outputs, golden, NETWORK_TOL)
            text = f"hidden check {ctx.case.name}: {describe_failure_kind(exc)}" if ctx.case.hidden else f"{exc}"
            raise CheckFailure(text + (f"; {where}" if where else "")) from None
    return run


def _top1(ctx: CheckContext) -> str:
    prob = np.asarray(ctx.outputs.get("prob"), dtype=np.float64).reshape(-1)
    want = np.asarray(ctx.golden["prob"]).reshape(-1)
    if prob.shape != want.shape:
        raise CheckFailure(f"softmax output has {prob.size} values, expected {want.size}")
    got_id, want_id = int(np.argmax(prob)), int(np.argmax(want))
    if got_id != want_id:
        if ctx.case.hidden:
            raise CheckFailure(f"hidden check {ctx.case.name}: the top-1 class id differs from the reference's")
        raise CheckFailure(f"top-1 class id {got_id} but the reference gives {want_id} with these weights")
    where = "on a fresh image " if ctx.case.hidden else ""
    return f"top-1 class id {got_id} (p = {prob[got_id]:.4f}) {where}matches the reference"


def _fact_failure(ctx: CheckContext, key: str, what: str) -> None:
    """Fail with the exception the child recorded under ``key`` (a hidden case: its type only)."""
    text = ctx.extra.get(key)
    if text:
        if ctx.case.hidden:
            raise CheckFailure(f"hidden check {ctx.case.name}: {what} raised {str(text).split(':')[0]}")
        raise CheckFailure(f"{what} raised {text}")


def _forward(ctx: CheckContext) -> str:
    """VGG19.forward() (called by evaluate()) returns the softmax the layer loop gives."""
    _fact_failure(ctx, "forward_error", "VGG19.forward()")
    if not ctx.extra.get("forward_calls"):
        _fact_failure(ctx, "evaluate_error", "VGG19.evaluate() (before its forward() returned)")
    got = ctx.outputs.get("forward_prob")
    if got is None:
        if not ctx.extra.get("forward_calls"):
            raise CheckFailure("VGG19.evaluate() never called self.forward(): the book's evaluate starts with "
                               "prob = self.forward()")
        raise CheckFailure("VGG19.forward() returned None: it must return the last layer's output (the softmax "
                           "[1, 1000]), which evaluate() reads as prob")
    label = "VGG19.forward() result on " + ("a fresh image" if ctx.case.hidden else "the cat image")
    try:
        return assert_close(got, ctx.golden["prob"], label, SOFTMAX_TOL)
    except CheckFailure as exc:
        if ctx.case.hidden:
            raise CheckFailure(f"hidden check {ctx.case.name}: forward(): {describe_failure_kind(exc)}") from None
        walked = ctx.extra.get("forward_walked")
        where = (f"; forward() ran {walked} layer call(s) instead of the {len(ctx.extra.get('layers', []))} "
                 f"of param_layer_name in order" if walked is not None else "")
        raise CheckFailure(f"{exc}{where}") from None


def _evaluate(ctx: CheckContext) -> str:
    """VGG19.evaluate() runs and prints the top-1 class id the golden has (Fig. 3.7)."""
    _fact_failure(ctx, "evaluate_error", "VGG19.evaluate()")
    printed = ctx.outputs.get("evaluate_top1")
    if printed is None:
        raise CheckFailure("VGG19.evaluate() printed no 'Classification result: id = <class id>, prob = <p>' "
                           "line (the book's Fig. 3.7 prints it)")
    got_id = int(np.asarray(printed).reshape(-1)[0])
    want_id = int(np.argmax(np.asarray(ctx.golden["prob"]).reshape(-1)))
    if got_id != want_id:
        if ctx.case.hidden:
            raise CheckFailure(f"hidden check {ctx.case.name}: evaluate() prints a class id other than the "
                               f"reference's")
        raise CheckFailure(f"VGG19.evaluate() printed class id {got_id} but the reference gives {want_id} "
                           f"with these weights")
    where = "on a fresh image " if ctx.case.hidden else ""
    return f"evaluate() printed class id {got_id} {where}as the reference"


def checks(cases: list[Case]) -> list[Check]:
    rows = [Check(c.name, 60, c.name, compare_keys({"output": LAYER_TOL}), c.hidden)
            for c in cases if c.group == "layers"]
    network = next((c for c in cases if c.kind in ("vgg_network", "vgg_network_image")), None)
    if network is not None:
        rows += [
            Check("vgg19_pool5", 80, network.name,
                  _network_output("pool5", "VGG19 pool5 output on the cat image"), network.hidden),
            Check("vgg19_softmax", 100, network.name,
                  _network_output("prob", "VGG19 softmax output on the cat image"), network.hidden),
            Check("vgg19_top1", 100, network.name, _top1, network.hidden),
            Check("vgg19_forward", 100, network.name, _forward, network.hidden),
            Check("vgg19_evaluate", 100, network.name, _evaluate, network.hidden),
        ]
    return rows
