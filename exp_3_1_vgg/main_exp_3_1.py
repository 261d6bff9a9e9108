"""Experiment 3.1 runner: classify an image with your VGG19 (book section 3.1.5.5).

    python exp_3_1_vgg/main_exp_3_1.py [--submission stu_upload] [--image data/images/chelsea.png]

Builds the submission's VGG19 exactly as the book's flow does (build_model, init_model,
load_model, load_image), runs it layer by layer with a progress line per layer, checks
pool5 against the golden for the weights in use, and prints the top-5 classes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grader.kit import goldens  # noqa: E402
from grader.kit.compare import NETWORK_TOL, CheckFailure, assert_close  # noqa: E402
from grader.kit.netloop import layer_names, progress_printer, run_layers  # noqa: E402
from grader.kit.paths import DEFAULT_CAT, SYNSET_WORDS  # noqa: E402
from grader.kit.submission import SubmissionError, load_module  # noqa: E402
from grader.kit.weights import weights_for  # noqa: E402

EXPERIMENT = "exp_3_1_vgg"


def read_labels(path: Path = SYNSET_WORDS) -> list[str]:
    """Class names, one per line: 'n02123045 tabby, tabby cat' -> line i is class id i."""
    if not path.exists():
        raise FileNotFoundError(f"class names not found at {path}; run `source env.sh` in the kit's folder")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_with_progress(vgg, write=print) -> dict:
    """Run ``vgg`` layer by layer from ``vgg.input_image`` with a progress line per layer.

    Returns ``{"pool5": [1, 512, 7, 7], "prob": [1, 1000]}`` (pool5 is None when the
    network has no layer of that name).
    """
    names = layer_names(vgg)
    show = progress_printer(names, write)
    kept = {"pool5": None}

    def on_layer(index, name, output, seconds):
        show(index, name, output, seconds)
        if name == "pool5":
            kept["pool5"] = output

    kept["prob"], _ = run_layers(vgg, vgg.input_image, on_layer=on_layer)
    return kept


def check_pool5(pool5, weights, image: Path) -> str:
    """Compare pool5 with the visible golden for these weights and this image."""
    if image.resolve() != DEFAULT_CAT.resolve():
        return "pool5 check skipped: goldens exist only for the default cat image"
    stored = goldens.load(goldens.golden_path(EXPERIMENT, weights.sha256)).get("vgg_network")
    if stored is None:
        return f"pool5 check skipped: no golden for weights {weights.short()} in data/golden/{EXPERIMENT}/"
    try:
        return "pool5 check: " + assert_close(pool5, stored["out"]["pool5"], "pool5", NETWORK_TOL)
    except CheckFailure as exc:
        return f"pool5 check FAILED: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Experiment 3.1: VGG19 image classification on the CPU")
    parser.add_argument("--submission", default="stu_upload", help="folder shaped like stu_upload/")
    parser.add_argument("--image", default=str(DEFAULT_CAT), help="image to classify (default: the cat)")
    parser.add_argument("--weights", default=None, help="a MatConvNet VGG19 .mat (default: resolved as env.sh says)")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args(argv)

    image = Path(args.image)
    if not image.is_file():
        print(f"error: image {image.resolve()} not found; pass --image PATH", file=sys.stderr)
        return 2
    try:
        weights = weights_for(args.weights)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(weights.banner())
    try:
        vgg_cpu = load_module(args.submission, EXPERIMENT, "vgg_cpu")
        vgg = vgg_cpu.VGG19(param_path=str(weights.path))
        vgg.build_model()
        vgg.init_model()
        vgg.load_model()
        vgg.load_image(str(image))
        print(f"Running VGG19 on {image} ({len(vgg.param_layer_name)} layers)")
        outputs = run_with_progress(vgg)
    except SubmissionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NotImplementedError as exc:
        print(f"\nNot finished yet: {exc or 'a TODO raises NotImplementedError'}.\n"
              f"Complete the TODOs in {args.submission}/{EXPERIMENT}/ and run again.", file=sys.stderr)
        return 1

    print(check_pool5(outputs.get("pool5"), weights, image))
    prob = np.asarray(outputs["prob"], dtype=np.float64).reshape(-1)
    labels = read_labels()
    if prob.size != len(labels):
        print(f"error: the last layer gives {prob.size} values, expected {len(labels)} class probabilities",
              file=sys.stderr)
        return 1
    synthetic = weights.kind != "real"
    heading = f"Top-{args.top} of {image.name}"
    if synthetic:
        heading += (f" -- {weights.kind.upper()} weights: these ids are the network's argmax, "
                    "NOT a classification of the image")
    print(heading)
    for idx in np.argsort(-prob)[:args.top]:
        print(f"  {prob[idx]:.6f}  id {idx:4d}  {labels[idx]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
