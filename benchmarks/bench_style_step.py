"""One Gatys style-transfer step at 192x320: the 3.3 reference (float32, float64) vs torch.

    python benchmarks/bench_style_step.py [--repeat 7] [--threads 2] [--size 192x320]

A step is what experiment 3.3 does per iteration: VGG19 forward to relu5_1, content loss
(relu4_2) and style losses (relu1_1 .. relu5_1) with their gradients (formulas 3.10-3.15),
one backward pass to the image, one Adam update (formula 3.17).

Rows (median wall time over --repeat rounds; rows take turns within each round so that
load from other processes hits all of them alike):
  reference f32 / f64   grader/reference/exp_3_3_style_transfer through the book's
                        interface (VGG19 layers built with type=1), the runner's fused
                        backward (one walk down vgg.layers), the reference AdamOptimizer
  torch f32 / f64       torch.nn.functional conv2d / relu / max_pool2d, autograd for the
                        image gradient (weights do not require grad), the same losses and
                        Adam written with torch tensors
Ratios are time / torch time from the same run. Before timing, the float64 reference
gradient is compared with torch's float64 gradient.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
AVX512_FLAGS = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=7, help="timed rounds (default 7)")
    p.add_argument("--threads", type=int, default=2, help="threads for BLAS/torch (default 2)")
    p.add_argument("--size", default="192x320", help="HEIGHTxWIDTH (default 192x320, the book's)")
    p.add_argument("--openblas-coretype", default="auto",
                   help="OPENBLAS_CORETYPE set before numpy loads: 'auto' (SkylakeX when the CPU has "
                        "AVX-512 and the variable is unset), 'keep', or a core name")
    p.add_argument("--no-torch", action="store_true", help="time the reference only")
    return p.parse_args(argv)


def configure_env(args) -> str:
    """Thread counts and the OpenBLAS core; must run before numpy is imported."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    if args.openblas_coretype == "auto":
        flags = set()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                flags = next((set(l.split(":", 1)[1].split()) for l in f if l.startswith("flags")), set())
        except OSError:
            pass
        # OpenBLAS runs its AVX2 kernels on AVX-512 CPUs it does not recognise.
        if "OPENBLAS_CORETYPE" not in os.environ and AVX512_FLAGS <= flags:
            os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    elif args.openblas_coretype != "keep":
        os.environ["OPENBLAS_CORETYPE"] = args.openblas_coretype
    return os.environ.get("OPENBLAS_CORETYPE", "detected by OpenBLAS")


ARGS = parse_args()
CORETYPE = configure_env(ARGS)

import numpy as np  # noqa: E402

sys.path.insert(0, str(REPO_ROOT))
from grader.kit.paths import DEFAULT_CONTENT, DEFAULT_STYLE, REFERENCE_DIR  # noqa: E402
from grader.kit.submission import load_module  # noqa: E402

EXP = "exp_3_3_style_transfer"
MEAN = np.array([123.68, 116.779, 103.939], dtype=np.float32)


def load_runner():
    """The figure 3.21 pieces the 3.3 runner uses: layer lists, hyper-parameters, StyleObjective."""
    from grader.refnet import styleloop
    return styleloop


def random_weights(vgg, seed=0):
    """He-scaled conv weights [Cin, 3, 3, Cout] (float32) and small biases, by layer name."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name in vgg.param_layer_name:
        if name.startswith("conv"):
            layer = vgg.layers[name]
            cin, cout = layer.channel_in, layer.channel_out
            w = rng.standard_normal((cin, 3, 3, cout), dtype=np.float32) * np.float32(np.sqrt(2.0 / (9 * cin)))
            b = (0.01 * rng.standard_normal(cout)).astype(np.float32)
            weights[name] = (w, b)
    return weights


class ReferenceStep:
    def __init__(self, runner, st, l3, weights, content, style, dtype):
        self.dtype = np.dtype(dtype)
        vgg = st.VGG19(param_path="unused.mat")
        vgg.build_model()
        for name, (w, b) in weights.items():
            vgg.layers[name].load_param(w.astype(self.dtype), b.astype(self.dtype))
        content = content.astype(self.dtype)
        style = style.astype(self.dtype)
        content_layers = {k: v.copy() for k, v in vgg.forward(content, runner.CONTENT_LOSS_LAYERS).items()}
        style_layers = {k: v.copy() for k, v in vgg.forward(style, runner.STYLE_LOSS_LAYERS).items()}
        self.objective = runner.StyleObjective(vgg, l3.ContentLossLayer(), l3.StyleLossLayer(), content_layers,
                                               style_layers, runner.ALPHA, runner.BETA, 0.0, fused=True)
        self.image = content.copy()
        self.adam = st.AdamOptimizer(runner.LEARNING_RATE, self.image.shape)

    def step(self):
        total, _, _, _, grad = self.objective(self.image)
        self.image = np.asarray(self.adam.update(self.image, grad), dtype=self.dtype)
        return total, grad


class TorchStep:
    def __init__(self, torch, runner, weights, content, style, dtype):
        self.torch = torch
        self.runner = runner
        self.dtype = dtype
        self.params = [(name, torch.from_numpy(np.ascontiguousarray(w.transpose(3, 0, 1, 2))).to(dtype),
                        torch.from_numpy(b).to(dtype)) for name, (w, b) in weights.items()]
        with torch.no_grad():
            feats = self.features(torch.from_numpy(content).to(dtype))
            self.content_targets = {k: feats[k] for k in runner.CONTENT_LOSS_LAYERS}
            feats = self.features(torch.from_numpy(style).to(dtype))
            self.style_grams = {k: self.gram(feats[k]) for k in runner.STYLE_LOSS_LAYERS}
        self.image = torch.from_numpy(content).to(dtype).clone()
        self.m = torch.zeros_like(self.image)
        self.v = torch.zeros_like(self.image)
        self.t = 0

    def features(self, x):
        F = self.torch.nn.functional
        wanted = set(self.runner.CONTENT_LOSS_LAYERS + self.runner.STYLE_LOSS_LAYERS)
        out = {}
        for name, w, b in self.params:
            x = F.relu(F.conv2d(x, w, b, padding=1))
            relu = "relu" + name[4:]
            if relu in wanted:
                out[relu] = x
            if len(out) == len(wanted):
                break
            if name in ("conv1_2", "conv2_2", "conv3_4", "conv4_4"):
                x = F.max_pool2d(x, 2, 2)
        return out

    def gram(self, f):
        n, c = f.shape[:2]
        f = f.reshape(n, c, -1)
        return self.torch.bmm(f, f.transpose(1, 2))

    def step(self):
        torch, runner = self.torch, self.runner
        image = self.image.detach().requires_grad_(True)
        feats = self.features(image)
        content = [((feats[k] - self.content_targets[k]) ** 2).sum() / (2 * feats[k].numel())
                   for k in runner.CONTENT_LOSS_LAYERS]
        style = []
        for k in runner.STYLE_LOSS_LAYERS:
            n, c, h, w = feats[k].shape
            style.append(((self.gram(feats[k]) - self.style_grams[k]) ** 2).sum() / (4.0 * n * c * c * (h * w) ** 2))
        total = runner.ALPHA * torch.stack(content).mean() + runner.BETA * torch.stack(style).mean()
        total.backward()
        grad = image.grad
        with torch.no_grad():
            self.t += 1
            self.m.mul_(0.9).add_(grad, alpha=0.1)
            self.v.mul_(0.999).addcmul_(grad, grad, value=0.001)
            m_hat = self.m / (1 - 0.9 ** self.t)
            v_hat = self.v / (1 - 0.999 ** self.t)
            self.image = image.detach() - runner.LEARNING_RATE * m_hat / (v_hat.sqrt() + 1e-8)
        return float(total.detach()), grad


def main():
    height, width = (int(v) for v in ARGS.size.lower().split("x"))
    runner = load_runner()
    load_module(REFERENCE_DIR, EXP, "style_transfer")
    st, l3 = sys.modules["style_transfer"], sys.modules["layers_3"]
    probe = st.VGG19()
    probe.build_model()
    weights = random_weights(probe)
    probe.image_mean = MEAN
    content, _ = probe.load_image(str(DEFAULT_CONTENT), height, width)
    style, _ = probe.load_image(str(DEFAULT_STYLE), height, width)

    rows = {
        "reference f32": ReferenceStep(runner, st, l3, weights, content, style, np.float32),
        "reference f64": ReferenceStep(runner, st, l3, weights, content, style, np.float64),
    }
    torch = None
    if not ARGS.no_torch:
        try:
            import torch
        except ImportError:
            print("torch is not installed (pip install .[bench]): timing the reference only")
    if torch is not None:
        torch.set_num_threads(ARGS.threads)
        rows["torch f32"] = TorchStep(torch, runner, weights, content, style, torch.float32)
        rows["torch f64"] = TorchStep(torch, runner, weights, content, style, torch.float64)
        # Cross-check on the first step (same start image): loss and image gradient.
        ref_total, ref_grad = rows["reference f64"].step()
        t_total, t_grad = rows["torch f64"].step()
        grad_err = np.max(np.abs(ref_grad - t_grad.numpy())) / np.max(np.abs(t_grad.numpy()))
        print(f"cross-check float64, step 1: loss rel diff {abs(ref_total - t_total) / abs(t_total):.2e}, "
              f"image gradient max diff / max |grad| {grad_err:.2e}")
        rows["torch f32"].step()
    rows["reference f32"].step()  # warm-up (allocations, caches)

    times = {name: [] for name in rows}
    for _ in range(ARGS.repeat):
        for name, row in rows.items():
            start = time.perf_counter()
            row.step()
            times[name].append(time.perf_counter() - start)

    print(f"one Gatys step at {height}x{width}, {ARGS.threads} threads, numpy {np.__version__}, "
          f"OPENBLAS_CORETYPE {CORETYPE}" + (f", torch {torch.__version__}" if torch is not None else ""))
    med = {name: float(np.median(ts)) for name, ts in times.items()}
    print(f"{'row':16s} {'median ms':>10s} {'min ms':>8s} {'max ms':>8s}")
    for name, ts in times.items():
        print(f"{name:16s} {med[name] * 1000:10.1f} {min(ts) * 1000:8.1f} {max(ts) * 1000:8.1f}")
    if torch is not None:
        print("ratios (time / torch time, same run):")
        print(f"  reference f32 / torch f32 = {med['reference f32'] / med['torch f32']:.2f}x   (target <= 1.25x)")
        print(f"  reference f64 / torch f64 = {med['reference f64'] / med['torch f64']:.2f}x   (target <= 0.8x)")
        print(f"  reference f64 / torch f32 = {med['reference f64'] / med['torch f32']:.2f}x")


if __name__ == "__main__":
    main()
