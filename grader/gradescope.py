"""Map the kit's report onto Gradescope's results.json schema.

Each experiment is worth 100 points in the book's tiers (60 + 20 + 20). A tier's points
are shared equally by its checks, so the ``max_score`` of all tests adds up to
100 per experiment. Because a tier counts only when every lower tier passed, the
top-level ``score`` (which Gradescope uses when present) is the tier score, and a
test whose tier is blocked by a lower tier's failure scores 0 and says why. Every number
is finite, so ``report.write_gradescope`` can write strict JSON.
"""
from __future__ import annotations

import math

TIER_POINTS = {60: 60.0, 80: 20.0, 100: 20.0}


def to_gradescope(doc: dict) -> dict:
    """results.json per Gradescope's autograder specification (score, execution_time, output, tests)."""
    tests = []
    for exp_index, exp in enumerate(doc["experiments"], start=1):
        number = 0
        score = exp["score"]
        by_tier: dict[int, list] = {}
        for check in exp["checks"]:
            by_tier.setdefault(int(check["tier"]), []).append(check)
        for tier, points in TIER_POINTS.items():
            checks = by_tier.get(tier, [])
            if not checks:
                # Keep the points visible even when no check of this tier ran.
                number += 1
                tests.append({"name": f"{exp['id']}: tier {tier} (no checks ran)", "number": f"{exp_index}.{number}",
                              "score": 0.0, "max_score": points, "status": "failed",
                              "output": exp.get("error") or "no check of this tier ran", "visibility": "visible"})
                continue
            # Shares in 1e-4 points, the remainder spread over the first checks, so that the
            # max_scores add up to exactly the tier's points as Gradescope displays them.
            units, n = int(round(points * 10_000)), len(checks)
            shares = [(units // n + (1 if i < units % n else 0)) / 10_000 for i in range(n)]
            for check, share in zip(checks, shares):
                number += 1
                earned = share if (check["passed"] and score >= tier) else 0.0
                output = check["message"]
                if check["passed"] and score < tier:
                    output += f" (no points: tier {tier} needs every check of the lower tiers to pass)"
                tests.append({"name": f"{exp['id']}: {check['name']}", "number": f"{exp_index}.{number}",
                              "score": earned, "max_score": share,
                              "status": "passed" if check["passed"] else "failed",
                              "output": output,
                              "visibility": "after_published" if check.get("hidden") else "visible"})
    summary = [f"{e['id']}: {e['score']}/{e['max_score']}" for e in doc["experiments"]]
    for exp in doc["experiments"]:
        if exp.get("error"):
            summary.append(f"grader error in {exp['id']}: {exp['error']}")
    hidden = doc.get("hidden_checks", {})
    return {
        "score": float(doc["total"]),
        "execution_time": _whole_seconds(doc.get("seconds")),
        "output": "; ".join(summary) + f"; weights {doc['weights']['kind']} {doc['weights']['sha256'][:12]}",
        "output_format": "text",
        "stdout_visibility": "hidden",
        "extra_data": {"weights_sha256": doc["weights"]["sha256"], "hidden_seed": hidden.get("seed"),
                       "max_total": doc["max_total"]},
        "tests": tests,
    }


def _whole_seconds(value) -> int:
    """Gradescope's ``execution_time``: whole seconds, 0 when the time is unknown or not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0
    return max(int(round(value)), 0)
