"""Max-pooling kernels (strided-view maximum, compiled argmax and routing) and the
compiled ReLU-gradient pass.

Layouts follow the book: ``[N, C, H, W]``, no padding, partial windows dropped. The
functions here take checked arguments (see ``grader.refnet.fastops``). The compiled
kernels are numba functions when numba is installed (``numba`` below is then the
module, else None) and the same code run by the Python interpreter otherwise: correct,
but far too slow for a VGG-sized input.
"""
from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # the kernels below then run as plain Python
    numba = None

__all__ = ["numba", "window_max", "argmax_kernel", "route_kernel", "relu_backward_kernel"]


def window_max(x: np.ndarray, kernel_size: int, stride: int, hout: int, wout: int) -> np.ndarray:
    """x [N, C, H, W] -> [N, C, Hout, Wout], the maximum of each window, in x's dtype.

    One strided view per window offset; the running maximum is written in place, so
    the only allocation is the output. A NaN in a window gives NaN, as in the book's np.max.
    """
    out = None
    for dy in range(kernel_size):
        for dx in range(kernel_size):
            view = x[:, :, dy:dy + stride * (hout - 1) + 1:stride,
                     dx:dx + stride * (wout - 1) + 1:stride]
            if out is None:
                out = view.copy()
            else:
                np.maximum(out, view, out=out)
    return out


def argmax_kernel(x, k, s, out, arg):
    """One pass over x [N, C, H, W]: window maxima into out, their window offsets into arg.

    out, arg [N, C, Hout, Wout]. The offset is kh * k + kw of the FIRST maximum in
    row-major window order (a strict >), which is what np.argmax in the book's loop
    backward picks.
    """
    n, c, hout, wout = out.shape
    for i in range(n):
        for j in range(c):
            for oh in range(hout):
                for ow in range(wout):
                    best = x[i, j, oh * s, ow * s]
                    where = 0
                    for kh in range(k):
                        for kw in range(k):
                            v = x[i, j, oh * s + kh, ow * s + kw]
                            if v > best:
                                best = v
                                where = kh * k + kw
                    out[i, j, oh, ow] = best
                    arg[i, j, oh, ow] = where


def route_kernel(top, arg, k, s, bottom):
    """bottom [N, C, H, W] += top [N, C, Hout, Wout] routed to each window's recorded
    argmax offset arg [N, C, Hout, Wout]."""
    n, c, hout, wout = top.shape
    for i in range(n):
        for j in range(c):
            for oh in range(hout):
                for ow in range(wout):
                    a = arg[i, j, oh, ow]
                    bottom[i, j, oh * s + a // k, ow * s + a % k] += top[i, j, oh, ow]


def relu_backward_kernel(top, x, out):
    """out = top where x > 0 else 0, on flat arrays of one size (one pass, no mask array)."""
    for i in range(top.size):
        out[i] = top[i] if x[i] > 0 else 0


if numba is not None:
    # cache: later processes load the compiled code instead of compiling for seconds.
    argmax_kernel = numba.njit(cache=True)(argmax_kernel)
    route_kernel = numba.njit(cache=True)(route_kernel)
    relu_backward_kernel = numba.njit(cache=True)(relu_backward_kernel)
