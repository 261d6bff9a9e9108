"""Experiment 3.2 driver: build and run the submission's VGG19 of vgg19_demo.py through pycnml.

Only the book's interface is used: ``VGG19()``, ``build_model(param_path=...,
quant_param_path=...)``, ``load_model()``, ``load_image(path)``, ``forward()``,
``evaluate(file_list, synset_path=...)`` (its printed top-1 and accuracy) and the ``net`` attribute (a ``pycnml.CnmlNet``: ``size``, ``getLayerName``, ``getOutputData``).
Layer types, output shapes and per-layer outputs come from the emulator's inspection
methods (``getLayerType``, ``getLayerOutputShape``, ``getLayerOutput``).
"""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass

import numpy as np

from grader.drivers import BaseContext, Tail, error_fact, exp_3_2_pycnnl, fingerprint, image_file, sample_indices
from grader.drivers.top5 import printed_top1_ids, read_printed  # noqa: F401 - printed_top1_ids: tests
from grader.kit import compat
from grader.kit.paths import SYNSET_WORDS

MAX_NAME = 64          # layer names are the student's strings; keep the JSON facts small
CORNER = 16            # conv1_1's top-left corner: where padding mistakes show
SAMPLE = 4096
CAT_LABEL = 281        # the book's label of the cat (3.2.5); any label works for the fresh image


@dataclass
class Context(BaseContext):
    experiment: str = "exp_3_2_dlp"
    vgg: object = None   # a loaded VGG19, reused by later cases of the same process


def _net(vgg):
    net = getattr(vgg, "net", None)
    if net is None:
        raise AttributeError("VGG19 has no attribute 'net': __init__ must create self.net = pycnml.CnmlNet(...)")
    return net


def _build(ctx):
    # The book's scipy.misc / np.float, when the submission's source uses them (grader.kit.compat).
    compat.install(ctx.resources.get("compat", []))
    ctx.watch_weights()
    vgg = ctx.module("vgg19_demo").VGG19()
    vgg.build_model(param_path=ctx.resources["weights"], quant_param_path=ctx.resources["quant_params"])
    return vgg


def structure(ctx, p, x):
    """Layer count, types, quantized flags and output shapes ``[size, 4]`` of the built net."""
    net = _net(_build(ctx))
    n = int(net.size())
    names = [str(net.getLayerName(i))[:MAX_NAME] for i in range(n)]
    ctx.extra[ctx.current] = {"names": names}
    return {
        "size": np.array([n], dtype=np.float64),
        "types": np.array([int(net.getLayerType(i)) for i in range(n)], dtype=np.float64),
        "quantized": np.array([bool(net.needToBeQuantized(i)) for i in range(n)], dtype=np.float64),
        "shapes": np.array([list(net.getLayerOutputShape(i)) for i in range(n)], dtype=np.float64).reshape(n, 4),
    }


def _layer_index(names: list[str], name: str, fallback: int) -> int:
    if name in names:
        return names.index(name)
    if 0 <= fallback < len(names):
        return fallback
    raise LookupError(f"the net has no layer named {name!r} (its {len(names)} layers: {', '.join(names[:8])}, ...)")


def _outputs(vgg) -> dict:
    """Softmax, conv1_1 (corner and sample), pool5 and a fingerprint of every layer's output."""
    net = _net(vgg)
    prob = np.array(net.getOutputData(), dtype=np.float64)
    names = [str(net.getLayerName(i))[:MAX_NAME] for i in range(int(net.size()))]
    out = {"prob": prob}
    for i, name in enumerate(names):
        fingerprint(out, name, net.getLayerOutput(i))
    conv = np.asarray(net.getLayerOutput(_layer_index(names, "conv1_1", 0)), dtype=np.float64)
    out["conv1_1/corner"] = conv[:, :, :CORNER, :CORNER]
    flat = conv.reshape(-1)
    out["conv1_1/sample"] = flat[sample_indices(flat.size, SAMPLE)]
    out["pool5"] = np.asarray(net.getLayerOutput(_layer_index(names, "pool5", 36)), dtype=np.float64)
    return out


def run_evaluate(vgg, image: str, label: int, out: dict, facts: dict) -> None:
    """The student's ``evaluate(file_list, synset_path=...)`` on a one-line file list.

    Outputs ``evaluate_top1_ids`` (the class ids of the first name get_top5 prints: the
    parent checks the golden's top-1 is among them) and ``evaluate_accuracy1`` ``[hits,
    total]``; an exception is ``facts["evaluate_error"]``.
    """
    folder = tempfile.mkdtemp(prefix="file-list-")
    file_list = f"{folder}/file_list"
    with open(file_list, "w", encoding="utf-8") as f:
        f.write(f"{image} {label}\n")
    printed = Tail()
    try:
        with contextlib.redirect_stdout(printed):
            vgg.evaluate(file_list, synset_path=str(SYNSET_WORDS))
    except Exception as exc:
        facts["evaluate_error"] = error_fact(exc)
    read_printed(printed.text, SYNSET_WORDS.read_text(encoding="utf-8").splitlines(), out)


def _classify(ctx, vgg, image: str, label: int) -> dict:
    """load_image and forward (the softmax, per-layer outputs), then evaluate on the same image."""
    vgg.load_image(image)
    vgg.forward()
    out = _outputs(vgg)
    facts: dict = {}
    run_evaluate(vgg, image, label, out, facts)
    ctx.extra[ctx.current] = facts
    return out


def network(ctx, p, x):
    """The book's flow on the cat image; the loaded net is kept for later cases."""
    vgg = _build(ctx)
    vgg.load_model()
    ctx.vgg = vgg
    return _classify(ctx, vgg, ctx.resources["image"], CAT_LABEL)


def network_image(ctx, p, x):
    """The net on an image given as a ``[H, W, 3]`` uint8 array (written to a PNG for load_image)."""
    vgg = ctx.vgg
    if vgg is None:
        vgg = _build(ctx)
        vgg.load_model()
        ctx.vgg = vgg
    return _classify(ctx, vgg, image_file(x["image"]), CAT_LABEL)


HANDLERS = {
    "structure": structure,
    "network": network,
    "network_image": network_image,
    **exp_3_2_pycnnl.HANDLERS,   # the newer edition's track (cnnl_* cases), same folder exp_3_2_dlp/
}
