"""File modes of the unpacked autograder: readable where the sandbox needs it, root-only where it must not.

Gradescope unpacks the zip as root with whatever modes the archive claims, so
``setup.sh`` sets them itself. Everything is first made readable by all (folders 0755,
files 0644, executables 0755): a student's check runs as an unprivileged user that must
reach the Python environment and the kit's child-side code. Then the secrets are made
root-only (folders 0700, files 0600), which is all that protects them where the
container refuses mount namespaces (the sandbox's ``permissions`` method):

* ``grader/reference/``  the reference solutions (the hidden checks' answers);
* ``autograder.json``    the manifest, with the hidden seed;
* the golden cache       the reference's outputs for that seed;
* the numba cache        the reference's compiled fast kernels.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

PUBLIC_DIR, PUBLIC_FILE, PUBLIC_EXEC = 0o755, 0o644, 0o755
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


def _walk(top: Path):
    """``top`` and everything under it, never following a symbolic link."""
    yield top
    for folder, dirs, files in os.walk(top, followlinks=False):
        for name in dirs + files:
            yield Path(folder, name)


def make_public(top: Path) -> None:
    """Root owns everything under ``top``; folders 0755, files 0644 (0755 when executable)."""
    for path in _walk(Path(top)):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        os.chown(path, 0, 0, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            os.chmod(path, PUBLIC_DIR)
        else:
            os.chmod(path, PUBLIC_EXEC if st.st_mode & 0o100 else PUBLIC_FILE)


def make_private(top: Path) -> None:
    """Root owns ``top`` and everything under it; folders 0700, files 0600. A missing path is skipped."""
    top = Path(top)
    if not os.path.lexists(top):
        return
    for path in _walk(top):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        os.chown(path, 0, 0, follow_symlinks=False)
        os.chmod(path, PRIVATE_DIR if stat.S_ISDIR(st.st_mode) else PRIVATE_FILE)


def secrets_of(source: Path, golden_cache: Path, numba_cache: Path) -> list[Path]:
    """The paths :func:`apply` makes root-only, for a kit unpacked at ``source``."""
    from grader.authoring.gradescope_build.manifest import MANIFEST_NAME
    return [source / "grader" / "reference", source / MANIFEST_NAME, golden_cache, numba_cache]


def apply(source: Path, golden_cache: Path, numba_cache: Path, venv: Path | None = None) -> list[Path]:
    """Set every mode under ``source`` (and the ``venv``): public first, then the secrets root-only.

    Returns the private paths. ``source``'s parents are made traversable by others
    (``o+x``, nothing else changes), since an unprivileged child cannot reach a folder
    under a root-only one.
    """
    source = Path(source).resolve()
    make_public(source)
    if venv is not None and Path(venv).exists() and not Path(venv).resolve().is_relative_to(source):
        make_public(Path(venv))
    for parent in source.parents:
        mode = stat.S_IMODE(parent.stat().st_mode)
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)
    private = secrets_of(source, golden_cache, numba_cache)
    for path in private:
        make_private(path)
    return private
