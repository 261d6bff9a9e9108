"""Forgery by import or by link: the grader runs the student's own ``.py`` files or nothing.

Two attacks, each with its defence:

- a package folder ``layers_2/`` beside the required ``layers_2.py`` (or an extension
  module, or a ``.pyc``) would be what ``import layers_2`` loads: the loader
  (``grader.kit.submission``) loads exactly ``layers_2.py`` and refuses the shadow by name;
- a symbolic link ``alice/exp_3_1_vgg -> ../bob/exp_3_1_vgg`` (or a link to one of bob's
  files) would grade alice on bob's code: ``grader.groups.copy_experiment`` refuses links
  out of the submission, and alice's checks fail with the reason while bob is graded
  normally.

The copy rules are unit-tested here (fast); one batch run (slow) grades a submission with
a shadow package, alice's link and bob side by side.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from grader.experiments import Case, GroupSpec
from grader.groups import SubmissionRefused, copy_experiment, run_group
from grader.kit.paths import REPO_ROOT
from gradeutil import reference_copy
from hostile import EXP, LAYERS_1, LAYERS_2, NETWORK

SYMLINK_REASON = r"exp_3_1_vgg is a symbolic link to .*bob/exp_3_1_vgg; submit your own files, not a link"
SHADOW_REASON = r"remove the folder layers_2/: the book's layers_2\.py must be the module"


def small_experiment(folder: Path) -> Path:
    """A 3.1 folder with the book's three file names (contents do not matter to the copy)."""
    folder.mkdir(parents=True)
    for name in ("layers_1.py", "layers_2.py", "vgg_cpu.py"):
        (folder / name).write_text(f"# {folder.parent.name}'s {name}\n")
    return folder


# --------------------------------------------------------------------------- copy rules (fast)

def test_symlinked_experiment_folder_is_refused(tmp_path):
    small_experiment(tmp_path / "bob" / EXP)
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / EXP).symlink_to(Path("..") / "bob" / EXP)
    with pytest.raises(SubmissionRefused, match=SYMLINK_REASON):
        copy_experiment(tmp_path / "alice", EXP, tmp_path / "dest", [])
    assert not (tmp_path / "dest" / EXP).exists()


def test_symlinked_experiment_folder_is_refused_even_within_the_submission(tmp_path):
    small_experiment(tmp_path / "alice" / "work")
    (tmp_path / "alice" / EXP).symlink_to("work")
    with pytest.raises(SubmissionRefused, match="exp_3_1_vgg is a symbolic link to .*alice/work"):
        copy_experiment(tmp_path / "alice", EXP, tmp_path / "dest", [])


def test_linked_file_pointing_outside_the_submission_refuses_the_experiment(tmp_path):
    small_experiment(tmp_path / "bob" / EXP)
    folder = small_experiment(tmp_path / "alice" / EXP)
    (folder / "layers_2.py").unlink()
    (folder / "layers_2.py").symlink_to(tmp_path / "bob" / EXP / "layers_2.py")
    with pytest.raises(SubmissionRefused, match=r"exp_3_1_vgg/layers_2\.py is a symbolic link to .*bob/exp_3_1_vgg/"
                                                r"layers_2\.py, outside the submission; submit your own files"):
        copy_experiment(tmp_path / "alice", EXP, tmp_path / "dest", [])


def test_linked_folder_pointing_outside_the_submission_refuses_the_experiment(tmp_path):
    folder = small_experiment(tmp_path / "alice" / EXP)
    (folder / "helpers").symlink_to(tmp_path / "bob")
    with pytest.raises(SubmissionRefused, match=r"exp_3_1_vgg/helpers is a symbolic link to .*bob, outside"):
        copy_experiment(tmp_path / "alice", EXP, tmp_path / "dest", [])


def test_links_within_the_submission_copy_files_and_skip_folders(tmp_path):
    root = tmp_path / "alice"
    folder = small_experiment(root / EXP)
    (root / "common").mkdir()
    (root / "common" / "layers_1.py").write_text("# alice's shared layers_1\n")
    (folder / "layers_1.py").unlink()
    (folder / "layers_1.py").symlink_to(Path("..") / "common" / "layers_1.py")
    (folder / "loop").symlink_to(".")                  # a folder link: would loop if followed
    (folder / "dangling.py").symlink_to("nowhere.py")
    (folder / "ping.py").symlink_to("pong.py")
    (folder / "pong.py").symlink_to("ping.py")
    notes: list[str] = []
    assert copy_experiment(root, EXP, tmp_path / "dest", notes)
    copied = tmp_path / "dest" / EXP
    assert (copied / "layers_1.py").read_text() == "# alice's shared layers_1\n"
    assert not (copied / "layers_1.py").is_symlink()
    assert not (copied / "loop").exists() and not (copied / "dangling.py").exists()
    assert any("copied exp_3_1_vgg/layers_1.py as the file it links to, common/layers_1.py" in n for n in notes)
    assert any("exp_3_1_vgg/loop: a symbolic link to a folder is not followed" in n for n in notes)
    assert any("exp_3_1_vgg/dangling.py: a symbolic link to nothing" in n for n in notes)
    assert any("exp_3_1_vgg/ping.py: a loop of symbolic links" in n for n in notes)
    assert sorted(p.name for p in copied.iterdir()) == ["layers_1.py", "layers_2.py", "vgg_cpu.py"]


def test_experiment_folder_linked_to_itself_is_refused_without_a_crash(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / EXP).symlink_to(EXP)
    with pytest.raises(SubmissionRefused, match="exp_3_1_vgg is a symbolic link to exp_3_1_vgg; submit your own"):
        copy_experiment(tmp_path / "alice", EXP, tmp_path / "dest", [])


def test_special_files_and_caches_are_not_copied(tmp_path):
    root = tmp_path / "alice"
    folder = small_experiment(root / EXP)
    os.mkfifo(folder / "pipe.py")                      # reading it would block for good
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "layers_2.cpython-311.pyc").write_bytes(b"\0" * 16)
    (folder / "sub").mkdir()
    (folder / "sub" / "data.txt").write_text("kept")
    notes: list[str] = []
    assert copy_experiment(root, EXP, tmp_path / "dest", notes)
    copied = tmp_path / "dest" / EXP
    assert sorted(p.relative_to(copied).as_posix() for p in copied.rglob("*")) == [
        "layers_1.py", "layers_2.py", "sub", "sub/data.txt", "vgg_cpu.py"]
    assert any("exp_3_1_vgg/pipe.py: not a regular file" in n for n in notes)


def test_missing_experiment_folder_is_not_a_refusal(tmp_path):
    (tmp_path / "alice").mkdir()
    assert copy_experiment(tmp_path / "alice", EXP, tmp_path / "dest", []) is False


def test_a_refused_copy_fails_every_case_with_the_reason_and_a_note(tmp_path):
    small_experiment(tmp_path / "bob" / EXP)
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / EXP).symlink_to(tmp_path / "bob" / EXP)
    cases = [Case("fc_forward", "fc_forward", "layers", "fc"), Case("relu_forward", "relu_forward", "layers", "relu")]
    run = run_group(tmp_path / "alice", EXP, GroupSpec("layers", 10, 10), cases, {})
    assert run.result is None                          # no process was started
    for case in cases:
        outcome = run.outcome(case.name)
        assert outcome.status != "ok" and re.search(SYMLINK_REASON, outcome.error), outcome
    assert any(re.search(SYMLINK_REASON, note) for note in run.notes), run.notes


# --------------------------------------------------------------------------- end to end (slow)

def _plant_shadow_package(root: Path, marker: Path) -> None:
    """A working-looking package ``layers_2/`` beside the real ``layers_2.py``, loudly recognisable."""
    package = root / EXP / "layers_2"
    package.mkdir()
    (package / "__init__.py").write_text(
        "try:\n"
        f"    open({str(marker)!r}, 'w').write('ran')\n"
        "except OSError:\n"
        "    pass\n"
        "raise RuntimeError('the shadow package layers_2/ ran')\n")


@pytest.fixture(scope="module")
def forgery_batch(tmp_path_factory):
    """One visible-only batch: carol (shadow package), alice (link to bob's folder) and bob."""
    base = tmp_path_factory.mktemp("forgery")
    folder, out = base / "submissions", base / "out"
    reference_copy(folder / "bob" / EXP, EXP)
    reference_copy(folder / "carol" / EXP, EXP)
    marker_dir = base / "markers"
    marker_dir.mkdir()
    marker_dir.chmod(0o777)                            # writable by a sandbox user, were the package to run
    marker = marker_dir / "shadow_package_ran"
    _plant_shadow_package(folder / "carol", marker)
    (folder / "alice").mkdir()
    (folder / "alice" / EXP).symlink_to(Path("..") / "bob" / EXP)
    cmd = [sys.executable, "-m", "grader", "batch", str(folder), "--jobs", "2", "--csv", str(out / "grades.csv"),
           "--results-dir", str(out / "results"), "--experiments", EXP, "--visible-only"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)), cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    rows = {r["id"]: r for r in csv.DictReader(open(out / "grades.csv", encoding="utf-8"))}
    return dict(reports=reports, rows=rows, marker=marker)


def _checks(report: dict) -> dict:
    (exp,) = report["experiments"]
    assert not exp["error"], exp["error"]
    return {c["name"]: c for c in exp["checks"]}


@pytest.mark.slow
def test_shadow_package_never_runs_and_fails_only_what_needs_layers_2(forgery_batch):
    checks = _checks(forgery_batch["reports"]["carol"])
    failing = {name for name, c in checks.items() if not c["passed"]}
    assert failing == LAYERS_2 | NETWORK, sorted(failing ^ (LAYERS_2 | NETWORK))
    for name in failing:
        message = checks[name]["message"]
        # The network never starts once tier 60 failed: it says so instead.
        skipped = name in NETWORK and message.startswith("skipped: tier 60 failed")
        assert skipped or (re.search(SHADOW_REASON, message) and "shadow package" not in message), (name, message)
    assert all(checks[name]["passed"] for name in LAYERS_1)
    assert not forgery_batch["marker"].exists()


@pytest.mark.slow
def test_linked_experiment_folder_fails_alice_with_the_reason_and_bob_is_graded(forgery_batch):
    reports, rows = forgery_batch["reports"], forgery_batch["rows"]
    alice = _checks(reports["alice"])
    assert alice and not any(c["passed"] for c in alice.values())
    for name, check in alice.items():
        assert re.search(SYMLINK_REASON, check["message"]) or check["message"].startswith("skipped: tier 60"), \
            (name, check["message"])
    assert any(re.search(SYMLINK_REASON, c["message"]) for c in alice.values())
    (exp,) = reports["alice"]["experiments"]
    assert any(re.search(SYMLINK_REASON, note) for note in exp["notes"]), exp["notes"]
    assert reports["alice"]["total"] == 0
    bob = _checks(reports["bob"])
    assert all(c["passed"] for c in bob.values()), [(n, c["message"][:200]) for n, c in bob.items() if not c["passed"]]
    assert reports["bob"]["total"] == 100
    assert {rows[i]["status"] for i in ("alice", "bob", "carol")} == {"graded"}
