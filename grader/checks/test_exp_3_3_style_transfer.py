"""Experiment 3.3 checks: 60 loop layers, 80 losses/Adam/network/mini transfer, 100 fast layers + speed-up."""
from __future__ import annotations

import numpy as np
import pytest

from grader.experiments.exp_3_3_style_transfer import SPEEDUP_REQUIRED
from grader.checks.conftest import check_outputs
from grader.kit.compare import LAYER_TOL, NETWORK_TOL, CheckFailure, Tolerance, assert_close

EXPERIMENT = "exp_3_3_style_transfer"
CASE_KINDS = {"conv_raw", "pool_raw", "conv_fast", "pool_fast", "content_loss", "style_loss", "adam"}
LOSS_TOL = Tolerance(rtol=1e-4, atol_scale=1e-4)
# Raw and speed-up on the same input: float32 speed-ups are allowed, so 1e-4 of the scale.
AGREE_TOL = Tolerance(rtol=1e-4, atol_scale=1e-4)

KEYS = {
    "conv_raw": ("output", "bottom_diff", "d_weight", "d_bias"),
    "conv_fast": ("output", "bottom_diff", "d_weight", "d_bias"),
    "pool_raw": ("output", "bottom_diff"),
    "pool_fast": ("output", "bottom_diff"),
    "content_loss": ("loss", "bottom_diff"),
    "style_loss": ("loss", "bottom_diff"),
    "adam": ("step1", "step2", "step3"),
}


def test_case(request, session, case):
    check_outputs(request, session, EXPERIMENT, case, {k: LAYER_TOL if case.kind != "content_loss" and
                                                       case.kind != "style_loss" else LOSS_TOL
                                                       for k in KEYS[case.kind]})
    outcome = session.outcome(EXPERIMENT, case.name)
    times = outcome.extra or {}
    if times and not case.hidden:
        shown = ", ".join(f"{k} {v:.4f} s" for k, v in sorted(times.items()))
        request.node.aics_message = f"{request.node.aics_message}; {shown}"


def _outcome(request, session, name: str, tier: int):
    case = session.case(EXPERIMENT, name)
    node = request.node
    node.aics_tier, node.aics_name = tier, name
    outcome = session.outcome(EXPERIMENT, name)
    node.aics_seconds = outcome.seconds
    if outcome.status != "ok":
        raise CheckFailure(f"{case.label}: {outcome.error}")
    return case, outcome


@pytest.mark.tier(80)
def test_network_backward(request, session):
    case, outcome = _outcome(request, session, "network_backward", 80)
    golden = session.golden(EXPERIMENT, case.name)
    first = assert_close(outcome.outputs.get("feature"), golden["feature"], "VGG19.forward relu2_1 feature",
                         NETWORK_TOL)
    second = assert_close(outcome.outputs.get("grad"), golden["grad"],
                          "VGG19.backward gradient from relu2_1 to the image", NETWORK_TOL)
    request.node.aics_message = f"{first}; {second}"


@pytest.mark.tier(80)
def test_mini_transfer_lowers_loss_and_writes_image(request, session):
    case, outcome = _outcome(request, session, "mini_transfer", 80)
    losses = np.asarray(outcome.outputs.get("losses"), dtype=np.float64).reshape(-1)
    if losses.size < 2 or not np.all(np.isfinite(losses)):
        raise CheckFailure(f"{case.label}: total losses {losses.tolist()} are not finite")
    if not losses[-1] < losses[0]:
        raise CheckFailure(f"{case.label}: the total loss did not fall ({losses[0]:.6g} -> {losses[-1]:.6g}); "
                           f"check the gradients' signs and the Adam update")
    image = np.asarray(outcome.outputs.get("image"), dtype=np.float64)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise CheckFailure(f"{case.label}: save_image wrote an image of shape {image.shape}, expected H x W x 3")
    if float(image.std()) == 0.0:
        raise CheckFailure(f"{case.label}: the saved image is a single flat colour")
    request.node.aics_message = (f"total loss {losses[0]:.6g} -> {losses[-1]:.6g} in {losses.size - 1} steps; "
                                 f"image {image.shape[1]}x{image.shape[0]} written")


@pytest.mark.tier(100)
def test_conv_forward_speedup(request, session):
    case, outcome = _outcome(request, session, "speed_test", 100)
    out = outcome.outputs
    agree = assert_close(out.get("conv_fast"), out.get("conv_raw"), "forward_speedup vs forward_raw on the test shape",
                         AGREE_TOL)
    assert_close(out.get("pool_fast"), out.get("pool_raw"), "pool forward_speedup vs forward_raw", AGREE_TOL)
    t_raw, t_fast, tp_raw, tp_fast = (float(v) for v in np.asarray(out["times"]).reshape(-1)[:4])
    ratio = t_raw / max(t_fast, 1e-9)
    pool_ratio = tp_raw / max(tp_fast, 1e-9)
    summary = (f"conv forward raw {t_raw:.3f} s, speedup {t_fast:.4f} s, ratio {ratio:.1f}x; "
               f"pool forward raw {tp_raw:.3f} s, speedup {tp_fast:.4f} s, ratio {pool_ratio:.1f}x")
    if ratio < SPEEDUP_REQUIRED:
        raise CheckFailure(f"{case.label}: speed-up {ratio:.1f}x is below the required {SPEEDUP_REQUIRED:g}x ({summary})")
    request.node.aics_message = f"{summary}; {agree}"
