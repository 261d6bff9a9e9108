"""``python -m grader goldens``: recompute the visible goldens from the reference set.

Writes the files :mod:`grader.kit.goldens` reads: per experiment, ``cases.npz`` (cases
that do not depend on the weights, inputs and outputs) and ``weights-<sha12>.npz``
(network cases, keyed by the weights' fingerprint).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from grader.kit.goldens import golden_path
from grader.kit.paths import DEFAULT_CAT, parse_experiments


def save(path: Path, cases: list, outputs: dict[str, dict[str, np.ndarray]]) -> None:
    """Write ``cases``' inputs and ``outputs`` as ``<case>/in/<name>`` and ``<case>/out/<name>``."""
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
    from grader.experiments import spec_of
    from grader.groups import run_group
    from grader.session import reference_root
    spec = spec_of(experiment)
    cases = [c for c in spec.visible_cases() if c.needs_golden]
    written = []
    for dependent in (False, True):
        subset = [c for c in cases if c.weights_dependent == dependent]
        if not subset:
            continue
        outputs = {}
        # One run per group and reference folder (3.2 has a reference per track).
        runs: dict[tuple[str, str], list] = {}
        for case in subset:
            runs.setdefault((case.group, str(reference_root(experiment, [case]))), []).append(case)
        for (group, root), in_group in sorted(runs.items()):
            run = run_group(Path(root), experiment, spec.GROUPS[group], in_group, resources, trusted=True)
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader goldens",
                                     description="Recompute data/golden/ from grader/reference (instructors).")
    parser.add_argument("--experiments", default=None)
    args = parser.parse_args(argv)
    try:
        experiments = parse_experiments(args.experiments)
    except ValueError as exc:
        print(f"goldens: {exc}", file=sys.stderr)
        return 2
    from grader.kit.weights import resolve_weights
    from grader.session import GradingSession
    weights = resolve_weights()
    print(weights.banner())
    session = GradingSession(DEFAULT_CAT.parent, weights, visible_only=True)
    for exp in experiments:
        build(exp, session.resources(exp), weights.sha256)
    return 0
