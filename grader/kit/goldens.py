"""Visible goldens: expected outputs of the visible cases, computed from the reference set.

Layout (``data/golden/<experiment>/``):
- ``cases.npz``: cases that do not depend on the weights; holds inputs and outputs
  (keys ``<case>/in/<name>`` and ``<case>/out/<name>``), so a student's grader feeds
  exactly the inputs the golden was computed from;
- ``weights-<sha12>.npz``: cases that run the network, keyed by the weights' fingerprint
  (the grader refuses to compare against goldens of other weights).

``python -m grader goldens`` (``grader.authoring.goldens``) rewrites them; this module only reads.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from grader.kit.paths import GOLDEN_DIR


def golden_path(experiment: str, weights_sha: str | None = None) -> Path:
    name = f"weights-{weights_sha[:12]}.npz" if weights_sha else "cases.npz"
    return GOLDEN_DIR / experiment / name


def load(path: Path) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{case: {"in": {...}, "out": {...}}}`` from a golden file (empty if absent)."""
    found: dict = {}
    if not path.exists():
        return found
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            case, part, name = key.split("/", 2)
            found.setdefault(case, {"in": {}, "out": {}})[part][name] = data[key]
    return found
