"""Experiment 3.2 runner: VGG19 on the DLP through pycnml or pycnnl (book section 3.2.4.5-3.2.4.6).

    cd exp_3_2_dlp && python main_exp_3_2.py          (the book's way; or from the kit's folder:
    python exp_3_2_dlp/main_exp_3_2.py [--submission DIR] [--file-list exp_3_2_dlp/file_list]
                                       [--weights PATH] [--no-compare] [--profile]
                                       [--track auto|pycnml|pycnnl])

The track is the edition your vgg19_demo.py is written for: ``auto`` (the default) takes
the course's (``course.toml``) unless the file imports only the other edition's module, as
the grader does. The book's edition (pycnml) builds with quant parameters; the newer one
(pycnnl) is float32 and its build_model takes the weights' path only.

The book's flow with your vgg19_demo.py: VGG19(), build_model, load_model, then for each
line ``path label`` of the file list (paths relative to the kit's root) load_image and
get_top5, then the global accuracy. Afterwards, for the thought questions of 3.2.6, a
comparison per image of the CPU VGG19 of experiment 3.1 from the same submission folder
(``<submission>/exp_3_1_vgg/vgg_cpu.py``) with the DLP run (max softmax difference, L1, KL,
top-1 agreement; host times measured, DLP times MODELLED by the emulator), per layer type,
and the whole-net run against per-layer host<->device round trips. An unfinished or
missing 3.1 only skips the comparison.

The submission defaults to the kit's ``stu_upload/`` whatever the current folder; a
relative ``--submission`` or ``--file-list`` is taken from the current folder.
Exit status: 0 the run finished, 1 a TODO is unfinished or pycnml/pycnnl refused a call, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from grader.kit import compat, course  # noqa: E402
from grader.kit.images import load_image  # noqa: E402
from grader.kit.netloop import eta_line, layer_names, layer_work, run_layers  # noqa: E402
from grader.kit.paths import SYNSET_WORDS  # noqa: E402
from grader.kit.quantparams import resolve_quant_params  # noqa: E402
from grader.kit.submission import SubmissionError, load_module, resolve_submission  # noqa: E402
from grader.kit.vgg_layout import layer_kind  # noqa: E402
from grader.kit.weights import WeightsInfo, weights_for  # noqa: E402

EXPERIMENT = "exp_3_2_dlp"
DEFAULT_FILE_LIST = REPO_ROOT / EXPERIMENT / "file_list"


def read_file_list(path: Path) -> list[tuple[Path, int]]:
    """Lines ``image_path label``; relative paths are taken from the kit's root folder."""
    if not path.is_file():
        raise FileNotFoundError(f"file list {path} not found; pass --file-list PATH")
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{number}: expected 'image_path label', got {line!r}")
        image = Path(parts[0])
        image = image if image.is_absolute() else REPO_ROOT / image
        if not image.is_file():
            raise FileNotFoundError(f"{path}:{number}: image {image} not found")
        entries.append((image, int(parts[1])))
    if not entries:
        raise ValueError(f"{path} lists no images")
    return entries


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats; q's zeros (fp16 underflow) are floored so the value stays finite."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, None)
    q = np.clip(np.asarray(q, dtype=np.float64), 1e-12, None)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def run_dlp(vgg, entries, labels) -> list[dict]:
    """The book's evaluate loop with the submission's load_image and get_top5."""
    vgg.labels = labels
    results = []
    top1_num = top5_num = 0
    start = time.time()
    for image, label in entries:
        vgg.load_image(str(image))
        t0 = time.perf_counter()
        top1, top5 = vgg.get_top5(label)
        seconds = time.perf_counter() - t0
        prob = np.array(vgg.net.getOutputData(), dtype=np.float64)
        top1_num += bool(top1)
        top5_num += bool(top5)
        row = {"image": image, "label": label, "prob": prob, "seconds": seconds}
        row.update(_device_figures(vgg.net))
        results.append(row)
    total = len(entries)
    print("Global accuracy : ")
    print("accuracy1: %f (%d/%d) " % (top1_num / total, top1_num, total))
    print("accuracy5: %f (%d/%d) " % (top5_num / total, top5_num, total))
    print("Total execution time: %f" % (time.time() - start))
    return results


def _device_figures(net) -> dict:
    """Emulated host time and modelled device times of the last forward (emulator only)."""
    if not hasattr(net, "getProfile"):
        return {}
    import pycnml   # the device model both emulators share
    rows = net.getProfile()
    totals = pycnml.modelled_totals(net)
    return {"profile": rows, "totals": totals,
            "host_forward": sum(r["host_seconds"] or 0.0 for r in rows)}


class CpuVGG19:
    """The CPU side of the comparison: experiment 3.1's VGG19 of the same submission.

    Built the book's way (build_model, init_model, load_model) from
    ``<submission>/exp_3_1_vgg/vgg_cpu.py``; with ``--submission grader/reference`` that is
    the reference's 3.1. ``forward(x)`` takes ``[1, 3, 224, 224]`` (cast to float32, as
    3.1's load_image gives it) and returns the softmax ``[1, 1000]`` float64;
    ``seconds`` holds each layer's time of the last forward.
    """

    def __init__(self, submission: Path, weights: WeightsInfo):
        vgg_cpu = load_module(submission, "exp_3_1_vgg", "vgg_cpu")
        self.vgg = vgg_cpu.VGG19(param_path=str(weights.path))
        self.vgg.build_model()
        self.vgg.init_model()
        self.vgg.load_model()
        self.image_mean = np.asarray(self.vgg.image_mean, dtype=np.float64).reshape(-1)
        self.seconds: dict[str, float] = {}

    def forward(self, x, on_layer=None) -> np.ndarray:
        prob, self.seconds = run_layers(self.vgg, np.asarray(x, dtype=np.float32), on_layer=on_layer)
        return np.asarray(prob, dtype=np.float64)

    def first_layer_eta(self, images: int):
        """An ``on_layer`` hook printing, after the first layer, how long the CPU side will take."""
        work = layer_work(layer_names(self.vgg))

        def hook(index, name, output, seconds):
            if index == 1:
                each = " per image" if images > 1 else ""
                print(f"CPU side ({images} image{'s' if images != 1 else ''}):{eta_line(name, seconds, work)}{each}",
                      flush=True)
        return hook


def _kind(name: str) -> str | None:
    """The layer kind of one of the CPU network's names; None for a name VGG19 does not have."""
    try:
        return layer_kind(name)
    except ValueError:
        return None


def _cpu_unavailable(where: str, exc: Exception) -> str:
    """The note printed instead of the comparison when experiment 3.1 cannot run."""
    if isinstance(exc, NotImplementedError):
        return (f"comparison skipped: experiment 3.1 in {where} is not finished "
                f"({exc or 'a TODO raises NotImplementedError'}); complete it to compare the CPU with the DLP")
    return f"comparison skipped: the CPU side is experiment 3.1 of the same submission, and {exc}"


DLP_NUMERICS = {"pycnml": "pycnml: int8 conv/mlp, fp16 elsewhere", "pycnnl": "pycnnl: float32 everywhere"}


def print_comparison(results, weights: WeightsInfo, submission: Path | None = None, track: str = "pycnml") -> None:
    """Experiment 3.1's VGG19 on the CPU against the DLP run, per image, then per layer type.

    The CPU side comes from the same submission folder. When its 3.1 is missing or
    unfinished a note says so; the DLP results printed before stand on their own.
    """
    submission = resolve_submission(submission)
    where = str(submission / "exp_3_1_vgg")
    print(f"\n=== CPU (VGG19 of experiment 3.1, float32 input) vs DLP ({DLP_NUMERICS[track]}) ===")
    print(f"building the CPU side from {where}/vgg_cpu.py ...", flush=True)
    try:
        ref = CpuVGG19(submission, weights)
    except (NotImplementedError, SubmissionError) as exc:
        print(_cpu_unavailable(where, exc))
        return
    header = (f"{'image':<18}{'CPU fwd s':>10}{'DLP host s':>11}{'DLP model ms':>13}"
              f"{'max|dp|':>10}{'L1':>8}{'KL nats':>9}{'CPU top1':>9}{'DLP top1':>9}  agree")
    cpu_kind: dict[str | None, float] = {}
    for number, row in enumerate(results):
        x = load_image(row["image"], ref.image_mean)            # [1, 3, 224, 224] float64
        t0 = time.perf_counter()
        try:
            p = ref.forward(x, ref.first_layer_eta(len(results)) if number == 0 else None).reshape(-1)
        except NotImplementedError as exc:
            print(_cpu_unavailable(where, exc))
            return
        cpu_s = time.perf_counter() - t0
        if number == 0:
            print(header)   # only once the CPU side has run: an unfinished 3.1 prints just its note
        for name, sec in ref.seconds.items():
            kind = _kind(name)
            cpu_kind[kind] = cpu_kind.get(kind, 0.0) + sec / len(results)
        q = row["prob"]
        if q.shape != p.shape:
            print(f"{row['image'].name:<18} the DLP output has {q.size} values, the CPU side {p.size}: "
                  "not comparable")
            continue
        host = f"{row['host_forward']:11.3f}" if "host_forward" in row else f"{row['seconds']:11.3f}"
        model = f"{row['totals']['whole_net_seconds'] * 1e3:13.3f}" if "totals" in row else f"{'n/a':>13}"
        a, b = int(np.argmax(p)), int(np.argmax(q))
        print(f"{row['image'].name[:17]:<18}{cpu_s:10.3f}{host}{model}{np.max(np.abs(p - q)):10.4f}"
              f"{np.sum(np.abs(p - q)):8.4f}{kl_divergence(p, q):9.4f}{a:9d}{b:9d}  {'yes' if a == b else 'NO'}")
    print("  CPU fwd s / DLP host s: measured on this machine (the DLP host time is the emulator's own CPU time,")
    print("  not a device figure). DLP model ms: MODELLED whole-net device time from the kit's roofline model.")
    print("  max|dp|, L1, KL(CPU || DLP): how far the DLP's arithmetic moves the softmax from float32"
          + (" (float32 on both sides here: only the order of additions differs)." if track == "pycnnl" else "."))
    last = results[-1]
    if "profile" not in last:
        return
    print("\n--- per layer type (thought question 3.2.6(1)); last image ---")
    print(f"{'type':<13}{'layers':>7}{'CPU float32 ms':>16}{'DLP modelled us':>17}{'CPU/DLP':>10}")
    kinds = {"CONVOLUTION": "conv", "MLP": "fc", "RELU": "relu", "POOL": "pool", "FLATTEN": "flatten",
             "SOFTMAX": "softmax", "CAST": None}
    per_type: dict[str, list] = {}
    for r in last["profile"]:
        entry = per_type.setdefault(r["type"], [0, 0.0])
        entry[0] += 1
        entry[1] += r["modelled_seconds"]
    for type_name, (count, modelled) in per_type.items():
        kind = kinds.get(type_name)
        cpu = cpu_kind.get(kind) if kind else None
        cpu_txt = f"{cpu * 1e3:16.2f}" if cpu is not None else f"{'-':>16}"
        ratio = f"{cpu / modelled:10.0f}" if cpu else f"{'-':>10}"
        print(f"{type_name:<13}{count:>7}{cpu_txt}{modelled * 1e6:17.1f}{ratio}")
    tot = last["totals"]
    print("\n--- host<->device interaction (thought question 3.2.6(2)); MODELLED ---")
    print(f"whole net on the device, one launch, input and output copied once: "
          f"{tot['whole_net_seconds'] * 1e3:.3f} ms ({tot['whole_net_pcie_bytes'] / 1e6:.2f} MB over PCIe)")
    print(f"every layer launched and synchronised alone, data to and from the host each time: "
          f"{tot['per_layer_round_trip_seconds'] * 1e3:.3f} ms ({tot['per_layer_launches']} launches, "
          f"{tot['per_layer_pcie_bytes'] / 1e6:.2f} MB over PCIe)")
    print(f"round trips cost x{tot['round_trip_over_whole_ratio']:.2f} the whole-net run "
          f"(model for {tot['device']}, core_num {tot['core_num']}; assumptions: {'; '.join(tot['assumptions'])})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Experiment 3.2: VGG19 on the DLP through pycnml or pycnnl")
    parser.add_argument("--submission", default=None,
                        help="folder shaped like stu_upload/, relative to the current folder "
                             "(default: the kit's stu_upload/)")
    parser.add_argument("--file-list", default=str(DEFAULT_FILE_LIST),
                        help="lines 'image_path label', paths relative to the kit's root (default: %(default)s)")
    parser.add_argument("--weights", default=None, help="a MatConvNet VGG19 .mat (default: resolved as env.sh says)")
    parser.add_argument("--no-compare", action="store_true", help="skip the comparison with the CPU VGG19 of experiment 3.1")
    parser.add_argument("--profile", action="store_true", help="print the emulator's per-layer profile of the last image")
    parser.add_argument("--track", choices=("auto",) + course.TRACKS, default="auto",
                        help="the edition vgg19_demo.py is written for (default auto: the course's, unless the file "
                             "imports only the other edition's module)")
    args = parser.parse_args(argv)

    try:
        submission = resolve_submission(args.submission)
        entries = read_file_list(Path(args.file_list))
        weights = weights_for(args.weights)
        if args.track == "auto":
            choice = course.choose_track(submission)
        else:
            choice = course.TrackChoice(args.track, course.course_track())
        quant_path = resolve_quant_params(weights) if choice.track == "pycnml" else None
        labels = SYNSET_WORDS.read_text(encoding="utf-8").splitlines(keepends=True)
    except (SubmissionError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(weights.banner())
    print(f"Submission: {submission / EXPERIMENT}")
    print(f"track: {choice.track}, {course.EDITIONS[choice.track]}" + (f"\nnote: {choice.note}" if choice.note else ""))
    if quant_path is not None:
        print(f"quant parameters: {quant_path}")
    api = importlib.import_module(choice.track)
    print(api.backend_info())
    shims = compat.install(compat.needed(course.read_source(submission / EXPERIMENT / course.DEMO_FILE) or ""))
    if shims:
        print(f"note: {compat.describe(shims)}")
    refused = tuple(getattr(api, name) for name in ("CnmlError", "CnnlError") if hasattr(api, name))
    try:
        demo = load_module(submission, EXPERIMENT, "vgg19_demo")
        vgg = demo.VGG19()
        if quant_path is not None:
            vgg.build_model(param_path=str(weights.path), quant_param_path=str(quant_path))
        else:
            vgg.build_model(param_path=str(weights.path))
        vgg.load_model()
        results = run_dlp(vgg, entries, labels)
    except SubmissionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NotImplementedError as exc:
        print(f"\nNot finished yet: {exc or 'a TODO raises NotImplementedError'}.\n"
              f"Complete the TODOs in {submission / EXPERIMENT}/vgg19_demo.py and run again.", file=sys.stderr)
        return 1
    except refused as exc:
        print(f"\n{choice.track} refused a call from your vgg19_demo.py: {exc}", file=sys.stderr)
        return 1
    if weights.kind != "real":
        print("\n" + "!" * 78)
        print(f"!! {weights.kind.upper()} WEIGHTS: accuracy1/accuracy5 above compare the network's argmax with")
        print("!! ImageNet labels and are MEANINGLESS. Only the real VGG19 weights classify images;")
        print("!! the grader compares your softmax with the reference emulator's instead.")
        print("!" * 78)
    if args.profile and hasattr(vgg.net, "getProfile") and hasattr(api, "format_profile"):
        print()
        print(api.format_profile(vgg.net))
    if not args.no_compare:
        print_comparison(results, weights, submission, choice.track)
    return 0


if __name__ == "__main__":
    sys.exit(main())
