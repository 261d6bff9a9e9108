"""``python -m grader calibrate``: compute VGG19's DLP quant parameters for a weights file.

    python -m grader calibrate [--weights PATH] [--images IMG ...] [--out PATH]

Runs the float VGG19 (``grader.refnet.floatnet``) on calibration images and feeds
``pycnml.QuantTool().getQuantParam`` with, per conv/mlp layer, its input activation
(running max over the images) and its weights in the DLP layout (conv ``[Cout, Cin, K,
K]``, mlp ``[out, in]``). Writes the course's format: ``np.savez(path, input=...,
filter=...)``, 19 (position, scale) pairs each in creation order.

Default output: ``data/quant/vgg19_quant_param_<sha12>.npz`` for synthetic or custom
weights (commit it), ``data/generated/...`` for the real weights (which use the course's
own file; the kit never overwrites that).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from grader.kit.paths import DEFAULT_CAT, DEFAULT_CONTENT, DEFAULT_STYLE

CALIBRATION_IMAGES = (DEFAULT_CAT, DEFAULT_CONTENT, DEFAULT_STYLE)


def calibrate(weights_path, images=CALIBRATION_IMAGES, progress=print):
    """``(input pairs, filter pairs)``: 19 ``(position, scale)`` each, in creation order."""
    import pycnml
    from grader.refnet.floatnet import FloatVGG19, load_image
    from grader.kit.vgg_layout import PARAM_LAYERS

    images = [Path(p) for p in images]
    if not images:
        raise ValueError("calibration needs at least one image")
    for image in images:
        if not image.is_file():
            raise FileNotFoundError(f"calibration image {image} not found")
    progress(f"calibrating on {len(images)} image(s) with weights {weights_path}")
    net = FloatVGG19.from_mat(weights_path, dtype=np.float32)
    tool = pycnml.QuantTool()
    inputs: dict[str, tuple[int, float]] = {}

    def record(name, activation):
        qp = tool.getQuantParam(activation, name)   # running max over the images
        inputs[name] = (qp.position, qp.scale)

    for image in images:
        net.forward(load_image(image, net.image_mean), keep=False, on_input=record)
        progress(f"  {image.name}: done")
    filters = []
    for name in PARAM_LAYERS:
        qp = tool.getQuantParam(net.dlp_weight(name), name + "/filter")
        filters.append((qp.position, qp.scale))
    return [inputs[name] for name in PARAM_LAYERS], filters


def write_quant_params(path, inputs, filters) -> Path:
    """Write the course's format: ``input`` and ``filter``, flat (position, scale) float64 arrays."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {key: np.array([v for pair in pairs for v in (float(pair[0]), float(pair[1]))], dtype=np.float64)
            for key, pairs in (("input", inputs), ("filter", filters))}
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, **flat)
    tmp.replace(path)
    return path


def ensure_quant_params(weights, progress=None) -> Path:
    """The quant file for ``weights``; computed now when there is none yet (a few seconds).

    The grader calls this on first use of custom or new synthetic weights; the file goes
    to ``data/generated/`` under the weights' fingerprint.
    """
    from grader.kit import quantparams
    try:
        return quantparams.resolve_quant_params(weights)
    except FileNotFoundError:
        if weights.kind == "real":
            raise   # the real weights use the course's own file, never a computed one
    target = quantparams.generated_path(weights.sha256)
    say = progress or (lambda msg: print(msg, file=sys.stderr))
    say(f"calibrating DLP quant parameters for the {weights.kind} weights {weights.short()} "
        f"(first use; written to {target})")
    inputs, filters = calibrate(weights.path, progress=say)
    return write_quant_params(target, inputs, filters)


def main(argv: list[str] | None = None) -> int:
    from grader.kit import quantparams
    from grader.kit.weights import weights_for

    parser = argparse.ArgumentParser(prog="python -m grader calibrate",
                                     description="Compute VGG19's DLP int8 quant parameters for a weights file.")
    parser.add_argument("--weights", default=None, help="a MatConvNet VGG19 .mat (default: the kit's weights)")
    parser.add_argument("--images", nargs="+", default=[str(p) for p in CALIBRATION_IMAGES],
                        help="calibration images (default: the three images in data/images)")
    parser.add_argument("--out", default=None, help="output .npz (default: see the module's docstring)")
    args = parser.parse_args(argv)
    try:
        weights = weights_for(args.weights)
    except FileNotFoundError as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2
    print(weights.banner())
    if args.out:
        out = Path(args.out)
    elif weights.kind == "real":
        out = quantparams.generated_path(weights.sha256)
    else:
        out = quantparams.committed_path(weights.sha256)
    if out.resolve() == quantparams.COURSE_QUANT_FILE.resolve():
        print(f"calibrate: refusing to overwrite the course's file {out}; pass another --out", file=sys.stderr)
        return 2
    try:
        inputs, filters = calibrate(weights.path, args.images)
    except FileNotFoundError as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2
    write_quant_params(out, inputs, filters)
    print(f"{'layer':<8}{'input (pos, scale)':>24}{'filter (pos, scale)':>24}")
    from grader.kit.vgg_layout import PARAM_LAYERS
    for name, (ip, is_), (fp, fs) in zip(PARAM_LAYERS, inputs, filters):
        print(f"{name:<8}{ip:>10d}, {is_:<12.6f}{fp:>10d}, {fs:<12.6f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
