# coding=utf-8
"""VGG19 feature extractor, image I/O and Adam optimizer for non-real-time style transfer.

Images inside the network are NCHW float arrays [1, 3, H, W] with the ImageNet mean
(read from the .mat file) subtracted; on disk they are ordinary RGB files read and
written with Pillow.
"""
import os

import numpy as np
import scipy.io
from PIL import Image

from layers_1 import FullyConnectedLayer, ReLULayer, SoftmaxLossLayer
from layers_2 import ConvolutionalLayer, MaxPoolingLayer, FlattenLayer
from layers_3 import ContentLossLayer, StyleLossLayer

# Hyper-parameters of figure 3.21.
CONTENT_LOSS_LAYERS = ['relu4_2']
STYLE_LOSS_LAYERS = ['relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu5_1']
NOISE = 0.5
ALPHA, BETA = 1, 500
TRAINTEP = 2001
LEARNING_RATE = 1.0
IMAGE_HEIGHT, IMAGE_WIDTH = 192, 320


class VGG19(object):
    def __init__(self, param_path='imagenet-vgg-verydeep-19.mat'):  # 神经网络的初始化
        self.param_path = param_path
        self.param_layer_name = (
            'conv1_1', 'relu1_1', 'conv1_2', 'relu1_2', 'pool1',
            'conv2_1', 'relu2_1', 'conv2_2', 'relu2_2', 'pool2',
            'conv3_1', 'relu3_1', 'conv3_2', 'relu3_2', 'conv3_3', 'relu3_3', 'conv3_4', 'relu3_4', 'pool3',
            'conv4_1', 'relu4_1', 'conv4_2', 'relu4_2', 'conv4_3', 'relu4_3', 'conv4_4', 'relu4_4', 'pool4',
            'conv5_1', 'relu5_1', 'conv5_2', 'relu5_2', 'conv5_3', 'relu5_3', 'conv5_4', 'relu5_4', 'pool5'
        )

    def build_model(self):  # 建立网络结构
        # TODO: 建立 VGG19 网络结构
        self.layers = {}
        self.layers['conv1_1'] = ConvolutionalLayer(3, 3, 64, 1, 1)
        self.layers['relu1_1'] = ReLULayer()
        self.layers['conv1_2'] = ConvolutionalLayer(3, 64, 64, 1, 1)
        self.layers['relu1_2'] = ReLULayer()
        self.layers['pool1'] = MaxPoolingLayer(2, 2)
        ### BEGIN SOLUTION
        ### HINT Add conv2_1 ... relu5_3 following Table 3.1 (kernel 3, padding 1, stride 1;
        ### HINT every conv is followed by its ReLU; stages 2-4 end with a 2x2 max pooling).
        stages = ((2, 64, 128, 2), (3, 128, 256, 4), (4, 256, 512, 4), (5, 512, 512, 3))
        for stage, channel_in, channel_out, num_conv in stages:
            for idx in range(1, num_conv + 1):
                self.layers['conv%d_%d' % (stage, idx)] = ConvolutionalLayer(
                    3, channel_in if idx == 1 else channel_out, channel_out, 1, 1)
                self.layers['relu%d_%d' % (stage, idx)] = ReLULayer()
            if stage < 5:
                self.layers['pool%d' % stage] = MaxPoolingLayer(2, 2)
        ### END SOLUTION
        self.layers['conv5_4'] = ConvolutionalLayer(3, 512, 512, 1, 1)
        self.layers['relu5_4'] = ReLULayer()
        self.layers['pool5'] = MaxPoolingLayer(2, 2)
        self.update_layer_list = []
        for layer_name in self.layers.keys():
            if 'conv' in layer_name or 'fc' in layer_name:
                self.update_layer_list.append(layer_name)

    def init_model(self):  # 神经网络参数初始化
        for layer_name in self.update_layer_list:
            self.layers[layer_name].init_param()

    def load_model(self):  # 加载神经网络参数
        """Loads the 16 conv layers and the image mean from the MatConvNet .mat file."""
        if not os.path.isfile(self.param_path):
            raise IOError('VGG19 weights not found at %s' % self.param_path)
        params = scipy.io.loadmat(self.param_path)
        self.image_mean = params['normalization'][0][0][0]
        self.image_mean = np.mean(self.image_mean, axis=(0, 1))
        for idx in range(37):
            if 'conv' in self.param_layer_name[idx]:
                weight, bias = params['layers'][0][idx][0][0][0][0]
                # matconvnet: weights dim [height, width, in_channel, out_channel]
                # ours: weights dim [in_channel, height, width, out_channel]
                weight = np.transpose(weight, [2, 0, 1, 3])
                bias = bias.reshape(-1)
                try:
                    self.layers[self.param_layer_name[idx]].load_param(weight, bias)
                except ValueError as error:
                    raise ValueError('%s (entry %d of %s): %s'
                                     % (self.param_layer_name[idx], idx, self.param_path, error))

    def load_image(self, image_dir, image_height, image_width):  # 数据加载模块
        """Reads an RGB image -> ([1, 3, image_height, image_width] float32 minus the mean,
        the original (H, W, 3) shape)."""
        print('Loading and preprocessing image from ' + str(image_dir))
        image = Image.open(image_dir).convert('RGB')
        image_shape = (image.height, image.width, 3)
        # Bilinear resize of the uint8 image, as scipy.misc.imresize did.
        image = image.resize((image_width, image_height), Image.BILINEAR)
        self.input_image = np.asarray(image).astype(np.float32)
        self.input_image -= self.image_mean.astype(np.float32)
        self.input_image = np.reshape(self.input_image, [1] + list(self.input_image.shape))
        # input dim [N, channel, height, width]
        self.input_image = np.ascontiguousarray(np.transpose(self.input_image, [0, 3, 1, 2]))
        return self.input_image, image_shape

    def save_image(self, input_image, image_shape, image_dir):  # 保存图像
        """input_image: [1, 3, H, W] minus the mean; written at image_shape (H, W, ...)."""
        input_image = np.transpose(input_image, [0, 2, 3, 1])
        input_image = input_image[0] + self.image_mean
        input_image = np.clip(input_image, 0, 255).astype(np.uint8)
        image = Image.fromarray(input_image)
        image = image.resize((int(image_shape[1]), int(image_shape[0])), Image.BILINEAR)
        image.save(image_dir)

    def forward(self, input_image, layer_list):  # 前向传播的计算
        """input_image: [N, 3, H, W] -> {layer name: its output} for the names in layer_list."""
        current = input_image
        layer_forward = {}
        for idx in range(len(self.param_layer_name)):
            # TODO: 计算 VGG19 网络的前向传播
            ### BEGIN SOLUTION
            ### HINT current = ______
            current = self.layers[self.param_layer_name[idx]].forward(current)
            ### END SOLUTION
            if self.param_layer_name[idx] in layer_list:
                layer_forward[self.param_layer_name[idx]] = current
            ### BEGIN REFERENCE ONLY
            # Layers after the deepest requested one cannot change the result.
            if len(layer_forward) == len(set(layer_list)):
                break
            ### END REFERENCE ONLY
        return layer_forward

    def backward(self, dloss, layer_name):  # 反向传播的计算
        """dloss: gradient w.r.t. the output of layer_name -> gradient w.r.t. the image."""
        layer_idx = list.index(list(self.param_layer_name), layer_name)
        for idx in range(layer_idx, -1, -1):
            # TODO: 计算 VGG19 网络的反向传播
            ### BEGIN SOLUTION
            ### HINT dloss = ______
            dloss = self.layers[self.param_layer_name[idx]].backward(dloss)
            ### END SOLUTION
        return dloss


def get_random_img(content_image, noise):  # 生成风格迁移初始化图像
    """content_image: [1, 3, H, W] -> noise * U(-20, 20) + (1 - noise) * content, same dtype."""
    noise_image = np.random.uniform(-20, 20, content_image.shape)
    random_img = noise_image * noise + content_image * (1 - noise)
    return random_img.astype(content_image.dtype, copy=False)


class AdamOptimizer(object):
    def __init__(self, lr, diff_shape):  # Adam优化器的初始化
        self.beta1 = 0.9
        self.beta2 = 0.999
        self.eps = 1e-8
        self.lr = lr
        self.mt = np.zeros(diff_shape)
        self.vt = np.zeros(diff_shape)
        self.step = 0

    def update(self, input, grad):  # 参数更新过程
        """Formula 3.17: one Adam step on input (same shape as grad) -> the updated input."""
        self.step += 1
        self.mt = self.beta1 * self.mt + (1 - self.beta1) * grad
        self.vt = self.beta2 * self.vt + (1 - self.beta2) * np.square(grad)
        mt_hat = self.mt / (1 - self.beta1 ** self.step)
        vt_hat = self.vt / (1 - self.beta2 ** self.step)
        # TODO: 利用梯度的一阶矩和二阶矩的无偏估计更新风格迁移图像
        ### BEGIN SOLUTION
        ### HINT output = ______
        output = input - self.lr * mt_hat / (np.sqrt(vt_hat) + self.eps)
        ### END SOLUTION
        return output


def style_transfer(vgg, content_path, style_path, output_dir='output', train_steps=TRAINTEP,
                   image_height=IMAGE_HEIGHT, image_width=IMAGE_WIDTH, save_every=20):  # 风格迁移的完整流程
    """Figure 3.21: optimise an image so its features match the content and style targets.

    vgg: a VGG19 after build_model, init_model and load_model. Images are read at
    image_height x image_width; every save_every steps the loss is printed and the image
    written to output_dir/output_<step>.jpg. Returns the final transfer_image [1, 3, H, W].
    """
    content_loss_layer = ContentLossLayer()
    style_loss_layer = StyleLossLayer()
    content_image, content_shape = vgg.load_image(content_path, image_height, image_width)
    style_image, _ = vgg.load_image(style_path, image_height, image_width)
    content_layers = vgg.forward(content_image, CONTENT_LOSS_LAYERS)
    style_layers = vgg.forward(style_image, STYLE_LOSS_LAYERS)
    transfer_image = get_random_img(content_image, NOISE)
    # The optimizer needs the image's shape, so it is created once the image exists.
    adam_optimizer = AdamOptimizer(LEARNING_RATE, transfer_image.shape)
    if not os.path.isdir(output_dir):
        os.makedirs(output_dir)

    for step in range(train_steps):
        transfer_layers = vgg.forward(transfer_image, CONTENT_LOSS_LAYERS + STYLE_LOSS_LAYERS)
        content_loss = np.array([])
        style_loss = np.array([])
        content_diff = np.zeros(transfer_image.shape)
        style_diff = np.zeros(transfer_image.shape)
        for layer in CONTENT_LOSS_LAYERS:
            # TODO: 计算内容损失的前向传播
            ### BEGIN SOLUTION
            ### HINT current_loss = ______
            current_loss = content_loss_layer.forward(transfer_layers[layer], content_layers[layer])
            ### END SOLUTION
            content_loss = np.append(content_loss, current_loss)
            # TODO: 计算内容损失的反向传播
            dloss = content_loss_layer.backward(transfer_layers[layer], content_layers[layer])
            ### BEGIN SOLUTION
            ### HINT content_diff += ______
            content_diff += vgg.backward(dloss, layer)
            ### END SOLUTION
        for layer in STYLE_LOSS_LAYERS:
            # TODO: 计算风格损失的前向传播
            ### BEGIN SOLUTION
            ### HINT current_loss = ______
            current_loss = style_loss_layer.forward(transfer_layers[layer], style_layers[layer])
            ### END SOLUTION
            style_loss = np.append(style_loss, current_loss)
            # TODO: 计算风格损失的反向传播
            dloss = style_loss_layer.backward(transfer_layers[layer], style_layers[layer])
            ### BEGIN SOLUTION
            ### HINT style_diff += ______
            style_diff += vgg.backward(dloss, layer)
            ### END SOLUTION
        total_loss = ALPHA * np.mean(content_loss) + BETA * np.mean(style_loss)
        image_diff = ALPHA * content_diff / len(CONTENT_LOSS_LAYERS) + BETA * style_diff / len(STYLE_LOSS_LAYERS)
        # TODO: 利用 Adam 优化器对风格迁移图像进行更新
        ### BEGIN SOLUTION
        ### HINT transfer_image = ______
        transfer_image = adam_optimizer.update(transfer_image, image_diff)
        ### END SOLUTION
        if step % save_every == 0:
            print('Step %d, loss = %f' % (step, total_loss), content_loss, style_loss)
            vgg.save_image(transfer_image, content_shape, os.path.join(output_dir, 'output_' + str(step) + '.jpg'))
    return transfer_image


if __name__ == '__main__':
    # The kit's weights and course images (run `source env.sh` first). With
    # STYLE_TRANSFER_QUICK=1 in the environment: 2 steps at 32x32, to try the code.
    from grader.kit.paths import DEFAULT_CONTENT, DEFAULT_STYLE
    from grader.kit.weights import resolve_weights

    vgg = VGG19(param_path=str(resolve_weights().path))
    vgg.build_model()
    vgg.init_model()
    vgg.load_model()
    if os.environ.get('STYLE_TRANSFER_QUICK'):
        style_transfer(vgg, str(DEFAULT_CONTENT), str(DEFAULT_STYLE), train_steps=2, image_height=32,
                       image_width=32, save_every=1)
    else:
        style_transfer(vgg, str(DEFAULT_CONTENT), str(DEFAULT_STYLE))
