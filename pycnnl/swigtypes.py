"""SWIG 3.0.12's argument conversions and std::vector proxies, as the course's pycnnl has them.

What goes in: Python values passed to CnnlNet methods. What comes out: plain ints, strs,
lists of ints and float32 arrays, or the exception SWIG would raise (its message first,
then a hint of what to pass). The rules are reasoned from SWIG's runtime (pycnnl/quirks.py:
``float_elements``, ``int_arguments``, ``swig_vectors``, ``overloads``):

* ``int``: ``PyLong_Check``, so Python ints and bools; numpy integers and floats are refused;
* ``float``/``double`` elements: ``PyFloat_Check`` (numpy.float64 subclasses float) or
  ``PyLong_Check``; numpy.float32 is neither and is refused;
* ``std::vector<T>``: the matching proxy object, or any Python sequence whose elements all
  convert; anything else (a generator, a 2-D array whose elements are arrays) is refused.
"""
from __future__ import annotations

from typing import Callable, List, Sequence

import numpy as np

from . import quirks as Q

_FLOAT_VECTOR = "std::vector< float,std::allocator< float > >"
_INT_VECTOR = "std::vector< int,std::allocator< int > >"


def _type_label(value) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__name__}"


def _arg_message(method: str, argno: int, ctype: str) -> str:
    return f"in method '{method}', argument {argno} of type '{ctype}'"


def is_sequence(value) -> bool:
    """Python's PySequence_Check: the type has __getitem__ and is not a dict."""
    return hasattr(type(value), "__getitem__") and not isinstance(value, dict)


# ---- scalars ------------------------------------------------------------------------------

def as_int(value, method: str, argno: int) -> int:
    """A C ``int`` argument: TypeError unless a Python int, OverflowError outside the C range."""
    if not isinstance(value, int):
        raise TypeError(f"{_arg_message(method, argno, 'int')} (got {_type_label(value)} "
                        f"{value!r}; pass a Python int, e.g. int(x))")
    if not Q.INT_MIN <= value <= Q.INT_MAX:
        raise OverflowError(f"{_arg_message(method, argno, 'int')} ({value} is outside the C int range)")
    return int(value)


def as_string(value, method: str, argno: int) -> str:
    """A ``std::string`` argument: a Python str."""
    if not isinstance(value, str):
        raise TypeError(f"{_arg_message(method, argno, 'std::string')} (got {_type_label(value)} "
                        f"{value!r}; the layer name must be a str)")
    return value


def _int_element_ok(value) -> bool:
    return isinstance(value, int) and Q.INT_MIN <= value <= Q.INT_MAX


def _float_element(value, limit: bool) -> float:
    """A double from a Python float or int, or ValueError (the element SWIG refuses)."""
    if isinstance(value, float):
        v = float(value)
    elif isinstance(value, int):
        try:
            v = float(value)
        except OverflowError:
            raise ValueError("an int too large for a double") from None
    else:
        raise ValueError(f"a {_type_label(value)}")
    if limit and (v > Q.FLT_MAX or v < -Q.FLT_MAX):
        raise ValueError(f"{v!r}, beyond the float32 range")
    return v


# ---- sequences ----------------------------------------------------------------------------

def _beyond_float32(arr: np.ndarray) -> bool:
    """Whether a float64 array holds a value outside +-FLT_MAX (inf included; NaN passes).

    Two reductions and no temporaries: fc6's 100 M weights must not be copied for this.
    """
    hi, lo = arr.max(initial=-np.inf), arr.min(initial=np.inf)
    if np.isnan(hi) or np.isnan(lo):
        finite = arr[~np.isnan(arr)]
        hi, lo = finite.max(initial=-np.inf), finite.min(initial=np.inf)
    return bool(hi > Q.FLT_MAX or lo < -Q.FLT_MAX)


def _array_refusal(arr: np.ndarray):
    """Why SWIG would refuse this numpy array as a sequence of floats, or None if it accepts it."""
    if arr.ndim != 1:
        return (f"a {arr.ndim}-D numpy array (its elements are "
                f"{'arrays' if arr.ndim else 'not a sequence'}); flatten it first")
    if arr.dtype == np.float64:
        return None
    if arr.dtype == object:
        return "object"
    return (f"a numpy array of {arr.dtype} (its elements are numpy.{arr.dtype} scalars, neither "
            "Python floats nor ints)")


def as_float_array(value, method: str, argno: int, limit: bool = True) -> np.ndarray:
    """A ``std::vector<float>`` argument as a float32 array (float64 for DoubleVector: limit False).

    Accepts the matching vector proxy or a sequence of Python floats / ints (numpy.float64
    included). Refuses float32 arrays and elements, as the real module does.
    """
    ctype = _FLOAT_VECTOR if limit else "std::vector< double,std::allocator< double > >"
    want = FloatVector if limit else DoubleVector
    dtype = np.float32 if limit else np.float64
    hint = ("; pass a flat float64 array (x.flatten().astype(np.float64)) or a list of Python "
            "floats (x.flatten().tolist()); see pycnnl/README.md, 'float64 input'")
    if isinstance(value, _SwigVector):
        if type(value) is not want:
            raise TypeError(f"{_arg_message(method, argno, ctype)} (got a {type(value).__name__}{hint})")
        return np.array(value._items, dtype=dtype)
    if isinstance(value, np.ndarray):
        why = _array_refusal(value)
        if why is None:
            if limit and _beyond_float32(value):
                raise TypeError(f"{_arg_message(method, argno, ctype)} (a value is beyond the "
                                f"float32 range, e.g. inf{hint})")
            return value.astype(dtype)
        if why != "object":
            raise TypeError(f"{_arg_message(method, argno, ctype)} (got {why}{hint})")
    if not is_sequence(value) or isinstance(value, (str, bytes)):
        raise TypeError(f"{_arg_message(method, argno, ctype)} (got {_type_label(value)}, not a "
                        f"sequence{hint})")
    items = value if isinstance(value, (list, tuple)) else list(value)
    # Fast path: one C-level pass over the element types, then numpy does the conversion.
    if all(issubclass(k, (float, int)) for k in set(map(type, items))):
        try:
            arr = np.array(items, dtype=np.float64)
        except OverflowError:
            arr = None           # an int too large for a double: the loop below names it
        if arr is not None and not (limit and _beyond_float32(arr)):
            return arr.astype(dtype)
    for i, item in enumerate(items):
        try:
            _float_element(item, limit)
        except ValueError as exc:
            raise TypeError(f"{_arg_message(method, argno, ctype)} (element {i} is {exc}{hint})") from None
    raise AssertionError("unreachable: some element was refused above")


def as_int_list(value, method: str, argno: int) -> List[int]:
    """A ``std::vector<int>`` argument: an IntVector or a sequence of Python ints."""
    hint = "; build it with pycnnl.IntVector(n) and v[i] = int(...), or pass a list of Python ints"
    if isinstance(value, _SwigVector):
        if type(value) is not IntVector:
            raise TypeError(f"{_arg_message(method, argno, _INT_VECTOR)} (got a "
                            f"{type(value).__name__}{hint})")
        return list(value._items)
    if not is_sequence(value) or isinstance(value, (str, bytes)):
        raise TypeError(f"{_arg_message(method, argno, _INT_VECTOR)} (got {_type_label(value)}{hint})")
    items = list(value)
    for i, item in enumerate(items):
        if not _int_element_ok(item):
            raise TypeError(f"{_arg_message(method, argno, _INT_VECTOR)} (element {i} is "
                            f"{_type_label(item)} {item!r}{hint})")
    return [int(v) for v in items]


def overload_error(function: str, prototypes: Sequence[str]) -> NotImplementedError:
    """SWIG's error for an overloaded function called with arguments no overload takes."""
    lines = "".join(f"    {p}\n" for p in prototypes)
    return NotImplementedError(f"Wrong number or type of arguments for overloaded function "
                               f"'{function}'.\n  Possible C/C++ prototypes are:\n{lines}")


# ---- the std::vector proxies ---------------------------------------------------------------

class _SwigVector:
    """A std::vector<T> proxy: fixed length unless resized, items converted on the way in.

    Subclasses set ``_ctype`` (the C++ element type, for messages) and ``_convert`` (an
    element in, the stored value out, ValueError if SWIG would refuse it).
    """

    _ctype = "T"
    _convert: Callable = staticmethod(lambda v: v)

    def __init__(self, *args):
        name = type(self).__name__
        protos = [f"std::vector< {self._ctype} >::vector()",
                  f"std::vector< {self._ctype} >::vector(std::vector< {self._ctype} > const &)",
                  f"std::vector< {self._ctype} >::vector(std::vector< {self._ctype} >::size_type)",
                  f"std::vector< {self._ctype} >::vector(std::vector< {self._ctype} >::size_type,"
                  f"std::vector< {self._ctype} >::value_type const &)"]
        if not args:
            self._items = []
        elif len(args) == 1 and isinstance(args[0], int) and args[0] >= 0:
            self._items = [self._convert(self._default())] * args[0] if args[0] else []
        elif len(args) == 1 and (isinstance(args[0], type(self)) or
                                 (is_sequence(args[0]) and not isinstance(args[0], (str, bytes, _SwigVector)))):
            try:
                self._items = [self._convert(v) for v in args[0]]
            except (ValueError, TypeError):
                raise overload_error(f"new_{name}", protos) from None
        elif len(args) == 2 and isinstance(args[0], int) and args[0] >= 0:
            try:
                value = self._convert(args[1])
            except (ValueError, TypeError):
                raise overload_error(f"new_{name}", protos) from None
            self._items = [value] * args[0]
        else:
            raise overload_error(f"new_{name}", protos)

    @staticmethod
    def _default():
        return 0

    # index handling as swig::check_index: -size <= i < size
    def _index(self, i: int) -> int:
        n = len(self._items)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("index out of range")
        return i

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self):
        return iter(list(self._items))

    def __getitem__(self, key):
        if isinstance(key, slice):
            new = type(self)()
            new._items = self._items[key]
            return new
        if not isinstance(key, int):
            raise overload_error(f"{type(self).__name__}___getitem__",
                                 [f"std::vector< {self._ctype} >::__getitem__(PySliceObject *)",
                                  f"std::vector< {self._ctype} >::__getitem__(std::vector< "
                                  f"{self._ctype} >::difference_type) const"])
        return self._items[self._index(key)]

    def __setitem__(self, key, value):
        protos = [f"std::vector< {self._ctype} >::__setitem__(PySliceObject *,std::vector< "
                  f"{self._ctype} > const &)",
                  f"std::vector< {self._ctype} >::__setitem__(PySliceObject *)",
                  f"std::vector< {self._ctype} >::__setitem__(std::vector< {self._ctype} "
                  f">::difference_type,std::vector< {self._ctype} >::value_type const &)"]
        if isinstance(key, slice):
            try:
                items = [self._convert(v) for v in value]
            except (ValueError, TypeError):
                raise overload_error(f"{type(self).__name__}___setitem__", protos) from None
            self._items[key] = items
            return
        if not isinstance(key, int):
            raise overload_error(f"{type(self).__name__}___setitem__", protos)
        try:
            converted = self._convert(value)
        except (ValueError, TypeError):
            raise overload_error(f"{type(self).__name__}___setitem__", protos) from None
        self._items[self._index(key)] = converted

    def __delitem__(self, key):
        if isinstance(key, slice):
            del self._items[key]
        else:
            del self._items[self._index(key)]

    def __repr__(self) -> str:
        return (f"<pycnnl.{type(self).__name__}; proxy of an emulated std::vector< {self._ctype} > "
                f"{self._items!r} >")

    # the std::vector methods SWIG exposes (iterator-based ones are not emulated)
    def size(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def clear(self) -> None:
        self._items.clear()

    def append(self, x) -> None:
        self._items.append(self._checked(x, "append"))

    push_back = append

    def pop(self):
        if not self._items:
            raise IndexError("pop from empty container")
        return self._items.pop()

    def pop_back(self) -> None:
        if self._items:
            self._items.pop()

    def front(self):
        return self._items[0]

    def back(self):
        return self._items[-1]

    def resize(self, n, x=None) -> None:
        if not isinstance(n, int) or n < 0:
            raise TypeError(f"in method '{type(self).__name__}_resize', argument 2 of type "
                            f"'std::vector< {self._ctype} >::size_type'")
        fill = self._convert(self._default()) if x is None else self._checked(x, "resize")
        del self._items[n:]
        self._items.extend([fill] * (n - len(self._items)))

    def assign(self, n, x) -> None:
        self._items = []
        self.resize(n, x)

    def _checked(self, x, method: str):
        try:
            return self._convert(x)
        except (ValueError, TypeError):
            raise TypeError(f"in method '{type(self).__name__}_{method}', argument 2 of type "
                            f"'std::vector< {self._ctype} >::value_type'") from None


def _to_int(v) -> int:
    if not _int_element_ok(v):
        raise ValueError(v)
    return int(v)


def _to_float32(v) -> float:
    return float(np.float32(_float_element(v, limit=True)))


def _to_double(v) -> float:
    return _float_element(v, limit=False)


class IntVector(_SwigVector):
    """``std::vector<int>``: ``IntVector(4)`` is [0, 0, 0, 0]; set items with ``v[i] = int``."""

    _ctype = "int"
    _convert = staticmethod(_to_int)


class FloatVector(_SwigVector):
    """``std::vector<float>``: items are stored as float32 and read back as Python floats."""

    _ctype = "float"
    _convert = staticmethod(_to_float32)


class DoubleVector(_SwigVector):
    """``std::vector<double>``."""

    _ctype = "double"
    _convert = staticmethod(_to_double)


def _nested(inner: type):
    """Element converter of a vector of vectors: an ``inner`` proxy or a sequence, kept as a
    tuple (SWIG returns a nested std::vector to Python as a tuple)."""
    def convert(v):
        if isinstance(v, _SwigVector) and not isinstance(v, inner):
            raise ValueError(v)
        if not isinstance(v, _SwigVector) and (not is_sequence(v) or isinstance(v, (str, bytes))):
            raise ValueError(v)
        try:
            return tuple(inner(v)._items)
        except NotImplementedError:
            raise ValueError(v) from None
    return staticmethod(convert)


class _Vector2(_SwigVector):
    @staticmethod
    def _default():
        return ()


class IntVector2(_Vector2):
    """``std::vector<std::vector<int>>`` (exported, unused by the labs)."""

    _ctype = "std::vector< int >"
    _convert = _nested(IntVector)


class FloatVector2(_Vector2):
    """``std::vector<std::vector<float>>`` (exported, unused by the labs)."""

    _ctype = "std::vector< float >"
    _convert = _nested(FloatVector)


class DoubleVector2(_Vector2):
    """``std::vector<std::vector<double>>`` (exported, unused by the labs)."""

    _ctype = "std::vector< double >"
    _convert = _nested(DoubleVector)
