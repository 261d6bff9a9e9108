"""``python -m grader batch``: grade a folder of submissions in parallel into a CSV gradebook.

    python -m grader batch SUBMISSIONS_DIR --jobs N --csv grades.csv [--results-dir DIR]
                           [--experiments ...] [--seed N] [--force] [--timeout S]
                           [--time-scale F] [--memory-gb G] [--visible-only]

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

What cannot cost the night:

* a broken zip (encrypted, corrupt, truncated, an unknown compression method, not a zip)
  is a ``bad-submission`` row with the reason, and the batch goes on;
* a second batch on the same CSV is refused (exit 2): the first holds ``<csv>.lock``;
* a failed write (a full disk) stops the batch with the CSV whole and says how to resume
  (exit 3); SIGINT, SIGTERM and SIGHUP stop it the same way (exit 130, 143, 129), killing
  the running graders first;
* the scratch folder holding the extracted zips is removed however the batch ends.

Modules: ``intake`` (finding and extracting submissions), ``gradebook`` (the CSV),
``scheduler`` (the grading subprocesses and the run loop); this one holds the command line.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from grader.batch.scheduler import BatchError, run
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grader batch",
                                description="Grade every sub-folder and *.zip of a folder into a CSV gradebook.")
    p.add_argument("submissions", help="folder of submissions (sub-folders shaped like stu_upload/, or zip files)")
    p.add_argument("--csv", required=True, help="the gradebook to write (and to resume from)")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="submissions graded at once (each uses about one core and up to --memory-gb)")
    p.add_argument("--results-dir", default=None,
                   help="per-submission JSON reports and logs (default: a folder next to the CSV)")
    p.add_argument("--results-json", action="store_true", help="also write Gradescope results.json per submission")
    p.add_argument("--experiments", default=None, type=experiments_argument,
                   help="comma-separated subset of " + ",".join(EXPERIMENTS))
    p.add_argument("--seed", type=int, default=None, help="seed of the hidden checks for the whole batch")
    p.add_argument("--visible-only", action="store_true", help="no hidden checks")
    p.add_argument("--force", action="store_true", help="regrade submissions already in the CSV")
    p.add_argument("--timeout", type=float, default=None, help="overall seconds per submission (default: derived)")
    p.add_argument("--time-scale", default=None, help="multiply every time limit (default $AICS_GRADER_TIME_SCALE or 1)")
    p.add_argument("--memory-gb", type=float, default=None, help="memory limit per student process")
    p.add_argument("--keep-cache", default=None, metavar="DIR",
                   help="keep the reference's outputs in DIR for later runs with the same seed")
    return p


def main(argv: list[str]) -> int:
    """Run a batch; the exit status says how it ended (see :data:`EXIT_CODES`)."""
    args = parser().parse_args(argv)
    csv_name = Path(args.csv).name
    resume = resume_command(argv)
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
