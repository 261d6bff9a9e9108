"""Visible goldens: expected outputs of the visible cases, computed from the reference set.

Layout (``data/golden/<experiment>/``):
- ``cases.npz``: cases that do not depend on the weights; holds inputs and outputs
  (keys ``<case>/in/<name>`` and ``<case>/out/<name>``), so a student's grader feeds
  exactly the inputs the golden was computed from;
- ``weights-<sha12>.npz``: cases that run the network, keyed by the weights' fingerprint
  (the grader refuses to compare against goldens of other weights).

``python -m grader goldens`` rewrites them (instructor; needs ``grader/reference``).
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from grader.cases import Case
from grader.kit.paths import GOLDEN_DIR, REFERENCE_DIR


def case_module(experiment: str):
    return importlib.import_module(f"grader.cases.{experiment}")


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


def save(path: Path, cases: list[Case], outputs: dict[str, dict[str, np.ndarray]]) -> None:
    arrays = {}
    for case in cases:
        for k, v in case.inputs.items():
            arrays[f"{case.name}/in/{k}"] = np.asarray(v)
        for k, v in outputs[case.name].items():
            arrays[f"{case.name}/out/{k}"] = np.asarray(v)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def build(experiment: str, resources: dict, weights_sha: str, out=print) -> list[Path]:
    """Run the reference on the visible cases and write both golden files."""
    from grader.groups import run_group
    module = case_module(experiment)
    cases = [c for c in module.visible_cases() if c.needs_golden]
    written = []
    for dependent in (False, True):
        subset = [c for c in cases if c.weights_dependent == dependent]
        if not subset:
            continue
        outputs = {}
        for group in sorted({c.group for c in subset}):
            in_group = [c for c in subset if c.group == group]
            run = run_group(REFERENCE_DIR, experiment, module.GROUPS[group], in_group, resources, trusted=True)
            for case in in_group:
                outcome = run.outcome(case.name)
                if outcome.status != "ok":
                    raise RuntimeError(f"reference failed on {experiment}/{case.name}: {outcome.error}\n"
                                       f"{outcome.traceback}")
                outputs[case.name] = outcome.outputs
        path = golden_path(experiment, weights_sha if dependent else None)
        save(path, subset, outputs)
        out(f"wrote {path}")
        written.append(path)
    return written
