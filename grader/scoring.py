"""Scores: one row per check, and the book's rule that turns rows into a tier.

A tier counts only when every check of it and of every lower tier passed; an
experiment without a check of some tier cannot reach it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

TIERS = (60, 80, 100)


@dataclass
class CheckResult:
    name: str
    tier: int
    passed: bool
    message: str
    seconds: float
    hidden: bool = False

    def as_dict(self) -> dict:
        return {"name": self.name, "tier": self.tier, "passed": self.passed, "message": self.message,
                "seconds": round(self.seconds, 3), "hidden": self.hidden}


@dataclass
class ExperimentResult:
    id: str
    checks: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""          # set when the grader itself could not grade this experiment

    @property
    def score(self) -> int:
        return tier_score(self.checks)

    max_score = 100

    def as_dict(self) -> dict:
        return {"id": self.id, "score": self.score, "max_score": self.max_score,
                "seconds": round(self.seconds, 3), "notes": self.notes,
                "checks": [c.as_dict() for c in self.checks]}


def tier_score(checks: list[CheckResult]) -> int:
    """Highest tier T such that every check with tier <= T passed (0 if none)."""
    score = 0
    for tier in TIERS:
        relevant = [c for c in checks if c.tier <= tier]
        if not any(c.tier == tier for c in checks) or not all(c.passed for c in relevant):
            break
        score = tier
    return score
