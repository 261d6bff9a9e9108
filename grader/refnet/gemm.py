"""Convolution as matrix products: GEMMs on shifted views, im2col, and col2im backward.

Layouts follow the book: activations are ``[N, C, H, W]``, convolution weights are
``[Cin, K, K, Cout]``. The functions here take checked, non-empty arguments (see
``grader.refnet.fastops``) and a ``dtype`` the result is computed in.

How the stride-1 convolution avoids im2col
------------------------------------------
The zero-padded input of every channel is stored as one flat row of ``N*Hp*Wp``
values (``Hp = H + 2p``, ``Wp = W + 2p``), images one after another. An output pixel
``(n, i, j)`` is given the flat index ``q = n*Hp*Wp + i*Wp + j``; the input it needs
under kernel tap ``(dy, dx)`` then sits at ``q + dy*Wp + dx``. So, for each tap, the
operand of a GEMM is just the padded buffer shifted by a constant offset: a strided
view, no copy. ``K*K`` GEMMs ``[Cout, Cin] @ [Cin, L]`` accumulate (``beta = 1``)
into one output ``[Cout, L]``; the ``K - 1`` columns per row (and rows per image)
that straddle the padding are computed and discarded, which costs ``(K-1)/Wp`` of
the work. numpy's ``matmul`` cannot accumulate, so :func:`conv_shifted_gemm` calls
BLAS through ``grader.refnet.blas``; :func:`conv_shifted_im2col` computes the same
result with one numpy matmul where that binding is unavailable.
"""
from __future__ import annotations

import numpy as np

from grader.refnet.blas import Cblas

__all__ = ["conv_shifted_gemm", "conv_shifted_im2col", "conv_im2col", "backward_data_col2im"]


def _pad_flat(x: np.ndarray, padding: int, k: int, dtype) -> np.ndarray:
    """x [N, C, H, W] -> zero-padded buffer [C, N*Hp*Wp + K - 1] (images side by side).

    The K - 1 trailing zeros let the last tap's shifted view stay inside the buffer.
    """
    n, c, h, w = x.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    buf = np.empty((c, n * hp * wp + k - 1), dtype)
    img = buf[:, : n * hp * wp].reshape(c, n, hp, wp)
    # Zero only the border instead of the whole buffer: saves a full pass.
    if padding:
        img[:, :, :padding] = 0
        img[:, :, hp - padding:] = 0
        img[:, :, :, :padding] = 0
        img[:, :, :, wp - padding:] = 0
    buf[:, n * hp * wp:] = 0
    img[:, :, padding:padding + h, padding:padding + w] = x.transpose(1, 0, 2, 3)
    return buf


def _shifted_geometry(x_shape, k: int, padding: int):
    """(Hp, Wp, Hout, Wout, L) of a stride-1 convolution on the flat padded buffer."""
    n, _, h, w = x_shape
    hp, wp = h + 2 * padding, w + 2 * padding
    hout, wout = hp - k + 1, wp - k + 1
    # Output columns up to the last valid pixel of the last image; everything after
    # it would only be discarded.
    length = (n - 1) * hp * wp + hout * wp
    return hp, wp, hout, wout, length


def _crop(y: np.ndarray, n: int, hp: int, wp: int, hout: int, wout: int) -> np.ndarray:
    """y [Cout, N*Hp*Wp] (flat padded positions) -> view [N, Cout, Hout, Wout]."""
    return y.reshape(y.shape[0], n, hp, wp)[:, :, :hout, :wout].transpose(1, 0, 2, 3)


def conv_shifted_gemm(x, weight, bias, padding: int, dtype, blas: Cblas) -> np.ndarray:
    """Stride-1 convolution as K*K accumulating BLAS GEMMs on shifted views.

    x [N, Cin, H, W], weight [Cin, K, K, Cout], bias [Cout]; dtype float32 or float64.
    Returns a non-contiguous view [N, Cout, Hout, Wout] of a [Cout, N*Hp*Wp] buffer.
    """
    n = x.shape[0]
    k, cout = weight.shape[1], weight.shape[3]
    hp, wp, hout, wout, length = _shifted_geometry(x.shape, k, padding)
    buf = _pad_flat(x, padding, k, dtype)
    weight = weight.astype(dtype, copy=False)
    # Each tap's [Cin, Cout] slice must have a unit stride on one axis for BLAS.
    s_in, s_out, item = weight.strides[0], weight.strides[3], weight.itemsize
    cin = weight.shape[0]
    blas_ready = (s_out == item and s_in >= cout * item and s_in % item == 0) or (
        s_in == item and s_out >= cin * item and s_out % item == 0)
    if not blas_ready:
        weight = np.ascontiguousarray(weight)
    y = np.empty((cout, n * hp * wp), dtype)
    out = y[:, :length]
    out[...] = bias.astype(dtype, copy=False)[:, None]
    for dy in range(k):
        for dx in range(k):
            shift = dy * wp + dx
            # weight[:, dy, dx, :] is [Cin, Cout]; its transpose is the GEMM's A.
            blas.gemm(weight[:, dy, dx, :].T, buf[:, shift:shift + length], out, 1.0)
    return _crop(y, n, hp, wp, hout, wout)


def conv_shifted_im2col(x, weight, bias, padding: int, dtype) -> np.ndarray:
    """Same geometry as :func:`conv_shifted_gemm`, with the K*K shifted views copied side
    by side so that one numpy matmul (which cannot accumulate) does all the work.

    x [N, Cin, H, W], weight [Cin, K, K, Cout], bias [Cout] -> view [N, Cout, Hout, Wout].
    """
    n, cin = x.shape[:2]
    k, cout = weight.shape[1], weight.shape[3]
    hp, wp, hout, wout, length = _shifted_geometry(x.shape, k, padding)
    buf = _pad_flat(x, padding, k, dtype)
    # Rows ordered (cin, dy, dx) so that the weight is a plain reshape, no transpose.
    cols = np.empty((cin, k * k, length), dtype)
    for dy in range(k):
        for dx in range(k):
            shift = dy * wp + dx
            cols[:, dy * k + dx] = buf[:, shift:shift + length]
    w2 = weight.astype(dtype, copy=False).reshape(cin * k * k, cout)
    y = np.empty((cout, n * hp * wp), dtype)
    np.matmul(w2.T, cols.reshape(cin * k * k, length), out=y[:, :length])
    y[:, :length] += bias.astype(dtype, copy=False)[:, None]
    return _crop(y, n, hp, wp, hout, wout)


def conv_im2col(x, weight, bias, padding: int, stride: int, dtype) -> np.ndarray:
    """General path (any stride): one im2col copy, one matmul.

    x [N, Cin, H, W], weight [Cin, K, K, Cout], bias [Cout] -> view [N, Cout, Hout, Wout].
    """
    n, cin, h, w = x.shape
    k, cout = weight.shape[1], weight.shape[3]
    xp = np.pad(x.astype(dtype, copy=False),
                ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    # windows [N, Cin, Hout, Wout, K, K], a view.
    windows = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]
    hout, wout = windows.shape[2], windows.shape[3]
    cols = windows.transpose(1, 4, 5, 0, 2, 3).reshape(cin * k * k, n * hout * wout)
    w2 = weight.astype(dtype, copy=False).reshape(cin * k * k, cout)
    y = w2.T @ cols
    y += bias.astype(dtype, copy=False)[:, None]
    return y.reshape(cout, n, hout, wout).transpose(1, 0, 2, 3)


def backward_data_col2im(top, weight, padding: int, stride: int, input_shape, dtype) -> np.ndarray:
    """Input gradient of any convolution: one matmul gives the gradient of every window
    (the transpose of im2col), then each kernel offset adds its strided slab onto the
    padded input.

    top [N, Cout, Hout, Wout], weight [Cin, K, K, Cout], input_shape (N, Cin, H, W)
    -> view [N, Cin, H, W] in ``dtype``.
    """
    n, cin, h, w = input_shape
    k, cout = weight.shape[1], weight.shape[3]
    hout, wout = top.shape[2], top.shape[3]
    w2 = weight.astype(dtype, copy=False).reshape(cin * k * k, cout)
    # [Cin*K*K, Cout] @ [N, Cout, Hout*Wout] -> [N, Cin, K, K, Hout, Wout]
    cols = np.matmul(w2, top.astype(dtype, copy=False).reshape(n, cout, hout * wout))
    cols = cols.reshape(n, cin, k, k, hout, wout)
    hp = max(h + 2 * padding, stride * (hout - 1) + k)
    wp = max(w + 2 * padding, stride * (wout - 1) + k)
    grad = np.zeros((n, cin, hp, wp), dtype)
    for dy in range(k):
        for dx in range(k):
            grad[:, :, dy:dy + stride * (hout - 1) + 1:stride,
                 dx:dx + stride * (wout - 1) + 1:stride] += cols[:, :, dy, dx]
    return grad[:, :, padding:padding + h, padding:padding + w]
