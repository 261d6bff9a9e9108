"""grader.kit.submission loads exactly the book's ``.py`` files, never what could shadow them.

Each test builds a tiny three-file 3.1 submission (``layers_1.py``, ``layers_2.py``,
``vgg_cpu.py``) that records which file ran, then plants one shadow beside it.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import py_compile
import sys
from pathlib import Path

import pytest

from grader.kit import submission as sub
from grader.kit.submission import MODULES, SubmissionError, find_shadows, load_module

EXP = "exp_3_1_vgg"


def make_submission(root: Path, tag: str = "A") -> Path:
    """A 3.1 folder whose modules carry ``TAG`` and import their siblings by bare name."""
    folder = root / EXP
    folder.mkdir(parents=True)
    (folder / "layers_1.py").write_text(f"TAG = {tag!r}\nWHO = 'layers_1.py'\n")
    (folder / "layers_2.py").write_text(f"from layers_1 import TAG as L1_TAG\nTAG = {tag!r}\nWHO = 'layers_2.py'\n")
    (folder / "vgg_cpu.py").write_text("import layers_1\nimport layers_2\nTAG = layers_2.TAG\n")
    return root


def marker_code(marker: Path) -> str:
    """Module text that leaves ``marker`` behind if it ever runs."""
    return f"open({str(marker)!r}, 'w').write('ran')\nTAG = 'SHADOW'\n"


@pytest.fixture(autouse=True)
def clean_import_state():
    """Give each test the process's import state back as it found it."""
    path, meta_path = list(sys.path), list(sys.meta_path)
    yield
    sys.path[:], sys.meta_path[:] = path, meta_path
    for name in {n for mods in MODULES.values() for n in mods}:
        sys.modules.pop(name, None)


# --------------------------------------------------------------------------- refusals

def test_package_folder_beside_the_file_is_refused_and_never_runs(tmp_path):
    root = make_submission(tmp_path)
    package = root / EXP / "layers_2"
    package.mkdir()
    marker = tmp_path / "package_ran"
    (package / "__init__.py").write_text(marker_code(marker))
    with pytest.raises(SubmissionError, match=r"remove the folder layers_2/: the book's layers_2\.py must be the module"):
        load_module(root, EXP, "layers_2")
    assert not marker.exists()


def test_package_shadowing_a_sibling_fails_the_importer_and_not_the_rest(tmp_path):
    root = make_submission(tmp_path)
    package = root / EXP / "layers_2"
    package.mkdir()
    marker = tmp_path / "package_ran"
    (package / "__init__.py").write_text(marker_code(marker))
    with pytest.raises(SubmissionError, match=r"exp_3_1_vgg/layers_2/ is a folder"):
        load_module(root, EXP, "vgg_cpu")      # imports layers_2 by bare name
    assert not marker.exists()
    assert load_module(root, EXP, "layers_1").TAG == "A"   # a module that needs no layers_2 still loads


def test_namespace_folder_without_init_is_refused_too(tmp_path):
    root = make_submission(tmp_path)
    (root / EXP / "layers_1").mkdir()
    with pytest.raises(SubmissionError, match="remove the folder layers_1/"):
        load_module(root, EXP, "layers_1")


@pytest.mark.parametrize("suffix", sorted(set(importlib.machinery.EXTENSION_SUFFIXES) | {".so", ".pyd"}))
def test_extension_module_beside_the_file_is_refused(tmp_path, suffix):
    root = make_submission(tmp_path)
    (root / EXP / f"layers_2{suffix}").write_bytes(b"")   # never loaded: the name alone is refused
    with pytest.raises(SubmissionError, match=rf"layers_2{suffix.replace('.', '[.]')} is a compiled extension module"
                                              rf".*remove layers_2{suffix.replace('.', '[.]')}"):
        load_module(root, EXP, "layers_2")


def test_bytecode_file_beside_the_file_is_refused(tmp_path):
    root = make_submission(tmp_path)
    hostile = tmp_path / "hostile.py"
    hostile.write_text(marker_code(tmp_path / "pyc_ran"))
    py_compile.compile(str(hostile), cfile=str(root / EXP / "layers_1.pyc"), doraise=True)
    with pytest.raises(SubmissionError, match=r"exp_3_1_vgg/layers_1\.pyc is compiled bytecode.*remove layers_1\.pyc"):
        load_module(root, EXP, "layers_2")     # the sibling import meets the shadow
    assert not (tmp_path / "pyc_ran").exists()


def test_find_shadows_names_every_kind_and_ignores_unrelated_files(tmp_path):
    folder = make_submission(tmp_path) / EXP
    (folder / "layers_2").mkdir()
    (folder / "layers_2.abi3.so").write_bytes(b"")
    (folder / "layers_2.pyc").write_bytes(b"")
    (folder / "layers_2_notes.txt").write_text("")
    (folder / "layers_22.so").write_bytes(b"")        # another name, not a shadow
    (folder / "__pycache__").mkdir()
    assert find_shadows(folder, "layers_2") == ["layers_2/", "layers_2.abi3.so", "layers_2.pyc"]
    assert find_shadows(folder, "layers_1") == []


# --------------------------------------------------------------------------- bytecode

def test_cached_bytecode_is_never_read_even_an_unchecked_hash_pyc(tmp_path):
    root = make_submission(tmp_path)
    folder = root / EXP
    hostile = tmp_path / "hostile.py"
    hostile.write_text(marker_code(tmp_path / "pyc_ran"))
    # An unchecked hash-based .pyc is trusted by the standard loader without looking at the source.
    for name in ("layers_1", "layers_2"):
        cached = importlib.util.cache_from_source(str(folder / f"{name}.py"))
        py_compile.compile(str(hostile), cfile=cached, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    module = load_module(root, EXP, "layers_2")
    assert (module.WHO, module.L1_TAG) == ("layers_2.py", "A")
    assert not (tmp_path / "pyc_ran").exists()


def test_loading_writes_no_bytecode(tmp_path):
    root = make_submission(tmp_path)
    load_module(root, EXP, "vgg_cpu")
    assert not (root / EXP / "__pycache__").exists()


# --------------------------------------------------------------------------- exact sibling imports

def test_sibling_import_resolves_to_the_exact_file_whatever_sys_path_says(tmp_path):
    root = make_submission(tmp_path)
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "layers_1.py").write_text(marker_code(tmp_path / "decoy_ran"))
    folder = root / EXP
    # The student's own file puts another folder first on sys.path before its sibling import.
    (folder / "layers_2.py").write_text(f"import sys\nsys.path.insert(0, {str(decoy)!r})\n"
                                        + (folder / "layers_2.py").read_text())
    module = load_module(root, EXP, "layers_2")
    assert module.L1_TAG == "A"
    assert Path(sys.modules["layers_1"].__file__) == folder / "layers_1.py"
    assert isinstance(sys.modules["layers_1"].__spec__.loader, sub._SourceOnlyLoader)
    assert not (tmp_path / "decoy_ran").exists()


def test_missing_sibling_is_not_looked_for_elsewhere(tmp_path):
    root = make_submission(tmp_path)
    (root / EXP / "layers_1.py").unlink()
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "layers_1.py").write_text(marker_code(tmp_path / "decoy_ran"))
    sys.path.append(str(decoy))
    with pytest.raises(ModuleNotFoundError, match=r"No module named 'layers_1': .*exp_3_1_vgg/layers_1\.py is missing"):
        load_module(root, EXP, "layers_2")
    assert not (tmp_path / "decoy_ran").exists()


def test_missing_required_file_is_a_submission_error(tmp_path):
    root = make_submission(tmp_path)
    (root / EXP / "vgg_cpu.py").unlink()
    with pytest.raises(SubmissionError, match=r"vgg_cpu\.py is missing: experiment exp_3_1_vgg needs vgg_cpu\.py"):
        load_module(root, EXP, "vgg_cpu")


def test_a_module_that_fails_at_import_is_not_left_in_sys_modules(tmp_path):
    root = make_submission(tmp_path)
    (root / EXP / "layers_2.py").write_text("raise ValueError('broken at import')\n")
    with pytest.raises(ValueError, match="broken at import"):
        load_module(root, EXP, "layers_2")
    assert "layers_2" not in sys.modules


def test_module_is_registered_before_it_runs(tmp_path):
    root = make_submission(tmp_path)
    (root / EXP / "layers_1.py").write_text("import sys\nSEEN = sys.modules[__name__] is not None\nTAG = 'A'\n")
    assert load_module(root, EXP, "layers_1").SEEN


# --------------------------------------------------------------------------- several submissions

def test_two_submissions_one_after_another_in_one_process(tmp_path):
    first = make_submission(tmp_path / "alice", "alice")
    second = make_submission(tmp_path / "bob", "bob")
    vgg_a = load_module(first, EXP, "vgg_cpu")
    assert vgg_a.TAG == "alice" and sys.modules["layers_2"].L1_TAG == "alice"
    vgg_b = load_module(second, EXP, "vgg_cpu")
    assert vgg_b.TAG == "bob"
    assert Path(sys.modules["layers_1"].__file__) == second / EXP / "layers_1.py"
    assert sys.modules["layers_2"].L1_TAG == "bob"
    assert vgg_a.TAG == "alice" and vgg_a.layers_2.TAG == "alice"   # the first one keeps its own modules
    # Only one exact-import finder is ever installed, the latest one.
    finders = [f for f in sys.meta_path if getattr(f, "is_exact_sibling_finder", False)]
    assert len(finders) == 1 and finders[0].folder == second / EXP
    assert str(second / EXP) in sys.path and str(first / EXP) not in sys.path


def test_another_experiment_evicts_the_previous_bare_names(tmp_path):
    root = make_submission(tmp_path, "3.1")
    load_module(root, EXP, "vgg_cpu")
    folder = root / "exp_3_3_style_transfer"
    folder.mkdir()
    for name in ("layers_1", "layers_2", "layers_3"):
        (folder / f"{name}.py").write_text(f"TAG = '3.3 {name}'\n")
    (folder / "style_transfer.py").write_text("from layers_2 import TAG\n")
    assert load_module(root, "exp_3_3_style_transfer", "style_transfer").TAG == "3.3 layers_2"
    assert "vgg_cpu" not in sys.modules
