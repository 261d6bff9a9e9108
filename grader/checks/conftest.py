"""Shared fixtures for the checks: parametrize by case and report like a grader."""
from __future__ import annotations

import pytest

from grader import session as grading
from grader.kit.compare import CheckFailure, Tolerance, assert_close


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        module = metafunc.module
        session = grading.SESSION
        cases = [c for c in session.cases(module.EXPERIMENT) if c.kind in module.CASE_KINDS]
        metafunc.parametrize("case", cases, ids=[c.name for c in cases])


@pytest.fixture
def session():
    return grading.SESSION


def describe_failure_kind(exc: CheckFailure) -> str:
    """A hidden check's failure, told without its data."""
    text = str(exc)
    if "shape" in text and "expected" in text:
        return "wrong output shape"
    if "non-finite" in text:
        return "output has NaN or inf values"
    if "elements differ" in text:
        return "wrong values (shape right)"
    return "failed"


def check_outputs(request, session, experiment: str, case, tolerances: dict[str, Tolerance]) -> dict:
    """Fetch the case's outputs and compare each key with the golden; return the outputs."""
    node = request.node
    node.aics_tier, node.aics_name, node.aics_hidden = case.tier, case.name, case.hidden
    outcome = session.outcome(experiment, case.name)
    node.aics_seconds = outcome.seconds
    if outcome.status != "ok":
        where = f"{case.label}: " if not case.hidden else f"hidden check {case.name}: "
        raise CheckFailure(where + outcome.error)
    golden = session.golden(experiment, case.name)
    summaries = []
    for key, tol in tolerances.items():
        what = f"{case.label} [{key}]" if not case.hidden else f"hidden check {case.name} [{key}]"
        try:
            summaries.append(assert_close(outcome.outputs.get(key), golden[key], what, tol))
        except CheckFailure as exc:
            if case.hidden:
                raise CheckFailure(f"hidden check {case.name} ({case.kind}): {describe_failure_kind(exc)}; "
                                   f"the visible checks of the same layer show details") from None
            raise
    timing = f" in {outcome.seconds:.3f} s" if outcome.seconds is not None else ""
    node.aics_message = "; ".join(summaries) + timing
    return outcome.outputs
