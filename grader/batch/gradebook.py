"""The CSV gradebook of a batch: one row per submission, rewritten atomically after each one.

Columns are ``id``, one score per graded experiment, then :data:`FIXED_COLUMNS`. A row
whose status is :data:`GRADED` is done; every other status is retried when the batch is
rerun with the same CSV.

The ``id`` cell is the id as :func:`grader.batch.names.encode_id` writes it (plain ids
unchanged), and :func:`read_csv` gives back the id that was graded; other cells are made
safe for a spreadsheet, one way. Per-submission files of the results folder are named by
:func:`report_path`, :func:`log_path` and :func:`gradescope_path`.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from grader import atomic
from grader.batch.names import decode_id, encode_id, file_stem

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


def bad_seed_cells(rows: dict[str, dict]) -> dict[str, str]:
    """Rows whose seed cell is not a plain non-negative integer (``123.0`` after a spreadsheet): id -> cell."""
    return {ident: r["seed"] for ident, r in rows.items()
            if r.get("seed") and not (r["seed"].isascii() and r["seed"].isdigit())}


# A spreadsheet runs a cell starting with one of these as a formula (OWASP's list; the
# carriage return it also names is a space by then).
_FORMULA_START = ("=", "+", "-", "@", "\t")


def _cell(value) -> str:
    text = str(value).replace("\r", " ").replace("\n", " ")
    return "'" + text if text[:1] in _FORMULA_START and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_csv(path: Path) -> tuple[list[str], dict[str, dict]]:
    """The header and the rows by id of the gradebook at ``path``; nothing if it is missing or empty.

    Ids are decoded (:func:`grader.batch.names.decode_id`): the keys and each row's ``id``
    are the ids that were graded. A byte-order mark (a spreadsheet's "CSV UTF-8") is skipped.
    Raises OSError, ``csv.Error`` or UnicodeDecodeError for a file that is not a readable CSV.
    """
    if not path.exists() or path.stat().st_size == 0:
        return [], {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = {}
        for row in reader:
            if row.get("id"):
                row["id"] = decode_id(row["id"])
                rows[row["id"]] = row
        return list(reader.fieldnames or []), rows


def render_csv(header: list[str], rows: dict[str, dict]) -> str:
    """The text of a gradebook: rows sorted by id, the id encoded, other cells made safe by :func:`_cell`."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    for ident in sorted(rows):
        writer.writerow({k: encode_id(ident) if k == "id" else _cell(rows[ident].get(k, "")) for k in header})
    return buffer.getvalue()


def write_csv(path: Path, header: list[str], rows: dict[str, dict]) -> None:
    """Rewrite the gradebook atomically: a reader never sees half a file.

    Rows are sorted by id; keys outside ``header`` are dropped and missing ones left empty.
    The ``id`` cell is the key, encoded so that it reads back exactly; in other cells line
    breaks become spaces, and text a spreadsheet would run as a formula gets a leading ``'``. The new text is written to a temporary file beside the CSV,
    flushed to the disk and renamed over it; on any failure (a full disk raises OSError
    with ``errno.ENOSPC``) the temporary file is removed and the old CSV is left whole.
    """
    atomic.write_text(path, render_csv(header, rows))


def report_path(results_dir: Path, ident: str) -> Path:
    """Where a batch keeps the kit's JSON report of submission ``ident`` (read by the class report).

    ``ident`` is the id that was graded (what :func:`read_csv` gives back, not the raw cell).
    The name is safe for any id: inside ``results_dir``, bounded in length, never another
    submission's file (:func:`grader.batch.names.file_stem`).
    """
    return Path(results_dir) / f"{file_stem(ident)}.json"


def log_path(results_dir: Path, ident: str) -> Path:
    """Where a batch keeps the output of the grader process of submission ``ident``."""
    return Path(results_dir) / f"{file_stem(ident)}.log"


def gradescope_path(results_dir: Path, ident: str) -> Path:
    """Where a batch run with ``--results-json`` keeps Gradescope's results.json of ``ident``."""
    return Path(results_dir) / f"{file_stem(ident)}.results.json"
