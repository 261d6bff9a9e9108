"""Child-side drivers: call a submission through the book's interface, return raw outputs.

One module per experiment, each exposing ``Context`` and ``HANDLERS`` (case kind ->
``handler(context, params, inputs) -> dict of arrays``). Drivers never compare.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

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
    _modules: dict = field(default_factory=dict)

    def module(self, name: str) -> ModuleType:
        """The submission's module ``name`` (imported once per probe process)."""
        if name not in self._modules:
            self._modules[name] = load_module(self.submission, self.experiment, name)
        return self._modules[name]


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
