"""Experiment 3.3 cases.

Tier 60: the book's loop conv and max-pool, forward and backward (output, bottom_diff,
d_weight, d_bias), with their times. Tier 80: content and style loss values and
gradients, Adam (formula 3.17), the network's backward from a loss layer to the image,
and a short style-transfer run through the submission's own network that must lower
the total loss and write an image. Tier 100: the fast conv and pool agree with the
loops, and the conv forward speed-up on the book's test shape is at least 10x (the
speed-up path timed on its second call, after an untimed warm-up).
"""
from __future__ import annotations

import numpy as np

from grader.experiments import Case, GroupSpec, he_normal

EXPERIMENT = "exp_3_3_style_transfer"
VISIBLE_SEED = 33_2024
SPEEDUP_REQUIRED = 10.0
# The book's test shape for the speed test (runner and grader): N, C, H, W.
SPEED_SHAPE = (1, 256, 24, 40)

# The loop version of the speed test takes ~5 s forward on two cores; the mini style
# transfer through loop layers can take a few minutes. Limits leave wide margins.
GROUPS = {
    "loops": GroupSpec("loops", wall_seconds=240, cpu_seconds=480),
    "losses": GroupSpec("losses", wall_seconds=240, cpu_seconds=480),
    "transfer": GroupSpec("transfer", wall_seconds=1200, cpu_seconds=2400),
    "fast": GroupSpec("fast", wall_seconds=600, cpu_seconds=1200),
}

# (name, k, cin, cout, pad, stride, n, h, w)
CONV_SHAPES = [
    ("conv_k3_p1_s1", 3, 3, 4, 1, 1, 1, 6, 7),
    ("conv_k3_p0_s2_n2", 3, 2, 3, 0, 2, 2, 7, 9),
    ("conv_k3_p2_s1", 3, 2, 2, 2, 1, 1, 5, 5),
    ("conv_k1_p0_s1", 1, 4, 3, 0, 1, 2, 4, 3),
]
POOL_SHAPES = [
    ("pool_k2_s2", 2, 2, 1, 3, 6, 8),
    ("pool_k2_s2_odd_n2", 2, 2, 2, 2, 7, 5),
    ("pool_k3_s3_odd", 3, 3, 1, 2, 9, 7),   # kernel = stride: the book's backward (=, not +=) is exact here
]


def _layer_cases(rng, pre: str, hidden: bool) -> list[Case]:
    cases = []
    for name, k, cin, cout, pad, stride, n, h, w in CONV_SHAPES:
        x = rng.standard_normal((n, cin, h, w))
        hout, wout = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        params = dict(k=k, cin=cin, cout=cout, pad=pad, stride=stride)
        inputs = dict(input=x, weight=he_normal(rng, (cin, k, k, cout), cin * k * k),
                      bias=rng.standard_normal(cout) * 0.5, top_diff=rng.standard_normal((n, cout, hout, wout)))
        desc = f"ConvolutionalLayer({k}, {cin}, {cout}, {pad}, {stride}) on input {[n, cin, h, w]}"
        cases.append(Case(pre + name + "_raw", "conv_raw", "loops", 60, desc + " (forward_raw/backward_raw)",
                          params, inputs, hidden))
        cases.append(Case(pre + name + "_speedup", "conv_fast", "fast", 100,
                          desc + ", type=1 (forward_speedup/backward_speedup)", params, inputs, hidden))
    for name, k, stride, n, c, h, w in POOL_SHAPES:
        x = rng.standard_normal((n, c, h, w))
        hout, wout = (h - k) // stride + 1, (w - k) // stride + 1
        inputs = dict(input=x, top_diff=rng.standard_normal((n, c, hout, wout)))
        desc = f"MaxPoolingLayer({k}, {stride}) on input {[n, c, h, w]}"
        cases.append(Case(pre + name + "_raw", "pool_raw", "loops", 60, desc + " (forward_raw/backward_raw)",
                          dict(k=k, stride=stride), inputs, hidden))
        cases.append(Case(pre + name + "_speedup", "pool_fast", "fast", 100,
                          desc + ", type=1 (forward_speedup/backward_speedup)", dict(k=k, stride=stride),
                          inputs, hidden))
    return cases


def _loss_cases(rng, pre: str, hidden: bool) -> list[Case]:
    # ReLU features are non-negative, as the book's losses see them.
    feat = lambda shape: np.maximum(rng.standard_normal(shape), 0) * 2.0  # noqa: E731
    cases = [
        Case(pre + "content_loss", "content_loss", "losses", 80,
             "ContentLossLayer forward/backward on features [1, 8, 6, 5] (formulas 3.10, 3.11)", {},
             dict(input_layer=feat((1, 8, 6, 5)), content_layer=feat((1, 8, 6, 5))), hidden),
        Case(pre + "style_loss", "style_loss", "losses", 80,
             "StyleLossLayer forward/backward on features [1, 6, 5, 7] (formulas 3.12-3.15)", {},
             dict(input_layer=feat((1, 6, 5, 7)), style_layer=feat((1, 6, 5, 7))), hidden),
        Case(pre + "style_loss_n2", "style_loss", "losses", 80,
             "StyleLossLayer forward/backward on features [2, 4, 3, 3]", {},
             dict(input_layer=feat((2, 4, 3, 3)), style_layer=feat((2, 4, 3, 3))), hidden),
        Case(pre + "adam_3_steps", "adam", "losses", 80,
             "AdamOptimizer(lr=0.5, shape [1, 3, 4, 5]): three update() calls (formula 3.17)", {"lr": 0.5},
             dict(input=rng.standard_normal((1, 3, 4, 5)), grads=rng.standard_normal((3, 1, 3, 4, 5))), hidden),
    ]
    return cases


def visible_cases() -> list[Case]:
    rng = np.random.default_rng(VISIBLE_SEED)
    cases = _layer_cases(rng, "", False) + _loss_cases(rng, "", False)
    image = rng.uniform(-100, 100, (1, 3, 16, 24))
    cases.append(Case("network_backward", "network_backward", "transfer", 80,
                      "VGG19.forward(image [1, 3, 16, 24], ['relu2_1']) then backward(ones, 'relu2_1')", {},
                      dict(input=image), False, weights_dependent=True))
    cases.append(Case("mini_transfer", "mini_transfer", "transfer", 80,
                      "a 3-step style transfer at 16x24 through your VGG19, losses and Adam",
                      dict(steps=3, height=16, width=24), {}, False, weights_dependent=True, needs_golden=False))
    cases.append(Case("speed_test", "speed_test", "fast", 100,
                      f"conv forward speed-up, ConvolutionalLayer(3, 256, 256, 1, 1, 1) on {list(SPEED_SHAPE)}",
                      dict(shape=list(SPEED_SHAPE)), {}, False, needs_golden=False))
    return cases


def hidden_cases(seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    return _layer_cases(rng, "hidden_", True) + _loss_cases(rng, "hidden_", True)


def extra_resources(session) -> dict:
    from grader.kit.paths import DEFAULT_CONTENT, DEFAULT_STYLE
    return {"content": str(DEFAULT_CONTENT), "style": str(DEFAULT_STYLE)}
