"""Import a submission's modules the way the book's files expect to be imported.

Students' files import their siblings by bare name (``from layers_1 import *``), so an
experiment folder must be on ``sys.path``. When one process loads several submissions
(the kit's tests, a runner comparing the reference with a student), bare names would
collide in ``sys.modules``; :func:`load_module` therefore evicts every module that was
imported from another experiment folder before importing from this one.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from grader.kit.paths import EXPERIMENTS, REPO_ROOT, STU_UPLOAD_DIR

# Bare module names a submission may define, per experiment (the book's file names).
MODULES = {
    "exp_3_1_vgg": ("layers_1", "layers_2", "vgg_cpu"),
    "exp_3_2_dlp": ("vgg19_demo",),
    "exp_3_3_style_transfer": ("layers_1", "layers_2", "layers_3", "style_transfer"),
}


class SubmissionError(Exception):
    """The submission folder is missing, misshapen or lacks a file the book requires."""


def resolve_submission(path: str | Path | None) -> Path:
    """Return the absolute submission folder; ``None`` means the student's ``stu_upload/``."""
    folder = Path(path) if path is not None else STU_UPLOAD_DIR
    if not folder.is_absolute():
        folder = (Path.cwd() / folder).resolve()
    if not folder.is_dir():
        raise SubmissionError(
            f"submission folder {folder} does not exist; pass --submission DIR "
            f"(a folder shaped like {STU_UPLOAD_DIR.relative_to(REPO_ROOT)}/)")
    return folder


def experiment_dir(submission: str | Path | None, experiment: str) -> Path:
    """The folder holding one experiment's files of a submission, checked to exist."""
    if experiment not in EXPERIMENTS:
        raise SubmissionError(f"unknown experiment {experiment!r}; expected one of {', '.join(EXPERIMENTS)}")
    folder = resolve_submission(submission) / experiment
    if not folder.is_dir():
        raise SubmissionError(f"{folder} is missing: the submission has no {experiment}/ folder")
    return folder


def _evict_bare_modules() -> None:
    """Forget modules imported by bare name from any experiment folder."""
    names = {n for mods in MODULES.values() for n in mods}
    for name in list(sys.modules):
        if name in names:
            del sys.modules[name]


def load_module(submission: str | Path | None, experiment: str, name: str) -> ModuleType:
    """Import ``name`` from ``<submission>/<experiment>/`` with that folder first on sys.path.

    Raises :class:`SubmissionError` when the file is missing; any exception the student's
    module raises at import time propagates unchanged so the caller can report it.
    """
    folder = experiment_dir(submission, experiment)
    path = folder / f"{name}.py"
    if not path.is_file():
        raise SubmissionError(f"{path} is missing: experiment {experiment} needs {name}.py")
    _evict_bare_modules()
    # Remove other experiment folders so a sibling import cannot resolve elsewhere.
    sys.path[:] = [p for p in sys.path if not _is_experiment_path(p)]
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    return importlib.import_module(name)


def _is_experiment_path(entry: str) -> bool:
    try:
        return Path(entry).name in EXPERIMENTS
    except (TypeError, ValueError):
        return False
