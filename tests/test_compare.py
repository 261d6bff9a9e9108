"""grader.kit.compare on small hand-made arrays: coercion, shapes, the tolerance rule, diagnosis."""
from __future__ import annotations

import numpy as np
import pytest

from grader.drivers import fingerprint
from grader.kit.compare import (LAYER_TOL, NETWORK_TOL, SOFTMAX_TOL, CheckFailure, Tolerance, assert_close, coerce,
                                first_divergent_layer)

# Powers of two, so every limit below is exact in float64.
TOL = Tolerance(rtol=0.25, atol_scale=0.125)


# --------------------------------------------------------------------------- Tolerance


def test_tolerance_describes_its_rule():
    assert TOL.describe() == "|got-want| <= 0.125*max|want| + 0.25*|want|"
    assert Tolerance(rtol=1e-4, atol_scale=1e-3).describe() == "|got-want| <= 0.001*max|want| + 0.0001*|want|"


def test_tolerance_is_frozen():
    with pytest.raises(AttributeError):
        TOL.rtol = 1.0


def test_documented_tolerances():
    # README, "Tolerances": one layer 1e-4/1e-4, network outputs 1e-3/1e-3.
    assert (LAYER_TOL.atol_scale, LAYER_TOL.rtol) == (1e-4, 1e-4)
    assert (NETWORK_TOL.atol_scale, NETWORK_TOL.rtol) == (1e-3, 1e-3)
    assert (SOFTMAX_TOL.atol_scale, SOFTMAX_TOL.rtol) == (1e-3, 1e-3)


# --------------------------------------------------------------------------- coerce


def test_check_failure_is_an_assertion_error():
    assert issubclass(CheckFailure, AssertionError)


def test_coerce_turns_lists_and_ints_into_float64():
    arr = coerce([[1, 2], [3, 4]], "conv1")
    assert arr.dtype == np.float64 and arr.shape == (2, 2)
    assert arr.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert coerce(np.float32(0.5), "x").dtype == np.float64


def test_coerce_none_says_the_method_forgot_to_return():
    with pytest.raises(CheckFailure, match=r"^conv1: got None \(did the method forget to return its result\?\)"):
        coerce(None, "conv1")


@pytest.mark.parametrize("value, type_name", [("abc", "str"), ({"a": 1}, "dict"), ([[1, 2], [3]], "list")])
def test_coerce_non_numeric_names_the_type(value, type_name):
    with pytest.raises(CheckFailure, match=rf"^fc6: output of type {type_name} is not a numeric array"):
        coerce(value, "fc6")


# --------------------------------------------------------------------------- assert_close: shapes, non-finite


def test_shape_mismatch_names_both_shapes_and_hints_at_a_transpose():
    with pytest.raises(CheckFailure) as info:
        assert_close(np.zeros((2, 3)), np.zeros((3, 2)), "pool1 case 0", TOL)
    msg = str(info.value)
    assert msg.startswith("pool1 case 0: output shape (2, 3) but expected (3, 2)")
    assert "same number of elements" in msg


def test_shape_mismatch_of_other_size_has_no_transpose_hint():
    with pytest.raises(CheckFailure) as info:
        assert_close(np.zeros((1, 4)), np.zeros((1, 5)), "fc8", TOL)
    assert str(info.value) == "fc8: output shape (1, 4) but expected (1, 5)"


def test_shape_is_checked_before_values():
    # An empty golden matches only an empty output.
    with pytest.raises(CheckFailure, match=r"output shape \(1,\) but expected \(0,\)"):
        assert_close([1.0], np.zeros(0), "x", TOL)
    assert assert_close(np.zeros((0, 3)), np.zeros((0, 3)), "x", TOL) == "x: empty output matches"


@pytest.mark.parametrize("bad, shown", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite_values_are_reported_with_their_index(bad, shown):
    got = np.ones((2, 3))
    got[1, 2] = bad
    got_before = got.copy()
    with pytest.raises(CheckFailure) as info:
        assert_close(got, np.ones((2, 3)), "relu3", TOL)
    assert str(info.value) == f"relu3: output has non-finite values (first at index (1, 2): {shown})"
    np.testing.assert_array_equal(got, got_before)


def test_non_finite_in_the_golden_position_still_fails_even_if_equal():
    # NaN == NaN would be a pass under a naive comparison; the grader refuses it.
    with pytest.raises(CheckFailure, match="non-finite"):
        assert_close([np.nan], [np.nan], "x", TOL)


# --------------------------------------------------------------------------- assert_close: the rule


def test_error_exactly_at_the_limit_passes_and_just_above_fails():
    want = np.array([4.0, -2.0])
    # limit = 0.125*4 + 0.25*|want| = [1.5, 1.0]
    at_limit = np.array([4.0 + 1.5, -2.0 - 1.0])
    assert assert_close(at_limit, want, "x", TOL).startswith("x: matches, shape (2,)")
    above = at_limit.copy()
    above[1] = np.nextafter(above[1], -np.inf)
    with pytest.raises(CheckFailure, match=r"1 of 2 elements differ"):
        assert_close(above, want, "x", TOL)


def test_absolute_part_scales_with_max_want():
    # For want = 0 only the absolute part applies, and it is atol_scale * max|want| (= 0.125 * 8).
    want = np.array([8.0, 0.0])
    assert assert_close([8.0, 1.0], want, "x", TOL)
    with pytest.raises(CheckFailure):
        assert_close([8.0, 1.0 + 1e-9], want, "x", TOL)
    # The same absolute error on a smaller output is too much.
    with pytest.raises(CheckFailure):
        assert_close([4.0, 1.0], [4.0, 0.0], "x", TOL)


def test_relative_part_follows_each_element():
    want = np.array([100.0, 1.0])
    tol = Tolerance(rtol=0.5, atol_scale=0.0)
    assert assert_close([149.0, 1.49], want, "x", tol)
    with pytest.raises(CheckFailure):
        assert_close([149.0, 1.51], want, "x", tol)


def test_all_zero_golden_needs_an_exact_match():
    assert assert_close(np.zeros(3), np.zeros(3), "x", TOL)
    with pytest.raises(CheckFailure):
        assert_close([0.0, 1e-300, 0.0], np.zeros(3), "x", TOL)


def test_scalars_compare_as_zero_dimensional_arrays():
    assert assert_close(2.0, 2.0, "loss", TOL) == "loss: matches, shape (), max abs err 0"
    with pytest.raises(CheckFailure) as info:
        assert_close(3.0, 2.0, "loss", TOL)
    msg = str(info.value)
    # One number is told as one number: no element count, no index.
    assert msg.startswith("loss: value differs: got 3, expected 2 (abs err 1, rel err 0.5); tolerance ")
    assert "elements differ" not in msg and "index" not in msg
    with pytest.raises(CheckFailure, match=r"^loss: value differs: got 0\.6931, expected 0\.3466 "):
        assert_close([0.6931], [0.3466], "loss", TOL)
    with pytest.raises(CheckFailure, match=r"output shape \(1,\) but expected \(\)"):
        assert_close([2.0], 2.0, "loss", TOL)


def test_match_summary_reports_the_largest_error():
    out = assert_close([1.0, 2.0 + 2**-10], [1.0, 2.0], "conv1_1", TOL)
    assert out == "conv1_1: matches, shape (2,), max abs err 0.000977"


def test_worst_element_is_the_one_furthest_over_its_limit():
    # Element 0 has the largest absolute error but is within its (relative) limit;
    # element 1 is smaller in absolute terms yet the only one out of tolerance.
    tol = Tolerance(rtol=0.1, atol_scale=0.0)
    got, want = np.array([[1050.0, 2.0]]), np.array([[1000.0, 1.0]])
    with pytest.raises(CheckFailure) as info:
        assert_close(got, want, "fc7 case 3", tol)
    msg = str(info.value)
    assert msg.startswith("fc7 case 3: 1 of 2 elements differ; ")
    assert "worst element at index (0, 1): got 2, want 1 (abs err 1, rel err 1)" in msg
    assert msg.endswith("tolerance |got-want| <= 0*max|want| + 0.1*|want| with max|want| = 1000")


def test_failure_counts_every_element_out_of_tolerance():
    want = np.arange(1.0, 11.0)
    got = want.copy()
    got[[2, 5, 7]] += 100.0
    with pytest.raises(CheckFailure, match=r"3 of 10 elements differ"):
        assert_close(got, want, "x", LAYER_TOL)


def test_rel_err_of_a_zero_want_is_finite():
    with pytest.raises(CheckFailure) as info:
        assert_close([1.0, 5.0], [1.0, 0.0], "x", Tolerance(rtol=0.0, atol_scale=0.0))
    assert "worst element at index (1,): got 5, want 0 (abs err 5, rel err 5e+300)" in str(info.value)


def test_compare_ignores_the_submission_dtype():
    want = np.linspace(-1, 1, 12).reshape(3, 4)
    assert assert_close(want.astype(np.float32), want, "x", LAYER_TOL)
    assert assert_close(want.tolist(), want, "x", LAYER_TOL)


# --------------------------------------------------------------------------- first_divergent_layer


def network(values: dict) -> dict:
    """Fingerprints (``sample/<layer>``, ``shape/<layer>``) of each layer's array, in order."""
    out: dict = {}
    for name, arr in values.items():
        fingerprint(out, name, arr)
    return out


def layers(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"conv1_1": rng.standard_normal((1, 4, 6, 6)), "relu1_1": rng.random((1, 4, 6, 6)),
            "pool1": rng.standard_normal((1, 4, 3, 3)), "fc8": rng.standard_normal((1, 10))}


def test_fingerprint_layout():
    fp = network({"conv1_1": np.arange(24.0).reshape(2, 3, 4)})
    assert set(fp) == {"sample/conv1_1", "shape/conv1_1"}
    assert fp["shape/conv1_1"].tolist() == [2.0, 3.0, 4.0]
    assert fp["sample/conv1_1"].size == 24   # fewer elements than the sample size: all of them


def test_identical_networks_have_no_divergent_layer():
    golden = network(layers())
    assert first_divergent_layer(network(layers()), golden, NETWORK_TOL) == ""


def test_first_divergent_layer_is_the_first_in_golden_order():
    want = layers()
    got = {k: v.copy() for k, v in want.items()}
    got["relu1_1"] += 1.0
    got["fc8"] *= -1.0
    assert first_divergent_layer(network(got), network(want), NETWORK_TOL) == "first layer that differs: relu1_1"
    # The outputs' own order does not matter, only the golden's.
    reordered = dict(reversed(list(network(got).items())))
    assert first_divergent_layer(reordered, network(want), NETWORK_TOL) == "first layer that differs: relu1_1"


def test_differences_within_tolerance_do_not_count():
    want = layers()
    got = {k: v * (1 + 1e-5) for k, v in want.items()}
    assert first_divergent_layer(network(got), network(want), NETWORK_TOL) == ""
    got["pool1"] = want["pool1"] * (1 + 1e-2)
    assert first_divergent_layer(network(got), network(want), NETWORK_TOL) == "first layer that differs: pool1"


def test_a_layer_missing_from_the_outputs_is_named():
    want = layers()
    got = dict(want)
    del got["pool1"]
    got["fc8"] = got["fc8"] + 10.0
    assert (first_divergent_layer(network(got), network(want), NETWORK_TOL)
            == "first layer that differs: pool1 (no layer of that name)")


def test_a_sample_without_its_shape_counts_as_missing():
    fp_got, fp_want = network(layers()), network(layers())
    del fp_got["shape/conv1_1"]
    assert first_divergent_layer(fp_got, fp_want, NETWORK_TOL) == "first layer that differs: conv1_1 (no layer of that name)"


def test_a_layer_of_the_wrong_shape_names_both_shapes():
    want = layers()
    got = dict(want)
    got["pool1"] = want["pool1"].transpose(0, 2, 3, 1)   # NHWC where NCHW is wanted
    assert (first_divergent_layer(network(got), network(want), NETWORK_TOL)
            == "first layer that differs: pool1 (output shape (1, 3, 3, 4), expected (1, 4, 3, 3))")


def test_extra_layers_in_the_outputs_are_ignored():
    want = layers()
    got = dict(want, extra=np.ones(3))
    assert first_divergent_layer(network(got), network(want), NETWORK_TOL) == ""
