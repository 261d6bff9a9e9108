"""VGG19 as the newer edition builds it on pycnnl: 43 layers, their shape vectors and outputs.

pycnnl takes a shape vector per layer (``in_shape``, and for an MLP ``w_shape`` and
``out_shape``), written in NCHW order ``[N, C, H, W]`` although the device keeps NHWC
tensors. There is no flatten layer: fc6 reads pool5's output as one row, so the net has
MatConvNet's 43 layers and layer ``i`` is entry ``i`` of the ``.mat``'s ``layers`` array.

Used by the pycnnl track's driver (the child: the shape of the output it reads back) and
its checks (the parent: what each recorded call should have been). A *layer* here is the
dict the driver records per ``create*Layer`` call: ``name``, ``kind`` (``conv``, ``relu``,
``pool``, ``mlp``, ``softmax``) and the call's arguments by their pycnnl names.
"""
from __future__ import annotations

from grader.kit.vgg_layout import CONV_CHANNELS, FC_SIZES, LAYER_NAMES, layer_kind

INPUT_SHAPE = (1, 3, 224, 224)
CLASSES = 1000
# The newer template's 43 layer names: the book's without flatten, its softmax in lower case.
LAYER_NAMES_CNNL: tuple[str, ...] = tuple("softmax" if n == "Softmax" else n for n in LAYER_NAMES if n != "flatten")
# What each create*Layer call is called, its layer kind, and its arguments after the name.
CALLS = {
    "createConvLayer": ("conv", ("in_shape", "out_channel", "kernel", "stride", "dilation", "pad")),
    "createReLuLayer": ("relu", ()),
    "createPoolingLayer": ("pool", ("in_shape", "kernel", "stride")),
    "createMlpLayer": ("mlp", ("in_shape", "w_shape", "out_shape")),
    "createSoftmaxLayer": ("softmax", ("in_shape", "axis")),
}
SHAPE_ARGS = ("in_shape", "w_shape", "out_shape")
CALL_OF = {kind: call for call, (kind, _) in CALLS.items()}
VGG_CONV = {"kernel": 3, "stride": 1, "dilation": 1, "pad": 1}
VGG_POOL = {"kernel": 2, "stride": 2}


def _kind(name: str) -> str:
    kind = layer_kind(name)
    return {"fc": "mlp"}.get(kind, kind)


def conv_output(in_shape, out_channel: int, kernel: int, stride: int, dilation: int, pad: int) -> list[int]:
    """``[N, out_channel, H', W']`` of a convolution over ``in_shape`` ``[N, C, H, W]``."""
    n, _, h, w = in_shape
    span = dilation * (kernel - 1) + 1
    if stride <= 0:
        raise ValueError(f"stride {stride} must be positive")
    return [n, out_channel, (h + 2 * pad - span) // stride + 1, (w + 2 * pad - span) // stride + 1]


def pool_output(in_shape, kernel: int, stride: int) -> list[int]:
    """``[N, C, H', W']`` of a max pool without padding: ``floor((H - k) / s) + 1``."""
    n, c, h, w = in_shape
    if stride <= 0:
        raise ValueError(f"stride {stride} must be positive")
    return [n, c, (h - kernel) // stride + 1, (w - kernel) // stride + 1]


def layer_output(layer: dict, previous: list[int]) -> list[int]:
    """The shape vector a recorded layer outputs, from its own arguments.

    conv and pool: NCHW from their ``in_shape``; relu: the previous layer's output;
    mlp: its ``out_shape``; softmax: its ``in_shape``. Raises ValueError when the
    arguments cannot describe an output (a shape vector of the wrong length).
    """
    kind = layer["kind"]
    if kind == "relu":
        return list(previous)
    if kind in ("conv", "pool"):
        shape = layer["in_shape"]
        if len(shape) != 4:
            raise ValueError(f"in_shape {list(shape)} has {len(shape)} entries, not 4 ([N, C, H, W])")
        if kind == "conv":
            return conv_output(shape, layer["out_channel"], layer["kernel"], layer["stride"], layer["dilation"],
                               layer["pad"])
        return pool_output(shape, layer["kernel"], layer["stride"])
    if kind == "mlp":
        return list(layer["out_shape"])
    return list(layer["in_shape"])


def vgg19_layers() -> list[dict]:
    """The 43 layers as the newer template creates them, each with its arguments and ``output``."""
    rows: list[dict] = []
    shape = list(INPUT_SHAPE)
    for name in LAYER_NAMES_CNNL:
        kind = _kind(name)
        layer: dict = {"name": name, "kind": kind}
        if kind == "conv":
            layer.update(in_shape=shape, out_channel=CONV_CHANNELS[name][1], **VGG_CONV)
        elif kind == "pool":
            layer.update(in_shape=shape, **VGG_POOL)
        elif kind == "mlp":
            inputs, outputs = FC_SIZES[name]
            layer.update(in_shape=[1, 1, 1, inputs], w_shape=[1, 1, inputs, outputs], out_shape=[1, 1, 1, outputs])
        elif kind == "softmax":
            layer.update(in_shape=[1, 1, CLASSES], axis=1)
        shape = layer_output(layer, shape)
        layer["output"] = shape
        rows.append(layer)
    return rows


def elements(shape) -> int:
    """How many values a shape vector describes."""
    total = 1
    for dim in shape:
        total *= int(dim)
    return total
