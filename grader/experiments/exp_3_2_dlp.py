"""Experiment 3.2: 60 the net is VGG19, 80 conv1_1 and pool5 values, 100 softmax + class.

The book grades 3.2 only at 100 (the softmax and the class through pycnml); the 60 and
80 tiers are the kit's additions so that a student sees which half of the work is done:
60 = build_model creates VGG19's 44 layers (count, names, types, output shapes),
80 = load_model puts the weights in the DLP's layout (conv1_1 and pool5 match).

Values are compared with the reference solution run on the same emulator. The emulator
is deterministic, so a correct submission matches bit for bit; :data:`DLP_TOL` only
absorbs a last-bit fp16 difference. It is far tighter than the int8 quantization error
itself (the emulator's softmax differs from a float32 VGG19's by a few 1e-2), which a
mistake such as a transposed weight or a swapped quant parameter always exceeds.

Cases:

* ``vgg_structure`` (tier 60, group ``build``): only ``VGG19()`` and ``build_model``; the
  checks read the net's layer count, names, types and output shapes.
* ``vgg_network`` (tiers 80 and 100, group ``network``): the book's whole flow on the cat
  image (build_model, load_model, load_image, forward, getOutputData); returns conv1_1 and
  pool5 (read through the emulator's per-layer outputs) and the softmax; then the student's
  ``evaluate(file_list, synset_path)`` on a one-line file list, whose printed top-5 must
  start with the golden's top-1.
* ``hidden_vgg_image`` (hidden, tiers 80 and 100): the same net on a fresh image, a
  random crop of one of the kit's images with noise; its golden comes from the reference
  emulator at grade time.
"""
from __future__ import annotations

import numpy as np

from grader.experiments import Case, Check, CheckContext, GroupSpec, describe_failure_kind, random_image
from grader.kit.compare import CheckFailure, Tolerance, assert_close, first_divergent_layer
from grader.kit.vgg_layout import output_shapes

EXPERIMENT = "exp_3_2_dlp"

# A full VGG19 through the emulator: load_model (the book's float64 transposes of
# 144 M weights, then int8 quantization) ~10 s, one forward ~3 s on two cores.
# The limits leave a wide margin for a loaded machine.
GROUPS = {
    "build": GroupSpec("build", wall_seconds=120, cpu_seconds=240),
    "network": GroupSpec("network", wall_seconds=600, cpu_seconds=1200, expensive=True),
}


def extra_resources(session) -> dict:
    """The quant-parameter file matching the session's weights.

    The instructor's kit calibrates it on first use (``grader.refnet``); the student handout
    ships no ``grader.refnet`` and reads the files it ships (``data/quant``, ``data/course``).
    """
    from grader.kit.paths import is_student_handout
    if is_student_handout():
        from grader.kit.quantparams import resolve_quant_params
        return {"quant_params": str(resolve_quant_params(session.weights))}
    from grader.refnet.calibrate import ensure_quant_params
    return {"quant_params": str(ensure_quant_params(session.weights))}


def structure_case() -> Case:
    return Case("vgg_structure", "structure", "build",
                "VGG19().build_model(param_path, quant_param_path): the layers created on pycnml.CnmlNet")


def network_case() -> Case:
    return Case("vgg_network", "network", "network",
                "VGG19 on the cat image: build_model, load_model, load_image, forward, getOutputData",
                weights_dependent=True)


def visible_cases() -> list[Case]:
    return [structure_case(), network_case()]


def hidden_cases(seed: int) -> list[Case]:
    image = random_image(seed)
    return [Case("hidden_vgg_image", "network_image", "network",
                 f"VGG19 on a fresh {image.shape[1]}x{image.shape[0]} image",
                 {}, {"image": image}, hidden=True, weights_dependent=True,
                 hint=f"a {image.shape[1]}x{image.shape[0]} crop of a kit image with noise, resized to 224x224")]


# ----- checks -------------------------------------------------------------------------

DLP_TOL = Tolerance(rtol=1e-3, atol_scale=1e-3)

# pycnml layer type constants (see PYCNML.md); not imported so the checks never depend
# on which pycnml backend this process would load.
TYPE_IDS = {"conv": 1, "fc": 3, "relu": 5, "softmax": 6, "pool": 7, "flatten": 8}
TYPE_NAMES = {1: "CONVOLUTION", 3: "MLP", 5: "RELU", 6: "SOFTMAX", 7: "POOL", 8: "FLATTEN", 0: "CAST",
              2: "LRN", 4: "NORMALIZE"}

# (name, kind, NCHW output shape) of the book's 44 VGG19 layers on a 1x3x224x224 input.
STRUCTURE = output_shapes(224)


def _structure(ctx: CheckContext):
    outcome = ctx.outcome()
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


def layer_count(ctx: CheckContext) -> str:
    _, names, size = _structure(ctx)
    if size != len(STRUCTURE):
        diff = _difference(names)
        raise CheckFailure(f"net.size() is {size} but VGG19 on pycnml has {len(STRUCTURE)} layers "
                           f"(16 conv + 18 relu + 5 pool + flatten + 3 mlp + softmax)" + (f": {diff}" if diff else ""))
    return f"net.size() = {size}"


def layer_names(ctx: CheckContext) -> str:
    """conv/fc names must be the book's: load_model finds the weights by them ('conv' / 'fc' in
    the name) and indexes the .mat by position. Other layers may be named freely as long as
    the name contains neither 'conv' nor 'fc' (load_model would try to load weights into it)."""
    _, names, _ = _structure(ctx)
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
    return f"all {len(names)} layer names fit VGG19 ({names[0]} ... {names[-1]})"


def layer_types(ctx: CheckContext) -> str:
    outcome, names, _ = _structure(ctx)
    types = [int(t) for t in outcome.outputs["types"].reshape(-1)]
    for i, (want, kind, _) in enumerate(STRUCTURE):
        if i >= len(types):
            raise CheckFailure(f"layer {i} ({want}) should be a {TYPE_NAMES[TYPE_IDS[kind]]} layer but the net "
                               f"has only {len(types)} layers")
        if types[i] != TYPE_IDS[kind]:
            raise CheckFailure(f"layer {i} ({names[i] if i < len(names) else '?'}) is a "
                               f"{TYPE_NAMES.get(types[i], types[i])} layer but VGG19 has a "
                               f"{TYPE_NAMES[TYPE_IDS[kind]]} layer ({want}) there")
    return "layer types match VGG19 (conv/relu/pool x5, flatten, mlp/relu, softmax)"


def output_shapes_match(ctx: CheckContext) -> str:
    outcome, names, _ = _structure(ctx)
    shapes = [tuple(int(v) for v in row) for row in outcome.outputs["shapes"].reshape(-1, 4)]
    for i, (want, _, shape) in enumerate(STRUCTURE):
        if i >= len(shapes):
            raise CheckFailure(f"layer {i} ({want}) with output {shape} is missing: the net has {len(shapes)} layers")
        if shapes[i] != shape:
            raise CheckFailure(f"layer {i} ({names[i] if i < len(names) else '?'}) outputs {list(shapes[i])} "
                               f"(NCHW) but VGG19's {want} outputs {list(shape)}; check its channels, kernel, "
                               f"stride and pad")
    return f"all {len(STRUCTURE)} output shapes match, pool5 {list(STRUCTURE[36][2])}"


def _compare(ctx: CheckContext, key: str, what: str, trace: bool = True) -> str:
    outputs, golden = ctx.outputs, ctx.golden
    try:
        return assert_close(outputs.get(key), golden[key], what, DLP_TOL)
    except CheckFailure as exc:
        where = first_divergent_layer(outputs, golden, DLP_TOL) if trace else ""
        raise CheckFailure(f"{exc}" + (f"; {where}" if where else "")) from None


def conv1_1(ctx: CheckContext) -> str:
    """conv1_1 is given code in build_model: a mismatch points at load_model's conv transpose."""
    hint = ("; conv1_1 is created by the given code, so look at load_model: the conv weights must be "
            "[out channel, in channel, height, width] = np.transpose(weight, [3, 2, 0, 1]), flattened, float64")
    try:
        first = _compare(ctx, "conv1_1/corner", "conv1_1 output [1, 64, :16, :16] on the cat image", trace=False)
        _compare(ctx, "conv1_1/sample", "conv1_1 output (4096 sampled elements)", trace=False)
    except CheckFailure as exc:
        raise CheckFailure(f"{exc}{hint}") from None
    return first


def _top1(prob, want) -> tuple[int, int]:
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    want = np.asarray(want, dtype=np.float64).reshape(-1)
    if prob.shape != want.shape:
        raise CheckFailure(f"getOutputData() gives {prob.size} values, expected {want.size} class probabilities")
    return int(np.argmax(prob)), int(np.argmax(want))


def top1(ctx: CheckContext) -> str:
    got_id, want_id = _top1(ctx.outputs.get("prob"), ctx.golden["prob"])
    if got_id != want_id:
        raise CheckFailure(f"top-1 class id {got_id} but the reference gives {want_id} with these weights")
    p = float(ctx.outputs["prob"].reshape(-1)[got_id])
    return f"top-1 class id {got_id} (p = {p:.4f}) matches the reference"


def evaluate_failure(ctx: CheckContext) -> str | None:
    """Why the student's evaluate(file_list, synset_path) did not report the golden's top-1, or None."""
    error = ctx.extra.get("evaluate_error")
    if error:
        return f"VGG19.evaluate(file_list, synset_path) raised {error}"
    ids = ctx.outputs.get("evaluate_top1_ids")
    if ids is None:
        return ("VGG19.evaluate() printed no top-5 list ('------ Top 5 of <image> ------', then "
                "'<prob> - <class name>' lines, as get_top5 in the book's 3.2.4.4)")
    want_id = int(np.argmax(np.asarray(ctx.golden["prob"], dtype=np.float64).reshape(-1)))
    if want_id not in {int(v) for v in np.asarray(ids).reshape(-1)}:
        return f"the first class get_top5 printed is not the reference's top-1 (class id {want_id})"
    accuracy = ctx.outputs.get("evaluate_accuracy1")
    if accuracy is None or int(np.asarray(accuracy).reshape(-1)[1]) != 1:
        return "VGG19.evaluate() on a one-image file list did not print 'accuracy1: <a> (<hits>/1)'"
    return None


def evaluate(ctx: CheckContext) -> str:
    """evaluate(file_list, synset_path) on the cat: get_top5's first class is the golden's top-1."""
    problem = evaluate_failure(ctx)
    if problem:
        raise CheckFailure(problem)
    hits, total = (int(v) for v in np.asarray(ctx.outputs["evaluate_accuracy1"]).reshape(-1)[:2])
    return f"evaluate() prints the reference's top-1 first and accuracy1 ({hits}/{total})"


def hidden_image(ctx: CheckContext) -> str:
    """A fresh image: pool5, softmax and top-1, told without data."""
    for key in ("pool5", "prob"):
        try:
            assert_close(ctx.outputs.get(key), ctx.golden[key], key, DLP_TOL)
        except CheckFailure as exc:
            raise CheckFailure(f"hidden check {ctx.case.name} [{key}]: {describe_failure_kind(exc)}; "
                               f"the visible checks on the cat image show details") from None
    got_id, want_id = _top1(ctx.outputs.get("prob"), ctx.golden["prob"])
    if got_id != want_id:
        raise CheckFailure(f"hidden check {ctx.case.name}: top-1 class differs from the reference")
    if evaluate_failure(ctx):
        raise CheckFailure(f"hidden check {ctx.case.name}: evaluate() does not report the reference's top-1; "
                           f"the visible check vgg19_evaluate shows details")
    return f"{ctx.case.label}: pool5, softmax, top-1 and evaluate() match"


def checks(cases: list[Case]) -> list[Check]:
    names = {c.name for c in cases}
    rows = []
    if "vgg_structure" in names:
        rows += [Check("vgg19_layer_count", 60, "vgg_structure", layer_count),
                 Check("vgg19_layer_names", 60, "vgg_structure", layer_names),
                 Check("vgg19_layer_types", 60, "vgg_structure", layer_types),
                 Check("vgg19_output_shapes", 60, "vgg_structure", output_shapes_match)]
    if "vgg_network" in names:
        rows += [Check("vgg19_conv1_1", 80, "vgg_network", conv1_1),
                 Check("vgg19_pool5", 80, "vgg_network",
                       lambda ctx: _compare(ctx, "pool5", "pool5 output on the cat image")),
                 Check("vgg19_softmax", 100, "vgg_network",
                       lambda ctx: _compare(ctx, "prob", "softmax (getOutputData) on the cat image")),
                 Check("vgg19_top1", 100, "vgg_network", top1),
                 Check("vgg19_evaluate", 100, "vgg_network", evaluate)]
    rows += [Check(c.name, 100, c.name, hidden_image, hidden=True) for c in cases if c.kind == "network_image"]
    return rows
