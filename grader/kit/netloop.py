"""Run one of the book's VGG19 objects layer by layer, timing every layer.

The book's VGG19 classes (experiment 3.1's ``vgg_cpu.VGG19``) expose ``param_layer_name``
(the layer names in execution order, 44 for VGG19) and ``layers`` (name -> an object with
``forward(x)``). The book's own ``VGG19.forward`` walks them silently; the runners and the
grader walk them here instead, so that every layer can be timed, shown and fingerprinted.

Shapes along VGG19 on one 224x224 image: input ``[1, 3, 224, 224]`` -> conv/relu/pool
``[1, C, H, W]`` -> pool5 ``[1, 512, 7, 7]`` -> flatten ``[1, 25088]`` -> fc6, fc7
``[1, 4096]`` -> fc8 and Softmax ``[1, 1000]``. Nothing here converts or checks the
arrays: each layer gets exactly what the previous one returned.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

import numpy as np

from grader.kit.vgg_layout import CONV_CHANNELS, FC_SIZES, output_shapes

# on_layer(index, name, output, seconds): index counts from 1, output is what the layer
# returned, seconds its forward's wall-clock time.
LayerHook = Callable[[int, str, Any, float], None]


def layer_names(vgg) -> list[str]:
    """The names ``vgg`` runs, in order (a list copy of ``vgg.param_layer_name``)."""
    names = getattr(vgg, "param_layer_name", None)
    if names is None:
        raise AttributeError("VGG19 has no attribute 'param_layer_name': __init__ must set the tuple of layer names")
    if not hasattr(vgg, "layers"):
        raise AttributeError("VGG19 has no attribute 'layers': build_model must fill self.layers = {name: layer}")
    return list(names)


def run_layers(vgg, x, on_layer: LayerHook | None = None) -> tuple[Any, dict[str, float]]:
    """Forward ``x`` through ``vgg.layers[name]`` for every name of ``vgg.param_layer_name``.

    ``x`` is the network input, ``[N, 3, 224, 224]`` for VGG19 (``vgg.input_image`` after
    ``load_image``); it reaches the first layer unchanged. ``on_layer(index, name, output,
    seconds)`` is called after each layer (see :data:`LayerHook`).

    Returns ``(output of the last layer, {name: seconds})``: for VGG19 the softmax
    ``[N, 1000]`` and 44 timings in layer order. A layer's exception (NotImplementedError
    from an unfinished TODO, a KeyError for a layer build_model forgot) propagates with a
    note naming the layer ("while running pool1.forward").
    """
    names = layer_names(vgg)
    seconds: dict[str, float] = {}
    current = x
    for index, name in enumerate(names, start=1):
        start = time.perf_counter()
        with running(f"{name}.forward"):
            current = vgg.layers[name].forward(current)
        seconds[name] = time.perf_counter() - start
        if on_layer is not None:
            on_layer(index, name, current, seconds[name])
    return current, seconds


@contextlib.contextmanager
def running(what: str):
    """Add the PEP 678 note "while running <what>" to any exception raised inside.

    The probe prints notes under the crash line, so a failure deep in a network names the
    layer or call that was running (``with running("pool1.forward"): ...``).
    """
    try:
        yield
    except BaseException as exc:
        exc.add_note(f"while running {what}")
        raise


# Per output element, a Python loop over the book's windows costs about as much as this
# many multiply-adds on top of the window's own (measured: np.sum(window * weight) takes
# ~3.2 us for a 27-element window and ~12 us for 4608 elements, ~2 ns per element), and
# one np.max over a pool window about as much as POOL_OVERHEAD. A vectorised layer has
# almost no per-element overhead; its estimate is then high, and corrected layer by layer.
CONV_OVERHEAD = 1600.0
POOL_OVERHEAD = 1100.0


def layer_work(names: list[str]) -> list[float]:
    """A relative cost per layer, for estimating the time left.

    Conv layers count, per output element, the window's multiply-adds plus
    :data:`CONV_OVERHEAD`; pool layers their outputs times (window + :data:`POOL_OVERHEAD`);
    fc layers their multiply-adds; other layers the elements they write (VGG19 on 224x224,
    from :mod:`grader.kit.vgg_layout`). Names outside VGG19's 44 give every layer the
    same weight.
    """
    layout = {name: (kind, shape) for name, kind, shape in output_shapes()}
    if not names or any(name not in layout for name in names):
        return [1.0] * len(names)
    work = []
    for name in names:
        kind, (n, c, h, w) = layout[name]
        outputs = float(n * c * h * w)
        if kind == "conv":
            work.append(outputs * (CONV_CHANNELS[name][0] * 9 + CONV_OVERHEAD))
        elif kind == "pool":
            work.append(outputs * (4 + POOL_OVERHEAD))
        elif kind == "fc":
            work.append(float(FC_SIZES[name][0] * FC_SIZES[name][1]))
        else:
            work.append(outputs)
    return work


def format_duration(seconds: float) -> str:
    """``under 1 s``, ``42 s``, ``9 min``, ``1 h 05 min``: a rough duration read at a glance."""
    if seconds < 1:
        return "under 1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def whole_network_estimate(first_seconds: float, work: list[float]) -> float:
    """Seconds the whole network should take, extrapolated from its first layer's time."""
    if not work or work[0] <= 0:
        return first_seconds
    return first_seconds * sum(work) / work[0]


def eta_line(name: str, seconds: float, work: list[float]) -> str:
    """``conv1_1 took 12.3 s; whole network about 9 min``: printed once, after the first layer."""
    total = whole_network_estimate(seconds, work)
    took = f"{seconds:.1f}" if seconds >= 0.1 else f"{seconds:.3f}"
    estimate = format_duration(total)
    return f"  {name} took {took} s; whole network {'' if estimate.startswith('under') else 'about '}{estimate}"


def progress_printer(names: list[str], write: Callable[[str], Any] = print, eta: bool = True) -> LayerHook:
    """An ``on_layer`` hook printing one line per layer and the total after the last one.

    Lines look like ``  [ 8/44] conv2_2     1.234 s   output (1, 128, 112, 112)   ~9 s left``;
    the estimate extrapolates the time so far by :func:`layer_work` (a loop implementation
    of conv may take minutes, and the student should know whether to wait). With ``eta``,
    the first layer's line is followed by :func:`eta_line`, the whole network's estimate.
    """
    work = layer_work(names)
    total_work = sum(work)
    state = {"elapsed": 0.0, "done": 0.0}

    def hook(index: int, name: str, output, seconds: float) -> None:
        state["elapsed"] += seconds
        state["done"] += work[index - 1]
        shape = tuple(np.shape(output))
        line = f"  [{index:2d}/{len(names)}] {name:<8} {seconds:8.3f} s   output {shape}"
        remaining = total_work - state["done"]
        left = state["elapsed"] * remaining / state["done"] if state["done"] > 0 else 0.0
        if eta and index < len(names) and left >= 0.5:
            line += f"   ~{format_duration(left)} left"
        write(line)
        if eta and index == 1 and len(names) > 1:
            write(eta_line(name, seconds, work))
        if index == len(names):
            write(f"  forward total: {state['elapsed']:.2f} s")

    return hook


def sample_indices(size: int, count: int = 64) -> np.ndarray:
    """Fixed pseudo-random flat indices (sorted, at most ``count``) of an output of ``size`` elements."""
    rng = np.random.default_rng(size)
    return np.sort(rng.choice(size, size=min(count, size), replace=False))


def fingerprint(out: dict, name: str, array) -> np.ndarray:
    """Record layer ``name``'s output shape and fixed sample in ``out``; return it as float64.

    ``out[f"sample/{name}"]`` is ``[min(64, size)]`` values at :func:`sample_indices`,
    ``out[f"shape/{name}"]`` the shape as floats: the goldens' per-layer keys, from which
    :func:`grader.kit.compare.first_divergent_layer` names the first layer that differs.
    """
    arr = np.asarray(array, dtype=np.float64)
    flat = arr.reshape(-1)
    out[f"sample/{name}"] = flat[sample_indices(flat.size)]
    out[f"shape/{name}"] = np.asarray(arr.shape, dtype=np.float64)
    return arr
