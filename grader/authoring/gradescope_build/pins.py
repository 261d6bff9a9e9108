"""The exact versions of the kit's grading dependencies, as installed where the zip is built.

Every Gradescope container must compute with the same numpy, scipy and numba as the
machine that built the zip (and computed its goldens), so the zip carries a requirements
file of ``name==version`` pins: the kit's dependencies from ``pyproject.toml`` and,
recursively, theirs, each at the version installed here. Dependencies only the
instructor's tools use are left out (:data:`INSTRUCTOR_ONLY`). Markers are evaluated for
this interpreter, which is why the container must run the same Python minor version.
"""
from __future__ import annotations

import importlib.metadata as metadata
import platform
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10: pytest depends on tomli there, so the kit has it
    import tomli as tomllib

from grader.kit.paths import REPO_ROOT

# Used by the similarity report, the schema tests and the CI templates' test, never by grading.
INSTRUCTOR_ONLY = frozenset({"copydetect", "jsonschema", "pyyaml"})
# Installed into every venv anyway, and pinning them would fight the venv's own copy.
TOOLING = frozenset({"pip", "setuptools", "wheel"})

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class PinError(RuntimeError):
    """A dependency is not installed here, so its version cannot be pinned; the message says what to run."""


def normalize(name: str) -> str:
    """PEP 503 name: ``PyYAML`` -> ``pyyaml``, ``typing_extensions`` -> ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pyproject(path: Path = REPO_ROOT / "pyproject.toml") -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def kit_dependencies(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The requirement strings of ``[project] dependencies`` (no optional extras)."""
    return list(read_pyproject(pyproject).get("project", {}).get("dependencies", []))


def _applies(requirement: str) -> bool:
    """Whether a dependency's requirement line holds for a plain install on this interpreter.

    Lines for an extra (``; extra == "test"``) never do; other markers are evaluated with
    ``packaging`` (a dependency of pytest, so always present where the kit runs).
    """
    if ";" not in requirement:
        return True
    marker = requirement.split(";", 1)[1].strip()
    if "extra" in marker:
        return False
    from packaging.markers import Marker
    return Marker(marker).evaluate()


def resolve(requirements: list[str], exclude: frozenset[str] = INSTRUCTOR_ONLY) -> dict[str, str]:
    """``{normalized name: installed version}`` of ``requirements`` and all they depend on.

    Raises PinError when one of them is not installed in this environment.
    """
    pins: dict[str, str] = {}
    todo = [r for r in requirements if _applies(r)]
    while todo:
        match = _NAME.match(todo.pop())
        if not match:
            continue
        name = normalize(match.group(1))
        if name in pins or name in exclude or name in TOOLING:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise PinError(f"{name} is a dependency of the kit but is not installed in {sys.prefix}; "
                           f"run `source env.sh` in the kit and build the zip again") from None
        pins[name] = dist.version
        todo.extend(r for r in (dist.requires or []) if _applies(r))
    return dict(sorted(pins.items()))


def requirements_text(pins: dict[str, str]) -> str:
    """The requirements file: a header saying where the pins come from, then ``name==version``."""
    head = (f"# Pinned by `python -m grader gradescope` from the environment that built this zip:\n"
            f"# Python {platform.python_version()} on {platform.system()} {platform.machine()}.\n"
            f"# setup.sh installs exactly these (binary wheels only) so that every container grades\n"
            f"# with the same numerics.\n")
    return head + "".join(f"{name}=={version}\n" for name, version in pins.items())
