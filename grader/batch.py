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

The CSV is rewritten after every finished submission (one row per submission), so an
interrupted batch loses nothing. Rerunning with the same ``--csv`` skips the rows
already graded (``--force`` regrades all) and reuses the seed recorded there, so the
whole class is graded on the same hidden inputs.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from grader.kit.paths import EXPERIMENTS, REPO_ROOT

MAX_ZIP_BYTES = 200 * 2**20      # uncompressed total per submission
MAX_ZIP_MEMBERS = 5000
MAX_SEARCH_DEPTH = 3             # how deep to look for the folder holding exp_* inside a submission
GRADED = "graded"
FIXED_COLUMNS = ("total", "max_total", "status", "seconds", "seed", "weights", "message")


class BatchError(Exception):
    """The batch cannot start (bad arguments, a CSV from another batch); the message says what to do."""


class UnsafeArchive(Exception):
    """A zip member would escape the extraction folder or exceed the caps."""


# --------------------------------------------------------------------------- discovery


@dataclass
class Entry:
    id: str
    source: Path                 # the sub-folder or the zip file
    root: Path | None = None     # the folder shaped like stu_upload/, once known
    problem: str = ""            # why it cannot be graded (bad zip, ...)


def discover(folder: Path) -> list[Entry]:
    """Sub-folders and zip files of ``folder``, sorted by name; ids are unique."""
    entries: list[Entry] = []
    taken: set[str] = set()
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or path.is_symlink():
            continue
        if path.is_dir():
            ident = path.name
        elif path.is_file() and path.suffix.lower() == ".zip":
            ident = path.stem if path.stem not in taken and not (folder / path.stem).is_dir() else path.name
        else:
            continue
        taken.add(ident)
        entries.append(Entry(ident, path))
    return entries


def find_root(folder: Path) -> Path:
    """The shallowest folder at or below ``folder`` holding an ``exp_*`` experiment folder.

    Students zip ``stu_upload/`` itself, its contents, or a folder named after themselves;
    all three grade the same. With no experiment folder anywhere, ``folder`` itself is
    returned and the grader reports what is missing.
    """
    level = [folder]
    for _ in range(MAX_SEARCH_DEPTH + 1):
        for candidate in level:
            if any((candidate / exp).is_dir() for exp in EXPERIMENTS):
                return candidate
        level = [p for d in level for p in sorted(d.iterdir())
                 if p.is_dir() and not p.is_symlink() and not p.name.startswith((".", "__"))]
        if not level:
            break
    return folder


def safe_extract(archive: Path, dest: Path, max_bytes: int = MAX_ZIP_BYTES,
                 max_members: int = MAX_ZIP_MEMBERS) -> None:
    """Extract ``archive`` into ``dest`` refusing anything that could escape or flood it.

    Sizes are counted on the bytes actually written, not the sizes the archive claims.
    """
    dest = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        if len(members) > max_members:
            raise UnsafeArchive(f"{len(members)} entries (at most {max_members} allowed)")
        written = 0
        for info in members:
            name = info.filename.replace("\\", "/")
            parts = [p for p in name.split("/") if p not in ("", ".")]
            if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
                raise UnsafeArchive(f"entry {info.filename!r} points outside the submission")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafeArchive(f"entry {info.filename!r} is a symbolic link")
            if not parts or "__MACOSX" in parts:
                continue
            target = dest.joinpath(*parts)
            if not target.resolve().is_relative_to(dest):
                raise UnsafeArchive(f"entry {info.filename!r} points outside the submission")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > max_bytes:
                        raise UnsafeArchive(f"more than {max_bytes >> 20} MiB once extracted")
                    out.write(chunk)


# --------------------------------------------------------------------------- CSV gradebook


def columns(experiments: list[str]) -> list[str]:
    return ["id", *experiments, *FIXED_COLUMNS]


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
    if not path.exists() or path.stat().st_size == 0:
        return [], {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = {row["id"]: row for row in reader if row.get("id")}
        return list(reader.fieldnames or []), rows


def write_csv(path: Path, header: list[str], rows: dict[str, dict]) -> None:
    """Rewrite the gradebook atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        for ident in sorted(rows):
            writer.writerow({k: _cell(rows[ident].get(k, "")) for k in header})
    os.replace(tmp, path)


# --------------------------------------------------------------------------- one submission


@dataclass
class Outcome:
    id: str
    status: str
    seconds: float
    scores: dict = field(default_factory=dict)
    total: int | str = ""
    max_total: int | str = ""
    weights: str = ""
    message: str = ""

    def row(self, seed: int) -> dict:
        return {"id": self.id, **{k: v for k, v in self.scores.items()}, "total": self.total,
                "max_total": self.max_total, "status": self.status, "seconds": f"{self.seconds:.1f}",
                "seed": seed, "weights": self.weights, "message": self.message[:500]}


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
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def grade_one(entry: Entry, args, experiments: list[str], seed: int, hide: list[Path], cache: Path,
              results_dir: Path, timeout: float, stop: threading.Event) -> Outcome:
    """Grade one submission in its own ``python -m grader`` process; never raises."""
    start = time.monotonic()
    if entry.problem:
        return Outcome(entry.id, "bad-submission", 0.0, message=entry.problem)
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
            return Outcome(entry.id, "crashed", 0.0, message=f"could not start the grader: {exc}")
        deadline = start + timeout
        timed_out = False
        while proc.poll() is None:
            if stop.is_set():
                _kill_tree(proc)
                proc.wait()
                return Outcome(entry.id, "interrupted", time.monotonic() - start, message="batch interrupted")
            if time.monotonic() > deadline:
                timed_out = True
                _kill_tree(proc)
                proc.wait()
                break
            time.sleep(0.2)
        _kill_tree(proc)  # nothing the grader started may outlive it
    seconds = time.monotonic() - start
    if timed_out:
        return Outcome(entry.id, "timeout", seconds,
                       message=f"the grader did not finish within {timeout:.0f} s (see {log_path.name})")
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = _log_tail(log_path)
        return Outcome(entry.id, "crashed", seconds,
                       message=f"the grader exited with code {proc.returncode} without a report: {tail}")
    scores = {e["id"]: e["score"] for e in doc.get("experiments", [])}
    errors = [e for e in doc.get("experiments", []) if e.get("error")]
    status = GRADED if proc.returncode == 0 and not errors else "grader-error"
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


# --------------------------------------------------------------------------- main


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
    p.add_argument("--experiments", default=None, help="comma-separated subset of " + ",".join(EXPERIMENTS))
    p.add_argument("--seed", type=int, default=None, help="seed of the hidden checks for the whole batch")
    p.add_argument("--visible-only", action="store_true", help="no hidden checks")
    p.add_argument("--force", action="store_true", help="regrade submissions already in the CSV")
    p.add_argument("--timeout", type=float, default=None, help="overall seconds per submission (default: derived)")
    p.add_argument("--time-scale", default=None, help="multiply every time limit (default $AICS_GRADER_TIME_SCALE or 1)")
    p.add_argument("--memory-gb", type=float, default=None, help="memory limit per student process")
    p.add_argument("--keep-cache", default=None, metavar="DIR",
                   help="keep the reference's outputs in DIR for later runs with the same seed")
    return p


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


def main(argv: list[str]) -> int:
    try:
        return run(parser().parse_args(argv))
    except BatchError as exc:
        print(f"grader batch: {exc}", file=sys.stderr)
        return 2


def run(args) -> int:
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
    seeds = {r.get("seed") for r in rows.values() if r.get("seed")}
    if args.seed is None:
        seed = int(seeds.pop()) if len(seeds) == 1 else random.SystemRandom().randrange(2**31)
    else:
        seed = args.seed
        if seeds and seeds != {str(seed)}:
            raise BatchError(f"{csv_path} was graded with seed {', '.join(sorted(seeds))}; rerun with that "
                             f"--seed, or --force to regrade everyone with seed {seed}")

    entries = discover(folder)
    todo = [e for e in entries if args.force or rows.get(e.id, {}).get("status") != GRADED]
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

    for i, entry in enumerate(todo):
        if entry.source.is_dir():
            entry.root = find_root(entry.source)
            continue
        dest = extracted / f"{i:05d}"
        dest.mkdir()
        try:
            safe_extract(entry.source, dest)
            entry.root = find_root(dest)
        except (UnsafeArchive, zipfile.BadZipFile, OSError, ValueError) as exc:
            entry.problem = f"zip refused: {exc}"

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
