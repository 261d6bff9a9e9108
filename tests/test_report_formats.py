"""Report formats on hand-built report dicts: terminal table, Gradescope results.json, JUnit XML.

The dicts follow the kit's JSON form (README, "For instructors"; grader.report.build):
``{"total", "max_total", "seconds", "weights": {"kind", "sha256"}, "hidden_checks",
"isolation", "experiments": [{"id", "score", "max_score", "seconds", "notes", "error",
"checks": [{"name", "tier", "passed", "message", "seconds", "hidden"}]}]}``.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from grader.gradescope import TIER_POINTS, to_gradescope
from grader.report import summary_line, table, write_gradescope, write_junit
from grader.scoring import CheckResult, tier_score

SHA = "ab12cd34ef56" + "0" * 52


def chk(name: str, tier: int, passed: bool = True, message: str = "", hidden: bool = False,
        seconds: float = 0.25) -> dict:
    return {"name": name, "tier": tier, "passed": passed, "message": message or ("ok" if passed else "wrong"),
            "seconds": seconds, "hidden": hidden}


def exp(id_: str, checks: list[dict], notes: list | None = None, error: str = "", seconds: float = 3.0) -> dict:
    score = 0 if error else tier_score([CheckResult(**c) for c in checks])
    return {"id": id_, "score": score, "max_score": 100, "seconds": seconds, "notes": notes or [],
            "checks": checks, "error": error}


def doc(*experiments: dict, hidden_seed: int | None = 7, privilege_drop: bool = True) -> dict:
    return {"total": sum(e["score"] for e in experiments), "max_total": 100 * len(experiments), "seconds": 42.4,
            "submission": "/tmp/stu_upload", "weights": {"kind": "synthetic", "sha256": SHA},
            "hidden_checks": {"enabled": hidden_seed is not None, "seed": hidden_seed},
            "isolation": {"privilege_drop": privilege_drop, "reason_off": "" if privilege_drop else "not root"},
            "experiments": list(experiments)}


def full_marks() -> dict:
    return exp("exp_3_1_vgg", [chk("conv1_1 case 0", 60), chk("pool1 case 0", 60), chk("relu case 0", 60),
                               chk("pool5", 80), chk("softmax", 100), chk("class id", 100)])


def blocked() -> dict:
    """A failing 60 check: the passing 80 and 100 checks earn nothing."""
    return exp("exp_3_3_style_transfer", [chk("conv forward", 60), chk("pool backward", 60, passed=False,
                                                                       message="1 of 9 elements differ"),
                                          chk("content loss", 80), chk("fast conv", 100)])


# --------------------------------------------------------------------------- summary line and table


def test_scores_of_the_fixtures():
    assert full_marks()["score"] == 100 and blocked()["score"] == 0


def test_summary_line_of_a_full_score():
    assert summary_line(full_marks()) == "exp_3_1_vgg: 100/100  (6 of 6 checks passed)"


def test_summary_line_names_what_blocks_the_lowest_failing_tier():
    e = exp("exp_3_1_vgg", [chk("a", 60), chk("pool5", 80, passed=False), chk("softmax", 100, passed=False)])
    assert summary_line(e) == "exp_3_1_vgg: 60/100  (1 of 3 checks passed)  - tier 80 needs: pool5"


def test_summary_line_lists_three_names_then_a_count():
    e = exp("exp_3_2_dlp", [chk(f"c{i}", 60, passed=False) for i in range(5)])
    assert summary_line(e) == "exp_3_2_dlp: 0/100  (0 of 5 checks passed)  - tier 60 needs: c0, c1, c2 and 2 more"


def test_summary_line_of_a_grader_error():
    e = exp("exp_3_2_dlp", [], error="pytest exited with code 4")
    assert summary_line(e) == "exp_3_2_dlp: 0/100  (0 of 0 checks passed)  - the grader could not finish this experiment"


def test_table_lists_each_check_and_the_reason_under_a_failure():
    lines = table(doc(blocked())).splitlines()
    assert "exp_3_3_style_transfer: 0/100  (3 of 4 checks passed)  - tier 60 needs: pool backward" in lines
    assert f"  {'tier':>4}  {'result':<6}  {'seconds':>8}  check" in lines
    assert "    60  PASS        0.25  conv forward" in lines
    i = lines.index("    60  FAIL        0.25  pool backward")
    assert lines[i + 1] == " " * 10 + "1 of 9 elements differ"
    assert "    80  PASS        0.25  content loss" in lines


def test_table_footer_gives_hidden_seed_weights_and_total():
    lines = table(doc(full_marks(), blocked())).splitlines()
    assert lines[-3:] == ["hidden checks: on, seed 7", "weights: synthetic (ab12cd34ef56)", "TOTAL 100/200"]
    assert table(doc(full_marks(), hidden_seed=None)).splitlines()[-3] == "hidden checks: off"


def test_table_folds_passing_hidden_checks_but_names_failing_ones():
    e = exp("exp_3_1_vgg", [chk("conv1_1 case 0", 60), chk("hidden conv 1", 60, hidden=True, seconds=1.0),
                            chk("hidden conv 2", 60, hidden=True, seconds=2.0),
                            chk("hidden pool 1", 60, passed=False, hidden=True, message="wrong output shape")])
    text = table(doc(e))
    assert "hidden conv 1" not in text and "hidden conv 2" not in text
    assert "    60  PASS        3.00  2 hidden check(s)" in text.splitlines()
    assert "    60  FAIL        0.25  hidden pool 1" in text.splitlines()
    assert " " * 10 + "wrong output shape" in text.splitlines()


def test_table_wraps_long_reasons_within_the_width():
    long = "worst element " + " ".join(f"word{i}" for i in range(60))
    e = exp("exp_3_1_vgg", [chk("conv", 60, passed=False, message=long)])
    lines = table(doc(e), width=60).splitlines()
    reason = [line for line in lines if line.startswith(" " * 10 + "word") or line.startswith(" " * 10 + "worst")]
    assert len(reason) > 3 and all(len(line) <= 60 for line in reason)
    assert " ".join(line.strip() for line in reason) == long


def test_table_shows_notes_grader_errors_and_reduced_isolation():
    e = exp("exp_3_2_dlp", [], notes=["weights are synthetic"], error="probe crashed")
    lines = table(doc(e, privilege_drop=False)).splitlines()
    assert "  note: weights are synthetic" in lines
    assert "  GRADER ERROR: probe crashed" in lines
    assert "isolation: reduced (not root)" in lines
    assert not any(line.startswith("isolation") for line in table(doc(e)).splitlines())


# --------------------------------------------------------------------------- Gradescope


def gs_tests(results: dict, exp_id: str) -> list[dict]:
    return [t for t in results["tests"] if t["name"].startswith(exp_id + ":")]


def test_tier_points_are_60_20_20():
    assert TIER_POINTS == {60: 60.0, 80: 20.0, 100: 20.0}


def test_gradescope_full_score_shares_each_tier_among_its_checks():
    results = to_gradescope(doc(full_marks()))
    tests = gs_tests(results, "exp_3_1_vgg")
    assert [t["max_score"] for t in tests] == [20.0, 20.0, 20.0, 20.0, 10.0, 10.0]
    assert [t["score"] for t in tests] == [t["max_score"] for t in tests]
    assert all(t["status"] == "passed" and t["visibility"] == "visible" for t in tests)
    assert [t["number"] for t in tests] == [f"1.{i}" for i in range(1, 7)]
    assert tests[0]["name"] == "exp_3_1_vgg: conv1_1 case 0"
    assert results["score"] == 100.0


def test_gradescope_shares_add_up_to_100_when_they_do_not_divide_evenly():
    e = exp("exp_3_1_vgg", [chk(f"c{i}", 60) for i in range(7)] + [chk(f"p{i}", 80) for i in range(3)]
            + [chk("s", 100)])
    tests = to_gradescope(doc(e))["tests"]
    shares_60 = [t["max_score"] for t in tests[:7]]
    assert shares_60 == [8.5715, 8.5715] + [8.5714] * 5
    assert round(sum(shares_60), 6) == 60.0
    assert round(sum(t["max_score"] for t in tests), 6) == 100.0
    assert round(sum(t["score"] for t in tests), 6) == 100.0


def test_gradescope_max_score_is_100_per_experiment():
    results = to_gradescope(doc(full_marks(), blocked()))
    for exp_id in ("exp_3_1_vgg", "exp_3_3_style_transfer"):
        assert round(sum(t["max_score"] for t in gs_tests(results, exp_id)), 6) == 100.0
    assert {t["number"].split(".")[0] for t in gs_tests(results, "exp_3_3_style_transfer")} == {"2"}
    assert results["extra_data"] == {"weights_sha256": SHA, "hidden_seed": 7, "max_total": 200}


def test_gradescope_blocked_tier_earns_nothing_and_says_why():
    tests = gs_tests(to_gradescope(doc(blocked())), "exp_3_3_style_transfer")
    by_name = {t["name"].split(": ", 1)[1]: t for t in tests}
    assert by_name["pool backward"]["status"] == "failed" and by_name["pool backward"]["score"] == 0.0
    assert by_name["pool backward"]["output"] == "1 of 9 elements differ"
    # A passing 60 check earns nothing either: its own tier is not reached.
    assert by_name["conv forward"]["score"] == 0.0
    for name, tier in (("conv forward", 60), ("content loss", 80), ("fast conv", 100)):
        t = by_name[name]
        assert t["status"] == "passed" and t["score"] == 0.0
        assert t["output"] == f"ok (no points: tier {tier} needs every check of the lower tiers to pass)"


def test_gradescope_partial_score_pays_the_tiers_reached():
    e = exp("exp_3_1_vgg", [chk("a", 60), chk("b", 60), chk("pool5", 80, passed=False), chk("softmax", 100)])
    tests = to_gradescope(doc(e))["tests"]
    assert [t["score"] for t in tests] == [30.0, 30.0, 0.0, 0.0]
    assert "no points" in tests[3]["output"] and "no points" not in tests[0]["output"]


def test_gradescope_hidden_checks_are_published_after_the_deadline():
    e = exp("exp_3_1_vgg", [chk("visible", 60), chk("hidden 1", 60, hidden=True), chk("p", 80), chk("s", 100)])
    tests = to_gradescope(doc(e))["tests"]
    assert {t["name"]: t["visibility"] for t in tests} == {
        "exp_3_1_vgg: visible": "visible", "exp_3_1_vgg: hidden 1": "after_published",
        "exp_3_1_vgg: p": "visible", "exp_3_1_vgg: s": "visible"}


def test_gradescope_keeps_the_points_of_a_tier_without_checks():
    e = exp("exp_3_2_dlp", [], error="the probe crashed")
    tests = to_gradescope(doc(e))["tests"]
    assert [(t["name"], t["max_score"], t["score"], t["status"]) for t in tests] == [
        ("exp_3_2_dlp: tier 60 (no checks ran)", 60.0, 0.0, "failed"),
        ("exp_3_2_dlp: tier 80 (no checks ran)", 20.0, 0.0, "failed"),
        ("exp_3_2_dlp: tier 100 (no checks ran)", 20.0, 0.0, "failed")]
    assert all(t["output"] == "the probe crashed" for t in tests)
    e = exp("exp_3_1_vgg", [chk("a", 60), chk("s", 100)])
    missing = [t for t in to_gradescope(doc(e))["tests"] if "no checks ran" in t["name"]]
    assert [(t["max_score"], t["output"]) for t in missing] == [(20.0, "no check of this tier ran")]


def test_gradescope_top_level_fields():
    results = to_gradescope(doc(full_marks(), exp("exp_3_2_dlp", [], error="boom")))
    assert results["score"] == 100.0 and isinstance(results["score"], float)
    assert results["execution_time"] == 42
    assert results["output"] == ("exp_3_1_vgg: 100/100; exp_3_2_dlp: 0/100; grader error in exp_3_2_dlp: boom; "
                                 "weights synthetic ab12cd34ef56")
    assert results["output_format"] == "text" and results["stdout_visibility"] == "hidden"


def test_write_gradescope_writes_json(tmp_path):
    path = tmp_path / "results.json"
    write_gradescope(doc(blocked()), path)
    assert json.loads(path.read_text()) == to_gradescope(doc(blocked()))


# --------------------------------------------------------------------------- JUnit XML


def junit(tmp_path, report: dict) -> ET.Element:
    path = tmp_path / "report.xml"
    write_junit(report, path)
    assert path.read_bytes().startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    return ET.parse(path).getroot()


def test_junit_counts_and_structure(tmp_path):
    root = junit(tmp_path, doc(full_marks(), blocked()))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("time")) == ("10", "1", "0", "42.400")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["exp_3_1_vgg", "exp_3_3_style_transfer"]
    assert [(s.get("tests"), s.get("failures"), s.get("errors")) for s in suites] == [("6", "0", "0"), ("4", "1", "0")]
    props = {p.get("name"): p.get("value") for p in suites[1].find("properties")}
    assert props == {"score": "0", "max_score": "100", "weights": "ab12cd34ef56"}
    cases = suites[1].findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("exp_3_3_style_transfer.tier60", "conv forward"), ("exp_3_3_style_transfer.tier60", "pool backward"),
        ("exp_3_3_style_transfer.tier80", "content loss"), ("exp_3_3_style_transfer.tier100", "fast conv")]
    failure = cases[1].find("failure")
    assert failure.get("type") == "CheckFailure"
    assert failure.get("message") == failure.text == "1 of 9 elements differ"
    assert cases[0].find("failure") is None and cases[0].get("time") == "0.250"


def test_junit_grader_error_is_an_error_case(tmp_path):
    root = junit(tmp_path, doc(full_marks(), exp("exp_3_2_dlp", [chk("a", 60, passed=False)], error="probe died")))
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("8", "1", "1")
    suite = root.findall("testsuite")[1]
    assert (suite.get("tests"), suite.get("errors")) == ("2", "1")
    error_case = suite.findall("testcase")[-1]
    assert (error_case.get("classname"), error_case.get("name")) == ("exp_3_2_dlp.grader", "grader")
    error = error_case.find("error")
    assert error.get("type") == "GraderError" and error.text == "probe died"


def test_junit_survives_characters_xml_cannot_carry(tmp_path):
    message = "bad\x00 byte \x1b[31m <tag> & \"quote\" 中文 \U0001F600 " + "x" * 600
    root = junit(tmp_path, doc(exp("exp_3_1_vgg", [chk("c", 60, passed=False, message=message)])))
    failure = root.find("testsuite/testcase/failure")
    clean = message.replace("\x00", "").replace("\x1b", "")
    assert failure.text == clean
    assert failure.get("message") == clean[:500]


@pytest.mark.parametrize("seconds", [0, 1.23456])
def test_junit_suite_time(tmp_path, seconds):
    e = full_marks()
    e["seconds"] = seconds
    assert junit(tmp_path, doc(e)).find("testsuite").get("time") == f"{seconds:.3f}"
