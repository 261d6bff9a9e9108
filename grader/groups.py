"""Run a submission's check groups in the sandbox and collect their raw outputs.

The parent (this module) is trusted; the child (``grader.probe``) runs student code.
For each (experiment, group) one sandboxed process is started in a fresh work folder
holding a copy of the submission's experiment folder, the case inputs and a task file.
Outputs come back as float64 ``.npz`` files, read as hostile input by ``grader.results``.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grader import sandbox, timing_server
from grader.experiments import Case, GroupSpec
from grader.kit.paths import (GENERATED_DIR, GOLDEN_DIR, IMAGES_DIR, REFERENCE_DIR, REPO_ROOT, SYNSET_WORDS)
from grader.results import MAX_FILE_BYTES, MAX_GROUP_BYTES, Refused, ResultsFolder, finite_seconds

# Compiled numba kernels of the kit's own code, written by trusted runs only.
NUMBA_CACHE = GENERATED_DIR / "numba-cache"
MAX_SUBMISSION_BYTES = 50 * 2**20
MAX_SUBMISSION_ENTRIES = 2000           # files and folders per experiment folder
# Everything a student process may write in its work folder (files, outputs, caches).
WORKDIR_BYTES = 1 << 30   # per experiment folder; larger files are skipped
MAX_RESULT_BYTES = MAX_FILE_BYTES        # one results file the parent reads back
MAX_GROUP_RESULT_BYTES = MAX_GROUP_BYTES  # all results of one group
MAX_TIMELINE_BYTES = 64 * 1024         # the child's out/_timeline.json
MAX_TIMELINE_CASES = 256
MAX_CASE_NAME = 80
TIME_SCALE_ENV = "AICS_GRADER_TIME_SCALE"
HIDE_ENV = "AICS_GRADER_HIDE"


def time_scale_from_env() -> float:
    """The factor applied to every group's time limits (``$AICS_GRADER_TIME_SCALE``, default 1)."""
    value = os.environ.get(TIME_SCALE_ENV, "").strip()
    if not value:
        return 1.0
    return parse_time_scale(value, TIME_SCALE_ENV)


def parse_time_scale(value, where: str = "--time-scale") -> float:
    try:
        scale = float(value)
    except ValueError:
        raise ValueError(f"{where}={value!r} is not a number; use e.g. 2 on a slow machine or 0.1 in tests") from None
    if not 0 < scale <= 100:
        raise ValueError(f"{where}={value!r} must be in (0, 100]")
    return scale


def hide_paths_from_env() -> tuple[Path, ...]:
    """Extra folders to hide from student processes (``$AICS_GRADER_HIDE``, os.pathsep-separated)."""
    value = os.environ.get(HIDE_ENV, "")
    return tuple(Path(p).resolve() for p in value.split(os.pathsep) if p.strip())


# The kit's code a sandboxed child runs or may import: the probe, the drivers and the
# kit's runtime (grader.kit), and the DLP APIs pycnml and pycnnl. Nothing else of the kit is in its view.
CHILD_CODE = ("pyproject.toml", "grader/__init__.py", "grader/probe.py", "grader/drivers", "grader/kit", "pycnml",
              "pycnnl")
# Where the running grader package lives: the kit's tree, or site-packages when installed.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def kit_private_paths() -> tuple[Path, ...]:
    """The rest of the running grader package, covered in the child's view.

    In a source tree they are simply not in the view; installed into site-packages, the
    Python environment the child needs holds them too, so they are covered explicitly.
    """
    package = PACKAGE_ROOT / "grader"
    allowed = {Path(rel).name for rel in CHILD_CODE if rel.startswith("grader/")}
    return tuple(path for path in sorted(package.iterdir()) if path.name not in allowed | {"__pycache__"})


def readonly_paths(resources: dict) -> tuple[Path, ...]:
    """Everything a student process may see besides its work folder, all read-only.

    An allow-list: the child's code, the data its cases name (weights, images, quant
    parameters), the course's images and class names, and the visible goldens (students
    have those anyway). Where namespaces work, nothing else of the machine's kit is there.
    """
    paths = [PACKAGE_ROOT / rel for rel in CHILD_CODE] + [GOLDEN_DIR, IMAGES_DIR, SYNSET_WORDS]
    paths += [Path(v) for v in resources.values() if isinstance(v, str) and os.path.isabs(v)]
    return tuple(dict.fromkeys(p.resolve() for p in paths if p.exists()))


@dataclass
class CaseOutcome:
    status: str                     # "ok" | "error" | "missing"
    outputs: dict = field(default_factory=dict)
    seconds: float | None = None
    error: str = ""                 # one line for the student
    traceback: str = ""
    extra: dict = field(default_factory=dict)
    timed: object = None            # timing_server.TimedRun: calls the parent timed itself


@dataclass
class GroupRun:
    experiment: str
    group: str
    outcomes: dict
    result: sandbox.RunResult | None
    seconds: float
    notes: list = field(default_factory=list)
    # time.monotonic() marks of the run (see run_group); what the grader's benchmark reads.
    timeline: dict = field(default_factory=dict)

    def outcome(self, name: str) -> CaseOutcome:
        return self.outcomes.get(name) or CaseOutcome("missing", error="case was not run")


_WORK_ROOTS: dict[Path, tuple[Path, int]] = {}   # parent folder -> (work root in it, pid that made it)


def work_root() -> Path:
    """This grader process's private folder for work folders, made on first use.

    A fresh ``mkdtemp`` folder ``aics-grader-*`` in ``$AICS_GRADER_TMP`` (made if missing)
    or the system temp, owned by the grader with mode 0711: a sandbox user may enter its
    own work folder inside but cannot list the others. An existing folder is never
    adopted, so nobody who made one first can watch or break this run. It is removed
    when the process that made it exits (a forked child uses it, but leaves it alone).
    """
    parent = Path(os.environ.get("AICS_GRADER_TMP") or tempfile.gettempdir()).resolve()
    made = _WORK_ROOTS.get(parent)
    if made is not None and made[0].is_dir():
        return made[0]
    parent.mkdir(parents=True, exist_ok=True)
    info = parent.stat()
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
        raise RuntimeError(f"{parent} is writable by other users without the sticky bit, so they could move the "
                           f"grader's work folder; set AICS_GRADER_TMP to a folder only you can write")
    root = Path(tempfile.mkdtemp(prefix="aics-grader-", dir=parent))
    os.chmod(root, 0o711)
    if not _WORK_ROOTS:
        atexit.register(_remove_work_roots)
    _WORK_ROOTS[parent] = (root, os.getpid())
    return root


def _remove_work_roots() -> None:
    for parent, (root, pid) in list(_WORK_ROOTS.items()):
        if pid == os.getpid():
            shutil.rmtree(root, ignore_errors=True)
            del _WORK_ROOTS[parent]


class SubmissionRefused(Exception):
    """The grader will not copy an experiment folder (a link to files outside the submission)."""


def _read_regular_file(path: Path, limit: int) -> tuple[bytes | None, str]:
    """``(content, "")`` if ``path`` is a regular file of at most ``limit`` bytes, else ``(None, why)``.

    Opened without following a final symlink and without blocking, so a FIFO, socket or
    device planted in a submission is skipped instead of hanging or crashing the grader.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None, "not a regular file"
        data = handle.read(limit + 1)
    if len(data) > limit:
        return None, f"submission folder larger than {MAX_SUBMISSION_BYTES >> 20} MiB"
    return data, ""


def _link_target(path: Path) -> Path | None:
    """The absolute path a symbolic link finally leads to; None for a loop of links."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):   # RuntimeError: "Symlink loop from ..."
        return None


def copy_experiment(submission: Path, experiment: str, dest: Path, notes: list) -> bool:
    """Copy ``submission/experiment`` to ``dest/experiment``; False if there is no such folder.

    Links never bring in files from outside the submission. An experiment folder that is
    a symbolic link (to anywhere), or that resolves outside the resolved submission
    folder, and a link inside it pointing outside the submission refuse the whole
    experiment with :class:`SubmissionRefused`. Within the submission, a link to a file
    is copied as that file; a link to a folder is not followed (no loops, no double
    counting) and a dangling link is skipped, each with a note. Only regular files are
    copied; ``__pycache__`` and ``.git`` are left out.
    """
    src = submission / experiment
    root = submission.resolve()
    if src.is_symlink():
        raise SubmissionRefused(f"{experiment} is a symbolic link to {_link_target(src) or os.readlink(src)}; "
                                f"submit your own files, not a link")
    if not src.is_dir():
        return False
    if not src.resolve().is_relative_to(root):
        raise SubmissionRefused(f"{experiment} resolves to {src.resolve()}, outside the submission {root}; "
                                f"submit your own files, not a link")
    folders: list[Path] = []
    files: list[tuple[Path, Path]] = []     # (path relative to src, file to read)
    for base, dirnames, filenames in os.walk(src, followlinks=False):
        base = Path(base)
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", ".git"))
        for name in dirnames:
            if not (base / name).is_symlink():
                folders.append((base / name).relative_to(src))
        links = [base / d for d in dirnames if (base / d).is_symlink()]
        for name in sorted(filenames):
            path = base / name
            if path.is_symlink():
                links.append(path)
            else:
                files.append((path.relative_to(src), path))
        # Empty files cost no bytes but each one costs the grader time outside any limit.
        if len(files) + len(folders) + len(links) > MAX_SUBMISSION_ENTRIES:
            raise SubmissionRefused(f"{experiment} holds more than {MAX_SUBMISSION_ENTRIES} files and folders; "
                                    f"submit the book's files (and your own helpers), not a whole tree")
        for path in links:
            rel, target = path.relative_to(src), _link_target(path)
            if target is None:
                notes.append(f"skipped {experiment}/{rel}: a loop of symbolic links")
                continue
            if not target.is_relative_to(root):
                raise SubmissionRefused(f"{experiment}/{rel} is a symbolic link to {target}, outside the "
                                        f"submission; submit your own files, not a link")
            if target.is_file():
                files.append((rel, target))
                notes.append(f"copied {experiment}/{rel} as the file it links to, {target.relative_to(root)}")
            elif target.is_dir():
                notes.append(f"skipped {experiment}/{rel}: a symbolic link to a folder is not followed; "
                             f"put the files themselves there")
            else:
                notes.append(f"skipped {experiment}/{rel}: a symbolic link to nothing (or to no regular file)")
    target_dir = dest / experiment
    target_dir.mkdir(parents=True)
    for rel in folders:
        (target_dir / rel).mkdir(parents=True, exist_ok=True)
    total = 0
    for rel, path in sorted(files):
        data, why = _read_regular_file(path, MAX_SUBMISSION_BYTES - total)
        if data is None:
            notes.append(f"skipped {experiment}/{rel}: {why}")
            continue
        total += len(data)
        (target_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (target_dir / rel).write_bytes(data)
    return True


def _death(out: ResultsFolder, result: sandbox.RunResult | None) -> str:
    """How the process ended, phrased to follow "the submission's process ..."."""
    if result is None:
        return "could not be started"
    if result.status == "ok" and not out.exists("_done"):
        # Exit code 0 without the probe's end marker: the student's code left on purpose.
        return "exited early with code 0 (sys.exit() or os._exit() in the submission?)"
    if result.status == "exit":
        return f"{result.message} (an uncaught exit in the submission?)"
    return result.message


def _refused(reason: str) -> CaseOutcome:
    return CaseOutcome("error", error=f"{reason}; the grader refused this check's results "
                                      f"(a submission must leave the grader's out/ folder alone)")


def _read_case(out: ResultsFolder, case: Case, died: str) -> CaseOutcome:
    """One case's outcome from ``out/<case>.json`` and ``out/<case>.npz``; raises Refused."""
    record = out.read_record(f"{case.name}.json")
    if record is None:
        if out.exists(f"{case.name}.started"):
            return CaseOutcome("missing", error=f"the submission's process {died} while running this check")
        return CaseOutcome("missing", error=f"not run: the submission's process {died} before reaching this check")
    seconds, extra = record["seconds"], record["extra"]
    if record["status"] != "ok":
        return CaseOutcome("error", seconds=seconds, error=record["error"], traceback=record["traceback"],
                           extra=extra)
    # A case that declares its output keys gets only those read; others get every array.
    outputs = out.read_arrays(f"{case.name}.npz", expected=getattr(case, "output_keys", None))
    if not outputs:
        return CaseOutcome("missing", seconds=seconds, error="the submission's process wrote no readable outputs")
    return CaseOutcome("ok", outputs, seconds, extra=extra)


def _collect(out_dir: Path, cases: list[Case], result: sandbox.RunResult | None) -> dict:
    """Every case's outcome from what the child left in ``out_dir``; never raises.

    Each file is read through :class:`grader.results.ResultsFolder` (no links followed,
    regular files only, byte budgets per file and per group); a refused file fails its
    own case with the reason.
    """
    outcomes: dict[str, CaseOutcome] = {}
    with ResultsFolder(out_dir, file_bytes=MAX_RESULT_BYTES, group_bytes=MAX_GROUP_RESULT_BYTES) as out:
        died = _death(out, result)
        for case in cases:
            try:
                outcomes[case.name] = _read_case(out, case, died)
            except Refused as refusal:
                outcomes[case.name] = _refused(str(refusal))
            except Exception as exc:  # noqa: BLE001 - a grader fault costs this case only, with a reason
                outcomes[case.name] = CaseOutcome(
                    "error", error=f"the grader could not read this check's results ({type(exc).__name__}: "
                                   f"{str(exc)[:200]}); this is a grader problem, tell your instructor")
    return outcomes


def run_group(submission: Path, experiment: str, spec: GroupSpec, cases: list[Case], resources: dict,
              *, trusted: bool = False, golden: bool = False, hide_paths: tuple = (), memory_bytes: int | None = None,
              time_scale: float | None = None, cancel=None) -> GroupRun:
    """Run ``cases`` of one group for ``submission`` in one sandboxed process.

    ``trusted`` is for the reference set (goldens at grade time): same process model,
    but no privilege drop and nothing hidden. Its work folder, like every one, is a
    root-only ``mkdtemp`` folder removed before this returns, so no student process
    can read the reference's outputs. ``golden`` (trusted runs only) tells the drivers
    that only the outputs count, not the book's call sequence, so they may take the
    reference's shortest way to them (see ``grader.drivers.BaseContext.golden``).

    ``time_scale`` multiplies the group's limits (default ``$AICS_GRADER_TIME_SCALE``
    or 1); the reference is never given less than its normal limits. ``cancel`` (a
    ``threading.Event``) stops the child early when set (see ``sandbox.run_sandboxed``).
    """
    scale = time_scale_from_env() if time_scale is None else time_scale
    if trusted:
        scale = max(scale, 1.0)
    start = time.perf_counter()
    timeline = {"start": time.monotonic()}
    notes: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix=f"{experiment}-{spec.name}-", dir=work_root()))
    stack = contextlib.ExitStack()
    try:
        if not trusted:
            # The one folder a student process may write: a size-capped tmpfs where root may mount.
            cap_note = stack.enter_context(sandbox.capped_folder(workdir, WORKDIR_BYTES))
            if cap_note:
                notes.append(cap_note)
        try:
            copied, msg = copy_experiment(submission, experiment, workdir / "submission", notes), ""
        except SubmissionRefused as refusal:
            copied, msg = False, str(refusal)
            notes.append(msg)
        if not copied:
            msg = msg or f"the submission has no {experiment}/ folder (looked in {submission})"
            return GroupRun(experiment, spec.name, {c.name: CaseOutcome("missing", error=msg) for c in cases},
                            None, time.perf_counter() - start, notes, timeline)
        timeline["copied"] = time.monotonic()
        arrays = {f"{c.name}/{k}": np.asarray(v) for c in cases for k, v in c.inputs.items()}
        np.savez(workdir / "inputs.npz", **arrays)
        task = {"experiment": experiment, "group": spec.name, "resources": resources, "trusted": trusted,
                "golden": bool(trusted and golden),
                "cases": [{"name": c.name, "kind": c.kind, "params": c.params} for c in cases]}
        limits = sandbox.Limits(wall_seconds=spec.wall_seconds * scale, cpu_seconds=spec.cpu_seconds * scale)
        if memory_bytes:
            limits.memory_bytes = memory_bytes
        task["limits"] = {"wall_seconds": limits.wall_seconds, "memory_gb": limits.memory_bytes / 2**30}
        (workdir / "task.json").write_text(json.dumps(task))
        timeline["inputs"] = time.monotonic()
        # The child imports this same grader package, and finds the kit's data through AICS_KIT_ROOT.
        env = {"PYTHONPATH": str(PACKAGE_ROOT), "AICS_KIT_ROOT": str(REPO_ROOT)}
        if trusted:
            # The reference's compiled kernels (grader.refnet.fastops) are cached across runs.
            env["NUMBA_CACHE_DIR"] = str(NUMBA_CACHE)
        # A student's process gets no compiled kernels of the kit's: they are the kit's own
        # network (grader.refnet), loadable from a numba cache without any import.
        hide = () if trusted else tuple(hide_paths) + hide_paths_from_env() + (REFERENCE_DIR,) + kit_private_paths()
        # Cases whose speed the parent times get a socket in the work folder, made before
        # the sandbox hands the folder to its user and closed once the child has ended.
        timer = timing_server.start_for_cases(workdir, cases, call_timeout=limits.wall_seconds)
        try:
            result = sandbox.run_sandboxed([sys.executable, "-m", "grader.probe", str(workdir)], workdir=workdir,
                                           limits=limits, env=env, hide_paths=hide,
                                           readonly_paths=() if trusted else readonly_paths(resources),
                                           drop_privileges=False if trusted else None, cancel=cancel)
        finally:
            timed = timer.stop() if timer is not None else {}
        outcomes = _collect(workdir / "out", cases, result)
        for name, timed_run in timed.items():
            if name in outcomes:
                outcomes[name].timed = timed_run
        timeline.update(result.timeline, collected=time.monotonic(), child=read_timeline(workdir / "out"))
        return GroupRun(experiment, spec.name, outcomes, result, time.perf_counter() - start, notes, timeline)
    finally:
        stack.close()
        shutil.rmtree(workdir, ignore_errors=True)
        timeline["end"] = time.monotonic()


def read_timeline(out_dir: Path) -> dict:
    """The child's ``out/_timeline.json`` (grader.probe), numbers only; {} if absent or odd.

    Written by the student's process, so it is hostile input like every results file, read
    after the cases (its bytes cannot crowd them out) and used for timing reports only.
    """
    def number(value):
        return finite_seconds(value) if not isinstance(value, bool) else None

    try:
        with ResultsFolder(out_dir, file_bytes=MAX_TIMELINE_BYTES, group_bytes=MAX_TIMELINE_BYTES) as out:
            data = out.read_bytes("_timeline.json", MAX_TIMELINE_BYTES)
        doc = json.loads(data) if data else None
    except (Refused, ValueError, RecursionError, OSError):
        return {}
    if not isinstance(doc, dict):
        return {}
    found = {key: number(doc.get(key)) for key in ("started", "imported", "cpu_imported", "done", "cpu_done")}
    cases = doc.get("cases") if isinstance(doc.get("cases"), dict) else {}
    found["cases"] = {str(name)[:MAX_CASE_NAME]: {key: number(marks.get(key))
                                                  for key in ("start", "end", "cpu", "weights")}
                      for name, marks in list(cases.items())[:MAX_TIMELINE_CASES] if isinstance(marks, dict)}
    return found
