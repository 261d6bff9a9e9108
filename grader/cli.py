"""``python -m grader``: grade a submission, and the instructor's sub-commands.

    python -m grader [--submission DIR] [--experiments exp_3_1_vgg,...] [--quick] [--lang {zh,en}]
                     [--json FILE] [--results-json FILE] [--junit FILE] [--visible-only] [--seed N]
                     [--time-scale F] [--memory-gb G] [--hide PATH ...] [--golden-cache DIR]
    python -m grader release [OUT_DIR]        skeletons / student handout
    python -m grader goldens                  recompute visible goldens (instructor)
    python -m grader weights {status,synthetic,fetch,verify}
    python -m grader batch SUBMISSIONS_DIR --jobs N --csv grades.csv [--results-dir DIR] [--shard K/N]
    python -m grader batch merge OUT.csv SHARD_CSV...
    python -m grader gradescope OUT.zip [--experiments ...]
    python -m grader report grades.csv --results-dir DIR --out class_report/
    python -m grader similarity SUBMISSIONS_DIR --out similarity/

Grading exits 0 whenever grading ran, whatever the score; non-zero only when the
grader itself failed (2: bad arguments, 3: an experiment could not be graded, 4: a report
file could not be written, 128 + N: stopped by signal N).
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
from pathlib import Path

from grader.kit.i18n import LANGS, default_lang
from grader.kit.paths import EXPERIMENTS, REFERENCE_DIR, parse_experiments

EXIT_BAD_ARGUMENTS = 2

# The signal that asked the grader to stop (SIGINT, SIGTERM or SIGHUP), once one arrived.
STOP: list[int] = []


def _stop(signum, frame) -> None:
    STOP.append(signum)
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP end a grading run as Ctrl-C does: children killed, clean exit."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, _stop)
        except (ValueError, OSError):
            pass   # not the main thread, or not a signal this platform has

# Sub-command -> (module with main(argv), one line of help). Instructor commands live in
# rooms the student handout does not ship (grader.authoring, grader.refnet).
SUBCOMMANDS = {
    "release": ("grader.authoring.release", "regenerate skeletons and stu_upload/, or build the student handout"),
    "goldens": ("grader.authoring.goldens", "recompute data/golden/ from the reference (instructors)"),
    "weights": ("grader.authoring.weights_cli", "status | synthetic | fetch | verify the VGG19 weights"),
    "batch": ("grader.batch", "grade a folder of submissions into a CSV gradebook"),
    "calibrate": ("grader.refnet.calibrate", "compute the DLP quant parameters for a weights file"),
    "gradescope": ("grader.authoring.gradescope_build", "build a Gradescope autograder zip (setup.sh, run_autograder, the kit)"),
    "report": ("grader.authoring.classreport", "a class report (HTML with figures) from a batch's CSV and results"),
    "similarity": ("grader.authoring.similarity", "rank pairs of similar submissions with copydetect (evidence to review)"),
}


def experiments_argument(text: str) -> str:
    """argparse type of ``--experiments``: the text itself once every id in it is known.

    An unknown id is a usage error (exit 2, with the valid ids) before anything runs.
    """
    try:
        parse_experiments(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def grade_parser() -> argparse.ArgumentParser:
    commands = "\n".join(f"  python -m grader {name:<10} {text}" for name, (_, text) in SUBCOMMANDS.items())
    p = argparse.ArgumentParser(prog="python -m grader", description="Grade a chapter-3 submission (60/80/100 tiers).",
                                epilog=f"sub-commands (each has its own --help):\n{commands}\n\n"
                                       f"exit status: 0 grading ran (whatever the score), {EXIT_BAD_ARGUMENTS} bad "
                                       f"arguments,\n  3 an experiment could not be graded, 4 a report file could "
                                       f"not be written,\n  128 + N stopped by signal N\n",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--submission", default=None, help="folder shaped like stu_upload/, relative to the current folder "
                                                         "(default: the kit's stu_upload/)")
    p.add_argument("--experiments", default=None, type=experiments_argument,
                   help="comma-separated subset of " + ",".join(EXPERIMENTS))
    p.add_argument("--quick", action="store_true",
                   help="run only the tier-60 checks (seconds); the others are listed as not run")
    p.add_argument("--lang", choices=LANGS, default=None,
                   help="language of the report table (default: $AICS_LANG, else zh in a student handout "
                        "and en elsewhere)")
    p.add_argument("--json", dest="json_path", default=None, help="write the kit's JSON report here")
    p.add_argument("--results-json", default=None, help="write Gradescope results.json here")
    p.add_argument("--junit", default=None, help="write JUnit XML here")
    p.add_argument("--visible-only", action="store_true", help="run only the checks a student can run alone")
    p.add_argument("--seed", type=int, default=None, help="seed of the hidden checks (default: fresh each run)")
    p.add_argument("--memory-gb", type=float, default=None,
                   help="address-space limit per student process (default $AICS_GRADER_MEMORY_GB or 6)")
    p.add_argument("--time-scale", default=None,
                   help="multiply every time limit by F (slow machine: 2; tests: 0.05); "
                        "default $AICS_GRADER_TIME_SCALE or 1")
    p.add_argument("--hide", action="append", default=[], metavar="PATH",
                   help="also hide PATH from student processes (repeatable; $AICS_GRADER_HIDE adds more)")
    p.add_argument("--golden-cache", default=None, metavar="DIR",
                   help="keep the reference's grade-time outputs in DIR (root-only) and reuse them "
                        "for the same seed and weights (batch grading)")
    p.add_argument("--allow-unisolated", action="store_true",
                   help="grade even where student code cannot be isolated (not root and no user namespaces); "
                        "the report then lists what is unprotected")
    p.add_argument("--verbose", action="store_true", help="show pytest's own output")
    return p


def grade(argv: list[str]) -> int:
    args = grade_parser().parse_args(argv)
    from grader import report
    from grader.groups import parse_time_scale, time_scale_from_env
    from grader.checks.plugin import grade_experiment
    from grader.session import GradingSession
    from grader.kit.submission import SubmissionError, resolve_submission
    from grader.kit.weights import resolve_weights
    try:
        experiments = parse_experiments(args.experiments)
        submission = resolve_submission(args.submission)
    except (SubmissionError, ValueError) as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    try:
        scale = parse_time_scale(args.time_scale) if args.time_scale is not None else time_scale_from_env()
    except ValueError as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    if args.memory_gb is not None and args.memory_gb <= 0:
        print(f"grader: --memory-gb={args.memory_gb} must be positive (e.g. 6)", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    from grader import sandbox
    isolation = sandbox.protections_available()
    trusted = submission.resolve() == REFERENCE_DIR.resolve()
    if not isolation.get("isolated") and not trusted and not args.allow_unisolated:
        print(f"grader: refusing to run untrusted code without isolation: {isolation.get('reason_off')}. "
              f"Run the grader as root (as CI and Gradescope do), or pass --allow-unisolated to grade anyway "
              f"(the report then lists what is unprotected).", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    weights = resolve_weights()
    session = GradingSession(submission, weights, visible_only=args.visible_only, seed=args.seed,
                             memory_bytes=int(args.memory_gb * 2**30) if args.memory_gb else None,
                             hide_paths=tuple(Path(h).resolve() for h in args.hide), time_scale=scale,
                             golden_cache=Path(args.golden_cache).resolve() if args.golden_cache else None,
                             quick=args.quick)
    start = time.perf_counter()
    print(f"grading {submission}")
    print(weights.banner())
    if scale != 1.0:
        print(f"time limits scaled by {scale:g}")
    if args.quick:
        print("--quick: only the tier-60 checks run; the score cannot exceed 60")
    results = []
    for exp in experiments:
        print(f"... {exp}", flush=True)
        results.append(grade_experiment(session, exp, verbose=args.verbose))
        if STOP:
            raise KeyboardInterrupt   # pytest swallowed the signal; the grading run ends here
    doc = report.build(results, session, time.perf_counter() - start)
    doc["time_scale"] = scale
    doc["quick"] = bool(args.quick)
    print(report.table(doc, lang=args.lang or default_lang()))
    try:
        if args.json_path:
            report.write_json(doc, Path(args.json_path))
        if args.results_json:
            report.write_gradescope(doc, Path(args.results_json))
        if args.junit:
            report.write_junit(doc, Path(args.junit))
    except OSError as exc:
        print(f"grader: could not write a report: {exc}", file=sys.stderr)
        return report.EXIT_REPORT_UNWRITTEN
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"grader error: {r.error}", file=sys.stderr)
    return 3 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        cmd, rest = argv[0], argv[1:]
        module_name = SUBCOMMANDS[cmd][0]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            print(f"grader: `python -m grader {cmd}` is an instructor command and is not part of the student "
                  f"handout; ask your instructor (weights: `source env.sh` writes the synthetic VGG19)",
                  file=sys.stderr)
            return EXIT_BAD_ARGUMENTS
        return int(module.main(rest) or 0)
    stop_on_signals()
    try:
        return grade(argv)
    except KeyboardInterrupt:
        signum = STOP[0] if STOP else signal.SIGINT
        print(f"grader: stopped by {signal.Signals(signum).name}; the student's processes were killed and no "
              f"report was written", file=sys.stderr)
        return 128 + signum
