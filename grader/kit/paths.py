"""Where the kit keeps things. Every path the kit uses at run time is derived here.

The data folder can be moved with ``$AICS_DATA_DIR`` (a course server may keep the
large weight files on a shared disk); everything else is relative to the kit's root
(see :func:`_kit_root`).
"""
from __future__ import annotations

import os
from pathlib import Path

KIT_ROOT_ENV = "AICS_KIT_ROOT"


class KitNotFoundError(RuntimeError):
    """The kit's folder (data/, stu_upload/, grader/reference/) cannot be found."""


def _kit_root() -> Path:
    """The kit's folder: the one holding ``data/``, ``stu_upload/`` and ``grader/reference/``.

    Running from a kit's own tree (a checkout, an editable install or a student handout:
    ``pyproject.toml`` beside ``grader/``), that tree; it wins over ``$AICS_KIT_ROOT`` so
    that a handout's grader never reads the kit's reference when the kit's ``env.sh`` was
    sourced. Installed into site-packages, ``$AICS_KIT_ROOT`` (``env.sh`` exports it).
    """
    source = Path(__file__).resolve().parents[2]
    if (source / "pyproject.toml").is_file():
        return source
    value = os.environ.get(KIT_ROOT_ENV, "").strip()
    root = Path(value).expanduser().resolve() if value else source
    if "AICS_DATA_DIR" not in os.environ and not (root / "data").is_dir():
        where = (f"${KIT_ROOT_ENV}={value} has no data/ folder" if value else
                 f"the grader is installed in {source}, outside the kit, and ${KIT_ROOT_ENV} is not set")
        raise KitNotFoundError(f"cannot find the kit's data: {where}. Set {KIT_ROOT_ENV} to the kit's folder "
                               f"(the one holding data/ and stu_upload/), e.g. by `source env.sh` in it.")
    return root


REPO_ROOT = _kit_root()
DATA_DIR = Path(os.environ.get("AICS_DATA_DIR", REPO_ROOT / "data"))
IMAGES_DIR = DATA_DIR / "images"
COURSE_DIR = DATA_DIR / "course"
GOLDEN_DIR = DATA_DIR / "golden"
# Files the kit computes on this machine (synthetic weights, calibrated quant
# params, caches). Never tracked by git; `source env.sh` recreates them.
GENERATED_DIR = DATA_DIR / "generated"
REAL_WEIGHTS_DIR = DATA_DIR / "vgg19_data"
SYNSET_WORDS = DATA_DIR / "synset_words.txt"

REFERENCE_DIR = REPO_ROOT / "grader" / "reference"
# Written by `python -m grader release OUT` at the root of a student handout. The one
# place the kit learns that it runs as a handout (no reference, no working network).
HANDOUT_MARKER = REPO_ROOT / ".aics-handout"
STU_UPLOAD_DIR = REPO_ROOT / "stu_upload"

EXPERIMENTS = ("exp_3_1_vgg", "exp_3_2_dlp", "exp_3_3_style_transfer")

DEFAULT_CAT = IMAGES_DIR / "chelsea.png"
DEFAULT_CONTENT = IMAGES_DIR / "tubingen.jpg"
DEFAULT_STYLE = IMAGES_DIR / "starry_night.jpg"


def is_student_handout() -> bool:
    """True in a student handout built by ``python -m grader release OUT``."""
    return HANDOUT_MARKER.is_file()


def parse_experiments(text: str | None) -> list[str]:
    """``"exp_3_1_vgg,exp_3_3_style_transfer"`` -> that list; empty or None -> all three.

    Raises ValueError naming the unknown ids and the valid ones.
    """
    if not text:
        return list(EXPERIMENTS)
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    if not chosen:
        raise ValueError(f"no experiment named in {text!r}; choose from {', '.join(EXPERIMENTS)}")
    return chosen
