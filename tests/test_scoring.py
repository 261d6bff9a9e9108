"""The book's tier rule (grader.scoring) on hand-made check results."""
from __future__ import annotations

import pytest

from grader.scoring import TIERS, CheckResult, ExperimentResult, tier_score


def check(tier: int, passed: bool = True, name: str = "", hidden: bool = False) -> CheckResult:
    return CheckResult(name or f"t{tier}", tier, passed, "ok" if passed else "wrong values", 0.5, hidden)


def test_tiers_are_the_books():
    assert TIERS == (60, 80, 100)


def test_all_tiers_passing_scores_100():
    assert tier_score([check(60), check(60), check(80), check(100)]) == 100


def test_empty_list_scores_0():
    assert tier_score([]) == 0


@pytest.mark.parametrize("failing, score", [(60, 0), (80, 60), (100, 80)])
def test_a_failing_tier_caps_the_score_below_it(failing, score):
    checks = [check(60), check(60), check(80), check(100)]
    checks.append(check(failing, passed=False))
    assert tier_score(checks) == score


def test_a_failing_60_blocks_passing_80_and_100():
    assert tier_score([check(60, passed=False), check(80), check(100), check(100)]) == 0


def test_one_failure_among_many_checks_of_a_tier_is_enough():
    checks = [check(60, name=f"conv{i}") for i in range(10)] + [check(80), check(100)]
    checks[7] = check(60, passed=False, name="conv7")
    assert tier_score(checks) == 0


def test_order_of_checks_does_not_matter():
    checks = [check(100), check(80, passed=False), check(60)]
    assert tier_score(checks) == tier_score(list(reversed(checks))) == 60


def test_a_missing_tier_cannot_be_reached():
    assert tier_score([check(60), check(100)]) == 60
    assert tier_score([check(80), check(100)]) == 0
    assert tier_score([check(60), check(80)]) == 80
    assert tier_score([check(60)]) == 60


def test_hidden_checks_count_like_visible_ones():
    assert tier_score([check(60), check(60, passed=False, hidden=True), check(80), check(100)]) == 0
    assert tier_score([check(60), check(80), check(100), check(100, passed=False, hidden=True)]) == 80
    assert tier_score([check(60, hidden=True), check(80, hidden=True), check(100, hidden=True)]) == 100


def test_check_result_as_dict_rounds_seconds():
    row = CheckResult("conv1_1 case 0", 60, False, "1 of 9 elements differ", 1.23456789, hidden=True)
    assert row.as_dict() == {"name": "conv1_1 case 0", "tier": 60, "passed": False,
                             "message": "1 of 9 elements differ", "seconds": 1.235, "hidden": True}
    assert CheckResult("a", 80, True, "", 0.0).as_dict()["hidden"] is False


def test_experiment_result_as_dict():
    exp = ExperimentResult("exp_3_1_vgg", checks=[check(60), check(80), check(100, passed=False)],
                           notes=["synthetic weights"], seconds=12.34567)
    doc = exp.as_dict()
    assert doc == {"id": "exp_3_1_vgg", "score": 80, "max_score": 100, "seconds": 12.346,
                   "notes": ["synthetic weights"],
                   "checks": [c.as_dict() for c in exp.checks]}
    assert [c["tier"] for c in doc["checks"]] == [60, 80, 100]
    # The grader's own error is not part of as_dict (the report adds it beside the checks).
    assert "error" not in ExperimentResult("x", error="boom").as_dict()


def test_experiment_score_follows_its_checks():
    exp = ExperimentResult("exp_3_2_dlp")
    assert exp.score == 0 and exp.max_score == 100
    exp.checks += [check(60), check(80), check(100)]
    assert exp.score == 100
    exp.checks.append(check(80, passed=False))
    assert exp.score == 60


def test_default_lists_are_not_shared():
    a, b = ExperimentResult("a"), ExperimentResult("b")
    a.checks.append(check(60))
    a.notes.append("n")
    assert b.checks == [] and b.notes == []
