# coding=utf-8
"""A student-style vectorised layers_2.py for experiment 3.1 (numpy only).

The kit's tests use it as a correct, fast solution that owes nothing to the kit's own
code: convolution as one tensordot over sliding windows, max pooling as a max over them.
"""
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


class ConvolutionalLayer(object):
    def __init__(self, kernel_size, channel_in, channel_out, padding, stride):
        self.kernel_size = kernel_size
        self.channel_in = channel_in
        self.channel_out = channel_out
        self.padding = padding
        self.stride = stride

    def init_param(self, std=0.01):
        self.weight = np.random.normal(loc=0.0, scale=std,
                                       size=(self.channel_in, self.kernel_size, self.kernel_size, self.channel_out))
        self.bias = np.zeros([self.channel_out])

    def forward(self, input):
        """input [N, C_in, H, W] -> output [N, C_out, H_out, W_out]."""
        start_time = time.time()
        self.input = input
        p, k, s = self.padding, self.kernel_size, self.stride
        padded = np.pad(input, ((0, 0), (0, 0), (p, p), (p, p)))
        # windows [N, C_in, H_out, W_out, K, K] after striding
        windows = sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        # contract C_in, K, K against weight [C_in, K, K, C_out] -> [N, H_out, W_out, C_out]
        out = np.tensordot(windows, self.weight, axes=([1, 4, 5], [0, 1, 2])) + self.bias
        self.output = out.transpose(0, 3, 1, 2)
        self.forward_time = time.time() - start_time
        return self.output

    def load_param(self, weight, bias):
        self.weight = weight
        self.bias = np.reshape(bias, [-1])


class MaxPoolingLayer(object):
    def __init__(self, kernel_size, stride):
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, input):
        """input [N, C, H, W] -> output [N, C, (H-K)//s+1, (W-K)//s+1]."""
        start_time = time.time()
        self.input = input
        k, s = self.kernel_size, self.stride
        windows = sliding_window_view(input, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        self.output = windows.max(axis=(4, 5))
        self.forward_time = time.time() - start_time
        return self.output


class FlattenLayer(object):
    def __init__(self, input_shape, output_shape):
        self.input_shape = input_shape
        self.output_shape = output_shape

    def forward(self, input):
        """input [N, C, H, W] -> output [N, H*W*C] in MatConvNet's (h, w, c) order."""
        self.input = np.transpose(input, [0, 2, 3, 1])
        self.output = self.input.reshape([self.input.shape[0]] + list(self.output_shape))
        return self.output
