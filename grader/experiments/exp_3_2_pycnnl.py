"""Experiment 3.2, pycnnl track (the newer edition): the pycnml track's tiers on ``pycnnl.CnnlNet``.

Chosen per course in ``course.toml`` (see :mod:`grader.kit.course`); ``exp_3_2_dlp`` serves
the cases and checks of both tracks and keeps those of the track a submission is graded on.

* 60 (kit): ``build_model`` creates the newer template's 43 layers: count, names, types,
  the calls pycnnl accepts, every shape vector against the previous layer's output, and
  every layer's output against VGG19's (``cnnl_structure``: ``build_model`` only, through
  the driver's recorder);
* 80 (kit): ``load_model`` puts the weights in pycnnl's layout and ``load_image`` gives
  the NHWC input: conv1_1's and pool5's outputs on the cat equal the reference's;
* 100 (the book's criterion): after ``forward()`` the softmax of ``getOutputData()``
  equals the reference's and so does the top-1 class; ``evaluate(file_list)`` prints the
  reference's top-1 first and ``accuracy1: ... (k/1)``; a hidden check repeats pool5, the
  softmax, the top-1 and evaluate on a fresh image.

Goldens come from the reference (``grader/reference/tracks/pycnnl/``) on the same float32
emulator, which is deterministic: a correct submission matches exactly, and
:data:`CNNL_TOL` only absorbs a different order of float32 additions. A failed check
says why where the driver's samples show it: the input in NCHW instead of NHWC, a conv
weight layout (pycnml's ``[Cout, Cin, kh, kw]`` instead of ``[Cout, kh, kw, Cin]``), an
fc weight transposed, nothing loaded into a layer.
"""
from __future__ import annotations

import numpy as np

from grader.experiments import dlp_top
from grader.experiments import Case, Check, CheckContext, random_image
from grader.kit.cnnl_layout import (CALL_OF, INPUT_SHAPE, LAYER_NAMES_CNNL, SHAPE_ARGS, VGG_CONV, VGG_POOL,
                                    elements, layer_output, vgg19_layers)
from grader.kit.compare import CheckFailure, Tolerance, assert_close

TRACK = "pycnnl"
# float32 on both sides, the same kernels: equal up to the order of additions.
CNNL_TOL = Tolerance(rtol=1e-4, atol_scale=1e-4)
# Loaded parameters and the input are copies of the same .mat and image values.
SAME_TOL = Tolerance(rtol=1e-6, atol_scale=1e-6)
TYPE_KINDS = {1: "conv", 3: "mlp", 5: "relu", 6: "softmax", 7: "pool"}
KIND_WORDS = {"conv": "CONVOLUTION", "mlp": "MLP", "relu": "RELU", "softmax": "SOFTMAX", "pool": "POOL"}
EXPECTED = vgg19_layers()
MEAN = np.array([123.68, 116.779, 103.939])


def visible_cases() -> list[Case]:
    return [Case("cnnl_structure", "cnnl_structure", "build",
                 "VGG19().build_model(param_path): the layers created on pycnnl.CnnlNet", needs_golden=False),
            Case("cnnl_network", "cnnl_network", "network",
                 "VGG19 on the cat image: build_model, load_model, load_image, forward, getOutputData",
                 weights_dependent=True)]


def hidden_cases(seed: int) -> list[Case]:
    image = random_image(seed)
    return [Case("hidden_cnnl_image", "cnnl_network_image", "network",
                 f"VGG19 on a fresh {image.shape[1]}x{image.shape[0]} image",
                 {}, {"image": image}, hidden=True, weights_dependent=True,
                 hint=f"a {image.shape[1]}x{image.shape[0]} crop of a kit image with noise, resized to 224x224")]


# ----- tier 60: what build_model created ----------------------------------------------------

def recorded(ctx: CheckContext) -> tuple[list[dict], int, list[int], str | None]:
    """The recorded build: layers (as :func:`grader.kit.cnnl_layout.layer_output` reads them),
    how many create calls there were, setInputShape's arguments and pycnnl's first refusal."""
    outcome = ctx.outcome()
    out, extra = outcome.outputs, outcome.extra or {}
    names = [str(n) for n in extra.get("names", [])]
    types = [int(t) for t in np.asarray(out.get("types", np.zeros(0))).reshape(-1)]
    ints = np.asarray(out.get("ints", np.zeros((0, 5)))).reshape(-1, 5)
    layers = []
    for i, type_id in enumerate(types[:len(names)]):
        layer = {"name": names[i], "kind": TYPE_KINDS.get(type_id, "?")}
        for what in SHAPE_ARGS:
            length = int(np.asarray(out[f"{what}_len"]).reshape(-1)[i])
            if length:
                dims = [int(v) for v in np.asarray(out[what]).reshape(-1, 4)[i][:min(length, 4)]]
                layer[what] = dims + [-1] * (length - len(dims))
        row = [int(v) for v in ints[i]]
        if layer["kind"] == "conv":
            layer.update(zip(("out_channel", "kernel", "stride", "dilation", "pad"), row))
        elif layer["kind"] == "pool":
            layer.update(kernel=row[1], stride=row[2])
        elif layer["kind"] == "softmax":
            layer["axis"] = row[0]
        layers.append(layer)
    size = int(np.asarray(out.get("size", [-1])).reshape(-1)[0])
    given, _calls = (int(v) for v in np.asarray(out.get("input_shape_info", [0, 0])).reshape(-1)[:2])
    input_shape = [int(v) for v in np.asarray(out.get("input_shape", [])).reshape(-1)[:min(given, 4)]]
    return layers, size, input_shape, extra.get("refused")


def _difference(names: list[str]) -> str:
    want = list(LAYER_NAMES_CNNL)
    missing = [n for n in want if n not in names and not (n == "softmax" and "Softmax" in names)]
    extra = [n for n in names if n not in want and n != "Softmax"]
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    if extra:
        parts.append("not in VGG19: " + ", ".join(repr(n) for n in extra[:8]) + (" ..." if len(extra) > 8 else ""))
    return "; ".join(parts)


def layer_count(ctx: CheckContext) -> str:
    layers, size, _, _ = recorded(ctx)
    if size != len(EXPECTED):
        names = [layer["name"] for layer in layers]
        diff = _difference(names)
        raise CheckFailure(f"net.size() is {size} but VGG19 on pycnnl has {len(EXPECTED)} layers "
                           f"(16 conv + 18 relu + 5 pool + 3 mlp + softmax; pycnnl has no flatten layer)"
                           + (f": {diff}" if diff else ""))
    return f"net.size() = {size}"


def layer_names(ctx: CheckContext) -> str:
    """conv/fc names must be the template's: load_model finds the weights by them and reads the
    .mat at the layer's own index. Other layers may be named freely without 'conv' or 'fc'."""
    layers, _, _, _ = recorded(ctx)
    names = [layer["name"] for layer in layers]
    for i, want in enumerate(EXPECTED):
        if i >= len(names):
            raise CheckFailure(f"layer {i} should be {want['name']!r} but the net has only {len(names)} layers")
        got = names[i]
        ok = got == want["name"] if want["kind"] in ("conv", "mlp") else "conv" not in got and "fc" not in got
        if not ok:
            diff = _difference(names)
            raise CheckFailure(f"layer {i} is named {got!r} but should be {want['name']!r} (getLayerName({i}))"
                               + (f"; {diff}" if diff else ""))
    if len(names) > len(EXPECTED):
        raise CheckFailure(f"the net has {len(names) - len(EXPECTED)} layer(s) after 'softmax': "
                           f"{', '.join(repr(n) for n in names[len(EXPECTED):][:5])}")
    return f"all {len(names)} layer names fit VGG19 ({names[0]} ... {names[-1]})"


def layer_types(ctx: CheckContext) -> str:
    layers, _, _, _ = recorded(ctx)
    for i, want in enumerate(EXPECTED):
        if i >= len(layers):
            raise CheckFailure(f"layer {i} ({want['name']}) should be a {KIND_WORDS[want['kind']]} layer but the "
                               f"net has only {len(layers)} layers")
        got = layers[i]["kind"]
        if got != want["kind"]:
            raise CheckFailure(f"layer {i} ({layers[i]['name']!r}) is a {KIND_WORDS.get(got, got)} layer but VGG19 "
                               f"has a {KIND_WORDS[want['kind']]} layer ({want['name']}) there: "
                               f"{CALL_OF[want['kind']]}")
    return "layer types match VGG19 (conv/relu/pool x5, mlp/relu, softmax)"


def accepted(ctx: CheckContext) -> str:
    """Every call of build_model was accepted by pycnnl (the emulator checks what the card would misuse)."""
    _, _, _, refused = recorded(ctx)
    if refused:
        raise CheckFailure(f"pycnnl refused a call of build_model ({refused})")
    return "pycnnl accepted every call of build_model"


def _fmt(shape) -> str:
    return "[" + ", ".join(str(v) for v in shape) + "]"


def _shape_hint(got: list[int], prev: list[int], outputs: list[tuple[str, list[int]]]) -> str:
    """Why an in_shape differs from the previous output: NHWC order, or an older layer's output."""
    if len(got) == 4 and len(prev) == 4 and got == [prev[0], prev[2], prev[3], prev[1]] and got != prev:
        return ("; that is NHWC order: shape vectors are NCHW [N, C, H, W], although the device keeps NHWC "
                "tensors")
    for j in range(len(outputs) - 2, -1, -1):
        name, shape = outputs[j]
        if shape == got and shape != prev:
            return f"; it is the output of {name}: was the shape not updated after {outputs[j + 1][0]}?"
    return ""


def _mlp_problem(layer: dict) -> str:
    """What is wrong with an MLP's three shape vectors as x @ W (empty when nothing)."""
    i, w, o = layer.get("in_shape", []), layer.get("w_shape", []), layer.get("out_shape", [])
    name = layer["name"]
    if not len(i) == len(w) == len(o) == 4:
        return (f"{name}'s in_shape {_fmt(i)}, w_shape {_fmt(w)}, out_shape {_fmt(o)}: the template uses 4 entries "
                f"each, [1, 1, 1, in], [1, 1, in, out], [1, 1, 1, out]")
    if w[-2:] == [o[-1], i[-1]] and i[-1] != o[-1]:
        return (f"{name}'s w_shape {_fmt(w)} is transposed: pycnnl computes x @ W with x [1, in], so w_shape is "
                f"[1, 1, in, out] = {_fmt(w[:2] + [i[-1], o[-1]])}")
    if i[:-2] != w[:-2] or i[:-2] != o[:-2] or i[-1] != w[-2] or o[-1] != w[-1] or o[-2] != i[-2]:
        return (f"{name}'s in_shape {_fmt(i)}, w_shape {_fmt(w)}, out_shape {_fmt(o)} do not describe x @ W: "
                f"[1, 1, 1, in] @ [1, 1, in, out] = [1, 1, 1, out]")
    return ""


def shape_vectors(ctx: CheckContext) -> str:
    """setInputShape, then each layer's in_shape against the previous layer's output (NCHW)."""
    layers, _, input_shape, _ = recorded(ctx)
    if input_shape != list(INPUT_SHAPE):
        raise CheckFailure(f"setInputShape{tuple(input_shape)} but VGG19's input is setInputShape{INPUT_SHAPE} "
                           f"(N, C, H, W)")
    prev, outputs = list(INPUT_SHAPE), [("the input (setInputShape)", list(INPUT_SHAPE))]
    for i, layer in enumerate(layers):
        name, kind, got = layer["name"], layer["kind"], layer.get("in_shape")
        owner = outputs[-1][0]
        if kind in ("conv", "pool") and got != prev:
            raise CheckFailure(f"layer {i} ({name!r}) has in_shape {_fmt(got)} but {owner} outputs {_fmt(prev)} "
                               f"[N, C, H, W]" + _shape_hint(got, prev, outputs))
        if kind in ("mlp", "softmax") and elements(got) != elements(prev):
            raise CheckFailure(f"layer {i} ({name!r}) has in_shape {_fmt(got)} ({elements(got)} values) but {owner} "
                               f"outputs {_fmt(prev)} ({elements(prev)} values): it reads that output as one row "
                               f"of {elements(prev[1:])}")
        if kind == "mlp" and _mlp_problem(layer):
            raise CheckFailure(f"layer {i}: {_mlp_problem(layer)}")
        try:
            prev = layer_output(layer, prev)
        except ValueError as exc:
            raise CheckFailure(f"layer {i} ({name!r}): {exc}") from None
        outputs.append((name, prev))
    return f"setInputShape{INPUT_SHAPE} and every in_shape match the previous layer's output"


def _arguments(layer: dict) -> str:
    if layer["kind"] == "conv":
        return ("; its arguments: out_channel {out_channel}, kernel {kernel}, stride {stride}, dilation {dilation}, "
                "pad {pad} (VGG19: 3x3, stride 1, dilation 1, pad 1; the order is name, in_shape, out_channel, "
                "kernel, stride, dilation, pad)").format(**layer)
    if layer["kind"] == "pool":
        return "; its arguments: kernel {kernel}, stride {stride} (VGG19: 2, 2)".format(**layer)
    return ""


def output_shapes_match(ctx: CheckContext) -> str:
    layers, _, _, _ = recorded(ctx)
    prev = list(INPUT_SHAPE)
    for i, want in enumerate(EXPECTED):
        if i >= len(layers):
            raise CheckFailure(f"layer {i} ({want['name']}) with output {_fmt(want['output'])} is missing: the net "
                               f"has {len(layers)} layers")
        layer = layers[i]
        try:
            got = layer_output(layer, prev)
        except (ValueError, KeyError) as exc:
            raise CheckFailure(f"layer {i} ({layer['name']!r}): {exc}") from None
        wrong_args = (layer["kind"] == "conv" and any(layer.get(k) != v for k, v in VGG_CONV.items())) or (
            layer["kind"] == "pool" and any(layer.get(k) != v for k, v in VGG_POOL.items()))
        if got != want["output"] or wrong_args:
            why = _arguments(layer) if wrong_args else (
                f"; its in_shape {_fmt(layer.get('in_shape', []))} is not VGG19's {_fmt(want['in_shape'])}"
                if layer.get("in_shape") != want.get("in_shape") else "")
            raise CheckFailure(f"layer {i} ({layer['name']!r}) outputs {_fmt(got)} but VGG19's {want['name']} outputs "
                               f"{_fmt(want['output'])}" + why)
        prev = got
    return f"all {len(EXPECTED)} output shapes match, pool5 {_fmt(EXPECTED[36]['output'])}"


# ----- tiers 80 and 100: the values ---------------------------------------------------------

def _same(got, want) -> bool:
    if got is None or want is None:
        return False
    got, want = np.asarray(got, dtype=np.float64).reshape(-1), np.asarray(want, dtype=np.float64).reshape(-1)
    if got.shape != want.shape:
        return False
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    return bool(np.all(np.abs(got - want) <= SAME_TOL.atol_scale * scale + SAME_TOL.rtol * np.abs(want)))


def input_hint(outputs: dict, golden: dict) -> str:
    """What is wrong with the data given to setInputData, from its first image row (empty when nothing)."""
    got, want = outputs.get("input/head"), golden.get("input/head")
    size, want_size = outputs.get("input/size"), golden.get("input/size")
    if got is None:
        return "setInputData was never called: load_image must pass the image to the net"
    if size is not None and want_size is not None and int(size[0]) != int(want_size[0]):
        return (f"setInputData got {int(size[0])} values, pycnnl needs {int(want_size[0])} = 1 x 224 x 224 x 3 "
                f"(NHWC, flat)")
    if want is None or _same(got, want):
        return ""
    got, want = np.asarray(got).reshape(-1), np.asarray(want).reshape(-1)
    row = want.size // 3
    if got.size >= row and _same(got[:row], want[0::3][:row]):
        return ("the input is in NCHW order (transposed as pycnml wants); pycnnl takes the image in NHWC order "
                "as it is: reshape to [1, 224, 224, 3] and flatten, no np.transpose")
    if got.size == want.size and _same(got.reshape(-1, 3)[:, ::-1], want.reshape(-1, 3)):
        return "the input's channels are BGR; the template keeps RGB (the mean [123.68, 116.779, 103.939] is RGB)"
    if got.size == want.size and _same(got, want + np.tile(MEAN, row)):
        return "the mean was not subtracted from the input (input_image -= image_mean)"
    return "the input differs from the reference's (the image resized to 224 x 224, minus the mean, NHWC, flat)"


def conv_weight_hint(outputs: dict, golden: dict) -> str:
    """Which layout conv1_1's weights were loaded in, when it is not pycnnl's [Cout, kh, kw, Cin]."""
    got, want = outputs.get("conv1_1/weight"), golden.get("conv1_1/weight")
    if got is None or want is None or _same(got, want):
        return ""
    fix = "conv weights must be [Cout, kh, kw, Cin] for pycnnl: np.transpose(weight, [3, 0, 1, 2]), flattened"
    want = np.asarray(want, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    if got.size != want.size:
        return f"conv1_1 got {got.size} weights, it has {want.size} (64 x 3 x 3 x 3); {fix}"
    mat = want.reshape(64, 3, 3, 3).transpose(1, 2, 3, 0)   # back to MatConvNet's [kh, kw, Cin, Cout]
    layouts = [("pycnml's [Cout, Cin, kh, kw] (np.transpose(weight, [3, 2, 0, 1]))", (3, 2, 0, 1)),
               ("the .mat's own [kh, kw, Cin, Cout], not transposed", (0, 1, 2, 3)),
               ("[Cout, kw, kh, Cin] (kh and kw swapped)", (3, 1, 0, 2)),
               ("[Cin, kh, kw, Cout] (experiment 3.1's layout)", (2, 0, 1, 3))]
    for words, axes in layouts:
        if _same(got, mat.transpose(axes)):
            return f"conv1_1's weights were loaded as {words}; {fix}"
    return f"conv1_1's weights differ from the reference's; {fix}"


def params_hint(outputs: dict, golden: dict, kinds: tuple[str, ...]) -> str:
    """The first conv/fc layer (of ``kinds``) whose loaded weights or bias differ from the reference's."""
    for index, want in enumerate(EXPECTED):
        if want["kind"] not in kinds:
            continue
        name, key = want["name"], f"params/{index}"
        if f"{key}/size" not in golden:
            continue
        if f"{key}/size" not in outputs:
            return f"nothing was loaded into {name}: loadParams({index}, weight, bias) was not called"
        sizes, want_sizes = (tuple(int(v) for v in np.asarray(d[f"{key}/size"]).reshape(-1)) for d in (outputs, golden))
        if sizes != want_sizes:
            return (f"{name} got {sizes[0]} weights and {sizes[1]} biases, it has {want_sizes[0]} and {want_sizes[1]} "
                    f"(loadParams({index}, ...))")
        if not _same(outputs[f"{key}/w"], golden[f"{key}/w"]):
            if want["kind"] == "conv":
                return (f"the weights loaded into {name} differ from the reference's: conv weights must be "
                        f"[Cout, kh, kw, Cin] for pycnnl (np.transpose(weight, [3, 0, 1, 2]), flattened), read from "
                        f"params['layers'][0][{index}]")
            return (f"the weights loaded into {name} differ from the reference's: pycnnl's fc weights are [in, out] "
                    f"row-major, the .mat's [h, w, Cin, Cout] reshaped to [h * w * Cin, Cout] and not transposed, "
                    f"read from params['layers'][0][{index}] (the net's own index: there is no flatten layer)")
        if not _same(outputs[f"{key}/b"], golden[f"{key}/b"]):
            return f"the bias loaded into {name} differs from the reference's (bias.reshape(-1), as float64)"
    return ""


def hints(outputs: dict, golden: dict, kinds: tuple[str, ...]) -> str:
    """The input's and the first differing layer's parameters' hints, joined (empty when both fit)."""
    return "; ".join(h for h in (input_hint(outputs, golden), params_hint(outputs, golden, kinds)) if h)


def _compare(ctx: CheckContext, key: str, what: str) -> str:
    return assert_close(ctx.outputs.get(key), ctx.golden[key], what, CNNL_TOL)


def conv1_1(ctx: CheckContext) -> str:
    """conv1_1 is given code: a mismatch points at load_image's input or load_model's conv transpose."""
    try:
        first = _compare(ctx, "conv1_1/corner", "conv1_1 output [1, 64, :16, :16] (NCHW) on the cat image")
        _compare(ctx, "conv1_1/sample", "conv1_1 output (4096 sampled elements)")
    except CheckFailure as exc:
        hints = [h for h in (input_hint(ctx.outputs, ctx.golden), conv_weight_hint(ctx.outputs, ctx.golden)) if h]
        hint = "; ".join(hints) or ("conv1_1's input and weights equal the reference's: check "
                                    "createConvLayer('conv1_1', ...) and the bias")
        raise CheckFailure(f"{exc}; {hint}") from None
    return first


def pool5(ctx: CheckContext) -> str:
    try:
        return _compare(ctx, "pool5", "pool5 output [1, 512, 7, 7] (NCHW) on the cat image")
    except CheckFailure as exc:
        hint = hints(ctx.outputs, ctx.golden, ("conv",))
        raise CheckFailure(f"{exc}" + (f"; {hint}" if hint else "")) from None


def softmax(ctx: CheckContext) -> str:
    try:
        return _compare(ctx, "prob", "softmax (getOutputData) on the cat image")
    except CheckFailure as exc:
        hint = hints(ctx.outputs, ctx.golden, ("conv", "mlp"))
        raise CheckFailure(f"{exc}" + (f"; {hint}" if hint else "")) from None


# The class read back and evaluate(): the same for both tracks (grader.experiments.dlp_top).
top1 = dlp_top.top1
evaluate = dlp_top.evaluate_check('VGG19.evaluate(file_list)',
                                  "the template's get_top5")
hidden_image = dlp_top.hidden_image_check(CNNL_TOL, 'VGG19.evaluate(file_list)',
                                          "the template's get_top5")


def checks(cases: list[Case]) -> list[Check]:
    names = {c.name for c in cases}
    rows = []
    if "cnnl_structure" in names:
        rows += [Check("vgg19_layer_count", 60, "cnnl_structure", layer_count),
                 Check("vgg19_layer_names", 60, "cnnl_structure", layer_names),
                 Check("vgg19_layer_types", 60, "cnnl_structure", layer_types),
                 Check("vgg19_pycnnl_accepts", 60, "cnnl_structure", accepted),
                 Check("vgg19_shape_vectors", 60, "cnnl_structure", shape_vectors),
                 Check("vgg19_output_shapes", 60, "cnnl_structure", output_shapes_match)]
    if "cnnl_network" in names:
        rows += [Check("vgg19_conv1_1", 80, "cnnl_network", conv1_1),
                 Check("vgg19_pool5", 80, "cnnl_network", pool5),
                 Check("vgg19_softmax", 100, "cnnl_network", softmax),
                 Check("vgg19_top1", 100, "cnnl_network", top1),
                 Check("vgg19_evaluate", 100, "cnnl_network", evaluate)]
    rows += [Check(c.name, 100, c.name, hidden_image, hidden=True) for c in cases if c.kind == "cnnl_network_image"]
    return rows
