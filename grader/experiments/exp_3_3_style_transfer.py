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

from grader.experiments import Case, Check, CheckContext, GroupSpec, compare_keys, he_normal
from grader.kit.compare import LAYER_TOL, NETWORK_TOL, CheckFailure, Tolerance, assert_close

EXPERIMENT = "exp_3_3_style_transfer"
VISIBLE_SEED = 33_2024
SPEEDUP_REQUIRED = 10.0
# The book's test shape for the speed test (runner and grader): N, C, H, W.
from grader.kit.speedtest import SPEED_SHAPE  # noqa: E402

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
        cases.append(Case(pre + name + "_raw", "conv_raw", "loops", desc + " (forward_raw/backward_raw)",
                          params, inputs, hidden))
        cases.append(Case(pre + name + "_speedup", "conv_fast", "fast",
                          desc + ", type=1 (forward_speedup/backward_speedup)", params, inputs, hidden))
    for name, k, stride, n, c, h, w in POOL_SHAPES:
        x = rng.standard_normal((n, c, h, w))
        hout, wout = (h - k) // stride + 1, (w - k) // stride + 1
        inputs = dict(input=x, top_diff=rng.standard_normal((n, c, hout, wout)))
        desc = f"MaxPoolingLayer({k}, {stride}) on input {[n, c, h, w]}"
        cases.append(Case(pre + name + "_raw", "pool_raw", "loops", desc + " (forward_raw/backward_raw)",
                          dict(k=k, stride=stride), inputs, hidden))
        cases.append(Case(pre + name + "_speedup", "pool_fast", "fast",
                          desc + ", type=1 (forward_speedup/backward_speedup)", dict(k=k, stride=stride),
                          inputs, hidden))
    return cases


def _loss_cases(rng, pre: str, hidden: bool) -> list[Case]:
    # ReLU features are non-negative, as the book's losses see them.
    feat = lambda shape: np.maximum(rng.standard_normal(shape), 0) * 2.0  # noqa: E731
    cases = [
        Case(pre + "content_loss", "content_loss", "losses",
             "ContentLossLayer forward/backward on features [1, 8, 6, 5] (formulas 3.10, 3.11)", {},
             dict(input_layer=feat((1, 8, 6, 5)), content_layer=feat((1, 8, 6, 5))), hidden),
        Case(pre + "style_loss", "style_loss", "losses",
             "StyleLossLayer forward/backward on features [1, 6, 5, 7] (formulas 3.12-3.15)", {},
             dict(input_layer=feat((1, 6, 5, 7)), style_layer=feat((1, 6, 5, 7))), hidden),
        Case(pre + "style_loss_n2", "style_loss", "losses",
             "StyleLossLayer forward/backward on features [2, 4, 3, 3]", {},
             dict(input_layer=feat((2, 4, 3, 3)), style_layer=feat((2, 4, 3, 3))), hidden),
        Case(pre + "adam_3_steps", "adam", "losses",
             "AdamOptimizer(lr=0.5, shape [1, 3, 4, 5]): three update() calls (formula 3.17)", {"lr": 0.5},
             dict(input=rng.standard_normal((1, 3, 4, 5)), grads=rng.standard_normal((3, 1, 3, 4, 5))), hidden),
    ]
    return cases


def visible_cases() -> list[Case]:
    rng = np.random.default_rng(VISIBLE_SEED)
    cases = _layer_cases(rng, "", False) + _loss_cases(rng, "", False)
    image = rng.uniform(-100, 100, (1, 3, 16, 24))
    cases.append(Case("network_backward", "network_backward", "transfer",
                      "VGG19.forward(image [1, 3, 16, 24], ['relu2_1']) then backward(ones, 'relu2_1')", {},
                      dict(input=image), False, weights_dependent=True))
    cases.append(Case("mini_transfer", "mini_transfer", "transfer",
                      "a 3-step style transfer at 16x24 through your VGG19, losses and Adam",
                      dict(steps=3, height=16, width=24), {}, False, weights_dependent=True, needs_golden=False))
    cases.append(Case("speed_test", "speed_test", "fast",
                      f"conv forward speed-up, ConvolutionalLayer(3, 256, 256, 1, 1, 1) on {list(SPEED_SHAPE)}",
                      dict(shape=list(SPEED_SHAPE)), {}, False, needs_golden=False))
    return cases


def hidden_cases(seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    return _layer_cases(rng, "hidden_", True) + _loss_cases(rng, "hidden_", True)


def extra_resources(session) -> dict:
    from grader.kit.paths import DEFAULT_CONTENT, DEFAULT_STYLE
    return {"content": str(DEFAULT_CONTENT), "style": str(DEFAULT_STYLE)}


# ----- checks -------------------------------------------------------------------------

LOSS_TOL = Tolerance(rtol=1e-4, atol_scale=1e-4)
# Raw and speed-up on the same input: float32 speed-ups are allowed, so 1e-4 of the scale.
AGREE_TOL = Tolerance(rtol=1e-4, atol_scale=1e-4)

# The tier of every case kind, and the outputs compared with the golden.
TIERS = {"conv_raw": 60, "pool_raw": 60, "content_loss": 80, "style_loss": 80, "adam": 80,
         "network_backward": 80, "mini_transfer": 80, "conv_fast": 100, "pool_fast": 100, "speed_test": 100}
KEYS = {
    "conv_raw": ("output", "bottom_diff", "d_weight", "d_bias"),
    "conv_fast": ("output", "bottom_diff", "d_weight", "d_bias"),
    "pool_raw": ("output", "bottom_diff"),
    "pool_fast": ("output", "bottom_diff"),
    "content_loss": ("loss", "bottom_diff"),
    "style_loss": ("loss", "bottom_diff"),
    "adam": ("step1", "step2", "step3"),
}


def _layer_check(case: Case):
    tol = LOSS_TOL if case.kind in ("content_loss", "style_loss") else LAYER_TOL
    compare = compare_keys({k: tol for k in KEYS[case.kind]})

    def run(ctx: CheckContext) -> str:
        message = compare(ctx)
        times = ctx.extra
        if times and not case.hidden:
            message += "; " + ", ".join(f"{k} {v:.4f} s" for k, v in sorted(times.items()))
        return message
    return run


def network_backward(ctx: CheckContext) -> str:
    first = assert_close(ctx.outputs.get("feature"), ctx.golden["feature"], "VGG19.forward relu2_1 feature",
                         NETWORK_TOL)
    second = assert_close(ctx.outputs.get("grad"), ctx.golden["grad"],
                          "VGG19.backward gradient from relu2_1 to the image", NETWORK_TOL)
    return f"{first}; {second}"


def mini_transfer(ctx: CheckContext) -> str:
    label = ctx.case.label
    losses = np.asarray(ctx.outputs.get("losses"), dtype=np.float64).reshape(-1)
    if losses.size < 2 or not np.all(np.isfinite(losses)):
        raise CheckFailure(f"{label}: total losses {losses.tolist()} are not finite")
    if not losses[-1] < losses[0]:
        raise CheckFailure(f"{label}: the total loss did not fall ({losses[0]:.6g} -> {losses[-1]:.6g}); "
                           f"check the gradients' signs and the Adam update")
    image = np.asarray(ctx.outputs.get("image"), dtype=np.float64)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise CheckFailure(f"{label}: save_image wrote an image of shape {image.shape}, expected H x W x 3")
    if float(image.std()) == 0.0:
        raise CheckFailure(f"{label}: the saved image is a single flat colour")
    return (f"total loss {losses[0]:.6g} -> {losses[-1]:.6g} in {losses.size - 1} steps; "
            f"image {image.shape[1]}x{image.shape[0]} written")


def conv_forward_speedup(ctx: CheckContext) -> str:
    out = ctx.outputs
    agree = assert_close(out.get("conv_fast"), out.get("conv_raw"), "forward_speedup vs forward_raw on the test shape",
                         AGREE_TOL)
    assert_close(out.get("pool_fast"), out.get("pool_raw"), "pool forward_speedup vs forward_raw", AGREE_TOL)
    t_raw, t_fast, tp_raw, tp_fast = (float(v) for v in np.asarray(out["times"]).reshape(-1)[:4])
    ratio = t_raw / max(t_fast, 1e-9)
    pool_ratio = tp_raw / max(tp_fast, 1e-9)
    summary = (f"conv forward raw {t_raw:.3f} s, speedup {t_fast:.4f} s, ratio {ratio:.1f}x; "
               f"pool forward raw {tp_raw:.3f} s, speedup {tp_fast:.4f} s, ratio {pool_ratio:.1f}x")
    if ratio < SPEEDUP_REQUIRED:
        raise CheckFailure(f"{ctx.case.label}: speed-up {ratio:.1f}x is below the required {SPEEDUP_REQUIRED:g}x "
                           f"({summary})")
    return f"{summary}; {agree}"


PROPERTY_CHECKS = {"network_backward": network_backward, "mini_transfer": mini_transfer,
                   "speed_test": conv_forward_speedup}


def checks(cases: list[Case]) -> list[Check]:
    rows = []
    for case in cases:
        if case.kind in KEYS:
            rows.append(Check(case.name, TIERS[case.kind], case.name, _layer_check(case), case.hidden))
    for case in cases:
        if case.kind in PROPERTY_CHECKS:
            rows.append(Check(case.name, TIERS[case.kind], case.name, PROPERTY_CHECKS[case.kind], case.hidden))
    return rows
