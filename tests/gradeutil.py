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
    apply_edits(sub / experiment, edits)
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


# ----- correct solutions in several styles ----------------------------------------------
# A correct submission must score 100 whatever its style. Each style is built from the
# reference folder, then the style's own files (tests/solutions/<style>/<experiment>/, and
# any folders named in STYLE_FILES), then textual edits. Edits keep a style in step with
# the reference files it does not replace.

SOLUTIONS_DIR = REPO_ROOT / "tests" / "solutions"

_FLOAT64_IMAGE_31 = [("self.input_image = np.array(image).astype(np.float32)",
                      "self.input_image = np.array(image).astype(np.float64)")]
_FLOAT64_IMAGE_33 = [("self.input_image = np.asarray(image).astype(np.float32)",
                      "self.input_image = np.asarray(image).astype(np.float64)"),
                     ("self.input_image -= self.image_mean.astype(np.float32)",
                      "self.input_image -= self.image_mean")]
_FLOAT64_IMAGE_32 = [("input_image = np.array(input_image).astype(np.float32)",
                      "input_image = np.array(input_image).astype(np.float64)")]
_EPS_INSIDE = [("output = input - self.lr * mt_hat / (np.sqrt(vt_hat) + self.eps)",
                "output = input - self.lr * mt_hat / np.sqrt(vt_hat + self.eps)")]
# The book's VGG19.forward runs every layer; the reference stops at the deepest requested one.
_FORWARD_ALL_LAYERS = [("""            ### BEGIN REFERENCE ONLY
            # Layers after the deepest requested one cannot change the result.
            if len(layer_forward) == len(set(layer_list)):
                break
            ### END REFERENCE ONLY
""", "")]

# style -> experiment -> extra folders whose *.py files are copied (in order) before the style's own
STYLE_FILES: dict[str, dict[str, list[str]]] = {
    "float64": {"exp_3_1_vgg": ["vectorised"], "exp_3_3_style_transfer": ["book"]},
}
# style -> experiment -> {file name: [(old, new), ...]} applied to the built folder
STYLE_EDITS: dict[str, dict[str, dict[str, list[tuple[str, str]]]]] = {
    "book": {"exp_3_3_style_transfer": {"style_transfer.py": _FORWARD_ALL_LAYERS}},
    "vectorised": {},
    "float64": {"exp_3_1_vgg": {"vgg_cpu.py": _FLOAT64_IMAGE_31},
                "exp_3_2_dlp": {"vgg19_demo.py": _FLOAT64_IMAGE_32},
                "exp_3_3_style_transfer": {"style_transfer.py": _FLOAT64_IMAGE_33}},
    "eps_inside": {"exp_3_3_style_transfer": {"style_transfer.py": _EPS_INSIDE}},
}
STYLES = tuple(STYLE_EDITS)


def style_experiments(style: str) -> list[str]:
    """The experiments ``style`` differs from the reference in (its files or its edits)."""
    own = {p.name for p in (SOLUTIONS_DIR / style).glob("exp_3_*") if p.is_dir()}
    return sorted(own | set(STYLE_EDITS[style]) | set(STYLE_FILES.get(style, {})))


def apply_edits(folder: Path, edits: dict[str, list[tuple[str, str]]]) -> None:
    """Replace each ``old`` by ``new`` in ``folder/<name>``; each ``old`` must occur exactly once."""
    for name, pairs in edits.items():
        path = folder / name
        text = path.read_text()
        for old, new in pairs:
            assert text.count(old) == 1, f"edit target not found exactly once in {name}: {old!r}"
            text = text.replace(old, new)
        path.write_text(text)


def style_copy(dest: Path, style: str, experiment: str) -> Path:
    """Build ``style``'s submission folder for ``experiment`` at ``dest`` (the experiment folder)."""
    reference_copy(dest, experiment)
    for folder in STYLE_FILES.get(style, {}).get(experiment, []) + [style]:
        for path in sorted((SOLUTIONS_DIR / folder / experiment).glob("*.py")):
            shutil.copy2(path, dest / path.name)
    apply_edits(dest, STYLE_EDITS[style].get(experiment, {}))
    return dest


def style_submission(tmp_path: Path, style: str, experiment: str) -> Path:
    """A submission root under ``tmp_path`` holding ``style``'s folder for ``experiment``."""
    sub = tmp_path / f"sub_{style}"
    style_copy(sub / experiment, style, experiment)
    return sub
