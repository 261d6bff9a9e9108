"""``python -m grader batch merge OUT.csv SHARD_CSV...``: one gradebook from the gradebooks of the shards.

Each input is the CSV of one ``batch --shard K/N`` run, with its settings file
(``<csv>.batch.json``, :mod:`grader.batch.record`) beside it. The output has the columns and
the row format of an unsharded batch, rows sorted by id, written atomically; beside it goes a
settings file of its own, so the merged gradebook resumes like an unsharded one.

Refused (exit 2, nothing written), every problem listed with the files and ids it concerns:

* an input that is not a shard's gradebook (no settings file, an unsharded one, unreadable),
  or one whose batch is still running (its lock is held);
* shards of different sizes N, or one shard K given twice;
* shards graded differently: another seed, other experiments (columns), ``--visible-only`` or
  ``--quick`` on one and not the other, other weights (the ``weights`` column), or another
  listing of the submissions folder;
* a row whose id does not belong to its shard (a hand-edited CSV, or one of another batch);
* a missing shard, or a submission a shard owed that has no row (that shard stopped early):
  unless ``--allow-missing``, which writes what there is and lists what is missing.

Duplicate ids cannot occur otherwise: an id belongs to exactly one shard (its hash), each
shard is given once, and a row in the wrong shard is refused, so two rows of one id would
always mean a hand-edited or foreign file; the merge does not pick one.

Rows whose status is not ``graded`` are kept, as an unsharded batch keeps them, and listed
with the command that regrades them (rerun that shard: it resumes, then merge again).
"""
from __future__ import annotations

import argparse
import csv
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from grader.batch.gradebook import GRADED, gradescope_path, log_path, read_csv, report_path, write_csv
from grader.batch.lock import FolderLock, GradebookLock, LockHeld
from grader.batch.names import display_id
from grader.batch.record import (BatchRecord, RecordError, read_record, record_path, relative_results,
                                 write_record)
from grader.batch.shard import shard_of
from grader.results import printable

EXIT_REFUSED = 2
MAX_LISTED = 10          # ids named in one message; the rest are counted
MERGE_COMMAND = "python -m grader batch merge"


class MergeRefused(Exception):
    """The merge cannot write a whole, consistent gradebook; ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class ShardBook:
    """One input: the CSV of one shard, its rows and its settings."""
    csv: Path
    header: list[str]
    rows: dict[str, dict]
    record: BatchRecord

    @property
    def k(self) -> int:
        return self.record.shard[0]

    @property
    def n(self) -> int:
        return self.record.shard[1]

    @property
    def name(self) -> str:
        return _file(self.csv)


def _file(path: Path) -> str:
    return printable(str(path))


def _ids(idents) -> str:
    idents = sorted(idents)
    shown = ", ".join(display_id(i) for i in idents[:MAX_LISTED])
    return shown + (f" (+{len(idents) - MAX_LISTED} more)" if len(idents) > MAX_LISTED else "")


def _rerun(book: ShardBook) -> str:
    command = printable(book.record.command) if book.record.command else \
        f"python -m grader batch SUBMISSIONS --shard {book.k}/{book.n} --seed {book.record.seed} --csv {book.name}"
    return f"rerun shard {book.k}/{book.n} where it was graded (it resumes and grades only these): {command}"


# --------------------------------------------------------------------------- reading the inputs


def load(paths: list[Path]) -> list[ShardBook]:
    """Read every input; :class:`MergeRefused` lists those that are not usable shard gradebooks."""
    books, problems, seen = [], [], {}
    for path in paths:
        where = path.resolve()
        if where in seen:
            problems.append(f"{_file(path)} is given twice (also as {_file(seen[where])})")
            continue
        seen[where] = path
        if not path.is_file():
            problems.append(f"{_file(path)} does not exist or is not a file")
            continue
        try:
            record = read_record(path)
        except RecordError as exc:
            problems.append(printable(str(exc)))
            continue
        if record is None:
            problems.append(f"{_file(path)} has no settings file {_file(record_path(path).name)} beside it: it was "
                            f"not written by `batch --shard K/N`, or the file was not copied with it")
            continue
        if record.shard is None:
            problems.append(f"{_file(path)} is the gradebook of an unsharded batch; merge takes the gradebooks of "
                            f"`batch --shard K/N`")
            continue
        running = _running(path)
        if running:
            problems.append(f"{_file(path)} is still being written by a batch ({running}); wait for shard "
                            f"{record.shard[0]}/{record.shard[1]} to finish")
            continue
        try:
            header, rows = read_csv(path)
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            problems.append(f"cannot read {_file(path)} as a gradebook ({printable(str(exc))})")
            continue
        books.append(ShardBook(path, header, rows, record))
    if problems:
        raise MergeRefused(problems)
    if not books:
        raise MergeRefused(["no shard gradebook given"])
    return books


def _running(path: Path) -> str:
    """``pid N`` when a batch holds the lock of gradebook ``path``, else ``""``."""
    lock = GradebookLock(path)
    try:
        lock.acquire()
    except LockHeld as exc:
        return f"pid {exc.pid or 'unknown'}"
    except OSError:
        return ""   # a read-only copy (downloaded artifacts): nobody can be writing it
    lock.release()
    return ""


# --------------------------------------------------------------------------- checking


def check(books: list[ShardBook], allow_missing: bool = False) -> list[str]:
    """Problems that refuse the merge (:class:`MergeRefused`); returns the notes to print otherwise.

    Notes list the rows that are not graded and, with ``allow_missing``, what is missing.
    """
    problems: list[str] = []
    first = books[0]
    sizes = {b.n for b in books}
    if len(sizes) > 1:
        problems.append("the gradebooks are shards of different splits: " +
                        ", ".join(f"{b.name} is {b.record.label()}" for b in books))
    by_k: dict[int, ShardBook] = {}
    for book in books:
        if book.k in by_k:
            problems.append(f"shard {book.k}/{book.n} is given twice: {by_k[book.k].name} and {book.name}; pass one "
                            f"gradebook per shard (rerun a shard into its own CSV to complete it)")
        else:
            by_k[book.k] = book
    for key in first.record.mode():
        groups: dict[str, list[str]] = {}
        for book in books:
            groups.setdefault(_value(book.record.mode()[key]), []).append(book.name)
        if len(groups) > 1:
            problems.append(f"the shards were graded with different {key}: " +
                            "; ".join(f"{key} = {value} in {', '.join(names)}" for value, names in groups.items()) +
                            ". Shards of one class must be graded the same way: regrade the odd ones with --force")
    for book in books[1:]:
        if book.header != first.header:
            problems.append(f"{book.name} has columns {[printable(h) for h in book.header]}, {first.name} has "
                            f"{[printable(h) for h in first.header]}")
        if book.record.listed_sha256 != first.record.listed_sha256:
            problems.append(f"{book.name} ({book.record.label()}) listed {book.record.listed} submissions, "
                            f"{first.name} ({first.record.label()}) listed {first.record.listed}, not the same "
                            f"ones: the submissions folder changed between the shards (or they read different "
                            f"copies). Rerun every shard on the final folder (each resumes and grades only what "
                            f"is new), then merge again")
    weights: dict[str, list[str]] = {}
    for book in books:
        wrong_seed = sorted(i for i, r in book.rows.items() if r.get("seed") and r["seed"] != str(book.record.seed))
        if wrong_seed:
            problems.append(f"{book.name}: rows {_ids(wrong_seed)} have another seed than the shard's "
                            f"{book.record.seed} (hand-edited?)")
        foreign = sorted(i for i in book.rows if shard_of(i, book.n) != book.k)
        if foreign:
            problems.append(f"{book.name}: rows {_ids(foreign)} do not belong to {book.record.label()} (a "
                            f"hand-edited CSV, or rows of another batch); remove them or regrade the shard "
                            f"with --force")
        for row in book.rows.values():
            if row.get("weights"):
                weights.setdefault(row["weights"], [])
                if book.name not in weights[row["weights"]]:
                    weights[row["weights"]].append(book.name)
    if len(weights) > 1:
        problems.append("the shards were graded with different weights files (the weights column): " +
                        "; ".join(f"{printable(w)[:16]} in {', '.join(names)}" for w, names in sorted(weights.items())) +
                        ". Regrade the odd ones with the class's weights (--force on that shard)")
    notes: list[str] = []
    if len(sizes) == 1:
        n = first.n
        absent = [k for k in range(1, n + 1) if k not in by_k]
        if absent:
            (notes if allow_missing else problems).append(
                f"shard(s) {', '.join(f'{k}/{n}' for k in absent)} missing: grade each like the others (its own "
                f"--shard K/{n} and --csv, the same --seed {first.record.seed}), then merge again")
    for book in sorted(by_k.values(), key=lambda b: b.k):
        owed = sorted(set(book.record.assigned) - set(book.rows))
        if owed:
            (notes if allow_missing else problems).append(
                f"{book.name}: {len(owed)} submission(s) of {book.record.label()} have no row: {_ids(owed)} "
                f"(the shard stopped early?); {_rerun(book)}")
        ungraded = sorted(i for i, r in book.rows.items() if r.get("status") != GRADED)
        if ungraded:
            kinds = sorted({printable(book.rows[i].get("status", "")) or "no status" for i in ungraded})
            notes.append(f"{book.name}: {len(ungraded)} row(s) not graded ({', '.join(kinds)}): {_ids(ungraded)}; "
                         f"to retry them, {_rerun(book)}")
    if problems:
        raise MergeRefused(problems)
    return notes


def _value(value) -> str:
    return ",".join(value) if isinstance(value, list) else str(value).lower() if isinstance(value, bool) else str(value)


# --------------------------------------------------------------------------- writing


def _writable_output(out: Path, books: list[ShardBook]) -> None:
    """OUT may be new, empty, or an earlier merge's output; never an input or another batch's gradebook."""
    where = out.resolve()
    if any(where == b.csv.resolve() for b in books):
        raise MergeRefused([f"{_file(out)} is also an input; write the merged gradebook to a new file"])
    if not where.exists() or where.stat().st_size == 0:
        return
    try:
        record = read_record(out)
    except RecordError:
        record = None
    if record is None or not record.command.startswith(MERGE_COMMAND):
        raise MergeRefused([f"{_file(out)} exists and is not the output of an earlier merge; give another OUT.csv "
                            f"or delete it first"])


def _check_results_sources(books: list[ShardBook]) -> None:
    missing = [f"the results folder of {b.record.label()} is not at {_file(b.record.results_folder(b.csv))}; copy "
               f"it there (it travels with {b.name}) or leave out --results-dir"
               for b in books if not b.record.results_folder(b.csv).is_dir()]
    if missing:
        raise MergeRefused(missing)


def copy_results(books: list[ShardBook], dest: Path) -> int:
    """Copy each shard's per-submission files of its rows into ``dest``; the number of files copied.

    A shard's results folder is found through its settings file, relative to where its CSV is
    now. The files keep their names (:func:`grader.batch.gradebook.report_path`); ids of
    different shards never share one.
    """
    _check_results_sources(books)
    dest.mkdir(parents=True, exist_ok=True)
    copied = 0
    with FolderLock(dest):
        for book in books:
            source = book.record.results_folder(book.csv)
            for ident in book.rows:
                for name in (report_path, log_path, gradescope_path):
                    src, dst = name(source, ident), name(dest, ident)
                    if not src.is_file() or src.is_symlink() or src.resolve() == dst.resolve():
                        continue
                    shutil.copyfile(src, dst)
                    copied += 1
    return copied


def merge(out: Path, paths: list[Path], allow_missing: bool = False, results_dir: Path | None = None,
          command: str = "") -> tuple[dict[str, dict], list[str]]:
    """Merge the shard gradebooks ``paths`` into ``out``; (merged rows by id, notes).

    Raises :class:`MergeRefused` with every problem found, before anything is written.
    """
    books = sorted(load(paths), key=lambda b: b.record.shard)
    notes = check(books, allow_missing)
    _writable_output(out, books)
    if results_dir is not None:
        _check_results_sources(books)
    rows: dict[str, dict] = {}
    for book in books:
        rows.update(book.rows)
    first = books[0].record
    record = BatchRecord(seed=first.seed, experiments=list(first.experiments), visible_only=first.visible_only,
                         quick=first.quick, shard=None,
                         assigned=sorted({i for b in books for i in b.record.assigned}),
                         listed=first.listed, listed_sha256=first.listed_sha256, submissions=first.submissions,
                         results_dir=relative_results(out.resolve(), results_dir.resolve()) if results_dir else "",
                         command=command or MERGE_COMMAND)
    out.parent.mkdir(parents=True, exist_ok=True)
    with GradebookLock(out.resolve()):
        if results_dir is not None:
            notes.append(f"copied {copy_results(books, results_dir)} report and log file(s) into "
                         f"{_file(results_dir)}")
        write_csv(out.resolve(), books[0].header, rows)
        write_record(out.resolve(), record)
    return rows, notes


# --------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m grader batch merge",
        description="Merge the gradebooks of `python -m grader batch DIR --shard K/N` runs into one gradebook, "
                    "with the columns and rows of an unsharded batch. Refuses (exit 2, nothing written) shards "
                    "graded differently, missing shards or missing rows.",
        epilog="To grade a submissions folder that is literally named 'merge', write it as ./merge.")
    p.add_argument("out", metavar="OUT.csv", help="the merged gradebook to write")
    p.add_argument("shards", metavar="SHARD_CSV", nargs="+", help="the gradebook of each shard (its "
                   "<csv>.batch.json beside it)")
    p.add_argument("--results-dir", default=None, metavar="DIR",
                   help="also copy every shard's per-submission reports and logs into DIR (for the class report)")
    p.add_argument("--allow-missing", action="store_true",
                   help="write the merge even when shards or rows are missing (they are listed)")
    return p


_OPTIONS = {"-h", "--help", "--results-dir", "--allow-missing"}


def main(argv: list[str]) -> int:
    """Merge; 0 when written, 2 when refused (the problems go to stderr)."""
    # Options of a grading batch mean the user wanted to grade a folder named merge.
    unknown = [a for a in argv if a.startswith("-") and a.split("=")[0] not in _OPTIONS]
    if unknown:
        hint = (" To grade the submissions folder named 'merge' here, write ./merge." if Path("merge").is_dir()
                else " See python -m grader batch merge --help.")
        _say(f"grader batch merge: unknown option(s) {' '.join(printable(u) for u in unknown)}.{hint}")
        return EXIT_REFUSED
    args = parser().parse_args(argv)
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        _say(f"grader batch merge: OUT.csv {printable(args.out)} does not end in .csv; the first argument is the "
             f"merged gradebook to write, then the shard gradebooks")
        return EXIT_REFUSED
    command = shlex.join([*MERGE_COMMAND.split(), *argv])
    try:
        rows, notes = merge(out, [Path(s) for s in args.shards], args.allow_missing,
                            Path(args.results_dir) if args.results_dir else None, command)
    except MergeRefused as exc:
        _say(f"grader batch merge: refused, nothing written to {_file(out)}:")
        for problem in exc.problems:
            _say(f"  - {problem}")
        return EXIT_REFUSED
    except LockHeld as exc:
        _say(f"grader batch merge: {_file(exc.path)} is held by another process (pid {exc.pid or 'unknown'}); "
             f"nothing written")
        return EXIT_REFUSED
    except OSError as exc:
        _say(f"grader batch merge: could not write {_file(out)}: {printable(str(exc))}; the old file, if any, is "
             f"whole")
        return EXIT_REFUSED
    graded = sum(1 for r in rows.values() if r.get("status") == GRADED)
    for note in notes:
        _say(f"batch merge: {note}")
    _say(f"batch merge: {len(rows)} rows from {len(args.shards)} shard gradebook(s) ({graded} graded, "
         f"{len(rows) - graded} not) into {_file(out)}")
    return 0


def _say(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
