"""``?gemm`` of the OpenBLAS library numpy loaded, called through ctypes.

numpy's ``matmul`` cannot accumulate into its output (``beta = 1``), which the
shifted-GEMM and Winograd convolutions need; calling the ``cblas`` interface of the
same library numpy uses keeps the same kernels and threads. :func:`cblas` finds that
library, checks it on a small product and returns ``None`` when it is missing (numpy
built on MKL or Accelerate, a platform without ``/proc/self/maps``) or switched off
with ``AICS_FASTOPS_NO_CBLAS=1``; the callers then take their pure-numpy paths.

Speed note: OpenBLAS chooses its kernels from the CPU it detects. Some recent CPUs
with AVX-512 are detected as "Haswell" (AVX2), which halves the GEMM throughput;
``OPENBLAS_CORETYPE=SkylakeX`` set before numpy is imported fixes it. The detected core
is part of :func:`backend_info`.
"""
from __future__ import annotations

import ctypes
import os
from functools import lru_cache

import numpy as np

__all__ = ["DISABLE_ENV", "Cblas", "cblas", "disabled", "backend_info"]

# Setting this variable to 1 forces the pure-numpy paths (used by the tests).
DISABLE_ENV = "AICS_FASTOPS_NO_CBLAS"

_CBLAS_ROW_MAJOR = 101
_CBLAS_NO_TRANS = 111
_CBLAS_TRANS = 112


class Cblas:
    """``?gemm`` of one shared library, for float32 and float64."""

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


def _self_test(blas: Cblas) -> bool:
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


def disabled() -> bool:
    """True when ``AICS_FASTOPS_NO_CBLAS`` asks for the pure-numpy paths."""
    return os.environ.get(DISABLE_ENV, "") not in ("", "0")


@lru_cache(maxsize=1)
def cblas() -> Cblas | None:
    """The checked BLAS binding, or None (see the module docstring).

    Looked up once per process; ``cblas.cache_clear()`` makes the next call look again
    (after changing ``AICS_FASTOPS_NO_CBLAS``, as the tests do).
    """
    if disabled():
        return None
    for path in _loaded_blas_paths():
        try:
            blas = Cblas(path)
        except OSError:
            continue
        if _self_test(blas):
            return blas
    return None


def backend_info() -> str:
    """One line naming the GEMM path in use: the library and OpenBLAS core, or why numpy's."""
    blas = cblas()
    if blas is None and disabled():
        return f"numpy matmul + im2col ({DISABLE_ENV} is set)"
    if blas is None:
        return "numpy matmul + im2col (numpy's BLAS has no cblas this module can call)"
    return f"cblas via ctypes: {os.path.basename(blas.path)}, OpenBLAS core {blas.corename}"
