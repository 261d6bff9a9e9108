# coding=utf-8
"""Experiment 3.1, basic units reused from experiment 2.1: fully connected, ReLU, softmax.

Shapes: activations are [N, D] row vectors; a fully connected layer's weight is
[num_input, num_output] and its bias [1, num_output] (MatConvNet stores fc biases
as row vectors, so the book's loader passes them through unchanged).
"""
import numpy as np


class FullyConnectedLayer(object):
    def __init__(self, num_input, num_output):  # 全连接层初始化
        self.num_input = num_input
        self.num_output = num_output
        print('\tFully connected layer with input %d, output %d.' % (self.num_input, self.num_output))

    def init_param(self, std=0.01):  # 参数初始化
        self.weight = np.random.normal(loc=0.0, scale=std, size=(self.num_input, self.num_output))
        self.bias = np.zeros([1, self.num_output])

    def forward(self, input):  # 前向传播计算
        """input [N, num_input] -> output [N, num_output]."""
        self.input = input
        # TODO: 全连接层的前向传播,计算输出结果
        self.output = np.dot(self.input, self.weight) + self.bias
        return self.output

    def load_param(self, weight, bias):  # 参数加载
        expected_w = (self.num_input, self.num_output)
        if tuple(np.shape(weight)) != expected_w:
            raise ValueError('FullyConnectedLayer(%d -> %d).load_param: weight has shape %s, expected %s'
                             % (self.num_input, self.num_output, tuple(np.shape(weight)), expected_w))
        if np.size(bias) != self.num_output:
            raise ValueError('FullyConnectedLayer(%d -> %d).load_param: bias has shape %s, expected %d values'
                             % (self.num_input, self.num_output, tuple(np.shape(bias)), self.num_output))
        self.weight = weight
        # A [num_output, 1] column would broadcast into a [num_output, num_output] output.
        self.bias = np.reshape(bias, [1, self.num_output])


class ReLULayer(object):
    def __init__(self):
        print('\tReLU layer.')

    def forward(self, input):  # 前向传播的计算
        """input of any shape -> max(0, input), same shape."""
        self.input = input
        # TODO: ReLU层的前向传播,计算输出结果
        output = np.maximum(self.input, 0)
        return output


class SoftmaxLossLayer(object):
    def __init__(self):
        print('\tSoftmax loss layer.')

    def forward(self, input):  # 前向传播的计算
        """input [N, K] scores -> prob [N, K], each row sums to 1."""
        # TODO: softmax 损失层的前向传播,计算输出结果
        input_max = np.max(input, axis=1, keepdims=True)
        input_exp = np.exp(input - input_max)
        self.prob = input_exp / np.sum(input_exp, axis=1, keepdims=True)
        return self.prob

    def get_loss(self, label):  # 计算损失
        """label [N] integer classes -> mean cross-entropy."""
        self.batch_size = self.prob.shape[0]
        self.label_onehot = np.zeros_like(self.prob)
        self.label_onehot[np.arange(self.batch_size), label] = 1.0
        loss = -np.sum(np.log(self.prob + 1e-12) * self.label_onehot) / self.batch_size
        return loss
