"""Child-side drivers: call a submission through the book's interface, return raw outputs.

One module per experiment, each exposing ``Context`` and ``HANDLERS`` (case kind ->
``handler(context, params, inputs) -> dict of arrays``). Drivers never compare.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

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


def sample_indices(size: int, count: int = 64) -> np.ndarray:
    """Fixed pseudo-random flat indices used to fingerprint a layer's output."""
    rng = np.random.default_rng(size)
    return np.sort(rng.choice(size, size=min(count, size), replace=False))


def fingerprint(out: dict, name: str, array) -> np.ndarray:
    """Record layer ``name``'s output shape and fixed sample in ``out``; return it as float64.

    The checks compare these with the golden's to name the first layer that differs.
    """
    arr = np.asarray(array, dtype=np.float64)
    flat = arr.reshape(-1)
    out[f"sample/{name}"] = flat[sample_indices(flat.size)]
    out[f"shape/{name}"] = np.asarray(arr.shape, dtype=np.float64)
    return arr


def image_file(pixels) -> str:
    """Write ``[H, W, 3]`` uint8 ``pixels`` to a fresh PNG in the process's temp folder; its path."""
    import tempfile

    from PIL import Image
    folder = tempfile.mkdtemp(prefix="case-image-")
    path = f"{folder}/image.png"
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
    return path
