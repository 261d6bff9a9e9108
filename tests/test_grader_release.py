"""The student release: what it holds, that its grader works, and that nothing leaks.

The release's own grader runs with this kit's venv and PYTHONPATH set to the release
folder; ``$VGG19_MAT`` points at the kit's synthetic weights so nothing is regenerated.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader.authoring.handout import ReleaseError, build_student_release, scan_for_leaks, secret_lines
from grader.kit.paths import REFERENCE_DIR, REPO_ROOT
from grader.kit.weights import resolve_weights

EXP = "exp_3_1_vgg"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release") / "aics-ch3"
    build_student_release(out, out=lambda *_: None)
    return out


def release_grade(release: Path, submission: Path, json_path: Path, experiment: str = EXP) -> dict:
    env = dict(os.environ, PYTHONPATH=str(release), VGG19_MAT=str(resolve_weights(generate=False).path))
    proc = subprocess.run([sys.executable, "-m", "grader", "--submission", str(submission), "--experiments", experiment,
                           "--json", str(json_path)], cwd=release, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(json_path.read_text())
    assert doc["hidden_checks"]["enabled"] is False   # no reference in a release, so no hidden checks
    assert "grading " + str(submission) in proc.stdout
    return doc


def test_release_layout(release):
    for rel in ("README.md", "env.sh", "pyproject.toml", f"{EXP}/README.md", f"{EXP}/main_exp_3_1.py",
                f"{EXP}/skeleton/layers_1.py", f"stu_upload/{EXP}/vgg_cpu.py", "grader/cli.py",
                "grader/checks/run_checks.py", f"grader/experiments/{EXP}.py", "grader/kit/weights.py",
                ".aics-handout", "pycnml/__init__.py", "data/synset_words.txt",
                "data/images/chelsea.png", f"data/golden/{EXP}/cases.npz"):
        assert (release / rel).is_file(), rel
    for absent in ("grader/reference", "grader/refnet", "grader/authoring", "tests", "benchmarks", "data/generated", ".venv", ".git"):
        assert not (release / absent).exists(), absent
    assert not list(release.rglob("__pycache__"))
    assert "python -m grader" in (release / "README.md").read_text()


def test_release_has_no_solution_line(release):
    assert len(secret_lines()) > 50   # the scan has something to look for
    assert scan_for_leaks(release) == []


def test_leak_scan_catches_a_planted_solution_line(release, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(release / "stu_upload", copy / "stu_upload")
    line, source = next(iter(secret_lines().items()))
    target = copy / "stu_upload" / EXP / "layers_1.py"
    target.write_text(target.read_text() + "\n        " + line + "\n")
    leaks = scan_for_leaks(copy)
    assert [(leak.file, leak.text, leak.source) for leak in leaks] == [(f"stu_upload/{EXP}/layers_1.py", line, source)]


def test_release_refuses_a_non_empty_or_inner_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(ReleaseError, match="not empty"):
        build_student_release(tmp_path / "x")
    with pytest.raises(ReleaseError, match="inside the kit"):
        build_student_release(REPO_ROOT / "build" / "release")


@pytest.mark.slow
def test_release_grader_scores_skeleton_0_and_reference_100(release, tmp_path):
    pristine = release_grade(release, release / "stu_upload", tmp_path / "pristine.json")
    assert pristine["total"] == 0
    solved = tmp_path / "solved"
    shutil.copytree(REFERENCE_DIR / EXP, solved / EXP, ignore=shutil.ignore_patterns("__pycache__"))
    # The release has no kit network code to lean on: the fast layers_2.py a student would
    # write stands in for the reference's (whose fast path is the kit's own).
    shutil.copy2(REPO_ROOT / "tests" / "solutions" / "vectorised" / EXP / "layers_2.py", solved / EXP / "layers_2.py")
    full = release_grade(release, solved, tmp_path / "solved.json")
    assert full["total"] == 100, [c for c in full["experiments"][0]["checks"] if not c["passed"]]


def test_handout_markdown_drops_kit_only_and_shows_handout_only():
    from grader.authoring.handout import handout_markdown
    text = ("a\n<!-- kit-only -->\nrun `tests/x.py`\n<!-- /kit-only -->\nb<!-- kit-only --> (kit)<!-- /kit-only -->.\n"
            "<!-- handout-only\nask your instructor\n-->\nc\n")
    assert handout_markdown(text) == "a\nb.\nask your instructor\nc\n"


def test_handout_readmes_name_only_what_the_handout_has(release):
    """No instructor command (the handout has no grader.authoring / refnet), and the pycnml and
    data READMEs do not send students to tests/ or benchmarks/, which the handout does not ship."""
    import re
    instructor = re.compile(r"python -m grader (release|goldens|calibrate|weights)\b")
    for readme in [release / "README.md", *sorted(release.glob("exp_3_[12]*/README*.md")),
                   release / "pycnml" / "README.md", release / "data" / "README.md"]:
        text = readme.read_text(encoding="utf-8")
        found = instructor.search(text)
        assert not found, f"{readme.relative_to(release)} shows `{found[0]}`"
    for rel in ("pycnml/README.md", "data/README.md"):
        text = (release / rel).read_text(encoding="utf-8")
        assert "tests/" not in text and "benchmarks/" not in text and "<!--" not in text, rel
        # The kit's own copy keeps them.
        assert "tests/" in (REPO_ROOT / rel).read_text(encoding="utf-8"), rel


@pytest.mark.slow
def test_release_grader_scores_a_completed_dlp_100(release, tmp_path):
    """The handout has no grader.refnet: 3.2 reads the quant parameters it ships."""
    solved = tmp_path / "solved"
    shutil.copytree(REFERENCE_DIR / "exp_3_2_dlp", solved / "exp_3_2_dlp", ignore=shutil.ignore_patterns("__pycache__"))
    doc = release_grade(release, solved, tmp_path / "dlp.json", "exp_3_2_dlp")
    assert doc["total"] == 100, [c for c in doc["experiments"][0]["checks"] if not c["passed"]]
