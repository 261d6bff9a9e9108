"""Child-side entry point: run one check group of one submission and write raw outputs.

Run by the grader inside the sandbox as ``python -m grader.probe WORKDIR``. It reads
``WORKDIR/task.json`` and ``WORKDIR/inputs.npz``, imports the submission (copied into
``WORKDIR/submission``), runs each case through the experiment's driver and writes, per
case, ``out/<case>.npz`` (float64 arrays) and ``out/<case>.json`` (status, seconds,
error). A ``out/<case>.started`` marker is written first so that, if the process dies,
the grader knows which case it died in.

It also leaves ``out/_timeline.json``: ``time.monotonic()`` marks of its own start, of
the end of its imports, of each case's start and end, each case's CPU seconds and the
seconds it spent in ``scipy.io.loadmat`` (the grader's benchmark reads them; they
decide nothing).

Nothing here decides pass or fail: the trusted parent compares the outputs.
"""
from __future__ import annotations

import importlib
import importlib.abc
import json
import sys
import time
import traceback
from pathlib import Path

# Before numpy: the benchmark tells interpreter start-up from imports by this mark.
STARTED = time.monotonic()

import numpy as np  # noqa: E402

# The only part of the grader package student code may import: the kit's runtime
# (paths, weights, layouts). The reference, the checks and cases, the pipeline and the
# kit's own working network (grader.refnet) are not there for a submission.
ALLOWED_GRADER_PACKAGES = ("grader.kit",)


class _ImportGuard(importlib.abc.MetaPathFinder):
    """Refuse imports of every grader module outside :data:`ALLOWED_GRADER_PACKAGES`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("grader.") and not any(
                fullname == p or fullname.startswith(p + ".") for p in ALLOWED_GRADER_PACKAGES):
            top = ".".join(fullname.split(".")[:2])
            raise ImportError(f"importing {top!r} is not allowed in a submission: student code may use "
                              f"numpy, scipy, PIL, pycnml and grader.kit only; the grader's reference, checks "
                              f"and its own fast layers are off limits, so write the layer yourself")
        return None


def _short_traceback(exc: BaseException, limit_chars: int = 4000) -> str:
    """The traceback frames that belong to the submission, newest last."""
    frames = traceback.extract_tb(exc.__traceback__)
    keep = [f for f in frames if "/grader/" not in f.filename.replace("\\", "/")] or frames[-3:]
    text = "".join(traceback.format_list(keep[-8:])) + "".join(traceback.format_exception_only(type(exc), exc))
    return text[-limit_chars:]


_MEMORY_GB: float | None = None   # the process's memory limit, for the message below
_SUBMISSION: Path | None = None   # the work folder's submission/, whose frames a crash names

# Caps of the parts of a crash message; together under the parent's 1000 characters
# (grader.results.MAX_ERROR_CHARS).
ERROR_CHARS = 1000
HEAD_CHARS = 400
NAME_CHARS = 80
SOURCE_CHARS = 160
NOTE_CHARS = 100
MAX_NOTES = 3


def submission_frame(exc: BaseException, root: Path | None) -> traceback.FrameSummary | None:
    """The newest traceback frame of ``exc`` in a file under ``root`` (the submission), or None."""
    if root is None:
        return None
    last = None
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            Path(frame.filename).resolve().relative_to(root)
        except (ValueError, OSError):
            continue
        last = frame
    return last


def frame_line(frame: traceback.FrameSummary, root: Path) -> str:
    """``at layers_2.py:57 in forward_raw: <source line>``: the file relative to its experiment folder."""
    parts = Path(frame.filename).resolve().relative_to(root).parts
    name = "/".join(parts[1:] if len(parts) > 1 else parts)[-NAME_CHARS:]
    source = (frame.line or "").strip()
    if len(source) > SOURCE_CHARS:
        source = source[:SOURCE_CHARS - 3] + "..."
    return f"  at {name}:{frame.lineno} in {frame.name[:NAME_CHARS]}" + (f": {source}" if source else "")


def note_lines(exc: BaseException) -> list[str]:
    """The exception's PEP 678 notes ("while running pool1.forward"), short and few."""
    notes = [n for n in getattr(exc, "__notes__", None) or [] if isinstance(n, str)]
    lines = ["  " + " ".join(n.split())[:NOTE_CHARS] for n in notes[:MAX_NOTES]]
    if len(notes) > MAX_NOTES:
        lines.append(f"  (and {len(notes) - MAX_NOTES} more notes)")
    return lines


def is_todo(exc: BaseException) -> bool:
    """The skeleton's own "TODO in x.py: complete Class.method": it names its place already."""
    return isinstance(exc, NotImplementedError) and str(exc).startswith("TODO in ")


def describe_crash(exc: BaseException, root: Path | None) -> str:
    """The error line, then where in the submission it happened and what the grader was running."""
    head = _describe(exc)
    if len(head) > HEAD_CHARS:
        head = head[:HEAD_CHARS - 3] + "..."
    lines = [head]
    frame = None if is_todo(exc) or isinstance(exc, SyntaxError) else submission_frame(exc, root)
    if frame is not None:
        lines.append(frame_line(frame, root))
    lines += note_lines(exc)
    return "\n".join(lines)[:ERROR_CHARS]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, NotImplementedError):
        return f"NotImplementedError: {exc}" if str(exc) else "NotImplementedError (a TODO is not done yet)"
    if isinstance(exc, MemoryError):
        limit = f" (limit {_MEMORY_GB:.1f} GiB)" if _MEMORY_GB else ""
        return f"MemoryError: the submission ran out of memory{limit}"
    if isinstance(exc, SystemExit):
        return (f"SystemExit: the submission called sys.exit({exc.code!r}); "
                f"a module or method must return, never exit the program")
    if isinstance(exc, SyntaxError):
        where = f"{Path(exc.filename).name}, line {exc.lineno}" if exc.filename else f"line {exc.lineno}"
        return f"SyntaxError in {where}: {exc.msg} (the kit needs Python 3 syntax)"
    return f"{type(exc).__name__}: {exc}"[:1000]


def _to_arrays(outputs: dict) -> dict[str, np.ndarray]:
    arrays = {}
    for key, value in outputs.items():
        try:
            arrays[key] = np.array(value, dtype=np.float64, copy=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"output {key!r} of type {type(value).__name__} is not a numeric array: {exc}") from None
    return arrays


def main(argv: list[str]) -> int:
    workdir = Path(argv[0]).resolve()
    task = json.loads((workdir / "task.json").read_text())
    global _MEMORY_GB, _SUBMISSION
    _MEMORY_GB = task.get("limits", {}).get("memory_gb")
    _SUBMISSION = (workdir / "submission").resolve()
    out_dir = workdir / "out"
    out_dir.mkdir(exist_ok=True)
    # The driver is the grader's own code: imported before the guard goes up.
    driver = importlib.import_module(f"grader.drivers.{task['experiment']}")
    if not task.get("trusted"):
        sys.meta_path.insert(0, _ImportGuard())
    inputs = np.load(workdir / "inputs.npz", allow_pickle=False) if (workdir / "inputs.npz").exists() else {}
    context = driver.Context(submission=workdir / "submission", resources=task.get("resources", {}),
                             golden=bool(task.get("trusted") and task.get("golden")))
    timeline = {"started": STARTED, "imported": time.monotonic(), "cpu_imported": time.process_time(), "cases": {}}
    for case in task["cases"]:
        name = case["name"]
        timeline["cases"][name] = marks = {"start": time.monotonic(), "cpu": -time.process_time()}
        (out_dir / f"{name}.started").write_text("")
        arrays_in = {k.split("/", 1)[1]: inputs[k] for k in getattr(inputs, "files", []) if k.startswith(name + "/")}
        context.current = name
        start = time.perf_counter()
        record = {"name": name}
        try:
            outputs = driver.HANDLERS[case["kind"]](context, case["params"], arrays_in)
            arrays = _to_arrays(outputs)
            record["seconds"] = time.perf_counter() - start
            np.savez(out_dir / f"{name}.npz", **arrays)
            record["status"] = "ok"
            record["extra"] = getattr(context, "extra", {}).pop(name, {})
        except BaseException as exc:  # noqa: BLE001 - every student failure is a result
            record["seconds"] = time.perf_counter() - start
            record["status"] = "error"
            try:
                record["error"] = describe_crash(exc, _SUBMISSION)
            except Exception:  # noqa: BLE001 - a student exception whose __str__ fails
                record["error"] = f"{type(exc).__name__} (its message could not be read)"
            record["traceback"] = _short_traceback(exc)
            if isinstance(exc, KeyboardInterrupt):
                raise
        (out_dir / f"{name}.json").write_text(json.dumps(record))
        marks["end"] = time.monotonic()
        marks["cpu"] += time.process_time()
        marks["weights"] = context.weights_seconds.pop(name, 0.0)
    timeline["done"] = time.monotonic()
    timeline["cpu_done"] = time.process_time()
    try:
        (out_dir / "_timeline.json").write_text(json.dumps(timeline))
    except Exception:  # noqa: BLE001 - timings are for the benchmark; the results are written
        pass
    # Marks a clean finish; a missing marker means the process left early.
    (out_dir / "_done").write_text("")
    sys.stdout.flush()
    # Leave without running the submission's atexit handlers or finalizers.
    import os
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
