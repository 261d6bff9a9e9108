"""Hints for common mistakes, found by making the mistake on purpose and seeing if it fits.

Runs in the trusted parent after a comparison failed. For a conv, pool or softmax case the
grader redoes the case's computation from the case's own inputs with one typical mistake
built in (kernel transposed, stride ignored, ...); only when the submission's output
matches that recomputation within the check's tolerance is the mistake named. A constant
ratio got/want (a missing or extra factor of a formula) and a flipped sign are read from
the two arrays directly. A hint says "looks like ...": it is a clue, never the verdict,
and no hint is better than a wrong one.

Every function takes float64 arrays; nothing here runs student code.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from grader.kit.compare import Tolerance

CONV_KINDS = ("conv_forward", "conv_raw", "conv_fast")
POOL_KINDS = ("pool_forward", "pool_raw", "pool_fast")
# Arrays above this many elements get the cheap hints only (ratio, sign, zeros).
MAX_RECOMPUTE_ELEMENTS = 2_000_000

# Where a missing or extra constant factor comes from, per (case kind, output key).
FACTOR_HINTS = {
    ("content_loss", "loss"): "check the 1/(2NCHW) factor of formula 3.10",
    ("content_loss", "bottom_diff"): "check the 1/(NCHW) factor of formula 3.11",
    ("style_loss", "loss"): "check the 1/(4 N C^2 H^2 W^2) factor of formula 3.13",
    ("style_loss", "bottom_diff"): "check the 1/(N C^2 H^2 W^2) factor of formula 3.15",
    ("softmax_forward", "output"): "each row of a softmax must sum to 1",
}
SIGN_HINTS = {
    "content_loss": "formula 3.11 takes X - Y (the image's features minus the content's)",
    "style_loss": "formula 3.15 takes G - A (the image's Gram matrix minus the style's)",
}


# ----- the book's layers in float64, for the recomputations ---------------------------

def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, pad: int, stride: int) -> np.ndarray:
    """The book's convolution: x [N, C, H, W], weight [C, K, K, Cout], bias [Cout]
    -> [N, Cout, (H + 2p - K) // s + 1, (W + 2p - K) // s + 1]."""
    k = weight.shape[1]
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]   # [N, C, Ho, Wo, K, K]
    out = np.tensordot(windows, weight, axes=([1, 4, 5], [0, 1, 2]))                        # [N, Ho, Wo, Cout]
    return out.transpose(0, 3, 1, 2) + np.reshape(bias, (1, -1, 1, 1))


def pool2d(x: np.ndarray, k: int, stride: int, reduce=np.max) -> np.ndarray:
    """Pooling over K x K windows: x [N, C, H, W] -> [N, C, (H - K) // s + 1, (W - K) // s + 1]."""
    windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]       # [N, C, Ho, Wo, K, K]
    return reduce(windows, axis=(4, 5))


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """Softmax of x along ``axis``, shifted by the maximum (any shape)."""
    shifted = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return shifted / np.sum(shifted, axis=axis, keepdims=True)


# ----- comparisons ----------------------------------------------------------------------

def matches(got: np.ndarray, alt: np.ndarray, tol: Tolerance) -> bool:
    """``got`` equals ``alt`` by the comparison's own rule (shapes equal, every element close)."""
    if got.shape != alt.shape or not np.all(np.isfinite(alt)):
        return False
    scale = float(np.max(np.abs(alt))) if alt.size else 0.0
    return bool(np.all(np.abs(got - alt) <= tol.atol_scale * scale + tol.rtol * np.abs(alt)))


def simple_factor(c: float) -> str:
    """``"2"`` or ``"1/240"`` when ``c`` or ``1/c`` is an integer (to 1e-4), else ``""``."""
    for value, form in ((c, "{}"), (1.0 / c if c else 0.0, "1/{}")):
        n = round(abs(value))
        if n >= 2 and abs(abs(value) - n) <= 1e-4 * n:
            return ("-" if value < 0 else "") + form.format(n)
    return ""


def constant_ratio(got: np.ndarray, want: np.ndarray, tol: Tolerance) -> float | None:
    """The constant c with got = c * want everywhere (within ``tol``), or None."""
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    if scale == 0.0:
        return None
    big = np.abs(want) > 1e-2 * scale
    c = float(np.median(got[big] / want[big]))
    if not np.isfinite(c) or c == 0.0 or not matches(got, c * want, tol):
        return None
    return c


# ----- the hints ------------------------------------------------------------------------

def ratio_hint(kind: str, key: str, got: np.ndarray, want: np.ndarray, tol: Tolerance, hidden: bool) -> str:
    """A flipped sign or a constant factor between the output and the golden."""
    c = constant_ratio(got, want, tol)
    if c is None or abs(c - 1.0) <= 1e-6:
        return ""
    if abs(c + 1.0) <= 1e-3:
        extra = SIGN_HINTS.get(kind, "")
        return "looks like a sign flip: got/want = -1.000" + (f"; {extra}" if extra else "")
    factor = simple_factor(c)
    if hidden and not factor:
        return ""   # a hidden case's odd ratio would tell its golden
    shown = f"{c:.3f}" if 0.01 <= abs(c) < 1e4 else f"{c:.4g}"
    text = f"looks like a constant factor: got/want = {shown}" + (f" (= {factor})" if factor and "/" in factor else "")
    if factor:
        where = "for every element" if want.size > 1 else "for the value"
        text += f" {where}"
        hint = FACTOR_HINTS.get((kind, key))
        if hint:
            text += f"; {hint}"
    return text


def conv_hint(case, got: np.ndarray, want: np.ndarray, tol: Tolerance) -> str:
    """Recompute the case's conv with a typical mistake; name the one the output matches."""
    x, weight, bias = (np.asarray(case.inputs[k], dtype=np.float64) for k in ("input", "weight", "bias"))
    pad, stride = int(case.params["pad"]), int(case.params["stride"])
    tries = []
    if got.shape == want.shape:
        if weight.shape[1] > 1:
            tries.append(("the kernel is transposed (kh and kw swapped: weight[:, j, i, :] used for "
                          "weight[:, i, j, :])", dict(weight=weight.transpose(0, 2, 1, 3))))
            tries.append(("the kernel is flipped (rotated 180 degrees): the book's convolution is a "
                          "cross-correlation, the kernel is used as it is (formula 3.1)",
                          dict(weight=weight[:, ::-1, ::-1, :])))
        if np.any(bias != 0):
            tries.append(("the bias is not added", dict(bias=np.zeros_like(bias))))
    else:
        if stride != 1:
            tries.append((f"the stride is ignored (the windows move by 1, not by stride = {stride})",
                          dict(stride=1)))
        if pad != 0:
            tries.append((f"the padding is ignored (the input needs {pad} zero rows and columns on each side)",
                          dict(pad=0)))
        if stride != 1 and pad != 0:
            tries.append(("both the stride and the padding are ignored", dict(stride=1, pad=0)))
    for words, change in tries:
        args = dict(weight=weight, bias=bias, pad=pad, stride=stride) | change
        if matches(got, conv2d(x, args["weight"], args["bias"], args["pad"], args["stride"]), tol):
            return f"looks like {words}"
    return ""


def pool_hint(case, got: np.ndarray, want: np.ndarray, tol: Tolerance) -> str:
    """Recompute the case's max pooling with a typical mistake; name the one the output matches."""
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    k, stride = int(case.params["k"]), int(case.params["stride"])
    if got.shape != want.shape and stride != 1 and matches(got, pool2d(x, k, 1), tol):
        return f"looks like the stride is ignored (the windows move by 1, not by stride = {stride})"
    if got.shape == want.shape and matches(got, pool2d(x, k, stride, np.mean), tol):
        return "looks like average pooling: max pooling takes the largest value of each window (formula 3.7)"
    return ""


def softmax_hint(case, got: np.ndarray, want: np.ndarray, tol: Tolerance) -> str:
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    if got.shape == x.shape and x.ndim == 2 and matches(got, softmax(x, axis=0), tol):
        return "looks like the softmax runs over axis 0 (the batch); each row (axis 1) is one sample's scores"
    return ""


def size_hint(kind: str, got: np.ndarray, want: np.ndarray) -> str:
    """An output one row or column too large or small: name the output-size formula."""
    if got.ndim != 4 or want.ndim != 4 or got.shape[:2] != want.shape[:2]:
        return ""
    diffs = [g - w for g, w in zip(got.shape[2:], want.shape[2:])]
    if not any(diffs) or any(abs(d) > 1 for d in diffs):
        return ""
    sides = [name for name, d in zip(("height", "width"), diffs) if d]
    more = "one more" if any(d > 0 for d in diffs) else "one less"
    formula = ("(H + 2p - k) // s + 1" if kind in CONV_KINDS else "(H - k) // s + 1")
    return f"the output {' and '.join(sides)} is off by one ({more}); the book's size is {formula}"


def diagnose(case, key: str, got, want, tol: Tolerance) -> str:
    """A hint for a failed comparison of output ``key`` of ``case``, or ``""``.

    ``got`` and ``want`` are the submission's and the golden's arrays (any shape);
    ``case`` is the :class:`grader.experiments.Case` whose inputs the recomputations use.
    """
    try:
        got = np.asarray(got, dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
    except (TypeError, ValueError):
        return ""
    if not np.all(np.isfinite(got)) or got.size > MAX_RECOMPUTE_ELEMENTS:
        return ""
    kind = case.kind
    hints = []
    if got.shape == want.shape and got.size and not np.any(got) and np.any(want):
        return "the output is all zeros: is the result written into the array that is returned?"
    if got.shape == want.shape:
        hints.append(ratio_hint(kind, key, got, want, tol, case.hidden))
    if key == "output" and not any(hints):
        if kind in CONV_KINDS and {"input", "weight", "bias"} <= set(case.inputs):
            hints.append(conv_hint(case, got, want, tol))
        elif kind in POOL_KINDS and "input" in case.inputs:
            hints.append(pool_hint(case, got, want, tol))
        elif kind == "softmax_forward" and "input" in case.inputs:
            hints.append(softmax_hint(case, got, want, tol))
    if key == "output" and kind in CONV_KINDS + POOL_KINDS and got.shape != want.shape and not any(hints):
        hints.append(size_hint(kind, got, want))
    return "; ".join(h for h in hints if h)
