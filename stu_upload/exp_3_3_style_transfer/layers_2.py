# coding=utf-8
"""Convolution, max pooling and flatten layers for the style-transfer lab.

Activations are NCHW arrays [N, C, H, W]; convolution weights are [Cin, K, K, Cout] and
biases [Cout] (the book's layout; MatConvNet's [K, K, Cin, Cout] is transposed when the
model is loaded). Every layer has two implementations with one interface:

* ``forward_raw`` / ``backward_raw``: the book's four nested loops (figures 3.3, 3.14,
  3.4 and 3.15), the teaching baseline;
* ``forward_speedup`` / ``backward_speedup``: the vectorised version of section 3.3.8
  (figure 3.27 gives the conv forward; its img2col matrix has one row per output
  position, [N*Hout*Wout, Cin*K*K]).

``type`` chosen in ``__init__`` binds ``forward``/``backward`` to one of them: 1 (the
default, so the book's five-argument calls in build_model) the speed-up, 0 the loops.
The loop versions store their duration in ``forward_time`` / ``backward_time`` (seconds).
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
                        # self.output[idxn, idxc, idxh, idxw] = ______
                        raise NotImplementedError("TODO in exp_3_3_style_transfer/layers_2.py: complete ConvolutionalLayer.forward_raw")
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
                        # self.d_weight[:, :, :, idxc] += ______
                        # self.d_bias[idxc] += ______
                        # bottom_diff[idxn, :, idxh*self.stride:idxh*self.stride+self.kernel_size, idxw*self.stride:idxw*self.stride+self.kernel_size] += ______
                        raise NotImplementedError("TODO in exp_3_3_style_transfer/layers_2.py: complete ConvolutionalLayer.backward_raw")
        bottom_diff = bottom_diff[:, :, self.padding:self.padding+self.input.shape[2], self.padding:self.padding+self.input.shape[3]]
        self.backward_time = time.perf_counter() - start_time
        return bottom_diff

    def forward_speedup(self, input):  # 前向传播的并行化计算
        """input: [N, Cin, H, W] -> output: [N, Cout, Hout, Wout] (figure 3.27).

        img2col holds one row per output position, [N*Hout*Wout, Cin*K*K]; one matrix
        product with the kernel reshaped to [Cin*K*K, Cout] replaces the four loops.
        """
        self.input = input  # [N, C, H, W]
        height = self.input.shape[2] + self.padding * 2
        width = self.input.shape[3] + self.padding * 2
        self.input_pad = np.zeros([self.input.shape[0], self.input.shape[1], height, width])
        self.input_pad[:, :, self.padding:self.padding+self.input.shape[2], self.padding:self.padding+self.input.shape[3]] = self.input
        self.height_out = (height - self.kernel_size) // self.stride + 1
        self.width_out = (width - self.kernel_size) // self.stride + 1
        self.weight_reshape = np.reshape(self.weight, [-1, self.channel_out])  # 对卷积核进行重排列
        self.img2col = np.zeros([self.input.shape[0]*self.height_out*self.width_out, self.channel_in*self.kernel_size*self.kernel_size])
        # 对卷积层的输入特征图进行向量化重排列
        for idxn in range(self.input.shape[0]):
            for idxh in range(self.height_out):
                for idxw in range(self.width_out):
                    self.img2col[idxn*self.height_out*self.width_out + idxh*self.width_out + idxw, :] = self.input_pad[idxn, :, idxh*self.stride:idxh*self.stride+self.kernel_size, idxw*self.stride:idxw*self.stride+self.kernel_size].reshape([-1])
        # 计算卷积层的前向传播，特征图与卷积核的内积转变为矩阵相乘，再加偏置
        output = np.dot(self.img2col, self.weight_reshape) + self.bias
        self.output = output.reshape([self.input.shape[0], self.height_out, self.width_out, -1]).transpose([0, 3, 1, 2])  # 对卷积层的输出结果进行重排列
        return self.output

    def backward_speedup(self, top_diff):  # 反向传播的并行化计算
        """top_diff: [N, Cout, Hout, Wout] -> bottom_diff: [N, Cin, H, W].

        Uses img2col [N*Hout*Wout, Cin*K*K] and weight_reshape [Cin*K*K, Cout] of
        forward_speedup (figure 3.27). The grader checks bottom_diff; d_weight
        [Cin, K, K, Cout] and d_bias [Cout] are checked on the loop version (style
        transfer never reads them).
        """
        # TODO: 改进backward函数，使得计算加速
        # img2col has one row per output position, in the order (n, h, w). Rearrange
        # top_diff the same way, to [N*Hout*Wout, Cout]; its product with the transposed
        # weight_reshape is the gradient of img2col. Add each row back onto its window
        # of the padded input (col2im) and drop the padding. (d_weight and d_bias, if
        # you want them: a matrix product and a sum.) Set self.backward_time.
        raise NotImplementedError("TODO in exp_3_3_style_transfer/layers_2.py: complete ConvolutionalLayer.backward_speedup")
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
                        # self.output[idxn, idxc, idxh, idxw] = ______
                        raise NotImplementedError("TODO in exp_3_3_style_transfer/layers_2.py: complete MaxPoolingLayer.forward_raw")
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
                        # max_index = ______
                        # bottom_diff[idxn, idxc, idxh*self.stride+max_index[0], idxw*self.stride+max_index[1]] = ______
                        raise NotImplementedError("TODO in exp_3_3_style_transfer/layers_2.py: complete MaxPoolingLayer.backward_raw")
        self.backward_time = time.perf_counter() - start_time
        return bottom_diff

    def forward_speedup(self, input):  # 前向传播的并行化计算
        """input: [N, C, H, W] -> output: [N, C, Hout, Wout], same dtype as input."""
        # TODO: 改进forward函数，使得计算加速
        # Gather every pooling window along a new last axis (reshape when the windows
        # tile the input), take max and argmax there, and remember the argmax for the
        # backward pass. Set self.forward_time.
        raise NotImplementedError("TODO in exp_3_3_style_transfer/layers_2.py: complete MaxPoolingLayer.forward_speedup")
        return self.output

    def backward_speedup(self, top_diff):  # 反向传播的并行化计算
        """top_diff: [N, C, Hout, Wout] -> bottom_diff: [N, C, H, W], dtype of the input."""
        # TODO: 改进backward函数，使得计算加速
        # Route each top_diff value to the argmax position of its window in one
        # vectorised step instead of four loops. Set self.backward_time.
        raise NotImplementedError("TODO in exp_3_3_style_transfer/layers_2.py: complete MaxPoolingLayer.backward_speedup")
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
