"""The batch's gradebook and intake on their own: CSV round trips, ids, file names, resume rules, zip safety.

Pure file work in ``tmp_path`` (no weights, no grading subprocess); the whole file runs in
about a second. The end-to-end batch runs live in test_grader_batch.py.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from grader import atomic
from grader.batch.gradebook import (BAD_SUBMISSION, CRASHED, FIXED_COLUMNS, GRADED, GRADER_ERROR, INTERRUPTED,
                                    TIMEOUT, Outcome, bad_seed_cells, columns, gradescope_path, is_done, log_path,
                                    read_csv, recorded_seeds, report_path, write_csv)
from grader.batch.names import MAX_STEM_BYTES, decode_id, display_id, encode_id, file_stem
from grader.batch.intake import UnsafeArchive, discover, find_root, prepare, safe_extract
from grader.batch.scheduler import describe

from gradeutil import make_zip  # tests/, on sys.path

EXP = "exp_3_1_vgg"
HEADER = columns([EXP])


def raw_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# --------------------------------------------------------------------------- columns


def test_columns_put_the_experiments_between_id_and_the_fixed_columns():
    assert columns([EXP]) == ["id", EXP, *FIXED_COLUMNS]
    assert columns(["exp_3_3_style_transfer", "exp_3_2_dlp"]) == \
        ["id", "exp_3_3_style_transfer", "exp_3_2_dlp", *FIXED_COLUMNS]
    assert columns([]) == ["id", *FIXED_COLUMNS]
    assert FIXED_COLUMNS == ("total", "max_total", "status", "seconds", "seed", "weights", "message")


# --------------------------------------------------------------------------- read and write


def test_round_trip_keeps_unicode_ids_and_awkward_messages(tmp_path):
    path = tmp_path / "grades.csv"
    rows = {
        "张三": {"id": "张三", EXP: 7, "status": GRADED, "message": 'tier 2 fails "conv", pool, fc'},
        "müller,anna": {"id": "müller,anna", EXP: 0, "status": CRASHED, "message": "line one\nline two\r\nthree"},
        "o'brien": {"id": "o'brien", "status": TIMEOUT, "message": 'say "hi", then ""quote""'},
    }
    write_csv(path, HEADER, rows)
    header, got = read_csv(path)
    assert header == HEADER
    assert set(got) == set(rows)
    assert got["张三"]["message"] == 'tier 2 fails "conv", pool, fc'
    assert got["张三"][EXP] == "7"
    assert got["müller,anna"]["message"] == "line one line two  three"   # one physical line per row
    assert got["o'brien"]["message"] == 'say "hi", then ""quote""'
    assert len(raw_lines(path)) == 1 + len(rows)


def test_missing_keys_are_empty_and_unknown_keys_dropped(tmp_path):
    path = tmp_path / "grades.csv"
    write_csv(path, HEADER, {"a": {"id": "a", "status": GRADED, "not_a_column": "x"}})
    header, got = read_csv(path)
    assert header == HEADER and "not_a_column" not in got["a"]
    assert got["a"][EXP] == "" and got["a"]["total"] == "" and got["a"]["status"] == GRADED


def test_numbers_stay_numbers_and_formulas_are_defused(tmp_path):
    path = tmp_path / "grades.csv"
    cells = {"int": 10, "neg": -3, "float": "-1.5", "plus": "+2", "exp": "1e3",
             "formula": "=HYPERLINK(\"x\")", "at": "@SUM(A1)", "dash": "-oops", "plusword": "+cmd"}
    write_csv(path, HEADER, {k: {"id": k, "message": v} for k, v in cells.items()})
    _, got = read_csv(path)
    for key in ("int", "neg", "float", "plus", "exp"):
        assert got[key]["message"] == str(cells[key]), key
    for key in ("formula", "at", "dash", "plusword"):
        assert got[key]["message"] == "'" + cells[key], key


def test_outcome_row_formats_the_cells(tmp_path):
    outcome = Outcome("alice", GRADED, 12.345, {EXP: 40}, 40, 50, "abcdef012345", "x" * 800)
    row = outcome.row(seed=9)
    assert row == {"id": "alice", EXP: 40, "total": 40, "max_total": 50, "status": GRADED,
                   "seconds": "12.3", "seed": 9, "weights": "abcdef012345", "message": "x" * 500}
    path = tmp_path / "grades.csv"
    write_csv(path, HEADER, {"alice": row})
    _, got = read_csv(path)
    assert got["alice"][EXP] == "40" and got["alice"]["seed"] == "9" and got["alice"]["seconds"] == "12.3"


def test_an_outcome_without_scores_leaves_the_score_cells_empty(tmp_path):
    path = tmp_path / "grades.csv"
    write_csv(path, HEADER, {"bob": Outcome("bob", BAD_SUBMISSION, 0.0, message="zip refused: x").row(3)})
    _, got = read_csv(path)
    assert got["bob"][EXP] == "" and got["bob"]["total"] == "" and got["bob"]["seconds"] == "0.0"


def test_rewriting_keeps_every_row_sorted_by_id(tmp_path):
    path = tmp_path / "grades.csv"
    rows = {ident: Outcome(ident, GRADED, 1.0, {EXP: i}, i, 50).row(1)
            for i, ident in enumerate(["carol", "alice", "bob"])}
    write_csv(path, HEADER, rows)
    _, rows = read_csv(path)
    # What the run loop does after each finished submission: add one row, rewrite the file.
    rows["dave"] = Outcome("dave", TIMEOUT, 2.0, message="too slow").row(1)
    write_csv(path, HEADER, rows)
    rows["alice"] = Outcome("alice", GRADED, 3.0, {EXP: 50}, 50, 50).row(1)
    write_csv(path, HEADER, rows)
    _, got = read_csv(path)
    assert set(got) == {"alice", "bob", "carol", "dave"}
    assert got["alice"]["total"] == "50" and got["carol"]["total"] == "0" and got["dave"]["status"] == TIMEOUT
    assert [line.split(",")[0] for line in raw_lines(path)[1:]] == ["alice", "bob", "carol", "dave"]
    assert [p.name for p in tmp_path.iterdir()] == ["grades.csv"]   # no temporary file left behind


def test_missing_or_empty_csv_reads_as_no_rows(tmp_path):
    assert read_csv(tmp_path / "absent.csv") == ([], {})
    (tmp_path / "empty.csv").write_bytes(b"")
    assert read_csv(tmp_path / "empty.csv") == ([], {})
    path = tmp_path / "header_only.csv"
    write_csv(path, HEADER, {})
    assert read_csv(path) == (HEADER, {})


def test_rows_without_an_id_are_ignored(tmp_path):
    path = tmp_path / "grades.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerow(["alice", "3"] + [""] * len(FIXED_COLUMNS))
        writer.writerow(["", "4"] + [""] * len(FIXED_COLUMNS))
    _, got = read_csv(path)
    assert list(got) == ["alice"]


def test_a_byte_order_mark_is_read_past(tmp_path):
    path = tmp_path / "grades.csv"
    write_csv(path, HEADER, {"a": Outcome("a", GRADED, 1.0, {EXP: 0}, 0, 50).row(5)})
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())   # as a spreadsheet's "CSV UTF-8" saves it
    header, rows = read_csv(path)
    assert header == HEADER and rows["a"]["seed"] == "5"


# --------------------------------------------------------------------------- ids in the CSV and in file names

AWKWARD_IDS = ["plain", "张三", "o'brien", "bob.zip", "=1+2", "+x", "-x", "@x", "=", "-", "\t=1", "line\nbreak",
               "cr\rx", "%41", "100%", "%zz", "'quoted", "\x1b]52;c;cm0=\x07", "\u202eevil", "full\u3000width",
               "para\u2029graph", os.fsdecode(b"bad\xff"), os.fsdecode(b"\xe2\x80 half"), os.fsdecode(b"\xff\xfe"),
               " space ", "a" * 255, "emoji \U0001f600"]


def test_every_id_reads_back_exactly_from_the_csv(tmp_path):
    path = tmp_path / "grades.csv"
    write_csv(path, HEADER, {i: {"id": i, "status": GRADED} for i in AWKWARD_IDS})
    _, got = read_csv(path)
    assert sorted(got) == sorted(AWKWARD_IDS) and all(got[i]["id"] == i for i in AWKWARD_IDS)
    assert len(raw_lines(path)) == 1 + len(AWKWARD_IDS)   # a line break in an id stays on its row
    with open(path, newline="", encoding="utf-8") as f:
        cells = [row["id"] for row in csv.DictReader(f)]
    assert all(cell.isprintable() and cell[:1] not in "=+-@\t" for cell in cells), cells


def test_plain_ids_are_written_as_they_are_and_others_readably():
    for ident in ("plain", "张三", "o'brien", "bob.zip", "müller,anna", "emoji \U0001f600"):
        assert encode_id(ident) == ident
    assert encode_id("=1+2") == "%3D1+2" and encode_id("-x") == "%2Dx" and encode_id("a-b") == "a-b"
    assert encode_id("line\nbreak") == "line%0Abreak" and encode_id("100%") == "100%25"
    assert encode_id(os.fsdecode(b"bad\xff")) == "bad%FF"
    assert decode_id("%zz 100%") == "%zz 100%"   # typed by hand: kept as typed
    assert display_id("\x1b[2Jx") == "%1B[2Jx"


def test_report_files_of_two_ids_never_share_a_path(tmp_path):
    ids = AWKWARD_IDS + ["", "victim", "victim.results", "victim.results.results", "a/b", "a%2Fb", "..", ".",
                         ".hidden", "~", "x~y", "L" * 300, "L" * 299 + "M", "L" * 100 + "~" + "0" * 16]
    paths = [name(tmp_path, i) for i in ids for name in (report_path, log_path, gradescope_path)]
    assert len(set(paths)) == len(paths)
    for path in paths:
        assert path.parent == tmp_path and not path.name.startswith(".")
        assert len(path.name.encode()) <= MAX_STEM_BYTES + len(".results.json")
        path.write_text("x")   # every name is one the file system takes
    assert len(list(tmp_path.iterdir())) == len(paths)
    assert report_path(tmp_path, "alice") == tmp_path / "alice.json"
    assert gradescope_path(tmp_path, "alice") == tmp_path / "alice.results.json"
    assert log_path(tmp_path, "alice") == tmp_path / "alice.log"
    assert file_stem("victim.results") == "victim%2Eresults"


def test_stale_temps_are_only_the_files_own(tmp_path):
    names = [".a.json.12.tmp", ".a.json.x.tmp", ".a.json.5.7.tmp", ".a.results.json.3.tmp", ".[a].json.1.tmp",
             ".b.json.1.tmp", "a.json"]
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / ".a.json.99.tmp").symlink_to(tmp_path / "a.json")
    assert [p.name for p in atomic.stale_temps(tmp_path / "a.json")] == [".a.json.12.tmp"]
    assert [p.name for p in atomic.stale_temps(tmp_path / "[a].json")] == [".[a].json.1.tmp"]
    assert atomic.stale_temps(tmp_path / "*.json") == []
    assert atomic.stale_temps(tmp_path / "absent" / "a.json") == []


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("status", [GRADER_ERROR, BAD_SUBMISSION, CRASHED, TIMEOUT, INTERRUPTED, "", "GRADED"])
def test_only_graded_rows_count_as_done(status):
    assert not is_done({"id": "x", "status": status})


def test_graded_rows_are_done_after_a_round_trip(tmp_path):
    path = tmp_path / "grades.csv"
    write_csv(path, HEADER, {"a": Outcome("a", GRADED, 1.0, {EXP: 0}, 0, 50).row(5),
                             "b": Outcome("b", CRASHED, 1.0).row(5)})
    _, rows = read_csv(path)
    assert is_done(rows["a"]) and not is_done(rows["b"])
    assert not is_done(rows.get("never-seen", {}))


def test_recorded_seeds_are_the_seed_cells_as_text(tmp_path):
    path = tmp_path / "grades.csv"
    write_csv(path, HEADER, {"a": {"id": "a", "seed": 5}, "b": {"id": "b", "seed": 5}, "c": {"id": "c"}})
    _, rows = read_csv(path)
    assert recorded_seeds(rows) == {"5"}
    rows["d"] = {"id": "d", "seed": "6"}
    assert recorded_seeds(rows) == {"5", "6"}
    assert recorded_seeds({}) == set()


@pytest.mark.parametrize("cell, bad", [("5", False), ("123.0", True), ("-1", True), (" 5", True), ("1e3", True),
                                       ("\u0665", True), ("", False)])
def test_seed_cells_must_be_plain_whole_numbers(cell, bad):
    assert bool(bad_seed_cells({"a": {"id": "a", "seed": cell}})) == bad


def test_describe_names_the_lowest_failing_tier():
    doc = {"experiments": [
        {"id": EXP, "checks": [{"name": n, "tier": t, "passed": False}
                               for n, t in [("c1", 1), ("c2", 1), ("c3", 1), ("c4", 1), ("c5", 2)]]},
        {"id": "exp_3_2_dlp", "error": "boom"},
        {"id": "exp_3_3_style_transfer", "checks": [{"name": "ok", "tier": 1, "passed": True}]},
    ]}
    assert describe(doc) == f"{EXP}: tier 1 fails c1, c2, c3 +1; exp_3_2_dlp: grader error"
    assert describe({}) == ""


# --------------------------------------------------------------------------- discover


def test_discover_lists_folders_and_zips_sorted_with_unique_ids(tmp_path):
    for name in ("zed", "alice", "bob", ".git", "__pycache__"):
        (tmp_path / name).mkdir()
    make_zip(tmp_path / "bob.zip", {"x": b""})         # clashes with the folder bob
    make_zip(tmp_path / "carol.zip", {"x": b""})
    make_zip(tmp_path / "dave.ZIP", {"x": b""})
    make_zip(tmp_path / ".hidden.zip", {"x": b""})
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "link").symlink_to(tmp_path / "alice")
    entries = discover(tmp_path)
    assert [e.id for e in entries] == ["__pycache__", "alice", "bob", "bob.zip", "carol", "dave", "zed"]
    by_id = {e.id: e for e in entries}
    assert by_id["bob.zip"].source == tmp_path / "bob.zip" and by_id["bob"].source == tmp_path / "bob"
    assert all(e.root is None and e.problem == "" for e in entries)


def test_discover_of_an_empty_folder_is_empty(tmp_path):
    assert discover(tmp_path) == []


# --------------------------------------------------------------------------- find_root


@pytest.mark.parametrize("prefix, root", [
    ("stu_upload/", "stu_upload"),             # zipped stu_upload/ itself
    ("", ""),                                  # zipped its contents
    ("alice/", "alice"),                       # a folder named after the student ...
    ("alice/stu_upload/", "alice/stu_upload"),  # ... holding stu_upload/
])
def test_find_root_for_the_shapes_students_upload(tmp_path, prefix, root):
    archive = make_zip(tmp_path / "s.zip", {f"{prefix}{EXP}/layers_1.py": b"x = 1\n",
                                            f"{prefix}README.md": b"hi\n",
                                            "__MACOSX/._junk": b"junk"})
    dest = tmp_path / "out"
    dest.mkdir()
    safe_extract(archive, dest)
    assert find_root(dest) == (dest / root if root else dest)
    assert (find_root(dest) / EXP / "layers_1.py").read_text() == "x = 1\n"


def test_find_root_prefers_the_shallowest_and_skips_hidden_folders(tmp_path):
    (tmp_path / ".old" / "exp_3_2_dlp").mkdir(parents=True)
    (tmp_path / "a" / "deep" / EXP).mkdir(parents=True)
    (tmp_path / "b" / "exp_3_3_style_transfer").mkdir(parents=True)
    assert find_root(tmp_path) == tmp_path / "b"


def test_find_root_without_an_experiment_returns_the_folder(tmp_path):
    (tmp_path / "1" / "2" / "3" / "4" / EXP).mkdir(parents=True)   # deeper than the search goes
    (tmp_path / "notes").mkdir()
    assert find_root(tmp_path) == tmp_path
    (tmp_path / "x" / "y" / "z" / EXP).mkdir(parents=True)        # three levels down is still found
    assert find_root(tmp_path) == tmp_path / "x" / "y" / "z"


# --------------------------------------------------------------------------- safe_extract


@pytest.mark.parametrize("name", ["../evil.py", "a/../../evil.py", "ok/../evil.py", "..\\evil.py",
                                  "/etc/evil.py", "/tmp/evil.py", "C:/evil.py", "c:\\evil.py"])
def test_paths_outside_the_folder_are_refused(tmp_path, name):
    archive = make_zip(tmp_path / "s.zip", {name: b"boom\n"})
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchive, match="outside the submission"):
        safe_extract(archive, dest)
    assert not (tmp_path / "evil.py").exists()


def test_symlinks_are_refused_before_anything_is_written_for_them(tmp_path):
    archive = make_zip(tmp_path / "s.zip", {"a.py": b"x\n"}, links={f"{EXP}/layers_1.py": "/etc/passwd"})
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        safe_extract(archive, dest)
    assert not (dest / EXP / "layers_1.py").exists()


def test_member_count_is_capped(tmp_path):
    archive = make_zip(tmp_path / "many.zip", {f"f{i}.py": b"" for i in range(20)})
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchive, match=r"20 entries \(at most 19 allowed\)"):
        safe_extract(archive, dest, max_members=19)
    assert list(dest.iterdir()) == []       # refused before extracting anything
    safe_extract(archive, dest, max_members=20)
    assert len(list(dest.iterdir())) == 20


def test_bytes_are_capped_on_what_is_written(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"a.bin": b"\0" * (2**20), "b.bin": b"\0" * (2**20)})
    assert archive.stat().st_size < 2**16
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchive, match="more than 1 MiB once extracted"):
        safe_extract(archive, dest, max_bytes=2**20 + 10)   # each file fits, the two together do not
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    safe_extract(archive, fresh, max_bytes=2 * 2**20)
    assert (fresh / "b.bin").stat().st_size == 2**20


def test_directories_dots_and_macos_forks(tmp_path):
    archive = make_zip(tmp_path / "s.zip", {"./a/./b.py": b"b\n", "empty/": b"", "__MACOSX/a/._b.py": b"junk",
                                            "a/__MACOSX/x": b"junk"})
    dest = tmp_path / "out"
    dest.mkdir()
    safe_extract(archive, dest)
    assert (dest / "a" / "b.py").read_text() == "b\n" and (dest / "empty").is_dir()
    assert not (dest / "__MACOSX").exists() and not (dest / "a" / "__MACOSX").exists()


# --------------------------------------------------------------------------- prepare


def test_prepare_sets_roots_and_records_refused_zips(tmp_path):
    subs, scratch = tmp_path / "subs", tmp_path / "scratch"
    (subs / "folder" / "stu_upload" / EXP).mkdir(parents=True)
    scratch.mkdir()
    make_zip(subs / "good.zip", {f"good/{EXP}/x.py": b""})
    make_zip(subs / "evil.zip", {"../x.py": b""})
    (subs / "broken.zip").write_bytes(b"this is not a zip")
    entries = {e.id: e for e in discover(subs)}
    prepare(list(entries.values()), scratch)
    assert entries["folder"].root == subs / "folder" / "stu_upload"
    assert entries["good"].root is not None and entries["good"].root.name == "good"
    assert entries["good"].root.is_relative_to(scratch.resolve()) and entries["good"].problem == ""
    assert entries["evil"].problem.startswith("zip refused: ") and "outside the submission" in entries["evil"].problem
    assert entries["broken"].problem.startswith("zip refused: ") and entries["broken"].root is None
    # One folder per zip, numbered by its place in the list (broken, evil, folder, good).
    assert sorted(os.listdir(scratch)) == ["00000", "00001", "00003"]
