"""Experiment 3.2 checks: 60 the net is VGG19, 80 conv1_1 and pool5 values, 100 softmax + class.

The book grades 3.2 only at 100 (the softmax and the class through pycnml); the 60 and
80 tiers are the kit's additions so that a student sees which half of the work is done:
60 = build_model creates VGG19's 44 layers (count, names, types, output shapes),
80 = load_model puts the weights in the DLP's layout (conv1_1 and pool5 match).

Values are compared with the reference solution run on the same emulator. The emulator
is deterministic, so a correct submission matches bit for bit; :data:`DLP_TOL` only
absorbs a last-bit fp16 difference. It is far tighter than the int8 quantization error
itself (the emulator's softmax differs from a float32 VGG19's by a few 1e-2), which a
mistake such as a transposed weight or a swapped quant parameter always exceeds.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.checks.conftest import describe_failure_kind
from grader.kit.compare import CheckFailure, Tolerance, assert_close, first_divergent_layer
from grader.kit.vgg_layout import LAYER_NAMES, layer_kind

EXPERIMENT = "exp_3_2_dlp"
CASE_KINDS = {"network", "network_image"}   # test_class

DLP_TOL = Tolerance(rtol=1e-3, atol_scale=1e-3)

# pycnml layer type constants (see PYCNML.md); not imported so the checks never depend
# on which pycnml backend this process would load.
TYPE_IDS = {"conv": 1, "fc": 3, "relu": 5, "softmax": 6, "pool": 7, "flatten": 8}
TYPE_NAMES = {1: "CONVOLUTION", 3: "MLP", 5: "RELU", 6: "SOFTMAX", 7: "POOL", 8: "FLATTEN", 0: "CAST",
              2: "LRN", 4: "NORMALIZE"}


def expected_structure() -> list[tuple[str, str, tuple[int, int, int, int]]]:
    """(name, kind, NCHW output shape) of the book's 44 VGG19 layers on a 1x3x224x224 input."""
    rows = []
    c, h = 3, 224
    stage_channels = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
    for name in LAYER_NAMES:
        kind = layer_kind(name)
        if kind == "conv":
            c = stage_channels[int(name[4])]
        elif kind == "pool":
            h //= 2
        elif kind == "flatten":
            c, h = c * h * h, 1
        elif kind == "fc":
            c = {"fc6": 4096, "fc7": 4096, "fc8": 1000}[name]
        rows.append((name, kind, (1, c, h, h)))
    return rows


STRUCTURE = expected_structure()


def _outcome(request, session, case_name: str, tier: int, check_name: str):
    node = request.node
    node.aics_tier, node.aics_name = tier, check_name
    case = session.case(EXPERIMENT, case_name)
    outcome = session.outcome(EXPERIMENT, case_name)
    node.aics_seconds = outcome.seconds
    if outcome.status != "ok":
        raise CheckFailure(f"{case.label}: {outcome.error}")
    return outcome


def _structure(request, session, check_name: str):
    outcome = _outcome(request, session, "vgg_structure", 60, check_name)
    names = [str(n) for n in outcome.extra.get("names", [])]
    size = int(outcome.outputs["size"][0]) if outcome.outputs.get("size") is not None else -1
    return outcome, names, size


def _difference(names: list[str]) -> str:
    """Which of the book's layer names are missing from, or extra in, the student's list."""
    want = [n for n, _, _ in STRUCTURE]
    missing = [n for n in want if n not in names and not (n == "Softmax" and "softmax" in names)]
    extra = [n for n in names if n not in want and n != "softmax"]
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    if extra:
        parts.append("not in VGG19: " + ", ".join(extra[:8]) + (" ..." if len(extra) > 8 else ""))
    return "; ".join(parts)


@pytest.mark.tier(60)
def test_layer_count(request, session):
    _, names, size = _structure(request, session, "vgg19_layer_count")
    if size != len(STRUCTURE):
        diff = _difference(names)
        raise CheckFailure(f"net.size() is {size} but VGG19 on pycnml has {len(STRUCTURE)} layers "
                           f"(16 conv + 18 relu + 5 pool + flatten + 3 mlp + softmax)" + (f": {diff}" if diff else ""))
    request.node.aics_message = f"net.size() = {size}"


@pytest.mark.tier(60)
def test_layer_names(request, session):
    """conv/fc names must be the book's: load_model finds the weights by them ('conv' / 'fc' in
    the name) and indexes the .mat by position. Other layers may be named freely as long as
    the name contains neither 'conv' nor 'fc' (load_model would try to load weights into it)."""
    _, names, _ = _structure(request, session, "vgg19_layer_names")
    for i, (want, kind, _) in enumerate(STRUCTURE):
        if i >= len(names):
            raise CheckFailure(f"layer {i} should be {want!r} but the net has only {len(names)} layers")
        got = names[i]
        if kind in ("conv", "fc"):
            ok = got == want
        else:
            ok = "conv" not in got and "fc" not in got
        if not ok:
            raise CheckFailure(f"layer {i} is named {got!r} but should be {want!r} (getLayerName({i}))"
                               + (f"; {_difference(names)}" if _difference(names) else ""))
    if len(names) > len(STRUCTURE):
        raise CheckFailure(f"the net has {len(names) - len(STRUCTURE)} layer(s) after 'Softmax': "
                           f"{', '.join(names[len(STRUCTURE):][:5])}")
    request.node.aics_message = f"all {len(names)} layer names fit VGG19 ({names[0]} ... {names[-1]})"


@pytest.mark.tier(60)
def test_layer_types(request, session):
    outcome, names, _ = _structure(request, session, "vgg19_layer_types")
    types = [int(t) for t in outcome.outputs["types"].reshape(-1)]
    for i, (want, kind, _) in enumerate(STRUCTURE):
        if i >= len(types):
            raise CheckFailure(f"layer {i} ({want}) should be a {TYPE_NAMES[TYPE_IDS[kind]]} layer but the net "
                               f"has only {len(types)} layers")
        if types[i] != TYPE_IDS[kind]:
            raise CheckFailure(f"layer {i} ({names[i] if i < len(names) else '?'}) is a "
                               f"{TYPE_NAMES.get(types[i], types[i])} layer but VGG19 has a "
                               f"{TYPE_NAMES[TYPE_IDS[kind]]} layer ({want}) there")
    request.node.aics_message = "layer types match VGG19 (conv/relu/pool x5, flatten, mlp/relu, softmax)"


@pytest.mark.tier(60)
def test_output_shapes(request, session):
    outcome, names, _ = _structure(request, session, "vgg19_output_shapes")
    shapes = [tuple(int(v) for v in row) for row in outcome.outputs["shapes"].reshape(-1, 4)]
    for i, (want, _, shape) in enumerate(STRUCTURE):
        if i >= len(shapes):
            raise CheckFailure(f"layer {i} ({want}) with output {shape} is missing: the net has {len(shapes)} layers")
        if shapes[i] != shape:
            raise CheckFailure(f"layer {i} ({names[i] if i < len(names) else '?'}) outputs {list(shapes[i])} "
                               f"(NCHW) but VGG19's {want} outputs {list(shape)}; check its channels, kernel, "
                               f"stride and pad")
    request.node.aics_message = f"all {len(STRUCTURE)} output shapes match, pool5 {list(STRUCTURE[36][2])}"


# ----- values (80, 100) ---------------------------------------------------------------------

def _network(request, session, tier: int, check_name: str):
    outcome = _outcome(request, session, "vgg_network", tier, check_name)
    return outcome, session.golden(EXPERIMENT, "vgg_network")


def _compare(outcome, golden, key: str, what: str, trace: bool = True) -> str:
    try:
        return assert_close(outcome.outputs.get(key), golden[key], what, DLP_TOL)
    except CheckFailure as exc:
        where = first_divergent_layer(outcome.outputs, golden, DLP_TOL) if trace else ""
        raise CheckFailure(f"{exc}" + (f"; {where}" if where else "")) from None


@pytest.mark.tier(80)
def test_conv1_1(request, session):
    """conv1_1 is given code in build_model: a mismatch points at load_model's conv transpose."""
    outcome, golden = _network(request, session, 80, "vgg19_conv1_1")
    hint = ("; conv1_1 is created by the given code, so look at load_model: the conv weights must be "
            "[out channel, in channel, height, width] = np.transpose(weight, [3, 2, 0, 1]), flattened, float64")
    try:
        first = _compare(outcome, golden, "conv1_1/corner", "conv1_1 output [1, 64, :16, :16] on the cat image",
                         trace=False)
        _compare(outcome, golden, "conv1_1/sample", "conv1_1 output (4096 sampled elements)", trace=False)
    except CheckFailure as exc:
        raise CheckFailure(f"{exc}{hint}") from None
    request.node.aics_message = first


@pytest.mark.tier(80)
def test_pool5(request, session):
    outcome, golden = _network(request, session, 80, "vgg19_pool5")
    request.node.aics_message = _compare(outcome, golden, "pool5", "pool5 output on the cat image")


@pytest.mark.tier(100)
def test_softmax(request, session):
    outcome, golden = _network(request, session, 100, "vgg19_softmax")
    request.node.aics_message = _compare(outcome, golden, "prob", "softmax (getOutputData) on the cat image")


def _top1(prob, want) -> tuple[int, int]:
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    want = np.asarray(want, dtype=np.float64).reshape(-1)
    if prob.shape != want.shape:
        raise CheckFailure(f"getOutputData() gives {prob.size} values, expected {want.size} class probabilities")
    return int(np.argmax(prob)), int(np.argmax(want))


def test_class(request, session, case):
    """Top-1 class on the cat image (visible), and every hidden image: pool5, softmax and top-1.

    One parametrized test serves both so that a visible-only run (no hidden cases) never
    yields an empty, skipped check.
    """
    if not case.hidden:
        outcome, golden = _network(request, session, 100, "vgg19_top1")
        got_id, want_id = _top1(outcome.outputs.get("prob"), golden["prob"])
        if got_id != want_id:
            raise CheckFailure(f"top-1 class id {got_id} but the reference gives {want_id} with these weights")
        p = float(outcome.outputs["prob"].reshape(-1)[got_id])
        request.node.aics_message = f"top-1 class id {got_id} (p = {p:.4f}) matches the reference"
        return
    node = request.node
    node.aics_tier, node.aics_name, node.aics_hidden = case.tier, case.name, True
    outcome = session.outcome(EXPERIMENT, case.name)
    node.aics_seconds = outcome.seconds
    if outcome.status != "ok":
        raise CheckFailure(f"hidden check {case.name}: {outcome.error}")
    golden = session.golden(EXPERIMENT, case.name)
    for key in ("pool5", "prob"):
        try:
            assert_close(outcome.outputs.get(key), golden[key], key, DLP_TOL)
        except CheckFailure as exc:
            raise CheckFailure(f"hidden check {case.name} [{key}]: {describe_failure_kind(exc)}; "
                               f"the visible checks on the cat image show details") from None
    got_id, want_id = _top1(outcome.outputs.get("prob"), golden["prob"])
    if got_id != want_id:
        raise CheckFailure(f"hidden check {case.name}: top-1 class differs from the reference")
    node.aics_message = f"{case.label}: pool5, softmax and top-1 match"
