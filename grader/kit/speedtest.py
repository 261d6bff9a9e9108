"""Experiment 3.3's speed test: the book's loop layers against the speed-up layers.

One 3x3 convolution ``ConvolutionalLayer(3, C, C, 1, 1, type)`` and one 2x2 max pooling
``MaxPoolingLayer(2, 2, type)`` from the submission's ``layers_2``, on the same seeded
float64 input: ``forward_raw`` / ``backward_raw`` on a type-0 layer, ``forward_speedup``
/ ``backward_speedup`` on a type-1 layer. The speed-up path is called once, untimed,
before it is timed, so that a compiled (numba) or cached path pays its set-up outside
the measurement. The runner prints :func:`run_speed_test`'s result, timed in its own
process for the student's information.

The grader does not trust a clock in the student's process. Its driver calls
:func:`run_timed_speed_test` instead: the same layers and warm-up, but each timed forward
runs on a fresh input that the grader sends only when it starts its own clock
(:mod:`grader.kit.timing`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

# The kit's speed-test shape, N, C, H, W (runner and grader).
SPEED_SHAPE = (1, 256, 24, 40)
SPEED_SEED = 1234
CONV_KERNEL, POOL_KERNEL = 3, 2
# Raw and speed-up agree when the mean squared difference is below this (the kit's criterion).
AGREE_MSE = 0.003

PATHS = (("raw", 0, "forward_raw", "backward_raw"), ("speedup", 1, "forward_speedup", "backward_speedup"))

# progress(kind, path, direction, seconds): kind "conv" or "pool", path "raw" or
# "speedup", direction "forward" or "backward"; called as each timing is taken.
Progress = Callable[[str, str, str, float], None]


def speed_inputs(shape=SPEED_SHAPE, seed: int = SPEED_SEED) -> dict[str, np.ndarray]:
    """Seeded float64 test data for ``shape`` = (N, C, H, W).

    input [N, C, H, W]; weight [C, 3, 3, C] (He-scaled, so outputs stay of order 1) and
    bias [C] for the conv; conv_top_diff [N, C, H, W] (padding 1 keeps H, W);
    pool_top_diff [N, C, H', W'] with H' = (H - 2) // 2 + 1, W' likewise.
    """
    n, c, h, w = (int(v) for v in shape)
    rng = np.random.default_rng(seed)
    k = CONV_KERNEL
    return {
        "input": rng.standard_normal((n, c, h, w)),
        "weight": rng.standard_normal((c, k, k, c)) * np.sqrt(2.0 / (k * k * c)),
        "bias": 0.1 * rng.standard_normal(c),
        "conv_top_diff": rng.standard_normal((n, c, h, w)),
        "pool_top_diff": rng.standard_normal((n, c, (h - POOL_KERNEL) // POOL_KERNEL + 1,
                                              (w - POOL_KERNEL) // POOL_KERNEL + 1)),
    }


@dataclass
class PathTiming:
    """One path (raw or speed-up) of one layer kind."""
    output: np.ndarray                 # forward output, float64 copy
    forward_seconds: float
    bottom_diff: np.ndarray | None     # backward output, float64 copy (None when not timed)
    backward_seconds: float | None


@dataclass
class Agreement:
    """Raw against speed-up in one direction."""
    direction: str
    raw_shape: tuple
    fast_shape: tuple
    max_abs: float | None              # None when the shapes differ
    mse: float | None

    @property
    def agree(self) -> bool:
        return self.mse is not None and self.mse < AGREE_MSE


def _ratio(slow: float | None, fast: float | None) -> float | None:
    if slow is None or fast is None:
        return None
    return slow / max(fast, 1e-9)


def _agreement(direction: str, raw: np.ndarray, fast: np.ndarray) -> Agreement:
    if raw.shape != fast.shape:
        return Agreement(direction, raw.shape, fast.shape, None, None)
    diff = raw - fast
    return Agreement(direction, raw.shape, fast.shape, float(np.max(np.abs(diff))), float(np.mean(np.square(diff))))


@dataclass
class LayerSpeed:
    kind: str                          # "conv" or "pool"
    raw: PathTiming
    fast: PathTiming

    @property
    def forward_ratio(self) -> float:
        return self.raw.forward_seconds / max(self.fast.forward_seconds, 1e-9)

    @property
    def backward_ratio(self) -> float | None:
        return _ratio(self.raw.backward_seconds, self.fast.backward_seconds)

    def agreement(self) -> list[Agreement]:
        found = [_agreement("forward", self.raw.output, self.fast.output)]
        if self.raw.bottom_diff is not None and self.fast.bottom_diff is not None:
            found.append(_agreement("backward", self.raw.bottom_diff, self.fast.bottom_diff))
        return found

    @property
    def ok(self) -> bool:
        return all(a.agree for a in self.agreement())


@dataclass
class SpeedTest:
    shape: tuple
    conv: LayerSpeed
    pool: LayerSpeed

    @property
    def ok(self) -> bool:
        return self.conv.ok and self.pool.ok

    def arrays(self) -> dict[str, np.ndarray]:
        """The driver's outputs: times [conv raw, conv speedup, pool raw, pool speedup] forward
        seconds, and the four forward outputs (conv [N, C, H, W], pool [N, C, H', W'])."""
        return {"times": np.array([self.conv.raw.forward_seconds, self.conv.fast.forward_seconds,
                                   self.pool.raw.forward_seconds, self.pool.fast.forward_seconds]),
                "conv_raw": self.conv.raw.output, "conv_fast": self.conv.fast.output,
                "pool_raw": self.pool.raw.output, "pool_fast": self.pool.fast.output}


def _timed(fn, arg) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = fn(arg)
    seconds = time.perf_counter() - start
    # A float64 copy: a layer may reuse its output buffer on its next call.
    return np.array(result, dtype=np.float64), seconds


def _time_layer(kind: str, make_layer, data: np.ndarray, top_diff: np.ndarray, backward: bool,
                progress: Progress | None) -> LayerSpeed:
    timings = {}
    for path, layer_type, forward_name, backward_name in PATHS:
        layer = make_layer(layer_type)
        forward, backward_fn = getattr(layer, forward_name), getattr(layer, backward_name)
        if layer_type == 1:
            forward(data)
            if backward:
                backward_fn(top_diff)
        output, t_forward = _timed(forward, data)
        if progress is not None:
            progress(kind, path, "forward", t_forward)
        bottom_diff = t_backward = None
        if backward:
            bottom_diff, t_backward = _timed(backward_fn, top_diff)
            if progress is not None:
                progress(kind, path, "backward", t_backward)
        timings[path] = PathTiming(output, t_forward, bottom_diff, t_backward)
    return LayerSpeed(kind, timings["raw"], timings["speedup"])


def run_speed_test(layers_2, shape=SPEED_SHAPE, seed: int = SPEED_SEED, backward: bool = True,
                   progress: Progress | None = None) -> SpeedTest:
    """Time the submission's ``layers_2`` loop and speed-up conv and pool on ``shape``.

    shape (N, C, H, W): the conv is C -> C, kernel 3, padding 1, stride 1; the pooling
    2x2, stride 2. ``backward=False`` times the forward passes only (the grader's check
    needs only those). Conv first, then pool; within each, raw then speed-up.
    """
    shape = tuple(int(v) for v in shape)
    x = speed_inputs(shape, seed)
    channels = shape[1]

    def make_conv(layer_type):
        conv = layers_2.ConvolutionalLayer(CONV_KERNEL, channels, channels, 1, 1, layer_type)
        conv.init_param()
        conv.load_param(x["weight"], x["bias"])
        return conv

    def make_pool(layer_type):
        return layers_2.MaxPoolingLayer(POOL_KERNEL, POOL_KERNEL, layer_type)

    conv = _time_layer("conv", make_conv, x["input"], x["conv_top_diff"], backward, progress)
    pool = _time_layer("pool", make_pool, x["input"], x["pool_top_diff"], backward, progress)
    return SpeedTest(shape, conv, pool)


# The calls the grader times, in the order the driver asks for them; the grader's case
# says how many of each (its params["timed_calls"]).
TIMED_LABELS = ("conv_raw", "conv_fast", "pool_raw", "pool_fast")


def run_timed_speed_test(layers_2, calls, counts: dict[str, int], shape=SPEED_SHAPE,
                         seed: int = SPEED_SEED) -> int:
    """Forward passes for the grader to time; returns how many timed calls were made.

    ``calls`` is a :class:`grader.kit.timing.TimedCalls`; ``counts`` maps each label of
    :data:`TIMED_LABELS` to how many calls of it the grader plans. Before asking for any
    timed input, each layer is built (and the conv's weight [C, 3, 3, C] and bias [C]
    loaded, from :func:`speed_inputs`), and each speed-up layer runs one untimed warm-up
    forward on the seeded input [N, C, H, W]. The timed inputs have that shape too.
    """
    shape = tuple(int(v) for v in shape)
    x = speed_inputs(shape, seed)
    channels = shape[1]
    done = 0
    for kind in ("conv", "pool"):
        for _path, layer_type, forward_name, _ in PATHS:
            label = f"{kind}_{'raw' if layer_type == 0 else 'fast'}"
            if kind == "conv":
                layer = layers_2.ConvolutionalLayer(CONV_KERNEL, channels, channels, 1, 1, layer_type)
                layer.init_param()
                layer.load_param(x["weight"], x["bias"])
            else:
                layer = layers_2.MaxPoolingLayer(POOL_KERNEL, POOL_KERNEL, layer_type)
            forward = getattr(layer, forward_name)
            if layer_type == 1:
                forward(x["input"])
            for _ in range(int(counts.get(label, 0))):
                calls.call(label, forward)
                done += 1
    return done

