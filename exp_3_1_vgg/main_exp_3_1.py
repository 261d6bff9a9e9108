"""Experiment 3.1 runner: classify an image with your VGG19 (book section 3.1.5.5).

    cd exp_3_1_vgg && python main_exp_3_1.py          (the book's way; or from the kit's folder:
    python exp_3_1_vgg/main_exp_3_1.py [--submission DIR] [--image data/images/chelsea.png])

Builds the submission's VGG19 exactly as the book's flow does (build_model, init_model,
load_model, load_image), runs it layer by layer with a progress line per layer and an
estimate of the whole run after the first layer, compares pool5, the softmax and the
top-1 class with the golden for the weights in use (the cat image only), and prints the
top-5 classes. The submission defaults to the kit's ``stu_upload/`` whatever the current
folder; a relative ``--submission`` is taken from the current folder.

Exit status: 0 the network ran and matches the golden (or there is none to compare),
1 a TODO is unfinished or the network differs from the golden, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grader.kit import goldens  # noqa: E402
from grader.kit.compare import (NETWORK_TOL, SOFTMAX_TOL, CheckFailure, assert_close,  # noqa: E402
                                first_divergent_layer)
from grader.kit.netloop import fingerprint, layer_names, progress_printer, run_layers  # noqa: E402
from grader.kit.paths import DEFAULT_CAT, SYNSET_WORDS  # noqa: E402
from grader.kit.submission import SubmissionError, load_module, resolve_submission  # noqa: E402
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
    network has no layer of that name) plus every layer's fingerprint
    (``sample/<name>``, ``shape/<name>``) to name the first layer that differs.
    """
    names = layer_names(vgg)
    show = progress_printer(names, write)
    kept = {"pool5": None}

    def on_layer(index, name, output, seconds):
        show(index, name, output, seconds)
        arr = fingerprint(kept, name, output)
        if name == "pool5":
            kept["pool5"] = arr

    kept["prob"], _ = run_layers(vgg, vgg.input_image, on_layer=on_layer)
    return kept


def load_golden(weights, image: Path) -> tuple[dict | None, str]:
    """The golden network outputs for these weights and this image, or None and why not."""
    if image.resolve() != DEFAULT_CAT.resolve():
        return None, "golden check skipped: goldens exist only for the default cat image"
    stored = goldens.load(goldens.golden_path(EXPERIMENT, weights.sha256)).get("vgg_network")
    if stored is None:
        return None, f"golden check skipped: no golden for weights {weights.short()} in data/golden/{EXPERIMENT}/"
    return stored["out"], ""


def check_output(outputs: dict, golden: dict, key: str, what: str, tol) -> tuple[bool, str]:
    """Compare ``outputs[key]`` with the golden's; a mismatch names the first layer that differs."""
    try:
        return True, f"{what} check: " + assert_close(outputs.get(key), golden[key], what, tol)
    except CheckFailure as exc:
        where = first_divergent_layer(outputs, golden, NETWORK_TOL)
        return False, f"{what} check FAILED: {exc}" + (f"; {where}" if where else "")


def check_top1(prob, golden: dict, synthetic: bool) -> tuple[bool, str]:
    """Compare the argmax of ``prob`` ``[1, 1000]`` with the golden softmax's."""
    got = np.asarray(prob, dtype=np.float64).reshape(-1)
    want = np.asarray(golden["prob"], dtype=np.float64).reshape(-1)
    if got.shape != want.shape:
        return False, f"top-1 check FAILED: your softmax has {got.size} values, the golden's {want.size}"
    mine, theirs = int(np.argmax(got)), int(np.argmax(want))
    note = " (class ids of synthetic weights: the network's argmax, not a classification)" if synthetic else ""
    if mine != theirs:
        return False, f"top-1 check FAILED: your top-1 is class {mine}, the golden's is {theirs}{note}"
    return True, f"top-1 check: class {mine}, the same as the golden's{note}"


def golden_checks(outputs: dict, weights, image: Path) -> tuple[bool, list[str]]:
    """pool5, softmax and top-1 against the golden: (all matched or nothing to compare, lines)."""
    golden, why_not = load_golden(weights, image)
    if golden is None:
        return True, [why_not]
    results = [check_output(outputs, golden, "pool5", "pool5", NETWORK_TOL),
               check_output(outputs, golden, "prob", "softmax", SOFTMAX_TOL),
               check_top1(outputs["prob"], golden, weights.kind != "real")]
    return all(ok for ok, _ in results), [line for _, line in results]


def print_top(prob: np.ndarray, labels: list[str], image: Path, weights, top: int) -> None:
    """The ``top`` largest probabilities, with the class names only real weights earn."""
    heading = f"Top-{top} of {image.name}"
    if weights.kind != "real":
        heading += (f" -- {weights.kind.upper()} weights: these ids are the network's argmax, "
                    "NOT a classification of the image")
    print(heading)
    for idx in np.argsort(-prob)[:top]:
        print(f"  {prob[idx]:.6f}  id {idx:4d}  {labels[idx]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Experiment 3.1: VGG19 image classification on the CPU")
    parser.add_argument("--submission", default=None,
                        help="folder shaped like stu_upload/, relative to the current folder "
                             "(default: the kit's stu_upload/)")
    parser.add_argument("--image", default=str(DEFAULT_CAT), help="image to classify (default: the cat)")
    parser.add_argument("--weights", default=None, help="a MatConvNet VGG19 .mat (default: resolved as env.sh says)")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args(argv)

    image = Path(args.image)
    if not image.is_file():
        print(f"error: image {image.resolve()} not found; pass --image PATH", file=sys.stderr)
        return 2
    try:
        submission = resolve_submission(args.submission)
        weights = weights_for(args.weights)
    except (SubmissionError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(weights.banner())
    print(f"Submission: {submission / EXPERIMENT}")
    try:
        vgg_cpu = load_module(submission, EXPERIMENT, "vgg_cpu")
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
              f"Complete the TODOs in {submission / EXPERIMENT}/ and run again.", file=sys.stderr)
        return 1

    matched, lines = golden_checks(outputs, weights, image)
    for line in lines:
        print(line)
    prob = np.asarray(outputs["prob"], dtype=np.float64).reshape(-1)
    labels = read_labels()
    if prob.size != len(labels):
        print(f"error: the last layer gives {prob.size} values, expected {len(labels)} class probabilities",
              file=sys.stderr)
        return 1
    print_top(prob, labels, image, weights, args.top)
    if not matched:
        print("Your VGG19 differs from the golden (see the FAILED lines above).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
