#!/usr/bin/env python
"""Speed of the pycnml emulator against a float32 numpy VGG19 forward, in one run.

    python benchmarks/bench_pycnml.py              # VGG19 at 224x224, 3 repeats
    python benchmarks/bench_pycnml.py --size 64    # quicker, smaller spatial size

Random He-scaled weights; the quant parameters come from QuantTool on the
weights and on each conv/mlp input captured from the float32 forward (what
the course's calibration does). Times are the best of ``--repeats`` runs,
alternating the implementations so that machine noise hits both. BLAS is
limited to 2 threads. The figures of the DLP printed at the end are modelled.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import as_strided  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import pycnml  # noqa: E402

STAGES = [(64, 2), (128, 2), (256, 4), (512, 4), (512, 4)]


def vgg19_layers(size: int):
    """[(name, kind, arg)] in the course's order; kind in conv/relu/pool/flatten/fc/softmax."""
    layers, cin = [], 3
    for s, (cout, n) in enumerate(STAGES, start=1):
        for i in range(1, n + 1):
            layers.append((f"conv{s}_{i}", "conv", (cin, cout)))
            layers.append((f"relu{s}_{i}", "relu", None))
            cin = cout
        layers.append((f"pool{s}", "pool", None))
    feat = 512 * (size // 32) ** 2
    layers.append(("flatten", "flatten", feat))
    for name, fin, fout in (("fc6", feat, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 1000)):
        layers.append((name, "fc", (fin, fout)))
        if name != "fc8":
            layers.append((name.replace("fc", "relu"), "relu", None))
    layers.append(("Softmax", "softmax", None))
    return layers


def make_weights(layers, rng):
    """He-scaled float32 weights in the DLP layouts: conv [Cout, Cin, 3, 3], fc [out, in]."""
    weights = {}
    for name, kind, arg in layers:
        if kind == "conv":
            cin, cout = arg
            w = rng.standard_normal((cout, cin, 3, 3), dtype=np.float32) * np.float32(np.sqrt(2 / (9 * cin)))
            weights[name] = (w, (rng.standard_normal(cout) * 0.01).astype(np.float32))
        elif kind == "fc":
            fin, fout = arg
            w = rng.standard_normal((fout, fin), dtype=np.float32) * np.float32(np.sqrt(2 / fin))
            weights[name] = (w, (rng.standard_normal(fout) * 0.01).astype(np.float32))
    return weights


def conv_f32(x, w, b):
    """3x3, stride 1, pad 1 conv by im2col + sgemm. x (1, C, H, W), w (Cout, C, 3, 3)."""
    _, c, h, wd = x.shape
    xp = np.zeros((c, h + 2, wd + 2), np.float32)
    xp[:, 1:-1, 1:-1] = x[0]
    sc, sh, sw = xp.strides
    cols = as_strided(xp, (c, 3, 3, h, wd), (sc, sh, sw, sh, sw)).reshape(c * 9, h * wd)
    y = w.reshape(w.shape[0], -1) @ cols
    y += b[:, None]
    return y.reshape(1, -1, h, wd)


def ref_forward(layers, weights, x, capture=None):
    """float32 VGG19 forward; ``capture`` (dict) receives each conv/fc input."""
    for name, kind, _ in layers:
        if capture is not None and kind in ("conv", "fc"):
            capture[name] = x
        if kind == "conv":
            x = conv_f32(x, *weights[name])
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "pool":
            n, c, h, w = x.shape
            x = x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
        elif kind == "flatten":
            x = x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1)
        elif kind == "fc":
            w, b = weights[name]
            x = x.reshape(x.shape[0], -1) @ w.T + b
        elif kind == "softmax":
            e = np.exp(x - x.max(axis=1, keepdims=True))
            x = e / e.sum(axis=1, keepdims=True)
    return x


def build_emulator(layers, weights, size, input_qps, filter_qps):
    with contextlib.redirect_stdout(io.StringIO()):
        net = pycnml.CnmlNet(16)
    net.setInputShape(1, 3, size, size)
    for name, kind, arg in layers:
        if kind == "conv":
            net.createConvLayer(name, arg[1], 3, 1, 1, 1, input_qps[name])
        elif kind == "relu":
            net.createReLuLayer(name)
        elif kind == "pool":
            net.createPoolingLayer(name, 2, 2)
        elif kind == "flatten":
            net.createFlattenLayer(name, [1, arg, 1, 1])
        elif kind == "fc":
            net.createMlpLayer(name, arg[1], input_qps[name])
        elif kind == "softmax":
            net.createSoftmaxLayer(name, 1)
    for i in range(net.size()):
        if net.needToBeQuantized(i):
            name = net.getLayerName(i)
            w, b = weights[name]
            net.loadParams(i, w.ravel(), b, filter_qps[name])
    return net


def vgg_cpu_forward(weights, x):
    """A forward through the kit's exp 3.1 reference vgg_cpu.py, or None with the reason."""
    try:
        from grader.kit.paths import REFERENCE_DIR
        from grader.kit.submission import load_module
        with contextlib.redirect_stdout(io.StringIO()):
            mod = load_module(REFERENCE_DIR, "exp_3_1_vgg", "vgg_cpu")
            vgg = mod.VGG19()
            vgg.build_model()
            for name in vgg.update_layer_list:
                w, b = weights[name]
                w = w.transpose(1, 2, 3, 0) if w.ndim == 4 else w.T  # -> [Cin,K,K,Cout] / [in,out]
                vgg.layers[name].load_param(w, b)
            vgg.input_image = x
    except Exception as exc:  # the reference may be missing or mid-edit
        return None, f"{type(exc).__name__}: {exc}"

    def run():
        with contextlib.redirect_stdout(io.StringIO()):
            return vgg.forward()
    return run, "grader/reference/exp_3_1_vgg/vgg_cpu.py"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224, help="input height = width (multiple of 32)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-vgg-cpu", action="store_true", help="skip timing the exp 3.1 reference")
    args = ap.parse_args(argv)
    if args.size % 32:
        ap.error("--size must be a multiple of 32")
    rng = np.random.default_rng(0)
    layers = vgg19_layers(args.size)
    t = time.perf_counter()
    weights = make_weights(layers, rng)
    x = (rng.standard_normal((1, 3, args.size, args.size)) * 60).astype(np.float32)
    print(f"random VGG19 weights, input 1x3x{args.size}x{args.size} "
          f"({time.perf_counter() - t:.1f} s to generate); BLAS threads "
          f"{os.environ['OPENBLAS_NUM_THREADS']}; {pycnml.backend_info()}")

    # Calibration: QuantTool on each conv/fc input of the float forward and on each weight.
    captured = {}
    ref_probs = ref_forward(layers, weights, x, capture=captured)
    tool = pycnml.QuantTool()
    input_qps = {n: tool.getQuantParam(a, n + "_input") for n, a in captured.items()}
    filter_qps = {n: tool.getQuantParam(w, n + "_filter") for n, (w, _) in weights.items()}
    del captured
    t = time.perf_counter()
    net = build_emulator(layers, weights, args.size, input_qps, filter_qps)
    print(f"emulator net built and loaded in {time.perf_counter() - t:.1f} s (weights quantized once)")
    net.setInputData(x.astype(np.float64).ravel())

    candidates = {"float32 im2col (this file)": lambda: ref_forward(layers, weights, x),
                  "pycnml emulator": net.forward}
    if not args.no_vgg_cpu:
        run, origin = vgg_cpu_forward(weights, x)
        if run is None:
            print(f"exp 3.1 reference not timed: {origin}")
        else:
            candidates[f"exp 3.1 reference ({origin})"] = run
    best = {k: float("inf") for k in candidates}
    for _ in range(args.repeats):
        for k, fn in candidates.items():
            t = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t)
    base = best["float32 im2col (this file)"]
    print(f"\nbest of {args.repeats} forwards (host wall time, measured):")
    for k, s in best.items():
        print(f"  {k:<60}{s * 1e3:9.1f} ms   x{s / base:.2f}")
    print(f"emulator / float32 ratio: {best['pycnml emulator'] / base:.2f} (target <= 3)")

    emu = np.array(net.getOutputData())
    ref = ref_probs.ravel()
    print(f"agreement: top-1 float32 {int(ref.argmax())} vs emulator {int(emu.argmax())}; "
          f"max |prob diff| {np.abs(emu - ref).max():.2e}")
    print()
    print(pycnml.format_profile(net))


if __name__ == "__main__":
    main()
