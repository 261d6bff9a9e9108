"""Loading a vendor's compiled SWIG module (``PYCNML_BACKEND=hardware``, ``PYCNNL_BACKEND=hardware``).

The course's modules are SWIG wrappers: a compiled extension (``_pycnml``, ``_pycnnl``,
e.g. ``_pycnml.so``) and, beside it, SWIG's Python proxy (``pycnml.py``, ``pycnnl.py``).
Because the kit's packages carry the same names, the proxy is loaded under a private
name (``_pycnml_vendor_proxy``, ``_pycnnl_vendor_proxy``) and its names are re-exported
unchanged. Both APIs use :func:`load_swig_module`; :func:`load_vendor_module` is pycnml's.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

VENDOR_PATH_ENV = "PYCNML_VENDOR_PATH"
_PROXY_NAME = "_pycnml_vendor_proxy"


@dataclass(frozen=True)
class SwigModule:
    """Where one API's vendor build is looked for, and what to name in errors."""

    api: str              # the kit's package name, e.g. "pycnml"
    ext: str              # the compiled extension, e.g. "_pycnml"
    net_class: str        # a class the module must have, e.g. "CnmlNet"
    path_env: str         # folders to put first on sys.path, e.g. "PYCNML_VENDOR_PATH"
    backend_env: str      # the variable that chose the hardware, e.g. "PYCNML_BACKEND"
    package_init: Path    # the kit's own __init__.py, never mistaken for the proxy

    @property
    def proxy_file(self) -> str:
        return f"{self.api}.py"

    @property
    def private_name(self) -> str:
        return f"_{self.api}_vendor_proxy"


PYCNML = SwigModule(api="pycnml", ext="_pycnml", net_class="CnmlNet", path_env=VENDOR_PATH_ENV,
                    backend_env="PYCNML_BACKEND",
                    package_init=Path(__file__).resolve().parent / "__init__.py")


def _vendor_dirs(path_env: str = VENDOR_PATH_ENV):
    raw = os.environ.get(path_env, "")
    return [d for d in raw.split(os.pathsep) if d]


def load_swig_module(mod: SwigModule) -> ModuleType:
    """Import the vendor's module ``mod``; ImportError naming what was looked for, and where, if absent."""
    dirs = _vendor_dirs(mod.path_env)
    for d in reversed(dirs):
        if d not in sys.path:
            sys.path.insert(0, d)
    spec = importlib.util.find_spec(mod.ext)
    if spec is None or spec.origin is None:
        where = (f"{mod.path_env}={os.pathsep.join(dirs)}" if dirs
                 else f"{mod.path_env} (not set)")
        raise ImportError(
            f"{mod.backend_env}=hardware: the vendor's compiled module '{mod.ext}' ({mod.ext}*.so "
            f"built from the course's {mod.api} sources on a DLP machine) was not found in {where} "
            f"or on sys.path. Put the folder holding {mod.ext}*.so and its {mod.proxy_file} in "
            f"{mod.path_env}, or use the CPU emulator: unset {mod.backend_env} (or set "
            f"{mod.backend_env}=emulator).")
    ext_dir = Path(spec.origin).resolve().parent
    proxy = ext_dir / mod.proxy_file
    if proxy.is_file() and proxy.resolve() != mod.package_init:
        if mod.private_name in sys.modules:
            return sys.modules[mod.private_name]
        proxy_spec = importlib.util.spec_from_file_location(mod.private_name, proxy)
        module = importlib.util.module_from_spec(proxy_spec)
        sys.modules[mod.private_name] = module
        proxy_spec.loader.exec_module(module)
        return module
    module = importlib.import_module(mod.ext)
    if not hasattr(module, mod.net_class):
        raise ImportError(
            f"{mod.backend_env}=hardware: found '{mod.ext}' at {spec.origin} but it has no "
            f"{mod.net_class} and there is no SWIG proxy {mod.proxy_file} beside it in {ext_dir}; "
            f"copy the {mod.proxy_file} generated with the extension into that folder.")
    return module


def load_vendor_module() -> ModuleType:
    """pycnml's vendor module (``_pycnml`` and its proxy ``pycnml.py``)."""
    return load_swig_module(PYCNML)
