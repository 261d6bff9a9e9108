"""PYCNNL_BACKEND in real subprocesses, and pycnnl beside pycnml in one process."""
import os
import subprocess
import sys
import textwrap

from grader.kit.paths import REPO_ROOT


def run_python(code, **env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("PYCNNL_BACKEND", "PYCNNL_VENDOR_PATH", "PYCNML_BACKEND", "PYCNML_VENDOR_PATH")}
    full.update(env)
    full["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full, cwd=REPO_ROOT, timeout=60)


def test_default_backend_is_the_emulator_beside_pycnml():
    r = run_python(textwrap.dedent("""
        import pycnnl, pycnml
        print(pycnnl.backend_name(), pycnml.backend_name())
        print(pycnnl.backend_info())
        net = pycnml.CnmlNet(16)          # both APIs work in one process
        new = pycnnl.CnnlNet()
        print(type(net).__module__, type(new).__module__)
    """))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "emulator emulator" and "pycnnl backend: emulator" in lines[1]
    assert lines[-1] == "pycnml.emulator pycnnl.net"
    assert any(line.startswith("CnnlNet: Init success") for line in lines)


def test_hardware_backend_without_vendor_module_explains(tmp_path):
    r = run_python("import pycnnl", PYCNNL_BACKEND="hardware", PYCNNL_VENDOR_PATH=str(tmp_path))
    assert r.returncode != 0
    err = r.stderr.splitlines()[-1]
    assert err.startswith("ImportError")
    for needle in ("_pycnnl", str(tmp_path), "PYCNNL_VENDOR_PATH", "PYCNNL_BACKEND=emulator"):
        assert needle in err


def test_hardware_backend_passes_vendor_names_through(tmp_path):
    # A stand-in with the vendor's layout (SWIG proxy pycnnl.py importing _pycnnl).
    (tmp_path / "_pycnnl.py").write_text("MARK = 'vendor ext'\n")
    (tmp_path / "pycnnl.py").write_text(textwrap.dedent("""
        import _pycnnl
        class CnnlNet:
            origin = _pycnnl.MARK
        class IntVector(list):
            pass
    """))
    r = run_python("import pycnnl; print(pycnnl.backend_name(), pycnnl.CnnlNet.origin, "
                   "pycnnl.IntVector.__module__)",
                   PYCNNL_BACKEND="hardware", PYCNNL_VENDOR_PATH=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["hardware", "vendor", "ext", "_pycnnl_vendor_proxy"]


def test_unknown_backend_is_refused():
    r = run_python("import pycnnl", PYCNNL_BACKEND="gpu")
    assert r.returncode != 0 and "'gpu'" in r.stderr and "emulator" in r.stderr


def test_emulator_explains_when_pycnml_is_set_to_hardware(tmp_path):
    r = run_python("import pycnnl", PYCNML_BACKEND="hardware", PYCNML_VENDOR_PATH=str(tmp_path))
    assert r.returncode != 0
    err = r.stderr.splitlines()[-1]
    assert "pycnnl's emulator uses the kit's pycnml package" in err and "unset PYCNML_BACKEND" in err
