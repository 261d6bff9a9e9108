"""Experiment 3.1 cases: layer forwards (tier 60) and the VGG19 network (tiers 80, 100)."""
from __future__ import annotations

import numpy as np

from grader.experiments import Case, GroupSpec, he_normal

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
        cases.append(Case(pre + name, "conv_forward", "layers", 60,
                          f"ConvolutionalLayer({k}, {cin}, {cout}, padding={pad}, stride={stride}).forward "
                          f"on input {list(x.shape)}",
                          dict(k=k, cin=cin, cout=cout, pad=pad, stride=stride),
                          dict(input=x, weight=weight, bias=bias), hidden))
    for name, k, stride, n, c, h, w in POOL_SHAPES:
        x = rng.standard_normal((n, c, h, w))
        cases.append(Case(pre + name, "pool_forward", "layers", 60,
                          f"MaxPoolingLayer({k}, {stride}).forward on input {list(x.shape)}",
                          dict(k=k, stride=stride), dict(input=x), hidden))
    x = rng.standard_normal((3, 12))
    cases.append(Case(pre + "fc_forward", "fc_forward", "layers", 60,
                      "FullyConnectedLayer(12, 5).forward on input [3, 12]", dict(nin=12, nout=5),
                      dict(input=x, weight=he_normal(rng, (12, 5), 12), bias=rng.standard_normal((1, 5))), hidden))
    cases.append(Case(pre + "relu_forward", "relu_forward", "layers", 60,
                      "ReLULayer().forward on input [2, 3, 4, 5]", {},
                      dict(input=rng.standard_normal((2, 3, 4, 5))), hidden))
    # Large scores: a softmax without the max-shift overflows here.
    cases.append(Case(pre + "softmax_forward", "softmax_forward", "layers", 60,
                      "SoftmaxLossLayer().forward on scores [3, 10] of magnitude up to ~800", {},
                      dict(input=rng.standard_normal((3, 10)) * 3 + np.array([[0.0], [400.0], [-800.0]])), hidden))
    return cases


def network_case() -> Case:
    return Case("vgg_network", "vgg_network", "network", 80,
                "VGG19 on the cat image: build_model, init_model, load_model, load_image, then every layer's forward",
                weights_dependent=True)


def visible_cases() -> list[Case]:
    return layer_cases(VISIBLE_SEED) + [network_case()]


def hidden_cases(seed: int) -> list[Case]:
    return layer_cases(seed, hidden=True)
