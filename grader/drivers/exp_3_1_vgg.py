"""Experiment 3.1 driver: layers of layers_1/layers_2 and the VGG19 of vgg_cpu."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grader.drivers import BaseContext, fingerprint, image_file
from grader.kit.netloop import layer_names, run_layers


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


def vgg_network(ctx, p, x):
    """Build the student's VGG19 the book's way and run it layer by layer.

    Returns pool5 [1, 512, 7, 7], the last layer's output [1, 1000], and for every
    layer a fingerprint (a fixed sample of its flattened output) so that a mismatch
    can be traced to the first layer that differs.
    """
    vgg_cpu = ctx.module("vgg_cpu")
    vgg = vgg_cpu.VGG19(param_path=ctx.resources["weights"])
    vgg.build_model()
    vgg.init_model()
    vgg.load_model()
    vgg.load_image(image_file(x["image"]) if "image" in x else ctx.resources["image"])
    names = layer_names(vgg)
    out = {"input": np.asarray(vgg.input_image, dtype=np.float64)}

    def record(index, name, output, seconds):
        arr = fingerprint(out, name, output)
        if name == "pool5":
            out["pool5"] = arr

    prob, timings = run_layers(vgg, vgg.input_image, on_layer=record)
    out["prob"] = np.asarray(prob, dtype=np.float64)
    ctx.extra[ctx.current] = {"layers": names, "timings": timings}
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
