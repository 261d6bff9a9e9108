"""Where the kit keeps things. Every path the kit uses at run time is derived here.

The data folder can be moved with ``$AICS_DATA_DIR`` (a course server may keep the
large weight files on a shared disk); everything else is relative to the repository.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
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
