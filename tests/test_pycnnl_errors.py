"""Bad calls on the emulated CnnlNet raise errors that name the layer, the shapes and the sizes."""
import contextlib
import io

import numpy as np
import pytest

import pycnnl
from pycnnl import CnnlError, CnnlIndexError


def new_net():
    with contextlib.redirect_stdout(io.StringIO()):
        return pycnnl.CnnlNet()


def vec(*dims):
    v = pycnnl.IntVector(len(dims))
    for i, d in enumerate(dims):
        v[i] = d
    return v


def vgg_head(size=224):
    """conv1_1, relu1_1, conv1_2, relu1_2 of the template (indices 0..3)."""
    net = new_net()
    net.setInputShape(1, 3, size, size)
    net.createConvLayer("conv1_1", vec(1, 3, size, size), 64, 3, 1, 1, 1)
    net.createReLuLayer("relu1_1")
    net.createConvLayer("conv1_2", vec(1, 64, size, size), 64, 3, 1, 1, 1)
    net.createReLuLayer("relu1_2")
    return net


def test_shape_vector_that_disagrees_names_both_layers_and_shapes():
    net = vgg_head()
    with pytest.raises(CnnlError) as info:
        net.createPoolingLayer("pool1", vec(1, 64, 224, 225), 2, 2)
    assert str(info.value) == ("createPoolingLayer('pool1'): in_shape [1,64,224,225] does not match "
                               "the output of 'relu1_2' [1,64,224,224]")
    assert net.size() == 4                                   # nothing was added


def test_first_layer_is_compared_with_set_input_shape():
    net = new_net()
    net.setInputShape(1, 3, 224, 224)
    with pytest.raises(CnnlError, match=r"in_shape \[1,224,224,3\] does not match the input shape "
                                        r"set by setInputShape \[1,3,224,224\]"):
        net.createConvLayer("conv1_1", vec(1, 224, 224, 3), 64, 3, 1, 1, 1)


def test_mlp_and_softmax_shapes_are_compared_by_element_count():
    net = new_net()
    net.setInputShape(1, 8, 2, 2)
    net.createPoolingLayer("pool", vec(1, 8, 2, 2), 2, 2)                # -> [1,8,1,1]
    net.createMlpLayer("fc", vec(1, 1, 1, 8), vec(1, 1, 8, 5), vec(1, 1, 1, 5))
    with pytest.raises(CnnlError, match=r"createSoftmaxLayer\('sm'\): in_shape \[1,1,6\] does not "
                                        r"match the output of 'fc' \[1,1,1,5\] \(it must hold as "
                                        r"many values: 6 != 5\)"):
        net.createSoftmaxLayer("sm", vec(1, 1, 6), 1)
    with pytest.raises(CnnlError, match=r"x @ W needs in_shape\[-1\] == weight_shape\[-2\]"):
        net.createMlpLayer("fc2", vec(1, 1, 1, 5), vec(1, 1, 4, 3), vec(1, 1, 1, 3))


def test_conv_load_params_of_the_wrong_length_names_layout():
    net = vgg_head()
    with pytest.raises(CnnlError) as info:
        net.loadParams(0, np.zeros(1727), np.zeros(64))
    text = str(info.value)
    assert text.startswith("loadParams(0) on layer 'conv1_1': the filter has 1727 values")
    assert "[Cout,kh,kw,Cin] = [64,3,3,3] = 1728 values" in text
    with pytest.raises(CnnlError, match="the bias has 63 values but the layer needs Cout = 64"):
        net.loadParams(0, np.zeros(1728), np.zeros(63))


def test_mlp_load_params_of_the_wrong_length_names_layout_and_batch():
    net = new_net()
    net.setInputShape(4, 6, 1, 1)
    net.createMlpLayer("fc1", vec(4, 1, 1, 6), vec(4, 1, 6, 3), vec(4, 1, 1, 3))
    with pytest.raises(CnnlError) as info:
        net.loadParams(0, np.zeros(72), np.zeros(3))            # all four copies given
    assert ("weight_shape [4,1,6,3] / batch 4 = 18 values, [in,out] = [6,3] row-major"
            in str(info.value))
    net.loadParams(0, np.zeros(18), np.zeros(3))


def test_forward_with_an_unloaded_layer_names_it():
    net = vgg_head(8)
    net.loadParams(0, np.zeros(64 * 27), np.zeros(64))
    net.setInputData(np.zeros(3 * 64))
    with pytest.raises(CnnlError, match=r"no parameters yet: 2:'conv1_2'; call loadParams"):
        net.forward()


def test_input_of_the_wrong_length():
    net = vgg_head(8)
    with pytest.raises(CnnlError, match=r"setInputData: got 191 values but setInputShape\(1, 3, 8, 8\) "
                                        r"needs 192; .*NHWC"):
        net.setInputData(np.zeros(191))


def test_shape_vector_of_the_wrong_length():
    net = new_net()
    net.setInputShape(1, 3, 8, 8)
    with pytest.raises(CnnlError, match=r"createConvLayer\('c'\): in_shape must have 4 entries, got "
                                        r"3: \[1,3,8\]"):
        net.createConvLayer("c", vec(1, 3, 8), 4, 3, 1, 1, 1)
    with pytest.raises(CnnlError, match=r"in_shape \[1,0,8,8\] has an entry < 1"):
        net.createConvLayer("c", pycnnl.IntVector([1, 0, 8, 8]), 4, 3, 1, 1, 1)
    with pytest.raises(CnnlError, match="must have 2 or 3 entries"):
        net.createSoftmaxLayer("sm", vec(1, 1, 1, 192), 1)


def test_other_misuses():
    net = new_net()
    with pytest.raises(CnnlError, match="call setInputShape"):
        net.createReLuLayer("relu")
    net.setInputShape(1, 3, 8, 8)
    net.createReLuLayer("relu")
    with pytest.raises(CnnlError, match="only convolution and mlp layers take parameters"):
        net.loadParams(0, [1.0], [1.0])
    with pytest.raises(CnnlIndexError, match=r"loadParams\(1\): layer index out of range; the net "
                                             r"has 1 layers"):
        net.loadParams(1, [1.0], [1.0])
    with pytest.raises(IndexError):
        net.getLayerName(-1)
    with pytest.raises(CnnlError, match="before the first create"):
        net.setInputShape(1, 3, 8, 8)
    with pytest.raises(CnnlError, match="call forward"):
        net.getOutputData()
    with pytest.raises(CnnlError, match="no input"):
        net.forward()
    with pytest.raises(NotImplementedError, match="dilation 2 is not emulated"):
        net.createConvLayer("c", vec(1, 3, 8, 8), 4, 3, 1, 2, 1)
    with pytest.raises(CnnlError, match="gives an empty output"):
        net.createConvLayer("c", vec(1, 3, 8, 8), 4, 9, 1, 1, 0)


def test_swig_argument_errors_reach_the_caller():
    net = new_net()
    with pytest.raises(NotImplementedError, match="overloaded function 'CnnlNet_setInputShape'"):
        net.setInputShape(1, 3, 224)
    with pytest.raises(NotImplementedError):
        net.setInputShape(1, 3, 224, 224.0)
    net.setInputShape(1, 3, 8, 8)
    with pytest.raises(TypeError, match="argument 4 of type 'int'"):
        net.createConvLayer("c", vec(1, 3, 8, 8), np.int64(4), 3, 1, 1, 1)
    with pytest.raises(TypeError, match="argument 2 of type 'std::string'"):
        net.createReLuLayer(b"relu")
    with pytest.raises(TypeError):                          # 6 arguments (the handout's sample)
        net.createConvLayer("c", vec(1, 3, 8, 8), 4, 3, 1, 1)
