"""Fast forward kernels for the reference layers (convolution and max-pooling).

The reference solution keeps the book's loop code for students; the grader needs the
same numbers fast, so the reference layers call these kernels to compute goldens.

Layouts follow the book: activations are ``[N, C, H, W]``, convolution weights are
``[Cin, K, K, Cout]``.

How the convolution avoids im2col (stride 1, the VGG case)
----------------------------------------------------------
The zero-padded input of every channel is stored as one flat row of ``N*Hp*Wp``
values (``Hp = H + 2p``, ``Wp = W + 2p``), images one after another. An output pixel
``(n, i, j)`` is given the flat index ``q = n*Hp*Wp + i*Wp + j``; the input it needs
under kernel tap ``(dy, dx)`` then sits at ``q + dy*Wp + dx``. So, for each tap, the
operand of a GEMM is just the padded buffer shifted by a constant offset: a strided
view, no copy. ``K*K`` GEMMs ``[Cout, Cin] @ [Cin, L]`` accumulate (``beta = 1``)
into one output ``[Cout, L]``; the ``K - 1`` columns per row (and rows per image)
that straddle the padding are computed and discarded, which costs ``(K-1)/Wp`` of
the work. numpy's ``matmul`` cannot accumulate, so the GEMMs call the ``cblas``
interface of the OpenBLAS library numpy itself loaded (same library, same threads).
Where that library cannot be found (a numpy built on MKL or Accelerate) a pure-numpy
im2col path computes the same result.

Winograd F(2x2, 3x3) (3x3 kernels, stride 1)
--------------------------------------------
For the 3x3/stride-1 convolutions that make up VGG the shifted GEMMs above are limited
by the GEMM peak itself, so the number of multiplications has to drop. Winograd's
minimal filtering algorithm computes each 2x2 output tile from a 4x4 input tile with
16 element-wise products per (Cin, Cout) pair instead of 36::

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

:func:`conv2d_backward_data` uses the same path: the gradient of a 3x3/stride-1
convolution w.r.t. its input is a convolution of ``top_diff`` with the kernel flipped
in space and Cin/Cout swapped, with padding ``K - 1 - padding``.

Speed note: OpenBLAS chooses its kernels from the CPU it detects. Some recent CPUs
with AVX-512 are detected as "Haswell" (AVX2), which halves the GEMM throughput;
``OPENBLAS_CORETYPE=SkylakeX`` set before numpy is imported fixes it. See
:func:`backend_info`.
"""
from __future__ import annotations

import ctypes
import os
import threading
import weakref
from functools import lru_cache

import numpy as np

try:
    import numba
except ImportError:  # the Winograd path needs numba; the others do not
    numba = None

__all__ = ["conv2d_forward", "conv2d_backward_data", "maxpool2d_forward", "backend_info"]

# Setting this variable to 1 forces the pure-numpy path (used by the tests).
_DISABLE_ENV = "AICS_FASTOPS_NO_CBLAS"
# Setting this variable to 1 turns the Winograd path off (shifted GEMMs instead).
_NO_WINOGRAD_ENV = "AICS_FASTOPS_NO_WINOGRAD"

_CBLAS_ROW_MAJOR = 101
_CBLAS_NO_TRANS = 111
_CBLAS_TRANS = 112


# --------------------------------------------------------------------------- BLAS


class _Cblas:
    """``?gemm`` of the BLAS library that numpy loaded, called through ctypes."""

    # (symbol prefix, symbol suffix, integer type). Only names whose integer width is
    # certain are used: a wrong width would pass garbage sizes to BLAS.
    _NAMES = (
        ("scipy_cblas_", "64_", ctypes.c_int64),  # numpy wheels (scipy-openblas64)
        ("cblas_", "64_", ctypes.c_int64),  # ILP64 OpenBLAS with symbol suffix
        ("scipy_cblas_", "", ctypes.c_int32),  # scipy-openblas32
    )

    def __init__(self, path: str):
        lib = ctypes.CDLL(path)
        self.path = path
        self.funcs = {}
        for prefix, suffix, int_t in self._NAMES:
            try:
                funcs = {
                    np.dtype(np.float32): getattr(lib, f"{prefix}sgemm{suffix}"),
                    np.dtype(np.float64): getattr(lib, f"{prefix}dgemm{suffix}"),
                }
            except AttributeError:
                continue
            for dtype, f in funcs.items():
                real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
                p = ctypes.c_void_p
                f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              int_t, int_t, int_t, real, p, int_t, p, int_t, real, p, int_t]
                f.restype = None
            self.funcs = funcs
            self.corename = self._corename(lib, prefix, suffix)
            return
        raise OSError(f"{path} exports no cblas ?gemm this module knows")

    @staticmethod
    def _corename(lib, prefix: str, suffix: str) -> str:
        base = "scipy_openblas_" if prefix.startswith("scipy") else "openblas_"
        try:
            f = getattr(lib, f"{base}get_corename{suffix}")
        except AttributeError:
            return "unknown"
        f.restype = ctypes.c_char_p
        return f().decode(errors="replace")

    def gemm(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, beta: float) -> None:
        """``c = a @ b + beta * c`` in place.

        a [M, K], b [K, N], c [M, N], one dtype (float32 or float64). ``b`` and ``c``
        need a unit stride along their last axis; ``a`` a unit stride along either
        axis (BLAS then reads it transposed, so no copy is made).
        """
        item = c.itemsize
        m, k = a.shape
        n = c.shape[1]
        if a.strides[1] == item:
            trans_a, lda = _CBLAS_NO_TRANS, a.strides[0] // item
        else:
            trans_a, lda = _CBLAS_TRANS, a.strides[1] // item
        self.funcs[c.dtype](_CBLAS_ROW_MAJOR, trans_a, _CBLAS_NO_TRANS, m, n, k, 1.0,
                            a.ctypes.data, lda, b.ctypes.data, b.strides[0] // item,
                            beta, c.ctypes.data, c.strides[0] // item)


def _loaded_blas_paths() -> list[str]:
    """Shared libraries in this process whose name says OpenBLAS (Linux only)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    paths = []
    for line in lines:
        fields = line.split(maxsplit=5)  # address perms offset dev inode [path]
        path = fields[5] if len(fields) == 6 else ""
        name = os.path.basename(path).lower()
        if "openblas" in name and ".so" in name and path not in paths:
            paths.append(path)
    # numpy's own copy first: scipy may have loaded a second, separate OpenBLAS.
    paths.sort(key=lambda p: "numpy" not in p)
    return paths


def _self_test(blas: _Cblas) -> bool:
    """Check both transpositions and accumulation on a small product against numpy."""
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        a = rng.standard_normal((5, 7)).astype(dtype)
        b_full = rng.standard_normal((7, 13)).astype(dtype)
        b = b_full[:, 2:11]  # strided rows, like the shifted taps
        for a_used in (a, np.asfortranarray(a)):
            c = np.ones((5, 9), dtype)
            blas.gemm(a_used, b, c, 1.0)
            tol = 1e-4 if dtype == np.float32 else 1e-12
            if not np.allclose(c, a @ b + 1.0, rtol=tol, atol=tol):
                return False
    return True


@lru_cache(maxsize=1)
def _blas() -> _Cblas | None:
    if os.environ.get(_DISABLE_ENV, "") not in ("", "0"):
        return None
    for path in _loaded_blas_paths():
        try:
            blas = _Cblas(path)
        except OSError:
            continue
        if _self_test(blas):
            return blas
    return None


def backend_info() -> str:
    """One line naming the GEMM path in use, e.g. for a benchmark's header."""
    blas = _blas()
    if blas is None and os.environ.get(_DISABLE_ENV, "") not in ("", "0"):
        return f"numpy matmul + im2col ({_DISABLE_ENV} is set)"
    if blas is None:
        return "numpy matmul + im2col (numpy's BLAS has no cblas this module can call)"
    info = f"cblas via ctypes: {os.path.basename(blas.path)}, OpenBLAS core {blas.corename}"
    if _winograd_available():
        info += "; Winograd F(2x2,3x3) for 3x3/stride-1 layers"
    return info


# ------------------------------------------------------------------------ checks


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_conv_args(x, weight, bias, padding, stride):
    x = np.asarray(x)
    weight = np.asarray(weight)
    bias = np.asarray(bias)
    padding = _check_int("padding", padding, 0)
    stride = _check_int("stride", stride, 1)
    if x.ndim != 4:
        raise ValueError(f"conv input must be [N, Cin, H, W], got shape {x.shape} "
                         f"(weight shape {weight.shape})")
    if weight.ndim != 4 or weight.shape[1] != weight.shape[2]:
        raise ValueError(f"conv weight must be [Cin, K, K, Cout], got shape {weight.shape} "
                         f"(input shape {x.shape})")
    if x.shape[1] != weight.shape[0]:
        raise ValueError(f"channel mismatch: input shape {x.shape} has Cin={x.shape[1]} but "
                         f"weight shape {weight.shape} ([Cin, K, K, Cout]) has "
                         f"Cin={weight.shape[0]}")
    if bias.shape != (weight.shape[3],):
        raise ValueError(f"bias shape {bias.shape} does not match weight shape "
                         f"{weight.shape}: expected ({weight.shape[3]},) (one per Cout)")
    k = weight.shape[1]
    hp, wp = x.shape[2] + 2 * padding, x.shape[3] + 2 * padding
    if hp < k or wp < k:
        raise ValueError(f"kernel {k}x{k} is larger than the padded input {hp}x{wp} "
                         f"(input shape {x.shape}, padding {padding}, weight shape "
                         f"{weight.shape})")
    return x, weight, bias, padding, stride


# ------------------------------------------------------------------- convolution


def conv2d_forward(x, weight, bias, padding: int, stride: int) -> np.ndarray:
    """Cross-correlation of a batch with a bank of filters, plus bias.

    x [N, Cin, H, W]; weight [Cin, K, K, Cout] (the book's layout); bias [Cout].
    Returns [N, Cout, Hout, Wout] with Hout = (H + 2*padding - K) // stride + 1 (same
    for W), dtype ``np.result_type(x, weight)``. Inputs may be non-contiguous views.
    The result may itself be a non-contiguous view of a slightly larger buffer (the
    discarded border columns); copy it if contiguity matters.
    """
    x, weight, bias, padding, stride = _check_conv_args(x, weight, bias, padding, stride)
    dtype = np.result_type(x, weight)
    n, cin, h, w = x.shape
    k, cout = weight.shape[1], weight.shape[3]
    hout = (h + 2 * padding - k) // stride + 1
    wout = (w + 2 * padding - k) // stride + 1
    if n == 0 or cin == 0 or cout == 0:
        # Empty batch or channels: nothing for BLAS to do (and a zero-sized leading
        # dimension would be an invalid BLAS argument). With no input channel the
        # correlation is empty and only the bias remains.
        out = np.zeros((n, cout, hout, wout), dtype)
        out += bias.astype(dtype, copy=False)[None, :, None, None]
        return out
    blas = _blas()
    if _use_winograd(cin, cout, k, stride, dtype):
        u = _weight_cache.get(weight, dtype, flip=False)
        return _winograd_conv(x, u, bias, padding, dtype, blas)
    if stride == 1 and blas is not None and dtype in (np.float32, np.float64):
        return _conv_shifted_gemm(x, weight, bias, padding, dtype, blas)
    if stride == 1:
        return _conv_shifted_im2col(x, weight, bias, padding, dtype)
    return _conv_im2col(x, weight, bias, padding, stride, dtype)


def conv2d_backward_data(top_diff, weight, padding: int, stride: int, input_shape) -> np.ndarray:
    """Gradient of :func:`conv2d_forward` w.r.t. its input.

    top_diff [N, Cout, Hout, Wout] (the gradient w.r.t. the output); weight [Cin, K, K,
    Cout]; input_shape (N, Cin, H, W), the shape of the forward input (with stride > 1
    the last rows / columns of the input may not reach any output, so H and W cannot
    be recovered from Hout and Wout). Returns [N, Cin, H, W] in
    ``np.result_type(top_diff, weight)``:

        bottom[n, c, y, x] = sum_{o, i, j, dy, dx : y + p = s*i + dy, x + p = s*j + dx}
                             weight[c, dy, dx, o] * top_diff[n, o, i, j]
    """
    top = np.asarray(top_diff)
    weight = np.asarray(weight)
    padding = _check_int("padding", padding, 0)
    stride = _check_int("stride", stride, 1)
    input_shape = tuple(int(v) for v in input_shape)
    if weight.ndim != 4 or weight.shape[1] != weight.shape[2]:
        raise ValueError(f"conv weight must be [Cin, K, K, Cout], got shape {weight.shape}")
    if len(input_shape) != 4 or input_shape[1] != weight.shape[0]:
        raise ValueError(f"input_shape must be [N, Cin, H, W] with Cin={weight.shape[0]} "
                         f"(weight shape {weight.shape}), got {input_shape}")
    n, cin, h, w = input_shape
    k, cout = weight.shape[1], weight.shape[3]
    hout = (h + 2 * padding - k) // stride + 1
    wout = (w + 2 * padding - k) // stride + 1
    if top.shape != (n, cout, hout, wout):
        raise ValueError(f"top_diff must have the forward output shape {(n, cout, hout, wout)} "
                         f"for input shape {input_shape}, weight shape {weight.shape}, padding "
                         f"{padding}, stride {stride}; got {top.shape}")
    dtype = np.result_type(top, weight)
    if n == 0 or cin == 0 or cout == 0 or hout <= 0 or wout <= 0:
        return np.zeros(input_shape, dtype)
    if stride == 1 and padding <= k - 1:
        # Full correlation of top_diff with the rotated, transposed kernel, i.e. a
        # forward convolution with padding K - 1 - padding: output H x W exactly.
        if _use_winograd(cout, cin, k, 1, dtype):
            u = _weight_cache.get(weight, dtype, flip=True)
            return _winograd_conv(top, u, np.zeros(cin, dtype), k - 1 - padding, dtype, _blas())
        flipped = weight[:, ::-1, ::-1, :].transpose(3, 1, 2, 0)
        return conv2d_forward(top, flipped, np.zeros(cin, dtype), k - 1 - padding, 1)
    return _backward_data_col2im(top, weight, padding, stride, input_shape, dtype)


def _backward_data_col2im(top, weight, padding, stride, input_shape, dtype) -> np.ndarray:
    """General path: one matmul gives the gradient of every window (the transpose of
    im2col), then each kernel offset adds its strided slab onto the padded input."""
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


def _conv_shifted_gemm(x, weight, bias, padding, dtype, blas: _Cblas) -> np.ndarray:
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


def _conv_shifted_im2col(x, weight, bias, padding, dtype) -> np.ndarray:
    """Same geometry as the BLAS path, with the K*K shifted views copied side by side
    so that one numpy matmul (which cannot accumulate) does all the work."""
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


def _conv_im2col(x, weight, bias, padding, stride, dtype) -> np.ndarray:
    """General path (any stride): one im2col copy, one matmul."""
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


# -------------------------------------------------------- Winograd F(2x2, 3x3)

# Below this many input or output channels the transforms cost as much as the saved
# multiplications (measured: VGG 3 -> 64 loses 3x, 64 -> 64 at 224x224 breaks even), so
# the shifted GEMMs run there.
_WINOGRAD_MIN_CHANNELS = 128
# A band of tile rows is sized so that its transformed input and output tiles take
# about this many bytes (they then stay in the L2/L3 caches between the transform,
# the GEMMs and the back transform) ...
_WINOGRAD_BAND_BYTES = 16 << 20
# ... but holds at least this many tiles, or the GEMMs get too thin to run at speed.
_WINOGRAD_MIN_TILES = 1024

# G of F(2x2, 3x3): the 4x4 transformed kernel is G g G^T.
_WINOGRAD_G = np.array([[1.0, 0.0, 0.0],
                        [0.5, 0.5, 0.5],
                        [0.5, -0.5, 0.5],
                        [0.0, 0.0, 1.0]])


def _winograd_input_band(x, padding, th, tw, g0, g1, v):
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


def _winograd_output_band(m, bias, th, tw, g0, g1, out):
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
    _winograd_input_band = numba.njit(cache=True)(_winograd_input_band)
    _winograd_output_band = numba.njit(cache=True)(_winograd_output_band)


def _winograd_available() -> bool:
    return (numba is not None and _blas() is not None
            and os.environ.get(_NO_WINOGRAD_ENV, "") in ("", "0"))


def _use_winograd(cin: int, cout: int, k: int, stride: int, dtype) -> bool:
    return (k == 3 and stride == 1 and dtype in (np.float32, np.float64)
            and min(cin, cout) >= _WINOGRAD_MIN_CHANNELS and _winograd_available())


class _WeightCache:
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
        key = (id(weight), np.dtype(dtype).str, flip)
        stamp = self._fingerprint(weight)
        with self.lock:
            entry = self.entries.get(key)
        if entry is not None and entry[0]() is weight and entry[1] == stamp:
            return entry[2]
        u = _winograd_kernel(weight, dtype, flip)
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


def _winograd_kernel(weight: np.ndarray, dtype, flip: bool) -> np.ndarray:
    """weight [Cin, 3, 3, Cout] -> U [16, Cout, Cin] (or [16, Cin, Cout] with flip).

    ``flip`` gives the kernel of the input gradient: rotated by 180 degrees, Cin and
    Cout swapped. Computed in float64, then rounded once to ``dtype``.
    """
    g = np.asarray(weight, np.float64)
    if flip:
        g = g[:, ::-1, ::-1, :].transpose(3, 1, 2, 0)
    u = np.einsum("xa,iabo,yb->xyoi", _WINOGRAD_G, g, _WINOGRAD_G, optimize=True)
    return np.ascontiguousarray(u.reshape(16, g.shape[3], g.shape[0]), dtype=dtype)


_weight_cache = _WeightCache()


def _winograd_conv(x, u, bias, padding: int, dtype, blas: "_Cblas") -> np.ndarray:
    """x [N, Cin, H, W], U [16, Cout, Cin], bias [Cout] -> [N, Cout, H+2p-2, W+2p-2]."""
    n, cin, h, w = x.shape
    cout = u.shape[1]
    hout, wout = h + 2 * padding - 2, w + 2 * padding - 2
    th, tw = (hout + 1) // 2, (wout + 1) // 2  # 2x2 output tiles per column / row
    n_rows = n * th  # tile rows over all images
    item = np.dtype(dtype).itemsize
    per_row = 16 * (cin + cout) * tw * item
    band = max(_WINOGRAD_BAND_BYTES // per_row, -(-_WINOGRAD_MIN_TILES // tw), 1)
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
        _winograd_input_band(x, padding, th, tw, g0, g1, v)
        for s in range(16):
            blas.gemm(u[s], v[s], m[s], 0.0)
        _winograd_output_band(m, bias, th, tw, g0, g1, out)
    return out


# ------------------------------------------------------------------- max-pooling


def maxpool2d_forward(x, kernel_size: int, stride: int) -> np.ndarray:
    """Max over kernel_size x kernel_size windows, no padding, partial windows dropped.

    x [N, C, H, W] -> [N, C, Hout, Wout], Hout = (H - kernel_size) // stride + 1.
    Same dtype as x; a NaN in a window gives NaN, as in the book's np.max.
    """
    x = np.asarray(x)
    kernel_size = _check_int("kernel_size", kernel_size, 1)
    stride = _check_int("stride", stride, 1)
    if x.ndim != 4:
        raise ValueError(f"max-pool input must be [N, C, H, W], got shape {x.shape}")
    if x.shape[2] < kernel_size or x.shape[3] < kernel_size:
        raise ValueError(f"pooling window {kernel_size}x{kernel_size} is larger than the "
                         f"input's H x W in shape {x.shape}")
    hout = (x.shape[2] - kernel_size) // stride + 1
    wout = (x.shape[3] - kernel_size) // stride + 1
    # One strided view per window offset; the running maximum is written in place,
    # so the only allocation is the output.
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


# --------------------------------------------------------------------------- max-pool with argmax

def _pool_argmax_kernel(x, k, s, out, arg):
    """One pass over x [N, C, H, W]: window maxima into out, their window offsets into arg.

    The offset is kh * k + kw of the FIRST maximum in row-major window order (a strict >),
    which is what np.argmax in the book's loop backward picks.
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


def _pool_route_kernel(top, arg, k, s, bottom):
    """bottom [N, C, H, W] += top routed to each window's recorded argmax offset."""
    n, c, hout, wout = top.shape
    for i in range(n):
        for j in range(c):
            for oh in range(hout):
                for ow in range(wout):
                    a = arg[i, j, oh, ow]
                    bottom[i, j, oh * s + a // k, ow * s + a % k] += top[i, j, oh, ow]


if numba is not None:
    _pool_argmax_kernel = numba.njit(cache=True)(_pool_argmax_kernel)
    _pool_route_kernel = numba.njit(cache=True)(_pool_route_kernel)


def maxpool2d_forward_argmax(x, kernel_size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Max-pool forward that also records where each maximum came from.

    x [N, C, H, W] -> (out [N, C, Hout, Wout] in x's dtype, arg [N, C, Hout, Wout] uint8
    holding kh * kernel_size + kw of the first maximum). Needs kernel_size**2 <= 256.
    """
    x = np.ascontiguousarray(x)
    kernel_size = _check_int("kernel_size", kernel_size, 1)
    stride = _check_int("stride", stride, 1)
    if x.ndim != 4 or x.shape[2] < kernel_size or x.shape[3] < kernel_size:
        raise ValueError(f"max-pool input must be [N, C, H, W] with H, W >= {kernel_size}, got shape {x.shape}")
    if kernel_size * kernel_size > 256:
        raise ValueError(f"kernel_size {kernel_size} too large for uint8 window offsets")
    hout = (x.shape[2] - kernel_size) // stride + 1
    wout = (x.shape[3] - kernel_size) // stride + 1
    out = np.empty((x.shape[0], x.shape[1], hout, wout), dtype=x.dtype)
    arg = np.empty(out.shape, dtype=np.uint8)
    _pool_argmax_kernel(x, kernel_size, stride, out, arg)
    return out, arg


def maxpool2d_backward(top_diff, arg, kernel_size: int, stride: int, input_shape) -> np.ndarray:
    """Route top_diff [N, C, Hout, Wout] to the recorded maxima: -> [N, C, H, W].

    Positions shared by overlapping windows (kernel > stride) collect every window they win.
    """
    top = np.ascontiguousarray(top_diff)
    arg = np.ascontiguousarray(arg)
    if top.shape != arg.shape:
        raise ValueError(f"max-pool backward: top_diff shape {top.shape} differs from the forward's output "
                         f"shape {arg.shape}")
    bottom = np.zeros(tuple(input_shape), dtype=top.dtype)
    _pool_route_kernel(top, arg, int(kernel_size), int(stride), bottom)
    return bottom


# --------------------------------------------------------------------------- ReLU backward

def _relu_backward_kernel(top, x, out):
    """out = top where x > 0 else 0, on flat arrays (one pass, no mask array)."""
    for i in range(top.size):
        out[i] = top[i] if x[i] > 0 else 0


if numba is not None:
    _relu_backward_kernel = numba.njit(cache=True)(_relu_backward_kernel)


def relu_backward(top_diff, x) -> np.ndarray:
    """Gradient of max(x, 0): top_diff where x > 0, else 0; a new array in top_diff's dtype."""
    top = np.ascontiguousarray(top_diff)
    x = np.ascontiguousarray(x)
    if top.shape != x.shape:
        raise ValueError(f"ReLU backward: top_diff shape {top.shape} differs from the input shape {x.shape}")
    if numba is None:
        return np.where(x > 0, top, 0).astype(top.dtype, copy=False)
    out = np.empty_like(top)
    _relu_backward_kernel(top.reshape(-1), x.reshape(-1), out.reshape(-1))
    return out


def warm_up() -> None:
    """Compile every numba kernel for float32 and float64 once (``cache=True`` keeps them).

    ``grader.groups`` runs this in a trusted process so that sandboxed processes start
    from a private copy of the compiled cache instead of compiling for seconds each.
    """
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((1, 128, 6, 6)).astype(dtype)
        w = rng.standard_normal((128, 3, 3, 128)).astype(dtype)
        y = conv2d_forward(x, w, np.zeros(128, dtype), 1, 1)
        conv2d_backward_data(y, w, 1, 1, x.shape)
        out, arg = maxpool2d_forward_argmax(x, 2, 2)
        maxpool2d_backward(out, arg, 2, 2, x.shape)
        relu_backward(x, x)
