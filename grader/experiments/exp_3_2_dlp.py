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

Two tracks: the cases above are the book's edition (``pycnml``); the newer edition's
(``pycnnl``, :mod:`grader.experiments.exp_3_2_pycnnl`) share the groups. A session keeps the
cases of the track its submission is graded on (:func:`select_cases`: the course's track
from ``course.toml``, or the one the submission plainly targets, with a report note), and
takes each case's goldens from that track's reference (:func:`reference_root`).
"""
from __future__ import annotations

from pathlib import Path

from grader.experiments import dlp_top
from grader.experiments import Case, Check, CheckContext, GroupSpec, random_image
from grader.experiments import exp_3_2_pycnnl as cnnl
from grader.kit import compat, course
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
    """The quant-parameter file matching the session's weights, and the shims the submission needs.

    The instructor's kit calibrates the quant parameters on first use (``grader.refnet``);
    the student handout ships no ``grader.refnet`` and reads the files it ships
    (``data/quant``, ``data/course``). ``compat`` names what of old SciPy/NumPy the
    submission's source uses (:mod:`grader.kit.compat`; the child installs it).
    """
    from grader.kit.paths import is_student_handout
    shims = {"compat": submission_shims(session)}
    if is_student_handout():
        from grader.kit.quantparams import resolve_quant_params
        return {"quant_params": str(resolve_quant_params(session.weights)), **shims}
    from grader.refnet.calibrate import ensure_quant_params
    return {"quant_params": str(ensure_quant_params(session.weights)), **shims}


def _source(session) -> str:
    text = course.read_source(Path(session.submission) / EXPERIMENT / course.DEMO_FILE)
    return text or ""


def submission_shims(session) -> list[str]:
    """What of old SciPy/NumPy the submission's vgg19_demo.py uses (``[]`` for the kit's own files)."""
    return compat.needed(_source(session))


def track_of(case: Case) -> str:
    """The track a case belongs to: the pycnnl track's cases run its driver's ``cnnl_*`` handlers."""
    return cnnl.TRACK if case.kind.startswith("cnnl_") else course.DEFAULT_TRACK


def reference_root(case: Case) -> Path:
    """The reference folder (shaped like stu_upload/) whose run gives ``case``'s golden."""
    return course.reference_root(track_of(case))


def select_cases(session, cases: list[Case]) -> list[Case]:
    """The cases of the track ``session``'s submission is graded on; says in the notes why, when it matters."""
    choice = course.choose_track(Path(session.submission))
    notes = session.notes.setdefault(EXPERIMENT, [])
    for note in (choice.note, compat.describe(submission_shims(session))):
        if note and note not in notes:
            notes.append(note)
    return [c for c in cases if track_of(c) == choice.track]


def structure_case() -> Case:
    return Case("vgg_structure", "structure", "build",
                "VGG19().build_model(param_path, quant_param_path): the layers created on pycnml.CnmlNet")


def network_case() -> Case:
    return Case("vgg_network", "network", "network",
                "VGG19 on the cat image: build_model, load_model, load_image, forward, getOutputData",
                weights_dependent=True)


def visible_cases() -> list[Case]:
    """Both tracks' visible cases (the goldens hold both); a session keeps one track's (:func:`select_cases`)."""
    return [structure_case(), network_case()] + cnnl.visible_cases()


def hidden_cases(seed: int) -> list[Case]:
    image = random_image(seed)
    return [Case("hidden_vgg_image", "network_image", "network",
                 f"VGG19 on a fresh {image.shape[1]}x{image.shape[0]} image",
                 {}, {"image": image}, hidden=True, weights_dependent=True,
                 hint=f"a {image.shape[1]}x{image.shape[0]} crop of a kit image with noise, resized to 224x224")
            ] + cnnl.hidden_cases(seed)


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


# The class read back and evaluate(): the same for both tracks (grader.experiments.dlp_top).
top1 = dlp_top.top1
evaluate = dlp_top.evaluate_check('VGG19.evaluate(file_list, synset_path)',
                                  "get_top5 in the book's 3.2.4.4")
hidden_image = dlp_top.hidden_image_check(DLP_TOL, 'VGG19.evaluate(file_list, synset_path)',
                                          "get_top5 in the book's 3.2.4.4")


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
    return rows + cnnl.checks(cases)
