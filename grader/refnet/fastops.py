"""Fast kernels for the reference layers: convolution, max-pooling, ReLU gradient.

The reference solution keeps the book's loop code for students; the grader needs the
same numbers fast, so the reference layers call these functions to compute goldens.
This module is the one entry point: it checks the arguments and picks a technique.

Layouts follow the book: activations are ``[N, C, H, W]``, convolution weights are
``[Cin, K, K, Cout]``.

Which technique runs
--------------------
- 3x3/stride-1 convolution with >= 128 channels in and out, float32/float64:
  Winograd F(2x2, 3x3) (``grader.refnet.winograd``), when numba and the BLAS binding are
  available and ``AICS_FASTOPS_NO_WINOGRAD`` is not set;
- other stride-1 convolutions: accumulating BLAS GEMMs on shifted views of the padded
  input (``grader.refnet.gemm``, BLAS from ``grader.refnet.blas``), or the same geometry
  with one numpy matmul where that binding is missing or ``AICS_FASTOPS_NO_CBLAS`` is set;
- any stride: im2col and one matmul; the input gradient of a strided convolution by
  col2im (``grader.refnet.gemm``);
- max-pooling and the ReLU gradient: ``grader.refnet.pool`` (strided views, or compiled
  numba loops where the argmax has to be recorded).

See :func:`backend_info` for the path in use on this machine.
"""
from __future__ import annotations

import numpy as np

from grader.refnet import blas, gemm, pool, winograd

# The compiled kernels' numba module, or None without numba (then the argmax pooling
# runs as plain Python, so the reference layers fall back to their own numpy code).
numba = pool.numba

__all__ = ["conv2d_forward", "conv2d_backward_data", "maxpool2d_forward", "maxpool2d_forward_argmax",
           "maxpool2d_backward", "relu_backward", "warm_up", "backend_info", "numba"]


def backend_info() -> str:
    """One line naming the GEMM path in use (and Winograd's), e.g. for a benchmark's header."""
    info = blas.backend_info()
    if winograd.available():
        info += "; Winograd F(2x2,3x3) for 3x3/stride-1 layers"
    return info


# ------------------------------------------------------------------------ checks


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_conv_args(x, weight, bias, padding, stride):
    x = np.asarray(x)
    weight = np.asarray(weight)
    bias = np.asarray(bias)
    padding = _check_int("padding", padding, 0)
    stride = _check_int("stride", stride, 1)
    if x.ndim != 4:
        raise ValueError(f"conv input must be [N, Cin, H, W], got shape {x.shape} "
                         f"(weight shape {weight.shape})")
    if weight.ndim != 4 or weight.shape[1] != weight.shape[2]:
        raise ValueError(f"conv weight must be [Cin, K, K, Cout], got shape {weight.shape} "
                         f"(input shape {x.shape})")
    if x.shape[1] != weight.shape[0]:
        raise ValueError(f"channel mismatch: input shape {x.shape} has Cin={x.shape[1]} but "
                         f"weight shape {weight.shape} ([Cin, K, K, Cout]) has "
                         f"Cin={weight.shape[0]}")
    if bias.shape != (weight.shape[3],):
        raise ValueError(f"bias shape {bias.shape} does not match weight shape "
                         f"{weight.shape}: expected ({weight.shape[3]},) (one per Cout)")
    k = weight.shape[1]
    hp, wp = x.shape[2] + 2 * padding, x.shape[3] + 2 * padding
    if hp < k or wp < k:
        raise ValueError(f"kernel {k}x{k} is larger than the padded input {hp}x{wp} "
                         f"(input shape {x.shape}, padding {padding}, weight shape "
                         f"{weight.shape})")
    return x, weight, bias, padding, stride


def _check_pool_args(x, kernel_size, stride):
    kernel_size = _check_int("kernel_size", kernel_size, 1)
    stride = _check_int("stride", stride, 1)
    if x.ndim != 4:
        raise ValueError(f"max-pool input must be [N, C, H, W], got shape {x.shape}")
    if x.shape[2] < kernel_size or x.shape[3] < kernel_size:
        raise ValueError(f"pooling window {kernel_size}x{kernel_size} is larger than the "
                         f"input's H x W in shape {x.shape}")
    hout = (x.shape[2] - kernel_size) // stride + 1
    wout = (x.shape[3] - kernel_size) // stride + 1
    return kernel_size, stride, hout, wout


# ------------------------------------------------------------------- convolution


def conv2d_forward(x, weight, bias, padding: int, stride: int) -> np.ndarray:
    """Cross-correlation of a batch with a bank of filters, plus bias.

    x [N, Cin, H, W]; weight [Cin, K, K, Cout] (the book's layout); bias [Cout].
    Returns [N, Cout, Hout, Wout] with Hout = (H + 2*padding - K) // stride + 1 (same
    for W), dtype ``np.result_type(x, weight)``. Inputs may be non-contiguous views.
    The result may itself be a non-contiguous view of a slightly larger buffer (the
    discarded border columns); copy it if contiguity matters.
    """
    x, weight, bias, padding, stride = _check_conv_args(x, weight, bias, padding, stride)
    dtype = np.result_type(x, weight)
    n, cin, h, w = x.shape
    k, cout = weight.shape[1], weight.shape[3]
    hout = (h + 2 * padding - k) // stride + 1
    wout = (w + 2 * padding - k) // stride + 1
    if n == 0 or cin == 0 or cout == 0:
        # Empty batch or channels: nothing for BLAS to do (and a zero-sized leading
        # dimension would be an invalid BLAS argument). With no input channel the
        # correlation is empty and only the bias remains.
        out = np.zeros((n, cout, hout, wout), dtype)
        out += bias.astype(dtype, copy=False)[None, :, None, None]
        return out
    if winograd.applies(cin, cout, k, stride, dtype):
        return winograd.forward(x, weight, bias, padding, dtype)
    lib = blas.cblas()
    if stride == 1 and lib is not None and dtype in (np.float32, np.float64):
        return gemm.conv_shifted_gemm(x, weight, bias, padding, dtype, lib)
    if stride == 1:
        return gemm.conv_shifted_im2col(x, weight, bias, padding, dtype)
    return gemm.conv_im2col(x, weight, bias, padding, stride, dtype)


def conv2d_backward_data(top_diff, weight, padding: int, stride: int, input_shape) -> np.ndarray:
    """Gradient of :func:`conv2d_forward` w.r.t. its input.

    top_diff [N, Cout, Hout, Wout] (the gradient w.r.t. the output); weight [Cin, K, K,
    Cout]; input_shape (N, Cin, H, W), the shape of the forward input (with stride > 1
    the last rows / columns of the input may not reach any output, so H and W cannot
    be recovered from Hout and Wout). Returns [N, Cin, H, W] in
    ``np.result_type(top_diff, weight)``:

        bottom[n, c, y, x] = sum_{o, i, j, dy, dx : y + p = s*i + dy, x + p = s*j + dx}
                             weight[c, dy, dx, o] * top_diff[n, o, i, j]
    """
    top = np.asarray(top_diff)
    weight = np.asarray(weight)
    padding = _check_int("padding", padding, 0)
    stride = _check_int("stride", stride, 1)
    input_shape = tuple(int(v) for v in input_shape)
    if weight.ndim != 4 or weight.shape[1] != weight.shape[2]:
        raise ValueError(f"conv weight must be [Cin, K, K, Cout], got shape {weight.shape}")
    if len(input_shape) != 4 or input_shape[1] != weight.shape[0]:
        raise ValueError(f"input_shape must be [N, Cin, H, W] with Cin={weight.shape[0]} "
                         f"(weight shape {weight.shape}), got {input_shape}")
    n, cin, h, w = input_shape
    k, cout = weight.shape[1], weight.shape[3]
    hout = (h + 2 * padding - k) // stride + 1
    wout = (w + 2 * padding - k) // stride + 1
    if top.shape != (n, cout, hout, wout):
        raise ValueError(f"top_diff must have the forward output shape {(n, cout, hout, wout)} "
                         f"for input shape {input_shape}, weight shape {weight.shape}, padding "
                         f"{padding}, stride {stride}; got {top.shape}")
    dtype = np.result_type(top, weight)
    if n == 0 or cin == 0 or cout == 0 or hout <= 0 or wout <= 0:
        return np.zeros(input_shape, dtype)
    if stride == 1 and padding <= k - 1:
        # Full correlation of top_diff with the rotated, transposed kernel, i.e. a
        # forward convolution with padding K - 1 - padding: output H x W exactly.
        if winograd.applies(cout, cin, k, 1, dtype):
            return winograd.backward_data(top, weight, padding, dtype)
        flipped = weight[:, ::-1, ::-1, :].transpose(3, 1, 2, 0)
        return conv2d_forward(top, flipped, np.zeros(cin, dtype), k - 1 - padding, 1)
    return gemm.backward_data_col2im(top, weight, padding, stride, input_shape, dtype)


# ------------------------------------------------------------------- max-pooling


def maxpool2d_forward(x, kernel_size: int, stride: int) -> np.ndarray:
    """Max over kernel_size x kernel_size windows, no padding, partial windows dropped.

    x [N, C, H, W] -> [N, C, Hout, Wout], Hout = (H - kernel_size) // stride + 1.
    Same dtype as x; a NaN in a window gives NaN, as in the book's np.max.
    """
    x = np.asarray(x)
    kernel_size, stride, hout, wout = _check_pool_args(x, kernel_size, stride)
    return pool.window_max(x, kernel_size, stride, hout, wout)


def maxpool2d_forward_argmax(x, kernel_size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Max-pool forward that also records where each maximum came from.

    x [N, C, H, W] -> (out [N, C, Hout, Wout] in x's dtype, arg [N, C, Hout, Wout] uint8
    holding kh * kernel_size + kw of the first maximum). Needs kernel_size**2 <= 256.
    """
    x = np.ascontiguousarray(x)
    kernel_size = _check_int("kernel_size", kernel_size, 1)
    stride = _check_int("stride", stride, 1)
    if x.ndim != 4 or x.shape[2] < kernel_size or x.shape[3] < kernel_size:
        raise ValueError(f"max-pool input must be [N, C, H, W] with H, W >= {kernel_size}, got shape {x.shape}")
    if kernel_size * kernel_size > 256:
        raise ValueError(f"kernel_size {kernel_size} too large for uint8 window offsets")
    hout = (x.shape[2] - kernel_size) // stride + 1
    wout = (x.shape[3] - kernel_size) // stride + 1
    out = np.empty((x.shape[0], x.shape[1], hout, wout), dtype=x.dtype)
    arg = np.empty(out.shape, dtype=np.uint8)
    pool.argmax_kernel(x, kernel_size, stride, out, arg)
    return out, arg


def maxpool2d_backward(top_diff, arg, kernel_size: int, stride: int, input_shape) -> np.ndarray:
    """Route top_diff [N, C, Hout, Wout] to the recorded maxima: -> [N, C, H, W].

    ``arg`` is the second result of :func:`maxpool2d_forward_argmax`. Positions shared
    by overlapping windows (kernel > stride) collect every window they win.
    """
    top = np.ascontiguousarray(top_diff)
    arg = np.ascontiguousarray(arg)
    if top.shape != arg.shape:
        raise ValueError(f"max-pool backward: top_diff shape {top.shape} differs from the forward's output "
                         f"shape {arg.shape}")
    bottom = np.zeros(tuple(input_shape), dtype=top.dtype)
    pool.route_kernel(top, arg, int(kernel_size), int(stride), bottom)
    return bottom


# --------------------------------------------------------------------------- ReLU backward


def relu_backward(top_diff, x) -> np.ndarray:
    """Gradient of max(x, 0): top_diff where x > 0, else 0; a new array in top_diff's dtype."""
    top = np.ascontiguousarray(top_diff)
    x = np.ascontiguousarray(x)
    if top.shape != x.shape:
        raise ValueError(f"ReLU backward: top_diff shape {top.shape} differs from the input shape {x.shape}")
    if numba is None:
        return np.where(x > 0, top, 0).astype(top.dtype, copy=False)
    out = np.empty_like(top)
    pool.relu_backward_kernel(top.reshape(-1), x.reshape(-1), out.reshape(-1))
    return out


def warm_up() -> None:
    """Compile every numba kernel for float32 and float64 once (``cache=True`` keeps them).

    ``grader.groups`` runs this in a trusted process so that sandboxed processes start
    from a private copy of the compiled cache instead of compiling for seconds each.
    """
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((1, 128, 6, 6)).astype(dtype)
        w = rng.standard_normal((128, 3, 3, 128)).astype(dtype)
        y = conv2d_forward(x, w, np.zeros(128, dtype), 1, 1)
        conv2d_backward_data(y, w, 1, 1, x.shape)
        out, arg = maxpool2d_forward_argmax(x, 2, 2)
        maxpool2d_backward(out, arg, 2, 2, x.shape)
        relu_backward(x, x)
