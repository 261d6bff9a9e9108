"""What old SciPy and NumPy gave the course's templates, for submissions that still call it.

The published templates of experiment 3.2 (both editions) keep the given ``load_image``
of their time: ``scipy.misc.imread`` and ``scipy.misc.imresize`` (removed from SciPy in
1.2 and 1.3) and ``astype(np.float)`` (removed from NumPy in 1.24). Such a submission
would crash in code the student never wrote. While grading it (and only then: the
grader installs this in the sandboxed child when the submission's source uses one of
these names, and says so in the report) the kit supplies them:

* ``scipy.misc.imread(name, flatten=False, mode=None)``: the file opened with Pillow and
  returned as a NumPy array, palette images expanded to RGB (RGBA when transparent), as
  old SciPy did;
* ``scipy.misc.imresize(arr, size, interp='bilinear', mode=None)``: old SciPy's resize,
  that is Pillow's ``Image.resize`` on the uint8 image (a float array is first scaled to
  0..255 as old SciPy's ``bytescale`` did); ``size`` is a percentage (int), a fraction
  (float) or ``(height, width[, channels])``;
* ``np.float``, ``np.int``, ``np.complex``, ``np.object``, ``np.str``: the builtins they
  were aliases of, added only where the installed NumPy lacks them.

The kit's own files never need this: they read images with Pillow directly, which gives
the same pixels as ``imread`` + ``imresize`` above.
"""
from __future__ import annotations

import ast
import sys
import types

import numpy as np

SCIPY_MISC = "scipy.misc"
# Aliases NumPy removed in 1.24 -> the builtin each one stood for.
NUMPY_ALIASES = {"float": float, "int": int, "complex": complex, "object": object, "str": str}

def _is_misc(name: str) -> bool:
    return name == SCIPY_MISC or name.startswith(SCIPY_MISC + ".")


def needed(source: str) -> list[str]:
    """The shims ``source`` relies on, in a fixed order: ``"scipy.misc"``, then ``"np.<name>"`` ones.

    Read from the code (:mod:`ast`), so comments and strings that mention these names do
    not count; a file Python cannot parse needs nothing (it will not import anyway).
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    misc, aliases = False, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and isinstance(node.ctx, ast.Load):
            misc |= node.value.id == "scipy" and node.attr == "misc"
            if node.value.id in ("np", "numpy") and node.attr in NUMPY_ALIASES:
                aliases.add(node.attr)
        elif isinstance(node, ast.Import):
            misc |= any(_is_misc(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            misc |= _is_misc(node.module) or (node.module == "scipy" and any(a.name == "misc" for a in node.names))
    found = [SCIPY_MISC] if misc else []
    return found + [f"np.{name}" for name in sorted(aliases) if name not in _numpy_names()]


def _numpy_names() -> set[str]:
    """The alias names the running NumPy still has (older NumPy keeps some)."""
    return {name for name in NUMPY_ALIASES if name in vars(np)}


def describe(shims: list[str]) -> str:
    """The report's note for ``shims`` (as :func:`needed` returns them)."""
    parts = []
    if SCIPY_MISC in shims:
        parts.append("scipy.misc.imread/imresize (removed from SciPy): the kit supplied them "
                     "(Pillow imread, Pillow bilinear resize of the uint8 image, as old SciPy did)")
    aliases = [s for s in shims if s.startswith("np.")]
    if aliases:
        parts.append(f"{', '.join(aliases)} (removed from NumPy 1.24): the kit aliased "
                     f"{'them' if len(aliases) > 1 else 'it'} to the builtin")
    return "the submission uses " + "; and ".join(parts) + " (grader.kit.compat)" if parts else ""


# --------------------------------------------------------------------------- scipy.misc

def _pil():
    from PIL import Image
    return Image


def fromimage(image, flatten: bool = False, mode: str | None = None) -> np.ndarray:
    """A Pillow image as an array, the way old ``scipy.misc.fromimage`` converted it."""
    if mode is not None and mode != image.mode:
        image = image.convert(mode)
    elif mode is None and image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if flatten:
        image = image.convert("F")
    return np.array(image)


def imread(name, flatten: bool = False, mode: str | None = None) -> np.ndarray:
    """``scipy.misc.imread``: read an image file into an array (uint8 for ordinary images)."""
    with _pil().open(name) as image:
        image.load()
        return fromimage(image, flatten=flatten, mode=mode)


def bytescale(data: np.ndarray) -> np.ndarray:
    """Old SciPy's ``bytescale`` with its defaults: uint8 unchanged, else min..max mapped to 0..255."""
    data = np.asarray(data)
    if data.dtype == np.uint8:
        return data
    low, high = float(data.min()), float(data.max())
    scale = 255.0 / (high - low) if high > low else 1.0
    return (np.clip((data - low) * scale, 0, 255) + 0.5).astype(np.uint8)


_INTERP = {"nearest": "NEAREST", "lanczos": "LANCZOS", "bilinear": "BILINEAR", "bicubic": "BICUBIC",
           "cubic": "BICUBIC"}


def imresize(arr, size, interp: str = "bilinear", mode: str | None = None) -> np.ndarray:
    """``scipy.misc.imresize``: resize an image array; returns uint8.

    ``size``: an int is a percentage of the current size, a float a fraction of it, and a
    sequence is ``(height, width, ...)`` (extra entries, such as the channel count the
    templates pass, are ignored, as old SciPy ignored them).
    """
    Image = _pil()
    if interp not in _INTERP:
        raise ValueError(f"imresize: interp={interp!r}; expected one of {', '.join(_INTERP)}")
    data = bytescale(arr)
    image = Image.fromarray(data, mode) if mode else Image.fromarray(data)
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        width, height = (int(image.size[0] * size / 100.0), int(image.size[1] * size / 100.0))
    elif isinstance(size, (float, np.floating)):
        width, height = (int(image.size[0] * size), int(image.size[1] * size))
    else:
        width, height = int(size[1]), int(size[0])
    resample = getattr(Image, _INTERP[interp], None) or getattr(Image.Resampling, _INTERP[interp])
    return fromimage(image.resize((width, height), resample=resample))


def _misc_module() -> types.ModuleType:
    module = types.ModuleType(SCIPY_MISC, "scipy.misc as old SciPy had it for images (grader.kit.compat)")
    module.imread = imread
    module.imresize = imresize
    module.fromimage = fromimage
    module.bytescale = bytescale
    return module


# --------------------------------------------------------------------------- install

def install(shims: list[str]) -> list[str]:
    """Make the names of ``shims`` importable in this process; returns the ones installed.

    ``scipy.misc`` becomes the module above (``import scipy.misc``, ``scipy.misc.imread``
    after ``import scipy`` and ``from scipy.misc import imresize`` all find it); NumPy
    aliases are set only where NumPy lacks them. Unknown names are ignored.
    """
    done = []
    if SCIPY_MISC in shims:
        import scipy
        module = _misc_module()
        sys.modules[SCIPY_MISC] = module
        scipy.misc = module
        done.append(SCIPY_MISC)
    for shim in shims:
        name = shim.removeprefix("np.")
        if shim.startswith("np.") and name in NUMPY_ALIASES and name not in vars(np):
            setattr(np, name, NUMPY_ALIASES[name])
            done.append(shim)
    return done
