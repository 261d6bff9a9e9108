"""What the vendor's pycnnl exports and the labs never use (quirks: ``unused_exports``).

The structs of tool.h/net.h keep their fields and C++ defaults so code that touches them
runs; the tool functions act on device memory and raw pointers and raise a CnnlError that
says so. ``QuantParam`` and ``QuantTool`` are pycnml's (same fields and defaults: (1, 1)).
"""
from __future__ import annotations

from pycnml.quant import QuantParam, QuantTool  # noqa: F401  (re-exported)

from .errors import CnnlError

# LayerType (tool.h) has the values of pycnml's enum.
from pycnml.constants import (CAST, CONVOLUTION, FLATTEN, LRN, MLP, NORMALIZE, POOL,  # noqa: F401
                              RELU, SOFTMAX)

OPT_LEN = 2        # tool.h's #define, exported by SWIG as a constant


class _Struct:
    """A plain C struct: the fields of ``_fields`` with their C++ default values."""

    _fields: dict = {}

    def __init__(self):
        for key, value in self._fields.items():
            setattr(self, key, value() if callable(value) else value)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._fields)
        return f"<pycnnl.{type(self).__name__} {inner}>"


class Kernel(_Struct):
    _fields = {"kh": 0, "kw": 0, "sh": 1, "sw": 1, "dh": 1, "dw": 1}


class Shape2D(_Struct):
    _fields = {"n": 0, "c": 0, "h": 0, "w": 0}

    def size(self) -> int:
        return self.n * self.c * self.h * self.w


class Pad(_Struct):
    _fields = {"pt": 0, "pb": 0, "pl": 0, "pr": 0}


class DataType(_Struct):
    _fields = {"input_dtype": None, "weight_dtype": None, "output_dtype": None, "layout": None}


class ShapeParam(_Struct):
    _fields = {"input": Shape2D, "weight": Shape2D, "output": Shape2D, "bias": Shape2D,
               "kernel": Kernel, "pad": Pad, "datainfo": DataType, "has_bias": False,
               "group_count": 1}


class DataAddress(_Struct):
    _fields = {"cpu_data": None, "fp_data": None, "host": None, "device": None, "mlu_size": 0,
               "fp_size": 0}


class HostTimer(_Struct):
    _fields = {"t0": None, "t1": None, "tv_nsec": 0.0, "tv_sec": 0.0, "tv_usec": 0.0}

    def start(self) -> None:
        import time
        self.t0 = time.monotonic_ns()

    def stop(self) -> None:
        import time
        self.t1 = time.monotonic_ns()
        self.tv_nsec = float(self.t1 - (self.t0 or self.t1))
        self.tv_sec = self.tv_nsec / 1e9
        self.tv_usec = self.tv_nsec / 1e3


class Layer:
    """net.h's ``Layer`` record (a layer pointer, name, type, isParamLoaded). SWIG exports it;
    it cannot be built from Python without a CnnlLayer pointer."""

    def __init__(self, *args):
        raise CnnlError("pycnnl.Layer is net.h's internal record of a layer; it is exported but "
                        "not constructible from Python (use CnnlNet's create*Layer methods)")


def _device_tool(name: str):
    def tool(*args, **kwargs):
        raise CnnlError(f"pycnnl.{name} is one of tool.h's device helpers (raw pointers, CNNL "
                        "descriptors); the labs never call it and the emulator does not provide it")
    tool.__name__ = name
    tool.__doc__ = f"tool.h's {name}: exported by the vendor module, unused, not emulated."
    return tool


TOOL_FUNCTIONS = ("initDevice", "dataSize", "convertCnnlDtypeToCnrt", "getPosition",
                  "getPositionAndScale", "castData", "parserParam", "setTensorDesc",
                  "mallocDataRandf", "saveDataToFile", "saveHexDataToFile", "computeDiff1",
                  "computeDiff2")
globals().update({name: _device_tool(name) for name in TOOL_FUNCTIONS})

__all__ = ["CAST", "CONVOLUTION", "LRN", "MLP", "NORMALIZE", "RELU", "SOFTMAX", "POOL", "FLATTEN",
           "OPT_LEN", "QuantParam", "QuantTool", "Kernel", "Shape2D", "Pad", "DataType",
           "ShapeParam", "DataAddress", "HostTimer", "Layer", *TOOL_FUNCTIONS]
