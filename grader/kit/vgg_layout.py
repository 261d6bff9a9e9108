"""VGG19's layer names and kinds, as the book and MatConvNet spell them.

Kept apart from the float network (``grader.refnet.floatnet``) so that the checks can use the
layout in a student release, which ships no working network code.
"""
from __future__ import annotations

# The book's 44 layer names (table 3.1 / figures 3.6 and 3.10): MatConvNet's 43 entries
# with a flatten layer before fc6, so fc6..fc8 sit one later than in the .mat.
LAYER_NAMES: tuple[str, ...] = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5",
    "flatten", "fc6", "relu6", "fc7", "relu7", "fc8", "Softmax",
)
# The 43 entries of MatConvNet's ``layers`` cell array, in file order (no flatten; 'prob').
MAT_LAYER_NAMES: tuple[str, ...] = tuple("prob" if n == "Softmax" else n for n in LAYER_NAMES if n != "flatten")
# The 19 layers that carry weights (conv/mlp on the DLP), in creation order.
PARAM_LAYERS: tuple[str, ...] = tuple(n for n in LAYER_NAMES if n.startswith(("conv", "fc")))
# (input channels, output channels) of every 3x3 convolution: table 3.1's channel table.
CONV_CHANNELS: dict[str, tuple[int, int]] = {
    "conv1_1": (3, 64), "conv1_2": (64, 64),
    "conv2_1": (64, 128), "conv2_2": (128, 128),
    "conv3_1": (128, 256), "conv3_2": (256, 256), "conv3_3": (256, 256), "conv3_4": (256, 256),
    "conv4_1": (256, 512), "conv4_2": (512, 512), "conv4_3": (512, 512), "conv4_4": (512, 512),
    "conv5_1": (512, 512), "conv5_2": (512, 512), "conv5_3": (512, 512), "conv5_4": (512, 512),
}
# (inputs, outputs) of the fully connected layers; fc6 reads pool5's 7 x 7 x 512.
FC_SIZES: dict[str, tuple[int, int]] = {"fc6": (7 * 7 * 512, 4096), "fc7": (4096, 4096), "fc8": (4096, 1000)}


def layer_kind(name: str) -> str:
    """'conv', 'fc', 'relu', 'pool', 'flatten' or 'softmax' for one of :data:`LAYER_NAMES`."""
    for kind in ("conv", "fc", "relu", "pool", "flatten"):
        if name.startswith(kind):
            return kind
    if name.lower() in ("softmax", "prob"):
        return "softmax"
    raise ValueError(f"{name!r} is not a VGG19 layer name")


def output_shapes(size: int = 224) -> list[tuple[str, str, tuple[int, int, int, int]]]:
    """(name, kind, NCHW output shape) of the 44 layers on a ``[1, 3, size, size]`` input."""
    rows = []
    c, h = 3, size
    for name in LAYER_NAMES:
        kind = layer_kind(name)
        if kind == "conv":
            c = CONV_CHANNELS[name][1]
        elif kind == "pool":
            h //= 2
        elif kind == "flatten":
            c, h = c * h * h, 1
        elif kind == "fc":
            c = FC_SIZES[name][1]
        rows.append((name, kind, (1, c, h, h)))
    return rows
