"""The student files the reference set yields: ``exp_*/skeleton/`` and the pristine ``stu_upload/``.

Both copies of every skeleton come from :func:`grader.authoring.markers.skeleton_for`
over ``grader/reference/<experiment>/*.py``; the repository refresh
(:mod:`grader.authoring.release`) and the student handout
(:mod:`grader.authoring.handout`) write the same text. Experiment 3.2's skeleton comes from
the reference of the course's track (``course.toml``, :mod:`grader.kit.course`): the book's
``grader/reference/exp_3_2_dlp/`` or the newer edition's ``grader/reference/tracks/pycnnl/``.
"""
from __future__ import annotations

from pathlib import Path

from grader.authoring.markers import skeleton_for
from grader.kit import course
from grader.kit.paths import EXPERIMENTS, REFERENCE_DIR


def reference_root(experiment: str) -> Path:
    """The folder (shaped like stu_upload/) whose ``experiment`` the course hands out as skeletons."""
    if experiment == course.TRACKED_EXPERIMENT:
        return course.reference_root(course.course_track())
    return REFERENCE_DIR


def reference_files(experiment: str) -> list[Path]:
    folder = reference_root(experiment) / experiment
    return sorted(p for p in folder.glob("*.py") if p.name != "__init__.py")


def expected_skeletons() -> dict[Path, str]:
    """Map of repo-relative skeleton paths (both copies) to their generated text."""
    out: dict[Path, str] = {}
    for exp in EXPERIMENTS:
        root = reference_root(exp)
        for src in reference_files(exp):
            text = skeleton_for(src, root)
            out[Path(exp) / "skeleton" / src.name] = text
            out[Path("stu_upload") / exp / src.name] = text
    return out
