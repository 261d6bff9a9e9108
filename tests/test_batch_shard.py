"""Sharded batches and ``batch merge``: the split, the refusals, the examples, and sharded == unsharded.

The unit tests drive ``grader.batch.main`` in this process with a stand-in for the grading
subprocess (a second for the file). Two slow tests grade for real: a class of six graded
whole and in three shards (the merged gradebook must equal the unsharded one in every column
but ``seconds``), and the Slurm example run locally as two array tasks plus its merge.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

import grader.batch
from grader.batch import scheduler
from grader.batch.gradebook import CRASHED, GRADED, Outcome, read_csv, report_path
from grader.batch.lock import GradebookLock
from grader.batch.names import display_id
from grader.batch.record import read_record, record_path
from grader.batch.shard import assigned, parse_shard, shard_of
from grader.kit.paths import REPO_ROOT, STU_UPLOAD_DIR

import gradeutil  # tests/, on sys.path

EXP = "exp_3_1_vgg"
EXAMPLES = REPO_ROOT / "examples"
SLURM = EXAMPLES / "slurm"
WORKFLOW = EXAMPLES / "github-actions-matrix" / "grade-class.yml"
CLASS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "=1+2", "-x", "张三", "o'brien"]


# --------------------------------------------------------------------------- the split


@pytest.mark.parametrize("text, want", [("2/3", (2, 3)), ("1/1", (1, 1)), (" 3 / 3 ", (3, 3)), ("10/12", (10, 12))])
def test_shard_text_is_k_of_n(text, want):
    assert parse_shard(text) == want


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", "-1/3", "1.5/3", "", "2/3/4"])
def test_nonsense_shards_are_refused(text):
    with pytest.raises(ValueError, match="K/N|shard K|number of shards"):
        parse_shard(text)


def test_every_id_lands_in_exactly_one_shard_whatever_the_order():
    rng = random.Random(1)
    ids = CLASS + [f"student{i:03d}" for i in range(150)] + [os.fsdecode(b"bad\xff"), "\x1b[2Jx", "a" * 250]
    for n in (1, 2, 3, 5):
        shuffled = ids[:]
        rng.shuffle(shuffled)
        parts = [set(assigned(ids, k, n)) for k in range(1, n + 1)]
        assert parts == [set(assigned(shuffled, k, n)) for k in range(1, n + 1)]
        assert sum(len(p) for p in parts) == len(ids) and set().union(*parts) == set(ids)
        # A late submission joins one shard and moves nobody else.
        assert [set(assigned(ids + ["late"], k, n)) - {"late"} for k in range(1, n + 1)] == parts


def test_the_split_is_pinned():
    # Shards of one class may run under two kit versions (a rerun next week): the hash must not change.
    assert [shard_of(i, 3) for i in ("alice", "bob", "张三", "=1+2")] == [3, 3, 3, 1]
    assert [shard_of(i, 7) for i in ("alice", "bob", "张三", "=1+2")] == [2, 2, 1, 5]


# --------------------------------------------------------------------------- in-process batches


@pytest.fixture
def subs(tmp_path, monkeypatch):
    """A class of folder submissions (ids from CLASS) and a private work root."""
    folder = tmp_path / "subs"
    for name in CLASS:
        (folder / name / EXP).mkdir(parents=True)
    monkeypatch.setenv("AICS_GRADER_TMP", str(tmp_path / "work"))
    return folder


def fake_grader(monkeypatch, weights: str = "abc", status=lambda ident: GRADED, reports: bool = False):
    """Stand in for grading one submission; ``.calls`` lists the ids graded, in order."""
    calls: list[str] = []

    def grade_one(entry, args, experiments, seed, hide, cache, results_dir, timeout, stop, scratch=None):
        if stop.is_set():
            return None
        calls.append(entry.id)
        if reports:
            report_path(results_dir, entry.id).write_text(json.dumps({"id": entry.id, "seed": seed}))
        return Outcome(entry.id, status(entry.id), 0.1, {e: 60 for e in experiments}, 60, 100, weights,
                       message=f"seed {seed}")

    grade_one.calls = calls
    monkeypatch.setattr(scheduler, "grade_one", grade_one)
    return grade_one


def batch(folder: Path | str, csv_path: Path, *extra: str, experiments: str = EXP) -> tuple[int, str]:
    err = io.StringIO()
    argv = [str(folder), "--csv", str(csv_path), "--jobs", "1", "--experiments", experiments, "--timeout", "30",
            *extra]
    with contextlib.redirect_stderr(err):
        rc = grader.batch.main(argv)
    return rc, err.getvalue()


def merge(out: Path, *inputs: Path, extra: tuple[str, ...] = ()) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = grader.batch.main(["merge", str(out), *map(str, inputs), *extra])
    return rc, err.getvalue()


def shards(folder: Path, out: Path, monkeypatch, n: int = 3, seed: str = "7", **fake) -> list[Path]:
    """Grade ``folder`` in ``n`` shards with the stand-in grader; the shard CSVs."""
    paths = []
    for k in range(1, n + 1):
        fake_grader(monkeypatch, **fake)
        rc, err = batch(folder, out / f"shard-{k}.csv", "--shard", f"{k}/{n}", "--seed", seed)
        assert rc == 0, err
        paths.append(out / f"shard-{k}.csv")
    return paths


def test_a_shard_grades_its_part_and_says_so(subs, tmp_path, monkeypatch):
    for k in (1, 2, 3):
        fake = fake_grader(monkeypatch)
        rc, err = batch(subs, tmp_path / f"s{k}.csv", "--shard", f"{k}/3", "--seed", "7")
        mine = sorted(assigned(CLASS, k, 3))
        assert rc == 0 and sorted(fake.calls) == mine, err
        assert f"batch: shard {k}/3: {len(mine)} of {len(CLASS)} submissions; {len(mine)} to grade" in err
        assert all(line.startswith(f"shard {k}/3 [") for line in err.splitlines() if "graded 60/100" in line)
        record = read_record(tmp_path / f"s{k}.csv")
        assert record.shard == (k, 3) and sorted(record.assigned) == mine and record.listed == len(CLASS)
        assert "--shard" in record.command and record.seed == 7
    # Run again: the shard resumes, nothing left to grade.
    fake = fake_grader(monkeypatch)
    assert batch(subs, tmp_path / "s2.csv", "--shard", "2/3", "--seed", "7")[0] == 0 and fake.calls == []


def test_a_shard_needs_a_seed(subs, tmp_path, monkeypatch):
    fake = fake_grader(monkeypatch)
    rc, err = batch(subs, tmp_path / "s.csv", "--shard", "1/2")
    assert rc == 2 and fake.calls == [] and "needs --seed" in err and "secrets.randbelow" in err
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("text", ["0/3", "4/3", "x"])
def test_a_bad_shard_is_a_usage_error(subs, tmp_path, monkeypatch, text):
    fake = fake_grader(monkeypatch)
    rc, err = batch(subs, tmp_path / "s.csv", "--shard", text, "--seed", "1")
    assert rc == 2 and fake.calls == [] and "usage:" in err and "--shard" in err


def test_merged_shards_equal_the_unsharded_gradebook(subs, tmp_path, monkeypatch):
    fake_grader(monkeypatch)
    assert batch(subs, tmp_path / "whole.csv", "--seed", "7")[0] == 0
    paths = shards(subs, tmp_path, monkeypatch)
    rc, err = merge(tmp_path / "merged.csv", *reversed(paths))
    assert rc == 0, err
    assert (tmp_path / "merged.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert f"{len(CLASS)} rows from 3 shard gradebook(s)" in err
    merged = read_record(tmp_path / "merged.csv")
    assert merged.shard is None and sorted(merged.assigned) == sorted(CLASS) and merged.seed == 7
    # Merging again (after rerunning a shard, say) overwrites the earlier merge.
    assert merge(tmp_path / "merged.csv", *paths)[0] == 0
    # The merged gradebook resumes as an unsharded batch: nothing to regrade.
    fake = fake_grader(monkeypatch)
    assert batch(subs, tmp_path / "merged.csv")[0] == 0 and fake.calls == []


# ----- refusals: each leaves OUT unwritten and names what is wrong


def _drop_row(path: Path, ident: str) -> None:
    header, rows = read_csv(path)
    del rows[ident]
    from grader.batch.gradebook import write_csv
    write_csv(path, header, rows)


def _move_row(src: Path, dst: Path) -> str:
    from grader.batch.gradebook import write_csv
    h1, r1 = read_csv(src)
    h2, r2 = read_csv(dst)
    ident = sorted(r1)[0]
    r2[ident] = r1.pop(ident)
    write_csv(src, h1, r1)
    write_csv(dst, h2, r2)
    return ident


def _copy_shard(path: Path, dest: Path) -> Path:
    shutil.copy(path, dest)
    shutil.copy(record_path(path), record_path(dest))
    return dest


def _refusal_cases():
    """name -> build(subs, out, monkeypatch) -> (inputs, words the message must hold)."""
    def seeds(subs, out, mp):
        paths = shards(subs, out, mp)
        fake_grader(mp)
        batch(subs, paths[2], "--shard", "3/3", "--seed", "8", "--force")
        return paths, ["seed = 8", "shard-3.csv"]

    def weights(subs, out, mp):
        paths = shards(subs, out, mp)
        fake_grader(mp, weights="other")
        batch(subs, paths[1], "--shard", "2/3", "--seed", "7", "--force")
        return paths, ["different weights", "other", "shard-2.csv"]

    def columns(subs, out, mp):
        paths = shards(subs, out, mp)
        fake_grader(mp)
        batch(subs, paths[0], "--shard", "1/3", "--seed", "7", "--force", experiments="exp_3_2_dlp")
        return paths, ["experiments", "has columns", "shard-1.csv"]

    def visible_only(subs, out, mp):
        paths = shards(subs, out, mp)
        fake_grader(mp)
        batch(subs, paths[0], "--shard", "1/3", "--seed", "7", "--force", "--visible-only")
        return paths, ["visible_only = true"]

    def missing_shard(subs, out, mp):
        return shards(subs, out, mp)[:2], ["shard(s) 3/3 missing", "--seed 7"]

    def shard_twice(subs, out, mp):
        paths = shards(subs, out, mp)
        return paths + [_copy_shard(paths[0], out / "again.csv")], ["shard 1/3 is given twice", "again.csv"]

    def missing_row(subs, out, mp):
        paths = shards(subs, out, mp)
        ident = sorted(assigned(CLASS, 2, 3))[0]
        _drop_row(paths[1], ident)
        return paths, [f"shard-2.csv: 1 submission(s) of shard 2/3 have no row: {display_id(ident)}", "rerun shard 2/3",
                       "--shard 2/3 --seed 7"]

    def wrong_shard(subs, out, mp):
        paths = shards(subs, out, mp)
        ident = _move_row(paths[0], paths[1])
        return paths, [f"rows {display_id(ident)} do not belong to shard 2/3"]

    def unsharded(subs, out, mp):
        paths = shards(subs, out, mp)
        fake_grader(mp)
        batch(subs, out / "whole.csv", "--seed", "7")
        return paths + [out / "whole.csv"], ["whole.csv is the gradebook of an unsharded batch"]

    def no_settings(subs, out, mp):
        paths = shards(subs, out, mp)
        record_path(paths[2]).unlink()
        return paths, ["shard-3.csv has no settings file shard-3.csv.batch.json"]

    def folder_changed(subs, out, mp):
        paths = shards(subs, out, mp)
        (subs / "late" / EXP).mkdir(parents=True)
        k = shard_of("late", 3)
        fake_grader(mp)
        batch(subs, paths[k - 1], "--shard", f"{k}/3", "--seed", "7")
        return paths, ["the submissions folder changed between the shards", f"listed {len(CLASS) + 1}"]

    def output_is_input(subs, out, mp):
        paths = shards(subs, out, mp)
        return paths, ["is also an input"]

    def foreign_output(subs, out, mp):
        paths = shards(subs, out, mp)
        fake_grader(mp)
        batch(subs, out / "merged.csv", "--seed", "7")   # an unsharded gradebook where OUT should go
        return paths, ["exists and is not the output of an earlier merge"]

    return {f.__name__: f for f in (seeds, weights, columns, visible_only, missing_shard, shard_twice, missing_row,
                                    wrong_shard, unsharded, no_settings, folder_changed, output_is_input,
                                    foreign_output)}


REFUSALS = _refusal_cases()


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_merge_refuses_and_writes_nothing(subs, tmp_path, monkeypatch, case):
    out = tmp_path / "out"
    out.mkdir()
    inputs, words = REFUSALS[case](subs, out, monkeypatch)
    target = inputs[0] if case == "output_is_input" else out / "merged.csv"
    before = target.read_bytes() if target.exists() else None
    rc, err = merge(target, *inputs)
    assert rc == 2, err
    assert f"refused, nothing written to {target}" in err
    for word in words:
        assert word in err, (word, err)
    assert (target.read_bytes() if target.exists() else None) == before
    if case != "foreign_output":
        assert not record_path(out / "merged.csv").exists()


def test_merge_refuses_a_shard_still_running(subs, tmp_path, monkeypatch):
    paths = shards(subs, tmp_path, monkeypatch)
    with GradebookLock(paths[1]):
        rc, err = merge(tmp_path / "merged.csv", *paths)
    assert rc == 2 and f"shard-2.csv is still being written by a batch (pid {os.getpid()})" in err
    assert not (tmp_path / "merged.csv").exists()


def test_merge_lists_rows_not_graded_with_how_to_rerun(subs, tmp_path, monkeypatch):
    sick = sorted(assigned(CLASS, 3, 3))[0]
    paths = shards(subs, tmp_path, monkeypatch, status=lambda ident: CRASHED if ident == sick else GRADED)
    rc, err = merge(tmp_path / "merged.csv", *paths)
    assert rc == 0, err
    assert f"shard-3.csv: 1 row(s) not graded (crashed): {display_id(sick)}; to retry them, rerun shard 3/3" in err
    assert "--shard 3/3 --seed 7" in err
    assert read_csv(tmp_path / "merged.csv")[1][sick]["status"] == CRASHED


def test_allow_missing_writes_what_there_is(subs, tmp_path, monkeypatch):
    paths = shards(subs, tmp_path, monkeypatch)
    rc, err = merge(tmp_path / "merged.csv", *paths[:2], extra=("--allow-missing",))
    assert rc == 0 and "shard(s) 3/3 missing" in err
    got = set(read_csv(tmp_path / "merged.csv")[1])
    assert got == set(assigned(CLASS, 1, 3)) | set(assigned(CLASS, 2, 3))


def test_merge_messages_show_ids_printably(tmp_path, monkeypatch):
    folder = tmp_path / "subs"
    evil = "\x1b]52;c;cm0=\x07x"
    for name in ("plain", evil):
        (folder / name / EXP).mkdir(parents=True)
    monkeypatch.setenv("AICS_GRADER_TMP", str(tmp_path / "work"))
    fake_grader(monkeypatch)
    assert batch(folder, tmp_path / "s1.csv", "--shard", "1/1", "--seed", "3")[0] == 0
    _drop_row(tmp_path / "s1.csv", evil)
    rc, err = merge(tmp_path / "merged.csv", tmp_path / "s1.csv")
    assert rc == 2 and "%1B]52;c;cm0=%07x" in err and "\x1b" not in err and "\x07" not in err


def test_merge_gathers_the_reports_of_every_shard(subs, tmp_path, monkeypatch):
    paths = shards(subs, tmp_path / "graded", monkeypatch, reports=True)
    moved = tmp_path / "downloaded"   # as artifacts arrive on another machine: CSV, settings, results together
    shutil.copytree(tmp_path / "graded", moved)
    shutil.rmtree(tmp_path / "graded")
    rc, err = merge(tmp_path / "merged.csv", *(moved / p.name for p in paths),
                    extra=("--results-dir", str(tmp_path / "results")))
    assert rc == 0, err
    for ident in CLASS:
        assert json.loads(report_path(tmp_path / "results", ident).read_text())["id"] == ident


def test_merge_needs_the_results_of_every_shard_to_gather_them(subs, tmp_path, monkeypatch):
    paths = shards(subs, tmp_path, monkeypatch, reports=True)
    shutil.rmtree(tmp_path / "shard-2-results")
    rc, err = merge(tmp_path / "merged.csv", *paths, extra=("--results-dir", str(tmp_path / "results")))
    assert rc == 2 and "the results folder of shard 2/3 is not at" in err
    assert not (tmp_path / "merged.csv").exists() and not (tmp_path / "results").exists()


# ----- a resumed shard keeps its settings


def test_a_gradebook_resumes_only_with_its_own_settings(subs, tmp_path, monkeypatch):
    paths = shards(subs, tmp_path, monkeypatch, n=2)
    fake_grader(monkeypatch)
    batch(subs, tmp_path / "whole.csv", "--seed", "7")
    cases = [
        ((paths[0], "--shard", "2/2", "--seed", "7"), "is the gradebook of shard 1/2"),
        ((paths[0], "--shard", "1/3", "--seed", "7"), "is the gradebook of shard 1/2"),
        ((paths[0], "--seed", "7"), "not of an unsharded batch"),
        ((tmp_path / "whole.csv", "--shard", "1/2", "--seed", "7"), "is the gradebook of an unsharded batch"),
        ((paths[0], "--shard", "1/2", "--seed", "7", "--quick"), "graded without --quick"),
        ((paths[0], "--shard", "1/2", "--seed", "8"), "graded with seed 7"),
    ]
    for (csv_path, *extra), words in cases:
        fake = fake_grader(monkeypatch)
        before = csv_path.read_bytes()
        rc, err = batch(subs, csv_path, *extra)
        assert rc == 2 and words in err and fake.calls == [], (extra, err)
        assert csv_path.read_bytes() == before


def test_a_malformed_settings_file_is_refused_and_a_deleted_csv_starts_afresh(subs, tmp_path, monkeypatch):
    (path,) = shards(subs, tmp_path, monkeypatch, n=1)
    record_path(path).write_text("{not json")
    fake = fake_grader(monkeypatch)
    rc, err = batch(subs, path, "--shard", "1/1", "--seed", "7")
    assert rc == 2 and "cannot read" in err and fake.calls == []
    path.unlink()
    rc, err = batch(subs, path, "--shard", "1/1", "--seed", "8")
    assert rc == 0 and sorted(fake.calls) == sorted(CLASS), err
    assert read_record(path).seed == 8


def test_a_batch_stopped_before_its_first_row_resumes_with_its_seed(tmp_path, monkeypatch):
    folder = tmp_path / "subs"
    folder.mkdir()
    monkeypatch.setenv("AICS_GRADER_TMP", str(tmp_path / "work"))
    fake_grader(monkeypatch)
    assert batch(folder, tmp_path / "g.csv")[0] == 0   # nothing graded yet: only the header is written
    seed = read_record(tmp_path / "g.csv").seed
    (folder / "alice" / EXP).mkdir(parents=True)
    fake_grader(monkeypatch)
    rc, err = batch(folder, tmp_path / "g.csv")
    assert rc == 0 and f"seed {seed}," in err and read_csv(tmp_path / "g.csv")[1]["alice"]["seed"] == str(seed)


# ----- the word merge


def test_a_submissions_folder_named_merge(tmp_path, monkeypatch):
    (tmp_path / "merge" / "alice" / EXP).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AICS_GRADER_TMP", str(tmp_path / "work"))
    fake = fake_grader(monkeypatch)
    rc, err = batch("merge", tmp_path / "g.csv", "--seed", "1")
    assert rc == 2 and "write ./merge" in err and fake.calls == []
    rc, err = batch("./merge", tmp_path / "g.csv", "--seed", "1")
    assert rc == 0 and fake.calls == ["alice"], err
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text):
        assert grader.batch.main(["--help"]) == 0
    assert "batch merge OUT.csv SHARD_CSV" in help_text.getvalue() and "./merge" in help_text.getvalue()


# --------------------------------------------------------------------------- the examples


def _grader_commands(script: str) -> list[str]:
    """Every ``python -m grader ...`` command of a shell script, its continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", script)
    return [m.group(0).strip() for m in re.finditer(r"python -m grader[^\n;&|']*", text)]


def _is_shard_or_merge(command: str) -> bool:
    words = shlex.split(command)[3:]
    return words[:2] == ["batch", "merge"] or (words[:1] == ["batch"] and "--shard" in words)


def test_the_examples_parse_and_grade_only_with_shard_and_merge():
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    jobs = workflow["jobs"]
    grade, merge_job = jobs["grade"], jobs["merge"]
    assert grade["strategy"]["matrix"]["shard"] == list(range(1, len(grade["strategy"]["matrix"]["shard"]) + 1))
    assert merge_job["needs"] == "grade"
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in grade["steps"])
    assert any(s.get("uses", "").startswith("actions/download-artifact") for s in merge_job["steps"])
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in merge_job["steps"])
    workflow_commands = [c for job in jobs.values() for s in job["steps"] for c in _grader_commands(s.get("run", ""))]
    slurm_commands = []
    for script in sorted(SLURM.glob("*")):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, (script.name, proc.stderr)
        slurm_commands += _grader_commands(script.read_text(encoding="utf-8"))
    for commands in (workflow_commands, slurm_commands):
        assert commands and all(_is_shard_or_merge(c) for c in commands), commands
        assert any("merge" in c for c in commands) and any("--shard" in c for c in commands)
    array = (SLURM / "grade_array.sbatch").read_text(encoding="utf-8")
    assert re.search(r"^#SBATCH --array=1-\d+", array, flags=re.M)
    assert "afterok" in (SLURM / "submit.sh").read_text(encoding="utf-8")


def _pristine(folder: Path) -> None:
    shutil.copytree(STU_UPLOAD_DIR / EXP, folder / EXP, ignore=shutil.ignore_patterns("__pycache__"))


@pytest.mark.slow
def test_the_slurm_example_grades_and_merges_a_class(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    for name in ("ann", "ben", "cat"):
        _pristine(subs / name)
    (subs / "dan.zip").write_bytes(b"not a zip")
    env = dict(os.environ, KIT=str(REPO_ROOT), SUBMISSIONS=str(subs), OUT=str(out), SEED="11",
               EXPERIMENTS=EXP, JOBS="1", BATCH_OPTIONS="--quick --time-scale 0.05",
               SLURM_ARRAY_TASK_COUNT="2", AICS_GRADER_TMP=str(tmp_path / "work"))
    for k in ("1", "2"):
        proc = subprocess.run(["bash", str(SLURM / "grade_array.sbatch")], env=dict(env, SLURM_ARRAY_TASK_ID=k),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"shard {k}/2:" in proc.stderr
    proc = subprocess.run(["bash", str(SLURM / "merge.sbatch")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, rows = read_csv(out / "grades.csv")
    assert set(rows) == {"ann", "ben", "cat", "dan"} and {r["seed"] for r in rows.values()} == {"11"}
    assert rows["dan"]["status"] == "bad-submission" and rows["ann"]["status"] == GRADED
    assert all(report_path(out / "results", i).is_file() for i in ("ann", "ben", "cat"))


# --------------------------------------------------------------------------- sharded == unsharded, for real


def _zip_folder(folder: Path, archive: Path) -> None:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder.parent))


def _class_of_six(folder: Path, tmp_path: Path) -> None:
    """Two reference copies (one zipped), the skeleton, a planted bug, a broken zip, an awkward name."""
    gradeutil.reference_copy(folder / "ref_a" / EXP, EXP)
    gradeutil.reference_copy(tmp_path / "zipped" / "ref_b" / EXP, EXP)
    _zip_folder(tmp_path / "zipped" / "ref_b", folder / "ref_b.zip")
    _pristine(folder / "pristine")
    bug = gradeutil.broken_copy(tmp_path / "bug", EXP, {"layers_2.py": [("windows.max(axis=(4, 5))",
                                                                          "windows.mean(axis=(4, 5))")]})
    shutil.move(bug, folder / "pool_mean")
    (folder / "broken.zip").write_bytes(b"PK\x03\x04 truncated")
    _pristine(folder / "=SUM(A1) -x")


def _run(cmd: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), AICS_GRADER_TMP=str(tmp_path / "work"))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "grader", *cmd], capture_output=True, text=True, env=env, timeout=900)
    return proc, time.monotonic() - start


def _rows_but_seconds(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = [{k: v for k, v in row.items() if k != "seconds"} for row in reader]
        return reader.fieldnames, rows


def _checks(results: Path, ident: str) -> list[tuple[str, bool]]:
    doc = json.loads(report_path(results, ident).read_text(encoding="utf-8"))
    return [(c["name"], c["passed"]) for c in doc["experiments"][0]["checks"]]


@pytest.mark.slow
def test_sharded_grading_merges_into_the_unsharded_gradebook(tmp_path):
    folder, out = tmp_path / "subs", tmp_path / "out"
    _class_of_six(folder, tmp_path)
    common = ["--experiments", EXP, "--seed", "4242", "--quick", "--jobs", "2"]
    whole, whole_seconds = _run(["batch", str(folder), "--csv", str(out / "whole.csv"), *common], tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    shard_seconds = 0.0
    for k in (1, 2, 3):
        proc, seconds = _run(["batch", str(folder), "--csv", str(out / f"shard-{k}.csv"), "--shard", f"{k}/3",
                              *common], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        shard_seconds += seconds
    merged, _ = _run(["batch", "merge", str(out / "merged.csv"), *(str(out / f"shard-{k}.csv") for k in (1, 2, 3)),
                      "--results-dir", str(out / "merged-results")], tmp_path)
    assert merged.returncode == 0, merged.stderr[-3000:]
    header, want = _rows_but_seconds(out / "whole.csv")
    merged_header, got = _rows_but_seconds(out / "merged.csv")
    assert merged_header == header and got == want
    by_id = {r["id"]: r for r in got}
    assert len(got) == 6 and by_id["ref_a"]["total"] == "60" and by_id["ref_b"]["total"] == "60"
    assert by_id["pristine"]["total"] == by_id["pool_mean"]["total"] == "0"
    assert by_id["broken"]["status"] == "bad-submission" and "%3DSUM(A1) -x" in by_id
    for ident in ("ref_a", "pool_mean", "=SUM(A1) -x"):
        assert _checks(out / "merged-results", ident) == _checks(out / "whole-results", ident)
    print(f"\nunsharded: {len(want)} rows in {whole_seconds:.1f} s; three shards one after another "
          f"{shard_seconds:.1f} s; merged rows equal: {got == want}")
