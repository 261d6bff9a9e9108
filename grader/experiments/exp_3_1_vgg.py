"""Experiment 3.1: 60 conv/pool (and fc/relu/softmax) forward, 80 pool5, 100 softmax + class."""
from __future__ import annotations

import numpy as np

from grader.experiments import (Case, Check, CheckContext, GroupSpec, compare_keys, describe_failure_kind, he_normal,
                                random_image)
from grader.kit.compare import LAYER_TOL, NETWORK_TOL, SOFTMAX_TOL, CheckFailure, assert_close, first_divergent_layer

EXPERIMENT = "exp_3_1_vgg"
VISIBLE_SEED = 31_2024

# The book's loop solution needs ~17 s for conv1_2 and 2-3 min for a whole VGG19
# forward on two cores; limits leave a wide margin for slow but correct code.
GROUPS = {
    "layers": GroupSpec("layers", wall_seconds=180, cpu_seconds=360),
    "network": GroupSpec("network", wall_seconds=1200, cpu_seconds=2400),
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
                          dict(input=x, weight=weight, bias=bias), hidden))
    for name, k, stride, n, c, h, w in POOL_SHAPES:
        x = rng.standard_normal((n, c, h, w))
        cases.append(Case(pre + name, "pool_forward", "layers",
                          f"MaxPoolingLayer({k}, {stride}).forward on input {list(x.shape)}",
                          dict(k=k, stride=stride), dict(input=x), hidden))
    x = rng.standard_normal((3, 12))
    cases.append(Case(pre + "fc_forward", "fc_forward", "layers",
                      "FullyConnectedLayer(12, 5).forward on input [3, 12]", dict(nin=12, nout=5),
                      dict(input=x, weight=he_normal(rng, (12, 5), 12), bias=rng.standard_normal((1, 5))), hidden))
    cases.append(Case(pre + "relu_forward", "relu_forward", "layers",
                      "ReLULayer().forward on input [2, 3, 4, 5]", {},
                      dict(input=rng.standard_normal((2, 3, 4, 5))), hidden))
    # Large scores: a softmax without the max-shift overflows here.
    cases.append(Case(pre + "softmax_forward", "softmax_forward", "layers",
                      "SoftmaxLossLayer().forward on scores [3, 10] of magnitude up to ~800", {},
                      dict(input=rng.standard_normal((3, 10)) * 3 + np.array([[0.0], [400.0], [-800.0]])), hidden))
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
                hidden=True, weights_dependent=True)


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
        ]
    return rows
