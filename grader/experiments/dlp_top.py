"""The top-1, ``evaluate`` and hidden-image checks both tracks of experiment 3.2 share.

The two editions differ in how a network is built and what a layer's output looks like,
not in how the class is read back: ``getOutputData()`` gives 1000 probabilities, and
``evaluate(file_list, ...)`` prints get_top5's list and an ``accuracy1`` line, which the
drivers parse into ``evaluate_top1_ids`` and ``evaluate_accuracy1`` (:mod:`grader.drivers.top5`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from grader.experiments import CheckContext, describe_failure_kind
from grader.kit.compare import CheckFailure, Tolerance, assert_close


def top1_ids(prob, want) -> tuple[int, int]:
    """(the submission's, the golden's) argmax of two probability vectors of the same size."""
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    want = np.asarray(want, dtype=np.float64).reshape(-1)
    if prob.shape != want.shape:
        raise CheckFailure(f"getOutputData() gives {prob.size} values, expected {want.size} class probabilities")
    return int(np.argmax(prob)), int(np.argmax(want))


def top1(ctx: CheckContext) -> str:
    got_id, want_id = top1_ids(ctx.outputs.get("prob"), ctx.golden["prob"])
    if got_id != want_id:
        raise CheckFailure(f"top-1 class id {got_id} but the reference gives {want_id} with these weights")
    p = float(ctx.outputs["prob"].reshape(-1)[got_id])
    return f"top-1 class id {got_id} (p = {p:.4f}) matches the reference"


def evaluate_failure(ctx: CheckContext, call: str, top5_source: str) -> str | None:
    """Why ``call`` (e.g. ``VGG19.evaluate(file_list)``) did not report the golden's top-1, or None.

    ``top5_source`` names where the student finds the expected top-5 format.
    """
    error = ctx.extra.get("evaluate_error")
    if error:
        return f"{call} raised {error}"
    ids = ctx.outputs.get("evaluate_top1_ids")
    if ids is None:
        return ("VGG19.evaluate() printed no top-5 list ('------ Top 5 of <image> ------', then "
                f"'<prob> - <class name>' lines, as {top5_source})")
    want_id = int(np.argmax(np.asarray(ctx.golden["prob"], dtype=np.float64).reshape(-1)))
    if want_id not in {int(v) for v in np.asarray(ids).reshape(-1)}:
        return f"the first class get_top5 printed is not the reference's top-1 (class id {want_id})"
    accuracy = ctx.outputs.get("evaluate_accuracy1")
    if accuracy is None or int(np.asarray(accuracy).reshape(-1)[1]) != 1:
        return "VGG19.evaluate() on a one-image file list did not print 'accuracy1: <a> (<hits>/1)'"
    return None


def evaluate_check(call: str, top5_source: str) -> Callable[[CheckContext], str]:
    """The ``vgg19_evaluate`` check: ``call`` on the cat prints the golden's top-1 first."""
    def evaluate(ctx: CheckContext) -> str:
        problem = evaluate_failure(ctx, call, top5_source)
        if problem:
            raise CheckFailure(problem)
        hits, total = (int(v) for v in np.asarray(ctx.outputs["evaluate_accuracy1"]).reshape(-1)[:2])
        return f"evaluate() prints the reference's top-1 first and accuracy1 ({hits}/{total})"
    evaluate.__doc__ = f"{call} on the cat: get_top5's first class is the golden's top-1."
    return evaluate


def hidden_image_check(tol: Tolerance, call: str, top5_source: str) -> Callable[[CheckContext], str]:
    """A hidden check on a fresh image: pool5, softmax, top-1 and evaluate, told without data."""
    def hidden_image(ctx: CheckContext) -> str:
        for key in ("pool5", "prob"):
            try:
                assert_close(ctx.outputs.get(key), ctx.golden[key], key, tol)
            except CheckFailure as exc:
                raise CheckFailure(f"hidden check {ctx.case.name} [{key}]: {describe_failure_kind(exc)}; "
                                   f"the visible checks on the cat image show details") from None
        got_id, want_id = top1_ids(ctx.outputs.get("prob"), ctx.golden["prob"])
        if got_id != want_id:
            raise CheckFailure(f"hidden check {ctx.case.name}: top-1 class differs from the reference")
        if evaluate_failure(ctx, call, top5_source):
            raise CheckFailure(f"hidden check {ctx.case.name}: evaluate() does not report the reference's top-1; "
                               f"the visible check vgg19_evaluate shows details")
        return f"{ctx.case.label}: pool5, softmax, top-1 and evaluate() match"
    return hidden_image
