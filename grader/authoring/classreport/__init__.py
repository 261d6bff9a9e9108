"""``python -m grader report``: a class report (static HTML and PNG figures) from a batch.

    python -m grader report grades.csv [--results-dir DIR] [--out class_report/]

Reads the batch's gradebook CSV and each submission's JSON report (found through
:func:`grader.batch.gradebook.report_path`) and writes ``OUT/index.html`` with
``OUT/fig_*.png``: the score distribution per experiment and of the totals, the failure
rate of every check in tier order, the most common first failing layer of the network
checks, the grading time per submission, and the rows that did not grade cleanly. The
page needs no server and no script; it says loudly when the weights were synthetic and
when the rows mix seeds or weights.

Modules: ``inputs`` (the CSV and the reports, read as hostile input), ``aggregate``
(the numbers), ``figures`` (matplotlib), ``page`` (the HTML); this one is the command.
Exit status: 0 written, 2 the CSV cannot be read or bad arguments, 4 the report could not
be written.
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

from grader import atomic

from . import aggregate, figures, page
from .inputs import Gradebook, InputError, load_gradebook

__all__ = ["main", "build", "write"]

EXIT_BAD_INPUT = 2
EXIT_UNWRITTEN = 4
FIGURE_PREFIX = "fig_"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grader report",
                                description="Write a class report (index.html + PNG figures) from a batch's "
                                            "gradebook CSV and its per-submission JSON reports.")
    p.add_argument("csv", help="the gradebook CSV written by `python -m grader batch --csv`")
    p.add_argument("--results-dir", default=None,
                   help="the batch's --results-dir (default: <csv name>-results beside the CSV, as the batch)")
    p.add_argument("--out", default=None, help="folder for index.html and the figures (default: class_report "
                                               "beside the CSV); other files in it are left alone")
    return p


def build(book: Gradebook, generated: str | None = None) -> tuple[str, list[figures.FigureFile]]:
    """The page's HTML and its figures for ``book``."""
    distribution = aggregate.score_distribution(book)
    totals, no_total = aggregate.total_distribution(book)
    checks = aggregate.check_stats(book)
    layers = aggregate.first_failing_layers(book)
    timed = aggregate.times(book)
    drawn: dict[str, figures.FigureFile] = {}
    if book.rows:
        drawn["scores"] = figures.scores_figure(distribution, totals, no_total)
    for exp, stats in checks.items():
        if stats:
            drawn[f"checks:{exp}"] = figures.checks_figure(exp, stats)
    if layers:
        drawn["layers"] = figures.layers_figure(layers)
    if timed:
        drawn["times"] = figures.times_figure(timed)
    sections = page.Sections(
        facts=aggregate.batch_facts(book), distribution=distribution, totals=totals, no_total=no_total,
        checks=checks, layers=layers, timed=timed, time_line=aggregate.time_summary(timed),
        problems=aggregate.problem_rows(book), without_details=aggregate.rows_without_details(book),
        figures=drawn, generated=generated or datetime.now().astimezone().isoformat(timespec="seconds"))
    return page.render(book, sections), list(drawn.values())


def write(out: Path, html_text: str, drawn: list[figures.FigureFile]) -> Path:
    """Write the figures, then ``index.html`` (each atomically), and remove figures of an earlier run.

    Raises OSError. Only files named ``fig_*.png`` that this run did not write are removed.
    """
    out.mkdir(parents=True, exist_ok=True)
    names = {fig.name for fig in drawn}
    for fig in drawn:
        atomic.write_bytes(out / fig.name, fig.png)
    index = out / "index.html"
    atomic.write_text(index, html_text)
    for old in out.glob(f"{FIGURE_PREFIX}*.png"):
        if old.name not in names and old.is_file() and not old.is_symlink():
            old.unlink()
    return index


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    start = time.monotonic()
    csv_path = Path(args.csv)
    results_dir = Path(args.results_dir) if args.results_dir else csv_path.with_name(csv_path.stem + "-results")
    out = Path(args.out) if args.out else csv_path.with_name("class_report")
    if out.exists() and not out.is_dir():
        print(f"grader report: --out {out} is a file; give a folder for index.html and the figures", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not results_dir.is_dir():
        print(f"grader report: the results folder {results_dir} does not exist; the page will hold the CSV's "
              f"scores only (pass the batch's --results-dir)", file=sys.stderr)
    try:
        book = load_gradebook(csv_path, results_dir)
    except InputError as exc:
        print(f"grader report: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        html_text, drawn = build(book)
    except figures.FigureError as exc:
        print(f"grader report: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        index = write(out, html_text, drawn)
    except OSError as exc:
        print(f"grader report: could not write the report into {out}: {exc}", file=sys.stderr)
        return EXIT_UNWRITTEN
    with_details = sum(1 for row in book.rows if row.report)
    count = len(book.rows)
    print(f"wrote {index} ({count} submission{'' if count == 1 else 's'}, {with_details} with a report, "
          f"{len(drawn)} figures) in {time.monotonic() - start:.1f} s")
    return 0
