"""Experiment 3.1 checks: 60 conv/pool (and fc/relu/softmax) forward, 80 pool5, 100 softmax + class."""
from __future__ import annotations

import numpy as np
import pytest

from grader.checks.conftest import check_outputs
from grader.kit.compare import LAYER_TOL, NETWORK_TOL, SOFTMAX_TOL, CheckFailure, assert_close, first_divergent_layer

EXPERIMENT = "exp_3_1_vgg"
CASE_KINDS = {"conv_forward", "pool_forward", "fc_forward", "relu_forward", "softmax_forward"}


def test_layer_forward(request, session, case):
    check_outputs(request, session, EXPERIMENT, case, {"output": LAYER_TOL})


def _network(request, session, tier: int, name: str):
    case = session.case(EXPERIMENT, "vgg_network")
    node = request.node
    node.aics_tier, node.aics_name = tier, name
    outcome = session.outcome(EXPERIMENT, case.name)
    node.aics_seconds = outcome.seconds
    if outcome.status != "ok":
        raise CheckFailure(f"{case.label}: {outcome.error}")
    return outcome, session.golden(EXPERIMENT, case.name)


def _compare_network_output(request, session, tier: int, name: str, key: str, what: str) -> None:
    outcome, golden = _network(request, session, tier, name)
    try:
        request.node.aics_message = assert_close(outcome.outputs.get(key), golden[key], what,
                                                 SOFTMAX_TOL if key == "prob" else NETWORK_TOL)
    except CheckFailure as exc:
        where = first_divergent_layer(outcome.outputs, golden, NETWORK_TOL)
        raise CheckFailure(f"{exc}" + (f"; {where}" if where else "")) from None


@pytest.mark.tier(80)
def test_pool5(request, session):
    _compare_network_output(request, session, 80, "vgg19_pool5", "pool5", "VGG19 pool5 output on the cat image")


@pytest.mark.tier(100)
def test_softmax(request, session):
    _compare_network_output(request, session, 100, "vgg19_softmax", "prob", "VGG19 softmax output on the cat image")


@pytest.mark.tier(100)
def test_top1_class(request, session):
    outcome, golden = _network(request, session, 100, "vgg19_top1")
    prob = np.asarray(outcome.outputs.get("prob"), dtype=np.float64).reshape(-1)
    want = np.asarray(golden["prob"]).reshape(-1)
    if prob.shape != want.shape:
        raise CheckFailure(f"softmax output has {prob.size} values, expected {want.size}")
    got_id, want_id = int(np.argmax(prob)), int(np.argmax(want))
    if got_id != want_id:
        raise CheckFailure(f"top-1 class id {got_id} but the reference gives {want_id} with these weights")
    request.node.aics_message = f"top-1 class id {got_id} (p = {prob[got_id]:.4f}) matches the reference"
