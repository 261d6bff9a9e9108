"""CPU emulator of the newer edition's ``CnnlNet`` (CNNL on a Cambricon MLU, float32, NHWC).

Call order, as on the card: ``setInputShape`` -> ``create*Layer`` (each with the shape
vector of its input, NCHW order) -> ``loadParams`` for every conv/mlp -> ``setInputData``
(flat NHWC) -> ``forward`` -> ``getOutputData`` (a tuple). Arguments go through SWIG's
conversions (``pycnnl.swigtypes``); every behaviour that is a choice is in
``pycnnl.quirks``.
"""
from __future__ import annotations

import time
from typing import List, Optional, Tuple

import numpy as np

from pycnml import constants as C

from . import layers as L
from . import quirks as Q
from . import swigtypes as S
from .errors import CnnlError, CnnlIndexError

_SET_INPUT_PROTOS = ("CnnlNet::setInputShape(int,int,int,int)", "CnnlNet::setInputShape(int,int)")
_SET_OUTPUT_PROTOS = ("CnnlNet::setOutputShape(int,int,int,int)",
                      "CnnlNet::setOutputShape(int,int,int)", "CnnlNet::setOutputShape(int,int)")


def _overloaded_ints(args, counts, function, protos) -> Tuple[int, ...]:
    """SWIG's dispatch of an overloaded function of ints: NotImplementedError if none fits."""
    if len(args) not in counts or not all(isinstance(a, int) and Q.INT_MIN <= a <= Q.INT_MAX
                                          for a in args):
        raise S.overload_error(function, protos)
    return tuple(int(a) for a in args)


class CnnlNet:
    """A network built layer by layer and run on the (emulated) MLU."""

    api_name = "pycnnl"      # named in the device model's printout

    def __init__(self):
        self._input_shape: Optional[Tuple[int, ...]] = None
        self._shape: Optional[Tuple[int, ...]] = None   # the running output shape
        self._layers: List[L.Layer] = []
        self._input: Optional[np.ndarray] = None
        self._outputs: List[np.ndarray] = []
        self._final: Optional[np.ndarray] = None
        self._host_seconds: List[float] = []
        self._declared_output: Optional[Tuple[int, ...]] = None
        print(Q.CONSTRUCTOR_BANNER)

    # ---- shapes -------------------------------------------------------------------------
    def setInputShape(self, *args) -> None:
        """``(n, c, h, w)`` or ``(d1, d2)``: the shape of the data setInputData will give."""
        dims = _overloaded_ints(args, (4, 2), "CnnlNet_setInputShape", _SET_INPUT_PROTOS)
        if self._layers:
            raise CnnlError(f"setInputShape{dims}: call it once, before the first create*Layer "
                            f"({len(self._layers)} layers already exist)")
        if any(d < 1 for d in dims):
            raise CnnlError(f"setInputShape{dims}: every dimension must be a positive integer")
        self._input_shape = self._shape = dims
        self._input = None

    def setOutputShape(self, *args) -> None:
        """Exported and unused by the labs: accepted (4, 3 or 2 ints) and recorded, no effect."""
        self._declared_output = _overloaded_ints(args, (4, 3, 2), "CnnlNet_setOutputShape",
                                                 _SET_OUTPUT_PROTOS)

    def _previous(self, creator: str, name: str) -> Tuple[Tuple[int, ...], str]:
        """The running shape and who made it, or CnnlError before setInputShape."""
        if self._shape is None:
            raise CnnlError(f"{creator}('{name}'): call setInputShape(n, c, h, w) before "
                            "creating layers")
        owner = (f"the output of '{self._layers[-1].name}'" if self._layers
                 else "the input shape set by setInputShape")
        return self._shape, owner

    def _shape_vector(self, value, creator: str, name: str, argno: int, what: str,
                      lengths: Tuple[int, ...]) -> Tuple[int, ...]:
        dims = S.as_int_list(value, f"CnnlNet_{creator}", argno)
        if len(dims) not in lengths:
            want = " or ".join(str(n) for n in lengths)
            raise CnnlError(f"{creator}('{name}'): {what} must have {want} entries, got "
                            f"{len(dims)}: {L.fmt(dims)} (an IntVector({lengths[0]}) with every "
                            "entry set)")
        if any(d < 1 for d in dims):
            raise CnnlError(f"{creator}('{name}'): {what} {L.fmt(dims)} has an entry < 1; every "
                            "entry must be set to a positive size")
        return tuple(dims)

    def _match(self, creator: str, name: str, in_shape, exact: bool) -> None:
        prev, owner = self._previous(creator, name)
        same = in_shape == prev if exact and len(prev) == 4 else L.count(in_shape) == L.count(prev)
        if not same:
            rule = "" if exact and len(prev) == 4 else (
                f" (it must hold as many values: {L.count(in_shape)} != {L.count(prev)})")
            raise CnnlError(f"{creator}('{name}'): in_shape {L.fmt(in_shape)} does not match "
                            f"{owner} {L.fmt(prev)}{rule}")

    def _add(self, layer: L.Layer) -> None:
        self._layers.append(layer)
        self._shape = layer.out_shape
        self._outputs, self._final = [], None

    # ---- building -----------------------------------------------------------------------
    def createConvLayer(self, layer_name, input_shape, out_channel, kernel_size, stride,
                        dilation, pad) -> None:
        """Conv over ``input_shape`` [N,C,H,W], pad on all sides, bias on; output
        [N, out_channel, (H+2*pad-k)//stride+1, (W+2*pad-k)//stride+1]."""
        m = "CnnlNet_createConvLayer"
        name = S.as_string(layer_name, m, 2)
        in_shape = self._shape_vector(input_shape, "createConvLayer", name, 3, "in_shape", (4,))
        out_channel, kernel_size, stride, dilation, pad = (
            S.as_int(v, m, i) for i, v in enumerate((out_channel, kernel_size, stride, dilation,
                                                      pad), start=4))
        for what, v in (("out_channel", out_channel), ("kernel_size", kernel_size),
                        ("stride", stride), ("dilation", dilation)):
            if v < 1:
                raise CnnlError(f"createConvLayer('{name}'): {what} must be >= 1, got {v}")
        if pad < 0:
            raise CnnlError(f"createConvLayer('{name}'): pad must be >= 0, got {pad}")
        if dilation not in Q.CONV_DILATIONS:
            raise NotImplementedError(
                f"createConvLayer('{name}'): dilation {dilation} is not emulated; the course's "
                "net.cc computes the output shape as (H + 2*pad - k)//stride + 1, ignoring "
                "dilation, while the CNNL convolution applies it, so the card's shapes disagree "
                "with themselves. VGG19 uses dilation 1 (argument order: stride, dilation, pad).")
        self._match("createConvLayer", name, in_shape, exact=True)
        self._add(L.Conv(name, in_shape, out_channel, kernel_size, stride, pad))

    def createReLuLayer(self, layer_name) -> None:
        """ReLU over the previous layer's output shape."""
        name = S.as_string(layer_name, "CnnlNet_createReLuLayer", 2)
        prev, _ = self._previous("createReLuLayer", name)
        self._add(L.ReLU(name, prev, prev))

    def createPoolingLayer(self, layer_name, input_shape, kernel_size, stride) -> None:
        """Max pooling over ``input_shape`` [N,C,H,W], no padding, floor((H-k)/stride)+1."""
        m = "CnnlNet_createPoolingLayer"
        name = S.as_string(layer_name, m, 2)
        in_shape = self._shape_vector(input_shape, "createPoolingLayer", name, 3, "in_shape", (4,))
        kernel_size, stride = S.as_int(kernel_size, m, 4), S.as_int(stride, m, 5)
        if kernel_size < 1 or stride < 1:
            raise CnnlError(f"createPoolingLayer('{name}'): kernel_size and stride must be >= 1, "
                            f"got {kernel_size} and {stride}")
        self._match("createPoolingLayer", name, in_shape, exact=True)
        self._add(L.Pool(name, in_shape, kernel_size, stride))

    def createMlpLayer(self, layer_name, input_shape, weight_shape, output_shape) -> None:
        """x @ W + bias: in [..,M,K], weight [..,K,N] (weight_shape[0] = batch), out [..,M,N]."""
        name = S.as_string(layer_name, "CnnlNet_createMlpLayer", 2)
        dims = Q.MLP_DIMS
        in_shape = self._shape_vector(input_shape, "createMlpLayer", name, 3, "in_shape", dims)
        w_shape = self._shape_vector(weight_shape, "createMlpLayer", name, 4, "weight_shape", dims)
        out_shape = self._shape_vector(output_shape, "createMlpLayer", name, 5, "out_shape", dims)
        L.check_mlp_shapes(name, in_shape, w_shape, out_shape)
        self._match("createMlpLayer", name, in_shape, exact=False)
        self._add(L.Mlp(name, in_shape, w_shape, out_shape))

    def createSoftmaxLayer(self, layer_name, input_shape, axis) -> None:
        """Softmax over the last dim of ``input_shape`` (2 or 3 entries); ``axis`` is ignored."""
        m = "CnnlNet_createSoftmaxLayer"
        name = S.as_string(layer_name, m, 2)
        in_shape = self._shape_vector(input_shape, "createSoftmaxLayer", name, 3, "in_shape",
                                      Q.SOFTMAX_IN_DIMS)
        axis = S.as_int(axis, m, 4)
        self._match("createSoftmaxLayer", name, in_shape, exact=False)
        self._add(L.Softmax(name, in_shape, axis))

    # ---- parameters and data --------------------------------------------------------------
    def _layer(self, layer_id, method: str) -> L.Layer:
        i = S.as_int(layer_id, f"CnnlNet_{method}", 2)
        if not 0 <= i < len(self._layers):
            raise CnnlIndexError(
                f"{method}({i}): layer index out of range; the net has {len(self._layers)} layers"
                + (f" (valid indices 0..{len(self._layers) - 1})" if self._layers else ""))
        return self._layers[i]

    def loadParams(self, layer_id, filter_data, bias_data) -> None:
        """Weights of a conv (flat [Cout,kh,kw,Cin]) or mlp (flat [in,out]) layer, and its bias."""
        layer = self._layer(layer_id, "loadParams")
        where = f"loadParams({layer_id}) on layer '{layer.name}'"
        w = S.as_float_array(filter_data, "CnnlNet_loadParams", 3)
        b = S.as_float_array(bias_data, "CnnlNet_loadParams", 4)
        if not isinstance(layer, (L.Conv, L.Mlp)):
            raise CnnlError(f"{where}: it is a {C.LAYER_TYPE_NAMES[layer.layer_type]} layer; only "
                            "convolution and mlp layers take parameters (check "
                            "needToBeQuantized(i)); the real module exits here")
        layer.load(w, b, where)

    def setInputData(self, data) -> None:
        """The input, flat in NHWC order (H, W, C), as float64 or Python numbers."""
        arr = S.as_float_array(data, "CnnlNet_setInputData", 2)
        if self._input_shape is None:
            raise CnnlError("setInputData: call setInputShape(n, c, h, w) first")
        expected = L.count(self._input_shape)
        if arr.size != expected:
            raise CnnlError(
                f"setInputData: got {arr.size} values but setInputShape{self._input_shape} needs "
                f"{expected}; pass the image as one flat array in NHWC order "
                "(image.reshape(1, H, W, C).flatten())")
        self._input = arr

    # ---- running ----------------------------------------------------------------------------
    def forward(self) -> None:
        """Run every layer on the data given to setInputData. Returns None."""
        if not self._layers:
            raise CnnlError("forward: the net has no layers")
        missing = [f"{i}:'{l.name}'" for i, l in enumerate(self._layers) if not l.loaded]
        if missing:
            raise CnnlError("forward: these convolution/mlp layers have no parameters yet: "
                            + ", ".join(missing) + "; call loadParams(index, filter, bias) for "
                            "each of them first (the real module exits here)")
        if self._input is None:
            raise CnnlError("forward: no input; call setInputData(data) first")
        x = self._input
        outputs, seconds = [], []
        t0 = time.perf_counter()
        for layer in self._layers:
            x = layer.forward(x)
            t1 = time.perf_counter()
            seconds.append(t1 - t0)
            t0 = t1
            outputs.append(x)
        self._outputs, self._host_seconds = outputs, seconds
        self._final = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)

    def getOutputData(self) -> tuple:
        """The last layer's output in device order, as a tuple of Python floats."""
        if self._final is None:
            raise CnnlError("getOutputData: call forward() first (the real module would return "
                            "an empty tuple)")
        return tuple(self._final.tolist())

    # ---- inspection -------------------------------------------------------------------------
    def size(self) -> int:
        return len(self._layers)

    def getLayerName(self, layer_id) -> str:
        return self._layer(layer_id, "getLayerName").name

    def needToBeQuantized(self, layer_id) -> bool:
        """True for convolution and mlp layers (the ones that take loadParams)."""
        return self._layer(layer_id, "needToBeQuantized").quantized

    # ---- emulator extras (not in the vendor module) -----------------------------------------
    def getLayerType(self, layer_id) -> int:
        """LayerType constant (pycnnl.CONVOLUTION, ...) of layer ``layer_id``. Emulator only."""
        return self._layer(layer_id, "getLayerType").layer_type

    def getLayerInputShape(self, layer_id) -> Tuple[int, ...]:
        """The layer's input shape vector, as given (NCHW order for conv/pool). Emulator only."""
        return self._layer(layer_id, "getLayerInputShape").in_shape

    def getLayerOutputShape(self, layer_id) -> Tuple[int, ...]:
        """The layer's output shape vector (NCHW order for conv/pool). Emulator only."""
        return self._layer(layer_id, "getLayerOutputShape").out_shape

    def getLayerOutput(self, layer_id) -> np.ndarray:
        """Copy of the layer's output from the last forward, float32, as the device holds it:
        (N, H, W, C) after conv/pool (and relu on them), the shape vector's dims after mlp and
        softmax. Emulator only."""
        layer = self._layer(layer_id, "getLayerOutput")
        if not self._outputs:
            raise CnnlError("getLayerOutput: call forward() first")
        return np.array(self._outputs[self._layers.index(layer)], dtype=np.float32)

    def executed_layers(self) -> List[L.Layer]:
        """What a forward runs on the device: every layer (CNNL needs no cast layers)."""
        return list(self._layers)

    def modelled_device(self):
        """The ``pycnml.devmodel.DeviceSpec`` the profile uses by default (one MLU370 chip)."""
        from pycnml import devmodel
        return devmodel.MLU370

    def getProfile(self, device=None) -> List[dict]:
        """Per-layer MACs, device bytes, last host time and *modelled* MLU time (see
        ``pycnml.devmodel``; ``device`` defaults to :meth:`modelled_device`)."""
        from pycnml import devmodel
        return devmodel.layer_profile(self, device)
