"""Which files of the kit go into the Gradescope zip, and under which names.

The container needs the whole grader (``grader/reference/`` for the hidden checks,
``grader/refnet/`` for the reference's fast paths and calibration, ``grader/authoring/``
for the container's own commands), the kit's other packages (``pycnml/`` and whatever
``pyproject.toml`` lists), the experiment folders, the top-level settings files
(``pyproject.toml`` marks the kit's root; ``*.toml`` beside it hold the course's choices)
and ``data/`` without what each machine computes for itself
(``data/generated/``) and without weights files (``data/vgg19_data/``: ``--weights``
adds them on purpose). Nothing of the developer's tree comes along: no ``.venv``, caches,
tests, benchmarks, outputs, links or hidden files.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

from grader.kit.paths import EXPERIMENTS, REPO_ROOT

TOP_FILES = ("README.md", "LICENSE")
TOP_FOLDERS = ("grader", "pycnml", "data", *EXPERIMENTS)
DATA_SKIP = frozenset({"generated", "vgg19_data"})
SKIP_PARTS = frozenset({"__pycache__", ".pytest_cache", ".ipynb_checkpoints", "output", ".venv"})
SKIP_SUFFIXES = frozenset({".pyc", ".pyo", ".part", ".tmp", ".lock"})
# Where --weights puts the instructor's file: the first place grader.kit.weights looks after $VGG19_MAT.
BAKED_WEIGHTS = "data/vgg19_data/imagenet-vgg-verydeep-19.mat"


def _wanted(rel: Path) -> bool:
    if any(part in SKIP_PARTS or part.startswith(".") or part.endswith(".egg-info") for part in rel.parts):
        return False
    if rel.suffix in SKIP_SUFFIXES:
        return False
    return not (rel.parts[0] == "data" and len(rel.parts) > 1 and rel.parts[1] in DATA_SKIP)


def _packages(root: Path) -> list[str]:
    """Top-level packages that ``pyproject.toml`` installs (``include = ["grader*", "pycnml*"]``)."""
    from grader.authoring.gradescope_build.pins import read_pyproject
    patterns = read_pyproject(root / "pyproject.toml").get("tool", {}).get("setuptools", {}) \
        .get("packages", {}).get("find", {}).get("include", [])
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.is_symlink() and (p / "__init__.py").is_file()
                  and any(fnmatch.fnmatchcase(p.name, pattern) for pattern in patterns))


def kit_files(root: Path = REPO_ROOT) -> list[tuple[str, Path]]:
    """``(name in the zip, file)`` for every kit file the container needs, sorted by name.

    Symbolic links are never followed or stored: the zip holds regular files only.
    """
    found: list[tuple[str, Path]] = []
    for path in [root / name for name in TOP_FILES] + sorted(root.glob("*.toml")):
        if path.is_file() and not path.is_symlink():
            found.append((path.name, path))
    for top in dict.fromkeys([*TOP_FOLDERS, *_packages(root)]):
        folder = root / top
        if not folder.is_dir() or folder.is_symlink():
            continue
        for path in folder.rglob("*"):
            rel = path.relative_to(root)
            if path.is_symlink() or not path.is_file() or not _wanted(rel):
                continue
            if any(parent.is_symlink() for parent in path.parents if root in parent.parents):
                continue
            found.append((rel.as_posix(), path))
    return sorted(found)
