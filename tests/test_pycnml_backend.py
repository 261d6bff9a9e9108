"""Backend selection (PYCNML_BACKEND) in real subprocesses, and the constructor's banner."""
import contextlib
import io
import os
import subprocess
import sys
import textwrap

import pytest

import pycnml
from grader.kit.paths import REPO_ROOT


def run_python(code, **env):
    full = dict(os.environ)
    full.pop("PYCNML_BACKEND", None)
    full.pop("PYCNML_VENDOR_PATH", None)
    full.update(env)
    full["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full, cwd=REPO_ROOT, timeout=60)


def test_default_backend_is_emulator():
    r = run_python("import pycnml; print(pycnml.backend_name()); print(pycnml.backend_info())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "emulator"
    assert "emulator" in r.stdout.splitlines()[1]


def test_hardware_backend_without_vendor_module_explains(tmp_path):
    r = run_python("import pycnml", PYCNML_BACKEND="hardware", PYCNML_VENDOR_PATH=str(tmp_path))
    assert r.returncode != 0
    err = r.stderr.splitlines()[-1]
    assert err.startswith("ImportError")
    for needle in ("_pycnml", str(tmp_path), "PYCNML_VENDOR_PATH", "PYCNML_BACKEND=emulator"):
        assert needle in err


def test_unknown_backend_is_refused():
    r = run_python("import pycnml", PYCNML_BACKEND="gpu")
    assert r.returncode != 0 and "'gpu'" in r.stderr and "emulator" in r.stderr


def test_hardware_backend_passes_vendor_names_through(tmp_path):
    # The vendor's extension cannot exist on this machine; a stand-in module with the
    # same name and layout (SWIG proxy pycnml.py importing _pycnml) checks the wiring.
    (tmp_path / "_pycnml.py").write_text("MARK = 'vendor ext'\n")
    (tmp_path / "pycnml.py").write_text(textwrap.dedent("""
        import _pycnml
        class CnmlNet:
            origin = _pycnml.MARK
        CNML_MLU270 = 5
    """))
    r = run_python("import pycnml; print(pycnml.backend_name(), pycnml.CnmlNet.origin, "
                   "pycnml.CNML_MLU270, pycnml.QuantTool.__module__)",
                   PYCNML_BACKEND="hardware", PYCNML_VENDOR_PATH=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["hardware", "vendor", "ext", "5", "pycnml.quant"]


def test_constructor_prints_core_number_and_version_once():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        pycnml.CnmlNet(16)
    text = out.getvalue()
    assert text.count("\n") == 1 and "16" in text and "MLU270" in text
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        pycnml.CnmlNet(4, pycnml.CNML_C10)
    assert "4" in out.getvalue() and "MLU100" in out.getvalue()


@pytest.mark.parametrize("name, value", [
    ("CAST", 0), ("CONVOLUTION", 1), ("LRN", 2), ("MLP", 3), ("NORMALIZE", 4), ("RELU", 5),
    ("SOFTMAX", 6), ("POOL", 7), ("FLATTEN", 8), ("CNML_1H8", 1), ("CNML_1H16", 2),
    ("CNML_C10", 3), ("CNML_1H8MINI", 4), ("CNML_MLU270", 5), ("CNML_MLU220", 6)])
def test_constants(name, value):
    assert getattr(pycnml, name) == value
