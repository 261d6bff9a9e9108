"""CPU emulator of the course's ``CnmlNet`` (CNML network on a Cambricon DLP).

Numerics (the emulator's stated model of the card, see README.md):
cast_in rounds the input to fp16; conv and mlp quantize their input activation
and their weights per tensor to int8 (position/scale), accumulate the integer
products exactly, dequantize, add the fp16 bias and round to fp16; relu,
max-pool, flatten and softmax work on fp16 values; cast_out returns fp32.
"""
from __future__ import annotations

import math
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np

from . import constants as C
from . import kernels as K
from .errors import CnmlError, CnmlIndexError
from .quant import QuantParam, quantize

Shape = Tuple[int, int, int, int]


def _positive_int(value, what: str, layer: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise CnmlError(f"layer '{layer}': {what} must be a positive integer, got {value!r}")
    return int(value)


def _check_quant_param(qp, what: str, layer: str) -> QuantParam:
    if not (hasattr(qp, "position") and hasattr(qp, "scale")):
        raise CnmlError(
            f"layer '{layer}': {what} must be a pycnml.QuantParam(position, scale), got {qp!r}")
    scale = float(qp.scale)
    if not (math.isfinite(scale) and scale > 0):
        raise CnmlError(f"layer '{layer}': {what} has scale {scale}; it must be a positive number")
    return QuantParam(int(qp.position), scale)


def _fmt(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


class _Layer:
    layer_type = C.CAST
    quantized = False
    # Device storage of activations: fp16 (2 bytes) between layers (devmodel reads these).
    in_elem_bytes = 2
    out_elem_bytes = 2

    def __init__(self, name: str, in_shape: Shape, out_shape: Shape):
        self.name = name
        self.in_shape = in_shape
        self.out_shape = out_shape

    def macs(self) -> int:
        """Multiply-accumulates (or elementwise operations) of one forward."""
        return int(np.prod(self.out_shape))

    def param_bytes(self) -> int:
        """Device bytes of the layer's parameters."""
        return 0

    def param_count(self) -> int:
        """Number of weights plus biases."""
        return 0

    @property
    def compute_kind(self) -> str:
        """The peak the device model runs this layer at: int8 for conv/mlp, fp16 otherwise."""
        return "int8" if self.quantized else "fp16"

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _CastIn(_Layer):
    in_elem_bytes = 4        # reads fp32 from the host side

    def forward(self, x):
        return K.to_fp16(x)


class _CastOut(_Layer):
    out_elem_bytes = 4       # writes fp32 for the host

    def forward(self, x):
        # fp16 -> fp32 is exact; the values are already fp16-representable.
        return np.array(x, dtype=np.float32)


class _ParamLayer(_Layer):
    quantized = True

    def __init__(self, name, in_shape, out_shape, input_qp: QuantParam):
        super().__init__(name, in_shape, out_shape)
        self.input_qp = input_qp
        self.filter_qp: Optional[QuantParam] = None
        self.w_blocks: List[np.ndarray] = []
        self.blocks: List[Tuple[int, int]] = []
        self.bias: Optional[np.ndarray] = None
        self.factor = 0.0

    @property
    def loaded(self) -> bool:
        return self.bias is not None

    def weight_count(self) -> int:
        raise NotImplementedError

    def out_channels(self) -> int:
        return self.out_shape[1]

    def param_bytes(self) -> int:
        return self.weight_count() + 2 * self.out_channels()  # int8 weights, fp16 bias

    def param_count(self) -> int:
        return self.weight_count() + self.out_channels()

    def _check_sizes(self, w: np.ndarray, b: np.ndarray, weight_layout: str):
        if w.size != self.weight_count():
            raise CnmlError(
                f"loadParams on layer '{self.name}': the filter has {w.size} values but the layer "
                f"needs {self.weight_count()} = {weight_layout} (flattened)")
        if b.size != self.out_channels():
            raise CnmlError(
                f"loadParams on layer '{self.name}': the bias has {b.size} values but the layer "
                f"needs {self.out_channels()} (one per output channel)")

    def _finish_load(self, qw: np.ndarray, bias: np.ndarray, filter_qp: QuantParam):
        """qw: (out, K) weight codes; kept as contiguous (out, kb) blocks of the K axis."""
        self.filter_qp = filter_qp
        self.blocks = K.k_blocks(qw.shape[1])
        if len(self.blocks) == 1:
            self.w_blocks = [qw]
        else:
            self.w_blocks = [np.ascontiguousarray(qw[:, a:b]) for a, b in self.blocks]
        self.bias = bias.astype(np.float16).astype(np.float64)
        # 2**(px+pw) / (sx*sw): the step of one unit of the integer accumulator.
        self.factor = math.ldexp(1.0, self.input_qp.position + filter_qp.position) / (
            self.input_qp.scale * filter_qp.scale)


class _Conv(_ParamLayer):
    layer_type = C.CONVOLUTION

    def __init__(self, name, in_shape, out_channel, kernel_size, stride, dilation, pad, qp):
        n, c, h, w = in_shape
        ho, wo = K.conv_out_hw(h, w, kernel_size, stride, pad)
        if ho < 1 or wo < 1:
            raise CnmlError(
                f"createConvLayer '{name}': input {_fmt(in_shape)} with kernel {kernel_size}, "
                f"stride {stride}, pad {pad} gives an empty output ({ho} x {wo})")
        super().__init__(name, in_shape, (n, out_channel, ho, wo), qp)
        self.kernel_size, self.stride, self.dilation, self.pad = kernel_size, stride, dilation, pad

    def weight_count(self):
        return self.out_shape[1] * self.in_shape[1] * self.kernel_size ** 2

    def macs(self):
        return int(np.prod(self.out_shape)) * self.in_shape[1] * self.kernel_size ** 2

    def load(self, w, b, filter_qp):
        cout, cin, k = self.out_shape[1], self.in_shape[1], self.kernel_size
        self._check_sizes(w, b, f"[Cout, Cin, K, K] = {_fmt((cout, cin, k, k))}")
        qw = quantize(w.reshape(cout, cin * k * k), filter_qp)
        self._finish_load(qw, b, filter_qp)

    def forward(self, x):
        qx = quantize(x, self.input_qp)
        return K.conv_forward(qx, self.w_blocks, self.blocks, self.factor, self.bias,
                              self.kernel_size, self.stride, self.pad)


class _Mlp(_ParamLayer):
    layer_type = C.MLP

    def __init__(self, name, in_shape, output_num, qp):
        super().__init__(name, in_shape, (in_shape[0], output_num, 1, 1), qp)
        self.in_features = int(np.prod(in_shape[1:]))

    def weight_count(self):
        return self.out_shape[1] * self.in_features

    def macs(self):
        return self.in_shape[0] * self.out_shape[1] * self.in_features

    def load(self, w, b, filter_qp):
        out = self.out_shape[1]
        self._check_sizes(w, b, f"[out, in] = {_fmt((out, self.in_features))}")
        # The device keeps mlp weights in fp16 before quantizing them.
        qw = quantize(w.reshape(out, self.in_features), filter_qp, fp16_first=True)
        self._finish_load(qw, b, filter_qp)
        # (kb, out) views of the (out, kb) blocks: BLAS reads them transposed, no copy.
        self.w_blocks_t = [wb.T for wb in self.w_blocks]

    def forward(self, x):
        n = x.shape[0]
        # A spatial input is read in the device's NHWC order, like the flatten layer.
        feats = x.reshape(n, -1) if x.shape[2] == x.shape[3] == 1 else K.flatten_hwc(x).reshape(n, -1)
        qx = quantize(feats, self.input_qp)
        y = K.mlp_forward(qx, self.w_blocks_t, self.blocks, self.factor, self.bias)
        return y.reshape(self.out_shape)


class _ReLU(_Layer):
    layer_type = C.RELU

    def forward(self, x):
        return K.relu(x)


class _Pool(_Layer):
    layer_type = C.POOL

    def __init__(self, name, in_shape, kernel_size, stride):
        n, c, h, w = in_shape
        ho, wo = K.pool_out_hw(h, w, kernel_size, stride)
        if ho < 1 or wo < 1:
            raise CnmlError(
                f"createPoolingLayer '{name}': input {_fmt(in_shape)} is smaller than the "
                f"kernel {kernel_size} (output would be {ho} x {wo})")
        super().__init__(name, in_shape, (n, c, ho, wo))
        self.kernel_size, self.stride = kernel_size, stride

    def macs(self):
        return int(np.prod(self.out_shape)) * self.kernel_size ** 2

    def forward(self, x):
        return K.maxpool(x, self.kernel_size, self.stride)


class _Flatten(_Layer):
    layer_type = C.FLATTEN

    def forward(self, x):
        return K.flatten_hwc(x)


class _Softmax(_Layer):
    layer_type = C.SOFTMAX

    def __init__(self, name, in_shape, axis):
        super().__init__(name, in_shape, in_shape)
        self.axis = axis

    def macs(self):
        return 3 * int(np.prod(self.out_shape))

    def forward(self, x):
        return K.softmax(x, self.axis)


class CnmlNet:
    """A network built layer by layer and run on the (emulated) DLP.

    Call order, as on the card: ``setInputShape`` -> ``create*Layer`` ... ->
    ``loadParams`` for every conv/mlp -> ``setInputData`` -> ``forward`` ->
    ``getOutputData``. Data are flat NCHW sequences of floats.
    """

    api_name = "pycnml"      # named in the device model's printout

    def __init__(self, core_num: int = 1, core_version: int = C.CNML_MLU270):
        core_num = _positive_int(core_num, "core_num", "CnmlNet")
        if core_version not in C.CORE_VERSION_NAMES:
            raise CnmlError(
                f"CnmlNet: unknown core_version {core_version!r}; use one of "
                + ", ".join(f"pycnml.{v.split()[0]}" for v in C.CORE_VERSION_NAMES.values()))
        self.core_num = core_num
        self.core_version = core_version
        self._input_shape: Optional[Shape] = None
        self._layers: List[_Layer] = []
        self._cast_in: Optional[_CastIn] = None
        self._cast_out: Optional[_CastOut] = None
        self._input: Optional[np.ndarray] = None
        self._outputs: List[np.ndarray] = []
        self._host_seconds: List[float] = []
        print(f"CnmlNet: core number {core_num}, core version "
              f"{C.CORE_VERSION_NAMES[core_version]} [pycnml emulator on the CPU]")

    # ---- building -------------------------------------------------------------------
    def setInputShape(self, n: int, c: int, h: int, w: int) -> None:
        """Declare the NCHW input shape; inserts the fp32->fp16 ``cast_in`` layer."""
        if self._layers:
            raise CnmlError(
                "setInputShape must be called once, before any create*Layer call "
                f"({len(self._layers)} layers already exist)")
        shape = tuple(_positive_int(v, f"input dimension {d}", "setInputShape")
                      for v, d in zip((n, c, h, w), "nchw"))
        self._input_shape = shape
        self._cast_in = _CastIn("cast_in", shape, shape)
        self._input = None

    def _next_in_shape(self, creator: str, name) -> Shape:
        if not isinstance(name, str):
            raise CnmlError(f"{creator}: the layer name must be a str, got {name!r}")
        if self._input_shape is None:
            raise CnmlError(
                f"{creator}('{name}'): call setInputShape(n, c, h, w) before creating layers")
        if self._cast_out is not None:
            raise CnmlError(
                f"{creator}('{name}'): layers cannot be added after the first loadParams "
                "(the device appends its cast_out layer then); create every layer first")
        return self._layers[-1].out_shape if self._layers else self._input_shape

    def createConvLayer(self, name: str, out_channel: int, kernel_size: int, stride: int,
                        dilation: int, pad: int, QuantParam) -> None:
        """Conv with ``pad`` on all four sides; ``QuantParam`` is the input activation's."""
        in_shape = self._next_in_shape("createConvLayer", name)
        out_channel = _positive_int(out_channel, "out_channel", name)
        kernel_size = _positive_int(kernel_size, "kernel_size", name)
        stride = _positive_int(stride, "stride", name)
        dilation = _positive_int(dilation, "dilation", name)
        if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0:
            raise CnmlError(f"layer '{name}': pad must be an integer >= 0, got {pad!r}")
        if dilation != 1:
            raise NotImplementedError(
                f"createConvLayer('{name}'): dilation {dilation} is not emulated; the vendor's "
                "output-shape formula (H + 2*pad - k)//stride + 1 ignores dilation, so the "
                "emulator cannot reproduce the card's behaviour. VGG19 uses dilation 1.")
        qp = _check_quant_param(QuantParam, "the input QuantParam", name)
        self._layers.append(_Conv(name, in_shape, out_channel, kernel_size, stride, dilation,
                                  int(pad), qp))

    def createMlpLayer(self, name: str, output_num: int, QuantParam) -> None:
        """Fully connected layer, output (N, output_num, 1, 1); ``QuantParam`` is the input's."""
        in_shape = self._next_in_shape("createMlpLayer", name)
        output_num = _positive_int(output_num, "output_num", name)
        qp = _check_quant_param(QuantParam, "the input QuantParam", name)
        self._layers.append(_Mlp(name, in_shape, output_num, qp))

    def createReLuLayer(self, name: str) -> None:
        in_shape = self._next_in_shape("createReLuLayer", name)
        layer = _ReLU(name, in_shape, in_shape)
        self._layers.append(layer)

    def createPoolingLayer(self, name: str, kernel_size: int, stride: int) -> None:
        """Max pooling without padding."""
        in_shape = self._next_in_shape("createPoolingLayer", name)
        kernel_size = _positive_int(kernel_size, "kernel_size", name)
        stride = _positive_int(stride, "stride", name)
        self._layers.append(_Pool(name, in_shape, kernel_size, stride))

    def createFlattenLayer(self, name: str, shape: Sequence[int]) -> None:
        """Flatten to (N, C*H*W, 1, 1) in (h, w, c) order.

        ``shape`` is a 4-element [n, c, h, w] list; the course passes the output
        shape ([1, 25088, 1, 1] for VGG19), the input shape is accepted too. Its
        batch and element count must match the layer's input.
        """
        in_shape = self._next_in_shape("createFlattenLayer", name)
        try:
            dims = [int(v) for v in shape]
        except (TypeError, ValueError):
            raise CnmlError(f"createFlattenLayer('{name}'): shape must be a list [n, c, h, w], "
                            f"got {shape!r}") from None
        count = int(np.prod(in_shape))
        if len(dims) != 4 or dims[0] != in_shape[0] or int(np.prod(dims)) != count:
            raise CnmlError(
                f"createFlattenLayer('{name}'): shape {dims} does not fit the input "
                f"{_fmt(in_shape)}; expected [n, c, h, w] with n = {in_shape[0]} and "
                f"n*c*h*w = {count}, e.g. {_fmt((in_shape[0], count // in_shape[0], 1, 1))}")
        out_shape = (in_shape[0], count // in_shape[0], 1, 1)
        self._layers.append(_Flatten(name, in_shape, out_shape))

    def createSoftmaxLayer(self, name: str, axis: int) -> None:
        """Softmax over NCHW ``axis`` (the labs pass 1, the channels)."""
        in_shape = self._next_in_shape("createSoftmaxLayer", name)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not 0 <= axis <= 3:
            raise CnmlError(f"createSoftmaxLayer('{name}'): axis must be 0, 1, 2 or 3 (an NCHW "
                            f"axis), got {axis!r}")
        self._layers.append(_Softmax(name, in_shape, int(axis)))

    # ---- parameters -------------------------------------------------------------------
    def _layer(self, layer_id, what: str) -> _Layer:
        if isinstance(layer_id, bool) or not isinstance(layer_id, (int, np.integer)):
            raise CnmlError(f"{what}: the layer index must be an int, got {layer_id!r}")
        if not 0 <= layer_id < len(self._layers):
            raise CnmlIndexError(
                f"{what}: layer index {layer_id} is out of range; the net has "
                f"{len(self._layers)} layers (valid indices 0..{len(self._layers) - 1})")
        return self._layers[layer_id]

    def loadParams(self, layer_id: int, filter, bias, QuantParam) -> None:
        """Load a conv/mlp layer's weights; ``QuantParam`` is the filter's.

        conv filter: flat [Cout, Cin, K, K]; mlp filter: flat [out, in]; bias: out values.
        """
        layer = self._layer(layer_id, "loadParams")
        if not isinstance(layer, _ParamLayer):
            raise CnmlError(
                f"loadParams({layer_id}): layer '{layer.name}' is a "
                f"{C.LAYER_TYPE_NAMES[layer.layer_type]} layer without parameters; only "
                "convolution and mlp layers take loadParams (check needToBeQuantized(i))")
        qp = _check_quant_param(QuantParam, "the filter QuantParam", layer.name)
        w = np.asarray(filter, dtype=np.float64).reshape(-1)
        b = np.asarray(bias, dtype=np.float64).reshape(-1)
        layer.load(w, b, qp)
        if self._cast_out is None:
            last = self._layers[-1].out_shape
            self._cast_out = _CastOut("cast_out", last, last)

    # ---- running ----------------------------------------------------------------------
    def setInputData(self, data) -> None:
        """Flat NCHW input (a sequence or array of n*c*h*w floats)."""
        if self._input_shape is None:
            raise CnmlError("setInputData: call setInputShape(n, c, h, w) first")
        arr = np.asarray(data, dtype=np.float64).reshape(-1)
        expected = int(np.prod(self._input_shape))
        if arr.size != expected:
            raise CnmlError(
                f"setInputData: got {arr.size} values but the input shape "
                f"{_fmt(self._input_shape)} needs {expected}; pass the image as a flat NCHW array")
        self._input = arr.reshape(self._input_shape)

    def forward(self) -> None:
        """Run every layer on the data given to setInputData. Returns None."""
        if not self._layers:
            raise CnmlError("forward: the net has no layers")
        missing = [f"{i}:'{l.name}'" for i, l in enumerate(self._layers)
                   if isinstance(l, _ParamLayer) and not l.loaded]
        if missing:
            raise CnmlError("forward: these convolution/mlp layers have no parameters yet: "
                            + ", ".join(missing) + "; call loadParams(index, filter, bias, "
                            "QuantParam) for each of them first")
        if self._input is None:
            raise CnmlError("forward: no input; call setInputData(data) first")
        if self._cast_out is None:  # a net without conv/mlp layers never called loadParams
            last = self._layers[-1].out_shape
            self._cast_out = _CastOut("cast_out", last, last)
        outputs, seconds = [], []
        t0 = time.perf_counter()
        x = self._cast_in.forward(self._input)
        t1 = time.perf_counter()
        seconds.append(t1 - t0)
        for layer in self._layers:
            x = layer.forward(x)
            t2 = time.perf_counter()
            seconds.append(t2 - t1)
            t1 = t2
            outputs.append(x)
        final = self._cast_out.forward(x)
        seconds.append(time.perf_counter() - t1)
        self._outputs = outputs
        self._final = final
        self._host_seconds = seconds

    def getOutputData(self) -> tuple:
        """The last layer's output, flat NCHW, as a tuple of Python floats (fp16 values)."""
        if not self._outputs:
            raise CnmlError("getOutputData: call forward() first")
        return tuple(self._final.reshape(-1).tolist())

    # ---- inspection -------------------------------------------------------------------
    def size(self) -> int:
        """Number of user layers (cast_in / cast_out not counted)."""
        return len(self._layers)

    def getLayerName(self, i: int) -> str:
        return self._layer(i, "getLayerName").name

    def needToBeQuantized(self, i: int) -> bool:
        """True for convolution and mlp layers (the ones that take loadParams)."""
        return self._layer(i, "needToBeQuantized").quantized

    # ---- emulator extras (not in the vendor module) -----------------------------------
    def getLayerType(self, i: int) -> int:
        """Layer type constant (pycnml.CONVOLUTION, ...) of user layer ``i``. Emulator only."""
        return self._layer(i, "getLayerType").layer_type

    def getLayerOutputShape(self, i: int) -> Tuple[int, int, int, int]:
        """NCHW output shape of user layer ``i``. Emulator only."""
        return tuple(self._layer(i, "getLayerOutputShape").out_shape)

    def getLayerOutput(self, i: int) -> np.ndarray:
        """Copy of user layer ``i``'s output from the last forward, NCHW float32. Emulator only."""
        self._layer(i, "getLayerOutput")
        if not self._outputs:
            raise CnmlError("getLayerOutput: call forward() first")
        return np.array(self._outputs[i], dtype=np.float32).reshape(self._layers[i].out_shape)

    def all_layers(self) -> List[_Layer]:
        """cast_in, the user layers and cast_out (when they exist), in execution order."""
        seq = [self._cast_in] if self._cast_in is not None else []
        seq += self._layers
        if self._cast_out is not None:
            seq.append(self._cast_out)
        return seq

    def executed_layers(self) -> List[_Layer]:
        """What a forward runs on the device: :meth:`all_layers`, always ending in cast_out
        (the device appends it at the first loadParams, so a profile taken before that
        counts it too)."""
        seq = self.all_layers()
        if seq and not isinstance(seq[-1], _CastOut):
            seq.append(_CastOut("cast_out", seq[-1].out_shape, seq[-1].out_shape))
        return seq

    def getProfile(self, device=None) -> List[dict]:
        """Per-layer MACs, device bytes, last host time and *modelled* DLP time.

        See ``pycnml.devmodel`` and README.md for the model; ``device`` is a
        ``devmodel.DeviceSpec`` (default: the one matching ``core_version``).
        """
        from . import devmodel
        return devmodel.layer_profile(self, device)

    def modelled_device(self):
        """The ``devmodel.DeviceSpec`` the profile uses by default (from ``core_version``)."""
        from . import devmodel
        return devmodel.device_for(self.core_version)
