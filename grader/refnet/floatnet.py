"""A plain float VGG19 forward for the kit's own use (never shown to students).

Two jobs need a trustworthy float network that is independent of any submission:
calibrating the DLP quant parameters of experiment 3.2 (``grader.refnet.calibrate``) and the
3.2 runner's CPU-vs-DLP comparison. Both read a MatConvNet ``.mat`` file with scipy and
run the book's 44-layer VGG19 on ``grader.refnet.fastops`` kernels.

Layouts: activations ``[N, C, H, W]``; conv weights are kept as ``[Cin, K, K, Cout]``
(what ``fastops.conv2d_forward`` takes); fc weights as ``[in, out]`` with ``in`` in the
(h, w, c) order of MatConvNet's fc6, so flatten transposes NCHW -> NHWC first.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io

from grader.refnet import fastops
from grader.kit.images import load_image  # the kit's one preprocessing; callers import it from here too
from grader.kit.vgg_layout import LAYER_NAMES, layer_kind


@dataclass
class FloatVGG19:
    """VGG19 weights from a MatConvNet file and a float forward over them.

    ``conv[name]`` = (weight ``[Cin, 3, 3, Cout]``, bias ``[Cout]``);
    ``fc[name]`` = (weight ``[in, out]``, bias ``[out]``); ``image_mean`` is RGB ``[3]``.
    ``seconds`` holds each layer's host time of the last forward.
    """

    path: Path
    dtype: type
    image_mean: np.ndarray
    conv: dict = field(default_factory=dict)
    fc: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)

    @classmethod
    def from_mat(cls, path: str | Path, dtype=np.float32) -> "FloatVGG19":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"VGG19 weights not found at {path}; run `python -m grader weights status`")
        params = scipy.io.loadmat(str(path))
        mean = np.mean(params["normalization"][0][0][0], axis=(0, 1)).astype(np.float64)
        net = cls(path, dtype, mean)
        layers = params["layers"][0]
        for idx, name in enumerate(LAYER_NAMES):
            kind = layer_kind(name)
            if kind == "conv":
                weight, bias = layers[idx][0][0][0][0]
                # MatConvNet [K, K, Cin, Cout] -> fastops' [Cin, K, K, Cout]
                net.conv[name] = (np.ascontiguousarray(np.transpose(weight, [2, 0, 1, 3]), dtype=dtype),
                                  np.asarray(bias, dtype=dtype).reshape(-1))
            elif kind == "fc":
                weight, bias = layers[idx - 1][0][0][0][0]   # the .mat has no flatten entry
                rows = weight.shape[0] * weight.shape[1] * weight.shape[2]
                net.fc[name] = (np.ascontiguousarray(weight.reshape(rows, weight.shape[3]), dtype=dtype),
                                np.asarray(bias, dtype=dtype).reshape(-1))
        del params
        return net

    def dlp_weight(self, name: str) -> np.ndarray:
        """The weights of ``name`` flat in the DLP's layout (conv ``[Cout, Cin, K, K]``, fc ``[out, in]``)."""
        if name in self.conv:
            return np.transpose(self.conv[name][0], [3, 0, 1, 2]).reshape(-1)
        return np.transpose(self.fc[name][0], [1, 0]).reshape(-1)

    def forward(self, x: np.ndarray, keep: bool = True, on_input=None) -> dict[str, np.ndarray]:
        """Run all 44 layers on ``x`` ``[N, 3, 224, 224]``.

        Returns ``{layer name: output}`` in layer order (only ``'Softmax'`` when ``keep``
        is false). ``on_input(name, array)`` is called with the input of every conv/fc
        layer (the tensor the DLP quantizes with that layer's input QuantParam).
        """
        current = np.asarray(x, dtype=self.dtype)
        outputs: dict[str, np.ndarray] = {}
        self.seconds = {}
        for name in LAYER_NAMES:
            kind = layer_kind(name)
            if on_input is not None and kind in ("conv", "fc"):
                on_input(name, current)
            start = time.perf_counter()
            if kind == "conv":
                weight, bias = self.conv[name]
                current = np.ascontiguousarray(fastops.conv2d_forward(current, weight, bias, 1, 1))
            elif kind == "relu":
                current = np.maximum(current, 0)
            elif kind == "pool":
                current = fastops.maxpool2d_forward(current, 2, 2)
            elif kind == "flatten":
                # fc6 was trained on MatConvNet's H x W x C order
                current = np.transpose(current, [0, 2, 3, 1]).reshape(current.shape[0], -1)
            elif kind == "fc":
                weight, bias = self.fc[name]
                current = current @ weight + bias
            else:
                shifted = current - np.max(current, axis=1, keepdims=True)
                e = np.exp(shifted)
                current = e / np.sum(e, axis=1, keepdims=True)
            self.seconds[name] = time.perf_counter() - start
            if keep:
                outputs[name] = current
        if not keep:
            outputs["Softmax"] = current
        return outputs

    def predict(self, image: str | Path) -> np.ndarray:
        """Softmax ``[1000]`` of one image file."""
        return self.forward(load_image(image, self.image_mean), keep=False)["Softmax"].reshape(-1)
