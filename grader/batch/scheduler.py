"""Scheduling of a batch: one ``python -m grader`` subprocess per submission, a pool of them.

Each submission is graded in its own process group with an overall timeout that backs up
the sandbox's own limits; on timeout or interruption the whole group is killed, so a
crash or hang of the grader costs one row, never the batch. :func:`run` ties intake,
grading and the gradebook together and prints progress, an ETA and the peak memory.
"""
from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from grader.batch.gradebook import (BAD_SUBMISSION, CRASHED, GRADED, GRADER_ERROR, INTERRUPTED, TIMEOUT,
                                    Outcome, columns, is_done, read_csv, recorded_seeds, write_csv)
from grader.batch.intake import Entry, discover, prepare
from grader.kit.paths import REPO_ROOT


class BatchError(Exception):
    """The batch cannot start (bad arguments, a CSV from another batch); the message says what to do."""


# --------------------------------------------------------------------------- one submission


def describe(doc: dict) -> str:
    """What stands between the submission and full marks, in a few words per experiment."""
    parts = []
    for exp in doc.get("experiments", []):
        if exp.get("error"):
            parts.append(f"{exp['id']}: grader error")
            continue
        failed = [c for c in exp.get("checks", []) if not c.get("passed")]
        if failed:
            tier = min(c["tier"] for c in failed)
            names = [c["name"] for c in failed if c["tier"] == tier]
            parts.append(f"{exp['id']}: tier {tier} fails {', '.join(names[:3])}"
                         + (f" +{len(names) - 3}" if len(names) > 3 else ""))
    return "; ".join(parts)


def default_timeout(experiments: list[str], time_scale: float) -> float:
    """Generous overall limit: every group of the student and of the reference, plus start-up."""
    from grader.experiments import spec_of
    total = 0.0
    for exp in experiments:
        try:
            groups = spec_of(exp).GROUPS.values()
        except ImportError:
            continue
        total += sum(g.wall_seconds for g in groups) * (time_scale + max(time_scale, 1.0))
    return total + 120.0


def _kill_tree(proc: subprocess.Popen) -> None:
    # The grader runs in a session of its own, so its pid is also its process group.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def grade_one(entry: Entry, args, experiments: list[str], seed: int, hide: list[Path], cache: Path,
              results_dir: Path, timeout: float, stop: threading.Event) -> Outcome:
    """Grade one submission in its own ``python -m grader`` process; never raises."""
    start = time.monotonic()
    if entry.problem:
        return Outcome(entry.id, BAD_SUBMISSION, 0.0, message=entry.problem)
    json_path = results_dir / f"{entry.id}.json"
    log_path = results_dir / f"{entry.id}.log"
    json_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "grader", "--submission", str(entry.root), "--experiments", ",".join(experiments),
           "--seed", str(seed), "--json", str(json_path), "--golden-cache", str(cache)]
    if args.results_json:
        cmd += ["--results-json", str(results_dir / f"{entry.id}.results.json")]
    if args.visible_only:
        cmd.append("--visible-only")
    if args.memory_gb:
        cmd += ["--memory-gb", str(args.memory_gb)]
    for path in hide:
        cmd += ["--hide", str(path)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["AICS_GRADER_TIME_SCALE"] = str(args.time_scale)
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=results_dir, env=env, start_new_session=True)
        except OSError as exc:
            return Outcome(entry.id, CRASHED, 0.0, message=f"could not start the grader: {exc}")
        deadline = start + timeout
        timed_out = False
        while proc.poll() is None:
            if stop.is_set():
                _kill_tree(proc)
                proc.wait()
                return Outcome(entry.id, INTERRUPTED, time.monotonic() - start, message="batch interrupted")
            if time.monotonic() > deadline:
                timed_out = True
                _kill_tree(proc)
                proc.wait()
                break
            time.sleep(0.2)
        _kill_tree(proc)  # nothing the grader started may outlive it
    seconds = time.monotonic() - start
    if timed_out:
        return Outcome(entry.id, TIMEOUT, seconds,
                       message=f"the grader did not finish within {timeout:.0f} s (see {log_path.name})")
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = _log_tail(log_path)
        return Outcome(entry.id, CRASHED, seconds,
                       message=f"the grader exited with code {proc.returncode} without a report: {tail}")
    scores = {e["id"]: e["score"] for e in doc.get("experiments", [])}
    errors = [e for e in doc.get("experiments", []) if e.get("error")]
    status = GRADED if proc.returncode == 0 and not errors else GRADER_ERROR
    return Outcome(entry.id, status, seconds, scores, doc.get("total", ""), doc.get("max_total", ""),
                   doc.get("weights", {}).get("sha256", "")[:12], describe(doc))


def _log_tail(path: Path, chars: int = 300) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return (lines[-1] if lines else "(empty log)")[-chars:]


# --------------------------------------------------------------------------- progress


class Progress:
    """One line per finished submission (or a live line on a terminal), with an ETA."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.start, self.stream = total, 0, time.monotonic(), stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    @staticmethod
    def _clock(seconds: float) -> str:
        seconds = int(max(seconds, 0))
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    def update(self, outcome: Outcome) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        score = f"{outcome.total}/{outcome.max_total}" if outcome.total != "" else "-"
        line = (f"[{self.done:>{len(str(self.total))}}/{self.total}] {outcome.id}: {outcome.status} {score} "
                f"({outcome.seconds:.1f} s) | elapsed {self._clock(elapsed)}, ETA {self._clock(eta)}")
        if self.tty:
            self.stream.write("\r\x1b[K" + line + ("\n" if self.done == self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


# --------------------------------------------------------------------------- the batch


def _own_peak_kib() -> int:
    """This process's peak resident memory in KiB.

    ``ru_maxrss`` survives ``exec`` on Linux, so a batch started from a big process
    would report its parent's peak; ``VmHWM`` belongs to this process's own memory map.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run(args) -> int:
    """Grade the batch described by the parsed command line ``args``; raises BatchError before starting."""
    from grader.kit.paths import parse_experiments
    from grader.groups import parse_time_scale, time_scale_from_env, work_root
    folder = Path(args.submissions).resolve()
    if not folder.is_dir():
        raise BatchError(f"{folder} is not a folder; pass the folder holding one sub-folder or zip per student")
    for needed in (REPO_ROOT, Path(sys.prefix).resolve()):
        if folder == needed or folder in needed.parents:
            raise BatchError(f"{folder} contains {needed}, which student processes must be able to read; "
                             f"keep the submissions in a folder of their own")
    if args.jobs < 1:
        raise BatchError(f"--jobs {args.jobs}: need at least 1")
    try:
        args.time_scale = parse_time_scale(args.time_scale) if args.time_scale is not None else time_scale_from_env()
    except ValueError as exc:
        raise BatchError(str(exc)) from None
    try:
        experiments = parse_experiments(args.experiments)
    except ValueError as exc:
        raise BatchError(str(exc)) from None
    csv_path = Path(args.csv).resolve()
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    results_dir = Path(args.results_dir).resolve() if args.results_dir else csv_path.with_name(csv_path.stem + "-results")
    results_dir.mkdir(parents=True, exist_ok=True)
    if folder == results_dir or folder in results_dir.parents:
        raise BatchError(f"--results-dir {results_dir} is inside the submissions folder; put it elsewhere")

    header = columns(experiments)
    old_header, rows = read_csv(csv_path)
    if args.force:
        rows = {}
    elif rows and old_header != header:
        raise BatchError(f"{csv_path} has columns {old_header}, this batch writes {header} "
                         f"(other --experiments?); use another --csv or --force")
    seeds = recorded_seeds(rows)
    if args.seed is None:
        seed = int(seeds.pop()) if len(seeds) == 1 else random.SystemRandom().randrange(2**31)
    else:
        seed = args.seed
        if seeds and seeds != {str(seed)}:
            raise BatchError(f"{csv_path} was graded with seed {', '.join(sorted(seeds))}; rerun with that "
                             f"--seed, or --force to regrade everyone with seed {seed}")

    entries = discover(folder)
    todo = [e for e in entries if args.force or not is_done(rows.get(e.id, {}))]
    skipped = len(entries) - len(todo)
    write_csv(csv_path, header, rows)  # exists from the start, so it can be hidden from students

    private = Path(tempfile.mkdtemp(prefix="batch-", dir=work_root()))  # mode 0700, root's only
    cache = Path(args.keep_cache).resolve() if args.keep_cache else private / "reference-cache"
    extracted = private / "submissions"
    extracted.mkdir()
    hide = [folder, private, results_dir, csv_path] + ([cache] if args.keep_cache else [])
    timeout = args.timeout or default_timeout(experiments, args.time_scale)
    print(f"batch: {len(todo)} to grade, {skipped} already graded in {csv_path.name}; jobs {args.jobs}, "
          f"seed {seed}, experiments {','.join(experiments)}, time scale {args.time_scale:g}, "
          f"timeout {timeout:.0f} s per submission", file=sys.stderr)

    prepare(todo, extracted)

    start = time.monotonic()
    progress = Progress(len(todo))
    stop = threading.Event()
    counts: dict[str, int] = {}
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(grade_one, e, args, experiments, seed, hide, cache, results_dir, timeout, stop)
                       for e in todo]
            try:
                for future in as_completed(futures):
                    outcome = future.result()
                    rows[outcome.id] = outcome.row(seed)
                    write_csv(csv_path, header, rows)
                    counts[outcome.status] = counts.get(outcome.status, 0) + 1
                    progress.update(outcome)
            except KeyboardInterrupt:
                stop.set()
                for f in futures:
                    f.cancel()
                raise
    finally:
        shutil.rmtree(private, ignore_errors=True)
    wall = time.monotonic() - start
    self_kib = _own_peak_kib()
    child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to do"
    print(f"batch: {summary} in {wall:.1f} s; wrote {csv_path}", file=sys.stderr)
    print(f"batch: peak memory: this process {self_kib / 1024:.0f} MiB, largest grader process "
          f"{child_kib / 1024:.0f} MiB", file=sys.stderr)
    return 0
