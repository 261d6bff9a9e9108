"""``python -m grader batch``: grade a folder of submissions in parallel into a CSV gradebook.

    python -m grader batch SUBMISSIONS_DIR --jobs N --csv grades.csv [--results-dir DIR]
                           [--experiments ...] [--seed N] [--force] [--timeout S]
                           [--time-scale F] [--memory-gb G] [--visible-only] [--quick]
                           [--shard K/N]
    python -m grader batch merge OUT.csv SHARD_CSV... [--results-dir DIR] [--allow-missing]

Every sub-folder and every ``*.zip`` of SUBMISSIONS_DIR is one submission. Zips are
extracted (no absolute or ``..`` paths, no links, size- and count-capped) into a private
temporary folder. Each submission is graded by its own ``python -m grader`` subprocess, so
a crash or hang of the grader itself costs one row, never the batch; a per-submission
overall timeout backs up the sandbox's own limits.

Student processes never see the other submissions: the submissions folder, the
extraction folder, the results folder, the CSV and the cache of reference outputs are
passed to each grader as hidden paths.

The CSV is rewritten after every finished submission (one row per submission), each time
whole (a temporary file renamed over it), so an interrupted batch loses nothing. Rerunning
with the same ``--csv`` skips the rows already graded (``--force`` regrades all) and reuses
the seed recorded there, so the whole class is graded on the same hidden inputs.

``--shard K/N`` grades the submissions whose id hashes to shard K (:mod:`grader.batch.shard`)
into a CSV of its own; every shard needs the same ``--seed``. ``batch merge`` checks that the
shards are complete and were graded alike, and writes one gradebook (:mod:`grader.batch.merge`).
The word ``merge`` as first argument is that command; a submissions folder named ``merge`` is
written ``./merge``.

What cannot cost the night:

* a broken zip (encrypted, corrupt, truncated, an unknown compression method, not a zip)
  is a ``bad-submission`` row with the reason, and the batch goes on;
* a second batch on the same CSV or the same results folder is refused (exit 2): the first
  holds ``<csv>.lock`` and ``<results>/.batch.lock``;
* a gradebook re-saved by a spreadsheet (a byte-order mark is fine; ``;`` separators, a seed
  cell turned into ``123.0``, two seeds in one file) is refused, untouched, with what to do;
* a failed write (a full disk) stops the batch with the CSV whole and says how to resume
  (exit 3); SIGINT, SIGTERM and SIGHUP stop it the same way (exit 130, 143, 129), killing
  the running graders first;
* the scratch folder holding the extracted zips is removed however the batch ends.

Modules: ``intake`` (finding and extracting submissions), ``gradebook`` (the CSV),
``names`` (ids made safe for the CSV, file names and the terminal), ``record`` (the settings
file beside the CSV), ``shard`` (the split), ``merge`` (the merge command), ``scheduler``
(the grading subprocesses and the run loop), ``lock``, ``stopping``; this one holds the
command line.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from grader.batch.scheduler import BatchError, run
from grader.batch.shard import parse_shard
from grader.batch.stopping import Interrupted, WriteFailed, resume_command
from grader.kit.paths import EXPERIMENTS, parse_experiments

__all__ = ["main", "parser", "EXIT_CODES"]

EXIT_REFUSED = 2          # bad arguments, or the CSV belongs to another batch or is locked by one
EXIT_WRITE_FAILED = 3     # a write failed (a full disk); the CSV is whole, rerun to resume
EXIT_CODES = {0: "the batch ran to its end (whatever the scores)", EXIT_REFUSED: "refused to start",
              EXIT_WRITE_FAILED: "stopped: a write failed", 130: "stopped by SIGINT (Ctrl-C)",
              143: "stopped by SIGTERM", 129: "stopped by SIGHUP"}


def experiments_argument(text: str) -> str:
    """argparse type of ``--experiments``: an unknown id is a usage error (exit 2) before any grading."""
    try:
        parse_experiments(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def shard_argument(text: str) -> tuple[int, int]:
    """argparse type of ``--shard``: ``K/N`` with 1 <= K <= N, else a usage error (exit 2)."""
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


USAGE = """python -m grader batch SUBMISSIONS_DIR --csv grades.csv [options]
       python -m grader batch SUBMISSIONS_DIR --csv shard-K.csv --shard K/N --seed S [options]
       python -m grader batch merge OUT.csv SHARD_CSV... [--results-dir DIR] [--allow-missing]"""

EPILOG = """Sharding a class over several machines or cluster jobs: run shard K of N with
--shard K/N, the same --seed on every shard and a --csv of its own, then
`python -m grader batch merge grades.csv shard-*.csv` (see `batch merge --help`).
A submission belongs to shard K by a hash of its id, whatever machine lists the folder.

`merge` as the first argument is the merge command; to grade a submissions folder
literally named merge, write ./merge."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grader batch", usage=USAGE, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Grade every sub-folder and *.zip of a folder into a CSV gradebook.")
    p.add_argument("submissions", metavar="SUBMISSIONS_DIR",
                   help="folder of submissions (sub-folders shaped like stu_upload/, or zip files); "
                        "a folder named merge is written ./merge")
    p.add_argument("--csv", required=True, help="the gradebook to write (and to resume from)")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="submissions graded at once (each uses about one core and up to --memory-gb)")
    p.add_argument("--results-dir", default=None,
                   help="per-submission JSON reports and logs (default: a folder next to the CSV)")
    p.add_argument("--results-json", action="store_true", help="also write Gradescope results.json per submission")
    p.add_argument("--experiments", default=None, type=experiments_argument,
                   help="comma-separated subset of " + ",".join(EXPERIMENTS))
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the hidden checks for the whole batch (required with --shard)")
    p.add_argument("--shard", type=shard_argument, default=None, metavar="K/N",
                   help="grade only shard K of N (1 <= K <= N) into this --csv; merge the shards with `batch merge`")
    p.add_argument("--visible-only", action="store_true", help="no hidden checks")
    p.add_argument("--quick", action="store_true",
                   help="tier-60 checks only (seconds per submission; scores cap at 60): a first pass over a class")
    p.add_argument("--force", action="store_true", help="regrade submissions already in the CSV")
    p.add_argument("--timeout", type=float, default=None, help="overall seconds per submission (default: derived)")
    p.add_argument("--time-scale", default=None, help="multiply every time limit (default $AICS_GRADER_TIME_SCALE or 1)")
    p.add_argument("--memory-gb", type=float, default=None, help="memory limit per student process")
    p.add_argument("--keep-cache", default=None, metavar="DIR",
                   help="keep the reference's outputs in DIR for later runs with the same seed")
    return p


def main(argv: list[str]) -> int:
    """Run a batch, or ``merge`` shard gradebooks; the exit status says how it ended (see :data:`EXIT_CODES`).

    Usage errors return 2 (argparse's message on stderr) rather than raising SystemExit.
    """
    argv = list(argv)
    try:
        if argv[:1] == ["merge"]:
            from grader.batch import merge
            return merge.main(argv[1:])
        args = parser().parse_args(argv)
    except SystemExit as exc:   # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_REFUSED
    csv_name = Path(args.csv).name
    resume = resume_command(argv)
    args.command = resume
    note = " (without --force, which would regrade everyone)" if "--force" in argv else ""
    try:
        return run(args)
    except BatchError as exc:
        _say(f"grader batch: {exc}")
        return EXIT_REFUSED
    except WriteFailed as exc:
        _say(f"grader batch: stopped: {exc}. {csv_name} is whole and keeps every row finished so far "
             f"({exc.finished} this run). To resume, {exc.hint}, then run the same command "
             f"again{note}: {resume}")
        return EXIT_WRITE_FAILED
    except Interrupted as exc:
        _say(f"grader batch: stopped by {exc.name}; running graders were killed and {csv_name} keeps every row "
             f"finished so far ({exc.finished} this run). To resume, run the same command "
             f"again{note}: {resume}")
        return exc.exit_code
    except KeyboardInterrupt:   # before the signal handlers were in place
        _say(f"grader batch: interrupted. To resume, run the same command again{note}: {resume}")
        return 128 + signal.SIGINT


def _say(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
