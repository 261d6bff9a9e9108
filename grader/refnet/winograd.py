"""Winograd F(2x2, 3x3) convolution for 3x3/stride-1 layers, and its weight cache.

For the 3x3/stride-1 convolutions that make up VGG the shifted GEMMs of
``grader.refnet.gemm`` are limited by the GEMM peak itself, so the number of
multiplications has to drop. Winograd's minimal filtering algorithm computes each 2x2
output tile from a 4x4 input tile with 16 element-wise products per (Cin, Cout) pair
instead of 36::

    Y = A^T [ (G g G^T) * (B^T d B) ] A

with ``g`` the 3x3 kernel, ``d`` the 4x4 input tile and ``*`` element-wise. Summed
over input channels, each of the 16 positions of the 4x4 transformed tile becomes one
GEMM ``U[s] [Cout, Cin] @ V[s] [Cin, tiles]``. The input transform ``B^T d B`` and the
output transform ``A^T m A`` only add and subtract; they run as small compiled numba
kernels over bands of tile rows, so that the transformed tiles of a band stay in
cache between the transform, the 16 GEMMs and the back transform. The transformed
kernels ``U`` are computed in float64 and cached per weight array. In float32 the
result differs from the direct sum by a few 1e-7 of max|output| (about twice the
direct path's own rounding error); in float64 by about 1e-16.

The gradient of a 3x3/stride-1 convolution w.r.t. its input is a convolution of
``top_diff`` with the kernel flipped in space and Cin/Cout swapped, with padding
``2 - padding``: :func:`backward_data` runs it on the same path.

The path needs numba and the BLAS binding of ``grader.refnet.blas``;
``AICS_FASTOPS_NO_WINOGRAD=1`` turns it off (see :func:`available`).
"""
from __future__ import annotations

import os
import threading
import weakref
from functools import lru_cache

import numpy as np

from grader.refnet import blas as _blas

try:
    import numba
except ImportError:  # without numba the callers take the shifted GEMMs instead
    numba = None

__all__ = ["NO_WINOGRAD_ENV", "MIN_CHANNELS", "available", "applies", "forward", "backward_data",
           "conv", "weight_cache"]

# Setting this variable to 1 turns the Winograd path off (shifted GEMMs instead).
NO_WINOGRAD_ENV = "AICS_FASTOPS_NO_WINOGRAD"

# Below this many input or output channels the transforms cost as much as the saved
# multiplications (measured: VGG 3 -> 64 loses 3x, 64 -> 64 at 224x224 breaks even), so
# the shifted GEMMs run there. Read at each call (the tests lower it).
MIN_CHANNELS = 128
# A band of tile rows is sized so that its transformed input and output tiles take
# about this many bytes (they then stay in the L2/L3 caches between the transform,
# the GEMMs and the back transform) ...
BAND_BYTES = 16 << 20
# ... but holds at least this many tiles, or the GEMMs get too thin to run at speed.
MIN_TILES = 1024

# G of F(2x2, 3x3): the 4x4 transformed kernel is G g G^T.
_G = np.array([[1.0, 0.0, 0.0],
               [0.5, 0.5, 0.5],
               [0.5, -0.5, 0.5],
               [0.0, 0.0, 1.0]])


def _input_band(x, padding, th, tw, g0, g1, v):
    """Input transform B^T d B of the tile rows g0 <= g < g1 (g = n * th + tile row).

    x [N, C, H, W] (unpadded; the zero padding is applied here), v [16, C, (g1-g0)*tw]:
    v[4*k + l, c, (g - g0)*tw + tj] is entry (k, l) of the transformed 4x4 tile whose
    top-left corner is padded pixel (2*ti, 2*tj) of image n.
    """
    n, c_in, h, w = x.shape
    wq = 2 * tw + 2
    ng = g1 - g0
    w_copy = min(w, wq - padding)
    rows = np.empty((4, wq), x.dtype)
    t = np.empty((4, wq), x.dtype)
    for idx in range(c_in * ng):
        c = idx // ng
        g = g0 + idx % ng
        b = g // th
        ti = g % th
        # The 4 padded input rows of this tile row, zeros outside the image.
        for i in range(4):
            yy = 2 * ti + i - padding
            for q in range(wq):
                rows[i, q] = 0
            if 0 <= yy < h:
                for xx in range(w_copy):
                    rows[i, xx + padding] = x[b, c, yy, xx]
        # B^T along the rows (rows of B^T: [1,0,-1,0], [0,1,1,0], [0,-1,1,0], [0,1,0,-1]).
        for q in range(wq):
            d0 = rows[0, q]
            d1 = rows[1, q]
            d2 = rows[2, q]
            d3 = rows[3, q]
            t[0, q] = d0 - d2
            t[1, q] = d1 + d2
            t[2, q] = d2 - d1
            t[3, q] = d1 - d3
        # ... and along the columns, 2 columns apart from one tile to the next.
        base = (g - g0) * tw
        for k in range(4):
            for tj in range(tw):
                e0 = t[k, 2 * tj]
                e1 = t[k, 2 * tj + 1]
                e2 = t[k, 2 * tj + 2]
                e3 = t[k, 2 * tj + 3]
                v[4 * k, c, base + tj] = e0 - e2
                v[4 * k + 1, c, base + tj] = e1 + e2
                v[4 * k + 2, c, base + tj] = e2 - e1
                v[4 * k + 3, c, base + tj] = e1 - e3


def _output_band(m, bias, th, tw, g0, g1, out):
    """Output transform A^T m A plus bias for the tile rows g0 <= g < g1.

    m [16, Cout, (g1-g0)*tw] (the GEMM results), bias [Cout], out [N, Cout, Hout, Wout]:
    writes rows 2*ti, 2*ti + 1 of image g // th (ti = g % th), dropping the last row or
    column of a tile where Hout or Wout is odd.
    """
    n, c_out, hout, wout = out.shape
    ng = g1 - g0
    z = np.empty((2, 4, tw), m.dtype)
    for idx in range(c_out * ng):
        co = idx // ng
        g = g0 + idx % ng
        b = g // th
        ti = g % th
        base = (g - g0) * tw
        # A^T = [[1, 1, 1, 0], [0, 1, -1, -1]], first along the tile rows ...
        for l in range(4):
            for tj in range(tw):
                m0 = m[l, co, base + tj]
                m1 = m[4 + l, co, base + tj]
                m2 = m[8 + l, co, base + tj]
                m3 = m[12 + l, co, base + tj]
                z[0, l, tj] = m0 + m1 + m2
                z[1, l, tj] = m1 - m2 - m3
        # ... then along the columns.
        bv = bias[co]
        full = wout // 2
        for a in range(2):
            yy = 2 * ti + a
            if yy >= hout:
                continue
            for tj in range(full):
                out[b, co, yy, 2 * tj] = z[a, 0, tj] + z[a, 1, tj] + z[a, 2, tj] + bv
                out[b, co, yy, 2 * tj + 1] = z[a, 1, tj] - z[a, 2, tj] - z[a, 3, tj] + bv
            if full < tw:
                out[b, co, yy, 2 * full] = z[a, 0, full] + z[a, 1, full] + z[a, 2, full] + bv


if numba is not None:
    # Serial on purpose: numba's parallel loops (and even a second Python thread)
    # measured slower, as their threads compete with OpenBLAS's spinning threads for
    # the same cores. cache: compiling takes a second or two per dtype; later processes load it.
    _input_band = numba.njit(cache=True)(_input_band)
    _output_band = numba.njit(cache=True)(_output_band)


def available() -> bool:
    """True when numba and the BLAS binding are there and the path is not switched off."""
    return (numba is not None and _blas.cblas() is not None
            and os.environ.get(NO_WINOGRAD_ENV, "") in ("", "0"))


def applies(cin: int, cout: int, k: int, stride: int, dtype) -> bool:
    """True when a convolution of this shape and dtype should take the Winograd path."""
    return (k == 3 and stride == 1 and dtype in (np.float32, np.float64)
            and min(cin, cout) >= MIN_CHANNELS and available())


class WeightCache:
    """Transformed kernels U [16, Cout, Cin] per weight array, checked before each use.

    Weights are fixed across the calls of a forward pass or of style-transfer steps,
    so U is computed once; a fingerprint of the weight's bytes catches arrays modified
    in place (a wrapping integer sum changes with any single value, a dot product with
    a fixed random vector with any permutation).
    """

    def __init__(self, size: int = 64):
        self.size = size
        self.entries = {}
        self.lock = threading.Lock()

    @staticmethod
    def _fingerprint(weight: np.ndarray) -> tuple:
        flat = np.ascontiguousarray(weight).reshape(-1)
        # Summed as uint64 words without a widening cast (a cast costs a pass of its own).
        raw = flat.view(np.uint64) if flat.nbytes % 8 == 0 else flat.view(np.uint32)
        probe = _probe_vector(len(flat), flat.dtype.str)
        return (weight.shape, weight.dtype.str, weight.strides,
                weight.__array_interface__["data"][0],
                int(np.add.reduce(raw, dtype=np.uint64)), float(np.dot(flat, probe)))

    def get(self, weight: np.ndarray, dtype, flip: bool) -> np.ndarray:
        """U of ``weight`` [Cin, 3, 3, Cout] in ``dtype`` (see :func:`_kernel_transform`)."""
        key = (id(weight), np.dtype(dtype).str, flip)
        stamp = self._fingerprint(weight)
        with self.lock:
            entry = self.entries.get(key)
        if entry is not None and entry[0]() is weight and entry[1] == stamp:
            return entry[2]
        u = _kernel_transform(weight, dtype, flip)
        try:
            ref = weakref.ref(weight)
        except TypeError:  # not weak-referenceable: do not cache
            return u
        with self.lock:
            if len(self.entries) >= self.size:
                self.entries.pop(next(iter(self.entries)))
            self.entries[key] = (ref, stamp, u)
        return u


@lru_cache(maxsize=8)
def _probe_vector(length: int, dtype: str) -> np.ndarray:
    return np.random.default_rng(length).standard_normal(length).astype(dtype)


def _kernel_transform(weight: np.ndarray, dtype, flip: bool) -> np.ndarray:
    """weight [Cin, 3, 3, Cout] -> U [16, Cout, Cin] (or [16, Cin, Cout] with flip).

    ``flip`` gives the kernel of the input gradient: rotated by 180 degrees, Cin and
    Cout swapped. Computed in float64, then rounded once to ``dtype``.
    """
    g = np.asarray(weight, np.float64)
    if flip:
        g = g[:, ::-1, ::-1, :].transpose(3, 1, 2, 0)
    u = np.einsum("xa,iabo,yb->xyoi", _G, g, _G, optimize=True)
    return np.ascontiguousarray(u.reshape(16, g.shape[3], g.shape[0]), dtype=dtype)


weight_cache = WeightCache()


def conv(x, u, bias, padding: int, dtype, blas: _blas.Cblas) -> np.ndarray:
    """x [N, Cin, H, W], U [16, Cout, Cin], bias [Cout] -> [N, Cout, H+2p-2, W+2p-2]."""
    n, cin, h, w = x.shape
    cout = u.shape[1]
    hout, wout = h + 2 * padding - 2, w + 2 * padding - 2
    th, tw = (hout + 1) // 2, (wout + 1) // 2  # 2x2 output tiles per column / row
    n_rows = n * th  # tile rows over all images
    item = np.dtype(dtype).itemsize
    per_row = 16 * (cin + cout) * tw * item
    band = max(BAND_BYTES // per_row, -(-MIN_TILES // tw), 1)
    band = min(band, n_rows)
    v_buf = np.empty((16, cin, band * tw), dtype)
    m_buf = np.empty((16, cout, band * tw), dtype)
    out = np.empty((n, cout, hout, wout), dtype)
    x = np.ascontiguousarray(x, dtype=dtype)
    bias = np.ascontiguousarray(bias, dtype=dtype)
    for g0 in range(0, n_rows, band):
        g1 = min(n_rows, g0 + band)
        tiles = (g1 - g0) * tw
        v, m = v_buf[:, :, :tiles], m_buf[:, :, :tiles]
        _input_band(x, padding, th, tw, g0, g1, v)
        for s in range(16):
            blas.gemm(u[s], v[s], m[s], 0.0)
        _output_band(m, bias, th, tw, g0, g1, out)
    return out


def forward(x, weight, bias, padding: int, dtype) -> np.ndarray:
    """3x3/stride-1 convolution: x [N, Cin, H, W], weight [Cin, 3, 3, Cout], bias [Cout]
    -> [N, Cout, H+2p-2, W+2p-2] in ``dtype``. Call only where :func:`applies` is True."""
    u = weight_cache.get(weight, dtype, flip=False)
    return conv(x, u, bias, padding, dtype, _blas.cblas())


def backward_data(top, weight, padding: int, dtype) -> np.ndarray:
    """Input gradient of a 3x3/stride-1 convolution with ``padding <= 2``.

    top [N, Cout, Hout, Wout], weight [Cin, 3, 3, Cout] -> [N, Cin, Hout+2-2p, Wout+2-2p]
    (the forward input's H x W) in ``dtype``. Call only where :func:`applies` is True
    for (Cout, Cin).
    """
    u = weight_cache.get(weight, dtype, flip=True)
    return conv(top, u, np.zeros(weight.shape[0], dtype), 2 - padding, dtype, _blas.cblas())
