"""The kit's own VGG19 image preprocessing (students' files keep their own load_image).

The book's flow, with Pillow in place of the removed ``scipy.misc``: read the file as
RGB, resize the uint8 image bilinearly to 224x224 (what ``scipy.misc.imresize`` did),
subtract the per-channel mean and reorder ``[H, W, C]`` to ``[N, C, H, W]``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = 224


def load_image(path: str | Path, mean) -> np.ndarray:
    """Image file -> ``[1, 3, 224, 224]`` float64, minus ``mean`` (RGB, 3 values).

    The resize works on the uint8 image before the mean is subtracted, as in the book,
    so the result matches a student's load_image up to float32 rounding.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} not found")
    image = Image.open(path).convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    mean = np.asarray(mean, dtype=np.float64).reshape(1, 1, 3)
    data = np.asarray(image, dtype=np.float64) - mean   # [224, 224, 3]
    return data.transpose(2, 0, 1)[None]                 # [1, 3, 224, 224]
