"""Run a submission's check groups in the sandbox and collect their raw outputs.

The parent (this module) is trusted; the child (``grader.probe``) runs student code.
For each (experiment, group) one sandboxed process is started in a fresh work folder
holding a copy of the submission's experiment folder, the case inputs and a task file.
Outputs come back as float64 ``.npz`` files loaded with ``allow_pickle=False``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grader import sandbox
from grader.experiments import Case, GroupSpec
from grader.kit.paths import GENERATED_DIR, GOLDEN_DIR, REFERENCE_DIR, REPO_ROOT, is_student_handout

# Compiled numba kernels of the kit's own code, written by trusted runs only.
NUMBA_CACHE = GENERATED_DIR / "numba-cache"
MAX_SUBMISSION_BYTES = 50 * 2**20   # per experiment folder; larger files are skipped
MAX_RESULT_BYTES = 256 * 2**20
MAX_JSON_BYTES = 2**20
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


def readonly_paths(resources: dict) -> tuple[Path, ...]:
    """What a student process may read but must never change: the goldens and the weights."""
    paths = [GOLDEN_DIR]
    weights = resources.get("weights")
    if weights:
        paths.append(Path(weights))
    return tuple(p.resolve() for p in paths if p.exists())


@dataclass
class CaseOutcome:
    status: str                     # "ok" | "error" | "missing"
    outputs: dict = field(default_factory=dict)
    seconds: float | None = None
    error: str = ""                 # one line for the student
    traceback: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class GroupRun:
    experiment: str
    group: str
    outcomes: dict
    result: sandbox.RunResult | None
    seconds: float
    notes: list = field(default_factory=list)

    def outcome(self, name: str) -> CaseOutcome:
        return self.outcomes.get(name) or CaseOutcome("missing", error="case was not run")


def work_root() -> Path:
    """Parent folder for per-run work folders (``$AICS_GRADER_TMP`` or the system temp)."""
    root = Path(os.environ.get("AICS_GRADER_TMP", tempfile.gettempdir())) / "aics-grader"
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711)  # sandbox users may enter their own folder but not list others
    return root


def copy_experiment(submission: Path, experiment: str, dest: Path, notes: list) -> bool:
    """Copy ``submission/experiment`` to ``dest/experiment`` without following symlinks."""
    src = submission / experiment
    if not src.is_dir():
        return False
    target = dest / experiment
    target.mkdir(parents=True)
    total = 0
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in ("__pycache__", ".git") for part in rel.parts):
            continue
        if path.is_symlink():
            notes.append(f"skipped symlink {experiment}/{rel}")
            continue
        if path.is_dir():
            (target / rel).mkdir(parents=True, exist_ok=True)
            continue
        size = path.stat().st_size
        if total + size > MAX_SUBMISSION_BYTES:
            notes.append(f"skipped {experiment}/{rel}: submission folder larger than {MAX_SUBMISSION_BYTES >> 20} MiB")
            continue
        total += size
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / rel)
    return True


def _read_json(path: Path) -> dict | None:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _read_outputs(path: Path) -> dict:
    if not path.exists() or path.stat().st_size > MAX_RESULT_BYTES:
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k], dtype=np.float64) for k in data.files}
    except (OSError, ValueError, TypeError):
        return {}


def _death(out_dir: Path, result: sandbox.RunResult | None) -> str:
    """How the process ended, phrased to follow "the submission's process ..."."""
    if result is None:
        return "could not be started"
    if result.status == "ok" and not (out_dir / "_done").exists():
        # Exit code 0 without the probe's end marker: the student's code left on purpose.
        return "exited early with code 0 (sys.exit() or os._exit() in the submission?)"
    if result.status == "exit":
        return f"{result.message} (an uncaught exit in the submission?)"
    return result.message


def _collect(out_dir: Path, cases: list[Case], result: sandbox.RunResult | None) -> dict:
    outcomes: dict[str, CaseOutcome] = {}
    died = _death(out_dir, result)
    for case in cases:
        record = _read_json(out_dir / f"{case.name}.json")
        if record is None:
            if (out_dir / f"{case.name}.started").exists():
                msg = f"the submission's process {died} while running this check"
            else:
                msg = f"not run: the submission's process {died} before reaching this check"
            outcomes[case.name] = CaseOutcome("missing", error=msg)
            continue
        seconds = record.get("seconds")
        seconds = float(seconds) if isinstance(seconds, (int, float)) else None
        extra = record.get("extra") if isinstance(record.get("extra"), dict) else {}
        if record.get("status") == "ok":
            outputs = _read_outputs(out_dir / f"{case.name}.npz")
            if not outputs:
                outcomes[case.name] = CaseOutcome("missing", seconds=seconds,
                                                  error="the submission's process wrote no readable outputs")
            else:
                outcomes[case.name] = CaseOutcome("ok", outputs, seconds, extra=extra)
        else:
            outcomes[case.name] = CaseOutcome("error", seconds=seconds, error=str(record.get("error", "error"))[:1000],
                                              traceback=str(record.get("traceback", ""))[:4000], extra=extra)
    return outcomes


def _warm_numba_cache() -> bool:
    """Compile the kit's numba kernels into NUMBA_CACHE once per machine (trusted process)."""
    if is_student_handout():  # the handout has no compiled kernels of the kit's
        return False
    import hashlib

    # Keyed by the size and mtime of every refnet module that defines numba kernels (as
    # numba's own cache index is keyed by its source file's) and of fastops.py, whose
    # warm_up() chooses what gets compiled: editing any of them warms the cache again.
    digest = hashlib.sha256()
    for source in sorted((Path(__file__).resolve().parent / "refnet").glob("*.py")):
        if source.name != "fastops.py" and "njit" not in source.read_text(encoding="utf-8", errors="replace"):
            continue
        info = source.stat()
        digest.update(f"{source.name}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    stamp = NUMBA_CACHE / f".warm-{digest.hexdigest()[:16]}"
    if not stamp.exists():
        NUMBA_CACHE.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, "-c", "from grader.refnet import fastops; fastops.warm_up()"],
                              cwd=REPO_ROOT, capture_output=True, timeout=600,
                              env=dict(os.environ, NUMBA_CACHE_DIR=str(NUMBA_CACHE), PYTHONPATH=str(REPO_ROOT)))
        if proc.returncode != 0:
            return False
        stamp.write_text("")
    return True


def run_group(submission: Path, experiment: str, spec: GroupSpec, cases: list[Case], resources: dict,
              *, trusted: bool = False, hide_paths: tuple = (), memory_bytes: int | None = None,
              time_scale: float | None = None) -> GroupRun:
    """Run ``cases`` of one group for ``submission`` in one sandboxed process.

    ``trusted`` is for the reference set (goldens at grade time): same process model,
    but no privilege drop and nothing hidden. Its work folder, like every one, is a
    root-only ``mkdtemp`` folder removed before this returns, so no student process
    can read the reference's outputs.

    ``time_scale`` multiplies the group's limits (default ``$AICS_GRADER_TIME_SCALE``
    or 1); the reference is never given less than its normal limits.
    """
    scale = time_scale_from_env() if time_scale is None else time_scale
    if trusted:
        scale = max(scale, 1.0)
    start = time.perf_counter()
    notes: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix=f"{experiment}-{spec.name}-", dir=work_root()))
    try:
        if not copy_experiment(submission, experiment, workdir / "submission", notes):
            msg = f"the submission has no {experiment}/ folder (looked in {submission})"
            return GroupRun(experiment, spec.name, {c.name: CaseOutcome("missing", error=msg) for c in cases},
                            None, time.perf_counter() - start, notes)
        arrays = {f"{c.name}/{k}": np.asarray(v) for c in cases for k, v in c.inputs.items()}
        np.savez(workdir / "inputs.npz", **arrays)
        task = {"experiment": experiment, "group": spec.name, "resources": resources, "trusted": trusted,
                "cases": [{"name": c.name, "kind": c.kind, "params": c.params} for c in cases]}
        limits = sandbox.Limits(wall_seconds=spec.wall_seconds * scale, cpu_seconds=spec.cpu_seconds * scale)
        if memory_bytes:
            limits.memory_bytes = memory_bytes
        task["limits"] = {"wall_seconds": limits.wall_seconds, "memory_gb": limits.memory_bytes / 2**30}
        (workdir / "task.json").write_text(json.dumps(task))
        env = {"PYTHONPATH": str(REPO_ROOT)}
        if trusted:
            # The reference's compiled kernels (grader.refnet.fastops) are cached across runs.
            env["NUMBA_CACHE_DIR"] = str(NUMBA_CACHE)
        elif _warm_numba_cache():
            # A private copy for the student's process: it may read compiled kernels but
            # can never change what another process loads.
            shutil.copytree(NUMBA_CACHE, workdir / ".numba_cache", symlinks=False, dirs_exist_ok=True)
        hide = () if trusted else tuple(hide_paths) + hide_paths_from_env() + (REFERENCE_DIR,)
        result = sandbox.run_sandboxed([sys.executable, "-m", "grader.probe", str(workdir)], workdir=workdir,
                                       limits=limits, env=env, hide_paths=hide,
                                       readonly_paths=() if trusted else readonly_paths(resources),
                                       drop_privileges=False if trusted else None)
        outcomes = _collect(workdir / "out", cases, result)
        return GroupRun(experiment, spec.name, outcomes, result, time.perf_counter() - start, notes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
