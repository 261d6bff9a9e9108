"""Compute the reference's grade-time outputs once, in ``setup.sh``, for every container to reuse.

Gradescope grades each submission in a fresh container made from the image ``setup.sh``
built, so whatever the reference computes at grade time (the hidden cases for the zip's
fixed seed, and visible cases whose golden is not stored for these weights) would be
recomputed for every submission. :func:`warm` runs exactly those reference groups into
the golden cache (``python -m grader --golden-cache``'s folder, keyed by seed, weights
and the reference's code), without grading any submission, so ``run_autograder`` reads
them instead. All students of the assignment then share the hidden inputs, as a batch does.
"""
from __future__ import annotations

import time
from pathlib import Path


def warm(experiments: list[str], seed: int, golden_cache: Path, log=print) -> dict[str, float]:
    """Fill ``golden_cache`` with the reference's outputs; ``{experiment: seconds}``.

    Raises RuntimeError naming the experiment and case when the reference fails: an
    autograder whose reference cannot run must not be deployed.
    """
    from grader.kit.weights import resolve_weights
    from grader.session import GradingSession
    from grader.kit.paths import REFERENCE_DIR

    session = GradingSession(REFERENCE_DIR, resolve_weights(generate=False), seed=seed,
                             golden_cache=Path(golden_cache), time_scale=1.0)
    spent: dict[str, float] = {}
    for exp in experiments:
        start = time.monotonic()
        wanted = [c for c in session.cases(exp) if c.needs_golden]
        groups = sorted({c.group for c in wanted})
        log(f"  {exp}: reference outputs of {len(wanted)} case(s) in group(s) {', '.join(groups) or '-'}")
        for case in wanted:
            try:
                session.golden(exp, case.name)
            except Exception as exc:
                raise RuntimeError(f"the reference failed on {exp}/{case.name}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        spent[exp] = time.monotonic() - start
        log(f"  {exp}: done in {spent[exp]:.0f} s")
    return spent
