"""Every misuse the card would exit(1) on, or silently accept, raises CnmlError with the sizes."""
import contextlib
import io

import numpy as np
import pytest

import pycnml

QP = pycnml.QuantParam(0, 1.0)


def new_net(*args):
    with contextlib.redirect_stdout(io.StringIO()):
        return pycnml.CnmlNet(*args)


def small_net():
    """conv(2->3, k3, pad1) -> relu -> flatten -> mlp(4) on a 1x2x4x4 input."""
    net = new_net(16)
    net.setInputShape(1, 2, 4, 4)
    net.createConvLayer("conv1", 3, 3, 1, 1, 1, QP)
    net.createReLuLayer("relu1")
    net.createFlattenLayer("flatten", [1, 48, 1, 1])
    net.createMlpLayer("fc1", 4, QP)
    return net


def load_all(net):
    net.loadParams(0, np.zeros(3 * 2 * 9), np.zeros(3), QP)
    net.loadParams(3, np.zeros(4 * 48), np.zeros(4), QP)


def test_cnml_error_is_an_exception_class():
    assert issubclass(pycnml.CnmlError, Exception)
    assert issubclass(pycnml.CnmlIndexError, IndexError)


def test_set_input_data_wrong_length():
    net = small_net()
    with pytest.raises(pycnml.CnmlError) as e:
        net.setInputData(np.zeros(31))
    msg = str(e.value)
    assert "31" in msg and "32" in msg and "[1, 2, 4, 4]" in msg


def test_load_params_wrong_filter_size():
    net = small_net()
    with pytest.raises(pycnml.CnmlError) as e:
        net.loadParams(0, np.zeros(53), np.zeros(3), QP)
    msg = str(e.value)
    assert "conv1" in msg and "53" in msg and "54" in msg and "[3, 2, 3, 3]" in msg


def test_load_params_wrong_bias_size():
    net = small_net()
    with pytest.raises(pycnml.CnmlError) as e:
        net.loadParams(3, np.zeros(4 * 48), np.zeros(5), QP)
    msg = str(e.value)
    assert "fc1" in msg and "bias" in msg and "5" in msg and "4" in msg


def test_load_params_on_mlp_reports_out_in_layout():
    net = small_net()
    with pytest.raises(pycnml.CnmlError, match=r"fc1.*100 values.*192 = \[out, in\] = \[4, 48\]"):
        net.loadParams(3, np.zeros(100), np.zeros(4), QP)


def test_load_params_on_layer_without_parameters():
    net = small_net()
    with pytest.raises(pycnml.CnmlError) as e:
        net.loadParams(1, np.zeros(1), np.zeros(1), QP)
    msg = str(e.value)
    assert "relu1" in msg and "RELU" in msg and "convolution and mlp" in msg


def test_forward_before_every_param_layer_is_loaded_names_them():
    net = small_net()
    net.setInputData(np.zeros(32))
    with pytest.raises(pycnml.CnmlError) as e:
        net.forward()
    assert "0:'conv1'" in str(e.value) and "3:'fc1'" in str(e.value)
    net.loadParams(0, np.zeros(54), np.zeros(3), QP)
    with pytest.raises(pycnml.CnmlError) as e:
        net.forward()
    assert "conv1" not in str(e.value) and "3:'fc1'" in str(e.value)


def test_forward_without_input_and_output_before_forward():
    net = small_net()
    load_all(net)
    with pytest.raises(pycnml.CnmlError, match="setInputData"):
        net.forward()
    with pytest.raises(pycnml.CnmlError, match=r"forward\(\) first"):
        net.getOutputData()


def test_layer_before_set_input_shape():
    net = new_net()
    with pytest.raises(pycnml.CnmlError, match=r"createReLuLayer\('relu1'\).*setInputShape"):
        net.createReLuLayer("relu1")
    with pytest.raises(pycnml.CnmlError, match="setInputShape"):
        net.setInputData([1.0])


@pytest.mark.parametrize("method", ["getLayerName", "needToBeQuantized"])
def test_layer_index_out_of_range(method):
    net = small_net()
    with pytest.raises(pycnml.CnmlIndexError) as e:
        getattr(net, method)(4)
    assert "index 4" in str(e.value) and "4 layers" in str(e.value) and "0..3" in str(e.value)
    with pytest.raises(pycnml.CnmlError, match="index -1"):
        net.loadParams(-1, [], [], QP)


def test_creating_layers_after_first_load_params():
    net = small_net()
    net.loadParams(0, np.zeros(54), np.zeros(3), QP)
    with pytest.raises(pycnml.CnmlError) as e:
        net.createSoftmaxLayer("softmax", 1)
    assert "softmax" in str(e.value) and "after the first loadParams" in str(e.value)


def test_flatten_shape_must_fit_input():
    net = new_net()
    net.setInputShape(1, 512, 7, 7)
    with pytest.raises(pycnml.CnmlError) as e:
        net.createFlattenLayer("flatten", [1, 4096, 1, 1])
    assert "[1, 512, 7, 7]" in str(e.value) and "25088" in str(e.value)
    net.createFlattenLayer("flatten", [1, 512, 7, 7])     # the input shape is accepted too
    assert net.getLayerOutputShape(0) == (1, 25088, 1, 1)


def test_bad_hyper_parameters():
    net = new_net()
    net.setInputShape(1, 3, 4, 4)
    with pytest.raises(pycnml.CnmlError, match=r"'conv1'.*empty output"):
        net.createConvLayer("conv1", 8, 7, 1, 1, 0, QP)
    with pytest.raises(pycnml.CnmlError, match="kernel_size must be a positive integer"):
        net.createPoolingLayer("pool1", 0, 2)
    with pytest.raises(pycnml.CnmlError, match="QuantParam"):
        net.createMlpLayer("fc", 3, (1, 1.0))
    with pytest.raises(pycnml.CnmlError, match="axis"):
        net.createSoftmaxLayer("sm", 4)
    with pytest.raises(pycnml.CnmlError, match="core_version"):
        new_net(16, 99)
