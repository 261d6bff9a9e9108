"""Vectorized numpy kernels of the emulator.

Activations travel between layers as float32 arrays whose values are all
exactly representable in fp16 (the device's storage type). Operations whose
result is exact in fp16 anyway (ReLU, max-pool, flatten) run on those float32
arrays directly; everything that rounds goes through ``to_fp16``.

Exact integer accumulation: the quantized codes are integers with |q| <= 128,
so one product is at most 2**14. A float32 GEMM over a block of at most
``MAX_EXACT_K`` = 1024 terms keeps every partial sum an integer of magnitude
<= 2**24, which float32 represents exactly whatever order (or FMA) the BLAS
uses. Blocks are summed in float64 (<= 25 blocks for VGG19's fc6, far below
2**53). This is as fast as a plain float32 GEMM and bit-exact.

The module is the emulator core both DLP APIs share: ``pycnml`` (int8/fp16,
NCHW on the host side) uses the quantized kernels, ``pycnnl`` (float32, NHWC
device tensors) the float ones (``conv_float_nhwc``, ``batch_matmul_bias``,
``softmax_f32``); ``relu``, ``maxpool`` and the shape formulas serve both.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

MAX_EXACT_K = 1024  # 1024 * 128 * 128 == 2**24


def to_fp16(x: np.ndarray) -> np.ndarray:
    """Round to fp16 (round-to-nearest-even, overflow to +-inf) and return float32."""
    with np.errstate(over="ignore"):  # overflow to inf is the modelled fp16 behaviour
        return np.asarray(x).astype(np.float16).astype(np.float32)


def k_blocks(k: int) -> List[Tuple[int, int]]:
    """Split range(k) into the fewest near-equal blocks of at most MAX_EXACT_K."""
    n = max(1, math.ceil(k / MAX_EXACT_K))
    edges = [round(i * k / n) for i in range(n + 1)]
    return [(edges[i], edges[i + 1]) for i in range(n)]


def conv_out_hw(h: int, w: int, k: int, stride: int, pad: int) -> Tuple[int, int]:
    """Output height and width of a conv: (H + 2*pad - k)//stride + 1."""
    return (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1


def pool_out_hw(h: int, w: int, k: int, stride: int) -> Tuple[int, int]:
    """Output height and width of an unpadded pool: floor((H - k)/stride) + 1."""
    return (h - k) // stride + 1, (w - k) // stride + 1


def im2col(x: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """x: (N, C, H, W) -> columns (C*k*k, N*Ho*Wo), rows ordered (c, kh, kw).

    The row order matches a filter stored as [Cout, Cin, K, K] reshaped to
    (Cout, Cin*K*K), so the GEMM needs no weight transpose at run time.
    """
    n, c, h, w = x.shape
    if pad:
        xp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=x.dtype)
        xp[:, :, pad:pad + h, pad:pad + w] = x
    else:
        xp = np.ascontiguousarray(x)
    ho, wo = conv_out_hw(h, w, k, stride, pad)
    sn, sc, sh, sw = xp.strides
    windows = as_strided(
        xp, shape=(c, k, k, n, ho, wo),
        strides=(sc, sh, sw, sn, sh * stride, sw * stride), writeable=False)
    return windows.reshape(c * k * k, n * ho * wo)


def exact_int_gemm(a_blocks: Sequence[np.ndarray], b: np.ndarray,
                   blocks: Sequence[Tuple[int, int]], a_rows_are_k: bool) -> np.ndarray:
    """Exact product of integer-valued float32 matrices, returned in float64.

    a_blocks[i] is A restricted to K-range blocks[i], either (M, kb) when
    ``a_rows_are_k`` is False (result A @ B, B: (K, P)) or (kb, M) when True
    (result B @ A, B: (P, K)). Each block product is exact in float32 (see the
    module docstring); block results are summed in float64.
    """
    acc = None
    for (k0, k1), ab in zip(blocks, a_blocks):
        if a_rows_are_k:
            part = b[:, k0:k1] @ ab
        else:
            part = ab @ b[k0:k1]
        if acc is None:
            acc = part.astype(np.float64)
        else:
            acc += part
    return acc


def dequantize_acc(acc: np.ndarray, factor: float, bias: np.ndarray, bias_axis: int) -> np.ndarray:
    """fp16(acc * factor + bias) as float32; acc float64, bias broadcast along ``bias_axis``."""
    acc *= factor
    shape = [1] * acc.ndim
    shape[bias_axis] = -1
    acc += bias.reshape(shape)
    return to_fp16(acc)


def conv_forward(qx: np.ndarray, w_blocks: Sequence[np.ndarray], blocks, factor: float,
                 bias: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """Quantized conv. qx: (N, Cin, H, W) int codes in float32; returns (N, Cout, Ho, Wo) fp16 values."""
    n, _, h, w = qx.shape
    ho, wo = conv_out_hw(h, w, k, stride, pad)
    cols = im2col(qx, k, stride, pad)                 # (Cin*k*k, N*Ho*Wo)
    acc = exact_int_gemm(w_blocks, cols, blocks, a_rows_are_k=False)  # (Cout, N*Ho*Wo)
    del cols
    y = dequantize_acc(acc, factor, bias, bias_axis=0)
    cout = y.shape[0]
    y = y.reshape(cout, n, ho, wo)
    return y[None, :, 0] if n == 1 else np.ascontiguousarray(y.transpose(1, 0, 2, 3))


def mlp_forward(qx: np.ndarray, w_blocks: Sequence[np.ndarray], blocks, factor: float,
                bias: np.ndarray) -> np.ndarray:
    """Quantized fully connected layer. qx: (N, F) codes; w_blocks[i]: (kb, out) (may be a
    transposed view). Returns (N, out)."""
    acc = exact_int_gemm(w_blocks, qx, blocks, a_rows_are_k=True)     # (N, out)
    return dequantize_acc(acc, factor, bias, bias_axis=1)


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0), elementwise; exact in fp16."""
    return np.maximum(x, np.float32(0))


def maxpool(x: np.ndarray, k: int, stride: int, layout: str = "NCHW") -> np.ndarray:
    """Unpadded max pooling; exact in any float type.

    layout "NCHW": x (N, C, H, W) -> (N, C, Ho, Wo); "NHWC": x (N, H, W, C) -> (N, Ho, Wo, C).
    """
    if layout == "NCHW":
        h, w = x.shape[2], x.shape[3]
    elif layout == "NHWC":
        h, w = x.shape[1], x.shape[2]
    else:
        raise ValueError(f"maxpool: layout must be 'NCHW' or 'NHWC', got {layout!r}")
    ho, wo = pool_out_hw(h, w, k, stride)
    # Elementwise maxima of k*k strided views beat a reduction over window axes.
    out = None
    for i in range(k):
        for j in range(k):
            rows = slice(i, i + stride * (ho - 1) + 1, stride)
            cols = slice(j, j + stride * (wo - 1) + 1, stride)
            win = x[:, :, rows, cols] if layout == "NCHW" else x[:, rows, cols, :]
            out = win.copy() if out is None else np.maximum(out, win, out=out)
    return out


def flatten_hwc(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, H*W*C, 1, 1), features in (h, w, c) order as the NHWC device stores them."""
    n = x.shape[0]
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(n, -1, 1, 1)


def softmax_f32(x: np.ndarray, axis: int) -> np.ndarray:
    """Softmax along ``axis`` in the input's precision (float32 for float32 x), max subtracted first."""
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    e /= np.sum(e, axis=axis, keepdims=True)
    return e


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """Softmax along ``axis``, computed in float32 and rounded once to fp16."""
    return to_fp16(softmax_f32(x, axis))


# ---- float32 kernels (pycnnl: CNNL runs every layer in float32 on NHWC tensors) ----------

def im2col_nhwc(x: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """x: (N, H, W, C) -> rows (N*Ho*Wo, k*k*C), columns ordered (kh, kw, c).

    The column order matches a filter stored as [Cout, kh, kw, Cin] reshaped to
    (Cout, kh*kw*Cin), and the rows come out in NHWC order, so neither the
    weights nor the output need a transpose.
    """
    n, h, w, c = x.shape
    if pad:
        xp = np.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=x.dtype)
        xp[:, pad:pad + h, pad:pad + w, :] = x
    else:
        xp = np.ascontiguousarray(x)
    ho, wo = conv_out_hw(h, w, k, stride, pad)
    sn, sh, sw, sc = xp.strides
    windows = as_strided(
        xp, shape=(n, ho, wo, k, k, c),
        strides=(sn, sh * stride, sw * stride, sh, sw, sc), writeable=False)
    return windows.reshape(n * ho * wo, k * k * c)


def conv_float_nhwc(x: np.ndarray, w2d: np.ndarray, bias: np.ndarray, k: int, stride: int,
                    pad: int) -> np.ndarray:
    """Float convolution on NHWC tensors, in x's precision.

    x: (N, H, W, Cin); w2d: (Cout, k*k*Cin), a [Cout, kh, kw, Cin] filter reshaped;
    bias: (Cout,). Returns (N, Ho, Wo, Cout).
    """
    n, h, w, _ = x.shape
    ho, wo = conv_out_hw(h, w, k, stride, pad)
    rows = im2col_nhwc(x, k, stride, pad)            # (N*Ho*Wo, k*k*Cin)
    y = rows @ w2d.T                                  # BLAS reads w2d transposed, no copy
    del rows
    y += bias
    return y.reshape(n, ho, wo, w2d.shape[0])


def batch_matmul_bias(x: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x @ w + bias with no transposes; the leading axes are batch axes (broadcast), the
    last two the matrix; bias is added along the last axis. Computed in the inputs' precision."""
    y = np.matmul(x, w)
    y += bias
    return y
