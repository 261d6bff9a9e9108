"""Helpers the grading tests share: run the grader as a user would, plant bugs in a copy."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from grader.kit.paths import REFERENCE_DIR, REPO_ROOT


def grade(submission: Path, tmp_path: Path, experiment: str, *extra: str, timeout: float = 1500) -> dict:
    """``python -m grader`` on one experiment; returns the JSON report plus its stdout."""
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "grader", "--submission", str(submission), "--experiments",
                           experiment, "--json", str(out), *extra], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"grader failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    doc = json.loads(out.read_text())
    doc["_stdout"] = proc.stdout
    return doc


def checks(doc: dict) -> dict:
    """Checks of the (single) graded experiment by name."""
    return {c["name"]: c for c in doc["experiments"][0]["checks"]}


def failures(doc: dict) -> str:
    return "\n".join(f"{c['name']}: {c['message'][:200]}" for c in doc["experiments"][0]["checks"] if not c["passed"])


def broken_copy(tmp_path: Path, experiment: str, edits: dict[str, list[tuple[str, str]]]) -> Path:
    """Copy the reference folder of ``experiment`` and apply textual edits, each exactly once."""
    sub = tmp_path / "sub"
    reference_copy(sub / experiment, experiment)
    for name, pairs in edits.items():
        path = sub / experiment / name
        text = path.read_text()
        for old, new in pairs:
            assert text.count(old) == 1, f"edit target not found exactly once in {name}: {old!r}"
            text = text.replace(old, new)
        path.write_text(text)
    return sub


# The reference's 3.1 fast path is the kit's own network (grader.refnet), which a
# submission may not import. A copy of the reference graded as a submission therefore
# takes the fast layers_2.py a student would write.
STUDENT_FAST = {"exp_3_1_vgg": REPO_ROOT / "tests" / "solutions" / "vectorised" / "exp_3_1_vgg"}


def reference_copy(dest: Path, experiment: str) -> Path:
    """Copy the reference's ``experiment`` folder to ``dest`` as a fast, student-style submission."""
    shutil.copytree(REFERENCE_DIR / experiment, dest, ignore=shutil.ignore_patterns("__pycache__"))
    fast = STUDENT_FAST.get(experiment)
    if fast is not None:
        for path in fast.glob("*.py"):
            shutil.copy2(path, dest / path.name)
    return dest


def make_zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    """A zip holding ``members`` (name -> bytes) and symbolic links (name -> target)."""
    import stat
    import zipfile
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path
