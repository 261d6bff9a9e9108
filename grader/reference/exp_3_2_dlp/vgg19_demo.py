# coding=utf-8
"""Experiment 3.2: VGG19 image classification on the DLP through pycnml (book section 3.2.4).

Data flow: image file -> Pillow -> [224, 224, 3] uint8 -> float32 minus the mean ->
[1, 3, 224, 224] -> flat float64 -> net.setInputData -> net.forward() (every layer on
the DLP: 16 conv + 5 pool, flatten, fc6..fc8, softmax) -> net.getOutputData(): 1000
class probabilities.

pycnml takes Python floats (float64) only, and every conv/mlp layer needs the int8
quant parameters of its input (createConvLayer/createMlpLayer) and of its weights
(loadParams).
"""
import time

import numpy as np
import scipy.io
from PIL import Image

import pycnml


class VGG19(object):
    def __init__(self):
        # 初始化网络, 创建 pycnml.CnmlNet() 实例 net
        self.net = pycnml.CnmlNet(16)
        self.input_quant_params = []
        self.filter_quant_params = []

    def build_model(self,
                    param_path='../data/vgg19_data/imagenet-vgg-verydeep-19.mat',
                    quant_param_path='../data/vgg19_data/vgg19_quant_param_new.npz'):
        self.param_path = param_path

        # 加载量化参数
        params = np.load(quant_param_path)
        input_params = params['input']
        filter_params = params['filter']
        for i in range(0, len(input_params), 2):
            self.input_quant_params.append(pycnml.QuantParam(int(input_params[i]), float(input_params[i + 1])))
        for i in range(0, len(filter_params), 2):
            self.filter_quant_params.append(pycnml.QuantParam(int(filter_params[i]), float(filter_params[i + 1])))

        # TODO: 使用 net 的 createXXXLayer 接口搭建 VGG19 网络
        self.net.setInputShape(1, 3, 224, 224)
        self.net.createConvLayer('conv1_1', 64, 3, 1, 1, 1, self.input_quant_params[0])
        self.net.createReLuLayer('relu1_1')
        self.net.createConvLayer('conv1_2', 64, 3, 1, 1, 1, self.input_quant_params[1])
        self.net.createReLuLayer('relu1_2')
        ### BEGIN SOLUTION
        ### HINT pool1, conv2_1 ... relu7: 按表 3.1 依次创建各层 (池化核 2, 步长 2),
        ### HINT 第 i 个卷积/全连接层使用 self.input_quant_params[i];
        ### HINT pool5 之后先创建 flatten 层: createFlattenLayer('flatten', [1, 512 * 7 * 7, 1, 1])
        self.net.createPoolingLayer('pool1', 2, 2)
        quant_idx = 2   # conv1_1 and conv1_2 use entries 0 and 1
        for stage, (out_channel, convs) in enumerate([(128, 2), (256, 4), (512, 4), (512, 4)], start=2):
            for idx in range(1, convs + 1):
                self.net.createConvLayer('conv%d_%d' % (stage, idx), out_channel, 3, 1, 1, 1,
                                         self.input_quant_params[quant_idx])
                self.net.createReLuLayer('relu%d_%d' % (stage, idx))
                quant_idx += 1
            self.net.createPoolingLayer('pool%d' % stage, 2, 2)
        # The device is NHWC inside, so flatten emits (h, w, c) order: what fc6 expects.
        self.net.createFlattenLayer('flatten', [1, 512 * 7 * 7, 1, 1])
        self.net.createMlpLayer('fc6', 4096, self.input_quant_params[16])
        self.net.createReLuLayer('relu6')
        self.net.createMlpLayer('fc7', 4096, self.input_quant_params[17])
        self.net.createReLuLayer('relu7')
        ### END SOLUTION
        self.net.createMlpLayer('fc8', 1000, self.input_quant_params[18])
        self.net.createSoftmaxLayer('Softmax', 1)

    def load_model(self):  # 加载神经网络参数
        print('Loading parameters from file ' + self.param_path)
        params = scipy.io.loadmat(self.param_path)
        self.image_mean = params['normalization'][0][0][0]
        self.image_mean = np.mean(self.image_mean, axis=(0, 1))

        count = 0
        for idx in range(self.net.size()):
            if 'conv' in self.net.getLayerName(idx):
                weight, bias = params['layers'][0][idx][0][0][0][0]
                # matconvnet: weights dim [height, width, in channel, out channel]
                # ours: weights dim [out channel, in channel, height, width]
                # TODO: 交换卷积层权重的维度, 展平并转换为 np.float64
                ### BEGIN SOLUTION
                ### HINT weight = ______
                weight = np.transpose(weight, [3, 2, 0, 1]).flatten().astype(np.float64)
                ### END SOLUTION
                bias = bias.reshape(-1).astype(np.float64)
                self.net.loadParams(idx, weight, bias, self.filter_quant_params[count])
                count += 1
            if 'fc' in self.net.getLayerName(idx):
                # the .mat has no flatten layer, so fc layers sit one entry earlier there
                weight, bias = params['layers'][0][idx - 1][0][0][0][0]
                weight = weight.reshape([weight.shape[0] * weight.shape[1] * weight.shape[2], weight.shape[3]])
                # TODO: 交换全连接层权重的维度 ([in, out] -> [out, in]), 展平并转换为 np.float64
                ### BEGIN SOLUTION
                ### HINT weight = ______
                weight = np.transpose(weight, [1, 0]).flatten().astype(np.float64)
                ### END SOLUTION
                bias = bias.reshape(-1).astype(np.float64)
                self.net.loadParams(idx, weight, bias, self.filter_quant_params[count])
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
        # input dim [N, channel, height, width]
        input_image = np.transpose(input_image, [0, 3, 1, 2])
        # pycnml only takes Python floats: float32 -> float64
        self.input_data = input_image.flatten().astype(np.float64)
        # 将图片加载到 DLP 上
        self.net.setInputData(self.input_data)

    def forward(self):  # 神经网络的前向传播
        return self.net.forward()

    def get_top5(self, label):
        # 打印推理的时间
        start = time.time()
        self.forward()
        end = time.time()
        print('inference time: %f' % (end - start))
        result = self.net.getOutputData()

        # 打印 top1/5 结果
        top1 = False
        top5 = False
        print('------ Top 5 of ' + self.image + ' ------')
        # Indices sorted by probability: the book's result.index(prob) finds the first
        # class holding that value, which repeats a class when fp16 outputs tie.
        order = sorted(range(len(result)), key=lambda i: result[i], reverse=True)[:5]
        if order[0] == label:
            top1 = True
        for idx in order:
            if idx == label:
                top5 = True
            print('%f - ' % result[idx] + self.labels[idx].strip())
        return top1, top5

    def evaluate(self, file_list, synset_path='synset_words.txt'):
        top1_num = 0
        top5_num = 0
        total_num = 0

        # 读取标签
        self.labels = []
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
    # The book's flow (Fig. 3.11) on the kit's weights, quant parameters and cat image.
    # `source env.sh` puts the kit on PYTHONPATH, so `python vgg19_demo.py` works from any
    # folder; the file list names the image by its full path.
    import os
    import tempfile
    from grader.kit.paths import DEFAULT_CAT, SYNSET_WORDS
    from grader.kit.quantparams import resolve_quant_params
    from grader.kit.weights import resolve_weights
    weights = resolve_weights()
    print(weights.banner())
    vgg = VGG19()
    vgg.build_model(param_path=str(weights.path), quant_param_path=str(resolve_quant_params(weights)))
    vgg.load_model()
    file_list = os.path.join(tempfile.mkdtemp(), 'file_list')
    with open(file_list, 'w') as f:
        f.write('%s 281\n' % DEFAULT_CAT)   # 281: tabby cat (book section 3.2.5)
    vgg.evaluate(file_list, synset_path=str(SYNSET_WORDS))
