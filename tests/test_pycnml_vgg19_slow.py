"""One full-size VGG19 forward through the emulator (random weights), against float32."""
import importlib.util
import time

import numpy as np
import pytest

import pycnml
from grader.kit.paths import REPO_ROOT


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_pycnml", REPO_ROOT / "benchmarks" / "bench_pycnml.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_vgg19_224_forward_agrees_with_float32():
    bench = _bench_module()
    rng = np.random.default_rng(11)
    layers = bench.vgg19_layers(224)
    weights = bench.make_weights(layers, rng)
    x = (rng.standard_normal((1, 3, 224, 224)) * 60).astype(np.float32)
    captured = {}
    t = time.perf_counter()
    ref = bench.ref_forward(layers, weights, x, capture=captured).ravel()
    t_ref = time.perf_counter() - t
    tool = pycnml.QuantTool()
    iq = {n: tool.getQuantParam(a, n) for n, a in captured.items()}
    fq = {n: tool.getQuantParam(w, n + "/w") for n, (w, _) in weights.items()}
    net = bench.build_emulator(layers, weights, 224, iq, fq)
    assert net.size() == 44
    net.setInputData(x.astype(np.float64).ravel())
    t = time.perf_counter()
    net.forward()
    t_emu = time.perf_counter() - t
    out = net.getOutputData()
    assert len(out) == 1000
    got = np.array(out)
    assert abs(got.sum() - 1) < 1e-2
    assert out.index(max(out)) == int(np.argmax(ref))
    names = [net.getLayerName(i) for i in range(net.size())]
    assert net.getLayerOutputShape(names.index("pool5")) == (1, 512, 7, 7)
    print(f"VGG19 224: emulator {t_emu:.2f} s, float32 {t_ref:.2f} s (not asserted)")
