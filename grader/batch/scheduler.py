"""Scheduling of a batch: one ``python -m grader`` subprocess per submission, a pool of them.

Each submission is graded in its own process group with an overall timeout that backs up
the sandbox's own limits; on timeout or interruption the whole group is killed, so a
crash or hang of the grader costs one row, never the batch. A zip is extracted just
before its submission is graded, into the batch's scratch folder, and removed right
after. :func:`run` ties intake, grading and the gradebook together under the locks of the
gradebook and of the results folder, checks that a resumed gradebook was graded the same way
(:mod:`grader.batch.record`), grades one shard when asked (:mod:`grader.batch.shard`), and
prints progress, an ETA and the peak memory.

A batch stops early only on a stop signal or a failed write (:mod:`grader.batch.stopping`);
then the graders are killed, the CSV keeps every finished row and the scratch is removed.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from grader import atomic
from grader.atomic import STORAGE_ERRNOS
from grader.batch.gradebook import (BAD_SUBMISSION, CRASHED, GRADED, GRADER_ERROR, INTERRUPTED, TIMEOUT,
                                    Outcome, bad_seed_cells, columns, gradescope_path, is_done, log_path,
                                    read_csv, recorded_seeds, report_path, write_csv)
from grader.batch.intake import Entry, discover, prepare_one, remove_tree
from grader.batch.lock import FolderLock, GradebookLock, LockHeld
from grader.batch.names import display_id
from grader.batch.record import (BatchRecord, RecordError, read_record, record_path, relative_results, shard_label,
                                 write_record)
from grader.batch.shard import assigned, listing_digest
from grader.batch.stopping import Interrupted, WriteFailed, deferred_signals, stop_signals
from grader.kit.paths import REPO_ROOT
from grader.results import printable

# ``python -m grader`` exits with this when it graded but could not write its report.
# (The same number as grader.report.EXIT_REPORT_UNWRITTEN; report is not imported here
# because it pulls in the whole grading session.)
EXIT_REPORT_UNWRITTEN = 4
MAX_REPORT_BYTES = 64 * 2**20
# The message of a check --quick left out (grader.checks.plugin.NOT_RUN_QUICK; not imported
# here for the same reason): such a check did not fail, it was not run.
NOT_RUN_QUICK = "not run (--quick)"


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
        checks = exp.get("checks", [])
        not_run = [c for c in checks if not c.get("passed") and c.get("message") == NOT_RUN_QUICK]
        failed = [c for c in checks if not c.get("passed") and c not in not_run]
        if failed:
            tier = min(c["tier"] for c in failed)
            names = [c["name"] for c in failed if c["tier"] == tier]
            parts.append(f"{exp['id']}: tier {tier} fails {', '.join(names[:3])}"
                         + (f" +{len(names) - 3}" if len(names) > 3 else ""))
        elif not_run:
            parts.append(f"{exp['id']}: tier {min(c['tier'] for c in not_run)} and above not run (--quick)")
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
              results_dir: Path, timeout: float, stop: threading.Event,
              scratch: Path | None = None) -> Outcome | None:
    """Grade one submission in its own ``python -m grader`` process (None: stopped before it began).

    A zip not yet extracted is extracted into ``scratch`` (created here, removed before
    returning). Everything the submission or the grader can do wrong becomes the
    outcome's status; the only exception raised is :class:`WriteFailed`, when the batch
    itself cannot write (its log, the report, the extraction), which stops the batch.
    """
    start = time.monotonic()
    if stop.is_set():
        return None   # the batch stopped before this one started: nothing to record
    extracted = entry.root is None and not entry.problem and not entry.source.is_dir()
    try:
        if entry.root is None and not entry.problem:
            try:
                prepare_one(entry, scratch)
            except OSError as exc:
                raise WriteFailed("the extracted submission", scratch, exc) from None
        if entry.problem:
            return Outcome(entry.id, BAD_SUBMISSION, time.monotonic() - start, message=entry.problem)
        return _run_grader(entry, args, experiments, seed, hide, cache, results_dir, timeout, stop, start)
    except WriteFailed:
        raise
    except Exception as exc:   # a fault of the batch itself costs this row, not the others
        return Outcome(entry.id, CRASHED, time.monotonic() - start,
                       message=f"the batch failed on this submission: {type(exc).__name__}: {exc}")
    finally:
        if extracted:
            remove_tree(scratch)


def _own_file_failed(what: str, path: Path, exc: OSError, entry: Entry, start: float) -> Outcome:
    """A file of this submission cannot be written: the storage stops the batch, anything else costs the row."""
    if exc.errno in STORAGE_ERRNOS:
        raise WriteFailed(what, path, exc) from None
    return Outcome(entry.id, CRASHED, time.monotonic() - start,
                   message=f"cannot write {what} {path.name}: {exc.strerror or exc}")


def _run_grader(entry: Entry, args, experiments: list[str], seed: int, hide: list[Path], cache: Path,
                results_dir: Path, timeout: float, stop: threading.Event, start: float) -> Outcome:
    json_path = report_path(results_dir, entry.id)
    log_file = log_path(results_dir, entry.id)
    gradescope_file = gradescope_path(results_dir, entry.id)
    try:
        json_path.unlink(missing_ok=True)
    except OSError as exc:
        return _own_file_failed("the report", json_path, exc, entry, start)
    cmd = [sys.executable, "-m", "grader", "--submission", str(entry.root), "--experiments", ",".join(experiments),
           "--seed", str(seed), "--json", str(json_path), "--golden-cache", str(cache)]
    if args.results_json:
        cmd += ["--results-json", str(gradescope_file)]
    if args.visible_only:
        cmd.append("--visible-only")
    if getattr(args, "quick", False):
        cmd.append("--quick")
    if args.memory_gb:
        cmd += ["--memory-gb", str(args.memory_gb)]
    for path in hide:
        cmd += ["--hide", str(path)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["AICS_GRADER_TIME_SCALE"] = str(args.time_scale)
    if getattr(args, "graders_tmp", None):
        env["AICS_GRADER_TMP"] = str(args.graders_tmp)
    try:
        log = open(log_file, "wb")
    except OSError as exc:
        return _own_file_failed("the grader's log", log_file, exc, entry, start)
    with log:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=results_dir, env=env, start_new_session=True)
        except OSError as exc:
            return Outcome(entry.id, CRASHED, 0.0, message=f"could not start the grader: {exc}")
        try:
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
        finally:
            _kill_tree(proc)  # nothing the grader started may outlive it, whatever happened here
            if proc.poll() is None:
                proc.wait()
            # A grader killed while writing a report leaves its temporary file: it is dead now.
            for stale in atomic.stale_temps(json_path) + atomic.stale_temps(gradescope_file):
                try:
                    stale.unlink()
                except OSError:
                    pass
    seconds = time.monotonic() - start
    if timed_out:
        return Outcome(entry.id, TIMEOUT, seconds,
                       message=f"the grader did not finish within {timeout:.0f} s (see {log_file.name})")
    if proc.returncode == EXIT_REPORT_UNWRITTEN:
        tail = _log_tail(log_file)
        code = re.search(r"\[Errno (\d+)\]", tail)
        raise WriteFailed("the report", json_path, OSError(int(code.group(1)), tail) if code else tail)
    doc = read_report(json_path)
    if doc is None:
        if _storage_full(results_dir):
            raise WriteFailed("the report", json_path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        tail = _log_tail(log_file)
        return Outcome(entry.id, CRASHED, seconds,
                       message=f"the grader exited with code {proc.returncode} without a report: {tail}")
    try:
        experiments_done = doc.get("experiments", [])
        scores = {e["id"]: e["score"] for e in experiments_done}
        errors = [e for e in experiments_done if e.get("error")]
        status = GRADED if proc.returncode == 0 and not errors else GRADER_ERROR
        return Outcome(entry.id, status, seconds, scores, doc.get("total", ""), doc.get("max_total", ""),
                       (doc.get("weights") or {}).get("sha256", "")[:12], describe(doc))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        return Outcome(entry.id, CRASHED, seconds,
                       message=f"the grader's report {json_path.name} is malformed ({type(exc).__name__}: {exc})")


def read_report(path: Path) -> dict | None:
    """The kit's JSON report at ``path``, or None when it is missing, too big or not a JSON object.

    Reports are strict JSON; a ``NaN`` or ``Infinity`` written by an older grader is read
    as None rather than costing the row.
    """
    try:
        if path.stat().st_size > MAX_REPORT_BYTES:
            return None
        text = path.read_text(encoding="utf-8", errors="replace")
        doc = json.loads(text, parse_constant=lambda name: None)
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _storage_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has no free block left (for this user)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    free = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return free == 0


def _log_tail(path: Path, chars: int = 300) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return (lines[-1] if lines else "(empty log)")[-chars:]


# --------------------------------------------------------------------------- progress


class Progress:
    """One line per finished submission (or a live line on a terminal), with an ETA.

    ``label`` starts every line (``shard 2/3``). Ids are shown as :func:`display_id` writes
    them, so a file name holding an escape sequence cannot reach the terminal.
    """

    def __init__(self, total: int, stream=sys.stderr, label: str = ""):
        self.total, self.done, self.start, self.stream = total, 0, time.monotonic(), stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.label = printable(label) + " " if label else ""

    @staticmethod
    def _clock(seconds: float) -> str:
        seconds = int(max(seconds, 0))
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    def update(self, outcome: Outcome) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        score = printable(f"{outcome.total}/{outcome.max_total}") if outcome.total != "" else "-"
        line = (f"{self.label}[{self.done:>{len(str(self.total))}}/{self.total}] {display_id(outcome.id)}: "
                f"{outcome.status} {score} ({outcome.seconds:.1f} s) | elapsed {self._clock(elapsed)}, "
                f"ETA {self._clock(eta)}")
        try:
            if self.tty:
                self.stream.write("\r\x1b[K" + line + ("\n" if self.done == self.total else ""))
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass   # a progress line is not worth a batch (a full disk under a redirected stderr)


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


def _say(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _save(csv_path: Path, header: list[str], rows: dict[str, dict]) -> None:
    try:
        write_csv(csv_path, header, rows)
    except OSError as exc:
        raise WriteFailed("the gradebook", csv_path, exc) from None


def _check_limits(args) -> None:
    """Refuse limits that would time every row out, switch the backstop off or crash every grader."""
    if args.jobs < 1:
        raise BatchError(f"--jobs {args.jobs}: need at least 1")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise BatchError(f"--timeout {args.timeout:g}: need a positive number of seconds per submission "
                         f"(or leave it out: the default is derived from the limits)")
    if args.memory_gb is not None and not (math.isfinite(args.memory_gb) and args.memory_gb > 0):
        raise BatchError(f"--memory-gb {args.memory_gb:g}: need a positive number of GiB per student process "
                         f"(or leave it out: the default is 6)")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        raise BatchError(f"--seed {args.seed}: need a whole number from 0 to {2**32 - 1}")
    if getattr(args, "shard", None) and args.seed is None:
        k, n = args.shard
        raise BatchError(f"--shard {k}/{n} needs --seed: every shard must grade the same hidden inputs. Pick one "
                         f"number for the class, e.g. python -c 'import secrets; print(secrets.randbelow(2**31))', "
                         f"and pass the same --seed to all {n} shards (and to their reruns)")


@contextlib.contextmanager
def _holding(lock, busy):
    """Hold ``lock`` (an :class:`ExclusiveLock`) for the block, or refuse the batch.

    ``busy(pid)`` is the refusal when another batch holds it; a lock that cannot be taken at
    all (an unwritable folder) is refused with the OS error.
    """
    try:
        lock.acquire()
    except LockHeld as exc:
        raise BatchError(busy(exc.pid or "unknown")) from None
    except OSError as exc:
        raise BatchError(f"cannot lock {lock.path}: {exc}") from None
    try:
        yield lock
    finally:
        lock.release()


def run(args) -> int:
    """Grade the batch described by the parsed command line ``args``.

    Raises BatchError before anything is graded (bad arguments, a CSV from another batch
    or locked by a running one, a results folder in use by another batch), :class:`Interrupted`
    on SIGINT/SIGTERM/SIGHUP and :class:`WriteFailed` when a write fails; in the last two
    cases the graders have been killed, the CSV keeps every finished row and the scratch
    folder is gone. With ``args.shard = (K, N)`` only the submissions of shard K are graded
    (:mod:`grader.batch.shard`).
    """
    from grader.kit.paths import parse_experiments
    from grader.groups import parse_time_scale, time_scale_from_env, work_root
    folder = Path(args.submissions).resolve()
    if not folder.is_dir():
        raise BatchError(f"{folder} is not a folder; pass the folder holding one sub-folder or zip per student")
    for needed in (REPO_ROOT, Path(sys.prefix).resolve()):
        if folder == needed or folder in needed.parents:
            raise BatchError(f"{folder} contains {needed}, which student processes must be able to read; "
                             f"keep the submissions in a folder of their own")
    _check_limits(args)
    try:
        args.time_scale = parse_time_scale(args.time_scale) if args.time_scale is not None else time_scale_from_env()
    except ValueError as exc:
        raise BatchError(str(exc)) from None
    try:
        experiments = parse_experiments(args.experiments)
    except ValueError as exc:
        raise BatchError(str(exc)) from None
    csv_path = Path(args.csv).resolve()
    results_dir = Path(args.results_dir).resolve() if args.results_dir else csv_path.with_name(csv_path.stem + "-results")
    if folder == results_dir or folder in results_dir.parents:
        raise BatchError(f"--results-dir {results_dir} is inside the submissions folder; put it elsewhere")
    try:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BatchError(f"cannot create the folder of --csv {csv_path}: {exc}") from None
    try:
        scratch_parent = work_root()
    except (OSError, RuntimeError) as exc:
        raise BatchError(f"cannot make the grader's work folder: {exc}") from None

    with stop_signals():
        busy = (lambda pid: f"another batch is writing {csv_path.name} (pid {pid}); wait for it to finish, "
                            f"or give this batch another --csv")
        with _holding(GradebookLock(csv_path), busy) as lock:
            return _run_locked(args, folder, experiments, csv_path, results_dir, lock.path, scratch_parent)


def _check_header(csv_path: Path, old_header: list[str], header: list[str]) -> None:
    """A non-empty CSV must have this batch's columns, rows or not (a re-saved file may show none)."""
    if not old_header or old_header == header:
        return
    shown = [printable(h)[:80] for h in old_header[:12]] + (["..."] if len(old_header) > 12 else [])
    hint = ""
    if len(old_header) == 1 and any(sep in old_header[0] for sep in ";\t|"):
        hint = (" It looks re-saved by a spreadsheet with another separator between cells; save it as CSV "
                "with commas (or restore the batch's own file).")
    raise BatchError(f"{csv_path} has columns {shown}, this batch writes {header} (other --experiments?).{hint} "
                     f"Use another --csv, or --force to regrade everyone into it")


def _check_record(csv_path: Path, record: BatchRecord | None, rows: dict, args, experiments: list[str]) -> None:
    """The settings of a resumed gradebook must be this batch's: no gradebook mixes two ways of grading."""
    shard = getattr(args, "shard", None)
    label = shard_label(shard)
    if record is None:
        if shard and rows:
            raise BatchError(f"{csv_path} holds rows of an unsharded batch (it has no {record_path(csv_path).name}); "
                             f"give {label} a --csv of its own, or --force to regrade this shard into it")
        return
    if record.shard != shard:
        own = f"the --csv of {label}" if shard else "another --csv"
        raise BatchError(f"{csv_path} is the gradebook of {record.label()} ({record_path(csv_path).name}), not of "
                         f"{label}; use {own}, or --force to regrade into it")
    if record.experiments != experiments:
        raise BatchError(f"{csv_path} was graded for --experiments {','.join(record.experiments)}, this batch "
                         f"grades {','.join(experiments)}; use another --csv, or --force")
    for flag, was in (("--visible-only", record.visible_only), ("--quick", record.quick)):
        now = bool(getattr(args, flag[2:].replace("-", "_"), False))
        if was != now:
            how = "with" if was else "without"
            raise BatchError(f"{csv_path} was graded {how} {flag}; rerun {how} it (rows graded both ways would "
                             f"mix in one gradebook), use another --csv, or --force to regrade everyone")


def _choose_seed(csv_path: Path, rows: dict, record: BatchRecord | None, args) -> int:
    """The one seed of this gradebook: the recorded one, ``--seed``, or a fresh one for a new CSV."""
    bad = bad_seed_cells(rows)
    if bad:
        ident, cell = next(iter(sorted(bad.items())))
        raise BatchError(f"{csv_path}: the seed cell of {len(bad)} row(s) is not a whole number (row "
                         f"{display_id(ident)}: {printable(cell)[:40]!r}; a spreadsheet may have re-saved it). Put "
                         f"back the seed the batch wrote, or rerun with --seed N --force to regrade everyone")
    seeds = {int(s) for s in recorded_seeds(rows)} | ({record.seed} if record else set())
    if len(seeds) > 1:
        raise BatchError(f"{csv_path} holds rows graded with seeds {', '.join(map(str, sorted(seeds)))} (gradebooks "
                         f"joined by hand?); one gradebook grades everyone on the same hidden inputs. Merge the "
                         f"gradebooks of shards with `python -m grader batch merge`, or regrade with --seed N --force")
    if args.seed is None:
        return seeds.pop() if seeds else random.SystemRandom().randrange(2**31)
    if seeds and seeds != {args.seed}:
        raise BatchError(f"{csv_path} was graded with seed {seeds.pop()}; rerun with that --seed, or --force to "
                         f"regrade everyone with seed {args.seed}")
    return args.seed


def _run_locked(args, folder: Path, experiments: list[str], csv_path: Path, results_dir: Path,
                lock_file: Path, scratch_parent: Path) -> int:
    header = columns(experiments)
    shard = getattr(args, "shard", None)
    try:
        old_header, rows = read_csv(csv_path)
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise BatchError(f"cannot read {csv_path} as a gradebook ({exc}); fix it, or use another --csv") from None
    # With --force, or for a CSV deleted (or emptied) by hand, the batch starts afresh: an old
    # settings file no longer speaks for the gradebook, and is rewritten.
    record = None
    if old_header and not args.force:
        try:
            record = read_record(csv_path)
        except RecordError as exc:
            raise BatchError(f"{exc}; restore or delete it, use another --csv, or --force to regrade everyone") from None
    if args.force:
        rows = {}
    else:
        _check_header(csv_path, old_header, header)
        _check_record(csv_path, record, rows, args, experiments)
    seed = _choose_seed(csv_path, rows, record, args)
    try:
        entries = discover(folder)
    except OSError as exc:
        raise BatchError(f"cannot list the submissions in {folder}: {exc}") from None
    owned = set(assigned([e.id for e in entries], *shard)) if shard else None
    mine = entries if owned is None else [e for e in entries if e.id in owned]
    todo = [e for e in mine if args.force or not is_done(rows.get(e.id, {}))]
    skipped = len(mine) - len(todo)

    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteFailed("the results folder", results_dir, exc) from None
    busy = (lambda pid: f"another batch (pid {pid}) writes its reports to {results_dir}; wait for it to "
                        f"finish, or give this batch another --results-dir")
    with _holding(FolderLock(results_dir), busy):
        return _grade_locked(args, folder, experiments, csv_path, results_dir, lock_file, scratch_parent, header,
                             rows, seed, entries, mine, todo, skipped)


def _grade_locked(args, folder: Path, experiments: list[str], csv_path: Path, results_dir: Path, lock_file: Path,
                  scratch_parent: Path, header: list[str], rows: dict, seed: int, entries: list[Entry],
                  mine: list[Entry], todo: list[Entry], skipped: int) -> int:
    shard = getattr(args, "shard", None)
    for stale in atomic.stale_temps(csv_path) + atomic.stale_temps(record_path(csv_path)):
        try:   # left by a killed batch; we hold the lock now
            stale.unlink()
        except OSError:
            pass
    _save(csv_path, header, rows)  # exists from the start, so it can be hidden from students
    record = BatchRecord(seed=seed, experiments=list(experiments), visible_only=bool(args.visible_only),
                         quick=bool(getattr(args, "quick", False)), shard=shard, assigned=[e.id for e in mine],
                         listed=len(entries), listed_sha256=listing_digest(e.id for e in entries),
                         submissions=str(folder), results_dir=relative_results(csv_path, results_dir),
                         command=getattr(args, "command", ""))
    try:
        write_record(csv_path, record)
    except OSError as exc:
        raise WriteFailed("the gradebook's settings", record_path(csv_path), exc) from None

    private = graders_tmp = None
    try:
        with deferred_signals():
            try:
                private = Path(tempfile.mkdtemp(prefix="batch-", dir=scratch_parent))  # mode 0700, root's only
                # The graders' own work folders go here ($AICS_GRADER_TMP of each grader), so that
                # those of a grader killed on timeout or interruption are removed with the batch's.
                graders_tmp = Path(tempfile.mkdtemp(prefix="batch-graders-", dir=scratch_parent))
                os.chmod(graders_tmp, 0o711)   # sandbox users enter their own folder inside, list none
            except OSError as exc:
                raise WriteFailed("the scratch folder in", scratch_parent, exc) from None
        args.graders_tmp = graders_tmp
        cache = Path(args.keep_cache).resolve() if args.keep_cache else private / "reference-cache"
        extracted = private / "submissions"
        try:
            extracted.mkdir()
        except OSError as exc:
            raise WriteFailed("the scratch folder", extracted, exc) from None
        hide = [folder, private, results_dir, csv_path, lock_file, record_path(csv_path)] + \
            ([cache] if args.keep_cache else [])
        timeout = args.timeout or default_timeout(experiments, args.time_scale)
        which = f"shard {shard[0]}/{shard[1]}: {len(mine)} of {len(entries)} submissions; " if shard else ""
        _say(f"batch: {which}{len(todo)} to grade, {skipped} already graded in {csv_path.name}; jobs {args.jobs}, "
             f"seed {seed}, experiments {','.join(experiments)}, time scale {args.time_scale:g}, "
             f"timeout {timeout:.0f} s per submission" + (", --quick (tier 60 only)" if record.quick else ""))
        start = time.monotonic()
        counts = _grade_all(todo, args, experiments, seed, hide, cache, results_dir, timeout, extracted,
                            csv_path, header, rows, label=f"shard {shard[0]}/{shard[1]}" if shard else "")
    finally:
        for scratch in (private, graders_tmp):
            if scratch is not None:
                remove_tree(scratch)
    wall = time.monotonic() - start
    self_kib = _own_peak_kib()
    child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to do"
    _say(f"batch: {which}{summary} in {wall:.1f} s; wrote {csv_path}")
    _say(f"batch: peak memory: this process {self_kib / 1024:.0f} MiB, largest grader process "
         f"{child_kib / 1024:.0f} MiB")
    return 0


def _grade_all(todo: list[Entry], args, experiments: list[str], seed: int, hide: list[Path], cache: Path,
               results_dir: Path, timeout: float, extracted: Path, csv_path: Path, header: list[str],
               rows: dict[str, dict], label: str = "") -> dict[str, int]:
    """Grade ``todo`` on a pool of ``args.jobs`` threads, rewriting the CSV after each; counts by status.

    On a stop signal or a failed write, the running graders are told to stop (each kills
    its process group within a fraction of a second), what finished meanwhile is recorded,
    and the exception goes on to the caller.
    """
    progress = Progress(len(todo), label=label)
    stop = threading.Event()
    counts: dict[str, int] = {}
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    futures: dict = {}
    recorded: set = set()
    unsaved = False   # rows holds an outcome the CSV does not have yet
    try:
        for i, e in enumerate(todo):
            futures[pool.submit(_stopping_on_failure, stop, e, args, experiments, seed, hide, cache, results_dir,
                                timeout, stop, extracted / f"{i:05d}")] = e
        for future in as_completed(futures):
            outcome = future.result()
            recorded.add(future)
            if outcome is None:
                continue
            rows[outcome.id] = outcome.row(seed)
            unsaved = True
            _save(csv_path, header, rows)
            unsaved = False
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
            progress.update(outcome)
    except BaseException as exc:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        # Keep what finished while the batch was stopping, and say which ones were cut short.
        late = [f for f in futures if f not in recorded and f.done() and not f.cancelled() and f.exception() is None
                and f.result() is not None]
        for future in late:
            outcome = future.result()
            rows[outcome.id] = outcome.row(seed)
        if late or unsaved:
            try:
                write_csv(csv_path, header, rows)
            except OSError:
                pass   # the CSV is still the whole file of the last successful write
        if isinstance(exc, (Interrupted, WriteFailed)):
            exc.finished = sum(counts.values()) + sum(1 for f in late if f.result().status != INTERRUPTED)
        raise
    finally:
        pool.shutdown(wait=True)
    return counts


def _stopping_on_failure(stop: threading.Event, *args) -> Outcome | None:
    """:func:`grade_one` on a pool thread; a failed write tells the other threads to stop at once."""
    try:
        return grade_one(*args)
    except BaseException:
        stop.set()
        raise
