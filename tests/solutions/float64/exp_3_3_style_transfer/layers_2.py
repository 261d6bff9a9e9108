# coding=utf-8
"""Convolution, max pooling and flatten layers for the style-transfer lab.

Activations are NCHW arrays [N, C, H, W]; convolution weights are [Cin, K, K, Cout] and
biases [Cout] (the book's layout; MatConvNet's [K, K, Cin, Cout] is transposed when the
model is loaded). Every layer has two implementations with one interface:

* ``forward_raw`` / ``backward_raw``: the book's four nested loops (figures 3.3, 3.14,
  3.4 and 3.15), the teaching baseline;
* ``forward_speedup`` / ``backward_speedup``: the vectorised version of section 3.3.8.

``type`` chosen in ``__init__`` binds ``forward``/``backward`` to one of them (1: fast).
Each call stores its duration in ``forward_time`` / ``backward_time`` (seconds).
"""
import time

import numpy as np


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
        self.input = input  # [N, C, H, W]
        height = self.input.shape[2] + self.padding * 2
        width = self.input.shape[3] + self.padding * 2
        self.input_pad = np.zeros([self.input.shape[0], self.input.shape[1], height, width])
        self.input_pad[:, :, self.padding:self.padding+self.input.shape[2], self.padding:self.padding+self.input.shape[3]] = self.input
        height_out = (height - self.kernel_size) // self.stride + 1
        width_out = (width - self.kernel_size) // self.stride + 1
        self.output = np.zeros([self.input.shape[0], self.channel_out, height_out, width_out])
        for idxn in range(self.input.shape[0]):
            for idxc in range(self.channel_out):
                for idxh in range(height_out):
                    for idxw in range(width_out):
                        # TODO: 计算卷积层的前向传播，特征图与卷积核的内积再加偏置
                        hs = idxh * self.stride
                        ws = idxw * self.stride
                        self.output[idxn, idxc, idxh, idxw] = np.sum(
                            self.weight[:, :, :, idxc]
                            * self.input_pad[idxn, :, hs:hs + self.kernel_size, ws:ws + self.kernel_size]
                        ) + self.bias[idxc]
        self.forward_time = time.perf_counter() - start_time
        return self.output

    def backward_raw(self, top_diff):  # 卷积层的反向传播
        """top_diff: [N, Cout, Hout, Wout] -> bottom_diff: [N, Cin, H, W] (formulas 3.5, 3.6).

        Also fills d_weight [Cin, K, K, Cout] and d_bias [Cout].
        """
        start_time = time.perf_counter()
        self.d_weight = np.zeros(self.weight.shape)
        self.d_bias = np.zeros(self.bias.shape)
        bottom_diff = np.zeros(self.input_pad.shape)
        for idxn in range(top_diff.shape[0]):
            for idxc in range(top_diff.shape[1]):
                for idxh in range(top_diff.shape[2]):
                    for idxw in range(top_diff.shape[3]):
                        # TODO: 计算卷积层的反向传播，权重、偏置的梯度和本层损失
                        hs = idxh * self.stride
                        ws = idxw * self.stride
                        grad = top_diff[idxn, idxc, idxh, idxw]
                        self.d_weight[:, :, :, idxc] += grad * self.input_pad[
                            idxn, :, hs:hs + self.kernel_size, ws:ws + self.kernel_size]
                        self.d_bias[idxc] += grad
                        bottom_diff[idxn, :, hs:hs + self.kernel_size, ws:ws + self.kernel_size] += \
                            grad * self.weight[:, :, :, idxc]
        bottom_diff = bottom_diff[:, :, self.padding:self.padding+self.input.shape[2], self.padding:self.padding+self.input.shape[3]]
        self.backward_time = time.perf_counter() - start_time
        return bottom_diff

    def forward_speedup(self, input):  # 前向传播的并行化计算
        """input: [N, Cin, H, W] -> output: [N, Cout, Hout, Wout], float64.

        img2col built one kernel offset at a time: cols[n, c, kh, kw, i, j] is the padded
        input at row kh + s*i, column kw + s*j; one matrix product per image.
        """
        start_time = time.perf_counter()
        self._check_input(input)
        self.input = np.asarray(input, dtype=np.float64)
        k, s, p = self.kernel_size, self.stride, self.padding
        n, c, h, w = self.input.shape
        self.input_pad = np.pad(self.input, ((0, 0), (0, 0), (p, p), (p, p)))
        self.height_out = (h + 2 * p - k) // s + 1
        self.width_out = (w + 2 * p - k) // s + 1
        cols = np.empty((n, c, k, k, self.height_out, self.width_out), dtype=np.float64)
        for kh in range(k):
            for kw in range(k):
                cols[:, :, kh, kw] = self.input_pad[:, :, kh:kh + s * self.height_out:s, kw:kw + s * self.width_out:s]
        self.cols = cols.reshape(n, c * k * k, self.height_out * self.width_out)  # [N, Cin*K*K, Hout*Wout]
        self.weight_matrix = np.asarray(self.weight, dtype=np.float64).reshape(c * k * k, self.channel_out)
        output = np.matmul(self.weight_matrix.T, self.cols)  # [N, Cout, Hout*Wout]
        output += np.asarray(self.bias, dtype=np.float64).reshape(-1, 1)
        self.output = output.reshape(n, self.channel_out, self.height_out, self.width_out)
        self.forward_time = time.perf_counter() - start_time
        return self.output

    def backward_speedup(self, top_diff):  # 反向传播的并行化计算
        """top_diff: [N, Cout, Hout, Wout] -> bottom_diff: [N, Cin, H, W], float64.

        Also provides d_weight [Cin, K, K, Cout] and d_bias [Cout].
        """
        start_time = time.perf_counter()
        k, s, p = self.kernel_size, self.stride, self.padding
        n, c, h, w = self.input.shape
        top = np.asarray(top_diff, dtype=np.float64).reshape(n, self.channel_out, -1)  # [N, Cout, Hout*Wout]
        self.d_weight = np.einsum('nkp,nop->ko', self.cols, top).reshape(self.weight.shape)
        self.d_bias = top.sum(axis=(0, 2))
        cols_diff = np.matmul(self.weight_matrix, top).reshape(n, c, k, k, self.height_out, self.width_out)
        padded_diff = np.zeros(self.input_pad.shape, dtype=np.float64)
        for kh in range(k):
            for kw in range(k):
                padded_diff[:, :, kh:kh + s * self.height_out:s, kw:kw + s * self.width_out:s] += cols_diff[:, :, kh, kw]
        bottom_diff = padded_diff[:, :, p:p + h, p:p + w]
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
        self.input = input  # [N, C, H, W]
        self.max_index = np.zeros(self.input.shape)
        height_out = (self.input.shape[2] - self.kernel_size) // self.stride + 1
        width_out = (self.input.shape[3] - self.kernel_size) // self.stride + 1
        self.output = np.zeros([self.input.shape[0], self.input.shape[1], height_out, width_out])
        for idxn in range(self.input.shape[0]):
            for idxc in range(self.input.shape[1]):
                for idxh in range(height_out):
                    for idxw in range(width_out):
                        # TODO: 计算最大池化层的前向传播，取池化窗口内的最大值
                        hs = idxh * self.stride
                        ws = idxw * self.stride
                        self.output[idxn, idxc, idxh, idxw] = np.max(
                            self.input[idxn, idxc, hs:hs + self.kernel_size, ws:ws + self.kernel_size])
        self.forward_time = time.perf_counter() - start_time
        return self.output

    def backward_raw(self, top_diff):  # 最大池化层的反向传播
        """top_diff: [N, C, Hout, Wout] -> bottom_diff: [N, C, H, W] (formulas 3.8, 3.9)."""
        start_time = time.perf_counter()
        bottom_diff = np.zeros(self.input.shape)
        for idxn in range(top_diff.shape[0]):
            for idxc in range(top_diff.shape[1]):
                for idxh in range(top_diff.shape[2]):
                    for idxw in range(top_diff.shape[3]):
                        # TODO: 最大池化层的反向传播，计算池化窗口中最大值位置，并传递损失
                        hs = idxh * self.stride
                        ws = idxw * self.stride
                        window = self.input[idxn, idxc, hs:hs + self.kernel_size, ws:ws + self.kernel_size]
                        max_index = np.unravel_index(np.argmax(window), window.shape)
                        bottom_diff[idxn, idxc, idxh*self.stride+max_index[0], idxw*self.stride+max_index[1]] = \
                            top_diff[idxn, idxc, idxh, idxw]
        self.backward_time = time.perf_counter() - start_time
        return bottom_diff

    def forward_speedup(self, input):  # 前向传播的并行化计算
        """input: [N, C, H, W] -> output: [N, C, Hout, Wout], float64 (a running maximum over kernel offsets)."""
        start_time = time.perf_counter()
        self.input = np.asarray(input, dtype=np.float64)
        k, s = self.kernel_size, self.stride
        n, c, h, w = self.input.shape
        height_out = (h - k) // s + 1
        width_out = (w - k) // s + 1
        self.output = np.full((n, c, height_out, width_out), -np.inf)
        self.max_index = np.zeros((n, c, height_out, width_out), dtype=np.int64)
        for kh in range(k):
            for kw in range(k):
                candidate = self.input[:, :, kh:kh + s * height_out:s, kw:kw + s * width_out:s]
                larger = candidate > self.output  # strict: the first maximum wins, like np.argmax
                self.output[larger] = candidate[larger]
                self.max_index[larger] = kh * k + kw
        self.forward_time = time.perf_counter() - start_time
        return self.output

    def backward_speedup(self, top_diff):  # 反向传播的并行化计算
        """top_diff: [N, C, Hout, Wout] -> bottom_diff: [N, C, H, W], float64."""
        start_time = time.perf_counter()
        k, s = self.kernel_size, self.stride
        height_out, width_out = self.max_index.shape[2:]
        top = np.asarray(top_diff, dtype=np.float64)
        bottom_diff = np.zeros(self.input.shape, dtype=np.float64)
        for kh in range(k):
            for kw in range(k):
                routed = np.where(self.max_index == kh * k + kw, top, 0.0)
                bottom_diff[:, :, kh:kh + s * height_out:s, kw:kw + s * width_out:s] += routed
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
