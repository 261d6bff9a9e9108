"""Batch grading: safe zip extraction, submission discovery, CSV resume, timeouts.

Real zip files and real ``python -m grader batch`` runs; the graded submissions are
pristine skeletons (about two seconds each) so the file stays quick.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader.batch.intake import UnsafeArchive, discover, find_root, safe_extract
from grader.kit.paths import REPO_ROOT, STU_UPLOAD_DIR

import gradeutil  # tests/, on sys.path
from gradeutil import make_zip

EXP = "exp_3_1_vgg"


@pytest.mark.parametrize("name", ["../evil.py", "/etc/evil.py", "a/../../evil.py", "C:/evil.py"])
def test_zip_paths_outside_the_folder_are_refused(tmp_path, name):
    archive = make_zip(tmp_path / "s.zip", {"ok.py": b"x = 1\n", name: b"boom\n"})
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchive, match="outside the submission"):
        safe_extract(archive, dest)
    assert not (tmp_path / "evil.py").exists()


def test_zip_symlinks_are_refused(tmp_path):
    archive = make_zip(tmp_path / "s.zip", {}, links={"exp_3_1_vgg/layers_1.py": "/etc/passwd"})
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        safe_extract(archive, dest)


def test_zip_bombs_are_capped_on_bytes_written(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"big.bin": b"\0" * (4 * 2**20)})
    assert archive.stat().st_size < 2**20   # compresses well, claims nothing alarming
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchive, match="MiB once extracted"):
        safe_extract(archive, dest, max_bytes=2**20)


def test_zip_member_count_is_capped(tmp_path):
    archive = make_zip(tmp_path / "many.zip", {f"f{i}.py": b"" for i in range(20)})
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchive, match="20 entries"):
        safe_extract(archive, dest, max_members=10)


def test_nested_folders_are_found(tmp_path):
    archive = make_zip(tmp_path / "alice.zip", {"alice/stu_upload/exp_3_1_vgg/layers_1.py": b"x = 1\n",
                                                "__MACOSX/alice/._x": b"junk"})
    dest = tmp_path / "out"
    dest.mkdir()
    safe_extract(archive, dest)
    assert find_root(dest) == dest / "alice" / "stu_upload"
    assert not (dest / "__MACOSX").exists()


def test_discover_lists_folders_and_zips_with_unique_ids(tmp_path):
    (tmp_path / "bob").mkdir()
    (tmp_path / ".hidden").mkdir()
    make_zip(tmp_path / "bob.zip", {"x": b""})
    make_zip(tmp_path / "carol.zip", {"x": b""})
    (tmp_path / "notes.txt").write_text("ignored")
    assert [e.id for e in discover(tmp_path)] == ["bob", "bob.zip", "carol"]


def run_batch(folder: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "grader", "batch", str(folder), "--jobs", "2", "--csv", str(out / "grades.csv"),
           "--experiments", EXP, "--visible-only", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))


def rows(out: Path) -> dict[str, dict]:
    with open(out / "grades.csv", encoding="utf-8") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


@pytest.mark.slow
def test_batch_grades_resumes_and_records_problems(tmp_path):
    folder, out = tmp_path / "subs", tmp_path / "out"
    folder.mkdir()
    shutil.copytree(STU_UPLOAD_DIR / EXP, folder / "pristine" / EXP)
    shutil.make_archive(str(folder / "zipped"), "zip", STU_UPLOAD_DIR, EXP)
    make_zip(folder / "evil.zip", {"../../escape.py": b"x"})
    (folder / "broken.zip").write_bytes(b"this is not a zip")
    first = run_batch(folder, out, "--seed", "5", "--results-json")
    assert first.returncode == 0, first.stderr
    got = rows(out)
    assert set(got) == {"pristine", "zipped", "evil", "broken"}
    assert got["pristine"]["status"] == got["zipped"]["status"] == "graded"
    assert got["pristine"][EXP] == "0" and got["pristine"]["seed"] == "5"
    assert got["evil"]["status"] == "bad-submission" and "outside the submission" in got["evil"]["message"]
    assert got["broken"]["status"] == "bad-submission" and "zip refused" in got["broken"]["message"]
    assert (out / "grades-results" / "pristine.results.json").exists()
    assert not (tmp_path / "escape.py").exists()
    # Resume: graded rows are kept, the refused ones are retried, the seed is reused.
    (folder / "broken.zip").unlink()
    second = run_batch(folder, out)
    assert "1 to grade, 2 already graded" in second.stderr and "seed 5" in second.stderr
    assert set(rows(out)) == {"pristine", "zipped", "evil", "broken"}
    # A different seed would mix two sets of hidden inputs in one gradebook.
    third = run_batch(folder, out, "--seed", "6")
    assert third.returncode == 2 and "graded with seed 5" in third.stderr


def test_overall_timeout_costs_one_row(tmp_path):
    folder, out = tmp_path / "subs", tmp_path / "out"
    folder.mkdir()
    # The book's loop solution: its network takes minutes, far beyond the 1 s allowed.
    gradeutil.style_copy(folder / "slow" / EXP, "book", EXP)
    proc = run_batch(folder, out, "--timeout", "1")
    assert proc.returncode == 0, proc.stderr
    row = rows(out)["slow"]
    assert row["status"] == "timeout" and "did not finish within 1 s" in row["message"]
    assert row["total"] == ""


def test_submissions_folder_holding_the_kit_is_refused(tmp_path):
    proc = run_batch(REPO_ROOT.parent, tmp_path)
    assert proc.returncode == 2 and "student processes must be able to read" in proc.stderr
