"""Experiment 3.2 cases: the VGG19 built through pycnml (60), its layer values (80), its softmax (100).

* ``vgg_structure`` (tier 60, group ``build``): only ``VGG19()`` and ``build_model``; the
  checks read the net's layer count, names, types and output shapes.
* ``vgg_network`` (tiers 80 and 100, group ``network``): the book's whole flow on the cat
  image (build_model, load_model, load_image, forward, getOutputData); returns conv1_1 and
  pool5 (read through the emulator's per-layer outputs) and the softmax.
* ``hidden_vgg_image`` (hidden, tiers 80 and 100): the same net on a fresh image, a
  random crop of one of the kit's images with noise; its golden comes from the reference
  emulator at grade time.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from grader.experiments import Case, GroupSpec
from grader.kit.paths import DEFAULT_CAT, DEFAULT_CONTENT, DEFAULT_STYLE

EXPERIMENT = "exp_3_2_dlp"

# A full VGG19 through the emulator: load_model (the book's float64 transposes of
# 144 M weights, then int8 quantization) ~10 s, one forward ~3 s on two cores.
# The limits leave a wide margin for a loaded machine.
GROUPS = {
    "build": GroupSpec("build", wall_seconds=120, cpu_seconds=240),
    "network": GroupSpec("network", wall_seconds=600, cpu_seconds=1200),
}


def extra_resources(session) -> dict:
    """The quant-parameter file matching the session's weights (calibrated on first use)."""
    from grader.refnet.calibrate import ensure_quant_params
    return {"quant_params": str(ensure_quant_params(session.weights))}


def structure_case() -> Case:
    return Case("vgg_structure", "structure", "build", 60,
                "VGG19().build_model(param_path, quant_param_path): the layers created on pycnml.CnmlNet")


def network_case() -> Case:
    return Case("vgg_network", "network", "network", 80,
                "VGG19 on the cat image: build_model, load_model, load_image, forward, getOutputData",
                weights_dependent=True)


def random_image(seed: int) -> np.ndarray:
    """A fresh ``[H, W, 3]`` uint8 test image: a random crop of a kit image, maybe flipped, plus noise."""
    rng = np.random.default_rng(seed)
    source = [DEFAULT_CAT, DEFAULT_CONTENT, DEFAULT_STYLE][int(rng.integers(3))]
    image = np.asarray(Image.open(source).convert("RGB"), dtype=np.float64)
    h, w = image.shape[:2]
    ch, cw = int(h * rng.uniform(0.6, 0.9)), int(w * rng.uniform(0.6, 0.9))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = image[top:top + ch, left:left + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = crop + rng.normal(0.0, 6.0, crop.shape)
    return np.clip(np.rint(crop), 0, 255).astype(np.uint8)


def visible_cases() -> list[Case]:
    return [structure_case(), network_case()]


def hidden_cases(seed: int) -> list[Case]:
    image = random_image(seed)
    return [Case("hidden_vgg_image", "network_image", "network", 100,
                 f"VGG19 on a fresh {image.shape[1]}x{image.shape[0]} image",
                 {}, {"image": image}, hidden=True, weights_dependent=True)]
