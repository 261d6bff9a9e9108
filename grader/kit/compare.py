"""Compare a submission's output with a golden: shape and dtype first, then values.

Everything here runs in the trusted grader process on plain float64 arrays that were
loaded with ``allow_pickle=False``, so nothing a student's module does (a custom
``__eq__``, a monkeypatched ``numpy.allclose``) can influence the verdict.

Tolerance rule, per element: ``|got - want| <= atol + rtol * |want|`` where
``atol = atol_scale * max|want|``. Scaling ``atol`` by the output's magnitude makes the
same rule fit a 1e-3-sized softmax and a 1e+3-sized pool5, and lets float32
implementations (relative rounding ~1e-6 per op) pass while an off-by-one window, a
missing bias or a transposed weight (errors of order the output itself) fail.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class CheckFailure(AssertionError):
    """A check failed; the message is written for the student."""


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol_scale: float

    def describe(self) -> str:
        return f"|got-want| <= {self.atol_scale:g}*max|want| + {self.rtol:g}*|want|"


# Documented in README (instructor section) and grader/checks/README.md.
LAYER_TOL = Tolerance(rtol=1e-4, atol_scale=1e-4)      # one layer, fp32 or fp64
NETWORK_TOL = Tolerance(rtol=1e-3, atol_scale=1e-3)    # 16 stacked layers in fp32
SOFTMAX_TOL = Tolerance(rtol=1e-3, atol_scale=1e-3)


def coerce(value, what: str) -> np.ndarray:
    """Turn a submission's output into a float64 ndarray or fail with a clear message."""
    if value is None:
        raise CheckFailure(f"{what}: got None (did the method forget to return its result?)")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CheckFailure(f"{what}: output of type {type(value).__name__} is not a numeric array ({exc})") from None
    return arr


def assert_close(got, want, what: str, tol: Tolerance) -> str:
    """Raise :class:`CheckFailure` unless ``got`` matches ``want``; return a summary when it does.

    The failure message names ``what`` (layer and case), both shapes, the worst element
    (index, got, want, abs and rel error), how many elements are off, and the tolerance.
    A single number (a loss, shape ``()`` or ``(1,)``) is told as "got X, expected Y".
    """
    got = coerce(got, what)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        hint = ""
        if got.size == want.size:
            hint = " (same number of elements: a reshape/transpose in the wrong order?)"
        raise CheckFailure(f"{what}: output shape {got.shape} but expected {want.shape}{hint}")
    if not np.all(np.isfinite(got)):
        bad = np.argwhere(~np.isfinite(got))[0]
        raise CheckFailure(f"{what}: output has non-finite values (first at index {tuple(int(i) for i in bad)}: "
                           f"{got[tuple(bad)]})")
    if want.size == 0:
        return f"{what}: empty output matches"
    scale = float(np.max(np.abs(want)))
    err = np.abs(got - want)
    limit = tol.atol_scale * scale + tol.rtol * np.abs(want)
    over = err > limit
    worst = np.unravel_index(int(np.argmax(err - limit)), err.shape)
    w_got, w_want, w_err = float(got[worst]), float(want[worst]), float(err[worst])
    w_rel = w_err / max(abs(w_want), 1e-300)
    if np.any(over) and want.size == 1:
        # One number: an index and an element count would only hide it.
        raise CheckFailure(f"{what}: value differs: got {w_got:.7g}, expected {w_want:.7g} "
                           f"(abs err {w_err:.3g}, rel err {w_rel:.3g}); tolerance {tol.describe()}")
    detail = (f"worst element at index {tuple(int(i) for i in worst)}: got {w_got:.7g}, want {w_want:.7g} "
              f"(abs err {w_err:.3g}, rel err {w_rel:.3g})")
    if np.any(over):
        raise CheckFailure(f"{what}: {int(over.sum())} of {over.size} elements differ; {detail}; "
                           f"tolerance {tol.describe()} with max|want| = {scale:.4g}")
    return f"{what}: matches, shape {want.shape}, max abs err {float(err.max()):.3g}"


def first_divergent_layer(outputs: dict, golden: dict, tol: Tolerance) -> str:
    """Name the first layer (in the golden's order) whose fingerprint differs, if any.

    Network drivers store, per layer, ``sample/<name>`` (a fixed sample of its output)
    and ``shape/<name>``; the same tolerance rule as :func:`assert_close` applies.
    """
    order = [k.split("/", 1)[1] for k in golden if k.startswith("sample/")]
    for layer in order:
        want, got = golden[f"sample/{layer}"], outputs.get(f"sample/{layer}")
        shape_got, shape_want = outputs.get(f"shape/{layer}"), golden.get(f"shape/{layer}")
        if got is None or shape_got is None:
            return f"first layer that differs: {layer} (no layer of that name)"
        if not np.array_equal(shape_got, shape_want):
            return (f"first layer that differs: {layer} (output shape {tuple(int(v) for v in shape_got)}, "
                    f"expected {tuple(int(v) for v in shape_want)})")
        scale = float(np.max(np.abs(want))) if want.size else 0.0
        if np.any(np.abs(got - want) > tol.atol_scale * scale + tol.rtol * np.abs(want)):
            return f"first layer that differs: {layer}"
    return ""
