"""Loading the vendor's compiled pycnml (``PYCNML_BACKEND=hardware``).

The course's module is a SWIG wrapper: a compiled extension ``_pycnml`` (e.g.
``_pycnml.so``) and, beside it, SWIG's Python proxy ``pycnml.py``. Because this
package is itself called ``pycnml``, the proxy is loaded under the private name
``_pycnml_vendor_proxy`` and its names are re-exported unchanged.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

VENDOR_PATH_ENV = "PYCNML_VENDOR_PATH"
_PROXY_NAME = "_pycnml_vendor_proxy"


def _vendor_dirs():
    raw = os.environ.get(VENDOR_PATH_ENV, "")
    return [d for d in raw.split(os.pathsep) if d]


def load_vendor_module() -> ModuleType:
    """Import the vendor's module; ImportError naming what was looked for, and where, if absent."""
    dirs = _vendor_dirs()
    for d in reversed(dirs):
        if d not in sys.path:
            sys.path.insert(0, d)
    spec = importlib.util.find_spec("_pycnml")
    if spec is None or spec.origin is None:
        where = (f"{VENDOR_PATH_ENV}={os.pathsep.join(dirs)}" if dirs
                 else f"{VENDOR_PATH_ENV} (not set)")
        raise ImportError(
            "PYCNML_BACKEND=hardware: the vendor's compiled module '_pycnml' (_pycnml*.so "
            f"built from the course's pycnml sources on a DLP machine) was not found in {where} "
            "or on sys.path. Put the folder holding _pycnml*.so and its pycnml.py in "
            f"{VENDOR_PATH_ENV}, or use the CPU emulator: unset PYCNML_BACKEND (or set "
            "PYCNML_BACKEND=emulator).")
    ext_dir = Path(spec.origin).resolve().parent
    proxy = ext_dir / "pycnml.py"
    if proxy.is_file() and proxy.resolve() != Path(__file__).resolve().parent / "__init__.py":
        if _PROXY_NAME in sys.modules:
            return sys.modules[_PROXY_NAME]
        proxy_spec = importlib.util.spec_from_file_location(_PROXY_NAME, proxy)
        module = importlib.util.module_from_spec(proxy_spec)
        sys.modules[_PROXY_NAME] = module
        proxy_spec.loader.exec_module(module)
        return module
    module = importlib.import_module("_pycnml")
    if not hasattr(module, "CnmlNet"):
        raise ImportError(
            f"PYCNML_BACKEND=hardware: found '_pycnml' at {spec.origin} but it has no CnmlNet "
            f"and there is no SWIG proxy pycnml.py beside it in {ext_dir}; copy the pycnml.py "
            "generated with the extension into that folder.")
    return module
