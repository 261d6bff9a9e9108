"""Which int8 quant-parameter file experiment 3.2 uses with which VGG19 weights.

The DLP quantizes every conv/mlp input activation and weight tensor with a
(position, scale) pair computed from that tensor's range on calibration data. The
ranges belong to one set of weights, so the file must match the weights in use:

* real MatConvNet weights (recognised by sha256) -> the course's own file
  ``data/course/vgg19_quant_param_new.npz``;
* any other weights (the kit's synthetic VGG19, a custom file) -> a file calibrated
  by ``python -m grader calibrate`` for exactly those weights, named by their sha256:
  ``data/quant/vgg19_quant_param_<sha12>.npz`` (committed for the synthetic weights) or
  ``data/generated/vgg19_quant_param_<sha12>.npz`` (computed on this machine on demand).

The course's file is never used with other weights: its ranges would clip or waste
most of the int8 codes and every result would be meaningless.

File format (the course's): ``np.savez(path, input=..., filter=...)``, two 1-D float64
arrays of alternating (position, scale) values, one pair per conv/mlp layer in creation
order: 19 pairs (38 values) each for VGG19.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from grader.kit.paths import COURSE_DIR, DATA_DIR, GENERATED_DIR, is_student_handout
from grader.kit.weights import REAL_SHA256

COURSE_QUANT_FILE = COURSE_DIR / "vgg19_quant_param_new.npz"
QUANT_DIR = DATA_DIR / "quant"
PAIRS = 19     # VGG19: 16 conv + 3 fc


def quant_file_name(sha256: str) -> str:
    return f"vgg19_quant_param_{sha256[:12]}.npz"


def committed_path(sha256: str) -> Path:
    return QUANT_DIR / quant_file_name(sha256)


def generated_path(sha256: str) -> Path:
    return GENERATED_DIR / quant_file_name(sha256)


def resolve_quant_params(weights) -> Path:
    """The quant-parameter file for ``weights`` (a ``grader.kit.weights.WeightsInfo``).

    Real weights get the course's file, other weights their calibrated file. When none
    exists, FileNotFoundError says where it looked and who can make the file: the
    instructor's kit calibrates with ``python -m grader calibrate`` (the grader does it
    on first use); a student handout cannot.
    """
    if weights.sha256 == REAL_SHA256:
        if not COURSE_QUANT_FILE.is_file():
            raise FileNotFoundError(f"the course's quant parameters are missing: looked for {COURSE_QUANT_FILE}; "
                                    "restore data/course/ from the kit's repository")
        return COURSE_QUANT_FILE
    for candidate in (committed_path(weights.sha256), generated_path(weights.sha256)):
        if candidate.is_file():
            return candidate
    looked = f"looked for {committed_path(weights.sha256)} and {generated_path(weights.sha256)}"
    if is_student_handout():
        raise FileNotFoundError(
            f"no DLP quant parameters for the weights {weights.short()} ({weights.kind}): {looked}. The student "
            f"handout cannot calibrate; ask your instructor for this file (they run `python -m grader calibrate`).")
    raise FileNotFoundError(
        f"no quant parameters for the {weights.kind} weights {weights.short()}: {looked}. "
        f"Run `python -m grader calibrate` to compute them.")


def load_quant_params(path: str | Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """Read and validate a quant file: ``(input pairs, filter pairs)``, 19 (position, scale) each.

    Raises ValueError naming the file and what is wrong with it.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("input", "filter") if k not in data.files]
        if missing:
            raise ValueError(f"{path}: missing array(s) {missing}; a quant file holds 'input' and 'filter'")
        arrays = {k: np.asarray(data[k], dtype=np.float64) for k in ("input", "filter")}
    pairs = {}
    for key, arr in arrays.items():
        if arr.ndim != 1 or arr.size != 2 * PAIRS:
            raise ValueError(f"{path}: '{key}' has shape {arr.shape}, expected ({2 * PAIRS},) = "
                             f"{PAIRS} (position, scale) pairs")
        positions, scales = arr[0::2], arr[1::2]
        if not np.all(positions == np.round(positions)):
            raise ValueError(f"{path}: '{key}' positions must be integers, got {positions.tolist()}")
        if not np.all(np.isfinite(scales) & (scales > 0)):
            raise ValueError(f"{path}: '{key}' scales must be positive, got {scales.tolist()}")
        pairs[key] = [(int(p), float(s)) for p, s in zip(positions, scales)]
    return pairs["input"], pairs["filter"]
