"""The CSV gradebook of a batch: one row per submission, rewritten atomically after each one.

Columns are ``id``, one score per graded experiment, then :data:`FIXED_COLUMNS`. A row
whose status is :data:`GRADED` is done; every other status is retried when the batch is
rerun with the same CSV.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from grader import atomic

# Status of a row: only GRADED counts as done when a batch resumes.
GRADED = "graded"
GRADER_ERROR = "grader-error"        # a report came back, but an experiment could not be graded
BAD_SUBMISSION = "bad-submission"    # refused before grading (an unsafe or broken zip)
CRASHED = "crashed"                  # the grader process failed to start or left no report
TIMEOUT = "timeout"                  # the overall per-submission limit ran out
INTERRUPTED = "interrupted"          # the batch was stopped while this one ran

FIXED_COLUMNS = ("total", "max_total", "status", "seconds", "seed", "weights", "message")
MAX_MESSAGE_CHARS = 500


def columns(experiments: list[str]) -> list[str]:
    """The header of a gradebook for these experiments, in this order."""
    return ["id", *experiments, *FIXED_COLUMNS]


@dataclass
class Outcome:
    """What grading one submission gave; :meth:`row` turns it into a gradebook row."""
    id: str
    status: str
    seconds: float
    scores: dict = field(default_factory=dict)   # experiment id -> score
    total: int | str = ""
    max_total: int | str = ""
    weights: str = ""                            # leading digits of the weights' sha256
    message: str = ""

    def row(self, seed: int) -> dict:
        seconds = f"{self.seconds:.1f}" if math.isfinite(self.seconds) else ""
        return {"id": self.id, **{k: v for k, v in self.scores.items()}, "total": self.total,
                "max_total": self.max_total, "status": self.status, "seconds": seconds,
                "seed": seed, "weights": self.weights, "message": self.message[:MAX_MESSAGE_CHARS]}


def is_done(row: dict) -> bool:
    """Whether a resumed batch keeps this row instead of grading the submission again."""
    return row.get("status") == GRADED


def recorded_seeds(rows: dict[str, dict]) -> set[str]:
    """The seeds the rows were graded with, as written in the CSV (empty cells ignored)."""
    return {r.get("seed") for r in rows.values() if r.get("seed")}


def _cell(value) -> str:
    text = str(value).replace("\r", " ").replace("\n", " ")
    # A spreadsheet would run a cell starting with these as a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_csv(path: Path) -> tuple[list[str], dict[str, dict]]:
    """The header and the rows by id of the gradebook at ``path``; nothing if it is missing or empty.

    Raises OSError, ``csv.Error`` or UnicodeDecodeError for a file that is not a readable CSV.
    """
    if not path.exists() or path.stat().st_size == 0:
        return [], {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = {row["id"]: row for row in reader if row.get("id")}
        return list(reader.fieldnames or []), rows


def render_csv(header: list[str], rows: dict[str, dict]) -> str:
    """The text of a gradebook: rows sorted by id, cells made safe by :func:`_cell`."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    for ident in sorted(rows):
        writer.writerow({k: _cell(rows[ident].get(k, "")) for k in header})
    return buffer.getvalue()


def write_csv(path: Path, header: list[str], rows: dict[str, dict]) -> None:
    """Rewrite the gradebook atomically: a reader never sees half a file.

    Rows are sorted by id; keys outside ``header`` are dropped and missing ones left empty.
    Line breaks in a cell become spaces, and text a spreadsheet would run as a formula
    gets a leading ``'``. The new text is written to a temporary file beside the CSV,
    flushed to the disk and renamed over it; on any failure (a full disk raises OSError
    with ``errno.ENOSPC``) the temporary file is removed and the old CSV is left whole.
    """
    atomic.write_text(path, render_csv(header, rows))
