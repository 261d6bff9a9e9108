"""Constants of the course's pycnml module (layer types and core versions).

The values match the vendor's enums so that code comparing against them, or
printing them, behaves the same on the emulator and on the card.
"""
from __future__ import annotations

# Layer types (the vendor's ``LayerType`` enum).
CAST = 0
CONVOLUTION = 1
LRN = 2
MLP = 3
NORMALIZE = 4
RELU = 5
SOFTMAX = 6
POOL = 7
FLATTEN = 8

# Core versions (CNML's ``cnmlCoreVersion_t``).
CNML_1H8 = 1
CNML_1H16 = 2
CNML_C10 = 3  # MLU100
CNML_1H8MINI = 4
CNML_MLU270 = 5
CNML_MLU220 = 6

LAYER_TYPE_NAMES = {
    CAST: "CAST",
    CONVOLUTION: "CONVOLUTION",
    LRN: "LRN",
    MLP: "MLP",
    NORMALIZE: "NORMALIZE",
    RELU: "RELU",
    SOFTMAX: "SOFTMAX",
    POOL: "POOL",
    FLATTEN: "FLATTEN",
}

CORE_VERSION_NAMES = {
    CNML_1H8: "CNML_1H8",
    CNML_1H16: "CNML_1H16",
    CNML_C10: "CNML_C10 (MLU100)",
    CNML_1H8MINI: "CNML_1H8MINI",
    CNML_MLU270: "CNML_MLU270",
    CNML_MLU220: "CNML_MLU220",
}

__all__ = [
    "CAST", "CONVOLUTION", "LRN", "MLP", "NORMALIZE", "RELU", "SOFTMAX", "POOL",
    "FLATTEN", "CNML_1H8", "CNML_1H16", "CNML_C10", "CNML_1H8MINI", "CNML_MLU270",
    "CNML_MLU220", "LAYER_TYPE_NAMES", "CORE_VERSION_NAMES",
]
