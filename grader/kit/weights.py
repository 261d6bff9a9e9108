"""VGG19 weights for the kit: find them, fetch the real file, or generate synthetic ones.

Three kinds of weights file can feed the labs:

* ``real``: MatConvNet's ``imagenet-vgg-verydeep-19.mat`` (the file the book uses),
  recognised by its sha256.
* ``synthetic``: a deterministic, seeded VGG19 with the real file's layout, shapes and
  dtypes, written by :func:`write_synthetic`. It exercises every loading path when the
  real file is not available (CI, offline machines). Its class ids are the network's
  argmax and say nothing about the image.
* ``custom``: any other file (unverified).

Command line (``python -m grader.kit.weights ...`` or ``python -m grader weights ...``)::

    status              which weights the kit would use, their kind, hash and path
    synthetic [--force] write data/generated/vgg19_synthetic.mat
    fetch [--url URL]   download the real file into data/vgg19_data/ and verify it
    verify PATH         hash a file, say what it is and check its layout
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from grader.kit import paths
from grader.kit.vgg_layout import CONV_CHANNELS, MAT_LAYER_NAMES

REAL_SIZE = 576042600
REAL_SHA256 = "6416dee6bcdc380654d8770a5b89f06254b1e662c97cabc4094783b25f8a1211"
REAL_URL = "http://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat"
REAL_FILENAME = "imagenet-vgg-verydeep-19.mat"
SYNTHETIC_FILENAME = "vgg19_synthetic.mat"
ENV_VAR = "VGG19_MAT"

# Of seeds 0-39, the one whose network gives the three sample images three different
# top-1 classes with the widest top-1/top-2 margin (see LAYER_CONSTANTS).
DEFAULT_SEED = 3
# sha256 of write_synthetic(path) with DEFAULT_SEED and the full channel count.
SYNTHETIC_SHA256 = "b34dfe3eda974830bb0892b21624c3e9b162a75fc202b3208867d91eb51c550f"

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


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class WeightsInfo:
    """A weights file the kit found: where, what kind, and its fingerprint."""

    path: Path
    kind: str  # "real" | "synthetic" | "custom"
    sha256: str
    source: str  # "$VGG19_MAT" | "data/vgg19_data" | "synthetic"

    def short(self) -> str:
        return self.sha256[:12]

    def banner(self) -> str:
        if self.kind == "real":
            return f"weights: real MatConvNet VGG19 (sha256 {self.short()})"
        if self.kind == "synthetic":
            return (f"weights: SYNTHETIC VGG19 (deterministic, seed {DEFAULT_SEED}, sha256 {self.short()})"
                    " - class ids below are the network's argmax, NOT a classification of the image")
        return f"weights: unverified file {self.path} (sha256 {self.short()})"


def kind_of(sha256: str) -> str:
    if sha256 == REAL_SHA256:
        return "real"
    if sha256 == SYNTHETIC_SHA256:
        return "synthetic"
    return "custom"


def real_weights_path() -> Path:
    return paths.REAL_WEIGHTS_DIR / REAL_FILENAME


def synthetic_weights_path() -> Path:
    return paths.GENERATED_DIR / SYNTHETIC_FILENAME


def resolve_weights(generate: bool = True) -> WeightsInfo:
    """Find the weights the kit should use.

    Order: ``$VGG19_MAT``, then ``data/vgg19_data/imagenet-vgg-verydeep-19.mat``, then the
    synthetic file in ``data/generated/`` (written now when missing and ``generate``).
    """
    env_value = os.environ.get(ENV_VAR)
    if env_value:
        path = Path(env_value).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"${ENV_VAR} is set to {env_value!r}, but no file is there. Point ${ENV_VAR} at "
                f"{REAL_FILENAME}, or unset it to use {real_weights_path()} or the synthetic weights.")
        sha = sha256_file(path)
        return WeightsInfo(path.resolve(), kind_of(sha), sha, "$" + ENV_VAR)

    real = real_weights_path()
    if real.is_file():
        sha = sha256_file(real)
        return WeightsInfo(real.resolve(), kind_of(sha), sha, "data/vgg19_data")

    synthetic = synthetic_weights_path()
    if synthetic.is_file():
        sha = sha256_file(synthetic)
        if sha == SYNTHETIC_SHA256 or not generate:
            return WeightsInfo(synthetic.resolve(), kind_of(sha), sha, "synthetic")
        # A stale or damaged derived file: the generator is the source of truth.
        print(f"note: {synthetic} is not the current synthetic VGG19 (sha256 {sha[:12]}); "
              "regenerating it", file=sys.stderr)
    elif not generate:
        raise FileNotFoundError(
            "no VGG19 weights found. Looked for:\n"
            f"  ${ENV_VAR} (not set)\n"
            f"  {real}\n"
            f"  {synthetic}\n"
            "Run `source env.sh` or `python -m grader weights synthetic` to write the synthetic "
            "weights, or `python -m grader weights fetch` (online) for the real ones.")
    sha = write_synthetic(synthetic, progress=_stderr_fraction_progress("writing synthetic VGG19"))
    return WeightsInfo(synthetic.resolve(), kind_of(sha), sha, "synthetic")


def weights_for(path_arg: str | os.PathLike | None) -> WeightsInfo:
    """The weights a runner's ``--weights PATH`` names, else :func:`resolve_weights`'s choice."""
    if not path_arg:
        return resolve_weights()
    path = Path(path_arg).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {path.resolve()} not found (from --weights). Omit --weights to use ${ENV_VAR}, "
            f"{real_weights_path()} or the synthetic weights.")
    sha = sha256_file(path)
    return WeightsInfo(path.resolve(), kind_of(sha), sha, "--weights")


# --------------------------------------------------------------------------- hashing


def _hash_cache_path() -> Path:
    return paths.GENERATED_DIR / "hash-cache.json"


def _load_hash_cache() -> dict:
    try:
        with open(_hash_cache_path(), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _remember_hash(path: Path, sha: str) -> None:
    st = path.stat()
    # Forget files that are gone, so the cache does not grow with temporary files.
    cache = {k: v for k, v in _load_hash_cache().items() if os.path.exists(k)}
    cache[str(path.resolve())] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
    target = _hash_cache_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(cache, f, indent=1, sort_keys=True)
        os.replace(tmp, target)
    except OSError:
        # A read-only data folder only costs a re-hash next time.
        pass


def _hash_stream(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, cached by (absolute path, size, mtime_ns) so big files hash once."""
    path = Path(path)
    st = path.stat()
    entry = _load_hash_cache().get(str(path.resolve()))
    if (isinstance(entry, dict) and entry.get("size") == st.st_size
            and entry.get("mtime_ns") == st.st_mtime_ns and isinstance(entry.get("sha256"), str)):
        return entry["sha256"]
    sha = _hash_stream(path)
    _remember_hash(path, sha)
    return sha


# --------------------------------------------------------------------------- synthetic


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
    """
    import scipy.io  # deferred: `status` and `fetch` do not need scipy

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
        sha = _hash_stream(part)
        os.replace(part, path)
    finally:
        if part.exists():
            part.unlink()
    _remember_hash(path, sha)
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


# --------------------------------------------------------------------------- fetch


class FetchError(RuntimeError):
    """Downloading the real weights failed; the message says what to do instead."""


def _stderr_fraction_progress(label: str) -> ProgressFn:
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


class _DownloadProgress:
    """Percent, MB/s and ETA on a terminal; a line every ~10 % or 15 s otherwise."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled = total, enabled
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.start_bytes = None
        self.last_t = 0.0
        self.last_fraction = -1.0

    def __call__(self, done: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.start_bytes is None:
            self.start_bytes = done
        fraction = done / self.total if self.total else 1.0
        rate = (done - self.start_bytes) / max(now - self.t0, 1e-6)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        eta_text = f"{eta:5.0f} s" if eta != float("inf") else "    ? s"
        line = (f"{100 * fraction:5.1f} %  {done / 1e6:8.1f}/{self.total / 1e6:.1f} MB  "
                f"{rate / 1e6:6.2f} MB/s  ETA {eta_text}")
        if self.tty:
            if final or now - self.last_t > 0.2:
                print("\r" + line, end="\n" if final else "", file=sys.stderr, flush=True)
                self.last_t = now
        elif final or fraction - self.last_fraction >= 0.1 or now - self.last_t > 15:
            print(line, file=sys.stderr, flush=True)
            self.last_t, self.last_fraction = now, fraction


class _ShortRead(ConnectionError):
    """The server closed the connection before sending the promised Content-Length."""


def fetch_real(dest: Path | None = None, url: str = REAL_URL, size: int = REAL_SIZE,
               sha256: str = REAL_SHA256, retries: int = 5, progress: bool = True, *,
               backoff: float = 2.0, timeout: float = 60.0) -> Path:
    """Download the real VGG19 weights to ``dest`` and verify size and sha256.

    Bytes go to ``dest.part`` first; an existing partial file is resumed with a Range
    request (a server that answers 200 instead of 206 restarts it). Network errors are
    retried ``retries`` times, waiting ``backoff * 2**attempt`` seconds. Only a verified
    file is renamed to ``dest``; a wrong size or hash removes the partial file.
    """
    dest = Path(dest) if dest is not None else real_weights_path()
    part = dest.with_name(dest.name + ".part")
    host = urllib.parse.urlsplit(url).hostname or url
    show = _DownloadProgress(size, progress)
    instead = f"place the file yourself at {dest} or set ${ENV_VAR}"

    attempt = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if offset > size:
            part.unlink()
            offset = 0
        if offset == size:
            break
        try:
            _download_into(part, url, offset, size, timeout, show)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                # The server cannot serve that range, so the partial file is not a
                # prefix of its file: start over.
                part.unlink()
                continue
            if exc.code < 500 or attempt >= retries:
                raise FetchError(f"{url} answered HTTP {exc.code} {exc.reason}; {instead}") from exc
            problem = f"HTTP {exc.code}"
        except urllib.error.URLError as exc:
            # urlopen wraps failures before a response arrives: DNS, refused, timeout.
            if isinstance(exc.reason, socket.gaierror) or attempt >= retries:
                # A failed name lookup is what an offline machine looks like; retrying
                # it only makes the user wait.
                raise FetchError(f"cannot reach {host}: the machine seems offline "
                                 f"({exc.reason}); {instead}") from exc
            problem = str(exc.reason)
        except PermissionError as exc:
            raise FetchError(f"cannot write {part}: {exc}; choose a writable place with ${ENV_VAR}") from exc
        except (OSError, HTTPException) as exc:
            # The transfer broke off midway; the partial file stays for the next try.
            if attempt >= retries:
                raise FetchError(f"downloading {url} failed after {retries + 1} attempts ({exc!r}); "
                                 f"run the command again to resume from {part}, or {instead}") from exc
            problem = repr(exc)
        delay = backoff * (2 ** attempt)
        attempt += 1
        print(f"download problem ({problem}); retrying in {delay:.2f} s "
              f"(attempt {attempt + 1} of {retries + 1})", file=sys.stderr)
        time.sleep(delay)

    got_size = part.stat().st_size
    if got_size != size:
        part.unlink()
        raise FetchError(f"{url} delivered {got_size} bytes, but the VGG19 file has {size}; "
                         f"the partial file was removed and nothing was written to {dest}")
    got_sha = _hash_stream(part)
    if got_sha != sha256:
        part.unlink()
        raise FetchError(f"sha256 mismatch for {url}: got {got_sha}, expected {sha256}; "
                         f"the download was removed and nothing was written to {dest}")
    os.replace(part, dest)
    _remember_hash(dest, got_sha)
    return dest


def _download_into(part: Path, url: str, offset: int, size: int, timeout: float,
                   show: _DownloadProgress) -> None:
    headers = {"User-Agent": "aics-ch3-kit"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        part.parent.mkdir(parents=True, exist_ok=True)
        mode = "wb"
        if offset and resp.status == 206:
            content_range = resp.headers.get("Content-Range", "")
            if content_range.startswith(f"bytes {offset}-"):
                mode = "ab"
        # Any other answer (200, or a range that does not start where we stopped)
        # carries the whole file.
        start = offset if mode == "ab" else 0
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        done = start
        with open(part, mode) as f:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                show(done)
                if done > size:
                    break
        show(done, final=True)
        if expected is not None and done - start < expected and done <= size:
            # http.client returns b"" when the peer hangs up early instead of raising.
            raise _ShortRead(f"connection closed after {done - start} of {expected} bytes")


# --------------------------------------------------------------------------- command line


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader weights",
                                     description="Find, fetch, generate and verify VGG19 weights.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="which weights the kit would use")
    p_syn = sub.add_parser("synthetic", help=f"write {synthetic_weights_path()}")
    p_syn.add_argument("--force", action="store_true", help="rewrite even if the file is current")
    p_fetch = sub.add_parser("fetch", help=f"download the real weights to {real_weights_path()}")
    p_fetch.add_argument("--url", default=REAL_URL)
    p_verify = sub.add_parser("verify", help="hash a .mat file and check its layout")
    p_verify.add_argument("path", type=Path)
    args = parser.parse_args(argv)

    if args.command == "status":
        try:
            info = resolve_weights(generate=False)
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(info.banner())
        print(f"kind:   {info.kind}\nsource: {info.source}\nsha256: {info.sha256}\npath:   {info.path}")
        return 0

    if args.command == "synthetic":
        target = synthetic_weights_path()
        if target.is_file() and not args.force and sha256_file(target) == SYNTHETIC_SHA256:
            print(f"{target} is current (sha256 {SYNTHETIC_SHA256[:12]})")
            return 0
        t0 = time.monotonic()
        sha = write_synthetic(target, progress=_stderr_fraction_progress("writing synthetic VGG19"))
        print(f"wrote {target} in {time.monotonic() - t0:.1f} s (sha256 {sha})")
        if sha != SYNTHETIC_SHA256:
            print(f"warning: expected sha256 {SYNTHETIC_SHA256}; this numpy/scipy writes different "
                  "bytes, so goldens keyed by the synthetic fingerprint will not match", file=sys.stderr)
            return 1
        return 0

    if args.command == "fetch":
        try:
            dest = fetch_real(url=args.url)
        except FetchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"verified {dest} (sha256 {REAL_SHA256[:12]})")
        return 0

    # verify
    path: Path = args.path
    if not path.is_file():
        print(f"error: no file at {path}", file=sys.stderr)
        return 1
    sha = sha256_file(path)
    kind = kind_of(sha)
    print(f"{path}: {path.stat().st_size} bytes, sha256 {sha}, kind {kind}")
    if kind == "custom":
        problems = check_layout(path)
        for problem in problems:
            print(f"  layout: {problem}")
        if problems:
            return 1
        print("  layout: VGG19 in MatConvNet's layout (values unverified)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
