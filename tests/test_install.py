"""A non-editable install works away from the source tree.

``pip install <kit>`` into a fresh venv puts ``grader`` and ``pycnml`` in site-packages;
with ``$AICS_KIT_ROOT`` naming the kit (data/, stu_upload/, grader/reference/), that
installed copy, run from a folder outside the kit, grades the reference at 100.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from grader.kit.paths import GENERATED_DIR, REFERENCE_DIR, REPO_ROOT
from gradeutil import reference_copy

pytestmark = pytest.mark.slow

EXP = "exp_3_1_vgg"
# What a clean checkout would not hold, or what a build has no use for (data stays in the kit).
BUILD_IGNORE = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", "data", "output")


def clean_env(bin_dir: Path) -> dict[str, str]:
    """The caller's environment minus everything that could import the source tree instead."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = str(bin_dir) + os.pathsep + env.get("PATH", "")
    env["AICS_KIT_ROOT"] = str(REPO_ROOT)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(argv: list, *, cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv holding a non-editable install of the kit, a cwd outside the kit, env)."""
    root = tmp_path_factory.mktemp("install")
    venv.EnvBuilder(with_pip=True, clear=True).create(root / "venv")
    bin_dir = root / "venv" / "bin"
    python = bin_dir / "python"
    env = clean_env(bin_dir)
    work = root / "work"
    work.mkdir()
    # The installed grader warms its own numba kernels into the kit's cache; leave that cache as found.
    cache = GENERATED_DIR / "numba-cache"
    before = set(os.listdir(cache)) if cache.is_dir() else set()
    # pip builds in the source folder, and setuptools packs whatever its build/ holds, stale files
    # included: build from a clean copy of the kit's sources, never from the repository itself.
    source = root / "kit"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*BUILD_IGNORE))
    run([python, "-m", "pip", "install", "--quiet", source], cwd=work, env=env, timeout=900)
    yield python, work, env
    if cache.is_dir():
        for name in set(os.listdir(cache)) - before:
            path = cache / name
            if path.is_dir():
                for child in path.iterdir():
                    child.unlink()
                path.rmdir()
            else:
                path.unlink()


def site_packages(python: Path, work: Path, env: dict) -> Path:
    proc = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=work, env=env,
               timeout=60)
    return Path(proc.stdout.strip()).resolve()


def test_installed_packages_come_from_site_packages(installed):
    python, work, env = installed
    purelib = site_packages(python, work, env)
    code = ("import grader, pycnml, grader.kit.paths as p; "
            "print(grader.__file__); print(pycnml.__file__); print(p.REPO_ROOT)")
    proc = run([python, "-c", code], cwd=work, env=env, timeout=120)
    grader_file, pycnml_file, kit_root = (Path(line) for line in proc.stdout.split())
    assert purelib in grader_file.resolve().parents, grader_file
    assert purelib in pycnml_file.resolve().parents, pycnml_file
    assert kit_root == REPO_ROOT


def test_install_ships_every_subpackage_and_no_reference(installed):
    python, work, env = installed
    package = site_packages(python, work, env) / "grader"
    for sub in ("kit", "refnet", "authoring", "drivers", "experiments", "checks"):
        assert (package / sub / "__init__.py").is_file(), sub
    assert (package / "checks" / "pytest.ini").is_file()
    assert (package / "_sandbox_boot.py").is_file()
    # Solutions and data stay in the kit; the installed grader reads them through $AICS_KIT_ROOT.
    assert not (package / "reference").exists()
    assert not (package / "data").exists()


def test_installed_grader_without_kit_root_says_what_to_set(installed):
    python, work, env = installed
    env = {k: v for k, v in env.items() if k not in ("AICS_KIT_ROOT", "AICS_DATA_DIR")}
    proc = subprocess.run([str(python), "-c", "import grader.kit.paths"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert "AICS_KIT_ROOT is not set" in proc.stderr and "Set AICS_KIT_ROOT to the kit's folder" in proc.stderr


@pytest.mark.parametrize("which", ["reference", "student_copy"])
def test_installed_grader_scores_a_full_solution_100(installed, which):
    """The kit's own reference (trusted, found through $AICS_KIT_ROOT) and a student-style copy
    of it (the sandboxed child reads the installed grader from a fresh venv)."""
    python, work, env = installed
    out = work / f"{which}.json"
    submission = REFERENCE_DIR if which == "reference" else reference_copy(work / which / EXP, EXP).parent
    proc = run([python, "-m", "grader", "--submission", submission, "--experiments", EXP,
                "--visible-only", "--json", out], cwd=work, env=env, timeout=900)
    doc = json.loads(out.read_text())
    failed = [c for e in doc["experiments"] for c in e["checks"] if not c["passed"]]
    assert doc["total"] == 100 and doc["max_total"] == 100, (failed, proc.stdout[-2000:])
    assert [e["id"] for e in doc["experiments"]] == [EXP]
    assert doc["experiments"][0]["score"] == 100
    assert doc["hidden_checks"]["enabled"] is False

