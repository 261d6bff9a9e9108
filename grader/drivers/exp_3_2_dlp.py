"""Experiment 3.2 driver: build and run the submission's VGG19 of vgg19_demo.py through pycnml.

Only the book's interface is used: ``VGG19()``, ``build_model(param_path=...,
quant_param_path=...)``, ``load_model()``, ``load_image(path)``, ``forward()`` and the
``net`` attribute (a ``pycnml.CnmlNet``: ``size``, ``getLayerName``, ``getOutputData``).
Layer types, output shapes and per-layer outputs come from the emulator's inspection
methods (``getLayerType``, ``getLayerOutputShape``, ``getLayerOutput``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grader.drivers import BaseContext, fingerprint, image_file, sample_indices

MAX_NAME = 64          # layer names are the student's strings; keep the JSON facts small
CORNER = 16            # conv1_1's top-left corner: where padding mistakes show
SAMPLE = 4096


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


def network(ctx, p, x):
    """The book's flow on the cat image; the loaded net is kept for later cases."""
    vgg = _build(ctx)
    vgg.load_model()
    ctx.vgg = vgg
    vgg.load_image(ctx.resources["image"])
    vgg.forward()
    return _outputs(vgg)


def network_image(ctx, p, x):
    """The net on an image given as a ``[H, W, 3]`` uint8 array (written to a PNG for load_image)."""
    vgg = ctx.vgg
    if vgg is None:
        vgg = _build(ctx)
        vgg.load_model()
        ctx.vgg = vgg
    vgg.load_image(image_file(x["image"]))
    vgg.forward()
    return _outputs(vgg)


HANDLERS = {
    "structure": structure,
    "network": network,
    "network_image": network_image,
}
