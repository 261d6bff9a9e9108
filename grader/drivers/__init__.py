"""Child-side drivers: call a submission through the book's interface, return raw outputs.

One module per experiment, each exposing ``Context`` and ``HANDLERS`` (case kind ->
``handler(context, params, inputs) -> dict of arrays``). Drivers never compare.
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from grader.kit import weightcache
from grader.kit.netloop import fingerprint, sample_indices  # noqa: F401 - one fingerprint for runner and grader
from grader.kit.submission import load_module


@dataclass
class BaseContext:
    submission: Path
    resources: dict
    experiment: str = ""
    current: str = ""   # the case being run; handlers file extra (non-array) facts under it
    extra: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)   # objects shared by the cases of one probe process
    weights_seconds: dict = field(default_factory=dict)   # case -> seconds inside scipy.io.loadmat
    # A trusted run of the reference for goldens: only the outputs count, so a driver may
    # skip steps that cannot change them (init_model before load_model overwrites every
    # parameter) and take the reference's speed-up layers where the loops compute the same
    # function. Never set for a submission, whose call sequence is part of what is graded.
    golden: bool = False
    _modules: dict = field(default_factory=dict)
    _weights_hook: object = None

    def module(self, name: str) -> ModuleType:
        """The submission's module ``name`` (imported once per probe process)."""
        if name not in self._modules:
            self._modules[name] = load_module(self.submission, self.experiment, name)
        return self._modules[name]

    def watch_weights(self) -> None:
        """Put :class:`WeightsHook` in place of ``scipy.io.loadmat`` (once per process).

        Called before the submission module that loads the weights is imported, so that a
        ``from scipy.io import loadmat`` in it gets the hook too.
        """
        if self._weights_hook is None:
            self._weights_hook = WeightsHook(self)
            self._weights_hook.install()


class WeightsHook:
    """``scipy.io.loadmat`` as the submission calls it: timed, and fast for the kit's weights file.

    A call with loadmat's defaults on the very file the grader named (``resources["weights"]``:
    same device and inode, and a cache in ``resources["weights_cache"]`` valid for its sha256,
    size and mtime) returns :func:`grader.kit.weightcache.load`, equal to what loadmat returns
    in every key, dtype, shape, memory order and value, with arrays of its own. Every other
    call (another file, a file object, any keyword) is the real loadmat, as is every call
    after the cache failed once.
    """

    def __init__(self, ctx: BaseContext):
        import scipy.io
        self.ctx = ctx
        self.real = scipy.io.loadmat
        self.weights = ctx.resources.get("weights")
        self.folder = ctx.resources.get("weights_cache")
        self.identity = None
        sha = ctx.resources.get("weights_sha256")
        if self.weights and self.folder and sha and weightcache.valid(Path(self.folder), self.weights, sha):
            st = os.stat(self.weights)
            self.identity = (st.st_dev, st.st_ino)

    def install(self) -> None:
        import scipy.io
        import scipy.io.matlab

        @functools.wraps(self.real)
        def loadmat(file_name, mdict=None, appendmat=True, **kwargs):
            return self.load(file_name, mdict, appendmat, **kwargs)

        scipy.io.loadmat = loadmat
        scipy.io.matlab.loadmat = loadmat

    def _is_weights(self, file_name) -> bool:
        if self.identity is None or not isinstance(file_name, (str, bytes, os.PathLike)):
            return False
        try:
            st = os.stat(file_name)
        except (OSError, ValueError):
            return False
        return (st.st_dev, st.st_ino) == self.identity

    def load(self, file_name, mdict=None, appendmat=True, **kwargs):
        start = time.perf_counter()
        try:
            if mdict is None and not kwargs and self._is_weights(file_name):
                try:
                    return weightcache.load(self.folder, self.weights)
                except (weightcache.CacheError, OSError, ValueError):
                    self.identity = None   # never again in this process: the real loadmat answers
            return self.real(file_name, mdict=mdict, appendmat=appendmat, **kwargs)
        finally:
            spent = time.perf_counter() - start
            self.ctx.weights_seconds[self.ctx.current] = self.ctx.weights_seconds.get(self.ctx.current, 0.0) + spent


TAIL_CHARS = 64 * 1024     # the end of what evaluate() prints is kept; the rest is dropped
ERROR_CHARS = 300          # an exception's text as a fact for the parent


class Tail:
    """A text stream keeping only the last ``limit`` characters written to it."""

    def __init__(self, limit: int = TAIL_CHARS):
        self.limit = limit
        self.text = ""

    def write(self, chunk) -> int:
        self.text = (self.text + str(chunk))[-self.limit:]
        return len(chunk)

    def flush(self) -> None:
        pass


def error_fact(exc: BaseException) -> str:
    """``"KeyError: 'fc7'"``, cut to :data:`ERROR_CHARS`: how an exception reaches the parent."""
    return f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]


def image_file(pixels) -> str:
    """Write ``[H, W, 3]`` uint8 ``pixels`` to a fresh PNG in the process's temp folder; its path."""
    import tempfile

    from PIL import Image
    folder = tempfile.mkdtemp(prefix="case-image-")
    path = f"{folder}/image.png"
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
    return path
