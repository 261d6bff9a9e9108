"""pycnnl: the newer edition's DLP API (CNNL, float32), on the vendor's card or on a CPU emulator.

``PYCNNL_BACKEND`` selects the backend when the package is first imported:
``emulator`` (the default) runs everything on the CPU in float32 with the card's NHWC
layouts and SWIG's argument conversions; ``hardware`` passes straight through to the
vendor's compiled ``_pycnnl`` (looked up in ``PYCNNL_VENDOR_PATH`` and on sys.path).
The emulator shares its core (kernels, device model, vendor lookup) with ``pycnml``,
so importing pycnnl's emulator imports pycnml too. See README.md.
"""
from __future__ import annotations

import os as _os
from pathlib import Path as _Path

_REQUESTED = _os.environ.get("PYCNNL_BACKEND", "emulator").strip().lower() or "emulator"

if _REQUESTED == "emulator":
    try:
        from pycnml import devmodel
        from pycnml.devmodel import format_profile, modelled_totals
    except ImportError as _exc:
        raise ImportError(
            f"pycnnl's emulator uses the kit's pycnml package (its shared core) and importing it "
            f"failed: {_exc}. With PYCNML_BACKEND=hardware pycnml needs the old vendor module; "
            "unset PYCNML_BACKEND to use pycnnl's emulator.") from _exc
    from .errors import CnnlError, CnnlIndexError
    from .net import CnnlNet
    from .swigtypes import (DoubleVector, DoubleVector2, FloatVector, FloatVector2, IntVector,
                            IntVector2)
    from .unused import *  # noqa: F401,F403  (exported by the vendor module, unused by the labs)
    from .unused import __all__ as _UNUSED_NAMES
    from . import quirks

    _BACKEND = "emulator"
    _ORIGIN = "CPU emulator (numpy, float32), modelled MLU times"
    __all__ = ["CnnlNet", "IntVector", "FloatVector", "DoubleVector", "IntVector2",
               "FloatVector2", "DoubleVector2", "CnnlError", "CnnlIndexError", "backend_name",
               "backend_info", "devmodel", "format_profile", "modelled_totals", "quirks",
               *_UNUSED_NAMES]
elif _REQUESTED == "hardware":
    from pycnml.vendor import SwigModule as _SwigModule, load_swig_module as _load

    _vendor = _load(_SwigModule(
        api="pycnnl", ext="_pycnnl", net_class="CnnlNet", path_env="PYCNNL_VENDOR_PATH",
        backend_env="PYCNNL_BACKEND", package_init=_Path(__file__).resolve()))
    globals().update({k: v for k, v in vars(_vendor).items() if not k.startswith("_")})
    _BACKEND = "hardware"
    _ORIGIN = f"vendor module {getattr(_vendor, '__file__', '?')}"
    __all__ = [k for k in vars(_vendor) if not k.startswith("_")] + ["backend_name", "backend_info"]
else:
    raise ImportError(
        f"PYCNNL_BACKEND={_REQUESTED!r} is not a pycnnl backend; use 'emulator' (CPU, the "
        "default) or 'hardware' (the vendor's compiled _pycnnl on an MLU machine)")


def backend_name() -> str:
    """'emulator' or 'hardware'."""
    return _BACKEND


def backend_info() -> str:
    """One line for status printing: backend name and where it comes from."""
    return f"pycnnl backend: {_BACKEND} ({_ORIGIN})"
