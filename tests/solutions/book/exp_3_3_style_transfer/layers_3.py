# coding=utf-8
"""Content and style losses of non-real-time style transfer (section 3.3.2).

Both layers compare a feature map of the transfer image, ``input_layer`` [N, C, H, W],
with the same layer's feature map of the target image, and return a scalar loss
(``forward``) or the loss gradient with respect to ``input_layer`` (``backward``, same
shape). The book takes the features after the ReLU layers (relu4_2 for content), which
is why formulas 3.11 and 3.15 have no "zero where the feature is negative" case: the
ReLU layer's own backward pass applies it.
"""
import numpy as np


class ContentLossLayer(object):
    def __init__(self):
        pass

    def forward(self, input_layer, content_layer):  # 前向传播的计算
        """Formula 3.10: sum((X - Y)^2) / (2*N*C*H*W) -> a float."""
        # TODO: 计算风格迁移图像和目标内容图像的内容损失
        n, c, h, w = input_layer.shape
        loss = np.sum(np.square(input_layer - content_layer)) / (2.0 * n * c * h * w)
        return loss

    def backward(self, input_layer, content_layer):  # 反向传播的计算
        """Formula 3.11: (X - Y) / (N*C*H*W) -> [N, C, H, W]."""
        # TODO: 计算内容损失的反向传播
        n, c, h, w = input_layer.shape
        bottom_diff = (input_layer - content_layer) / (n * c * h * w)
        return bottom_diff


class StyleLossLayer(object):
    def __init__(self):
        pass

    def forward(self, input_layer, style_layer):  # 前向传播的计算
        """Formulas 3.12, 3.13: Gram matrices G (input) and A (style), both [N, C, C];
        loss = sum((G - A)^2) / (4*N*C^2*H^2*W^2) -> a float."""
        # TODO: 计算风格迁移图像和目标风格图像的Gram 矩阵
        style_layer_reshape = np.reshape(style_layer, [style_layer.shape[0], style_layer.shape[1], -1])
        self.gram_style = np.matmul(style_layer_reshape, np.transpose(style_layer_reshape, [0, 2, 1]))
        self.input_layer_reshape = np.reshape(input_layer, [input_layer.shape[0], input_layer.shape[1], -1])
        self.gram_input = np.zeros([input_layer.shape[0], input_layer.shape[1], input_layer.shape[1]],
                                   dtype=self.input_layer_reshape.dtype)
        for idxn in range(input_layer.shape[0]):
            self.gram_input[idxn, :, :] = np.dot(self.input_layer_reshape[idxn], self.input_layer_reshape[idxn].T)
        # TODO: 计算风格迁移图像和目标风格图像的风格损失
        n, c, h, w = input_layer.shape
        self.div = 1.0 * n * c * c * h * h * w * w
        loss = np.sum(np.square(self.gram_input - self.gram_style)) / (4 * self.div)
        return loss

    def backward(self, input_layer, style_layer):  # 反向传播的计算
        """Formula 3.15: sum_j X(n,j,h,w) (G - A)(n,j,i) / (N*C^2*H^2*W^2) -> [N, C, H, W].

        Uses the Gram matrices stored by the last forward call.
        """
        bottom_diff = np.zeros([input_layer.shape[0], input_layer.shape[1], input_layer.shape[2]*input_layer.shape[3]],
                               dtype=self.input_layer_reshape.dtype)
        for idxn in range(input_layer.shape[0]):
            # TODO: 计算风格损失的反向传播
            bottom_diff[idxn, :, :] = np.dot((self.gram_input[idxn] - self.gram_style[idxn]).T,
                                             self.input_layer_reshape[idxn]) / self.div
        bottom_diff = np.reshape(bottom_diff, input_layer.shape)
        return bottom_diff
