# coding=utf-8
"""Experiment 3.2, newer edition: VGG19 image classification on the DLP through pycnnl.

Data flow: image file -> Pillow -> [224, 224, 3] uint8 -> float32 minus the mean ->
[1, 224, 224, 3] (NHWC, the device's own layout: no transpose) -> flat float64 ->
net.setInputData -> net.forward() (16 conv + 5 pool, fc6..fc8, softmax, all float32 on
the DLP; there is no flatten layer: pool5's NHWC output is fc6's input as it is) ->
net.getOutputData(): 1000 class probabilities.

Every shape vector (pycnnl.IntVector) is written in NCHW order [N, C, H, W] although the
device keeps its tensors in NHWC; createReLuLayer takes the previous layer's output shape.
"""
import time

import numpy as np
import scipy.io
from PIL import Image

import pycnnl


class VGG19(object):
    def __init__(self):
        # 初始化网络, 创建 pycnnl.CnnlNet() 实例 net
        self.net = pycnnl.CnnlNet()
        # 新版模板沿用的量化参数列表; pycnnl 全程 float32, 不再使用它们
        self.input_quant_params = []
        self.filter_quant_params = []

    def build_model(self, param_path='../data/vgg19_data/imagenet-vgg-verydeep-19.mat'):
        self.param_path = param_path

        # TODO: 使用 net 的 createXXXLayer 接口搭建 VGG19 网络
        self.net.setInputShape(1, 3, 224, 224)

        # conv1_1
        input_shape1 = pycnnl.IntVector(4)
        input_shape1[0] = 1
        input_shape1[1] = 3
        input_shape1[2] = 224
        input_shape1[3] = 224
        self.net.createConvLayer('conv1_1', input_shape1, 64, 3, 1, 1, 1)
        # relu1_1
        self.net.createReLuLayer('relu1_1')
        # conv1_2
        input_shape12 = pycnnl.IntVector(4)
        input_shape12[0] = 1
        input_shape12[1] = 64
        input_shape12[2] = 224
        input_shape12[3] = 224
        self.net.createConvLayer('conv1_2', input_shape12, 64, 3, 1, 1, 1)
        # relu1_2
        self.net.createReLuLayer('relu1_2')

        ### BEGIN SOLUTION
        ### HINT pool1, conv2_1 ... relu7: 按表 3.1 依次创建各层, 层名与 .mat 中的一致;
        ### HINT 每层的 in_shape 是上一层输出的 [N, C, H, W]; 池化层 createPoolingLayer(name, in_shape, 2, 2);
        ### HINT 没有 flatten 层: fc6 直接接在 pool5 之后, 其 in_shape / w_shape / out_shape 的写法与 fc8 相同
        def vector(dims):
            # [N, C, H, W] 列表 -> pycnnl.IntVector
            shape = pycnnl.IntVector(len(dims))
            for i, dim in enumerate(dims):
                shape[i] = int(dim)
            return shape

        last = [1, 64, 224, 224]   # relu1_2 的输出 [N, C, H, W]
        self.net.createPoolingLayer('pool1', vector(last), 2, 2)
        last = [1, last[1], last[2] // 2, last[3] // 2]
        for stage, (out_channel, convs) in enumerate([(128, 2), (256, 4), (512, 4), (512, 4)], start=2):
            for idx in range(1, convs + 1):
                self.net.createConvLayer('conv%d_%d' % (stage, idx), vector(last), out_channel, 3, 1, 1, 1)
                self.net.createReLuLayer('relu%d_%d' % (stage, idx))
                last = [1, out_channel, last[2], last[3]]
            self.net.createPoolingLayer('pool%d' % stage, vector(last), 2, 2)
            last = [1, out_channel, last[2] // 2, last[3] // 2]
        # pool5 outputs [1, 512, 7, 7], NHWC on the device: fc6 reads it as one row of 7 * 7 * 512.
        features = last[1] * last[2] * last[3]
        self.net.createMlpLayer('fc6', vector([1, 1, 1, features]), vector([1, 1, features, 4096]),
                                vector([1, 1, 1, 4096]))
        self.net.createReLuLayer('relu6')
        self.net.createMlpLayer('fc7', vector([1, 1, 1, 4096]), vector([1, 1, 4096, 4096]), vector([1, 1, 1, 4096]))
        self.net.createReLuLayer('relu7')
        ### END SOLUTION

        # fc8
        input_shapem3 = pycnnl.IntVector(4)
        input_shapem3[0] = 1
        input_shapem3[1] = 1
        input_shapem3[2] = 1
        input_shapem3[3] = 4096
        weight_shapem3 = pycnnl.IntVector(4)
        weight_shapem3[0] = 1
        weight_shapem3[1] = 1
        weight_shapem3[2] = 4096
        weight_shapem3[3] = 1000
        output_shapem3 = pycnnl.IntVector(4)
        output_shapem3[0] = 1
        output_shapem3[1] = 1
        output_shapem3[2] = 1
        output_shapem3[3] = 1000
        self.net.createMlpLayer('fc8', input_shapem3, weight_shapem3, output_shapem3)

        # softmax
        input_shapes = pycnnl.IntVector(3)
        input_shapes[0] = 1
        input_shapes[1] = 1
        input_shapes[2] = 1000
        self.net.createSoftmaxLayer('softmax', input_shapes, 1)

    def load_model(self):  # 加载神经网络参数
        print('Loading parameters from file ' + self.param_path)
        params = scipy.io.loadmat(self.param_path)
        self.image_mean = params['normalization'][0][0][0]
        self.image_mean = np.mean(self.image_mean, axis=(0, 1))

        count = 0
        for idx in range(self.net.size()):
            if 'conv' in self.net.getLayerName(idx):
                weight, bias = params['layers'][0][idx][0][0][0][0]
                # TODO: 调整卷积层权重的维度, 展平并转换为 np.float64
                # matconvnet: weights dim [height, width, in channel, out channel]
                # ours: weights dim [out channel, height, width, in channel]
                ### BEGIN SOLUTION
                ### HINT weight = ______
                weight = np.transpose(weight, [3, 0, 1, 2]).flatten().astype(np.float64)
                ### END SOLUTION
                bias = bias.reshape(-1).astype(np.float64)
                self.net.loadParams(idx, weight, bias)
                count += 1
            if 'fc' in self.net.getLayerName(idx):
                # 加载全连接层参数需要一段时间, 请耐心等待
                # 网络中没有 flatten 层, 全连接层在 .mat 中的下标与网络中的相同
                weight, bias = params['layers'][0][idx][0][0][0][0]
                # matconvnet: [height, width, in channel, out channel] -> ours: [in, out], 不需要转置
                weight = weight.reshape([weight.shape[0] * weight.shape[1] * weight.shape[2], weight.shape[3]])
                weight = weight.flatten().astype(np.float64)
                bias = bias.reshape(-1).astype(np.float64)
                self.net.loadParams(idx, weight, bias)
                count += 1

    def load_image(self, image_dir):
        # 读取图像数据
        self.image = image_dir
        image_mean = np.array([123.68, 116.779, 103.939])
        print('Loading and preprocessing image from ' + image_dir)
        # Pillow replaces scipy.misc.imread/imresize: bilinear resize of the uint8 image.
        input_image = Image.open(image_dir).convert('RGB')
        input_image = input_image.resize((224, 224), Image.BILINEAR)
        input_image = np.array(input_image).astype(np.float32)
        input_image -= image_mean
        input_image = np.reshape(input_image, [1] + list(input_image.shape))
        # input dim [N, height, width, channel]: DLP 上的张量就是 NHWC, 不需要转置
        # TODO: 调整输入数据, 展平并转换为 np.float64
        ### BEGIN SOLUTION
        ### HINT self.input_data = ______
        self.input_data = input_image.flatten().astype(np.float64)
        ### END SOLUTION
        # 将图片加载到 DLP 上
        self.net.setInputData(self.input_data)

    def forward(self):  # 神经网络的前向传播
        return self.net.forward()

    def get_top5(self, label):
        start = time.time()
        self.forward()
        end = time.time()

        result = self.net.getOutputData()

        # 打印 top1/5 结果
        top1 = False
        top5 = False
        print('------ Top 5 of ' + self.image + ' ------')
        # Indices sorted by probability: the template's result.index(prob) finds the first
        # class holding that value, which repeats a class when two probabilities tie.
        order = sorted(range(len(result)), key=lambda i: result[i], reverse=True)[:5]
        if order[0] == label:
            top1 = True
        for idx in order:
            if idx == label:
                top5 = True
            print('%f - ' % result[idx] + self.labels[idx].strip())

        # 打印推理的时间
        print('inference time: %f' % (end - start))
        return top1, top5

    def evaluate(self, file_list, synset_path='../../data/synset_words.txt'):
        top1_num = 0
        top5_num = 0
        total_num = 0

        # 读取类别名称
        with open(synset_path, 'r') as f:
            self.labels = f.readlines()

        # 记录推断所有图片的总时间
        start = time.time()
        with open(file_list, 'r') as f:
            file_list = [line for line in f.readlines() if line.strip()]
            total_num = len(file_list)
            for line in file_list:
                image = line.split()[0].strip()
                label = int(line.split()[1].strip())
                self.load_image(image)
                top1, top5 = self.get_top5(label)  # 获取推断结果
                if top1:
                    top1_num += 1
                if top5:
                    top5_num += 1
        end = time.time()

        print('Global accuracy : ')
        print('accuracy1: %f (%d/%d) ' % (float(top1_num) / float(total_num), top1_num, total_num))
        print('accuracy5: %f (%d/%d) ' % (float(top5_num) / float(total_num), top5_num, total_num))
        print('Total execution time: %f' % (end - start))
        return top1_num, top5_num, total_num


if __name__ == '__main__':
    # The template's __main__ on the kit's weights and cat image. `source env.sh` puts the
    # kit on PYTHONPATH, so `python vgg19_demo.py` works from any folder; the file list
    # names the image by its full path.
    import os
    import tempfile
    from grader.kit.paths import DEFAULT_CAT, SYNSET_WORDS
    from grader.kit.weights import resolve_weights
    weights = resolve_weights()
    print(weights.banner())
    vgg = VGG19()
    vgg.build_model(param_path=str(weights.path))
    vgg.load_model()
    file_list = os.path.join(tempfile.mkdtemp(), 'file_list')
    with open(file_list, 'w') as f:
        f.write('%s 281\n' % DEFAULT_CAT)   # 281: tabby cat
    vgg.evaluate(file_list, synset_path=str(SYNSET_WORDS))
