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


### BEGIN REFERENCE ONLY
try:
    # The grader's Winograd kernels for the 3x3/stride-1 layers (see grader/fastops.py);
    # without them the im2col code below runs.
    from grader.refnet import fastops as _fastops
except ImportError:
    _fastops = None


def _float_dtype(array):
    """The dtype a fast layer computes in: the input's own float type (float32 stays
    float32), float64 for integer input."""
    dtype = np.asarray(array).dtype
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)
### END REFERENCE ONLY


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
        ### BEGIN REFERENCE ONLY
        self._d_weight = None
        self._dw_pending = None
        self._cast_cache = None
        self.img2col = None
        ### END REFERENCE ONLY

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
                        ### BEGIN SOLUTION
                        ### HINT self.output[idxn, idxc, idxh, idxw] = ______
                        self.output[idxn, idxc, idxh, idxw] = np.sum(
                            self.input_pad[idxn, :, idxh*self.stride:idxh*self.stride+self.kernel_size,
                                           idxw*self.stride:idxw*self.stride+self.kernel_size]
                            * self.weight[:, :, :, idxc]) + self.bias[idxc]
                        ### END SOLUTION
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
                        ### BEGIN SOLUTION
                        ### HINT self.d_weight[:, :, :, idxc] += ______
                        ### HINT self.d_bias[idxc] += ______
                        ### HINT bottom_diff[idxn, :, idxh*self.stride:idxh*self.stride+self.kernel_size, idxw*self.stride:idxw*self.stride+self.kernel_size] += ______
                        self.d_weight[:, :, :, idxc] += top_diff[idxn, idxc, idxh, idxw] * self.input_pad[
                            idxn, :, idxh*self.stride:idxh*self.stride+self.kernel_size,
                            idxw*self.stride:idxw*self.stride+self.kernel_size]
                        self.d_bias[idxc] += top_diff[idxn, idxc, idxh, idxw]
                        bottom_diff[idxn, :, idxh*self.stride:idxh*self.stride+self.kernel_size,
                                    idxw*self.stride:idxw*self.stride+self.kernel_size] += \
                            top_diff[idxn, idxc, idxh, idxw] * self.weight[:, :, :, idxc]
                        ### END SOLUTION
        bottom_diff = bottom_diff[:, :, self.padding:self.padding+self.input.shape[2], self.padding:self.padding+self.input.shape[3]]
        self.backward_time = time.perf_counter() - start_time
        return bottom_diff

    def forward_speedup(self, input):  # 前向传播的并行化计算
        """input: [N, Cin, H, W] -> output: [N, Cout, Hout, Wout] (figure 3.27).

        img2col holds one row per output position, [N*Hout*Wout, Cin*K*K]; one matrix
        product with the kernel reshaped to [Cin*K*K, Cout] replaces the four loops.
        """
        ### BEGIN REFERENCE ONLY
        if self._fast_3x3(input):
            start_time = time.perf_counter()
            self._check_input(input)
            self.input = input
            dtype = _float_dtype(input)
            self.output = _fastops.conv2d_forward(input.astype(dtype, copy=False),
                                                  self._weight_as(dtype), self._bias_as(dtype),
                                                  self.padding, 1)
            self.height_out, self.width_out = self.output.shape[2:]
            self.img2col = None  # d_weight is computed from the input instead
            self._dw_pending = None
            self._d_weight = None
            self.forward_time = time.perf_counter() - start_time
            return self.output
        ### END REFERENCE ONLY
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
        ### BEGIN REFERENCE ONLY
        if self.img2col is None and self._fast_3x3(self.input):
            start_time = time.perf_counter()
            n, c, h, w = self.input.shape
            expected = (n, self.channel_out, self.height_out, self.width_out)
            if tuple(top_diff.shape) != expected:
                raise ValueError('%s: top_diff must have the output shape %s, got %s'
                                 % (self._describe(), expected, tuple(top_diff.shape)))
            dtype = _float_dtype(self.input)
            top = np.asarray(top_diff, dtype=dtype)
            self.d_bias = top.sum(axis=(0, 2, 3))
            self._d_weight = None
            self._dw_pending = top
            bottom_diff = _fastops.conv2d_backward_data(
                top, self._weight_as(dtype), self.padding, 1,
                self.input.shape)
            self.backward_time = time.perf_counter() - start_time
            return bottom_diff
        ### END REFERENCE ONLY
        ### BEGIN SOLUTION
        ### HINT img2col has one row per output position, in the order (n, h, w). Rearrange
        ### HINT top_diff the same way, to [N*Hout*Wout, Cout]; its product with the transposed
        ### HINT weight_reshape is the gradient of img2col. Add each row back onto its window
        ### HINT of the padded input (col2im) and drop the padding. (d_weight and d_bias, if
        ### HINT you want them: a matrix product and a sum.) Set self.backward_time.
        start_time = time.perf_counter()
        n, c, h, w = self.input.shape
        k, s, p = self.kernel_size, self.stride, self.padding
        expected = (n, self.channel_out, self.height_out, self.width_out)
        if tuple(top_diff.shape) != expected:
            raise ValueError('%s: top_diff must have the output shape %s, got %s'
                             % (self._describe(), expected, tuple(top_diff.shape)))
        # [N, Cout, Hout, Wout] -> [N*Hout*Wout, Cout]: the rows of img2col.
        top_mat = np.transpose(top_diff, [0, 2, 3, 1]).reshape(-1, self.channel_out)
        self.d_weight = np.dot(self.img2col.T, top_mat).reshape(self.weight.shape)
        self.d_bias = np.sum(top_mat, axis=0)
        # [N*Hout*Wout, Cin*K*K], viewed as [N, Hout, Wout, Cin, K, K].
        dcols = np.dot(top_mat, self.weight_reshape.T).reshape(
            n, self.height_out, self.width_out, c, k, k)
        bottom_pad = np.zeros(self.input_pad.shape)
        # col2im: each kernel offset (kh, kw) adds one strided slab of the padded input.
        for kh in range(k):
            for kw in range(k):
                bottom_pad[:, :, kh:kh + s * (self.height_out - 1) + 1:s, kw:kw + s * (self.width_out - 1) + 1:s] += \
                    np.transpose(dcols[:, :, :, :, kh, kw], [0, 3, 1, 2])
        bottom_diff = bottom_pad[:, :, p:p + h, p:p + w]
        self.backward_time = time.perf_counter() - start_time
        ### END SOLUTION
        return bottom_diff

    ### BEGIN REFERENCE ONLY
    # d_weight of the fast 3x3 path is computed on first read (see backward_speedup);
    # the other paths assign it directly, which the setter allows.
    @property
    def d_weight(self):
        if self._d_weight is None and self._dw_pending is not None and self.img2col is None:
            # Fast 3x3 path: no img2col matrix was built; correlate the padded input with
            # top_diff directly, one [Cin, Cout] GEMM per kernel offset.
            top = self._dw_pending
            k, p = self.kernel_size, self.padding
            n, c, h, w = self.input.shape
            xp = np.pad(np.asarray(self.input, dtype=top.dtype), ((0, 0), (0, 0), (p, p), (p, p)))
            grad = np.empty((c, k, k, self.channel_out), dtype=top.dtype)
            for kh in range(k):
                for kw in range(k):
                    win = xp[:, :, kh:kh + self.height_out, kw:kw + self.width_out]
                    grad[:, kh, kw, :] = np.einsum('nchw,nohw->co', win, top, optimize=True)
            self._d_weight = grad
            self._dw_pending = None
        return self._d_weight

    @d_weight.setter
    def d_weight(self, value):
        self._d_weight = value
        self._dw_pending = None

    def _fast_3x3(self, input):
        """True when grader.refnet.fastops takes this layer: 3x3 kernel, stride 1, float input."""
        return (_fastops is not None and self.kernel_size == 3 and self.stride == 1
                and self.padding <= 2 and input.ndim == 4
                and np.asarray(input).dtype in (np.float32, np.float64))

    def _weight_matrix(self, dtype):
        """The weight as a [Cin*K*K, Cout] matrix in ``dtype`` (cast once, then cached)."""
        cache = self._cast_cache
        if cache is None or cache[0] is not self.weight or cache[1] is not self.bias or cache[2] != dtype:
            w4 = np.ascontiguousarray(self.weight, dtype=dtype)
            b = np.asarray(self.bias, dtype=dtype).reshape(-1)
            # The 4-D array is kept as one object: fastops caches its Winograd
            # transform per array object.
            cache = (self.weight, self.bias, dtype, w4.reshape(-1, self.channel_out), b, w4)
            self._cast_cache = cache
        return cache[3]

    def _bias_as(self, dtype):
        self._weight_matrix(dtype)
        return self._cast_cache[4]

    def _weight_as(self, dtype):
        """The weight [Cin, K, K, Cout] in ``dtype`` (the same array on every call)."""
        self._weight_matrix(dtype)
        return self._cast_cache[5]
    ### END REFERENCE ONLY

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
                        ### BEGIN SOLUTION
                        ### HINT self.output[idxn, idxc, idxh, idxw] = ______
                        self.output[idxn, idxc, idxh, idxw] = np.max(
                            self.input[idxn, idxc, idxh*self.stride:idxh*self.stride+self.kernel_size,
                                       idxw*self.stride:idxw*self.stride+self.kernel_size])
                        ### END SOLUTION
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
                        ### BEGIN SOLUTION
                        ### HINT max_index = ______
                        ### HINT bottom_diff[idxn, idxc, idxh*self.stride+max_index[0], idxw*self.stride+max_index[1]] = ______
                        max_index = np.unravel_index(np.argmax(
                            self.input[idxn, idxc, idxh*self.stride:idxh*self.stride+self.kernel_size,
                                       idxw*self.stride:idxw*self.stride+self.kernel_size]),
                            [self.kernel_size, self.kernel_size])
                        # += rather than the book's =: identical for VGG's 2x2 windows with
                        # stride 2, and still right when windows overlap (kernel > stride).
                        bottom_diff[idxn, idxc, idxh*self.stride+max_index[0], idxw*self.stride+max_index[1]] += \
                            top_diff[idxn, idxc, idxh, idxw]
                        ### END SOLUTION
        self.backward_time = time.perf_counter() - start_time
        return bottom_diff

    def forward_speedup(self, input):  # 前向传播的并行化计算
        """input: [N, C, H, W] -> output: [N, C, Hout, Wout], same dtype as input."""
        ### BEGIN REFERENCE ONLY
        if _fastops is not None and _fastops.numba is not None and input.ndim == 4 \
                and self.kernel_size ** 2 <= 256:
            # One compiled pass for max and argmax (same offsets as the code below).
            start_time = time.perf_counter()
            self.input = input
            self.output, self.max_arg = _fastops.maxpool2d_forward_argmax(
                np.asarray(input, dtype=_float_dtype(input)), self.kernel_size, self.stride)
            self.forward_time = time.perf_counter() - start_time
            return self.output
        ### END REFERENCE ONLY
        # TODO: 改进forward函数，使得计算加速
        ### BEGIN SOLUTION
        ### HINT Gather every pooling window along a new last axis (reshape when the windows
        ### HINT tile the input), take max and argmax there, and remember the argmax for the
        ### HINT backward pass. Set self.forward_time.
        start_time = time.perf_counter()
        if input.ndim != 4:
            raise ValueError('%s: input must be [N, C, H, W], got shape %s' % (self._describe(), tuple(input.shape)))
        self.input = input
        k, s = self.kernel_size, self.stride
        n, c, h, w = input.shape
        h_out = (h - k) // s + 1
        w_out = (w - k) // s + 1
        # One strided view per window offset (no copy); a running maximum over the K*K
        # views. The strict > keeps the earliest offset on ties, i.e. the first maximum in
        # row-major window order, like np.argmax in the loop version.
        dtype = _float_dtype(input)
        self.output = np.array(input[:, :, 0:s * (h_out - 1) + 1:s, 0:s * (w_out - 1) + 1:s], dtype=dtype)
        self.max_arg = np.zeros((n, c, h_out, w_out), dtype=np.uint8 if k * k < 256 else np.intp)
        for kh in range(k):
            for kw in range(k):
                if kh == 0 and kw == 0:
                    continue
                view = input[:, :, kh:kh + s * (h_out - 1) + 1:s, kw:kw + s * (w_out - 1) + 1:s]
                better = view > self.output
                np.copyto(self.output, view, where=better)
                np.copyto(self.max_arg, kh * k + kw, where=better)
        self.forward_time = time.perf_counter() - start_time
        ### END SOLUTION
        return self.output

    def backward_speedup(self, top_diff):  # 反向传播的并行化计算
        """top_diff: [N, C, Hout, Wout] -> bottom_diff: [N, C, H, W], dtype of the input."""
        ### BEGIN REFERENCE ONLY
        if _fastops is not None and _fastops.numba is not None and self.max_arg.dtype == np.uint8 \
                and tuple(np.shape(top_diff)) == self.max_arg.shape:
            start_time = time.perf_counter()
            top = np.asarray(top_diff, dtype=_float_dtype(self.input))
            bottom_diff = _fastops.maxpool2d_backward(top, self.max_arg, self.kernel_size, self.stride,
                                                      self.input.shape)
            self.backward_time = time.perf_counter() - start_time
            return bottom_diff
        ### END REFERENCE ONLY
        # TODO: 改进backward函数，使得计算加速
        ### BEGIN SOLUTION
        ### HINT Route each top_diff value to the argmax position of its window in one
        ### HINT vectorised step instead of four loops. Set self.backward_time.
        start_time = time.perf_counter()
        k, s = self.kernel_size, self.stride
        n, c, h, w = self.input.shape
        h_out, w_out = self.max_arg.shape[2:]
        if tuple(top_diff.shape) != (n, c, h_out, w_out):
            raise ValueError('%s: top_diff must have the output shape %s, got %s'
                             % (self._describe(), (n, c, h_out, w_out), tuple(top_diff.shape)))
        dtype = _float_dtype(self.input)
        top = np.asarray(top_diff, dtype=dtype)
        bottom_diff = np.zeros((n, c, h, w), dtype=dtype)
        # One strided slab per window offset; += so that positions shared by overlapping
        # windows (kernel > stride) collect the gradient of every window they win.
        for kh in range(k):
            for kw in range(k):
                routed = np.where(self.max_arg == kh * k + kw, top, 0)
                if k <= s:
                    bottom_diff[:, :, kh:kh + s * (h_out - 1) + 1:s, kw:kw + s * (w_out - 1) + 1:s] = routed
                else:
                    bottom_diff[:, :, kh:kh + s * (h_out - 1) + 1:s, kw:kw + s * (w_out - 1) + 1:s] += routed
        self.backward_time = time.perf_counter() - start_time
        ### END SOLUTION
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
