# coding=utf-8
"""Convolution, max pooling and flatten layers for the style-transfer lab.

Activations are NCHW arrays [N, C, H, W]; convolution weights are [Cin, K, K, Cout] and
biases [Cout] (the book's layout; MatConvNet's [K, K, Cin, Cout] is transposed when the
model is loaded). Every layer has two implementations with one interface:

* ``forward_raw`` / ``backward_raw`` and ``forward_speedup`` / ``backward_speedup``: both
  vectorised here, over numpy's sliding-window views of the input (section 3.3.8),
  instead of the book's loops and figure 3.27's img2col.

``type`` chosen in ``__init__`` binds ``forward``/``backward`` to one of them: 1 (the
default, so the book's five-argument calls in build_model) the speed-up, 0 the loops.
Each call stores its duration in ``forward_time`` / ``backward_time`` (seconds).
"""
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


class ConvolutionalLayer(object):
    def __init__(self, kernel_size, channel_in, channel_out, padding, stride, type=1):  # 卷积层的初始化
        self.kernel_size = kernel_size
        self.channel_in = channel_in
        self.channel_out = channel_out
        self.padding = padding
        self.stride = stride
        self.forward = self.forward_raw
        self.backward = self.backward_raw
        if type == 1:  # type 设为 1 时，使用优化后的 forward 和 backward 函数
            self.forward = self.forward_speedup
            self.backward = self.backward_speedup

    def init_param(self, std=0.01):  # 参数初始化
        self.weight = np.random.normal(loc=0.0, scale=std,
                                       size=(self.channel_in, self.kernel_size, self.kernel_size, self.channel_out))
        self.bias = np.zeros([self.channel_out])

    def _describe(self):
        return 'conv layer (kernel %d, %d -> %d channels, padding %d, stride %d)' % (
            self.kernel_size, self.channel_in, self.channel_out, self.padding, self.stride)

    def _check_input(self, input):
        if input.ndim != 4 or input.shape[1] != self.channel_in:
            raise ValueError('%s: input must be [N, %d, H, W], got shape %s'
                             % (self._describe(), self.channel_in, tuple(input.shape)))

    def forward_raw(self, input):  # 前向传播的计算
        """input: [N, Cin, H, W] -> output: [N, Cout, Hout, Wout] (formulas 3.1-3.4)."""
        start_time = time.perf_counter()
        self._check_input(input)
        self.output = self._convolve(input)
        self.forward_time = time.perf_counter() - start_time
        return self.output

    def _windows(self, input):
        """input [N, Cin, H, W] -> strided view of its padded windows [N, Cin, Hout, Wout, K, K]."""
        p, k, s = self.padding, self.kernel_size, self.stride
        self.input = input
        self.input_pad = np.pad(input, ((0, 0), (0, 0), (p, p), (p, p)))
        return sliding_window_view(self.input_pad, (k, k), axis=(2, 3))[:, :, ::s, ::s]

    def _convolve(self, input):
        """input [N, Cin, H, W] -> [N, Cout, Hout, Wout]: one tensordot over all windows."""
        self.windows = self._windows(input)
        # contract Cin, K, K of the windows with the weight [Cin, K, K, Cout] -> [N, Hout, Wout, Cout]
        out = np.tensordot(self.windows, self.weight, axes=([1, 4, 5], [0, 1, 2])) + self.bias
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))

    def _gradients(self, top_diff):
        """top_diff [N, Cout, Hout, Wout] -> bottom_diff [N, Cin, H, W]; sets d_weight, d_bias."""
        k, s, p = self.kernel_size, self.stride, self.padding
        h_out, w_out = top_diff.shape[2], top_diff.shape[3]
        # contract N, Hout, Wout: windows [Cin, K, K] x top_diff [Cout] -> [Cin, K, K, Cout]
        self.d_weight = np.tensordot(self.windows, top_diff, axes=([0, 2, 3], [0, 2, 3]))
        self.d_bias = top_diff.sum(axis=(0, 2, 3))
        # gradient of every window element: [N, Hout, Wout, Cin, K, K]
        window_diff = np.tensordot(top_diff, self.weight, axes=([1], [3]))
        padded_diff = np.zeros(self.input_pad.shape, dtype=window_diff.dtype)
        for i in range(k):
            for j in range(k):
                slab = window_diff[:, :, :, :, i, j].transpose(0, 3, 1, 2)  # [N, Cin, Hout, Wout]
                padded_diff[:, :, i:i + s * h_out:s, j:j + s * w_out:s] += slab
        h, w = self.input.shape[2], self.input.shape[3]
        return padded_diff[:, :, p:p + h, p:p + w]

    def backward_raw(self, top_diff):  # 卷积层的反向传播
        """top_diff: [N, Cout, Hout, Wout] -> bottom_diff: [N, Cin, H, W] (formulas 3.5, 3.6).

        Also fills d_weight [Cin, K, K, Cout] and d_bias [Cout].
        """
        start_time = time.perf_counter()
        bottom_diff = self._gradients(top_diff)
        self.backward_time = time.perf_counter() - start_time
        return bottom_diff

    def forward_speedup(self, input):  # 前向传播的并行化计算
        """input: [N, Cin, H, W] -> output: [N, Cout, Hout, Wout], same dtype as input."""
        start_time = time.perf_counter()
        self._check_input(input)
        self.output = self._convolve(input)
        self.forward_time = time.perf_counter() - start_time
        return self.output

    def backward_speedup(self, top_diff):  # 反向传播的并行化计算
        """top_diff: [N, Cout, Hout, Wout] -> bottom_diff: [N, Cin, H, W].

        Also provides d_weight [Cin, K, K, Cout] and d_bias [Cout].
        """
        start_time = time.perf_counter()
        bottom_diff = self._gradients(top_diff)
        self.backward_time = time.perf_counter() - start_time
        return bottom_diff

    def load_param(self, weight, bias):  # 参数加载
        """weight: [Cin, K, K, Cout]; bias: [Cout] (any shape with Cout values)."""
        weight = np.asarray(weight)
        bias = np.asarray(bias)
        expected = (self.channel_in, self.kernel_size, self.kernel_size, self.channel_out)
        if weight.shape != expected:
            raise ValueError('%s: weight must have shape [Cin, K, K, Cout] = %s, got %s'
                             % (self._describe(), expected, weight.shape))
        if bias.size != self.channel_out:
            raise ValueError('%s: bias must have %d values, got shape %s'
                             % (self._describe(), self.channel_out, bias.shape))
        self.weight = weight
        self.bias = bias.reshape(self.channel_out)


class MaxPoolingLayer(object):
    def __init__(self, kernel_size, stride, type=1):  # 最大池化层的初始化
        self.kernel_size = kernel_size
        self.stride = stride
        self.forward = self.forward_raw
        self.backward = self.backward_raw
        if type == 1:  # type 设为 1 时，使用优化后的 forward 和 backward 函数
            self.forward = self.forward_speedup
            self.backward = self.backward_speedup

    def _describe(self):
        return 'max pooling layer (kernel %d, stride %d)' % (self.kernel_size, self.stride)

    def forward_raw(self, input):  # 前向传播的计算
        """input: [N, C, H, W] -> output: [N, C, Hout, Wout] (formula 3.7)."""
        start_time = time.perf_counter()
        self.output = self._pool(input)
        self.forward_time = time.perf_counter() - start_time
        return self.output

    def _pool(self, input):
        """input [N, C, H, W] -> max over each window [N, C, Hout, Wout]; keeps the argmax."""
        k, s = self.kernel_size, self.stride
        self.input = input
        windows = sliding_window_view(input, (k, k), axis=(2, 3))[:, :, ::s, ::s]  # [N, C, Hout, Wout, K, K]
        flat = windows.reshape(windows.shape[:4] + (k * k,))
        self.max_index = np.argmax(flat, axis=4)  # first maximum in row-major window order
        return np.take_along_axis(flat, self.max_index[..., None], axis=4)[..., 0]

    def _unpool(self, top_diff):
        """top_diff [N, C, Hout, Wout] -> bottom_diff [N, C, H, W], each value at its window's argmax."""
        k, s = self.kernel_size, self.stride
        n, c, h_out, w_out = top_diff.shape
        idx_n, idx_c, idx_h, idx_w = np.indices((n, c, h_out, w_out))
        rows = idx_h * s + self.max_index // k
        cols = idx_w * s + self.max_index % k
        bottom_diff = np.zeros(self.input.shape, dtype=np.result_type(top_diff, self.input))
        np.add.at(bottom_diff, (idx_n, idx_c, rows, cols), top_diff)
        return bottom_diff

    def backward_raw(self, top_diff):  # 最大池化层的反向传播
        """top_diff: [N, C, Hout, Wout] -> bottom_diff: [N, C, H, W] (formulas 3.8, 3.9)."""
        start_time = time.perf_counter()
        bottom_diff = self._unpool(top_diff)
        self.backward_time = time.perf_counter() - start_time
        return bottom_diff

    def forward_speedup(self, input):  # 前向传播的并行化计算
        """input: [N, C, H, W] -> output: [N, C, Hout, Wout], same dtype as input."""
        start_time = time.perf_counter()
        self.output = self._pool(input)
        self.forward_time = time.perf_counter() - start_time
        return self.output

    def backward_speedup(self, top_diff):  # 反向传播的并行化计算
        """top_diff: [N, C, Hout, Wout] -> bottom_diff: [N, C, H, W]."""
        start_time = time.perf_counter()
        bottom_diff = self._unpool(top_diff)
        self.backward_time = time.perf_counter() - start_time
        return bottom_diff


class FlattenLayer(object):
    def __init__(self, input_shape, output_shape):  # 层的初始化
        self.input_shape = input_shape
        self.output_shape = output_shape
        if int(np.prod(input_shape)) != int(np.prod(output_shape)):
            raise ValueError('flatten layer: input shape %s and output shape %s hold different numbers of values'
                             % (list(input_shape), list(output_shape)))

    def forward(self, input):  # 前向传播的计算
        """input: [N, C, H, W] -> output: [N] + output_shape, in MatConvNet's H, W, C order."""
        # matconvnet feature map dim: [N, height, width, channel]
        # ours feature map dim: [N, channel, height, width]
        self.input = np.transpose(input, [0, 2, 3, 1])
        self.output = self.input.reshape([self.input.shape[0]] + list(self.output_shape))
        return self.output

    def backward(self, top_diff):  # 反向传播的计算
        """top_diff: [N] + output_shape -> bottom_diff: [N, C, H, W]."""
        c, h, w = self.input_shape
        bottom_diff = np.reshape(top_diff, [top_diff.shape[0], h, w, c])
        return np.transpose(bottom_diff, [0, 3, 1, 2])
