"""The autograder's manifest: what ``python -m grader gradescope`` decided at build time.

``autograder.json`` at the root of the zip (root-only once ``setup.sh`` ran: it holds the
hidden seed) tells the container which experiments to grade, with which seed, time scale
and memory limit, where the weights come from and how long a grading run may take. It is
written by the build and read by :mod:`grader.authoring.gradescope_build.container`;
every field is checked on reading, so a hand-edited manifest fails with the field's name.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from grader.kit.paths import EXPERIMENTS

MANIFEST_NAME = "autograder.json"
PYTHON_VERSION_NAME = "python-version"   # one line, "3.11": read by setup.sh before any venv exists
REQUIREMENTS_NAME = "requirements.txt"
FORMAT = 1
WEIGHTS_MODES = ("baked", "fetch", "synthetic")


class ManifestError(ValueError):
    """The manifest is missing or one of its fields is wrong; the message names the field."""


@dataclass(frozen=True)
class Manifest:
    experiments: list[str]
    seed: int
    weights_mode: str                 # baked | fetch | synthetic
    weights_sha256: str               # what the weights must hash to after setup
    weights_kind: str                 # real | custom | synthetic
    python: str                       # "3.11": the pins were resolved for this Python
    time_scale: float = 1.0
    memory_gb: float | None = None
    grader_timeout_seconds: float = 0.0      # run_autograder kills the grader after this
    gradescope_timeout_seconds: int = 0      # what to set in Gradescope's autograder settings
    built: str = ""                          # UTC time of the build, ISO 8601
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"


def write(manifest: Manifest, folder: Path) -> Path:
    path = Path(folder) / MANIFEST_NAME
    path.write_text(manifest.to_json(), encoding="utf-8")
    return path


def read(folder: Path) -> Manifest:
    """The manifest in ``folder``; ManifestError saying which field is wrong, and where."""
    path = Path(folder) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"no {MANIFEST_NAME} in {folder}: this is not a zip built by "
                            f"`python -m grader gradescope`; rebuild it") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path} cannot be read ({exc}); rebuild the zip with `python -m grader gradescope`") \
            from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path} is not a JSON object; rebuild the zip")
    return _checked(data, path)


def _checked(data: dict, path: Path) -> Manifest:
    def bad(name: str, why: str) -> ManifestError:
        return ManifestError(f"{path}: field {name!r} {why}; rebuild the zip with `python -m grader gradescope`")

    if data.get("format") != FORMAT:
        raise bad("format", f"is {data.get('format')!r}, this kit reads format {FORMAT}")
    experiments = data.get("experiments")
    if (not isinstance(experiments, list) or not experiments
            or any(e not in EXPERIMENTS for e in experiments) or len(set(experiments)) != len(experiments)):
        raise bad("experiments", f"must list some of {', '.join(EXPERIMENTS)} once each")
    seed = data.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise bad("seed", "must be an integer in [0, 2**32)")
    if data.get("weights_mode") not in WEIGHTS_MODES:
        raise bad("weights_mode", f"must be one of {', '.join(WEIGHTS_MODES)}")
    sha = data.get("weights_sha256")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise bad("weights_sha256", "must be a sha256 in hex")
    if data.get("weights_kind") not in ("real", "custom", "synthetic"):
        raise bad("weights_kind", "must be real, custom or synthetic")
    if not isinstance(data.get("python"), str) or not re.fullmatch(r"3\.\d{1,2}", data["python"]):
        raise bad("python", "must look like 3.11")
    for name in ("time_scale", "grader_timeout_seconds"):
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise bad(name, "must be a positive number")
    memory = data.get("memory_gb")
    if memory is not None and (isinstance(memory, bool) or not isinstance(memory, (int, float)) or not memory > 0):
        raise bad("memory_gb", "must be a positive number or null")
    known = set(Manifest.__dataclass_fields__)
    return Manifest(**{k: v for k, v in data.items() if k in known})
