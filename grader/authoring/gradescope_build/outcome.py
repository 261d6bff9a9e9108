"""The results.json ``run_autograder`` leaves behind, whatever happened.

A graded run's results come from ``python -m grader --results-json`` (``grader.gradescope``)
and are only annotated here: the upload that was graded, a loud warning when the scores
are on synthetic or unverified weights, and the autograder's build facts in
``extra_data``. When there is nothing to annotate (an upload that cannot be read, a grader
that crashed or ran out of time) :func:`not_graded` builds a results document with score 0,
one failed test per experiment worth its 100 points, and a message the student can act on.
Both follow Gradescope's autograder specification (``tests/gradescope_schema.json``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from grader import atomic

SYNTHETIC_WARNING = ("WARNING: SYNTHETIC WEIGHTS. These scores were computed on the kit's deterministic synthetic "
                     "VGG19, NOT on the real VGG19 (the autograder was built with --synthetic-weights). They check "
                     "that the code computes what the reference computes; class ids are not a real "
                     "classification. Ask your instructor before treating them as a grade.")
CUSTOM_WARNING = ("WARNING: these scores were computed on an unverified weights file (sha256 {sha}), not on the "
                  "real MatConvNet VGG19.")
NOT_YOUR_FAULT = ("This is a problem of the autograder, not of your code: resubmit once, and tell your instructor "
                  "if it happens again.")


def not_graded(experiments: list[str], message: str, seconds: float = 0.0, extra: dict | None = None) -> dict:
    """Score 0 with ``message``: one failed, visible test per experiment, each worth 100 points."""
    message = message[:1].upper() + message[1:]
    tests = [{"name": f"{exp}: not graded", "number": str(i), "score": 0.0, "max_score": 100.0,
              "status": "failed", "output": message, "visibility": "visible"}
             for i, exp in enumerate(experiments, start=1)]
    return {"score": 0.0, "execution_time": _seconds(seconds), "output": message, "output_format": "text",
            "stdout_visibility": "hidden", "extra_data": dict(extra or {}), "tests": tests}


def annotate(results: dict, *, weights_kind: str, weights_sha256: str, upload_note: str, extra: dict) -> dict:
    """``results`` (the grader's results.json) with the warning, the upload note and ``extra``."""
    lines = []
    if weights_kind == "synthetic":
        lines.append(SYNTHETIC_WARNING)
    elif weights_kind != "real":
        lines.append(CUSTOM_WARNING.format(sha=weights_sha256[:12]))
    if upload_note:
        lines.append(upload_note[0].upper() + upload_note[1:] + ".")
    if results.get("output"):
        lines.append(str(results["output"]))
    out = dict(results)
    out["output"] = "\n\n".join(lines)
    out["output_format"] = "text"
    out["extra_data"] = {**(results.get("extra_data") or {}), "autograder": extra}
    return out


def write(path: Path, results: dict) -> None:
    """Write ``results`` as strict ASCII JSON (every control character escaped), whole or not at all."""
    atomic.write_text(Path(path), json.dumps(results, indent=1, allow_nan=False) + "\n")


def _seconds(value: float) -> int:
    return int(round(value)) if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else 0
