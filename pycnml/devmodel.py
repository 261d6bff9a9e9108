"""Modelled DLP time: a roofline-plus-launch-cost model, not a measurement.

For every layer (cast_in and cast_out included):

    compute_s  = ops / (peak_ops_per_s * min(core_num, cores) / cores)
    memory_s   = device_bytes / dram_bytes_per_s
    device_s   = max(compute_s, memory_s)          # roofline
    modelled_s = launch_s + device_s               # the layer run as its own operation

ops: conv/mlp count 2 ops per multiply-add at the int8 peak; the other layers
count one fp16 op per element touched at the fp16 peak. device_bytes: what the
layer reads and writes in device memory (fp16 activations = 2 B/element, int8
weights = 1 B, fp16 bias = 2 B, fp32 at the cast layers' host side = 4 B).

Two ways to run a whole net (the book's thought question 3.2.6(2)):
  * whole net: input copied host->device once, one fused launch, all layers
    back to back on the device, output copied back once;
  * per-layer round trips: every layer is launched and synchronised on its own,
    its input copied host->device and its output device->host over PCIe.
PCIe transfer = latency + bytes / bandwidth, with the assumed figures below.

Published figures used (see PYCNML.md): MLU100 128 TOPS int8, 64 TFLOPS fp16,
102.4 GB/s DDR4; MLU270 128 TOPS int8; 16 cores. Everything else is an
assumption and is marked ``assumed`` in ``DeviceSpec.assumed``.

The model serves both DLP APIs. A net gives ``executed_layers()``, its
``modelled_device()``, ``api_name`` and ``_host_seconds``; ``core_num`` when the API has one
(pycnml; pycnnl uses the whole device). A layer gives ``name``, ``layer_type``,
``in_shape``/``out_shape``, ``macs()``, ``param_bytes()``, ``param_count()``,
``compute_kind`` ("int8", "fp16" or "fp32": which peak it runs at) and the
bytes per element it reads and writes (``in_elem_bytes``, ``out_elem_bytes``).
Convolution and mlp layers count 2 ops per multiply-add, the others 1 op per
element touched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import constants as C


@dataclass(frozen=True)
class DeviceSpec:
    """Peak figures of one DLP card for the model (whole chip, all cores)."""

    name: str
    int8_ops_per_s: float
    fp16_ops_per_s: float
    dram_bytes_per_s: float
    cores: int = 16
    launch_seconds: float = 30e-6        # assumed: launch + queue sync of one operation
    pcie_bytes_per_s: float = 12e9       # assumed: PCIe 3.0 x16 (15.75 GB/s raw), ~12 GB/s effective
    pcie_latency_seconds: float = 10e-6  # assumed: fixed cost of one host<->device copy
    assumed: Tuple[str, ...] = field(default_factory=tuple)
    fp32_ops_per_s: float = 0.0           # 0: the card's fp32 peak is not modelled


_COMMON_ASSUMPTIONS = (
    "launch_seconds=30us per operation",
    "PCIe 12 GB/s effective, 10us per copy",
    "peak scales linearly with core_num/16",
    "every layer reaches its roofline peak (a lower bound on real time)",
)

MLU100 = DeviceSpec(
    name="MLU100", int8_ops_per_s=128e12, fp16_ops_per_s=64e12, dram_bytes_per_s=102.4e9,
    assumed=_COMMON_ASSUMPTIONS + ("16 cores",))

MLU270 = DeviceSpec(
    name="MLU270", int8_ops_per_s=128e12, fp16_ops_per_s=64e12, dram_bytes_per_s=102.4e9,
    assumed=_COMMON_ASSUMPTIONS + ("fp16 peak 64 TFLOPS (half the int8 peak)",
                                   "DRAM 102.4 GB/s (the MLU100 figure)"))


def device_for(core_version: int) -> DeviceSpec:
    """The spec for a core version; versions without figures in the kit use MLU270's, labelled."""
    if core_version == C.CNML_C10:
        return MLU100
    if core_version == C.CNML_MLU270:
        return MLU270
    label = C.CORE_VERSION_NAMES.get(core_version, str(core_version))
    return DeviceSpec(
        name=f"{label} (modelled with MLU270 figures)", int8_ops_per_s=MLU270.int8_ops_per_s,
        fp16_ops_per_s=MLU270.fp16_ops_per_s, dram_bytes_per_s=MLU270.dram_bytes_per_s,
        assumed=MLU270.assumed + (f"no published figures for {label} in the kit",))


# MLU370 (CNNL, the newer edition's pycnnl). Published (one source, a launch report) for the dual-chip MLU370-X8:
# FP32 32 TFLOPS, FP16 96 TFLOPS, INT8 256 TOPS, LPDDR5 614.4 GB/s, PCIe 4.0 x16. One
# process drives one chip, modelled as half of those figures.
MLU370 = DeviceSpec(
    name="MLU370 (one chip of an MLU370-X8)", int8_ops_per_s=128e12, fp16_ops_per_s=48e12,
    dram_bytes_per_s=307.2e9, cores=1, pcie_bytes_per_s=24e9, fp32_ops_per_s=16e12,
    assumed=("the course's card is not known: one MLU370 chip is modelled",
             "one chip = half the MLU370-X8 figures (FP32 16 TFLOPS, 307.2 GB/s)",
             "launch_seconds=30us per operation",
             "PCIe 4.0 x16 24 GB/s effective, 10us per copy",
             "every layer reaches its roofline peak (a lower bound on real time)"))


def _type_name(layer) -> str:
    return C.LAYER_TYPE_NAMES[layer.layer_type]


def _layer_bytes(layer) -> Tuple[int, int, int]:
    """(device bytes moved, bytes of its input, bytes of its output) at device storage widths."""
    in_b = int(np.prod(layer.in_shape)) * layer.in_elem_bytes
    out_b = int(np.prod(layer.out_shape)) * layer.out_elem_bytes
    return in_b + out_b + layer.param_bytes(), in_b, out_b


def _peak(dev: DeviceSpec, kind: str) -> float:
    peak = {"int8": dev.int8_ops_per_s, "fp16": dev.fp16_ops_per_s,
            "fp32": dev.fp32_ops_per_s}[kind]
    if peak <= 0:
        raise ValueError(f"the device model {dev.name} has no {kind} peak")
    return peak


def _core_fraction(net, dev: DeviceSpec) -> float:
    core_num = getattr(net, "core_num", None)   # None: the API always uses the whole device
    return 1.0 if core_num is None else min(core_num, dev.cores) / dev.cores


def layer_profile(net, device: Optional[DeviceSpec] = None) -> List[Dict]:
    """One dict per layer (cast layers included) with name, type, MACs, bytes, host_seconds
    (from the last forward, None before) and the modelled times in seconds."""
    dev = device or net.modelled_device()
    fraction = _core_fraction(net, dev)
    layers = net.executed_layers()
    host = list(net._host_seconds) if len(net._host_seconds) == len(layers) else None
    rows = []
    for idx, layer in enumerate(layers):
        total_b, in_b, out_b = _layer_bytes(layer)
        macs = layer.macs()
        ops = 2.0 * macs if layer.layer_type in (C.CONVOLUTION, C.MLP) else float(macs)
        compute = ops / (_peak(dev, layer.compute_kind) * fraction)
        memory = total_b / dev.dram_bytes_per_s
        device_s = max(compute, memory)
        rows.append({
            "name": layer.name,
            "type": _type_name(layer),
            "macs": macs,
            "params": layer.param_count(),
            "bytes": total_b,
            "input_bytes": in_b,
            "output_bytes": out_b,
            "host_seconds": host[idx] if host else None,
            "modelled_compute_seconds": compute,
            "modelled_memory_seconds": memory,
            "modelled_bound": "compute" if compute >= memory else "memory",
            "modelled_device_seconds": device_s,
            "modelled_seconds": dev.launch_seconds + device_s,
        })
    return rows


def _pcie(dev: DeviceSpec, nbytes: int) -> float:
    return dev.pcie_latency_seconds + nbytes / dev.pcie_bytes_per_s


def modelled_totals(net, device: Optional[DeviceSpec] = None) -> Dict:
    """Modelled totals for the whole-net run and for per-layer host<->device round trips.

    Returns a dict with ``whole_net_seconds``, ``per_layer_round_trip_seconds``,
    their ratio, the PCIe bytes and launches of each, and the model's assumptions.
    """
    dev = device or net.modelled_device()
    rows = layer_profile(net, dev)
    if not rows:
        raise ValueError("modelled_totals: the net has no layers yet")
    device_sum = sum(r["modelled_device_seconds"] for r in rows)
    in_b, out_b = rows[0]["input_bytes"], rows[-1]["output_bytes"]
    whole = _pcie(dev, in_b) + dev.launch_seconds + device_sum + _pcie(dev, out_b)
    per_layer = sum(r["modelled_seconds"] + _pcie(dev, r["input_bytes"]) + _pcie(dev, r["output_bytes"])
                    for r in rows)
    return {
        "device": dev.name,
        "core_num": getattr(net, "core_num", None),
        "modelled_device_seconds": device_sum,
        "whole_net_seconds": whole,
        "per_layer_round_trip_seconds": per_layer,
        "round_trip_over_whole_ratio": per_layer / whole,
        "whole_net_pcie_bytes": in_b + out_b,
        "per_layer_pcie_bytes": sum(r["input_bytes"] + r["output_bytes"] for r in rows),
        "whole_net_launches": 1,
        "per_layer_launches": len(rows),
        "host_seconds": (sum(r["host_seconds"] for r in rows)
                         if rows[0]["host_seconds"] is not None else None),
        "assumptions": dev.assumed,
    }


def format_profile(net, device: Optional[DeviceSpec] = None) -> str:
    """A table of the profile and the modelled totals, every modelled figure labelled."""
    dev = device or net.modelled_device()
    rows = layer_profile(net, dev)
    tot = modelled_totals(net, dev)
    cores = (f"core_num {net.core_num}" if getattr(net, "core_num", None) is not None
             else "the whole device")
    lines = [f"{net.api_name} emulator profile -- modelled DLP times for {dev.name}, "
             f"{cores} (a model, not a measurement)",
             f"{'layer':<12}{'type':<13}{'MMACs':>10}{'MB moved':>10}{'host ms':>10}"
             f"{'modelled us':>13}  bound"]
    for r in rows:
        host = f"{r['host_seconds'] * 1e3:10.2f}" if r["host_seconds"] is not None else f"{'-':>10}"
        lines.append(f"{r['name'][:11]:<12}{r['type']:<13}{r['macs'] / 1e6:10.1f}"
                     f"{r['bytes'] / 1e6:10.2f}{host}{r['modelled_seconds'] * 1e6:13.1f}  "
                     f"{r['modelled_bound']}")
    if tot["host_seconds"] is not None:
        lines.append(f"host (CPU emulator) total: {tot['host_seconds'] * 1e3:.1f} ms (measured)")
    lines.append(f"modelled whole-net run: {tot['whole_net_seconds'] * 1e3:.3f} ms "
                 f"({tot['whole_net_launches']} launch, {tot['whole_net_pcie_bytes'] / 1e6:.2f} MB over PCIe)")
    lines.append(f"modelled per-layer round trips: {tot['per_layer_round_trip_seconds'] * 1e3:.3f} ms "
                 f"({tot['per_layer_launches']} launches, {tot['per_layer_pcie_bytes'] / 1e6:.2f} MB "
                 f"over PCIe), x{tot['round_trip_over_whole_ratio']:.2f} the whole-net run")
    lines.append("model assumptions: " + "; ".join(tot["assumptions"]))
    return "\n".join(lines)
