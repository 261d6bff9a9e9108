"""The command line of ``python -m grader similarity``: read, score, write, and say what it means."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from grader import atomic
from grader.authoring.similarity import page, table
from grader.authoring.similarity.collect import MAX_FILE_BYTES, Submission, collect
from grader.authoring.similarity.scoring import NOISE_TOKENS, boilerplate_hashes, default_common, score_pairs
from grader.batch.intake import remove_tree
from grader.kit.paths import EXPERIMENTS, parse_experiments
from grader.results import printable

EXIT_BAD_ARGUMENTS = 2
EXIT_SCRATCH_FAILED = 3   # the private folder for extracting zips could not be written
EXIT_UNWRITTEN = 4        # pairs.csv or index.html could not be written
SHOWN_ON_TERMINAL = 10
MAX_BOILERPLATE_FILES = 1000

CAVEAT = ("This ranking is evidence for a human to review, never a verdict: similar code can have innocent "
          "causes (the book prints most of the code, students work from the same figures, and the short "
          "answer to a TODO is often the same line for everyone). Read the highlighted code before "
          "concluding anything.")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grader similarity",
                                description="Rank pairs of submissions by the code they share (copydetect "
                                            "fingerprints, the given skeleton code left out). " + CAVEAT)
    p.add_argument("submissions", help="folder of submissions, as for `python -m grader batch` "
                                       "(sub-folders shaped like stu_upload/, or zip files)")
    p.add_argument("--out", default="similarity", help="folder for pairs.csv and index.html (default: similarity)")
    p.add_argument("--experiments", default=None, help="comma-separated subset of " + ",".join(EXPERIMENTS))
    p.add_argument("--top", type=int, default=20, help="pairs shown with their code in index.html (default 20)")
    p.add_argument("--common", type=int, default=None, metavar="N",
                   help="ignore code that more than N submissions share in a file (default: 10%% of the "
                        "submissions, at least 10; 0 ignores nothing)")
    p.add_argument("--boilerplate", action="append", default=[], metavar="DIR",
                   help="more given code that must not count (e.g. an older skeleton): every *.py under DIR; "
                        "repeatable. The kit's skeletons are always given code.")
    return p


def main(argv: list[str]) -> int:
    """Run the command; the exit status is 0 when both files were written (see the EXIT_* constants)."""
    args = parser().parse_args(argv)
    folder = Path(args.submissions)
    out = Path(args.out)
    problem = _check_arguments(args, folder, out)
    if problem:
        _say(f"grader similarity: {problem}")
        return EXIT_BAD_ARGUMENTS
    experiments = parse_experiments(args.experiments)
    try:
        given = _given_code(args.boilerplate)
    except (OSError, ValueError) as exc:
        _say(f"grader similarity: cannot read the given code: {printable(exc)}")
        return EXIT_BAD_ARGUMENTS
    previous = _stop_on_signals()
    scratch = None
    try:
        start = time.monotonic()
        try:
            scratch = Path(tempfile.mkdtemp(prefix="aics-similarity-", dir=os.environ.get("AICS_GRADER_TMP") or None))
            _say(f"reading the submissions of {printable(folder)} ...")
            subs, skipped = collect(folder, experiments, scratch)
        except OSError as exc:
            _say(f"grader similarity: could not extract a zip into the private folder {scratch}: "
                 f"{printable(exc)}. Free some space (or set AICS_GRADER_TMP to a roomier folder) and run again.")
            return EXIT_SCRATCH_FAILED
        for s in skipped:
            _say(f"  skipped {s.id}: {s.reason}")
        n = len(subs)
        _say(f"comparing {n} submissions ({n * (n - 1) // 2} pairs) ...")
        result = score_pairs(subs, boilerplate_hashes(given), common=args.common, progress=_progress)
        seconds = time.monotonic() - start
        common = default_common(n) if args.common is None else args.common
        settings = {"experiments": experiments, "k": NOISE_TOKENS, "common": common}
        try:
            out.mkdir(parents=True, exist_ok=True)
            atomic.write_text(out / "pairs.csv", table.render(result.pairs, subs))
            atomic.write_text(out / "index.html", page.render(subs, result, args.top, skipped, settings))
        except OSError as exc:
            _say(f"grader similarity: could not write into {printable(out)}: {printable(exc)}")
            return EXIT_UNWRITTEN
        _print_summary(subs, result, skipped, out, args.top, seconds)
        return 0
    except KeyboardInterrupt:
        _say("grader similarity: interrupted; nothing was written")
        return 130
    finally:
        if scratch is not None:
            remove_tree(scratch)
        _restore_signals(previous)


def _check_arguments(args, folder: Path, out: Path) -> str:
    """The first thing wrong with the arguments, in words a user can act on; empty when all is well."""
    if not folder.is_dir():
        return f"{printable(folder)} is not a folder; give the folder that holds one sub-folder or zip per student"
    try:
        parse_experiments(args.experiments)
    except ValueError as exc:
        return str(exc)
    if args.top < 1:
        return f"--top {args.top}: show at least one pair (e.g. --top 20)"
    if args.common is not None and args.common < 0:
        return f"--common {args.common}: give a number of submissions, or 0 to ignore nothing"
    if out.resolve().is_relative_to(folder.resolve()):
        return (f"--out {printable(out)} is inside the submissions folder, where it would be read as a submission "
                f"next time; choose a folder outside it (e.g. --out similarity)")
    for extra in args.boilerplate:
        if not Path(extra).is_dir():
            return f"--boilerplate {printable(extra)} is not a folder"
    return ""


def _given_code(extra_dirs: list[str]) -> list[str]:
    """The texts that never count: the skeletons the kit generates from its reference, and ``extra_dirs``.

    The skeletons come from ``grader/reference`` through :mod:`grader.authoring.skeletons`, the
    same text the kit ships, so an instructor's edited ``stu_upload/`` cannot change them.
    Experiment 3.2's skeleton of every track counts as given code, whichever track the course
    teaches: a class may hold solutions of both editions.
    """
    from grader.authoring.markers import skeleton_for
    from grader.authoring.skeletons import expected_skeletons
    from grader.kit import course
    texts = set(expected_skeletons().values())
    for track in course.TRACKS:
        root = course.reference_root(track)
        for src in sorted((root / course.TRACKED_EXPERIMENT).glob("*.py")):
            texts.add(skeleton_for(src, root))
    for extra in extra_dirs:
        paths = sorted(p for p in Path(extra).rglob("*.py") if p.is_file() and not p.is_symlink())
        if len(paths) > MAX_BOILERPLATE_FILES:
            raise ValueError(f"{extra} holds {len(paths)} Python files (at most {MAX_BOILERPLATE_FILES})")
        for path in paths:
            texts.add(path.read_bytes()[:MAX_FILE_BYTES].decode("utf-8", errors="replace"))
    return sorted(texts)


def _print_summary(subs: list[Submission], result, skipped, out: Path, top: int, seconds: float) -> None:
    stats = result.stats
    print(f"{len(subs)} submissions compared, {len(skipped)} skipped; {len(result.pairs)} pairs, "
          f"{stats['file_pairs']} file pairs ({stats['compared']} with shared fingerprints) in {seconds:.1f} s")
    for key, count in sorted(result.common.items()):
        print(f"  {table.file_label(key)}: {count} fingerprints shared by too many submissions ignored as common")
    if result.pairs:
        width = min(40, max(len(subs[p.a].id) for p in result.pairs[:SHOWN_ON_TERMINAL]))
        print("most similar pairs (score, its part, share of A found in B, of B found in A):")
        for rank, p in enumerate(result.pairs[:SHOWN_ON_TERMINAL], start=1):
            name, best = p.best
            print(f"  {rank:3d}. {subs[p.a].id:<{width}}  {subs[p.b].id:<{width}}  {best.score:.3f}  {name:<22}  "
                  f"{best.similarity_a:.3f}  {best.similarity_b:.3f}")
    print(f"wrote {printable(out / 'pairs.csv')} ({len(result.pairs)} pairs) and "
          f"{printable(out / 'index.html')} (the top {min(top, len(result.pairs))} with their code)")
    print(CAVEAT)


def _stop_on_signals() -> dict:
    """SIGTERM and SIGHUP end the run as Ctrl-C does, so the extracted zips are removed."""
    def stop(signum, frame):
        raise KeyboardInterrupt
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, stop)
        except (ValueError, OSError):
            pass   # not the main thread
    return previous


def _restore_signals(previous: dict) -> None:
    for sig, handler in previous.items():
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):
            pass


def _progress(key: tuple[str, str], files: int, seconds: float) -> None:
    _say(f"  {table.file_label(key)}: {files} files, {files * (files - 1) // 2} pairs, {seconds:.1f} s")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
