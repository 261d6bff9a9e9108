"""The layers of the emulated CnnlNet: shapes, parameters and a float32 forward on device memory.

A layer's ``forward`` takes the previous layer's output as the device holds it (a float32
array whose C order is the device's memory order) and reads it the way its own
descriptors do: conv and pool as NHWC ``(N, H, W, C)`` from an NCHW shape vector, mlp and
softmax with the shape vector's dims as given, relu elementwise. The arithmetic is the
shared emulator core's (``pycnml.kernels``); the device model (``pycnml.devmodel``) reads
``compute_kind``, the byte widths, ``macs()`` and ``param_bytes()``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from pycnml import constants as C
from pycnml import kernels as K

from . import quirks as Q
from .errors import CnnlError

Shape = Tuple[int, ...]


def fmt(shape) -> str:
    """[1,64,224,224]: a shape as the messages print it."""
    return "[" + ",".join(str(int(s)) for s in shape) + "]"


def count(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


class Layer:
    """Base: elementwise bookkeeping, no parameters."""

    layer_type = C.CAST
    quantized = False            # True for conv and mlp: needToBeQuantized, loadParams
    compute_kind = "fp32"
    in_elem_bytes = 4
    out_elem_bytes = 4

    def __init__(self, name: str, in_shape: Shape, out_shape: Shape):
        self.name = name
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)

    @property
    def loaded(self) -> bool:
        return True

    def macs(self) -> int:
        """Multiply-adds (conv, mlp) or elements touched (the others) of one forward."""
        return count(self.out_shape)

    def param_bytes(self) -> int:
        return 0

    def param_count(self) -> int:
        return 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Conv(Layer):
    layer_type = C.CONVOLUTION
    quantized = True

    def __init__(self, name, in_shape, out_channel, kernel_size, stride, pad):
        n, c, h, w = in_shape
        ho, wo = K.conv_out_hw(h, w, kernel_size, stride, pad)
        if ho < 1 or wo < 1:
            raise CnnlError(
                f"createConvLayer('{name}'): in_shape {fmt(in_shape)} with kernel {kernel_size}, "
                f"stride {stride}, pad {pad} gives an empty output ({ho} x {wo})")
        super().__init__(name, in_shape, (n, out_channel, ho, wo))
        self.k, self.stride, self.pad = kernel_size, stride, pad
        self.w2d: Optional[np.ndarray] = None
        self.bias: Optional[np.ndarray] = None

    @property
    def loaded(self) -> bool:
        return self.w2d is not None

    def weight_count(self) -> int:
        return self.out_shape[1] * self.k * self.k * self.in_shape[1]

    def macs(self):
        return count(self.out_shape) * self.in_shape[1] * self.k * self.k

    def param_count(self):
        return self.weight_count() + self.out_shape[1]

    def param_bytes(self):
        return 4 * self.param_count()

    def load(self, w: np.ndarray, b: np.ndarray, where: str) -> None:
        cout, cin, k = self.out_shape[1], self.in_shape[1], self.k
        if w.size != self.weight_count():
            raise CnnlError(
                f"{where}: the filter has {w.size} values but the layer needs "
                f"[Cout,kh,kw,Cin] = {fmt((cout, k, k, cin))} = {self.weight_count()} values "
                "(flattened; matconvnet's [kh,kw,Cin,Cout] transposed (3,0,1,2))")
        if b.size != cout:
            raise CnnlError(f"{where}: the bias has {b.size} values but the layer needs "
                            f"Cout = {cout} (one per output channel)")
        self.w2d = w.reshape(cout, k * k * cin)
        self.bias = b

    def forward(self, x):
        n, c, h, w = self.in_shape
        return K.conv_float_nhwc(x.reshape(n, h, w, c), self.w2d, self.bias, self.k, self.stride,
                                 self.pad)


class ReLU(Layer):
    layer_type = C.RELU

    def forward(self, x):
        return K.relu(x)


class Pool(Layer):
    layer_type = C.POOL

    def __init__(self, name, in_shape, kernel_size, stride):
        n, c, h, w = in_shape
        ho, wo = K.pool_out_hw(h, w, kernel_size, stride)
        if ho < 1 or wo < 1:
            raise CnnlError(
                f"createPoolingLayer('{name}'): in_shape {fmt(in_shape)} is smaller than the "
                f"kernel {kernel_size} (the output would be {ho} x {wo})")
        super().__init__(name, in_shape, (n, c, ho, wo))
        self.k, self.stride = kernel_size, stride

    def macs(self):
        return count(self.out_shape) * self.k * self.k

    def forward(self, x):
        n, c, h, w = self.in_shape
        return K.maxpool(x.reshape(n, h, w, c), self.k, self.stride, layout="NHWC")


class Mlp(Layer):
    layer_type = C.MLP
    quantized = True

    def __init__(self, name, in_shape, w_shape, out_shape):
        super().__init__(name, in_shape, out_shape)
        self.w_shape = tuple(w_shape)
        # The device copies the given weights in_shape[0] times (quirks: mlp_batch_copies).
        self.batch = in_shape[0] if len(in_shape) > 2 else 1
        self.w: Optional[np.ndarray] = None
        self.bias: Optional[np.ndarray] = None

    @property
    def loaded(self) -> bool:
        return self.w is not None

    def weight_count(self) -> int:
        """Values loadParams takes: one batch's weights."""
        return count(self.w_shape) // self.batch

    def bias_count(self) -> int:
        return self.out_shape[-1]

    def macs(self):
        return count(self.out_shape) * self.in_shape[-1]

    def param_count(self):
        return self.weight_count() + self.bias_count()

    def param_bytes(self):
        return 4 * (count(self.w_shape) + self.bias_count())   # the device holds every copy

    def load(self, w: np.ndarray, b: np.ndarray, where: str) -> None:
        k, n_out = self.w_shape[-2], self.w_shape[-1]
        if w.size != self.weight_count():
            per = (f"weight_shape {fmt(self.w_shape)} / batch {self.batch}" if self.batch > 1
                   else f"weight_shape {fmt(self.w_shape)}")
            raise CnnlError(
                f"{where}: the filter has {w.size} values but the layer needs {per} = "
                f"{self.weight_count()} values, [in,out] = {fmt((k, n_out))} row-major "
                "(matconvnet's [h,w,Cin,Cout] reshaped to [h*w*Cin, Cout], no transpose)")
        if b.size != self.bias_count():
            raise CnnlError(f"{where}: the bias has {b.size} values but the layer needs "
                            f"out_shape[-1] = {self.bias_count()}")
        one = w.reshape(self.w_shape[1:] if self.batch > 1 else self.w_shape)
        self.w = np.broadcast_to(one, self.w_shape) if self.batch > 1 else one
        self.bias = b

    def forward(self, x):
        y = K.batch_matmul_bias(x.reshape(self.in_shape), self.w, self.bias)
        return y.reshape(self.out_shape)


class Softmax(Layer):
    layer_type = C.SOFTMAX

    def __init__(self, name, in_shape, axis):
        super().__init__(name, in_shape, in_shape)
        self.axis = axis           # kept for inspection; ignored (quirks: softmax_axis_ignored)

    def macs(self):
        return 3 * count(self.out_shape)

    def forward(self, x):
        return K.softmax_f32(x.reshape(self.in_shape), axis=Q.SOFTMAX_AXIS)


def check_mlp_shapes(name: str, in_shape: Shape, w_shape: Shape, out_shape: Shape) -> None:
    """CnnlError unless (in, weight, out) describe x @ W with the same batch dims."""
    shapes = f"in_shape {fmt(in_shape)}, weight_shape {fmt(w_shape)}, out_shape {fmt(out_shape)}"
    where = f"createMlpLayer('{name}')"
    if not len(in_shape) == len(w_shape) == len(out_shape) or len(in_shape) not in Q.MLP_DIMS:
        raise CnnlError(f"{where}: in_shape, weight_shape and out_shape must all have 2, 3 or 4 "
                        f"entries (the labs use 4: [1,1,1,K], [1,1,K,N], [1,1,1,N]); got {shapes}")
    if in_shape[:-2] != w_shape[:-2] or in_shape[:-2] != out_shape[:-2]:
        raise CnnlError(f"{where}: the leading (batch) entries must agree, weight_shape[0] being "
                        f"the batch: got {shapes}")
    if in_shape[-1] != w_shape[-2] or out_shape[-2] != in_shape[-2] or out_shape[-1] != w_shape[-1]:
        raise CnnlError(f"{where}: x @ W needs in_shape[-1] == weight_shape[-2], "
                        f"out_shape[-2] == in_shape[-2] and out_shape[-1] == weight_shape[-1]; "
                        f"got {shapes}")
    if len(in_shape) == 2 and in_shape[0] > 1:
        raise CnnlError(f"{where}: with 2-entry shapes the device copies the weights in_shape[0] "
                        f"= {in_shape[0]} times into a {fmt(w_shape)} buffer (it overflows); use "
                        f"4 entries [B,1,1,K], [B,1,K,N], [B,1,1,N] for a batch; got {shapes}")
