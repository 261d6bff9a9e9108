"""The class report's ``index.html``: one static page, no script, every datum escaped.

Everything that came from the CSV or a report goes through :func:`esc` (``html.escape``
with quotes) after :func:`~.inputs.clean`; the page's Content-Security-Policy allows no
script at all and images from its own folder only, so even a mistake in escaping could
not run code. Styles are inline, so the folder opens from the file system as it is.
"""
from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass

from .aggregate import SCORE_BUCKETS, CheckStat, Facts
from .figures import FigureFile
from .inputs import Gradebook, Row, clean

MAX_IDS_LISTED = 12

CSP = "default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222;
       line-height: 1.35; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 2px solid #1565c0; padding-bottom: 0.15em; margin-top: 1.8em; }
h3 { font-size: 1.05em; margin-top: 1.3em; }
.warning { background: #fff3e0; border: 2px solid #e65100; color: #7a2e00; padding: 0.5em 0.8em; margin: 0.5em 0;
           font-weight: bold; }
.synthetic { background: #ffebee; border-color: #c62828; color: #8e0000; font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.86em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #eef3fb; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.msg { white-space: pre-wrap; word-break: break-word; max-width: 48em; }
td.id { overflow-wrap: anywhere; min-width: 10em; max-width: 18em; }
table.all td.msg { font-size: 0.9em; }
details { margin: 0.4em 0; }
summary { cursor: pointer; color: #1565c0; }
tr.tier-start td { border-top: 2px solid #555; }
.facts th { width: 12em; }
figure { margin: 0.8em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
.muted { color: #666; }
.bad { color: #b71c1c; font-weight: bold; }
"""


def esc(value) -> str:
    """Text for HTML: quotes too, so it is safe in an attribute as in an element."""
    return html.escape(str(value), quote=True)


@dataclass
class Sections:
    """What :func:`render` lays out: the aggregates and the figures drawn from them."""
    facts: Facts
    distribution: dict
    totals: Counter
    no_total: int
    checks: dict[str, list[CheckStat]]
    layers: dict
    timed: list
    time_line: str
    problems: list[Row]
    without_details: list[Row]
    figures: dict[str, FigureFile]     # key: "scores", "checks:<exp>", "layers", "times"
    generated: str


def _figure(fig: FigureFile | None, caption: str) -> str:
    if fig is None:
        return ""
    return (f'<figure><img src="{esc(fig.name)}" alt="{esc(fig.alt)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), classes=None,
           kind: str = "") -> str:
    """A table of already-escaped cells; ``numeric`` column indexes are right-aligned."""
    head = "".join(f'<th class="num">{h}</th>' if i in numeric else f"<th>{h}</th>" for i, h in enumerate(headers))
    body = []
    for r, cells in enumerate(rows):
        tr = f' class="{classes[r]}"' if classes and classes[r] else ""
        body.append(f"<tr{tr}>" + "".join(
            f'<td class="num">{c}</td>' if i in numeric else
            (f'<td class="{k}">{c}</td>' if (k := _cell_class(headers[i])) else f"<td>{c}</td>")
            for i, c in enumerate(cells)) + "</tr>")
    table_class = f' class="{kind}"' if kind else ""
    return f"<table{table_class}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell_class(header: str) -> str:
    return {"message": "msg", "why": "msg", "id": "id", "submissions": "id"}.get(header, "")


def _ids(ids: list[str]) -> str:
    shown = ", ".join(esc(i) for i in ids[:MAX_IDS_LISTED])
    more = f" and {len(ids) - MAX_IDS_LISTED} more" if len(ids) > MAX_IDS_LISTED else ""
    return shown + more


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


# --------------------------------------------------------------------------- sections


def _header(book: Gradebook, s: Sections) -> str:
    f = s.facts
    warnings = "".join(f'<div class="warning{" synthetic" if w.startswith("SYNTHETIC") else ""}">{esc(w)}</div>'
                       for w in f.warnings)
    statuses = ", ".join(f"{esc(k)}: {v}" for k, v in sorted(f.statuses.items()))
    seeds = ", ".join(f"{esc(k)}" + (f" ({v} rows)" if len(f.seeds) > 1 else "") for k, v in f.seeds.most_common()) \
        or "none recorded"
    weights = ", ".join(f"{esc(kind.upper() if kind == 'synthetic' else kind)} (sha256 {esc(prefix or '?')})"
                        + (f", {n} rows" if len(f.weights) > 1 else "")
                        for (kind, prefix), n in f.weights.most_common()) or "unknown"
    hidden = ", ".join(f"{k}: {v} report(s)" for k, v in sorted(f.hidden.items())) or "unknown (no report)"
    facts = [("submissions", str(f.submissions)), ("statuses", statuses),
             ("experiments", esc(", ".join(book.experiments)) or "none"), ("weights", weights),
             ("seed of the hidden checks", seeds), ("hidden checks", esc(hidden)),
             ("gradebook", esc(clean(book.path, 200))), ("results folder", esc(clean(book.results_dir, 200))),
             ("generated", esc(s.generated))]
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in facts)
    return (f"<h1>Class report: {esc(clean(book.path.name, 80))}</h1>{warnings}"
            f'<table class="facts"><tbody>{rows}</tbody></table>')


def _scores(book: Gradebook, s: Sections) -> str:
    headers = ["experiment"] + [esc(b) for b in SCORE_BUCKETS] + ["mean of the scored"]
    rows = []
    for exp, counts in s.distribution.items():
        scored = [r.scores[exp] for r in book.rows if r.scores.get(exp) is not None]
        mean = f"{sum(scored) / len(scored):.1f}" if scored else "-"
        rows.append([esc(exp)] + [str(counts.get(b, 0)) for b in SCORE_BUCKETS] + [mean])
    table = _table(headers, rows, numeric=set(range(1, len(headers)))) if rows else "<p>No experiment column.</p>"
    return ("<h2>Scores</h2>" + _figure(s.figures.get("scores"), "Submissions per score, per experiment and in total "
                                        "('no score': the row was not graded).") + table)


def _checks(s: Sections) -> str:
    parts = ["<h2>Checks: which TODO the class struggles with</h2>",
             '<p class="muted">Failure rate = failed / reports that have the check. "Not run" checks were skipped '
             "because a lower tier had already failed; they count neither as failed nor as passed.</p>"]
    if not any(s.checks.values()):
        parts.append("<p>No report holds a check: nothing to show.</p>")
    for exp, stats in s.checks.items():
        if not stats:
            continue
        parts.append(f"<h3>{esc(exp)}</h3>")
        worst = sorted((st for st in stats if st.failed), key=lambda st: -st.failure_rate)[:3]
        if worst:
            parts.append("<p>Most failed: " + ", ".join(
                f"<b>{esc(st.name)}</b> (tier {st.tier}, {st.failed} of {st.seen})" for st in worst) + ".</p>")
        parts.append(_figure(s.figures.get(f"checks:{exp}"), f"{exp}: every check in tier order, the share that "
                                                             f"failed (red), was not run (grey) and passed (green)."))
        rows, classes = [], []
        for i, st in enumerate(stats):
            rows.append([str(st.tier), esc(st.name), "yes" if st.hidden else "", str(st.passed), str(st.failed),
                         str(st.skipped), str(st.seen), _percent(st.failed, st.seen)])
            classes.append("tier-start" if i and stats[i - 1].tier != st.tier else "")
        parts.append(f"<details><summary>counts of the {len(stats)} checks of {esc(exp)}</summary>")
        parts.append(_table(["tier", "check", "hidden", "passed", "failed", "not run", "reports", "failure rate"],
                            rows, numeric={0, 3, 4, 5, 6, 7}, classes=classes))
        parts.append("</details>")
    return "".join(parts)


def _layers(s: Sections) -> str:
    parts = ["<h2>First failing layer of the network checks</h2>",
             '<p class="muted">For each submission, the first failing network check (in tier order) that names the '
             "first layer whose output differs from the reference's; each submission counts once per "
             "experiment.</p>"]
    if not s.layers:
        parts.append("<p>No network check failed on a named layer.</p>")
        return "".join(parts)
    parts.append(_figure(s.figures.get("layers"), "Submissions per first differing layer, most common first."))
    rows = [[esc(exp), esc(layer), str(len(ids)), _ids(ids)] for exp, found in s.layers.items() for layer, ids in found]
    parts.append(_table(["experiment", "layer", "count", "submissions"], rows, numeric={2}))
    return "".join(parts)


def _times(s: Sections) -> str:
    parts = ["<h2>Time per submission</h2>", f"<p>{esc(s.time_line)}.</p>"]
    parts.append(_figure(s.figures.get("times"), "Grading time of each submission (from the CSV's seconds column)."))
    return "".join(parts)


def _problems(s: Sections) -> str:
    parts = ["<h2>Submissions that did not grade cleanly</h2>"]
    if not s.problems:
        parts.append("<p>Every row has the status graded.</p>")
    else:
        rows = [[esc(r.label), f'<span class="bad">{esc(r.status)}</span>',
                 f"{r.seconds:.1f}" if r.seconds is not None else "-", esc(r.message)] for r in s.problems]
        parts.append(_table(["id", "status", "seconds", "message"], rows, numeric={2}))
    if s.without_details:
        parts.append("<h3>Rows without details</h3>")
        parts.append('<p class="muted">Their scores come from the CSV; their checks are not counted above.</p>')
        rows = [[esc(r.label), esc(r.status), esc(r.problem)] for r in s.without_details]
        parts.append(_table(["id", "status", "why"], rows))
    return "".join(parts)


def _all_rows(book: Gradebook) -> str:
    headers = ["id"] + [esc(e) for e in book.experiments] + ["total", "status", "seconds", "message"]
    n = len(book.experiments)
    rows = []
    for r in book.rows:
        scores = [str(r.scores[e]) if r.scores.get(e) is not None else "-" for e in book.experiments]
        total = f"{r.total}/{r.max_total}" if r.total is not None and r.max_total is not None else \
            (str(r.total) if r.total is not None else "-")
        rows.append([esc(r.label)] + scores + [esc(total), esc(r.status),
                                               f"{r.seconds:.1f}" if r.seconds is not None else "-", esc(r.message)])
    return "<h2>All submissions</h2>" + _table(headers, rows, numeric=set(range(1, n + 2)) | {n + 3}, kind="all")


def render(book: Gradebook, sections: Sections) -> str:
    """The whole page as text."""
    body = "".join([_header(book, sections), _scores(book, sections), _checks(sections), _layers(sections),
                    _times(sections), _problems(sections), _all_rows(book)])
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Class report: {esc(clean(book.path.name, 80))}</title><style>{STYLE}</style></head>"
            f"<body>{body}<p class=\"muted\">Written by <code>python -m grader report</code>.</p></body></html>\n")
