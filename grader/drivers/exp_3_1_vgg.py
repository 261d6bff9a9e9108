"""Experiment 3.1 driver: layers of layers_1/layers_2 and the VGG19 of vgg_cpu."""
from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass

import numpy as np

from grader.drivers import BaseContext, Tail, error_fact, fingerprint, image_file
from grader.kit.netloop import layer_names, run_layers

# What the book's evaluate() prints (Fig. 3.7): "Classification result: id = 281, prob = 0.93".
RESULT_LINE = re.compile(r"Classification result:\s*id\s*=\s*(\d+)")


@dataclass
class Context(BaseContext):
    experiment: str = "exp_3_1_vgg"


def conv_forward(ctx, p, x):
    layer = ctx.module("layers_2").ConvolutionalLayer(p["k"], p["cin"], p["cout"], p["pad"], p["stride"])
    layer.init_param()
    layer.load_param(x["weight"], x["bias"])
    return {"output": layer.forward(x["input"])}


def pool_forward(ctx, p, x):
    layer = ctx.module("layers_2").MaxPoolingLayer(p["k"], p["stride"])
    return {"output": layer.forward(x["input"])}


def fc_forward(ctx, p, x):
    layer = ctx.module("layers_1").FullyConnectedLayer(p["nin"], p["nout"])
    layer.init_param()
    layer.load_param(x["weight"], x["bias"])
    return {"output": layer.forward(x["input"])}


def relu_forward(ctx, p, x):
    return {"output": ctx.module("layers_1").ReLULayer().forward(x["input"])}


def softmax_forward(ctx, p, x):
    return {"output": ctx.module("layers_1").SoftmaxLossLayer().forward(x["input"])}


def flatten_forward(ctx, p, x):
    layer = ctx.module("layers_2").FlattenLayer(list(p["in_shape"]), list(p["out_shape"]))
    return {"output": layer.forward(x["input"])}


def printed_class_id(text: str) -> int | None:
    """The class id of the last "Classification result: id = N" line of ``text``, or None."""
    found = RESULT_LINE.findall(text)
    return int(found[-1]) if found else None


class LayerRecorder:
    """Wraps every layer object's ``forward`` to see the calls the student's own forward() makes.

    The i-th call is taken as layer ``names[i]``; :meth:`complete` tells whether the calls
    were exactly the layers of ``param_layer_name`` in order, each on the previous output.
    """

    def __init__(self, vgg, names: list[str], on_layer):
        self.vgg, self.names, self.on_layer = vgg, names, on_layer
        self.calls: list[int] = []          # id() of the layer object of each call
        self.chained = True                 # every call got the previous call's output
        self.last = None
        self.timings: dict[str, float] = {}
        self._saved: dict[int, tuple[object, object]] = {}

    def install(self) -> None:
        for layer in {id(obj): obj for obj in self.vgg.layers.values()}.values():
            original = layer.forward
            self._saved[id(layer)] = (layer, layer.__dict__.get("forward"))
            layer.forward = self._wrap(layer, original)

    def remove(self) -> None:
        for layer, own in self._saved.values():
            if own is None:
                del layer.__dict__["forward"]
            else:
                layer.forward = own

    def _wrap(self, layer, original):
        def forward(current, *args, **kwargs):
            if self.calls and current is not self.last:
                self.chained = False
            start = time.perf_counter()
            output = original(current, *args, **kwargs)
            seconds = time.perf_counter() - start
            index = len(self.calls)
            self.calls.append(id(layer))
            self.last = output
            if index < len(self.names):
                self.timings[self.names[index]] = seconds
                self.on_layer(index + 1, self.names[index], output, seconds)
            return output
        return forward

    def complete(self) -> bool:
        want = [id(self.vgg.layers.get(name)) for name in self.names]
        return self.chained and self.calls == want


def run_evaluate(vgg, out: dict, facts: dict) -> None:
    """Call the student's ``evaluate()`` once, as the book's ``__main__`` does.

    evaluate() calls ``self.forward()``; what forward() returns is kept as
    ``out["forward_prob"]`` (float64, the softmax ``[1, 1000]``) and the class id evaluate()
    prints as ``out["evaluate_top1"]`` ``[1]``. An exception is a fact, not a failure of the
    case: ``facts["forward_error"]`` / ``facts["evaluate_error"]``.
    """
    book_forward = vgg.forward
    returned = []

    def forward(*args, **kwargs):
        try:
            result = book_forward(*args, **kwargs)
        except Exception as exc:
            facts["forward_error"] = error_fact(exc)
            raise
        returned.append(result)
        return result

    vgg.forward = forward
    printed = Tail()
    try:
        with contextlib.redirect_stdout(printed):
            vgg.evaluate()
    except Exception as exc:
        facts["evaluate_error"] = error_fact(exc)
    finally:
        del vgg.forward
    facts["forward_calls"] = len(returned)
    if returned and returned[0] is not None:
        try:
            out["forward_prob"] = np.asarray(returned[0], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            facts["forward_error"] = f"forward() returned a {type(returned[0]).__name__}: {error_fact(exc)}"
    class_id = printed_class_id(printed.text)
    if class_id is not None:
        out["evaluate_top1"] = np.array([class_id], dtype=np.float64)


def vgg_network(ctx, p, x):
    """Build the student's VGG19 the book's way and classify the image with its evaluate().

    Returns pool5 [1, 512, 7, 7], the last layer's output ``prob`` [1, 1000], for every
    layer a fingerprint (a fixed sample of its flattened output) so that a mismatch can be
    traced to the first layer that differs, and what forward()/evaluate() gave
    (:func:`run_evaluate`). The layers are seen while the student's own forward() runs
    them; only when that run does not walk every layer in order (an exception, a skipped
    layer) are they run once more by the kit's loop, for pool5 and the softmax.
    """
    ctx.watch_weights()
    vgg_cpu = ctx.module("vgg_cpu")
    vgg = vgg_cpu.VGG19(param_path=ctx.resources["weights"])
    vgg.build_model()
    if not ctx.golden:   # load_model overwrites every parameter init_model draws
        vgg.init_model()
    vgg.load_model()
    vgg.load_image(image_file(x["image"]) if "image" in x else ctx.resources["image"])
    names = layer_names(vgg)
    out = {"input": np.asarray(vgg.input_image, dtype=np.float64)}
    facts: dict = {"layers": names}

    def record(index, name, output, seconds):
        arr = fingerprint(out, name, output)
        if name == "pool5":
            out["pool5"] = arr

    recorder = LayerRecorder(vgg, names, record)
    recorder.install()
    try:
        run_evaluate(vgg, out, facts)
    finally:
        recorder.remove()
    if recorder.complete():
        prob, timings = recorder.last, recorder.timings
    else:
        facts["forward_walked"] = len(recorder.calls)
        for key in [k for k in out if k.startswith(("sample/", "shape/")) or k == "pool5"]:
            del out[key]
        prob, timings = run_layers(vgg, vgg.input_image, on_layer=record)
    out["prob"] = np.asarray(prob, dtype=np.float64)
    facts["timings"] = timings
    ctx.extra[ctx.current] = facts
    return out


HANDLERS = {
    "conv_forward": conv_forward,
    "pool_forward": pool_forward,
    "fc_forward": fc_forward,
    "relu_forward": relu_forward,
    "softmax_forward": softmax_forward,
    "flatten_forward": flatten_forward,
    "vgg_network": vgg_network,
    "vgg_network_image": vgg_network,
}
