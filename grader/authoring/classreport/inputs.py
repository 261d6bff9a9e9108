"""Read a batch's gradebook CSV and its per-submission JSON reports, as hostile input.

The CSV may have been edited by hand and the reports may be missing, stale, truncated or
forged: every size is bounded, every text is made printable and shortened, and a report
that cannot be used costs its row's details only (the row keeps what the CSV says, and
:attr:`Row.problem` says why the details are missing). Nothing here raises for a bad
report; only a CSV that cannot be read at all raises :class:`InputError`.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from grader.batch import gradebook
from grader.kit.paths import EXPERIMENTS
from grader.report import status as check_status
from grader.scoring import TIERS

MAX_CSV_BYTES = 32 * 2**20
MAX_ROWS = 5000
MAX_REPORT_BYTES = 16 * 2**20
MAX_EXPERIMENTS_PER_REPORT = 10
MAX_CHECKS_PER_EXPERIMENT = 500
MAX_ID_CHARS = 80
MAX_NAME_CHARS = 60
MAX_MESSAGE_CHARS = gradebook.MAX_MESSAGE_CHARS
MAX_CHECK_MESSAGE_CHARS = 2000

# Rows whose grader left a report behind; for the others a missing report is expected.
EXPECTS_REPORT = (gradebook.GRADED, gradebook.GRADER_ERROR)
# The spreadsheet defusing of gradebook._cell: a leading quote before one of these.


class InputError(Exception):
    """The gradebook CSV cannot be read; the message says which file, what was wrong and what to do."""


# --------------------------------------------------------------------------- text


def clean(value, limit: int, one_line: bool = True) -> str:
    """``value`` as text safe for a page or a chart label: at most ``limit`` characters.

    Control and format characters (escape sequences, bidirectional overrides, zero-width
    characters), lone surrogates and private-use characters become ``?``; with
    ``one_line`` line breaks and tabs become spaces. A longer text ends with ``…``.
    """
    text = str(value)[:limit * 4]
    out = []
    for ch in text:
        if ch in "\n\t\r" and one_line:
            out.append(" ")
        elif ch == "\n":
            out.append(ch)
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append("?")
        else:
            out.append(ch)
    text = "".join(out)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _int(text, low: int = 0, high: int = 10**6) -> int | None:
    """A whole number written in a cell (``"80"``, ``"80.0"``), or None for anything else."""
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value != int(value) or not low <= value <= high:
        return None
    return int(value)


def _seconds(text) -> float | None:
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and 0 <= value < 1e7 else None


# --------------------------------------------------------------------------- reports


@dataclass
class CheckRecord:
    name: str
    tier: int
    passed: bool
    status: str          # PASS, FAIL or SKIP (grader.report.status)
    message: str
    hidden: bool


@dataclass
class ExperimentRecord:
    id: str
    score: int
    checks: list[CheckRecord]
    error: str


@dataclass
class ReportRecord:
    weights_kind: str
    weights_sha: str
    hidden_enabled: bool | None
    seed: int | None
    experiments: dict[str, ExperimentRecord]


class MalformedReport(ValueError):
    """A report's JSON is not shaped like the kit's ``--json`` report; the message says where."""


def _need(condition: bool, what: str) -> None:
    if not condition:
        raise MalformedReport(what)


def parse_report(doc) -> ReportRecord:
    """The parts of a kit JSON report (``grader.report.build``) the class report reads.

    Raises :class:`MalformedReport` naming the first field that is missing or of the
    wrong type; counts and texts are bounded.
    """
    _need(isinstance(doc, dict), "the report is not a JSON object")
    weights = doc.get("weights") or {}
    _need(isinstance(weights, dict), "'weights' is not an object")
    hidden = doc.get("hidden_checks") or {}
    _need(isinstance(hidden, dict), "'hidden_checks' is not an object")
    exps = doc.get("experiments")
    _need(isinstance(exps, list), "'experiments' is not a list")
    _need(len(exps) <= MAX_EXPERIMENTS_PER_REPORT, f"{len(exps)} experiments")
    experiments = {}
    for i, exp in enumerate(exps):
        _need(isinstance(exp, dict) and isinstance(exp.get("id"), str), f"experiments[{i}] has no id")
        score = exp.get("score")
        _need(isinstance(score, int) and not isinstance(score, bool), f"experiments[{i}].score is not a number")
        checks = exp.get("checks")
        _need(isinstance(checks, list), f"experiments[{i}].checks is not a list")
        _need(len(checks) <= MAX_CHECKS_PER_EXPERIMENT, f"experiments[{i}] has {len(checks)} checks")
        records = []
        for j, c in enumerate(checks):
            where = f"experiments[{i}].checks[{j}]"
            _need(isinstance(c, dict), f"{where} is not an object")
            _need(isinstance(c.get("name"), str) and c["name"].strip() != "", f"{where}.name is not a text")
            _need(c.get("tier") in TIERS and not isinstance(c.get("tier"), bool), f"{where}.tier is not 60, 80 or 100")
            _need(isinstance(c.get("passed"), bool), f"{where}.passed is not true or false")
            message = c.get("message", "")
            _need(isinstance(message, str), f"{where}.message is not a text")
            record = {"passed": c["passed"], "message": message}
            records.append(CheckRecord(clean(c["name"], MAX_NAME_CHARS), c["tier"], c["passed"],
                                       check_status(record), clean(message, MAX_CHECK_MESSAGE_CHARS, one_line=False),
                                       c.get("hidden") is True))
        error = exp.get("error") or ""
        experiments[exp["id"]] = ExperimentRecord(exp["id"], score, records,
                                                  clean(error, MAX_MESSAGE_CHARS) if isinstance(error, str) else "?")
    seed = hidden.get("seed")
    return ReportRecord(clean(weights.get("kind") or "", 20), clean(weights.get("sha256") or "", 64),
                        hidden.get("enabled") if isinstance(hidden.get("enabled"), bool) else None,
                        seed if isinstance(seed, int) and not isinstance(seed, bool) else None, experiments)


def _candidates(cell: str) -> list[str]:
    """The submission id an ``id`` cell stands for (a list of one, or none if it cannot be decoded).

    The batch writes ids encoded (``%XX`` for unsafe characters); ``gradebook.decode_id`` gives
    back exactly the id that was graded. Only that id is looked up: trying the cell as it is
    as well could find the report of another submission whose id is literally that text.
    """
    try:
        return [gradebook.decode_id(cell)]
    except Exception:   # noqa: BLE001 - an undecodable cell costs this row's details only
        return []


def _inside(path: Path, folder: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return real.startswith(base.rstrip(os.sep) + os.sep)


def load_report(results_dir: Path, ident: str) -> tuple[ReportRecord | None, str]:
    """The report of submission ``ident`` and ``""``, or None and why it cannot be used.

    The file is found only through :func:`grader.batch.gradebook.report_path`; it must be a
    regular file (not a link) inside ``results_dir``, at most :data:`MAX_REPORT_BYTES`,
    strict JSON shaped like the kit's report. ``"no report"`` means no file was found.
    """
    problem = "no report"
    for name in _candidates(ident):
        try:
            path = Path(gradebook.report_path(results_dir, name))
        except Exception as exc:   # noqa: BLE001 - any fault of the naming costs this row only
            problem = f"no report path for this id ({type(exc).__name__})"
            continue
        if not _inside(path, results_dir):
            problem = "its report path is outside the results folder"
            continue
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            return None, f"{path.name} is not a regular file"
        if info.st_size > MAX_REPORT_BYTES:
            return None, f"{path.name} is larger than {MAX_REPORT_BYTES / 2**20:g} MiB"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as f:
                data = f.read(MAX_REPORT_BYTES + 1)
            doc = json.loads(data.decode("utf-8", errors="replace"), parse_constant=lambda _: None)
            return parse_report(doc), ""
        except OSError as exc:
            return None, f"{path.name} cannot be read ({exc.strerror or type(exc).__name__})"
        except (ValueError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, MalformedReport) else "not valid JSON"
            return None, f"{path.name} is malformed: {clean(reason, 120)}"
    return None, problem


# --------------------------------------------------------------------------- the gradebook


@dataclass
class Row:
    ident: str                     # the id as the CSV has it (report look-up)
    label: str                     # the id made printable and short (display)
    scores: dict                   # experiment -> int score, or None when the cell holds none
    total: int | None
    max_total: int | None
    status: str
    seconds: float | None
    seed: str
    weights: str
    message: str
    report: ReportRecord | None = None
    problem: str = ""              # why the report's details are not used ("" when they are)


@dataclass
class Gradebook:
    path: Path
    results_dir: Path
    experiments: list[str]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)


def _read_rows(path: Path) -> tuple[list[str], list[dict], list[str]]:
    """Header, row dicts and notes of the CSV at ``path``; raises :class:`InputError`."""
    try:
        info = path.stat()
    except OSError as exc:
        raise InputError(f"cannot read the gradebook {path}: {exc.strerror or exc}; pass the CSV that "
                         f"`python -m grader batch ... --csv` wrote") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path} is not a file; pass the gradebook CSV of a batch")
    if info.st_size > MAX_CSV_BYTES:
        raise InputError(f"{path} is {info.st_size / 2**20:.0f} MiB; a gradebook is at most "
                         f"{MAX_CSV_BYTES // 2**20} MiB (is it the right file?)")
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read the gradebook {path}: {exc.strerror or exc}") from None
    notes = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
        if "id" not in header:
            raise InputError(f"{path} has no 'id' column (its first line is {clean(','.join(header), 120)!r}); "
                             f"pass the gradebook CSV of `python -m grader batch`")
        rows = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(rows) == MAX_ROWS:
                notes.append(f"the CSV has more than {MAX_ROWS} rows; only the first {MAX_ROWS} are shown")
                break
            rows.append(dict(zip(header, cells)))
    except csv.Error as exc:
        raise InputError(f"{path} line {reader.line_num} is not valid CSV ({exc}); fix the line or "
                         f"regenerate the gradebook with `python -m grader batch`") from None
    return header, rows, notes


def load_gradebook(csv_path: Path, results_dir: Path) -> Gradebook:
    """Read the gradebook at ``csv_path`` and each row's report from ``results_dir``.

    Experiments are the CSV's columns that name a kit experiment; other unknown columns
    are ignored (with a note). A repeated id keeps its last row, as the batch does.
    """
    csv_path, results_dir = Path(csv_path), Path(results_dir)
    header, raw_rows, notes = _read_rows(csv_path)
    experiments = [h for h in header if h in EXPERIMENTS]
    known = {"id", *EXPERIMENTS, *gradebook.FIXED_COLUMNS}
    unknown = [clean(h, 40) for h in header if h not in known]
    if unknown:
        notes.append(f"columns ignored (not written by a batch): {', '.join(unknown[:10])}")
    if not experiments:
        notes.append("the CSV has no experiment column (" + ", ".join(EXPERIMENTS) + ")")
    by_id: dict[str, dict] = {}
    for raw in raw_rows:
        ident = str(raw.get("id") or "")
        if ident:
            by_id[ident] = raw
    repeated = len([r for r in raw_rows if r.get("id")]) - len(by_id)
    if repeated:
        notes.append(f"{repeated} repeated id(s): the last row of each is used")
    rows = []
    for ident in sorted(by_id):
        raw = by_id[ident]
        row = Row(ident=ident, label=clean(ident, MAX_ID_CHARS),
                  scores={e: _int(raw.get(e, ""), 0, 100) for e in experiments},
                  total=_int(raw.get("total", "")), max_total=_int(raw.get("max_total", "")),
                  status=clean(raw.get("status", "") or "(empty)", 30), seconds=_seconds(raw.get("seconds", "")),
                  seed=clean(raw.get("seed", ""), 24), weights=clean(raw.get("weights", ""), 64),
                  message=clean(raw.get("message", ""), MAX_MESSAGE_CHARS))
        _attach_report(row, results_dir, experiments)
        rows.append(row)
    return Gradebook(csv_path, results_dir, experiments, rows, notes)


def _attach_report(row: Row, results_dir: Path, experiments: list[str]) -> None:
    """Give ``row`` its report when one exists and agrees with the CSV; else say why not."""
    if row.status not in EXPECTS_REPORT:
        # A row that ended before a report (bad zip, timeout, crash) has none of this run:
        # a file under its name would be of an earlier run.
        return
    report, problem = load_report(results_dir, row.ident)
    if report is None:
        row.problem = problem
        return
    for exp in experiments:
        got = report.experiments.get(exp)
        want = row.scores.get(exp)
        if got is not None and want is not None and got.score != want:
            row.problem = (f"the report says {exp} {got.score}, the CSV {want}: a report of another run; "
                           f"details left out")
            return
    row.report = report
