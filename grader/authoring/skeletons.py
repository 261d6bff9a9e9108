"""The student files the reference set yields: ``exp_*/skeleton/`` and the pristine ``stu_upload/``.

Both copies of every skeleton come from :func:`grader.authoring.markers.skeleton_for`
over ``grader/reference/<experiment>/*.py``; the repository refresh
(:mod:`grader.authoring.release`) and the student handout
(:mod:`grader.authoring.handout`) write the same text.
"""
from __future__ import annotations

from pathlib import Path

from grader.authoring.markers import skeleton_for
from grader.kit.paths import EXPERIMENTS, REFERENCE_DIR


def reference_files(experiment: str) -> list[Path]:
    folder = REFERENCE_DIR / experiment
    return sorted(p for p in folder.glob("*.py") if p.name != "__init__.py")


def expected_skeletons() -> dict[Path, str]:
    """Map of repo-relative skeleton paths (both copies) to their generated text."""
    out: dict[Path, str] = {}
    for exp in EXPERIMENTS:
        for src in reference_files(exp):
            text = skeleton_for(src, REFERENCE_DIR)
            out[Path(exp) / "skeleton" / src.name] = text
            out[Path("stu_upload") / exp / src.name] = text
    return out
