"""VGG19 weights for the kit: which file to use, and its fingerprint.

Three kinds of weights file can feed the labs:

* ``real``: MatConvNet's ``imagenet-vgg-verydeep-19.mat`` (the file the book uses),
  recognised by its sha256.
* ``synthetic``: the deterministic, seeded VGG19 of :mod:`grader.kit.synthetic`, with the
  real file's layout, shapes and dtypes. It exercises every loading path when the real
  file is not available (CI, offline machines). Its class ids are the network's argmax
  and say nothing about the image.
* ``custom``: any other file (unverified).

:func:`resolve_weights` picks the file (``$VGG19_MAT``, ``data/vgg19_data/``, else the
synthetic file, written on first use); :func:`sha256_file` fingerprints it with a cache in
``data/generated/hash-cache.json``. The instructor's command line (``python -m grader
weights status|synthetic|fetch|verify``) lives in ``grader.authoring.weights_cli``.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from grader.kit import paths
# DEFAULT_SEED, IMAGE_MEAN and IMAGE_SIZE are the generator's; they are part of this
# module's interface too, so they are imported under their own names.
from grader.kit.synthetic import (DEFAULT_SEED, ProgressFn, file_sha256,
                                  stderr_progress, write_synthetic)

REAL_SIZE = 576042600
REAL_SHA256 = "6416dee6bcdc380654d8770a5b89f06254b1e662c97cabc4094783b25f8a1211"
REAL_URL = "http://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat"
REAL_FILENAME = "imagenet-vgg-verydeep-19.mat"
SYNTHETIC_FILENAME = "vgg19_synthetic.mat"
ENV_VAR = "VGG19_MAT"

# sha256 of grader.kit.synthetic.write_synthetic(path) with DEFAULT_SEED and the full
# channel count.
SYNTHETIC_SHA256 = "b34dfe3eda974830bb0892b21624c3e9b162a75fc202b3208867d91eb51c550f"


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
        return _weights_at(Path(env_value).expanduser(), "$" + ENV_VAR,
                           f"${ENV_VAR} is set to {env_value!r}, but no file is there. Point ${ENV_VAR} at "
                           f"{REAL_FILENAME}, or unset it to use {real_weights_path()} or the synthetic weights.")

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
    sha = write_synthetic_weights(synthetic, progress=stderr_progress("writing synthetic VGG19"))
    return WeightsInfo(synthetic.resolve(), kind_of(sha), sha, "synthetic")


def write_synthetic_weights(path: str | os.PathLike | None = None,
                            progress: ProgressFn | None = None) -> str:
    """Write the kit's synthetic VGG19 (default seed, full size) and record its sha256.

    ``path`` defaults to ``data/generated/vgg19_synthetic.mat``. Returns the sha256, which
    is :data:`SYNTHETIC_SHA256` unless numpy or scipy write different bytes.
    """
    target = Path(path) if path is not None else synthetic_weights_path()
    sha = write_synthetic(target, seed=DEFAULT_SEED, progress=progress)
    remember_sha256(target, sha)
    return sha


def weights_for(path_arg: str | os.PathLike | None) -> WeightsInfo:
    """The weights a runner's ``--weights PATH`` names, else :func:`resolve_weights`'s choice."""
    if not path_arg:
        return resolve_weights()
    path = Path(path_arg).expanduser()
    return _weights_at(path, "--weights",
                       f"weights file {path.resolve()} not found (from --weights). Omit --weights to use "
                       f"${ENV_VAR}, {real_weights_path()} or the synthetic weights.")


def _weights_at(path: Path, source: str, missing: str) -> WeightsInfo:
    """The weights file a user named (``source``); FileNotFoundError(``missing``) when absent."""
    if not path.is_file():
        raise FileNotFoundError(missing)
    sha = sha256_file(path)
    return WeightsInfo(path.resolve(), kind_of(sha), sha, source)


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


def remember_sha256(path: str | os.PathLike, sha: str) -> None:
    """Record ``sha`` as the sha256 of ``path`` at its current size and mtime.

    For a file whose bytes were just hashed while writing it, so that
    :func:`sha256_file` need not read it again.
    """
    path = Path(path)
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


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, cached by (absolute path, size, mtime_ns) so big files hash once."""
    path = Path(path)
    st = path.stat()
    entry = _load_hash_cache().get(str(path.resolve()))
    if (isinstance(entry, dict) and entry.get("size") == st.st_size
            and entry.get("mtime_ns") == st.st_mtime_ns and isinstance(entry.get("sha256"), str)):
        return entry["sha256"]
    sha = file_sha256(path)
    remember_sha256(path, sha)
    return sha


