"""Feedback a student can act on: crash lines, diagnoses of common mistakes, the report's layout.

Unit tests build the mistakes by hand (a loop convolution written here, independent of
grader.diagnose) and fake sessions; the ``slow`` tests grade planted bugs end to end.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from grader import probe
from grader.diagnose import conv2d, diagnose, pool2d, simple_factor
from grader.kit.netloop import running
from grader.experiments import Case, Check, CheckContext, describe_failure_kind, exp_3_1_vgg, exp_3_3_style_transfer
from grader.groups import CaseOutcome
from grader.kit import goldens
from grader.kit.compare import LAYER_TOL, CheckFailure, assert_close
from grader.report import cause_of, in_tier_order, measured, status, table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gradeutil import broken_copy, checks, grade  # noqa: E402

TOL = LAYER_TOL


# --------------------------------------------------------------------------- a loop conv of the test's own

def loop_conv(x, weight, bias, pad, stride, kernel=lambda w, i, j: w[:, i, j, :]):
    """The book's loop convolution; ``kernel(weight, i, j)`` picks the [Cin, Cout] slice used at (i, j)."""
    n, cin, h, w = x.shape
    k, cout = weight.shape[1], weight.shape[3]
    padded = np.zeros((n, cin, h + 2 * pad, w + 2 * pad))
    padded[:, :, pad:pad + h, pad:pad + w] = x
    hout, wout = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    out = np.zeros((n, cout, hout, wout))
    for r in range(hout):
        for c in range(wout):
            for i in range(k):
                for j in range(k):
                    patch = padded[:, :, r * stride + i, c * stride + j]          # [N, Cin]
                    out[:, :, r, c] += patch @ kernel(weight, i, j)
    return out + bias[None, :, None, None]


def conv_case(name="conv_k3_p2_s2", seed=5, hidden=False) -> Case:
    """A visible-style 3.1 conv case (its inputs drawn from ``seed``)."""
    shape = {c[0]: c for c in exp_3_1_vgg.CONV_SHAPES}[name]
    _, k, cin, cout, pad, stride, n, h, w = shape
    rng = np.random.default_rng(seed)
    return Case(("hidden_" if hidden else "") + name, "conv_forward", "layers",
                f"ConvolutionalLayer({k}, {cin}, {cout}, padding={pad}, stride={stride}).forward on input "
                f"{[n, cin, h, w]}", dict(k=k, cin=cin, cout=cout, pad=pad, stride=stride),
                dict(input=rng.standard_normal((n, cin, h, w)), weight=rng.standard_normal((cin, k, k, cout)),
                     bias=rng.standard_normal(cout)), hidden)


def conv_args(case):
    return (case.inputs["input"], case.inputs["weight"], case.inputs["bias"], case.params["pad"],
            case.params["stride"])


# --------------------------------------------------------------------------- the recomputations are right

def test_the_recomputed_conv_is_the_golden_of_every_visible_conv_case():
    for experiment, kind in (("exp_3_1_vgg", "conv_forward"), ("exp_3_3_style_transfer", "conv_raw")):
        spec = {"exp_3_1_vgg": exp_3_1_vgg, "exp_3_3_style_transfer": exp_3_3_style_transfer}[experiment]
        stored = goldens.load(goldens.golden_path(experiment))
        cases = [c for c in spec.visible_cases() if c.kind == kind]
        assert len(cases) >= 4
        for case in cases:
            got = conv2d(*conv_args(case))
            assert_close(got, stored[case.name]["out"]["output"], case.name, TOL)
            assert_close(loop_conv(*conv_args(case)), got, case.name, TOL)


def test_the_recomputed_pool_is_the_golden_of_every_visible_pool_case():
    stored = goldens.load(goldens.golden_path("exp_3_1_vgg"))
    cases = [c for c in exp_3_1_vgg.visible_cases() if c.kind == "pool_forward"]
    assert len(cases) == 4
    for case in cases:
        got = pool2d(case.inputs["input"], case.params["k"], case.params["stride"])
        assert_close(got, stored[case.name]["out"]["output"], case.name, TOL)


# --------------------------------------------------------------------------- conv mistakes

def test_a_correct_looking_but_random_output_gets_no_hint():
    case = conv_case()
    want = conv2d(*conv_args(case))
    got = want + np.random.default_rng(1).standard_normal(want.shape)
    assert diagnose(case, "output", got, want, TOL) == ""


def test_a_transposed_kernel_is_named():
    case = conv_case()
    got = loop_conv(*conv_args(case), kernel=lambda w, i, j: w[:, j, i, :])
    hint = diagnose(case, "output", got, conv2d(*conv_args(case)), TOL)
    assert hint.startswith("looks like the kernel is transposed")


def test_a_flipped_kernel_is_named():
    case = conv_case()
    k = case.params["k"]
    got = loop_conv(*conv_args(case), kernel=lambda w, i, j: w[:, k - 1 - i, k - 1 - j, :])
    hint = diagnose(case, "output", got, conv2d(*conv_args(case)), TOL)
    assert hint.startswith("looks like the kernel is flipped (rotated 180 degrees)")


def test_a_missing_bias_is_named():
    case = conv_case()
    x, weight, bias, pad, stride = conv_args(case)
    got = loop_conv(x, weight, np.zeros_like(bias), pad, stride)
    assert diagnose(case, "output", got, conv2d(*conv_args(case)), TOL) == "looks like the bias is not added"


def test_an_ignored_stride_is_named():
    case = conv_case("conv_k3_p2_s2")
    x, weight, bias, pad, _ = conv_args(case)
    got = loop_conv(x, weight, bias, pad, 1)
    hint = diagnose(case, "output", got, conv2d(*conv_args(case)), TOL)
    assert hint == "looks like the stride is ignored (the windows move by 1, not by stride = 2)"


def test_an_ignored_padding_is_named():
    case = conv_case("conv_k3_p1_s1")
    x, weight, bias, _, stride = conv_args(case)
    got = loop_conv(x, weight, bias, 0, stride)
    hint = diagnose(case, "output", got, conv2d(*conv_args(case)), TOL)
    assert hint.startswith("looks like the padding is ignored (the input needs 1 zero rows")


def test_an_output_one_row_too_large_names_the_size_formula():
    case = conv_case("conv_k3_p2_s2")
    want = conv2d(*conv_args(case))
    got = np.zeros(want.shape[:2] + (want.shape[2] + 1, want.shape[3])) + 1.0
    hint = diagnose(case, "output", got, want, TOL)
    assert hint == "the output height is off by one (one more); the book's size is (H + 2p - k) // s + 1"


def test_a_kernel_of_size_one_is_never_called_transposed():
    case = conv_case("conv_k1_p0_s1")
    want = conv2d(*conv_args(case))
    assert "transposed" not in diagnose(case, "output", want * 1.5 + 0.1, want, TOL)


# --------------------------------------------------------------------------- pool, softmax, zeros

def pool_case(stride=2, k=2) -> Case:
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 9))
    return Case("pool_k2_s2_odd", "pool_forward", "layers", "MaxPoolingLayer(2, 2).forward on input [2, 3, 7, 9]",
                dict(k=k, stride=stride), dict(input=x))


def test_average_pooling_and_an_ignored_pool_stride_are_named():
    case = pool_case()
    x = case.inputs["input"]
    want = pool2d(x, 2, 2)
    mean = x[:, :, :6, :8].reshape(2, 3, 3, 2, 4, 2).mean(axis=(3, 5))
    assert diagnose(case, "output", mean, want, TOL).startswith("looks like average pooling")
    slid = np.maximum.reduce([x[:, :, i:i + 6, j:j + 8] for i in (0, 1) for j in (0, 1)])
    assert diagnose(case, "output", slid, want, TOL).startswith("looks like the stride is ignored")


def test_a_pool_output_one_column_short_names_the_pool_formula():
    case = pool_case()
    want = pool2d(case.inputs["input"], 2, 2)
    hint = diagnose(case, "output", want[:, :, :, :-1], want, TOL)
    assert hint == "the output width is off by one (one less); the book's size is (H - k) // s + 1"


def test_a_softmax_over_the_batch_axis_is_named():
    x = np.random.default_rng(4).standard_normal((3, 10))
    case = Case("softmax_forward", "softmax_forward", "layers", "SoftmaxLossLayer().forward", {}, dict(input=x))
    e = np.exp(x)
    want, wrong = e / e.sum(axis=1, keepdims=True), e / e.sum(axis=0, keepdims=True)
    assert diagnose(case, "output", wrong, want, TOL).startswith("looks like the softmax runs over axis 0")


def test_an_all_zero_output_is_named():
    case = conv_case()
    want = conv2d(*conv_args(case))
    assert diagnose(case, "output", np.zeros_like(want), want, TOL).startswith("the output is all zeros")


# --------------------------------------------------------------------------- ratios and signs

def loss_case(kind="content_loss", hidden=False) -> Case:
    return Case(("hidden_" if hidden else "") + kind, kind, "losses", f"{kind} on features [1, 8, 6, 5]", {}, {},
                hidden)


def test_content_loss_by_np_mean_shows_the_ratio_and_formula_3_10():
    hint = diagnose(loss_case(), "loss", np.float64(2 * 0.3466), np.float64(0.3466), TOL)
    assert hint.startswith("looks like a constant factor: got/want = 2.000")
    assert "check the 1/(2NCHW) factor of formula 3.10" in hint


def test_style_loss_without_the_4_shows_4_and_formula_3_13():
    hint = diagnose(loss_case("style_loss"), "loss", np.float64(4 * 0.087), np.float64(0.087), TOL)
    assert "got/want = 4.000" in hint and "1/(4 N C^2 H^2 W^2) factor of formula 3.13" in hint


def test_a_factor_below_one_is_shown_as_a_fraction():
    want = np.random.default_rng(2).standard_normal((1, 8, 6, 5))
    hint = diagnose(loss_case(), "bottom_diff", want / 240, want, TOL)
    assert "got/want = 0.004167 (= 1/240) for every element" in hint
    assert "1/(NCHW) factor of formula 3.11" in hint


def test_a_sign_flip_is_named_with_the_formula():
    want = np.random.default_rng(2).standard_normal((1, 8, 6, 5))
    hint = diagnose(loss_case(), "bottom_diff", -want, want, TOL)
    assert hint.startswith("looks like a sign flip: got/want = -1.000; formula 3.11 takes X - Y")


def test_an_odd_ratio_is_shown_on_visible_cases_only_and_without_a_formula():
    visible = diagnose(loss_case(), "loss", np.float64(1.372 * 0.5), np.float64(0.5), TOL)
    assert visible == "looks like a constant factor: got/want = 1.372"
    assert diagnose(loss_case(hidden=True), "loss", np.float64(1.372 * 0.5), np.float64(0.5), TOL) == ""


def test_simple_factors():
    assert [simple_factor(c) for c in (2.0, 0.25, -3.0, 1.372, 1.0)] == ["2", "1/4", "-3", "", ""]


def test_values_off_by_different_factors_have_no_ratio():
    want = np.arange(1.0, 7.0)
    got = want * np.array([2, 2, 2, 2, 2, 3.0])
    assert diagnose(loss_case(), "bottom_diff", got, want, TOL) == ""


# --------------------------------------------------------------------------- scalars in compare

def test_a_scalar_is_told_as_got_and_expected():
    with pytest.raises(CheckFailure) as info:
        assert_close(0.6931, 0.3466, "loss", TOL)
    text = str(info.value)
    assert text.startswith("loss: value differs: got 0.6931, expected 0.3466 (abs err 0.347, rel err 1)")
    assert "index ()" not in text and "1 of 1" not in text
    assert describe_failure_kind(info.value) == "wrong value"


# --------------------------------------------------------------------------- CheckContext (fake session)

class FakeSession:
    """Cases, outcomes and goldens of one experiment, held in dicts."""

    def __init__(self, cases, outputs, goldens_):
        self.cases_ = {c.name: c for c in cases}
        self.outputs, self.goldens = outputs, goldens_

    def case(self, experiment, name):
        if name not in self.cases_:
            raise KeyError(name)
        return self.cases_[name]

    def outcome(self, experiment, name):
        return CaseOutcome("ok", outputs=self.outputs[name], seconds=0.01)

    def golden(self, experiment, name):
        return self.goldens[name]


def context(session, name) -> CheckContext:
    return CheckContext(session, "exp_3_1_vgg", Check(name, 60, name, lambda ctx: "", name.startswith("hidden_")))


def test_a_visible_failure_carries_its_diagnosis():
    case = conv_case()
    want = conv2d(*conv_args(case))
    got = loop_conv(*conv_args(case), kernel=lambda w, i, j: w[:, j, i, :])
    session = FakeSession([case], {case.name: {"output": got}}, {case.name: {"output": want}})
    with pytest.raises(CheckFailure) as info:
        context(session, case.name).compare("output", TOL)
    text = str(info.value)
    assert "elements differ" in text and text.endswith("looks like the kernel is transposed (kh and kw swapped: "
                                                       "weight[:, j, i, :] used for weight[:, i, j, :])")


def hidden_pair(twin_right: bool, hint: str = ""):
    visible, hidden = conv_case(seed=5), conv_case(seed=6, hidden=True)
    hidden.hint = hint
    right = {c.name: conv2d(*conv_args(c)) for c in (visible, hidden)}
    wrong_hidden = loop_conv(*conv_args(hidden), kernel=lambda w, i, j: w[:, j, i, :])
    outputs = {visible.name: {"output": right[visible.name] if twin_right else right[visible.name] + 1.0},
               hidden.name: {"output": wrong_hidden}}
    session = FakeSession([visible, hidden], outputs, {n: {"output": v} for n, v in right.items()})
    with pytest.raises(CheckFailure) as info:
        context(session, hidden.name).compare("output", TOL)
    return str(info.value), wrong_hidden, right[hidden.name]


def numbers(text: str) -> set[str]:
    return set(re.findall(r"-?\d+\.\d+", text))


def test_a_hidden_failure_gives_the_diagnosis_but_no_data():
    text, got, want = hidden_pair(twin_right=False)
    assert text.startswith("hidden check hidden_conv_k3_p2_s2 (conv_forward): wrong values (shape right)")
    assert "looks like the kernel is transposed" in text
    assert "input: shapes [2, 3, 11, 10]" in text
    assert "the visible check conv_k3_p2_s2 shows details" in text
    assert not numbers(text) & {f"{v:.7g}" for v in np.concatenate([got.ravel(), want.ravel()])}
    assert "worst" not in text and "index" not in text


def test_a_hidden_failure_whose_twin_passes_says_what_differs_in_kind():
    text, _, _ = hidden_pair(twin_right=True)
    assert "the visible check conv_k3_p2_s2 passes; this case differs in kind: the same shapes and parameters " \
           "with fresh random values" in text
    assert "show details" not in text and "shows details" not in text
    text, _, _ = hidden_pair(twin_right=True, hint="batch N = 2, stride 2")
    assert text.endswith("this case differs in kind: batch N = 2, stride 2")


# --------------------------------------------------------------------------- crash lines (child side)

def crash_in_submission(tmp_path: Path, source: str, call):
    """Run ``call(module)`` on a module written to ``<tmp>/submission/exp_3_3_style_transfer/layers_2.py``."""
    folder = tmp_path / "submission" / "exp_3_3_style_transfer"
    folder.mkdir(parents=True)
    path = folder / "layers_2.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("planted_layers_2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        call(module)
    except BaseException as exc:  # noqa: BLE001 - the test inspects whatever was raised
        return exc, (tmp_path / "submission").resolve()
    raise AssertionError("the planted code did not raise")


PLANTED = """import numpy as np


class ConvolutionalLayer:
    def forward_raw(self, x):
        height_out = (x.shape[2] - 3) / 1 + 1
        self.output = np.zeros([x.shape[0], 4, height_out, height_out])
        return self.output
"""


def test_a_crash_names_the_students_file_line_source_and_the_notes(tmp_path):
    def call(module):
        with running("conv1_1.forward"):
            module.ConvolutionalLayer().forward_raw(np.zeros((1, 3, 6, 6)))
    exc, root = crash_in_submission(tmp_path, PLANTED, call)
    lines = probe.describe_crash(exc, root).split("\n")
    assert lines[0].startswith("TypeError: 'float' object cannot be interpreted as an integer")
    assert lines[1] == "  at layers_2.py:7 in forward_raw: self.output = np.zeros([x.shape[0], 4, height_out, height_out])"
    assert lines[2] == "  while running conv1_1.forward"


def test_a_todo_keeps_its_message_and_gets_no_frame(tmp_path):
    source = "class VGG19:\n    def build_model(self):\n        raise NotImplementedError(" \
             "'TODO in exp_3_1_vgg/vgg_cpu.py: complete VGG19.build_model')\n"
    exc, root = crash_in_submission(tmp_path, source, lambda m: m.VGG19().build_model())
    assert probe.describe_crash(exc, root) == \
        "NotImplementedError: TODO in exp_3_1_vgg/vgg_cpu.py: complete VGG19.build_model"


def test_a_crash_outside_the_submission_has_no_frame(tmp_path):
    try:
        np.zeros((2, 2)) @ np.zeros((3, 3))
    except ValueError as exc:
        assert "\n" not in probe.describe_crash(exc, (tmp_path / "submission").resolve())


def test_a_crash_message_stays_within_the_parents_cap(tmp_path):
    source = "def f():\n    " + "x = 1; " * 60 + "raise ValueError('v' * 5000)\n"

    def call(module):
        try:
            module.f()
        except ValueError as exc:
            for i in range(20):
                exc.add_note(f"note {i} " + "n" * 500)
            raise
    exc, root = crash_in_submission(tmp_path, source, call)
    text = probe.describe_crash(exc, root)
    assert len(text) <= 1000
    lines = text.split("\n")
    assert lines[1].startswith("  at layers_2.py:2 in f: x = 1;") and lines[1].endswith("...")
    assert lines[2].startswith("  note 0 nnn") and lines[-1] == "  (and 17 more notes)"


# --------------------------------------------------------------------------- the report's layout

def chk(name, tier, passed=True, message="ok", hidden=False):
    return {"name": name, "tier": tier, "passed": passed, "message": message, "seconds": 0.5, "hidden": hidden}


def report_doc(checks_: list[dict]) -> dict:
    return {"total": 0, "max_total": 100, "seconds": 1.0, "submission": "/tmp/s",
            "weights": {"kind": "synthetic", "sha256": "ab" * 32}, "hidden_checks": {"enabled": False},
            "isolation": {"privilege_drop": True},
            "experiments": [{"id": "exp_3_1_vgg", "score": 0, "max_score": 100, "seconds": 1.0, "notes": [],
                             "error": "", "checks": checks_}]}


TODO = "NotImplementedError: TODO in exp_3_1_vgg/layers_2.py: complete ConvolutionalLayer.forward"


def test_checks_are_shown_in_tier_order_stable_within_a_tier():
    rows = [chk("net", 100), chk("a", 60), chk("pool5", 80), chk("b", 60), chk("top1", 100)]
    assert [c["name"] for c in in_tier_order(rows)] == ["a", "b", "pool5", "net", "top1"]
    text = table(report_doc(rows))
    assert [text.index(f"  {n}") for n in ("a", "b", "pool5", "net", "top1")] == \
        sorted(text.index(f"  {n}") for n in ("a", "b", "pool5", "net", "top1"))


def test_a_shared_cause_is_printed_once():
    rows = [chk("conv_a", 60, False, f"Conv on input [1, 2]: {TODO}"),
            chk("conv_b", 60, False, f"Conv on input [3, 4]: {TODO}"),
            chk("pool_a", 60, False, "Pool on input [1]: NotImplementedError: TODO in x.py: complete Pool.forward")]
    lines = table(report_doc(rows), width=200).splitlines()
    assert sum(TODO.split(": ", 1)[1] in line for line in lines) == 1
    assert "    60  FAIL        0.50  conv_b  same cause as conv_a (NotImplementedError)" in lines
    assert any("complete Pool.forward" in line for line in lines)


def test_different_crash_lines_are_not_folded():
    crash = "TypeError: bad\n  at layers_2.py:{} in forward: x = 1"
    rows = [chk("a", 60, False, "A: " + crash.format(5)), chk("b", 60, False, "B: " + crash.format(6))]
    text = table(report_doc(rows))
    assert "same cause" not in text and "layers_2.py:5" in text and "layers_2.py:6" in text
    assert cause_of("A: 3 of 9 elements differ; worst element at index (0,)") == ""


def test_a_crash_frame_wraps_under_its_own_indent():
    crash = "TypeError: bad\n  at layers_2.py:84 in forward_raw: " + "self.output = np.zeros(x) " * 6
    lines = table(report_doc([chk("a", 60, False, "A: " + crash)]), width=70).splitlines()
    at = next(i for i, line in enumerate(lines) if "at layers_2.py:84" in line)
    assert lines[at].startswith(" " * 12 + "at ") and re.match(" {14}\\S", lines[at + 1])
    assert all(len(line) <= 70 for line in lines[at:at + 3])


def test_skipped_checks_show_as_skip():
    rows = [chk("a", 60, False, "wrong"), chk("pool5", 80, False, "skipped: tier 60 failed"),
            chk("top1", 100, False, "not run (--quick)")]
    assert [status(c) for c in rows] == ["FAIL", "SKIP", "SKIP"]
    lines = table(report_doc(rows)).splitlines()
    assert "    80  SKIP        0.00  pool5  skipped: tier 60 failed".replace("0.00", "0.50") in lines
    assert "   100  SKIP        0.50  top1  not run (--quick)" in lines


SPEED = ("timed by the grader: conv forward raw 4.036 s (3.900 s CPU), speedup 0.0349 s (best of 3), ratio 111.7x; "
         "pool forward raw 0.261 s, speedup 0.0080 s, ratio 32.5x; forward_speedup on the grader's timed input: "
         "matches, shape (1, 256, 24, 40), max abs err 6.22e-15")


def test_a_pass_shows_its_measured_numbers():
    assert measured(SPEED) == "conv 4.036 s -> 0.0349 s (111.7x), pool 0.261 s -> 0.0080 s (32.5x), " \
                              "max abs err 6.22e-15"
    assert measured("top-1 class id 584 (p = 0.2110) matches the reference") == "top-1 class id 584 (p = 0.2110)"
    two = "x [a]: matches, shape (2,), max abs err 1e-15; x [b]: matches, shape (2,), max abs err 3e-12 in 0.1 s; " \
          "backward_time 0.0011 s, forward_time 0.0007 s"
    assert measured(two) == "backward_time 0.0011 s, forward_time 0.0007 s, max abs err 3e-12"
    lines = table(report_doc([chk("speed_test", 100, True, SPEED), chk("top1", 100, True,
                                                                      "top-1 class id 584 (p = 0.2110) matches")]))
    lines = lines.splitlines()
    i = lines.index("   100  PASS        0.50  speed_test")
    assert lines[i + 1] == " " * 10 + measured(SPEED)
    assert "   100  PASS        0.50  top1  top-1 class id 584 (p = 0.2110)" in lines


# --------------------------------------------------------------------------- end to end (planted bugs)

CONV_OUT_SIZE = [("        height_out = (height - self.kernel_size) // self.stride + 1\n"
                  "        width_out = (width - self.kernel_size) // self.stride + 1\n"
                  "        self.output = np.zeros([self.input.shape[0], self.channel_out",
                  "        height_out = (height - self.kernel_size) / self.stride + 1\n"
                  "        width_out = (width - self.kernel_size) / self.stride + 1\n"
                  "        self.output = np.zeros([self.input.shape[0], self.channel_out")]
LOSSES = [("loss = np.sum(np.square(diff)) / (2.0 * diff.size)", "loss = np.mean(np.square(diff))"),
          ("/ (4.0 * self.div)", "/ (self.div)")]


@pytest.mark.slow
def test_planted_bugs_of_3_3_are_told_where_and_why(tmp_path):
    sub = broken_copy(tmp_path, "exp_3_3_style_transfer", {"layers_2.py": CONV_OUT_SIZE, "layers_3.py": LOSSES})
    doc = grade(sub, tmp_path, "exp_3_3_style_transfer", "--visible-only")
    by = checks(doc)
    crash = by["conv_k3_p1_s1_raw"]["message"]
    assert "TypeError: 'float' object cannot be interpreted as an integer" in crash
    assert re.search(r"\n  at layers_2\.py:\d+ in forward_raw: self\.output = np\.zeros\(\[", crash)
    assert "looks like a constant factor: got/want = 2.000" in by["content_loss"]["message"]
    assert "1/(2NCHW) factor of formula 3.10" in by["content_loss"]["message"]
    assert "got/want = 4.000" in by["style_loss"]["message"]
    out = doc["_stdout"]
    assert out.count("in forward_raw: self.output = np.zeros") == 1
    assert "conv_k3_p0_s2_n2_raw  same cause as conv_k3_p1_s1_raw (TypeError)" in out
    # The same real report in Chinese: the phrases translated, every number kept.
    english, chinese = table(doc, width=10_000), table(doc, width=10_000, lang="zh")
    for phrase in ("位置 layers_2.py 第", "疑似差一个常数因子：got/want = 2.000", "请检查公式 3.10 中的 1/(2NCHW) 系数",
                   "与 conv_k3_p1_s1_raw 原因相同 (TypeError)", "标准答案", "失败", "通过"):
        assert phrase in chinese, phrase
    number = re.compile(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?")
    assert Counter(number.findall(chinese)) == Counter(number.findall(english))


@pytest.mark.slow
@pytest.mark.parametrize("edit, words", [
    (("out = np.tensordot(windows, self.weight,", "out = np.tensordot(windows, self.weight.transpose(0, 2, 1, 3),"),
     "looks like the kernel is transposed"),
    (("[:, :, ::s, ::s]\n        # contract", "\n        # contract"),
     "looks like the stride is ignored (the windows move by 1, not by stride = 2)"),
])
def test_planted_conv_bugs_of_3_1_are_named(tmp_path, edit, words):
    sub = broken_copy(tmp_path, "exp_3_1_vgg", {"layers_2.py": [edit]})
    doc = grade(sub, tmp_path, "exp_3_1_vgg", "--visible-only")
    named = [c["name"] for c in doc["experiments"][0]["checks"] if words in c["message"]]
    assert "conv_k3_p2_s2" in named
    assert all(c["passed"] for c in doc["experiments"][0]["checks"] if c["name"].startswith("pool_"))


@pytest.mark.slow
def test_the_pristine_skeleton_prints_each_todo_once(tmp_path):
    from grader.kit.paths import STU_UPLOAD_DIR
    doc = grade(STU_UPLOAD_DIR, tmp_path, "exp_3_1_vgg", "--visible-only")
    out = doc["_stdout"]
    todos = re.findall(r"complete (\w+\.\w+)", out.replace("\n          ", " "))
    assert todos and len(todos) == len(set(todos))
    assert "complete ConvolutionalLayer.forward" in out.replace("\n          ", " ")
    assert out.count("same cause as conv_k3_p1_s1 (NotImplementedError)") == 5
