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


def layer_kind(name: str) -> str:
    """'conv', 'fc', 'relu', 'pool', 'flatten' or 'softmax' for one of :data:`LAYER_NAMES`."""
    for kind in ("conv", "fc", "relu", "pool", "flatten"):
        if name.startswith(kind):
            return kind
    if name.lower() in ("softmax", "prob"):
        return "softmax"
    raise ValueError(f"{name!r} is not a VGG19 layer name")
