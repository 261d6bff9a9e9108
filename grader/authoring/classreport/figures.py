"""The class report's PNG figures, drawn with matplotlib's object API on the Agg canvas.

Each function takes numbers from :mod:`.aggregate` and returns a :class:`FigureFile`: the
PNG bytes, its file name and the alt text the page gives it. No pyplot, no backend switch,
the user's matplotlibrc ignored, and mathtext off, so a ``$`` in a submission's id is drawn
as a dollar sign instead of being parsed (and failing) as a formula.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections import Counter
from dataclasses import dataclass

from .aggregate import SCORE_BUCKETS, CheckStat
from .inputs import clean

DPI = 100
PASS_COLOUR, FAIL_COLOUR, SKIP_COLOUR, OTHER_COLOUR = "#2e7d32", "#c62828", "#9e9e9e", "#f9a825"
BUCKET_COLOURS = {"0": FAIL_COLOUR, "60": "#ef6c00", "80": "#9ccc65", "100": PASS_COLOUR, "other": OTHER_COLOUR,
                  "no score": SKIP_COLOUR}
STATUS_COLOURS = {"graded": "#1565c0", "timeout": FAIL_COLOUR, "crashed": "#6a1b9a", "grader-error": OTHER_COLOUR,
                  "bad-submission": "#5d4037", "interrupted": SKIP_COLOUR}
MAX_NAMED_BARS = 60          # more submissions than this: a histogram instead of one bar each
MAX_LAYERS_SHOWN = 12


class FigureError(RuntimeError):
    """matplotlib is missing; the message says how to install it."""


@dataclass
class FigureFile:
    name: str          # file name inside the report folder
    alt: str           # what the figure shows, for the page's alt text
    png: bytes


@contextlib.contextmanager
def _figure(width: float, height: float):
    """A fresh matplotlib Figure of ``width`` x ``height`` inches; yields (figure, png-bytes holder)."""
    try:
        import matplotlib
        import matplotlib.style
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise FigureError(f"matplotlib is needed for the class report's figures ({exc}); run `source env.sh`") from None
    out: list[bytes] = []
    with matplotlib.style.context("default"), matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")   # a glyph the font lacks (a CJK id) is drawn as a box, not a warning
        figure = Figure(figsize=(width, height), dpi=DPI)
        canvas = FigureCanvasAgg(figure)
        yield figure, out
        figure.tight_layout()
        buffer = io.BytesIO()
        canvas.print_png(buffer)
        out.append(buffer.getvalue())


def _integers():
    from matplotlib.ticker import MaxNLocator
    return MaxNLocator(integer=True)


def _label(text: str, limit: int = 32) -> str:
    return clean(text, limit)


def scores_figure(distribution: dict[str, Counter], totals: Counter, no_total: int) -> FigureFile:
    """Bars of the score buckets per experiment, and of the totals."""
    panels = len(distribution) + 1
    alt = []
    with _figure(min(3.4 * panels, 14), 3.4) as (fig, out):
        for i, (exp, counts) in enumerate(distribution.items()):
            ax = fig.add_subplot(1, panels, i + 1)
            buckets = [b for b in SCORE_BUCKETS if b in ("0", "60", "80", "100") or counts.get(b)]
            values = [counts.get(b, 0) for b in buckets]
            bars = ax.bar(buckets, values, color=[BUCKET_COLOURS[b] for b in buckets])
            ax.bar_label(bars, padding=1, fontsize=8)
            ax.set_title(exp, fontsize=10)
            ax.yaxis.set_major_locator(_integers())
            ax.set_xlabel("score")
            ax.set_ylabel("submissions" if i == 0 else "")
            ax.margins(y=0.15)
            alt.append(f"{exp}: " + ", ".join(f"{b} {v}" for b, v in zip(buckets, values)))
        ax = fig.add_subplot(1, panels, panels)
        keys = sorted(totals)
        labels = [str(k) for k in keys] + (["none"] if no_total else [])
        values = [totals[k] for k in keys] + ([no_total] if no_total else [])
        colours = ["#1565c0"] * len(keys) + ([SKIP_COLOUR] if no_total else [])
        bars = ax.bar(range(len(labels)), values, color=colours)
        ax.bar_label(bars, padding=1, fontsize=8)
        ax.set_xticks(range(len(labels)), labels, rotation=60 if len(labels) > 8 else 0, fontsize=8)
        ax.set_title("total", fontsize=10)
        ax.yaxis.set_major_locator(_integers())
        ax.set_xlabel("total score")
        ax.margins(y=0.15)
        alt.append("totals: " + ", ".join(f"{k} {v}" for k, v in zip(labels, values)))
    return FigureFile("fig_scores.png", "Bar charts of the score distribution (submissions per score). "
                      + "; ".join(alt) + ".", out[0])


def checks_figure(experiment: str, stats: list[CheckStat]) -> FigureFile:
    """Horizontal stacked bars per check, tier order top to bottom: failed, skipped, passed (fractions)."""
    height = 1.2 + 0.24 * len(stats)
    with _figure(10, height) as (fig, out):
        ax = fig.add_subplot()
        ys = list(range(len(stats)))[::-1]
        seen = [max(s.seen, 1) for s in stats]
        failed = [s.failed / n for s, n in zip(stats, seen)]
        skipped = [s.skipped / n for s, n in zip(stats, seen)]
        passed = [s.passed / n for s, n in zip(stats, seen)]
        ax.barh(ys, failed, color=FAIL_COLOUR, label="failed")
        ax.barh(ys, skipped, left=failed, color=SKIP_COLOUR, label="not run (a lower tier failed)")
        ax.barh(ys, passed, left=[f + k for f, k in zip(failed, skipped)], color=PASS_COLOUR, label="passed")
        ax.set_yticks(ys, [f"{s.tier}  {_label(s.name, 40)}" for s in stats], fontsize=8)
        for y, s in zip(ys, stats):
            ax.text(1.01, y, f"{s.failed}/{s.seen}", va="center", fontsize=7)
        for y, (above, below) in zip(ys[1:], zip(stats, stats[1:])):
            if above.tier != below.tier:
                ax.axhline(y + 0.5, color="black", linewidth=0.8)
        ax.set_xlim(0, 1.08)
        ax.set_ylim(-0.6, len(stats) - 0.4)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0%", "25%", "50%", "75%", "100%"])
        ax.set_xlabel("share of the submissions with a report for this experiment (label: failed / reports)")
        ax.set_title(f"{experiment}: checks in tier order (tier, name)", fontsize=10)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0 + 0.35 / height), ncol=3, fontsize=8, frameon=False)
    worst = sorted(stats, key=lambda s: -s.failure_rate)[:3]
    alt = (f"Stacked horizontal bars for the {len(stats)} checks of {experiment} in tier order: the share of "
           f"submissions that failed, were not run, and passed each check. Most failed: "
           + ", ".join(f"{s.name} (tier {s.tier}) {s.failed} of {s.seen}" for s in worst if s.failed)
           if any(s.failed for s in stats) else
           f"Stacked horizontal bars for the {len(stats)} checks of {experiment}: no check failed.")
    return FigureFile(f"fig_checks_{experiment}.png", alt, out[0])


def layers_figure(layers: dict[str, list[tuple[str, list[str]]]]) -> FigureFile:
    """Per experiment, bars of the submissions per first failing layer, most common first."""
    panels = len(layers)
    rows = max(min(len(found), MAX_LAYERS_SHOWN) for found in layers.values())
    alt = []
    with _figure(min(4.2 * panels, 14), 1.4 + 0.3 * rows) as (fig, out):
        for i, (exp, found) in enumerate(layers.items()):
            ax = fig.add_subplot(1, panels, i + 1)
            shown = found[:MAX_LAYERS_SHOWN]
            ys = list(range(len(shown)))[::-1]
            bars = ax.barh(ys, [len(ids) for _, ids in shown], color=FAIL_COLOUR)
            ax.bar_label(bars, padding=2, fontsize=8)
            ax.set_yticks(ys, [_label(layer, 20) for layer, _ in shown], fontsize=8)
            ax.set_title(exp, fontsize=10)
            ax.set_xlabel("submissions")
            ax.xaxis.set_major_locator(_integers())
            ax.margins(x=0.2)
            alt.append(f"{exp}: " + ", ".join(f"{layer} {len(ids)}" for layer, ids in shown))
    return FigureFile("fig_layers.png", "Bar charts of the first layer that differs from the reference in the "
                      "network checks, submissions per layer, most common first. " + "; ".join(alt) + ".", out[0])


def times_figure(timed: list[tuple[str, float, str]]) -> FigureFile:
    """Grading time per submission: sorted bars named by id (a histogram beyond :data:`MAX_NAMED_BARS`)."""
    statuses = sorted({status for _, _, status in timed})
    if len(timed) <= MAX_NAMED_BARS:
        with _figure(10, 1.3 + 0.2 * len(timed)) as (fig, out):
            ax = fig.add_subplot()
            ys = list(range(len(timed)))[::-1]
            ax.barh(ys, [t for _, t, _ in timed], color=[STATUS_COLOURS.get(s, OTHER_COLOUR) for _, _, s in timed])
            ax.set_yticks(ys, [_label(ident, 32) for ident, _, _ in timed], fontsize=7)
            ax.set_ylim(-0.6, len(timed) - 0.4)
            _status_legend(ax, statuses)
            ax.set_xlabel("seconds (whole grading of the submission)")
            ax.set_title("time per submission, slowest first", fontsize=10)
        kind = "Horizontal bars, slowest first"
    else:
        with _figure(10, 4) as (fig, out):
            ax = fig.add_subplot()
            groups = [[t for _, t, s in timed if s == status] for status in statuses]
            ax.hist(groups, bins=30, stacked=True, label=statuses,
                    color=[STATUS_COLOURS.get(s, OTHER_COLOUR) for s in statuses])
            ax.legend(fontsize=8)
            ax.set_xlabel("seconds (whole grading of the submission)")
            ax.set_ylabel("submissions")
            ax.set_title("time per submission", fontsize=10)
        kind = "Histogram"
    slowest = ", ".join(f"{ident} {t:.1f} s ({status})" for ident, t, status in timed[:3])
    return FigureFile("fig_times.png", f"{kind} of the grading time of {len(timed)} submissions, coloured by "
                      f"status. Slowest: {slowest}.", out[0])


def _status_legend(ax, statuses: list[str]) -> None:
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=STATUS_COLOURS.get(s, OTHER_COLOUR), label=_label(s, 20)) for s in statuses],
              fontsize=8, loc="lower right")
