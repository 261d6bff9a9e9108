"""The deterministic synthetic VGG19: a seeded stand-in for MatConvNet's weights file.

:func:`write_synthetic` writes a ``.mat`` with the real ``imagenet-vgg-verydeep-19.mat``'s
layout, shapes and dtypes, so every loading path of the labs runs without the real file
(CI, offline machines). ``source env.sh`` writes it on a student's machine through
``grader.kit.weights.resolve_weights``. Its class ids are the network's argmax and say
nothing about the image. :func:`check_layout` loads any ``.mat`` the way the book does and
lists how it differs from that layout.

The file holds two variables:

* ``layers``: a [1, 43] cell of 1x1 structs in :data:`LAYER_NAMES` order. Conv and fc
  entries carry ``weights`` = {weight [kh, kw, Cin, Cout] float32, bias [1, Cout] float32}
  (fc6 is a 7x7 convolution over pool5, fc7/fc8 are 1x1).
* ``normalization``: ``averageImage`` [224, 224, 3] float32 (:data:`IMAGE_MEAN` everywhere)
  and MatConvNet's other preprocessing fields.

This module reads nothing of the weights search (``grader.kit.weights`` imports it), so
its sha256 is an uncached stream hash; the caller records it in the hash cache.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from grader.kit.vgg_layout import CONV_CHANNELS, MAT_LAYER_NAMES

# Of seeds 0-39, the one whose network gives the three sample images three different
# top-1 classes with the widest top-1/top-2 margin (see LAYER_CONSTANTS).
DEFAULT_SEED = 3

# The 43 entries of MatConvNet's ``layers`` cell array, in file order. The book's own
# 44-name list inserts 'flatten' before fc6 and spells the last entry 'Softmax'.
LAYER_NAMES: tuple[str, ...] = MAT_LAYER_NAMES

# ImageNet mean colour of VGG19 (RGB); averageImage is this colour over a 224x224 image.
IMAGE_MEAN = (123.68, 116.779, 103.939)
IMAGE_SIZE = 224

# Per parameter layer: (gain, bias_scale).
#   weight ~ U(-a, a) with a = gain * sqrt(3) * sqrt(2 / fan_in)  (He scaling times gain)
#   bias   ~ U(-bias_scale, bias_scale)
# Chosen by experiment with a float32 forward pass on the kit's three images (chelsea,
# tubingen, starry_night; 224x224 bilinear, minus the mean). With gain 1 the 18 ReLU
# outputs keep 48-54 % non-zeros and a std within 0.9-1.8x of the input's; conv and fc
# biases of +-10 (about a tenth of a pre-activation's std) move pool5 by 11-18 % when
# dropped. fc8's gain sets the softmax temperature: 1.0 saturates it, 0.028 gives top-1
# probabilities of 0.21-0.48 and entropies of 2.0-3.5 nats on the three images, and its
# +-0.5 bias shifts those probabilities by a few points. They are fixed constants on
# purpose: calibrating on data at generation time would make the bytes depend on BLAS.
LAYER_CONSTANTS: dict[str, tuple[float, float]] = {
    "conv1_1": (1.0, 10.0), "conv1_2": (1.0, 10.0),
    "conv2_1": (1.0, 10.0), "conv2_2": (1.0, 10.0),
    "conv3_1": (1.0, 10.0), "conv3_2": (1.0, 10.0), "conv3_3": (1.0, 10.0), "conv3_4": (1.0, 10.0),
    "conv4_1": (1.0, 10.0), "conv4_2": (1.0, 10.0), "conv4_3": (1.0, 10.0), "conv4_4": (1.0, 10.0),
    "conv5_1": (1.0, 10.0), "conv5_2": (1.0, 10.0), "conv5_3": (1.0, 10.0), "conv5_4": (1.0, 10.0),
    "fc6": (1.0, 10.0), "fc7": (1.0, 10.0), "fc8": (0.028, 0.5),
}


# MAT-file text header (116 bytes). scipy writes the creation time there; a fixed text
# keeps the file byte-identical from run to run.
_MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, synthetic VGG19 for the AICS chapter-3 lab kit (deterministic)"

ProgressFn = Callable[[float], None]


# --------------------------------------------------------------------------- helpers


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 4 MiB chunks (no cache)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def stderr_progress(label: str) -> ProgressFn:
    """A progress callback (fraction 0..1) that prints ``label: NN %`` on stderr."""
    state = {"last": -1.0, "t": 0.0}
    tty = sys.stderr.isatty()

    def report(fraction: float) -> None:
        now = time.monotonic()
        if tty:
            if fraction >= 1.0 or now - state["t"] > 0.2:
                end = "\n" if fraction >= 1.0 else ""
                print(f"\r{label}: {100 * fraction:5.1f} %", end=end, file=sys.stderr, flush=True)
                state["t"] = now
        elif fraction >= 1.0 or fraction - state["last"] >= 0.25:
            print(f"{label}: {100 * fraction:.0f} %", file=sys.stderr, flush=True)
            state["last"] = fraction

    return report


# --------------------------------------------------------------------------- generator


def param_shapes(channels_divisor: int = 1) -> dict[str, tuple[int, int, int, int]]:
    """MatConvNet weight shapes [kh, kw, Cin, Cout] of the 19 parameter layers."""
    d = channels_divisor
    if d < 1 or any(c % d for pair in CONV_CHANNELS.values() for c in pair if c != 3) or 4096 % d:
        raise ValueError(f"channels_divisor must divide 64 and 4096, got {d}")
    shapes = {}
    for name, (cin, cout) in CONV_CHANNELS.items():
        shapes[name] = (3, 3, cin if cin == 3 else cin // d, cout // d)
    shapes["fc6"] = (7, 7, 512 // d, 4096 // d)
    shapes["fc7"] = (1, 1, 4096 // d, 4096 // d)
    shapes["fc8"] = (1, 1, 4096 // d, 1000)
    return shapes


def _uniform(bitgen, shape: tuple[int, ...], half_width: float) -> np.ndarray:
    """float32 draws from U(-half_width, half_width) built from raw PCG64 output.

    Raw 64-bit words are the one stream numpy promises never to change, and every step
    below is exact or a single IEEE-rounded float32 operation, so the values are the
    same on every machine and numpy version.
    """
    n = int(np.prod(shape))
    out = np.empty(n, dtype=np.float32)
    scale = np.float32(half_width)
    step = 1 << 24
    for start in range(0, n, step):
        stop = min(n, start + step)
        raw = bitgen.random_raw(stop - start)
        # 23 random bits -> odd multiples of 2**-23 in (-1, 1), exact in float32.
        k = (raw >> np.uint64(41)).astype(np.float32)
        u = (k + np.float32(0.5)) * np.float32(2.0 ** -22) - np.float32(1.0)
        np.multiply(u, scale, out=out[start:stop])
    return out.reshape(shape)


def synthetic_params(seed: int = DEFAULT_SEED, channels_divisor: int = 1
                     ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield (name, weight [kh,kw,Cin,Cout] float32, bias [1,Cout] float32) in file order."""
    bitgen = np.random.default_rng(seed).bit_generator
    for name, shape in param_shapes(channels_divisor).items():
        gain, bias_scale = LAYER_CONSTANTS[name]
        fan_in = shape[0] * shape[1] * shape[2]
        a = gain * np.sqrt(3.0) * np.sqrt(2.0 / fan_in)
        weight = _uniform(bitgen, shape, float(a))
        bias = _uniform(bitgen, (1, shape[3]), bias_scale)
        yield name, weight, bias


def _struct(fields: list[tuple[str, object]]) -> np.ndarray:
    """A 1x1 MATLAB struct with fields in the given order (savemat keeps dtype order)."""
    arr = np.empty((1, 1), dtype=[(name, object) for name, _ in fields])
    for name, value in fields:
        arr[0, 0][name] = value
    return arr


def _cell_row(items: list[np.ndarray]) -> np.ndarray:
    cell = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        cell[0, i] = item
    return cell


def _row(*values: float) -> np.ndarray:
    return np.array([values], dtype=np.float64)


def _layers_cell(params: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    # Field order follows MatConvNet's file: conv entries {weights, pad, type, name, stride}
    # (weights first, which the book's [0][0][0][0] indexing relies on); relu and softmax
    # entries carry no weights field.
    entries = []
    for name in LAYER_NAMES:
        if name in params:
            weight, bias = params[name]
            pad = _row(1, 1, 1, 1) if name.startswith("conv") else _row(0, 0, 0, 0)
            entries.append(_struct([("weights", _cell_row([weight, bias])), ("pad", pad),
                                    ("type", "conv"), ("name", name), ("stride", _row(1, 1))]))
        elif name.startswith("relu"):
            entries.append(_struct([("type", "relu"), ("name", name)]))
        elif name.startswith("pool"):
            entries.append(_struct([("name", name), ("stride", _row(2, 2)), ("pad", _row(0, 0, 0, 0)),
                                    ("type", "pool"), ("method", "max"), ("pool", _row(2, 2))]))
        else:
            entries.append(_struct([("type", "softmax"), ("name", name)]))
    return _cell_row(entries)


def _normalization() -> np.ndarray:
    # averageImage first: the book reads params['normalization'][0][0][0].
    average = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    average[...] = np.array(IMAGE_MEAN, dtype=np.float32)
    return _struct([("averageImage", average), ("keepAspect", _row(1)), ("border", _row(32, 32)),
                    ("imageSize", _row(IMAGE_SIZE, IMAGE_SIZE, 3)), ("interpolation", "bilinear")])


class _CountingWriter:
    """File wrapper that reports how many bytes savemat has written so far."""

    def __init__(self, f, expected: int, progress: ProgressFn | None, start: float, span: float):
        self._f, self._expected, self._progress = f, max(expected, 1), progress
        self._start, self._span, self._written = start, span, 0

    def write(self, data) -> int:
        n = self._f.write(data)
        self._written += len(data)
        if self._progress is not None and len(data) > (1 << 20):
            self._progress(self._start + self._span * min(1.0, self._written / self._expected))
        return n

    def __getattr__(self, name):
        return getattr(self._f, name)


def write_synthetic(path: Path, seed: int = DEFAULT_SEED, progress: ProgressFn | None = None,
                    channels_divisor: int = 1) -> str:
    """Write a synthetic VGG19 .mat in MatConvNet's layout; return its sha256.

    The bytes depend only on ``seed`` and ``channels_divisor`` (a divisor > 1 writes the
    same structure with fewer channels, for fast tests). The file appears atomically.
    ``progress`` gets fractions 0..1. The hash cache is not touched: use
    ``grader.kit.weights.write_synthetic_weights`` to write the kit's own file.
    """
    import scipy.io  # deferred: resolving existing weights does not need scipy

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda fraction: None)
    shapes = param_shapes(channels_divisor)
    total = sum(int(np.prod(s)) + s[3] for s in shapes.values())

    params: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    done = 0
    report(0.0)
    for name, weight, bias in synthetic_params(seed, channels_divisor):
        params[name] = (weight, bias)
        done += weight.size + bias.size
        report(0.5 * done / total)

    mdict = {"layers": _layers_cell(params), "normalization": _normalization()}
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        with open(part, "w+b") as raw:
            writer = _CountingWriter(raw, 4 * total, progress, 0.5, 0.45)
            scipy.io.savemat(writer, mdict, format="5", do_compression=False, oned_as="row")
            raw.seek(0)
            raw.write(_MAT_HEADER_TEXT.ljust(116, b" "))
            raw.flush()
            os.fsync(raw.fileno())
        del params, mdict
        sha = file_sha256(part)
        os.replace(part, path)
    finally:
        if part.exists():
            part.unlink()
    report(1.0)
    return sha


# --------------------------------------------------------------------------- layout check


def check_layout(path: str | os.PathLike, channels_divisor: int = 1) -> list[str]:
    """Load a .mat the way the book does and list every way it differs from VGG19's layout."""
    import scipy.io

    problems: list[str] = []
    try:
        params = scipy.io.loadmat(str(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure is the finding
        return [f"scipy.io.loadmat cannot read {path}: {exc}"]
    if "layers" not in params or "normalization" not in params:
        found = sorted(k for k in params if not k.startswith("__"))
        return [f"{path} has no 'layers'/'normalization' variables (found {found})"]
    layers = params["layers"]
    if layers.shape != (1, len(LAYER_NAMES)):
        return [f"'layers' has shape {layers.shape}, expected (1, {len(LAYER_NAMES)})"]
    for name, shape in param_shapes(channels_divisor).items():
        file_idx = LAYER_NAMES.index(name)
        try:
            weight, bias = layers[0][file_idx][0][0][0][0]
        except Exception as exc:  # noqa: BLE001
            problems.append(f"layers[0][{file_idx}] ({name}): the book's [0][0][0][0] indexing fails: {exc}")
            continue
        if weight.shape != shape:
            problems.append(f"{name}: weight shape {weight.shape}, expected {shape}")
        if bias.size != shape[3]:
            problems.append(f"{name}: bias has {bias.size} values, expected {shape[3]}")
        elif name.startswith("fc") and bias.shape != (1, shape[3]):
            # The book hands fc biases to FullyConnectedLayer unreshaped; a column
            # vector would broadcast a [1, n] output into [n, n].
            problems.append(f"{name}: bias shape {bias.shape}, expected the row vector (1, {shape[3]})")
        if weight.dtype != np.float32 or bias.dtype != np.float32:
            problems.append(f"{name}: dtypes {weight.dtype}/{bias.dtype}, expected float32")
    try:
        average = params["normalization"][0][0][0]
        if average.ndim != 3 or average.shape[2] != 3:
            problems.append(f"normalization.averageImage has shape {average.shape}, expected HxWx3")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"params['normalization'][0][0][0] fails: {exc}")
    return problems

