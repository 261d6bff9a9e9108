"""Experiment 3.2, pycnnl track (the newer edition): drive the submission's VGG19 of vgg19_demo.py.

Only the newer template's interface is used: ``VGG19()``, ``build_model(param_path=...)``,
``load_model()``, ``load_image(path)``, ``forward()``, ``evaluate(file_list)`` and the ``net``
attribute (a ``pycnnl.CnnlNet``: ``size``, ``getLayerName``, ``getOutputData``). pycnnl shows
the calls it refuses but the first, so the driver puts a :class:`NetTap` between the
submission and its net, right after ``VGG19()``:

* ``cnnl_structure``: ``build_model`` through the tap, which records every
  ``create*Layer`` call with its arguments for the parent to check, and the first call
  pycnnl refused (then goes on recording, so that the checks can name every mistake);
* ``cnnl_network``: the whole flow through the tap, which passes every call on and keeps
  samples of the input and of every loaded parameter (the parent's hints: NHWC or NCHW,
  which weight layout); conv1_1's and pool5's outputs come from the emulator's
  ``getLayerOutput``, as in the pycnml track.

The template's ``evaluate`` calls the global ``vgg`` its ``__main__`` creates and its
``get_top5`` opens ``../synset_words.txt``: the driver sets that global and runs
``evaluate`` in a folder whose parent holds the class names, as the course's folder did.
"""
from __future__ import annotations

import contextlib
import inspect
import operator
import os
import shutil
import tempfile

import numpy as np

from grader.drivers import Tail, error_fact, image_file, sample_indices
from grader.drivers.top5 import read_printed
from grader.kit import compat
from grader.kit.cnnl_layout import CALLS, SHAPE_ARGS, elements, layer_output
from grader.kit.paths import SYNSET_WORDS

MAX_NAME = 64          # layer names are the student's strings; keep the JSON facts small
MAX_LAYERS = 256       # layers recorded with their arguments (a hostile build may create millions)
MAX_DIMS = 8           # entries kept of one shape vector
CORNER = 16            # conv1_1's top-left corner: where padding mistakes show
SAMPLE = 4096
PARAM_SAMPLE = 64      # values kept of each loaded weight and bias, at fixed indices
INPUT_HEAD = 224 * 3   # the first image row in NHWC order: enough to tell NHWC, NCHW and BGR apart
CONV1_WEIGHTS = 64 * 3 * 3 * 3
CAT_LABEL = 281
# pycnml calls a template of the other edition may still make, and what pycnnl does instead.
PYCNML_ONLY = {
    "createFlattenLayer": "pycnnl has no flatten layer: create fc6 right after pool5, its in_shape "
                          "[1, 1, 1, 512 * 7 * 7] reads pool5's output as one row",
    "setOutputShape": "VGG19 on pycnnl does not need setOutputShape",
}


def _shape_arg(value, method: str, what: str) -> list[int]:
    try:
        dims = [operator.index(v) for v in value]
    except TypeError:
        raise TypeError(f"{method}(): {what} must be a pycnnl.IntVector of ints ([N, C, H, W]), "
                        f"got {type(value).__name__}") from None
    return dims[:MAX_DIMS]


def _int_arg(value, method: str, what: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{method}(): {what} must be an int (pycnnl is a SWIG module and refuses "
                        f"{type(value).__name__} {value!r})") from None


class NetTap:
    """Stands between a submission and its ``pycnnl.CnnlNet`` and records what it is asked.

    Every call goes on to ``base``. ``strict=False`` (the structure case): an exception of
    ``base`` is recorded (the first one, in :attr:`refused`) instead of raised, and
    ``size``/``getLayerName`` answer from the record, so the whole build is recorded.
    ``strict=True`` (the network case): ``base``'s exceptions reach the submission as
    they would without the tap. Any other attribute is ``base``'s.
    """

    def __init__(self, base, strict: bool):
        self._base = base
        self._strict = strict
        self.layers: list[dict] = []
        self.count = 0
        self.input_shape: list[int] | None = None
        self.input_shape_calls = 0
        self.loaded: dict[int, dict] = {}
        self.conv1_1_weight: np.ndarray | None = None
        self.input: np.ndarray | None = None
        self.refused: str | None = None

    def _pass(self, method: str, *args):
        """``base.method(*args)``; outside strict mode the first refusal is recorded, not raised."""
        if self._strict:
            return getattr(self._base, method)(*args)
        try:
            return getattr(self._base, method)(*args)
        except Exception as exc:  # noqa: BLE001 - what pycnnl refused is a fact for the parent
            if self.refused is None:
                where = f"layer {self.count - 1}, " if method.startswith("create") else ""
                self.refused = f"{where}{method}: {error_fact(exc)}"
            return None

    def __getattr__(self, name):
        if name in PYCNML_ONLY:
            raise AttributeError(f"pycnnl.CnnlNet has no {name}: {PYCNML_ONLY[name]}")
        return getattr(self._base, name)

    # ----- what build_model calls -------------------------------------------------------
    def setInputShape(self, *dims):
        self.input_shape = [_int_arg(d, "setInputShape", "each dimension") for d in dims][:MAX_DIMS]
        self.input_shape_calls += 1
        return self._pass("setInputShape", *dims)

    def _create(self, method: str, args: tuple, kwargs: dict):
        kind, names = CALLS[method]
        signature = f"{method}({', '.join(('name',) + names)})"
        if kwargs:
            raise TypeError(f"{signature} takes positional arguments only (pycnnl is a SWIG module)")
        if len(args) != len(names) + 1:
            extra = ""
            if method == "createConvLayer" and len(args) == 7 - 1:
                extra = ("; pycnml's createConvLayer(name, out_channel, kernel, stride, dilation, pad, quant) has "
                         "no in_shape, pycnnl's takes it second and no quant parameter")
            raise TypeError(f"{signature} takes {len(names) + 1} arguments, got {len(args)}{extra}")
        layer = {"name": str(args[0])[:MAX_NAME], "kind": kind}
        for what, value in zip(names, args[1:]):
            layer[what] = _shape_arg(value, method, what) if what in SHAPE_ARGS else _int_arg(value, method, what)
        self.count += 1
        if len(self.layers) < MAX_LAYERS:
            self.layers.append(layer)
        return self._pass(method, *args)

    def createConvLayer(self, *args, **kwargs):
        return self._create("createConvLayer", args, kwargs)

    def createReLuLayer(self, *args, **kwargs):
        return self._create("createReLuLayer", args, kwargs)

    def createPoolingLayer(self, *args, **kwargs):
        return self._create("createPoolingLayer", args, kwargs)

    def createMlpLayer(self, *args, **kwargs):
        return self._create("createMlpLayer", args, kwargs)

    def createSoftmaxLayer(self, *args, **kwargs):
        return self._create("createSoftmaxLayer", args, kwargs)

    def size(self):
        return self._base.size() if self._strict else self.count

    def getLayerName(self, index):
        if self._strict:
            return self._base.getLayerName(index)
        return self.layers[operator.index(index)]["name"]

    def needToBeQuantized(self, index):
        if self._strict:
            return self._base.needToBeQuantized(index)
        return self.layers[operator.index(index)]["kind"] in ("conv", "mlp")

    # ----- what load_model and load_image call ----------------------------------------------
    def loadParams(self, index, weight, bias):
        i = _int_arg(index, "loadParams", "the layer index")
        (w_sample, w_size), (b_sample, b_size) = _fingerprint(weight), _fingerprint(bias)
        if len(self.loaded) < MAX_LAYERS:
            self.loaded[i] = {"w": w_sample, "b": b_sample, "size": np.array([w_size, b_size], dtype=np.float64)}
        if 0 <= i < len(self.layers) and self.layers[i]["name"] == "conv1_1" and w_size <= 2 * CONV1_WEIGHTS:
            self.conv1_1_weight = np.array(weight, dtype=np.float64).reshape(-1)
        return self._pass("loadParams", index, weight, bias)

    def setInputData(self, data):
        values = np.array(data, dtype=np.float64)
        self.input = values.reshape(-1)[:INPUT_HEAD] if values.ndim else values.reshape(-1)
        self.input_size = values.size
        return self._pass("setInputData", data)

    # ----- what the driver reads back --------------------------------------------------------
    def structure(self) -> dict:
        """The recorded build as arrays: counts, kinds, shape vectors, integer arguments."""
        n = len(self.layers)
        pad = np.full((n, 4), -1.0)
        shapes = {what: pad.copy() for what in SHAPE_ARGS}
        lengths = {what: np.zeros(n) for what in SHAPE_ARGS}
        ints = np.full((n, 5), -1.0)
        for i, layer in enumerate(self.layers):
            for what in SHAPE_ARGS:
                if what in layer:
                    dims = layer[what]
                    shapes[what][i, :min(4, len(dims))] = dims[:4]
                    lengths[what][i] = len(dims)
            for j, what in enumerate(("out_channel", "kernel", "stride", "dilation", "pad")):
                if what in layer:
                    ints[i, j] = layer[what]
            if layer["kind"] == "softmax":
                ints[i, 0] = layer["axis"]
        kinds = {"conv": 1, "mlp": 3, "relu": 5, "softmax": 6, "pool": 7}
        given = self.input_shape or []
        out = {"size": np.array([self.count], dtype=np.float64),
               "types": np.array([kinds[layer["kind"]] for layer in self.layers], dtype=np.float64),
               "ints": ints,
               "input_shape": np.array((given + [-1] * 4)[:4], dtype=np.float64),
               "input_shape_info": np.array([len(given), self.input_shape_calls], dtype=np.float64)}
        for what in SHAPE_ARGS:
            out[what] = shapes[what]
            out[f"{what}_len"] = lengths[what]
        return out

    def names(self) -> list[str]:
        return [layer["name"] for layer in self.layers]

    def diagnostics(self) -> dict:
        """What was given to the device, in small pieces: the input's first row, every loaded layer's sample."""
        out: dict = {}
        if self.input is not None:
            out["input/head"] = self.input
            out["input/size"] = np.array([self.input_size], dtype=np.float64)
        for index, facts in sorted(self.loaded.items()):
            for key, value in facts.items():
                out[f"params/{index}/{key}"] = value
        if self.conv1_1_weight is not None:
            out["conv1_1/weight"] = self.conv1_1_weight
        return out

    def layer_output(self, index: int) -> np.ndarray:
        """Layer ``index``'s output of the last forward as ``[N, C, H, W]`` (the emulator's getLayerOutput).

        The device holds conv, relu and pool outputs as NHWC; the recorded arguments give
        the NCHW shape they are read back into.
        """
        shape = list(self.input_shape or [])
        for layer in self.layers[:index + 1]:
            shape = layer_output(layer, shape)
        data = np.asarray(self._base.getLayerOutput(index), dtype=np.float64)
        if len(shape) != 4 or data.size != elements(shape):
            raise RuntimeError(f"layer {index} ({self.layers[index]['name']}) holds {data.size} values, "
                               f"its shape vector {shape} describes {elements(shape) if shape else 0}")
        n, c, h, w = shape
        return data.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def _fingerprint(values) -> tuple[np.ndarray, int]:
    """``(values at fixed sample indices, how many values)`` of a weight or bias, without copying it whole.

    fc6's weights are 100 M numbers: an array is read through ``.flat``, any other
    sequence element by element at the sampled indices only.
    """
    if isinstance(values, np.ndarray):
        size = values.size
        pick = sample_indices(size, PARAM_SAMPLE) if size else np.zeros(0, dtype=int)
        return np.asarray(values.flat[pick], dtype=np.float64), size
    try:
        size = len(values)
        pick = sample_indices(size, PARAM_SAMPLE) if size else np.zeros(0, dtype=int)
        return np.array([float(values[int(i)]) for i in pick], dtype=np.float64), size
    except (TypeError, ValueError, IndexError):
        return np.zeros(0), -1


# --------------------------------------------------------------------------- the cases

def _vgg(ctx, strict: bool):
    """``VGG19()`` of the submission with a tap on its net; the book's scipy.misc / np.float first."""
    compat.install(ctx.resources.get("compat", []))
    ctx.watch_weights()
    vgg = ctx.module("vgg19_demo").VGG19()
    base = getattr(vgg, "net", None)
    if base is None:
        raise AttributeError("VGG19 has no attribute 'net': __init__ must create self.net = pycnnl.CnnlNet()")
    vgg.net = NetTap(base, strict)
    return vgg


def _tap(vgg) -> NetTap:
    tap = getattr(vgg, "net", None)
    if not isinstance(tap, NetTap):
        raise RuntimeError("VGG19.net was replaced after __init__: create self.net = pycnnl.CnnlNet() once, "
                           "in __init__, and build on it")
    return tap


def structure(ctx, p, x):
    """``VGG19()`` and ``build_model`` only: the recorded layers as arrays, names as facts."""
    vgg = _vgg(ctx, strict=False)
    vgg.build_model(param_path=ctx.resources["weights"])
    tap = _tap(vgg)
    ctx.extra[ctx.current] = {"names": tap.names(), "refused": tap.refused}
    return tap.structure()


def _index(names: list[str], name: str, fallback: int) -> int:
    return names.index(name) if name in names else fallback


def _classify(ctx, vgg, image: str, label: int) -> dict:
    vgg.load_image(image)
    vgg.forward()
    tap = _tap(vgg)
    out = {"prob": np.array(tap.getOutputData(), dtype=np.float64)}
    out.update(tap.diagnostics())
    names = tap.names()
    conv = tap.layer_output(_index(names, "conv1_1", 0))
    out["conv1_1/corner"] = conv[:, :, :CORNER, :CORNER]
    flat = conv.reshape(-1)
    out["conv1_1/sample"] = flat[sample_indices(flat.size, SAMPLE)]
    out["pool5"] = tap.layer_output(_index(names, "pool5", 36))
    facts: dict = {}
    run_evaluate(ctx, vgg, image, label, out, facts)
    ctx.extra[ctx.current] = facts
    return out


def network(ctx, p, x):
    """The template's flow on the cat image; the loaded net is kept for the hidden image."""
    vgg = _vgg(ctx, strict=True)
    vgg.build_model(param_path=ctx.resources["weights"])
    vgg.load_model()
    ctx.cache["cnnl_vgg"] = vgg
    return _classify(ctx, vgg, ctx.resources["image"], CAT_LABEL)


def network_image(ctx, p, x):
    """The net on an image given as a ``[H, W, 3]`` uint8 array (written to a PNG for load_image)."""
    vgg = ctx.cache.get("cnnl_vgg")
    if vgg is None:
        vgg = _vgg(ctx, strict=True)
        vgg.build_model(param_path=ctx.resources["weights"])
        vgg.load_model()
        ctx.cache["cnnl_vgg"] = vgg
    return _classify(ctx, vgg, image_file(x["image"]), CAT_LABEL)


def _takes_synset_path(method) -> bool:
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "synset_path" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def run_evaluate(ctx, vgg, image: str, label: int, out: dict, facts: dict) -> None:
    """The submission's ``evaluate(file_list)`` on a one-line file list, as the template's ``__main__`` runs it.

    Outputs ``evaluate_top1_ids`` and ``evaluate_accuracy1`` (see :mod:`grader.drivers.top5`);
    an exception is ``facts["evaluate_error"]``. ``synset_path`` is passed when ``evaluate``
    takes it (the kit's file); the template's own reads ``../synset_words.txt``, which the
    folder it runs in provides.
    """
    folder = tempfile.mkdtemp(prefix="evaluate-")
    shutil.copyfile(SYNSET_WORDS, os.path.join(folder, "synset_words.txt"))
    run_in = os.path.join(folder, "run")
    os.mkdir(run_in)
    file_list = os.path.join(folder, "file_list")
    with open(file_list, "w", encoding="utf-8") as f:
        f.write(f"{image} {label}\n")
    # The template's evaluate calls vgg.load_image / vgg.get_top5 on the global its __main__ makes.
    ctx.module("vgg19_demo").vgg = vgg
    kwargs = {"synset_path": str(SYNSET_WORDS)} if _takes_synset_path(vgg.evaluate) else {}
    printed = Tail()
    here = os.getcwd()
    try:
        os.chdir(run_in)
        with contextlib.redirect_stdout(printed):
            vgg.evaluate(file_list, **kwargs)
    except Exception as exc:
        facts["evaluate_error"] = error_fact(exc)
    finally:
        os.chdir(here)
    read_printed(printed.text, SYNSET_WORDS.read_text(encoding="utf-8").splitlines(), out)


HANDLERS = {
    "cnnl_structure": structure,
    "cnnl_network": network,
    "cnnl_network_image": network_image,
}
