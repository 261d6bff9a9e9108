"""VGG19 forward to pool5 at 224x224, float32, N=1: kit kernels vs baselines vs torch.

    python benchmarks/bench_vgg19_forward.py [--repeat N]

Rows (median wall time over --repeat rounds; the methods take turns within each round
so that load from other processes hits all of them alike):
  fastops          grader/fastops.py, one call per layer, NCHW in/out, ReLU as np.maximum
  numpy im2col     a straightforward im2col (sliding windows, one copy) + matmul
  reference        grader/reference/exp_3_1_vgg/vgg_cpu.py driven through its own
                   classes, if it imports
  torch            torch.nn.functional conv2d/relu/max_pool2d, inference mode, if
                   torch is installed (benchmarks only; the kit never imports it)
  book loop        the book's four loops with np.sum per window, conv1_2 only; timed on
                   a crop and extrapolated by the number of output pixels
Ratios are time / torch time measured in the same run (< 1 means faster than torch).
Everything runs on --threads threads (default 2), set before numpy is imported.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
AVX512_FLAGS = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}

# VGG19's convolution stages: (number of convs, output channels); a 2x2/2 pool follows
# each stage. Every conv is 3x3, padding 1, stride 1.
STAGES = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=7, help="timed rounds (default 7)")
    p.add_argument("--threads", type=int, default=2, help="threads for BLAS/torch (default 2)")
    p.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    p.add_argument("--loop-crop", type=int, default=16,
                   help="side of the crop the book's loop conv is timed on (default 16)")
    p.add_argument("--openblas-coretype", default="auto",
                   help="OPENBLAS_CORETYPE to set before numpy loads: 'auto' (SkylakeX when "
                        "the CPU has AVX-512 and the variable is unset), 'keep' (leave as "
                        "is), or a core name")
    return p.parse_args(argv)


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def configure_env(args) -> str:
    """Thread counts and OpenBLAS core choice; must run before numpy is imported."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    choice = args.openblas_coretype
    if choice == "auto":
        # OpenBLAS detects some AVX-512 CPUs (e.g. AMD family 26) as Haswell and then
        # runs AVX2 kernels at half the speed; torch's oneDNN uses AVX-512 regardless.
        if "OPENBLAS_CORETYPE" not in os.environ and AVX512_FLAGS <= cpu_flags():
            os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
            return "SkylakeX (set by --openblas-coretype auto: CPU has AVX-512)"
        return os.environ.get("OPENBLAS_CORETYPE", "detected by OpenBLAS")
    if choice != "keep":
        os.environ["OPENBLAS_CORETYPE"] = choice
    return os.environ.get("OPENBLAS_CORETYPE", "detected by OpenBLAS")


ARGS = parse_args()
CORETYPE_NOTE = configure_env(ARGS)

import numpy as np  # noqa: E402  (the environment above must be set first)

sys.path.insert(0, str(REPO_ROOT))
from grader.refnet import fastops  # noqa: E402


def conv_specs(size: int):
    """[(cin, cout, h)] for the 16 convs, h = spatial side at that conv."""
    specs, cin, h = [], 3, size
    for n_conv, cout in STAGES:
        for _ in range(n_conv):
            specs.append((cin, cout, h))
            cin = cout
        h //= 2
    return specs


def make_params(size: int, rng):
    """He-scaled float32 weights [Cin, 3, 3, Cout] and small biases [Cout]."""
    params = []
    for cin, cout, _ in conv_specs(size):
        std = float(np.sqrt(2.0 / (9 * cin)))
        w = rng.standard_normal((cin, 3, 3, cout), dtype=np.float32) * np.float32(std)
        b = rng.standard_normal(cout, dtype=np.float32) * np.float32(0.01)
        params.append((w, b))
    return params


def run_stack(x, params, conv, pool):
    """conv+relu per layer, pool after each stage; returns pool5."""
    i = 0
    for n_conv, _ in STAGES:
        for _ in range(n_conv):
            x = np.maximum(conv(x, *params[i]), 0)
            i += 1
        x = pool(x)
    return x


# ------------------------------------------------------------------ the methods


def fast_forward(x, params):
    return run_stack(x, params,
                     lambda a, w, b: fastops.conv2d_forward(a, w, b, 1, 1),
                     lambda a: fastops.maxpool2d_forward(a, 2, 2))


def im2col_conv(x, w, b, padding=1):
    """The usual textbook im2col: windows copied to [N*Hout*Wout, Cin*K*K], one matmul."""
    n, cin, _, _ = x.shape
    k, cout = w.shape[1], w.shape[3]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    hout, wout = win.shape[2], win.shape[3]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * hout * wout, cin * k * k)
    y = cols @ w.reshape(cin * k * k, cout) + b
    return np.ascontiguousarray(y.reshape(n, hout, wout, cout).transpose(0, 3, 1, 2))


def im2col_pool(x):
    n, c, h, w = x.shape
    return x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def im2col_forward(x, params):
    return run_stack(x, params, im2col_conv, im2col_pool)


def make_torch_forward(params, threads):
    try:
        import torch
    except ImportError:
        return None, "torch is not installed: torch row skipped (pip install torch for it)"
    torch.set_num_threads(threads)
    F = torch.nn.functional
    # torch wants [Cout, Cin, K, K]; converted once, outside the timed region.
    tparams = [(torch.from_numpy(np.ascontiguousarray(w.transpose(3, 0, 1, 2))),
                torch.from_numpy(b)) for w, b in params]

    def forward(x, _params=None):
        with torch.inference_mode():
            t = torch.from_numpy(x)
            i = 0
            for n_conv, _ in STAGES:
                for _ in range(n_conv):
                    t = F.relu(F.conv2d(t, tparams[i][0], tparams[i][1], padding=1))
                    i += 1
                t = F.max_pool2d(t, 2, 2)
            return t.numpy()

    def conv1_2(x):
        with torch.inference_mode():
            return F.conv2d(torch.from_numpy(x), tparams[1][0], tparams[1][1], padding=1).numpy()

    forward.conv1_2 = conv1_2
    return forward, f"torch {torch.__version__}, {torch.get_num_threads()} threads"


def make_reference_forward(params):
    """VGG19 of the reference solution, driven through the book's interface."""
    ref_dir = REPO_ROOT / "grader" / "reference" / "exp_3_1_vgg"
    if not (ref_dir / "vgg_cpu.py").exists():
        return None, f"{ref_dir / 'vgg_cpu.py'} not found: reference row skipped"
    sys.path.insert(0, str(ref_dir))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import vgg_cpu
            net = vgg_cpu.VGG19("unused.mat")
            net.build_model()
            net.init_model()
        names = net.param_layer_name[: net.param_layer_name.index("pool5") + 1]
        convs = [name for name in names if name.startswith("conv")]
        for name, (w, b) in zip(convs, params, strict=True):
            net.layers[name].load_param(w, b)
    except Exception as exc:  # optional row: any failure is reported, not fatal
        return None, f"reference VGG19 could not be set up ({type(exc).__name__}: {exc})"

    def forward(x, _params=None):
        net.input_image = x
        current = net.input_image
        with contextlib.redirect_stdout(io.StringIO()):
            for name in names:
                current = net.layers[name].forward(current)
        return current

    return forward, "reference vgg_cpu.VGG19 to pool5"


def book_loop_conv(x, w, b, padding=1, stride=1):
    """The book's ConvolutionalLayer.forward: four loops, np.sum over each window."""
    n, cin, h, wd = x.shape
    k, cout = w.shape[1], w.shape[3]
    x_pad = np.zeros([n, cin, h + 2 * padding, wd + 2 * padding])
    x_pad[:, :, padding:padding + h, padding:padding + wd] = x
    hout = (h + 2 * padding - k) // stride + 1
    wout = (wd + 2 * padding - k) // stride + 1
    out = np.zeros([n, cout, hout, wout])
    for idxn in range(n):
        for idxc in range(cout):
            for idxh in range(hout):
                for idxw in range(wout):
                    hs, ws = idxh * stride, idxw * stride
                    out[idxn, idxc, idxh, idxw] = np.sum(
                        w[:, :, :, idxc] * x_pad[idxn, :, hs:hs + k, ws:ws + k]) + b[idxc]
    return out


# ------------------------------------------------------------------------- timing


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def rel_err(got, want):
    return float(np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max())


def main():
    args = ARGS
    rng = np.random.default_rng(0)
    params = make_params(args.size, rng)
    x = rng.standard_normal((1, 3, args.size, args.size), dtype=np.float32) * np.float32(50)
    specs = conv_specs(args.size)
    total_flop = sum(2 * cin * 9 * cout * h * h for cin, cout, h in specs)

    print(f"VGG19 conv+relu+pool to pool5, input 1x3x{args.size}x{args.size} float32, "
          f"{total_flop / 1e9:.2f} GFLOP, {args.threads} threads, {args.repeat} rounds")
    print(f"numpy {np.__version__}; OPENBLAS_CORETYPE: {CORETYPE_NOTE}")
    print(f"fastops backend: {fastops.backend_info()}")

    methods = {"fastops": fast_forward, "numpy im2col": im2col_forward}
    ref_fwd, ref_note = make_reference_forward(params)
    if ref_fwd is not None:
        methods["reference"] = ref_fwd
    torch_fwd, torch_note = make_torch_forward(params, args.threads)
    if torch_fwd is not None:
        methods["torch"] = torch_fwd
    print(f"reference: {ref_note}")
    print(f"torch: {torch_note}")

    # Agreement first (also the warm-up round): the rows must compute the same thing.
    outputs = {name: fn(x, params) for name, fn in methods.items()}
    want = np.asarray(outputs.get("torch", outputs["numpy im2col"]), np.float64)
    for name, out in outputs.items():
        print(f"  {name:<13} pool5 shape {tuple(out.shape)} dtype {out.dtype} "
              f"max rel. error vs {'torch' if 'torch' in outputs else 'im2col'}: "
              f"{rel_err(out, want):.1e}")

    times = {name: [] for name in methods}
    for _ in range(args.repeat):
        for name, fn in methods.items():
            times[name].append(timed(fn, x, params))
    med = {name: float(np.median(t)) for name, t in times.items()}

    # conv1_2 alone, to put the book's loop in proportion.
    h0 = specs[1][2]
    x12 = np.maximum(rng.standard_normal((1, 64, h0, h0), dtype=np.float32), 0)
    w12, b12 = params[1]
    flop12 = 2 * 64 * 9 * 64 * h0 * h0
    single = {"fastops": lambda: fastops.conv2d_forward(x12, w12, b12, 1, 1)}
    if torch_fwd is not None:
        single["torch"] = lambda: torch_fwd.conv1_2(x12)
    for fn in single.values():
        fn()
    single_t = {name: [] for name in single}
    for _ in range(args.repeat):
        for name, fn in single.items():
            single_t[name].append(timed(fn))
    single_med = {name: float(np.median(t)) for name, t in single_t.items()}
    crop = min(args.loop_crop, h0)
    xc = x12[:, :, :crop, :crop]
    loop_t = float(np.median([timed(book_loop_conv, xc, w12, b12) for _ in range(3)]))
    single_med[f"book loop (x{(h0 / crop) ** 2:.0f} of {crop}x{crop})"] = loop_t * (h0 / crop) ** 2

    def table(rows, flop, base):
        print(f"  {'method':<30}{'median s':>10}{'vs torch':>10}{'GFLOP/s':>10}")
        for name, t in rows.items():
            ratio = f"{t / base:.2f}x" if base else "n/a"
            print(f"  {name:<30}{t:>10.4f}{ratio:>10}{flop / t / 1e9:>10.1f}")

    print("\nVGG19 forward to pool5 (16 conv + 16 relu + 5 pool):")
    table(med, total_flop, med.get("torch"))
    print(f"\nconv1_2 alone (64->64, {h0}x{h0}, pad 1); the loop row is extrapolated:")
    table(single_med, flop12, single_med.get("torch"))
    if "torch" not in med:
        print("\n(no torch: ratios unavailable)")


if __name__ == "__main__":
    main()
