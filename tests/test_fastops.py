"""grader.refnet.fastops against independent implementations.

The convolution oracle is scipy.signal.correlate per (input channel, output channel)
pair, summed in float64; max-pooling is checked against the book's four loops. Every
case runs on both code paths: cblas through ctypes and the pure-numpy fallback.
"""
import numpy as np
import pytest
from scipy.signal import correlate

from grader.refnet import blas, fastops, winograd


@pytest.fixture(params=["cblas", "numpy"])
def path(request, monkeypatch):
    """Run a test once with the BLAS path (when this numpy has one) and once without."""
    if request.param == "numpy":
        monkeypatch.setenv(blas.DISABLE_ENV, "1")
    else:
        monkeypatch.delenv(blas.DISABLE_ENV, raising=False)
    blas.cblas.cache_clear()
    if request.param == "cblas" and blas.cblas() is None:
        pytest.skip("no cblas found in this numpy; the numpy path is tested separately")
    yield request.param
    blas.cblas.cache_clear()


def conv_oracle(x, w, b, padding, stride):
    """x [N, Cin, H, W], w [Cin, K, K, Cout], b [Cout] -> [N, Cout, Hout, Wout], float64."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, cin = x.shape[:2]
    cout = w.shape[3]
    out = []
    for i in range(n):
        maps = []
        for o in range(cout):
            full = sum(correlate(xp[i, c], w[c, :, :, o], mode="valid") for c in range(cin))
            maps.append(full[::stride, ::stride] + b[o])
        out.append(maps)
    return np.array(out)


def pool_loops(x, k, s):
    """The book's MaxPoolingLayer.forward."""
    n, c, h, w = x.shape
    hout, wout = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((n, c, hout, wout), x.dtype)
    for a in range(n):
        for b in range(c):
            for i in range(hout):
                for j in range(wout):
                    out[a, b, i, j] = np.max(x[a, b, i * s:i * s + k, j * s:j * s + k])
    return out


# (N, Cin, H, W, K, Cout, padding, stride): odd sizes, every padding and stride the
# brief names, K 1/3/5, N > 1, Cin = 1 and Cout = 1 edges.
CONV_CASES = [
    (1, 3, 7, 9, 3, 4, 1, 1),
    (2, 5, 11, 8, 3, 6, 0, 1),
    (3, 4, 9, 13, 3, 2, 2, 1),
    (2, 3, 10, 7, 3, 5, 1, 2),
    (1, 6, 13, 11, 5, 3, 2, 1),
    (2, 2, 12, 9, 5, 4, 0, 2),
    (2, 7, 6, 5, 1, 3, 0, 1),
    (1, 4, 8, 8, 1, 5, 1, 2),
    (1, 1, 9, 9, 3, 1, 1, 1),
    (2, 3, 5, 5, 5, 2, 2, 2),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "N{}C{}H{}W{}K{}O{}p{}s{}".format(*c))
def test_conv_matches_scipy_float64(path, case):
    n, cin, h, w, k, cout, p, s = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((n, cin, h, w))
    wt = rng.standard_normal((cin, k, k, cout))
    b = rng.standard_normal(cout)
    got = fastops.conv2d_forward(x, wt, b, p, s)
    want = conv_oracle(x, wt, b, p, s)
    assert got.shape == want.shape == (n, cout, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("case", CONV_CASES[:6], ids=lambda c: "N{}C{}H{}W{}K{}O{}p{}s{}".format(*c))
def test_conv_float32_stays_float32(path, case):
    n, cin, h, w, k, cout, p, s = case
    rng = np.random.default_rng(1 + sum(case))
    x = rng.standard_normal((n, cin, h, w), dtype=np.float32)
    wt = rng.standard_normal((cin, k, k, cout), dtype=np.float32)
    b = rng.standard_normal(cout)  # float64 bias must not promote the result
    got = fastops.conv2d_forward(x, wt, b, p, s)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, conv_oracle(x, wt, b, p, s), rtol=1e-4, atol=1e-4)


def test_mixed_dtypes_follow_result_type(path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 3, 6, 6), dtype=np.float32)
    w = rng.standard_normal((3, 3, 3, 2))
    b = np.zeros(2, np.float32)
    got = fastops.conv2d_forward(x, w, b, 1, 1)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, conv_oracle(x, w, b, 1, 1), rtol=1e-11, atol=1e-11)
    got32 = fastops.conv2d_forward(x, w.astype(np.float32), b, 1, 1)
    assert got32.dtype == np.float32


def test_non_contiguous_inputs(path):
    """Transposed and sliced views, as a MatConvNet [K, K, Cin, Cout] -> [Cin, K, K, Cout]
    transpose produces, must give the same numbers as their contiguous copies."""
    rng = np.random.default_rng(3)
    x_big = rng.standard_normal((2, 10, 12, 8))
    x = x_big[:, ::2, 1:10, ::-1].transpose(0, 1, 3, 2)  # [2, 5, 8, 9], negative stride
    w_mcn = np.asfortranarray(rng.standard_normal((3, 3, 5, 4)))
    w = w_mcn.transpose(2, 0, 1, 3)
    b = rng.standard_normal(8)[::2]
    assert not x.flags.c_contiguous and not w.flags.c_contiguous
    for p, s in [(1, 1), (0, 2)]:
        got = fastops.conv2d_forward(x, w, b, p, s)
        want = fastops.conv2d_forward(*map(np.ascontiguousarray, (x, w, b)), p, s)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got, conv_oracle(x, w, b, p, s), rtol=1e-11, atol=1e-11)


def test_paths_agree_float32(monkeypatch):
    """The BLAS and numpy paths give the same float32 numbers (up to summation order)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 16, 15, 17), dtype=np.float32)
    w = rng.standard_normal((16, 3, 3, 24), dtype=np.float32)
    b = rng.standard_normal(24, dtype=np.float32)
    blas.cblas.cache_clear()
    fast = fastops.conv2d_forward(x, w, b, 1, 1)
    monkeypatch.setenv(blas.DISABLE_ENV, "1")
    blas.cblas.cache_clear()
    try:
        plain = fastops.conv2d_forward(x, w, b, 1, 1)
    finally:
        monkeypatch.delenv(blas.DISABLE_ENV)
        blas.cblas.cache_clear()
    assert fast.dtype == plain.dtype == np.float32
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast, conv_oracle(x, w, b, 1, 1), rtol=1e-4, atol=1e-4)


def test_channel_mismatch_names_both_shapes():
    x = np.zeros((1, 3, 8, 8))
    w = np.zeros((4, 3, 3, 6))
    with pytest.raises(ValueError) as err:
        fastops.conv2d_forward(x, w, np.zeros(6), 1, 1)
    msg = str(err.value)
    assert "(1, 3, 8, 8)" in msg and "(4, 3, 3, 6)" in msg and "Cin" in msg


@pytest.mark.parametrize("x_shape, w_shape, b_shape, fragment", [
    ((3, 8, 8), (3, 3, 3, 6), (6,), "[N, Cin, H, W]"),
    ((1, 3, 8, 8), (3, 3, 5, 6), (6,), "[Cin, K, K, Cout]"),
    ((1, 3, 8, 8), (3, 3, 3, 6), (5,), "bias shape (5,)"),
    ((1, 3, 2, 2), (3, 5, 5, 6), (6,), "larger than the padded input"),
])
def test_bad_shapes_are_explained(x_shape, w_shape, b_shape, fragment):
    with pytest.raises(ValueError) as err:
        fastops.conv2d_forward(np.zeros(x_shape), np.zeros(w_shape), np.zeros(b_shape), 0, 1)
    assert fragment in str(err.value)
    assert str(tuple(w_shape)) in str(err.value)


@pytest.mark.parametrize("padding, stride", [(-1, 1), (1, 0)])
def test_bad_padding_or_stride(padding, stride):
    with pytest.raises(ValueError, match="must be >="):
        fastops.conv2d_forward(np.zeros((1, 1, 4, 4)), np.zeros((1, 3, 3, 1)), np.zeros(1),
                               padding, stride)


@pytest.mark.parametrize("shape, k, s", [
    ((1, 3, 8, 8), 2, 2),
    ((2, 4, 9, 7), 2, 2),  # odd sizes: the last row and column are dropped
    ((2, 3, 11, 10), 3, 2),
    ((1, 2, 7, 9), 3, 1),
    ((3, 2, 6, 5), 1, 1),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool_matches_loops(shape, k, s, dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    got = fastops.maxpool2d_forward(x, k, s)
    want = pool_loops(x, k, s)
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # A non-contiguous view of the same values gives the same result.
    xv = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    np.testing.assert_array_equal(fastops.maxpool2d_forward(xv, k, s), want)


def test_maxpool_does_not_modify_input():
    x = np.arange(32.0).reshape(1, 2, 4, 4)
    before = x.copy()
    fastops.maxpool2d_forward(x, 2, 2)
    np.testing.assert_array_equal(x, before)


def test_maxpool_bad_input():
    with pytest.raises(ValueError, match=r"\(1, 2, 3\)"):
        fastops.maxpool2d_forward(np.zeros((1, 2, 3)), 2, 2)
    with pytest.raises(ValueError, match="larger than"):
        fastops.maxpool2d_forward(np.zeros((1, 2, 1, 4)), 2, 2)


def test_vgg_sized_layer_float32(path):
    """One mid-network VGG layer at full width (256 channels, 28x28) in float32."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 256, 28, 28), dtype=np.float32)
    w = rng.standard_normal((256, 3, 3, 32), dtype=np.float32) * np.float32(0.03)
    b = rng.standard_normal(32, dtype=np.float32)
    got = fastops.conv2d_forward(x, w, b, 1, 1)
    want = np.einsum("nchwij,cijo->nohw",
                     np.lib.stride_tricks.sliding_window_view(
                         np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1))),
                         (3, 3), axis=(2, 3)),
                     w.astype(np.float64)) + b[:, None, None]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-4)


def test_backend_info_names_the_path(path):
    info = fastops.backend_info()
    assert info.startswith("cblas") == (path == "cblas"), info


# ------------------------------------------------------------ Winograd F(2x2, 3x3)

needs_winograd = pytest.mark.skipif(not winograd.available(),
                                    reason="Winograd path needs numba and cblas")


@pytest.fixture
def small_winograd(monkeypatch):
    """Let 16-channel layers take the Winograd path, to keep the oracle cheap."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 16)


def direct_conv(x, w, b, padding, monkeypatch):
    """The shifted-GEMM path on the same inputs (Winograd switched off)."""
    monkeypatch.setenv(winograd.NO_WINOGRAD_ENV, "1")
    try:
        return np.array(fastops.conv2d_forward(x, w, b, padding, 1))
    finally:
        monkeypatch.delenv(winograd.NO_WINOGRAD_ENV)


# (N, Cin, H, W, Cout, padding): odd and even sizes, every padding, N > 1; channels at
# a lowered Winograd threshold (small_winograd) so that conv2d_forward takes that path.
WINOGRAD_CASES = [
    (1, 16, 8, 8, 16, 1),
    (2, 16, 7, 9, 20, 1),
    (3, 17, 6, 5, 16, 0),
    (2, 16, 5, 11, 18, 2),
    (1, 24, 3, 4, 16, 0),  # a single row of output tiles, odd output height
    (2, 16, 10, 3, 16, 2),
]


@needs_winograd
@pytest.mark.parametrize("case", WINOGRAD_CASES, ids=lambda c: "N{}C{}H{}W{}O{}p{}".format(*c))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_matches_direct_and_scipy(case, dtype, monkeypatch, small_winograd):
    n, cin, h, w, cout, p = case
    assert winograd.applies(cin, cout, 3, 1, np.dtype(dtype))
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((n, cin, h, w)).astype(dtype)
    wt = rng.standard_normal((cin, 3, 3, cout)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    got = fastops.conv2d_forward(x, wt, b, p, 1)
    want = conv_oracle(x, wt, b, p, 1)
    direct = direct_conv(x, wt, b, p, monkeypatch)
    assert got.dtype == dtype and got.shape == want.shape == (n, cout, h + 2 * p - 2, w + 2 * p - 2)
    scale = np.abs(want).max()
    # float32: both paths round differently but stay within a few 1e-7 of max|output|;
    # float64: exact up to rounding.
    tol = 2e-6 if dtype == np.float32 else 1e-13
    assert np.abs(got - want).max() <= tol * scale
    assert np.abs(got - direct).max() <= tol * scale


@needs_winograd
def test_winograd_float32_error_on_vgg_like_layer(monkeypatch):
    """ReLU-like input and He-scaled weights, 128 -> 128 channels at 28x28: the brief's
    bar is 1e-5 of max|output| against float32 direct; measured about 5e-7."""
    rng = np.random.default_rng(11)
    x = np.maximum(rng.standard_normal((1, 128, 28, 28), dtype=np.float32), 0)
    w = rng.standard_normal((128, 3, 3, 128), dtype=np.float32) * np.float32(np.sqrt(2 / (9 * 128)))
    b = rng.standard_normal(128, dtype=np.float32) * np.float32(0.01)
    assert winograd.applies(128, 128, 3, 1, np.dtype(np.float32))
    got = fastops.conv2d_forward(x, w, b, 1, 1)
    exact = fastops.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b, 1, 1)
    direct = direct_conv(x, w, b, 1, monkeypatch)
    scale = np.abs(exact).max()
    assert np.abs(got - exact).max() <= 2e-6 * scale
    assert np.abs(got - direct).max() <= 2e-6 * scale


@needs_winograd
def test_winograd_weight_cache_sees_in_place_changes(small_winograd):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 16, 6, 6))
    w = rng.standard_normal((16, 3, 3, 16))
    b = np.zeros(16)
    first = fastops.conv2d_forward(x, w, b, 1, 1)
    w[3, 1, 2, 5] += 1.0  # one value, in place: same array object
    second = fastops.conv2d_forward(x, w, b, 1, 1)
    assert not np.allclose(first, second)
    np.testing.assert_allclose(second, conv_oracle(x, w, b, 1, 1), rtol=1e-11, atol=1e-11)
    w[[0, 1]] = w[[1, 0]]  # a permutation keeps every sum of values
    third = fastops.conv2d_forward(x, w, b, 1, 1)
    np.testing.assert_allclose(third, conv_oracle(x, w, b, 1, 1), rtol=1e-11, atol=1e-11)


def backward_data_einsum(top, w, padding, stride, input_shape):
    """Scatter of every output gradient onto its window, in float64 (formula 3.6)."""
    n, cin, h, wd = input_shape
    k = w.shape[1]
    hout, wout = top.shape[2:]
    hp = max(h + 2 * padding, stride * (hout - 1) + k)
    wp = max(wd + 2 * padding, stride * (wout - 1) + k)
    grad = np.zeros((n, cin, hp, wp))
    contrib = np.einsum("cijo,nohw->ncijhw", np.asarray(w, np.float64), np.asarray(top, np.float64))
    for i in range(k):
        for j in range(k):
            grad[:, :, i:i + stride * (hout - 1) + 1:stride,
                 j:j + stride * (wout - 1) + 1:stride] += contrib[:, :, i, j]
    return grad[:, :, padding:padding + h, padding:padding + wd]


# (N, Cin, H, W, K, Cout, padding, stride): Winograd-sized 3x3/stride 1 cases for every
# padding, small-channel cases for the shifted path, strided and K=5 cases.
BACKWARD_CASES = [
    (2, 16, 9, 8, 3, 16, 1, 1),
    (1, 20, 6, 7, 3, 16, 0, 1),
    (2, 16, 5, 6, 3, 17, 2, 1),
    (2, 3, 7, 9, 3, 4, 1, 1),
    (1, 4, 11, 10, 3, 5, 1, 2),  # odd leftovers: the last input row gets no gradient
    (2, 3, 9, 8, 5, 2, 2, 1),
    (1, 2, 6, 6, 3, 3, 4, 1),  # padding > K - 1
    (1, 3, 8, 9, 1, 4, 0, 1),
]


@pytest.mark.parametrize("case", BACKWARD_CASES, ids=lambda c: "N{}C{}H{}W{}K{}O{}p{}s{}".format(*c))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_data_matches_einsum_and_adjoint(path, case, dtype, small_winograd):
    n, cin, h, w, k, cout, p, s = case
    rng = np.random.default_rng(100 + sum(case))
    x = rng.standard_normal((n, cin, h, w)).astype(dtype)
    wt = rng.standard_normal((cin, k, k, cout)).astype(dtype)
    y = fastops.conv2d_forward(x, wt, np.zeros(cout, dtype), p, s)
    top = rng.standard_normal(y.shape).astype(dtype)
    got = fastops.conv2d_backward_data(top, wt, p, s, x.shape)
    want = backward_data_einsum(top, wt, p, s, x.shape)
    assert got.shape == x.shape and got.dtype == dtype
    tol = 2e-6 if dtype == np.float32 else 1e-12
    assert np.abs(got - want).max() <= tol * np.abs(want).max()
    # <conv(x), top> == <x, conv^T(top)>: the backward is the adjoint of the forward.
    lhs = np.vdot(y.astype(np.float64), top.astype(np.float64))
    rhs = np.vdot(x.astype(np.float64), got.astype(np.float64))
    assert abs(lhs - rhs) <= 10 * tol * np.abs(y).sum() * np.abs(top).max()


def test_backward_data_numerical_gradient(small_winograd):
    """Central differences of sum(conv(x) * top) w.r.t. a few input pixels."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((1, 16, 5, 6))
    wt = rng.standard_normal((16, 3, 3, 16))
    b = rng.standard_normal(16)
    top = rng.standard_normal((1, 16, 5, 6))
    got = fastops.conv2d_backward_data(top, wt, 1, 1, x.shape)
    eps = 1e-6
    for idx in [(0, 0, 0, 0), (0, 7, 2, 3), (0, 15, 4, 5), (0, 3, 4, 0)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num = (np.sum(fastops.conv2d_forward(xp, wt, b, 1, 1) * top)
               - np.sum(fastops.conv2d_forward(xm, wt, b, 1, 1) * top)) / (2 * eps)
        assert abs(num - got[idx]) <= 1e-6 * max(1.0, abs(num))


def test_backward_data_bad_shapes():
    w = np.zeros((4, 3, 3, 6))
    with pytest.raises(ValueError, match="forward output shape"):
        fastops.conv2d_backward_data(np.zeros((1, 6, 5, 5)), w, 1, 1, (1, 4, 8, 8))
    with pytest.raises(ValueError, match="Cin=4"):
        fastops.conv2d_backward_data(np.zeros((1, 6, 8, 8)), w, 1, 1, (1, 3, 8, 8))


@pytest.mark.parametrize("k,s,shape", [(2, 2, (2, 3, 8, 9)), (3, 2, (1, 2, 9, 7)), (3, 3, (1, 2, 9, 7)),
                                       (2, 1, (1, 1, 5, 6))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool_argmax_and_routing_match_the_book_loops(k, s, shape, dtype):
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(dtype)
    out, arg = fastops.maxpool2d_forward_argmax(x, k, s)
    assert out.dtype == dtype and arg.dtype == np.uint8
    np.testing.assert_array_equal(out, fastops.maxpool2d_forward(x, k, s))
    top = rng.standard_normal(out.shape).astype(dtype)
    expected = np.zeros_like(x)
    for i, j, oh, ow in np.ndindex(*out.shape):
        window = x[i, j, oh * s:oh * s + k, ow * s:ow * s + k]
        kh, kw = np.unravel_index(np.argmax(window), (k, k))
        expected[i, j, oh * s + kh, ow * s + kw] += top[i, j, oh, ow]
    np.testing.assert_allclose(fastops.maxpool2d_backward(top, arg, k, s, x.shape), expected, rtol=1e-6)


def test_maxpool_argmax_takes_the_first_of_tied_maxima():
    x = np.ones((1, 1, 2, 2))
    _, arg = fastops.maxpool2d_forward_argmax(x, 2, 2)
    assert arg[0, 0, 0, 0] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_passes_gradient_where_input_positive(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 4)).astype(dtype)
    x[0, 0, 0, 0] = 0.0   # the book's ReLU has zero gradient at 0
    top = rng.standard_normal(x.shape).astype(dtype)
    got = fastops.relu_backward(top, x)
    assert got.dtype == dtype and got is not top
    np.testing.assert_array_equal(got, np.where(x > 0, top, 0))
