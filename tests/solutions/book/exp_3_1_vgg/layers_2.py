# coding=utf-8
"""Experiment 3.1, new basic units: convolution, max pooling, flatten.

Layouts (the book's): activations [N, C, H, W]; convolution weight
[C_in, K, K, C_out], bias [C_out]. Output sizes follow formula (3.4):
H_out = (H + 2p - K) // s + 1.
"""
import time

import numpy as np


class ConvolutionalLayer(object):
    def __init__(self, kernel_size, channel_in, channel_out, padding, stride):
        # 卷积层的初始化
        self.kernel_size = kernel_size
        self.channel_in = channel_in
        self.channel_out = channel_out
        self.padding = padding
        self.stride = stride
        print('\tConvolutional layer with kernel size %d, input channel %d, output channel %d.'
              % (self.kernel_size, self.channel_in, self.channel_out))

    def init_param(self, std=0.01):  # 参数初始化
        self.weight = np.random.normal(loc=0.0, scale=std,
                                       size=(self.channel_in, self.kernel_size, self.kernel_size, self.channel_out))
        self.bias = np.zeros([self.channel_out])

    def forward(self, input):  # 前向传播的计算
        """input [N, C_in, H, W] -> output [N, C_out, H_out, W_out]."""
        start_time = time.time()
        self.input = input  # [N, C, H, W]
        height = self.input.shape[2] + self.padding * 2
        width = self.input.shape[3] + self.padding * 2
        self.input_pad = np.zeros([self.input.shape[0], self.input.shape[1], height, width])
        self.input_pad[:, :, self.padding:self.padding + self.input.shape[2],
                       self.padding:self.padding + self.input.shape[3]] = self.input
        height_out = (height - self.kernel_size) // self.stride + 1
        width_out = (width - self.kernel_size) // self.stride + 1
        self.output = np.zeros([self.input.shape[0], self.channel_out, height_out, width_out])
        for idxn in range(self.input.shape[0]):
            for idxc in range(self.channel_out):
                for idxh in range(height_out):
                    for idxw in range(width_out):
                        # TODO: 计算卷积层的前向传播,即特征图与卷积核的内积再加偏置
                        # formula 3.3: inner product of one window with kernel idxc, plus the bias
                        top = idxh * self.stride
                        left = idxw * self.stride
                        self.output[idxn, idxc, idxh, idxw] = np.sum(
                            self.weight[:, :, :, idxc]
                            * self.input_pad[idxn, :, top:top + self.kernel_size, left:left + self.kernel_size]
                        ) + self.bias[idxc]
        self.forward_time = time.time() - start_time
        return self.output

    def load_param(self, weight, bias):  # 参数加载
        expected = (self.channel_in, self.kernel_size, self.kernel_size, self.channel_out)
        if tuple(np.shape(weight)) != expected:
            raise ValueError('ConvolutionalLayer(%d -> %d, k=%d).load_param: weight has shape %s, expected %s '
                             '[C_in, K, K, C_out]' % (self.channel_in, self.channel_out, self.kernel_size,
                                                      tuple(np.shape(weight)), expected))
        if np.size(bias) != self.channel_out:
            raise ValueError('ConvolutionalLayer(%d -> %d, k=%d).load_param: bias has shape %s, expected %d values'
                             % (self.channel_in, self.channel_out, self.kernel_size, tuple(np.shape(bias)),
                                self.channel_out))
        self.weight = weight
        self.bias = np.reshape(bias, [-1])


class MaxPoolingLayer(object):
    def __init__(self, kernel_size, stride):  # 最大池化层的初始化
        self.kernel_size = kernel_size
        self.stride = stride
        print('\tMax pooling layer with kernel size %d, stride %d.' % (self.kernel_size, self.stride))

    def forward(self, input):  # 前向传播的计算
        """input [N, C, H, W] -> output [N, C, (H-K)//s+1, (W-K)//s+1]."""
        start_time = time.time()
        self.input = input  # [N, C, H, W]
        self.max_index = np.zeros(self.input.shape)
        height_out = (self.input.shape[2] - self.kernel_size) // self.stride + 1
        width_out = (self.input.shape[3] - self.kernel_size) // self.stride + 1
        self.output = np.zeros([self.input.shape[0], self.input.shape[1], height_out, width_out])
        for idxn in range(self.input.shape[0]):
            for idxc in range(self.input.shape[1]):
                for idxh in range(height_out):
                    for idxw in range(width_out):
                        # TODO: 计算最大池化层的前向传播,取池化窗口内的最大值
                        # formula 3.7: the largest value of the window
                        top = idxh * self.stride
                        left = idxw * self.stride
                        self.output[idxn, idxc, idxh, idxw] = np.max(
                            self.input[idxn, idxc, top:top + self.kernel_size, left:left + self.kernel_size])
        self.forward_time = time.time() - start_time
        return self.output


class FlattenLayer(object):
    def __init__(self, input_shape, output_shape):  # 扁平化层的初始化
        self.input_shape = input_shape
        self.output_shape = output_shape
        assert np.prod(self.input_shape) == np.prod(self.output_shape)
        print('\tFlatten layer with input shape %s, output shape %s.' % (str(self.input_shape), str(self.output_shape)))

    def forward(self, input):  # 前向传播的计算
        """input [N, C, H, W] -> output [N, H*W*C] in MatConvNet's (h, w, c) order."""
        # matconvnet feature map dim: [N, height, width, channel]
        # ours feature map dim: [N, channel, height, width]
        self.input = np.transpose(input, [0, 2, 3, 1])
        self.output = self.input.reshape([self.input.shape[0]] + list(self.output_shape))
        return self.output
