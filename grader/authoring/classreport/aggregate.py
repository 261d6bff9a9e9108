"""What the class report shows, computed from a :class:`~.inputs.Gradebook`: counts, rates, facts.

Pure functions of the gradebook (no files, no drawing), so that the numbers on the page
and in the figures are the numbers the tests check.
"""
from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass, field

from grader.batch import gradebook
from grader.kit.vgg_layout import LAYER_NAMES
from grader.kit.weights import REAL_SHA256, SYNTHETIC_SHA256
from grader.scoring import TIERS

from .inputs import Gradebook, Row

SCORE_BUCKETS = ("0", "60", "80", "100", "other", "no score")
MAX_DISTINCT_CHECKS = 300     # per experiment; the kit declares at most a few dozen


# --------------------------------------------------------------------------- scores


def score_bucket(score: int | None) -> str:
    """The bar a score falls in: a tier, 0, ``other`` (a number no tier gives) or ``no score``."""
    if score is None:
        return "no score"
    return str(score) if score in (0, *TIERS) else "other"


def score_distribution(book: Gradebook) -> dict[str, Counter]:
    """Per experiment, how many rows fall in each of :data:`SCORE_BUCKETS`."""
    return {exp: Counter(score_bucket(row.scores.get(exp)) for row in book.rows) for exp in book.experiments}


def total_distribution(book: Gradebook) -> tuple[Counter, int]:
    """How many rows have each total, and how many have none (not graded)."""
    totals = Counter(row.total for row in book.rows if row.total is not None)
    return totals, sum(1 for row in book.rows if row.total is None)


# --------------------------------------------------------------------------- checks


@dataclass
class CheckStat:
    experiment: str
    name: str
    tier: int
    hidden: bool
    passed: int = 0
    failed: int = 0
    skipped: int = 0            # not run: a lower tier failed, or --quick
    failed_ids: list = field(default_factory=list)

    @property
    def seen(self) -> int:
        return self.passed + self.failed + self.skipped

    @property
    def failure_rate(self) -> float:
        """Failed over the reports that have this check (skips count as not passed, not as failed)."""
        return self.failed / self.seen if self.seen else 0.0


def declared_order(experiment: str) -> list[tuple[str, int]]:
    """(name, tier) of every check ``experiment`` declares (visible, then hidden), or [] if unknown."""
    try:
        from grader.experiments import spec_of
        spec = spec_of(experiment)
        return [(c.name, c.tier) for c in spec.checks(spec.visible_cases() + spec.hidden_cases(0))]
    except Exception:   # noqa: BLE001 - without the spec the reports' own order is used
        return []


def check_stats(book: Gradebook, order: dict[str, list[tuple[str, int]]] | None = None) -> dict[str, list[CheckStat]]:
    """Per experiment, one :class:`CheckStat` per check, in tier order and declared order within a tier.

    ``order`` maps an experiment to its declared (name, tier) list (default:
    :func:`declared_order`); checks only the reports know follow in the order they first
    appear. Declared checks no report has are left out.
    """
    out = {}
    for exp in book.experiments:
        declared = (order or {}).get(exp) if order is not None else declared_order(exp)
        stats: dict[str, CheckStat] = {name: CheckStat(exp, name, tier, name.startswith("hidden_"))
                                       for name, tier in (declared or [])}
        for row in book.rows:
            record = row.report.experiments.get(exp) if row.report else None
            for check in (record.checks if record else []):
                stat = stats.get(check.name)
                if stat is None:
                    if len(stats) >= MAX_DISTINCT_CHECKS:
                        continue   # forged reports full of made-up names cannot grow the page
                    stat = stats[check.name] = CheckStat(exp, check.name, check.tier, check.hidden)
                stat.hidden = stat.hidden or check.hidden
                if check.status == "PASS":
                    stat.passed += 1
                elif check.status == "SKIP":
                    stat.skipped += 1
                else:
                    stat.failed += 1
                    stat.failed_ids.append(row.label)
        ranked = list(stats)   # declared first, then the reports' extras as first seen
        ordered = sorted((stats[n] for n in ranked if stats[n].seen),
                         key=lambda s: (s.tier, ranked.index(s.name)))
        out[exp] = ordered
    return out


# --------------------------------------------------------------------------- first failing layer

# How the kit names the first layer that differs (grader.kit.compare.first_divergent_layer,
# and the 3.3 speed-up network's per-layer label in grader/experiments/exp_3_3_style_transfer.py).
_FIRST_LAYER = re.compile(r"first layer that differs: ([A-Za-z0-9_]{1,40})"
                          r"|VGG19\.forward ([A-Za-z0-9_]{1,40}) feature \(the first layer that differs\)")


def first_divergent_layer_of(message: str) -> str | None:
    """The layer a check's failure message names as the first that differs, or None."""
    found = _FIRST_LAYER.search(str(message))
    if not found:
        return None
    return found.group(1) or found.group(2)


def _network_position(layer: str) -> int:
    try:
        return LAYER_NAMES.index(layer)
    except ValueError:
        return len(LAYER_NAMES)


def first_failing_layers(book: Gradebook) -> dict[str, list[tuple[str, list[str]]]]:
    """Per experiment, (layer, ids of the submissions whose first failing layer it is), most common first.

    A submission counts once per experiment: with the first failing check, in tier order,
    whose message names a layer. Ties keep the network's order.
    """
    out = {}
    for exp in book.experiments:
        found: dict[str, list[str]] = {}
        for row in book.rows:
            record = row.report.experiments.get(exp) if row.report else None
            if record is None:
                continue
            for check in sorted(record.checks, key=lambda c: c.tier):
                layer = first_divergent_layer_of(check.message) if check.status == "FAIL" else None
                if layer:
                    found.setdefault(layer, []).append(row.label)
                    break
        if found:
            out[exp] = sorted(found.items(), key=lambda item: (-len(item[1]), _network_position(item[0]), item[0]))
    return out


# --------------------------------------------------------------------------- time and problems


def times(book: Gradebook) -> list[tuple[str, float, str]]:
    """(id, seconds, status) of every row with a time, slowest first."""
    timed = [(row.label, row.seconds, row.status) for row in book.rows if row.seconds is not None]
    return sorted(timed, key=lambda t: (-t[1], t[0]))


def problem_rows(book: Gradebook) -> list[Row]:
    """Rows that timed out, crashed, had a grader error, a bad submission, were interrupted, or an unknown status."""
    return [row for row in book.rows if row.status != gradebook.GRADED]


def rows_without_details(book: Gradebook) -> list[Row]:
    """Rows whose report was expected but is missing, malformed or of another run."""
    return [row for row in book.rows if row.problem]


# --------------------------------------------------------------------------- facts of the batch


def weights_kind(row: Row) -> str:
    """``real``, ``synthetic``, ``custom`` or ``unknown``: the report's word, else the CSV's sha256 prefix."""
    if row.report and row.report.weights_kind:
        return row.report.weights_kind
    prefix = row.weights.strip().lower()
    if len(prefix) < 8:
        return "unknown"
    if SYNTHETIC_SHA256.startswith(prefix):
        return "synthetic"
    return "real" if REAL_SHA256.startswith(prefix) else "custom"


@dataclass
class Facts:
    submissions: int
    statuses: Counter
    seeds: Counter
    weights: Counter            # (kind, sha256 prefix) -> rows
    hidden: Counter             # "on" / "off" -> rows with a report
    synthetic: bool
    warnings: list[str]


def batch_facts(book: Gradebook) -> Facts:
    """Counts of the batch and the warnings the top of the page shows (synthetic or mixed weights, mixed seeds)."""
    seeds = Counter(row.seed for row in book.rows if row.seed)
    weights = Counter((weights_kind(row), row.weights[:12]) for row in book.rows if row.weights or row.report)
    hidden = Counter(("on" if row.report.hidden_enabled else "off") for row in book.rows
                     if row.report and row.report.hidden_enabled is not None)
    synthetic = any(kind == "synthetic" for kind, _ in weights)
    warnings = []
    if synthetic:
        warnings.append("SYNTHETIC WEIGHTS: these submissions were graded on the kit's synthetic VGG19, not on the "
                        "real ImageNet weights. The scores say whether the code computes the network right; class "
                        "ids are the synthetic network's argmax, not a classification of the image.")
    if len(seeds) > 1:
        warnings.append(f"MIXED SEEDS: rows were graded with {len(seeds)} different seeds of the hidden checks ("
                        + ", ".join(f"{s}: {n} row(s)" for s, n in seeds.most_common(6))
                        + "), so they did not all get the same hidden inputs.")
    distinct_weights = {prefix for _, prefix in weights if prefix}
    if len(distinct_weights) > 1:
        warnings.append(f"MIXED WEIGHTS: rows were graded with {len(distinct_weights)} different weights files ("
                        + ", ".join(f"{kind} {prefix}: {n} row(s)" for (kind, prefix), n in weights.most_common(6))
                        + "); their scores are not comparable.")
    if len(hidden) > 1:
        warnings.append(f"MIXED HIDDEN CHECKS: {hidden['on']} report(s) with hidden checks, {hidden['off']} without.")
    without = rows_without_details(book)
    if without:
        warnings.append(f"{len(without)} row(s) have no usable report, so their checks are missing from the "
                        f"figures and tables below (listed under 'Rows without details').")
    return Facts(len(book.rows), Counter(row.status for row in book.rows), seeds, weights, hidden, synthetic,
                 warnings + list(book.notes))


def time_summary(timed: list[tuple[str, float, str]]) -> str:
    """One line: median, slowest, sum of the grading times."""
    if not timed:
        return "no row has a time"
    values = [t for _, t, _ in timed]
    return (f"median {statistics.median(values):.1f} s, slowest {timed[0][0]} ({timed[0][1]:.1f} s), "
            f"sum {sum(values):.0f} s over {len(values)} submission(s)")
