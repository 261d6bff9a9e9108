# coding=utf-8
"""Basic layers from the chapter-2 lab: fully connected, ReLU and softmax loss.

Experiment 3.3 only uses ReLULayer (after every convolution of VGG19); the other two
layers are kept so that the file is the same one the student completed in chapter 2.
Activations are arrays of shape [N, D] for the fully connected layers and any shape for
ReLU.
"""
import time

import numpy as np


class FullyConnectedLayer(object):
    def __init__(self, num_input, num_output):  # 全连接层初始化
        self.num_input = num_input
        self.num_output = num_output

    def init_param(self, std=0.01):  # 参数初始化
        self.weight = np.random.normal(loc=0.0, scale=std, size=(self.num_input, self.num_output))
        self.bias = np.zeros([1, self.num_output])

    def forward(self, input):  # 前向传播计算
        """input: [N, num_input] -> output: [N, num_output]."""
        start_time = time.perf_counter()
        self.input = input
        # TODO：全连接层的前向传播，计算输出结果
        self.output = np.dot(self.input, self.weight) + self.bias
        self.forward_time = time.perf_counter() - start_time
        return self.output

    def backward(self, top_diff):  # 反向传播的计算
        """top_diff: [N, num_output] -> bottom_diff: [N, num_input]; fills d_weight, d_bias."""
        # TODO：全连接层的反向传播，计算参数梯度和本层损失
        self.d_weight = np.dot(self.input.T, top_diff)
        self.d_bias = np.sum(top_diff, axis=0)
        bottom_diff = np.dot(top_diff, self.weight.T)
        return bottom_diff

    def update_param(self, lr):  # 参数更新
        # TODO：对全连接层参数利用参数进行更新
        self.weight = self.weight - lr * self.d_weight
        self.bias = self.bias - lr * self.d_bias

    def load_param(self, weight, bias):  # 参数加载
        weight = np.asarray(weight)
        bias = np.asarray(bias)
        if weight.shape != (self.num_input, self.num_output):
            raise ValueError(
                'fully connected layer (%d -> %d): weight must have shape %s, got %s'
                % (self.num_input, self.num_output, (self.num_input, self.num_output), weight.shape))
        if bias.size != self.num_output:
            raise ValueError(
                'fully connected layer (%d -> %d): bias must have %d values, got shape %s'
                % (self.num_input, self.num_output, self.num_output, bias.shape))
        self.weight = weight
        # MatConvNet stores the bias as [num_output, 1]; the layer keeps [1, num_output].
        self.bias = bias.reshape(1, self.num_output)

    def save_param(self):  # 参数保存
        return self.weight, self.bias


class ReLULayer(object):
    def forward(self, input):  # 前向传播的计算
        """input: any shape -> output: same shape, max(input, 0)."""
        start_time = time.perf_counter()
        self.input = input
        # TODO：ReLU层的前向传播，计算输出结果
        output = np.maximum(0, self.input)
        self.forward_time = time.perf_counter() - start_time
        return output

    def backward(self, top_diff):  # 反向传播的计算
        """top_diff: same shape as the input -> bottom_diff: same shape."""
        start_time = time.perf_counter()
        # TODO：ReLU层的反向传播，计算本层损失
        bottom_diff = top_diff.copy()
        bottom_diff[self.input < 0] = 0
        self.backward_time = time.perf_counter() - start_time
        return bottom_diff


class SoftmaxLossLayer(object):
    def forward(self, input):  # 前向传播的计算
        """input: [N, K] scores -> prob: [N, K] rows summing to 1."""
        # TODO：softmax 损失层的前向传播，计算输出结果
        input_max = np.max(input, axis=1, keepdims=True)
        input_exp = np.exp(input - input_max)
        self.prob = input_exp / np.sum(input_exp, axis=1, keepdims=True)
        return self.prob

    def get_loss(self, label):  # 计算损失
        """label: [N] class ids -> mean cross-entropy (a float)."""
        self.batch_size = self.prob.shape[0]
        self.label_onehot = np.zeros_like(self.prob)
        self.label_onehot[np.arange(self.batch_size), label] = 1.0
        loss = -np.sum(np.log(self.prob) * self.label_onehot) / self.batch_size
        return loss

    def backward(self):  # 反向传播的计算
        """-> bottom_diff: [N, K], gradient of the mean loss w.r.t. the scores."""
        # TODO：softmax 损失层的反向传播，计算本层损失
        bottom_diff = (self.prob - self.label_onehot) / self.batch_size
        return bottom_diff
