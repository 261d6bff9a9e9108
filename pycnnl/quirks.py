"""Every behaviour of the emulated pycnnl that is a choice, with where it comes from.

The code reads the constants below; :data:`QUIRKS` records, for each, the source and
how firm it is. Sources, as pycnnl/README.md names them:

* ``cxx``: the pycnnl C++ and SWIG interface of the course (include/net.h, layers.h,
  tool.h, src/net.cc, layers.cc, swig/pycnnl.i and the generated pycnnl.py, SWIG 3.0.12),
  whose only public copy is HuskyRye/AICS ``pycnnl/cnnl_python/``;
* ``stub``: the Python stub MosRat/ucas-aics ``labs/chap3/pycnnl.py``;
* ``templates``: the newer edition's ``vgg19_demo.py`` and ``mnist_mlp_demo.py`` as several
  course copies carry them;
* ``handout``: the lab handout (one unattributed copy);
* ``swig``: how SWIG 3.0.12's generated code converts Python values (reasoned from SWIG's
  runtime, not run against the real module);
* ``kit``: the emulator's own decision where the device does something undefined.

``single_source`` is True when only one source supports the fact; ``guess`` is True when
no source states it and the emulator infers it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np

# ---- the constants the emulator uses -------------------------------------------------------

#: The largest finite float32: SWIG's float conversion refuses doubles outside +-FLT_MAX.
FLT_MAX = float(np.finfo(np.float32).max)
#: C ``int`` range for int arguments and IntVector elements.
INT_MIN, INT_MAX = -2 ** 31, 2 ** 31 - 1
#: The axis softmax runs over, whatever createSoftmaxLayer's axis says (it is checked to be an
#: int and ignored: CNNL_SOFTMAX_MODE_LOW_DIMENSION).
SOFTMAX_AXIS = -1
#: The shape vector lengths createSoftmaxLayer sets a tensor descriptor for.
SOFTMAX_IN_DIMS = (2, 3)
#: The shape vector lengths createMlpLayer handles (in, weight and out alike).
MLP_DIMS = (2, 3, 4)
#: Only dilation 1 is emulated (see QUIRKS["conv_dilation"]).
CONV_DILATIONS = (1,)
#: One line printed by CnnlNet(), like the real "Init success:"; per-layer prints are not copied.
CONSTRUCTOR_BANNER = "CnnlNet: Init success [pycnnl emulator on the CPU, float32]"


@dataclass(frozen=True)
class Quirk:
    """One behaviour, the emulator's choice, its source and how firm it is."""

    behaviour: str
    source: str
    single_source: bool
    guess: bool


QUIRKS: Dict[str, Quirk] = {
    "float32_everywhere": Quirk(
        "every tensor is float32 (CNNL_DTYPE_FLOAT); no int8, position 1 and scale 1 hard-coded; "
        "the emulator computes each layer in float32", "cxx (layers.cc initparam, net.cc)",
        single_source=True, guess=False),
    "nhwc_device_tensors": Quirk(
        "shape vectors are given in NCHW order but every tensor descriptor is CNNL_LAYOUT_NHWC; "
        "the emulator keeps device memory in NHWC order (input, conv, pool)",
        "cxx (layers.cc), templates (input reshaped [1,H,W,C], no transpose)",
        single_source=False, guess=False),
    "conv_weight_layout": Quirk(
        "conv filter flat in [Cout, kh, kw, Cin] (matconvnet transpose(3,0,1,2)); bias Cout values",
        "templates (TODO 2 comment), cxx (weight desc n=Cout, NHWC)", single_source=False, guess=False),
    "conv_output_shape": Quirk(
        "conv output H = (H + 2*pad - k)//stride + 1, pad on all four sides, bias always on",
        "cxx (net.cc createConvLayer)", single_source=True, guess=False),
    "conv_dilation": Quirk(
        "dilation != 1 raises NotImplementedError: net.cc's shape formula ignores dilation while the "
        "CNNL op applies it, so the net's shapes and the op's output disagree; VGG19 uses 1",
        "cxx (net.cc vs layers.cc initparam), kit", single_source=True, guess=False),
    "pool_max_unpadded": Quirk(
        "max pooling, no padding, output floor((H - k)/stride) + 1", "cxx (net.cc, layers.cc)",
        single_source=True, guess=False),
    "mlp_batch_matmul": Quirk(
        "createMlpLayer is a batch matmul with no transposes (x @ W) plus a bias along the last dim; "
        "FC W flat [in, out] row-major (matconvnet [h,w,Cin,Cout] reshaped, not transposed)",
        "cxx (layers.cc, _is_transa/_is_transb false), templates", single_source=False, guess=False),
    "mlp_batch_copies": Quirk(
        "loadParams gives one batch's weights (prod(weight_shape)/in_shape[0] values) and the device "
        "copies them in_shape[0] times; weight_shape[0] is the batch",
        "cxx (layers.cc CnnlMlpLayer::loadParam), templates (MNIST weight_shape[0] = batch)",
        single_source=False, guess=False),
    "mlp_bias_length": Quirk(
        "the MLP bias has out_shape[-1] values; the C++ uses out_shape[3], which is the same for the "
        "4-element shapes the labs pass and undefined (reads past the vector) for 2 or 3 elements",
        "cxx (layers.cc), kit for 2/3-element shapes", single_source=True, guess=True),
    "no_flatten_layer": Quirk(
        "there is no flatten layer: fc6 reads pool5's NHWC memory as [1,1,1,25088], so the flatten "
        "order is (h, w, c)", "cxx (FLATTEN case empty), templates, both readmes",
        single_source=False, guess=False),
    "softmax_axis_ignored": Quirk(
        "createSoftmaxLayer's axis is ignored: CNNL_SOFTMAX_MODE_LOW_DIMENSION, always the last dim",
        "cxx (layers.cc CnnlSoftmaxLayer::forward)", single_source=True, guess=False),
    "softmax_in_dims": Quirk(
        "createSoftmaxLayer takes a 2- or 3-element in_shape ([1,1,1000]); other lengths leave the "
        "C++ descriptors unset, the emulator raises", "cxx (layers.cc), kit", single_source=True,
        guess=False),
    "output_tuple": Quirk(
        "getOutputData() returns a tuple of Python floats (SWIG's std::vector<float> out conversion); "
        "its length is the product of the last created layer's shape",
        "swig (traits_from_stdseq), cxx (net.cc forward), templates (.index, list, max)",
        single_source=True, guess=False),
    "float_elements": Quirk(
        "a std::vector<float> argument (setInputData, loadParams) accepts a FloatVector or a Python "
        "sequence whose elements are Python floats or ints (numpy.float64 is a float subclass); "
        "numpy.float32/float16/int64 elements, nested sequences (a 2-D array) and values beyond "
        "+-FLT_MAX (inf included) raise SWIG's TypeError",
        "swig (SWIG_AsVal_double: PyFloat_Check or PyLong_Check), handout (float32 fails), "
        "templates (astype(np.float), MNIST tolist() of ints)", single_source=False, guess=True),
    "int_arguments": Quirk(
        "int arguments and IntVector elements accept Python ints (bool included) only; numpy.int64 "
        "and floats raise SWIG's TypeError, values outside the C int range OverflowError",
        "swig (SWIG_AsVal_long: PyLong_Check)", single_source=True, guess=True),
    "swig_vectors": Quirk(
        "IntVector(n) and the other vector types behave like SWIG's std::vector proxies: n zeros, "
        "v[i] = x without growing, negative indices from the end, IndexError('index out of range'), "
        "NotImplementedError for an element of the wrong type (overloaded __setitem__)",
        "swig (pycnnl.i templates, std_vector.i)", single_source=True, guess=True),
    "overloads": Quirk(
        "setInputShape and setOutputShape are overloaded (4 or 2; 4, 3 or 2 ints): other argument "
        "lists raise NotImplementedError('Wrong number or type of arguments for overloaded "
        "function ...')", "cxx (net.h), swig", single_source=True, guess=True),
    "checks_added": Quirk(
        "the device checks almost nothing; the emulator raises CnnlError where it would exit(1) "
        "(forward with an unloaded conv/MLP, loadParams on another layer type) and also where it "
        "would silently read or write the wrong memory: a shape vector that disagrees with the "
        "previous layer's output, loadParams or setInputData of the wrong length, an index out of "
        "range, a call before setInputShape, getOutputData before forward", "cxx, kit",
        single_source=True, guess=False),
    "shape_match_rule": Quirk(
        "conv and pool in_shape must equal the previous 4-element output shape exactly; MLP and "
        "softmax in_shape must hold as many values as the previous output (they reinterpret the "
        "same memory, e.g. pool5 [1,512,7,7] as [1,1,1,25088]); the first layer compares with "
        "setInputShape", "kit (from how net.cc passes device pointers)", single_source=True,
        guess=False),
    "prints": Quirk(
        "CnnlNet() prints one line; the real module's C++ prints (\"creating relu layer ...\", "
        "\"loading params for layer ...\") are not reproduced", "cxx, kit", single_source=True,
        guess=False),
    "unused_exports": Quirk(
        "setOutputShape, QuantParam, QuantTool, Layer, Shape2D, Kernel, Pad, DataType, ShapeParam, "
        "DataAddress, HostTimer, the tool functions and the LayerType constants are exported and "
        "unused by the labs; the structs keep their fields, the device-side tool functions raise",
        "cxx (tool.h, net.h, generated pycnnl.py), stub", single_source=False, guess=False),
}
