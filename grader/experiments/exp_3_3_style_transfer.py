"""Experiment 3.3 cases.

Tier 60: the book's loop conv and max-pool, forward and backward (output, bottom_diff,
d_weight, d_bias), with their times. Tier 80: content and style loss values and
gradients, Adam (formula 3.17), the network's backward from a loss layer to the image,
and a short style-transfer run through the submission's own network that must lower
the total loss and write an image. Tier 100: the fast conv and pool agree with the
loops, and the conv forward speed-up on the book's test shape is at least 10x, timed by
the grader (see :func:`conv_forward_speedup`).
"""
from __future__ import annotations

import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from grader.experiments import Case, Check, CheckContext, GroupSpec, compare_keys, he_normal
from grader.kit.compare import LAYER_TOL, NETWORK_TOL, CheckFailure, Tolerance, assert_close
# The book's test shape for the speed test (runner and grader): N, C, H, W.
from grader.kit.speedtest import CONV_KERNEL, POOL_KERNEL, SPEED_SHAPE, TIMED_LABELS, speed_inputs

EXPERIMENT = "exp_3_3_style_transfer"
VISIBLE_SEED = 33_2024
SPEEDUP_REQUIRED = 10.0
# Calls of each kind the grader times, each on its own fresh input: the slow loop once,
# the speed-up three times (the best counts, against noise from other processes).
TIMED_CALLS = {"conv_raw": 1, "conv_fast": 3, "pool_raw": 1, "pool_fast": 3}
# The raw time in the ratio is at most this many times the grader's own estimate of the
# book's loop conv (see conv_forward_speedup).
RAW_CAP = 2.0
# Output channels of the book's loop the grader times for that estimate.
BASELINE_CHANNELS = 3

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
                      dict(shape=list(SPEED_SHAPE), timed_calls=_timed_plan(SPEED_SHAPE)), {}, False,
                      needs_golden=False))
    return cases


def _timed_plan(shape) -> dict:
    """The speed test's calls for the grader's timing server (grader.timing_server.plan_of)."""
    # Outputs are at most the input's size (pooling halves it); twice that in float64 is
    # room for any honest dtype and no more.
    budget = 2 * 8 * int(np.prod(shape))
    return {label: {"shape": [int(v) for v in shape], "calls": TIMED_CALLS[label], "max_output_bytes": budget}
            for label in TIMED_LABELS}


def hidden_cases(seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = _layer_cases(rng, "hidden_", True) + _loss_cases(rng, "hidden_", True)
    # The network's backward on a fresh image: the visible golden cannot be replayed.
    image = rng.uniform(-100, 100, (1, 3, 16, 24))
    cases.append(Case("hidden_network_backward", "network_backward", "transfer",
                      "VGG19.forward(fresh image [1, 3, 16, 24], ['relu2_1']) then backward(ones, 'relu2_1')", {},
                      dict(input=image), True, weights_dependent=True))
    return cases


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
    if ctx.case.hidden:
        return "; ".join(ctx.compare(key, NETWORK_TOL) for key in ("feature", "grad"))
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


def reference_conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The speed test's conv in float64: x [N, C, H, W], weight [C, 3, 3, Cout], bias [Cout],
    padding 1, stride 1 -> [N, Cout, H, W] (im2col by a strided view, one tensordot)."""
    pad = CONV_KERNEL // 2
    padded = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(padded, (CONV_KERNEL, CONV_KERNEL), axis=(2, 3))   # [N, C, H, W, 3, 3]
    out = np.tensordot(windows, weight, axes=([1, 4, 5], [0, 1, 2]))                   # [N, H, W, Cout]
    return out.transpose(0, 3, 1, 2) + bias[None, :, None, None]


def reference_pool(x: np.ndarray) -> np.ndarray:
    """The speed test's 2x2 stride-2 max pooling: [N, C, H, W] -> [N, C, H // 2, W // 2]."""
    k = POOL_KERNEL
    n, c, h, w = x.shape
    hout, wout = (h - k) // k + 1, (w - k) // k + 1
    return x[:, :, :hout * k, :wout * k].reshape(n, c, hout, k, wout, k).max(axis=(3, 5))


def loop_conv_estimate(shape=SPEED_SHAPE, channels: int = BASELINE_CHANNELS) -> float:
    """Seconds the book's loop conv (one np.sum per output element) would take on ``shape``.

    Timed here, in the grader, on ``channels`` output channels; the fastest channel is
    scaled to all N x Cout of them.
    """
    data = speed_inputs(shape)
    x, weight, bias = data["input"], data["weight"], data["bias"]
    n, _, h, w = x.shape
    k = CONV_KERNEL
    padded = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    best = float("inf")
    for c in range(min(channels, weight.shape[3])):
        kernel = weight[:, :, :, c]
        start = time.perf_counter()
        for row in range(h):
            for col in range(w):
                np.sum(padded[0, :, row:row + k, col:col + k] * kernel) + bias[c]
        best = min(best, time.perf_counter() - start)
    return best * n * weight.shape[3]


def _timed_run(ctx: CheckContext):
    """The grader's timed calls of the speed test, all of them there; else CheckFailure."""
    label = ctx.case.label
    outcome = ctx.session.outcome(ctx.experiment, ctx.case.name)
    run = getattr(outcome, "timed", None)
    reasons = "; ".join(run.errors) if run is not None and run.errors else ""
    if outcome.status != "ok" and outcome.error.startswith("TimingError"):
        raise CheckFailure(f"{label}: could not time the speed-up: {outcome.error}"
                           + (f" (grader: {reasons})" if reasons else ""))
    ctx.outcome()   # any other failure of the submission's process, in the usual words
    if run is None:
        raise CheckFailure(f"{label}: could not time the speed-up: the grader's timing server did not run")
    missing = [name for name in TIMED_CALLS if len(run.of(name)) < TIMED_CALLS[name]]
    if missing:
        raise CheckFailure(f"{label}: could not time the speed-up: the grader received no output for the timed "
                           f"call(s) {', '.join(missing)} ({reasons or 'no reason recorded'})")
    return run


def conv_forward_speedup(ctx: CheckContext) -> str:
    """The conv forward speed-up is at least SPEEDUP_REQUIRED x, by clocks the submission cannot touch.

    The grader times every call itself (grader.timing_server): the child builds the
    layers and warms the speed-up up, then asks for each timed input; the grader draws
    a fresh random input only then, notes its own clock, sends it, and stops the clock
    when the whole output is back. The speed-up's time is the best of its calls. The
    outputs of the slow call and of the best fast call must match the grader's own
    float64 conv of their inputs, so a wrong fast result cannot be timed as fast.

    The raw time in the ratio is the smallest of the raw call's wall time, the CPU time
    the submission's process spent in that window (so sleeping in forward_raw gains
    nothing), and RAW_CAP x the grader's own estimate of the book's loop conv on this
    machine (so busy-waiting gains at most that much). Even against a forward_raw that
    burns CPU on purpose, a pass therefore proves a speed-up of SPEEDUP_REQUIRED / RAW_CAP
    (5x) over the book's loop; an honest raw loop is rarely near the cap. Pooling's times
    are reported, not graded.
    """
    label = ctx.case.label
    run = _timed_run(ctx)
    # The report's time column, too, by the grader's clock: the timed calls' total.
    ctx.seconds = sum(c.wall_seconds for c in run.calls)
    data = speed_inputs(ctx.case.params["shape"])
    raw = run.of("conv_raw")[0]
    fast = min(run.of("conv_fast"), key=lambda c: c.wall_seconds)
    pool_raw = run.of("pool_raw")[0]
    pool_fast = min(run.of("pool_fast"), key=lambda c: c.wall_seconds)
    agree = [assert_close(call.output, reference_conv(call.input, data["weight"], data["bias"]),
                          f"{what} on the grader's timed input", AGREE_TOL)
             for call, what in ((raw, "forward_raw"), (fast, "forward_speedup"))]
    for call, what in ((pool_raw, "pool forward_raw"), (pool_fast, "pool forward_speedup")):
        assert_close(call.output, reference_pool(call.input), f"{what} on the grader's timed input", AGREE_TOL)

    measured = raw.wall_seconds if raw.cpu_seconds is None else min(raw.wall_seconds, raw.cpu_seconds)
    counted, capped = measured, ""
    if measured / max(fast.wall_seconds, 1e-9) >= SPEEDUP_REQUIRED:
        # Only a passing ratio can be too high; the estimate costs a fraction of a second.
        estimate = loop_conv_estimate(tuple(ctx.case.params["shape"]))
        if measured > RAW_CAP * estimate:
            counted = RAW_CAP * estimate
            capped = (f"; raw counted as {RAW_CAP:g}x the grader's own estimate of the book's loop, "
                      f"{estimate:.3f} s")
    ratio = counted / max(fast.wall_seconds, 1e-9)
    pool_ratio = pool_raw.wall_seconds / max(pool_fast.wall_seconds, 1e-9)
    cpu = " (CPU time not readable)" if raw.cpu_seconds is None else f" ({raw.cpu_seconds:.3f} s CPU)"
    n_fast = len(run.of("conv_fast"))
    summary = (f"timed by the grader: conv forward raw {raw.wall_seconds:.3f} s{cpu}, speedup "
               f"{fast.wall_seconds:.4f} s (best of {n_fast}), ratio {ratio:.1f}x{capped}; pool forward raw "
               f"{pool_raw.wall_seconds:.3f} s, speedup {pool_fast.wall_seconds:.4f} s, ratio {pool_ratio:.1f}x")
    if ratio < SPEEDUP_REQUIRED:
        raise CheckFailure(f"{label}: speed-up {ratio:.1f}x is below the required {SPEEDUP_REQUIRED:g}x "
                           f"({summary})")
    return f"{summary}; {agree[1]}"


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
