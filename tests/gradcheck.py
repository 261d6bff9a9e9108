"""Numerical gradient checking (centered differences), in the style of CS231n.

A layer's backward pass is correct when, for a random upstream gradient ``df``, the
vector-Jacobian product it returns matches

    dx[i] = sum((f(x + h e_i) - f(x - h e_i)) * df) / (2 h)

Use float64 inputs: with h = 1e-5 the truncation error is O(h^2) and the rounding
error O(eps / h), so a correct backward gives ``rel_error`` around 1e-8 or below, while a
wrong one gives errors of order 1e-1 .. 1.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def eval_numerical_gradient_array(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                                  df: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Gradient of ``sum(f(x) * df)`` with respect to ``x``, by centered differences.

    ``f`` maps an array shaped like ``x`` to an array shaped like ``df``. ``x`` is modified
    in place during the evaluation and restored before returning. Returns an array shaped
    like ``x``. Costs 2 * x.size evaluations of ``f``: keep ``x`` small.
    """
    if x.dtype != np.float64:
        raise TypeError(f"gradient checks need a float64 x (got {x.dtype}): float32 rounding "
                        "swamps the finite difference")
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        pos = np.array(f(x), dtype=np.float64, copy=True)
        x[ix] = old - h
        neg = np.array(f(x), dtype=np.float64, copy=True)
        x[ix] = old
        grad[ix] = np.sum((pos - neg) * df) / (2.0 * h)
        it.iternext()
    return grad


def eval_numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Gradient of a scalar function ``f`` at ``x`` by centered differences (shape of ``x``)."""
    return eval_numerical_gradient_array(lambda v: np.asarray(f(v), dtype=np.float64), x,
                                         np.ones((), dtype=np.float64), h)


def rel_error(x: np.ndarray, y: np.ndarray) -> float:
    """Largest elementwise relative error max |x - y| / max(1e-8, |x| + |y|)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"rel_error: shapes differ, {x.shape} vs {y.shape}")
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))
