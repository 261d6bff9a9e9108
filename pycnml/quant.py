"""Per-tensor int8 quantization as the DLP does it (position + scale).

A real value x is represented by an int8 code q with

    x ~= q * 2**position / scale,        q = clamp(round_half_away(x * scale / 2**position), -128, 127)

so one step (1 LSB) of the code is ``2**position / scale`` and the rounding error
of an in-range element is at most half of that.
"""
from __future__ import annotations

import math
from typing import Dict

import numpy as np

QMIN = -128
QMAX = 127
_POSITION_LIMIT = 32


class QuantParam:
    """Quantization parameters of one tensor: ``position`` (int) and ``scale`` (float).

    ``QuantParam()`` is (1, 1.0), as in the vendor module.
    """

    __slots__ = ("position", "scale")

    def __init__(self, position: int = 1, scale: float = 1.0):
        self.position = int(position)
        self.scale = float(scale)

    def step(self) -> float:
        """Size of one int8 code step (1 LSB): ``2**position / scale``."""
        return math.ldexp(1.0, self.position) / self.scale

    def __repr__(self) -> str:
        return f"QuantParam(position={self.position}, scale={self.scale!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantParam):
            return NotImplemented
        return self.position == other.position and self.scale == other.scale

    def __hash__(self) -> int:
        return hash((self.position, self.scale))


def quant_param_for_max(absmax: float) -> QuantParam:
    """The (position, scale) that maps ``absmax`` exactly to code 127.

    position = int(t) with t = log2(absmax/127), plus 1 when t > 0 (so the
    scale lands in [1, 2)); truncation is toward zero, clamped to +-32.
    """
    absmax = float(absmax)
    if not math.isfinite(absmax):
        raise ValueError(f"cannot quantize a tensor whose max |x| is {absmax}")
    if absmax == 0.0:
        return QuantParam(0, 1.0)
    t = math.log2(absmax / QMAX)
    if t > 0:
        t += 1
    position = max(-_POSITION_LIMIT, min(_POSITION_LIMIT, int(t)))
    scale = QMAX * math.ldexp(1.0, position) / absmax
    return QuantParam(position, scale)


class QuantTool:
    """Computes quant parameters from data, keeping a running max |x| per name.

    Calling ``getQuantParam`` on several calibration batches with the same
    layer name widens the range to the largest value seen so far.
    """

    def __init__(self):
        self._absmax: Dict[str, float] = {}

    def getQuantParam(self, data, layer_name: str) -> QuantParam:
        """``data``: array-like of any shape; returns the QuantParam for the running max."""
        arr = np.asarray(data, dtype=np.float64)
        current = float(np.max(np.abs(arr))) if arr.size else 0.0
        absmax = max(current, self._absmax.get(layer_name, 0.0))
        self._absmax[layer_name] = absmax
        return quant_param_for_max(absmax)

    def absmax(self, layer_name: str) -> float:
        """The running max |x| recorded for ``layer_name`` (KeyError if never seen)."""
        return self._absmax[layer_name]


def _round_half_away_into(v, a, t, r, m) -> None:
    """r[:] = v rounded half away from zero; a, t (float64) and m (bool) are scratch.

    ``floor(|v| + 0.5)`` alone is wrong for the double just below 0.5 (the sum
    rounds up to 1.0), so the result is corrected where it overshoots; every
    step is exact. Preallocated buffers avoid a page-faulting allocation per op.
    """
    np.abs(v, out=a)
    np.add(a, 0.5, out=r)
    np.floor(r, out=r)
    np.subtract(r, 0.5, out=t)
    np.less(a, t, out=m)
    np.subtract(r, 1.0, out=r, where=m)
    np.copysign(r, v, out=r)


def round_half_away(v: np.ndarray) -> np.ndarray:
    """Round float64 values to the nearest integer, ties away from zero. Exact; any shape."""
    v = np.asarray(v, dtype=np.float64)
    a, t, r = np.empty_like(v), np.empty_like(v), np.empty_like(v)
    _round_half_away_into(v, a, t, r, np.empty(v.shape, dtype=bool))
    return r


# Elements per slab in quantize: the slab's scratch buffers stay in cache.
_SLAB = 1 << 15


def quantize(x, qp: QuantParam, dtype=np.float32, fp16_first: bool = False) -> np.ndarray:
    """int8 codes of ``x`` (any shape) under ``qp``, held in ``dtype`` (integers, exact).

    Computed in float64: ``x * scale * 2**-position`` (the power-of-two factor
    is exact), clipped to [-128, 127] before rounding (same result as clamping
    after), rounded half away from zero. ``fp16_first`` rounds x to fp16 before
    (the device keeps mlp weights in fp16). Works in cache-sized slabs.
    """
    factor = float(qp.scale) * math.ldexp(1.0, -int(qp.position))
    x = np.asarray(x)
    if x.dtype not in (np.float16, np.float32, np.float64):
        x = x.astype(np.float64)
    x = np.ascontiguousarray(x)
    out = np.empty(x.shape, dtype=dtype)
    flat_in, flat_out = x.reshape(-1), out.reshape(-1)
    n = min(_SLAB, flat_in.size)
    v, a, t, r = (np.empty(n) for _ in range(4))
    m = np.empty(n, dtype=bool)
    h = np.empty(n, dtype=np.float16) if fp16_first else None
    for start in range(0, flat_in.size, _SLAB):
        src = flat_in[start:start + _SLAB]
        k = src.size
        if fp16_first:
            with np.errstate(over="ignore"):
                np.copyto(h[:k], src, casting="unsafe")
            src = h[:k]
        # dtype=float64 makes the product itself double precision, whatever src's type.
        np.multiply(src, factor, out=v[:k], dtype=np.float64)
        np.clip(v[:k], QMIN, QMAX, out=v[:k])
        _round_half_away_into(v[:k], a[:k], t[:k], r[:k], m[:k])
        flat_out[start:start + k] = r[:k]
    return out


def dequantize(q, qp: QuantParam) -> np.ndarray:
    """Real values (float64) of int8 codes ``q`` (any shape): ``q * 2**position / scale``."""
    return np.asarray(q, dtype=np.float64) * qp.step()
