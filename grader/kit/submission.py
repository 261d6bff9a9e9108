"""Import a submission's modules the way the book's files expect, from exactly the book's files.

Students' files import their siblings by bare name (``from layers_1 import *``). Left to
Python's import system, such a name could resolve to something other than the book's
``layers_1.py``: a package folder ``layers_1/``, a compiled extension
``layers_1.cpython-311-x86_64-linux-gnu.so``, a bytecode file ``layers_1.pyc`` or a cached
``__pycache__/layers_1.cpython-311.pyc``. The grader must run the code the student
hands in as source, so:

- :func:`load_module` loads ``<folder>/<name>.py`` by its file location, compiled from
  the source text every time (cached bytecode is never read, and none is written);
- while it is in force, a finder placed first on ``sys.meta_path`` resolves the bare
  names of that experiment (:data:`MODULES`) to their exact ``.py`` files the same way,
  so a sibling import inside the student's file can never pick anything else;
- before anything runs, a folder, extension module or ``.pyc`` file that could stand in
  for a required module is refused with a :class:`SubmissionError` naming it.
  A ``__pycache__`` folder is ignored: nothing here ever reads it.

The experiment folder is still put first on ``sys.path`` so that helper modules of the
student's own (not among the book's names) import as they always did.

When one process loads several submissions (the kit's tests, a runner comparing the
reference with a student), bare names would collide in ``sys.modules``; every call to
:func:`load_module` therefore evicts the modules of those names first.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from grader.kit.paths import EXPERIMENTS, REPO_ROOT, STU_UPLOAD_DIR

# Bare module names a submission may define, per experiment (the book's file names).
MODULES = {
    "exp_3_1_vgg": ("layers_1", "layers_2", "vgg_cpu"),
    "exp_3_2_dlp": ("vgg19_demo",),
    "exp_3_3_style_transfer": ("layers_1", "layers_2", "layers_3", "style_transfer"),
}

# Every file suffix the import system would load as a compiled extension module.
_EXTENSION_SUFFIXES = tuple(sorted(set(importlib.machinery.EXTENSION_SUFFIXES) | {".so", ".pyd"}))


class SubmissionError(Exception):
    """The submission folder is missing, misshapen or lacks a file the book requires."""


def resolve_submission(path: str | Path | None) -> Path:
    """Return the absolute submission folder, checked to exist.

    ``None`` means the kit's ``stu_upload/`` (:data:`~grader.kit.paths.STU_UPLOAD_DIR`),
    whatever the current folder: ``cd exp_3_1_vgg && python main_exp_3_1.py`` reads the
    same submission as ``python exp_3_1_vgg/main_exp_3_1.py`` from the kit's folder. A
    relative ``path`` is taken from the current folder, as a shell user expects.
    """
    if path is None:
        folder = STU_UPLOAD_DIR
    else:
        folder = Path(path).expanduser()
        if not folder.is_absolute():
            folder = (Path.cwd() / folder).resolve()
    if not folder.is_dir():
        raise SubmissionError(f"submission folder {folder} does not exist; {_submission_hint(path)}")
    return folder


def _submission_hint(path: str | Path | None) -> str:
    """What to pass instead of a submission folder that does not exist."""
    shape = f"a folder shaped like {STU_UPLOAD_DIR.relative_to(REPO_ROOT)}/"
    if path is not None and not Path(path).is_absolute():
        in_kit = (REPO_ROOT / path).resolve()
        if in_kit.is_dir():
            return (f"relative paths are taken from the current folder ({Path.cwd()}); "
                    f"did you mean --submission {in_kit}?")
    return f"pass --submission DIR ({shape}; without it, the kit's {STU_UPLOAD_DIR})"


def experiment_dir(submission: str | Path | None, experiment: str) -> Path:
    """The folder holding one experiment's files of a submission, checked to exist."""
    if experiment not in EXPERIMENTS:
        raise SubmissionError(f"unknown experiment {experiment!r}; expected one of {', '.join(EXPERIMENTS)}")
    folder = resolve_submission(submission) / experiment
    if not folder.is_dir():
        raise SubmissionError(f"{folder} is missing: the submission has no {experiment}/ folder")
    return folder


# --------------------------------------------------------------------------- shadows

def find_shadows(folder: Path, name: str) -> list[str]:
    """Entries of ``folder`` the import system could load as module ``name`` instead of ``name.py``.

    Those are a folder ``name/`` (a package, or a namespace package without
    ``__init__.py``), an extension module ``name.so`` / ``name.<tag>.so`` / ``name.pyd``
    and a bytecode file ``name.pyc``. Returned as entry names, sorted; ``__pycache__``
    is not looked at (the loader never reads it).
    """
    try:
        entries = sorted(p.name for p in Path(folder).iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        path = Path(folder) / entry
        if entry == name and path.is_dir():
            found.append(entry + "/")
        elif entry.startswith(name + ".") and entry.endswith(_EXTENSION_SUFFIXES):
            found.append(entry)
        elif entry in (name + suffix for suffix in importlib.machinery.BYTECODE_SUFFIXES):
            found.append(entry)
    return found


def _shadow_message(folder: Path, name: str, entry: str) -> str:
    where = f"{folder.name}/{entry}"
    if entry.endswith("/"):
        return (f"{where} is a folder named like the module {name}; remove the folder {entry}: "
                f"the book's {name}.py must be the module")
    if entry.endswith(_EXTENSION_SUFFIXES):
        return (f"{where} is a compiled extension module that would stand in for {name}.py; remove {entry}: "
                f"the grader runs the book's {name}.py source only")
    return (f"{where} is compiled bytecode that would stand in for {name}.py; remove {entry}: "
            f"the grader runs the book's {name}.py source only")


def refuse_shadows(folder: Path, name: str) -> None:
    """Raise :class:`SubmissionError` if anything in ``folder`` could shadow ``name.py``."""
    found = find_shadows(folder, name)
    if found:
        raise SubmissionError("; ".join(_shadow_message(Path(folder), name, entry) for entry in found))


# --------------------------------------------------------------------------- exact loading

class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compile the module from its ``.py`` text on every load; never read or write bytecode.

    ``SourceFileLoader.get_code`` would first look for ``__pycache__/<name>.*.pyc`` and
    trust it when its header matches (or, for an unchecked hash-based ``.pyc``, always).
    """

    def get_code(self, fullname):
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


def _exact_spec(folder: Path, name: str) -> importlib.machinery.ModuleSpec:
    path = str(Path(folder) / f"{name}.py")
    return importlib.util.spec_from_file_location(name, path, loader=_SourceOnlyLoader(name, path))


class _ExactSiblingFinder(importlib.abc.MetaPathFinder):
    """Resolve the bare names of one experiment to exactly ``<folder>/<name>.py``.

    Placed first on ``sys.meta_path``; every other name (and every submodule) is left
    to the finders behind it.
    """

    is_exact_sibling_finder = True   # recognised across reloads of this module

    def __init__(self, folder: Path, names: frozenset[str]):
        self.folder = Path(folder)
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if path is not None or fullname not in self.names:
            return None
        refuse_shadows(self.folder, fullname)
        if not (self.folder / f"{fullname}.py").is_file():
            # Nothing else may answer for a book's name: say where the file was expected.
            raise ModuleNotFoundError(f"No module named {fullname!r}: {self.folder / (fullname + '.py')} is missing",
                                      name=fullname)
        return _exact_spec(self.folder, fullname)

    def __repr__(self) -> str:
        return f"<exact sibling finder for {sorted(self.names)} in {self.folder}>"


# Names loaded by a finder outside MODULES (a caller's extra module), evicted like the book's.
_EXTRA_NAMES: set[str] = set()


def _install_finder(folder: Path, names: frozenset[str]) -> None:
    """Make ``names`` resolve into ``folder``, replacing the finder of a previous experiment."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "is_exact_sibling_finder", False)]
    sys.meta_path.insert(0, _ExactSiblingFinder(folder, names))


def _evict_bare_modules() -> None:
    """Forget modules imported by bare name from any experiment folder."""
    names = {n for mods in MODULES.values() for n in mods} | _EXTRA_NAMES
    for name in list(sys.modules):
        if name in names:
            del sys.modules[name]


def _exec_exact(folder: Path, name: str) -> ModuleType:
    """Load ``<folder>/<name>.py`` under the bare name ``name``, as ``import`` would."""
    spec = _exact_spec(folder, name)
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, so a circular sibling import finds the partial module.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if sys.modules.get(name) is module:
            del sys.modules[name]
        raise
    # A module may replace itself in sys.modules while it runs; import returns that one.
    return sys.modules.get(name, module)


def load_module(submission: str | Path | None, experiment: str, name: str) -> ModuleType:
    """Import ``<submission>/<experiment>/<name>.py`` as the module ``name``.

    The experiment's bare names (``from layers_1 import *``) resolve to their exact files
    in that folder, and the folder is first on ``sys.path`` for the student's own helpers.
    Raises :class:`SubmissionError` when the file is missing or something could shadow
    it; any exception the student's module raises at import time propagates unchanged
    so the caller can report it.
    """
    folder = experiment_dir(submission, experiment)
    path = folder / f"{name}.py"
    if not path.is_file():
        raise SubmissionError(f"{path} is missing: experiment {experiment} needs {name}.py")
    if name not in MODULES[experiment]:
        _EXTRA_NAMES.add(name)
    _evict_bare_modules()
    # Remove other experiment folders so a helper import cannot resolve elsewhere.
    sys.path[:] = [p for p in sys.path if not _is_experiment_path(p)]
    sys.path.insert(0, str(folder))
    _install_finder(folder, frozenset(MODULES[experiment]) | {name})
    importlib.invalidate_caches()
    refuse_shadows(folder, name)
    return _exec_exact(folder, name)


def _is_experiment_path(entry: str) -> bool:
    try:
        return Path(entry).name in EXPERIMENTS
    except (TypeError, ValueError):
        return False
