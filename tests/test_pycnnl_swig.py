"""pycnnl's SWIG surface: the std::vector proxies and the argument conversions (pycnnl/quirks.py)."""
import numpy as np
import pytest

import pycnnl
from pycnnl import swigtypes


# ---- IntVector and friends ---------------------------------------------------------------------

def test_intvector_is_fixed_length_zeros_with_item_assignment():
    v = pycnnl.IntVector(4)
    assert len(v) == 4 and list(v) == [0, 0, 0, 0] and v.size() == 4
    v[0], v[1], v[2], v[3] = 1, 3, 224, 224
    assert list(v) == [1, 3, 224, 224]
    assert v[-1] == 224 and v[-4] == 1                     # negative indices count from the end
    assert [x for x in v] == [1, 3, 224, 224] and bool(v) and not pycnnl.IntVector(0)
    assert len(v) == 4                                       # assignment never grows it


@pytest.mark.parametrize("index", [4, -5, 100])
def test_intvector_index_errors_are_swigs(index):
    v = pycnnl.IntVector(4)
    with pytest.raises(IndexError, match="^index out of range$"):
        v[index] = 1
    with pytest.raises(IndexError, match="^index out of range$"):
        v[index]


@pytest.mark.parametrize("value", [1.5, np.int64(3), "3", None])
def test_intvector_element_of_the_wrong_type_is_an_overload_error(value):
    v = pycnnl.IntVector(4)
    with pytest.raises(NotImplementedError, match="overloaded function 'IntVector___setitem__'"):
        v[0] = value
    assert list(v) == [0, 0, 0, 0]


def test_intvector_constructors_and_methods():
    assert list(pycnnl.IntVector([1, 2, 3])) == [1, 2, 3]
    assert list(pycnnl.IntVector(3, 7)) == [7, 7, 7]
    copy = pycnnl.IntVector(pycnnl.IntVector([5, 6]))
    assert list(copy) == [5, 6]
    copy.append(8)
    copy.push_back(9)
    assert list(copy) == [5, 6, 8, 9] and copy.pop() == 9 and copy.back() == 8 and copy.front() == 5
    copy.resize(5)
    assert list(copy) == [5, 6, 8, 0, 0]
    assert list(copy[1:3]) == [6, 8] and isinstance(copy[1:3], pycnnl.IntVector)
    copy.clear()
    assert copy.empty()
    with pytest.raises(IndexError):
        copy.pop()
    for bad in ([1.0], -1, 2.0, (1, "a")):
        with pytest.raises(NotImplementedError, match="new_IntVector"):
            pycnnl.IntVector(bad)
    with pytest.raises(NotImplementedError, match="IntVector___getitem__"):
        pycnnl.IntVector(2)[np.int64(0)]
    with pytest.raises(NotImplementedError):
        pycnnl.IntVector(1)[0] = 2 ** 31                    # outside C int: no overload fits


def test_float_and_double_vectors_store_their_c_types():
    f = pycnnl.FloatVector(2)
    f[0] = 0.1
    assert f[0] == float(np.float32(0.1)) != 0.1          # stored as float32
    d = pycnnl.DoubleVector(1)
    d[0] = 0.1
    assert d[0] == 0.1
    with pytest.raises(NotImplementedError):
        f[1] = np.float32(1)                                # SWIG's float check refuses it too
    v2 = pycnnl.IntVector2([[1, 2], [3]])
    assert len(v2) == 2 and v2[0] == (1, 2) and v2[1] == (3,)
    assert repr(pycnnl.IntVector([1])).startswith("<pycnnl.IntVector; proxy of")


# ---- conversions of arguments -----------------------------------------------------------------

def test_float_sequences_accept_python_numbers_and_float64():
    conv = swigtypes.as_float_array
    for ok in (np.arange(3, dtype=np.float64), [1.0, 2.0, 3.0], (1, 2, 3), [np.float64(1), 2, True],
               pycnnl.FloatVector([1.0, 2.0, 3.0])):
        out = conv(ok, "CnnlNet_setInputData", 2)
        assert out.dtype == np.float32 and out.size == 3


@pytest.mark.parametrize("bad, needle", [
    (np.arange(3, dtype=np.float32), "float32"),
    ([np.float32(1.0), 2.0], "element 0 is a numpy.float32"),
    (np.arange(3), "int64"),
    (np.zeros((2, 2)), "2-D"),
    ([1.0, float("inf")], "beyond the float32 range"),
    ([1.0, "2"], "element 1 is a str"),
    ((x for x in [1.0]), "not a sequence"),
    (pycnnl.DoubleVector([1.0]), "DoubleVector"),
])
def test_float_sequences_refuse_what_swig_refuses(bad, needle):
    with pytest.raises(TypeError) as info:
        swigtypes.as_float_array(bad, "CnnlNet_setInputData", 2)
    text = str(info.value)
    assert text.startswith("in method 'CnnlNet_setInputData', argument 2 of type "
                           "'std::vector< float,std::allocator< float > >'")
    assert needle in text and "astype(np.float64)" in text


def test_int_arguments_take_python_ints_only():
    assert swigtypes.as_int(3, "m", 4) == 3 and swigtypes.as_int(True, "m", 4) == 1
    for bad in (3.0, np.int64(3), "3"):
        with pytest.raises(TypeError, match=r"^in method 'm', argument 4 of type 'int'"):
            swigtypes.as_int(bad, "m", 4)
    with pytest.raises(OverflowError, match="argument 4 of type 'int'"):
        swigtypes.as_int(2 ** 31, "m", 4)
    assert swigtypes.as_int_list([1, 2], "m", 3) == [1, 2]
    with pytest.raises(TypeError, match="element 1 is numpy.int64"):
        swigtypes.as_int_list([1, np.int64(2)], "m", 3)
