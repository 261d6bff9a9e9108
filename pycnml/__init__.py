"""pycnml: the course's DLP API, on the vendor's card or on a CPU emulator.

``PYCNML_BACKEND`` selects the backend when the package is first imported:
``emulator`` (the default) runs everything on the CPU with the card's numerics;
``hardware`` passes straight through to the vendor's compiled ``_pycnml``
(looked up in ``PYCNML_VENDOR_PATH`` and on sys.path). See README.md.
"""
from __future__ import annotations

import os as _os

from .constants import *  # noqa: F401,F403  (the vendor module exports these names)
from .constants import __all__ as _CONSTANT_NAMES
from .errors import CnmlError, CnmlIndexError
from .quant import QuantParam, QuantTool

_REQUESTED = _os.environ.get("PYCNML_BACKEND", "emulator").strip().lower() or "emulator"

if _REQUESTED == "emulator":
    from .emulator import CnmlNet
    from . import devmodel
    from .devmodel import format_profile, modelled_totals

    _BACKEND = "emulator"
    _ORIGIN = "CPU emulator (numpy), modelled DLP times"
elif _REQUESTED == "hardware":
    from .vendor import load_vendor_module as _load_vendor

    _vendor = _load_vendor()
    # Everything public in the vendor module wins; names it lacks (pure-Python
    # helpers such as QuantTool in some versions) keep the kit's versions.
    globals().update({k: v for k, v in vars(_vendor).items() if not k.startswith("_")})
    _BACKEND = "hardware"
    _ORIGIN = f"vendor module {getattr(_vendor, '__file__', '?')}"
else:
    raise ImportError(
        f"PYCNML_BACKEND={_REQUESTED!r} is not a pycnml backend; use 'emulator' (CPU, the "
        "default) or 'hardware' (the vendor's compiled _pycnml on a DLP machine)")


def backend_name() -> str:
    """'emulator' or 'hardware'."""
    return _BACKEND


def backend_info() -> str:
    """One line for status printing: backend name and where it comes from."""
    return f"pycnml backend: {_BACKEND} ({_ORIGIN})"


__all__ = list(_CONSTANT_NAMES) + [
    "CnmlNet", "QuantParam", "QuantTool", "CnmlError", "CnmlIndexError",
    "backend_name", "backend_info",
]
if _BACKEND == "emulator":
    __all__ += ["devmodel", "format_profile", "modelled_totals"]
