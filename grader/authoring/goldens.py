"""``python -m grader goldens``: recompute the visible goldens from the reference set."""
from __future__ import annotations

import argparse

from grader.kit import goldens
from grader.cli import _parse_experiments
from grader.kit.paths import DEFAULT_CAT


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader goldens",
                                     description="Recompute data/golden/ from grader/reference (instructors).")
    parser.add_argument("--experiments", default=None)
    args = parser.parse_args(argv)
    from grader.session import GradingSession
    from grader.kit.weights import resolve_weights
    weights = resolve_weights()
    print(weights.banner())
    session = GradingSession(DEFAULT_CAT.parent, weights, visible_only=True)
    for exp in _parse_experiments(args.experiments):
        goldens.build(exp, session.resources(exp), weights.sha256)
    return 0
