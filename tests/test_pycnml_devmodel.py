"""The modelled DLP time: VGG19's operation counts, roofline, round trips vs whole net."""
import contextlib
import io

import numpy as np
import pytest

import pycnml
from pycnml import devmodel


def vgg19_net(core_num=16, core_version=pycnml.CNML_MLU270, size=224):
    """VGG19's layers as the course creates them (no parameters needed for the model)."""
    with contextlib.redirect_stdout(io.StringIO()):
        net = pycnml.CnmlNet(core_num, core_version)
    net.setInputShape(1, 3, size, size)
    qp = pycnml.QuantParam()
    for s, (cout, n) in enumerate([(64, 2), (128, 2), (256, 4), (512, 4), (512, 4)], start=1):
        for i in range(1, n + 1):
            net.createConvLayer(f"conv{s}_{i}", cout, 3, 1, 1, 1, qp)
            net.createReLuLayer(f"relu{s}_{i}")
        net.createPoolingLayer(f"pool{s}", 2, 2)
    net.createFlattenLayer("flatten", [1, 512 * (size // 32) ** 2, 1, 1])
    for name, out in (("fc6", 4096), ("fc7", 4096), ("fc8", 1000)):
        net.createMlpLayer(name, out, qp)
        if name != "fc8":
            net.createReLuLayer(name.replace("fc", "relu"))
    net.createSoftmaxLayer("Softmax", 1)
    return net


def test_vgg19_counts_match_published_figures():
    rows = vgg19_net().getProfile()
    quantized = [r for r in rows if r["type"] in ("CONVOLUTION", "MLP")]
    assert len(quantized) == 19
    assert sum(r["macs"] for r in quantized) == pytest.approx(19.6e9, rel=0.01)
    assert sum(r["params"] for r in rows) == 143_667_240
    assert [r["name"] for r in rows][0] == "cast_in" and rows[1]["name"] == "conv1_1"
    assert rows[-1]["name"] == "cast_out" and rows[-1]["output_bytes"] == 1000 * 4
    assert all(r["host_seconds"] is None for r in rows)     # no forward yet


def test_roofline_and_launch_cost_per_layer():
    dev = devmodel.MLU270
    rows = {r["name"]: r for r in vgg19_net().getProfile()}
    conv = rows["conv1_2"]
    assert conv["macs"] == 64 * 64 * 9 * 224 * 224
    assert conv["modelled_compute_seconds"] == pytest.approx(2 * conv["macs"] / dev.int8_ops_per_s)
    assert conv["bytes"] == 2 * 64 * 224 * 224 * 2 + 64 * 64 * 9 + 64 * 2
    fc6 = rows["fc6"]
    assert fc6["modelled_bound"] == "memory"                # 102.8 M int8 weights, one image
    assert fc6["modelled_seconds"] == pytest.approx(dev.launch_seconds + fc6["bytes"] / dev.dram_bytes_per_s)
    relu = rows["relu1_1"]
    assert relu["modelled_seconds"] == pytest.approx(
        dev.launch_seconds + max(relu["modelled_compute_seconds"], relu["modelled_memory_seconds"]))


def test_fewer_cores_slow_compute_bound_layers_down():
    one = {r["name"]: r for r in vgg19_net(core_num=1).getProfile()}
    all16 = {r["name"]: r for r in vgg19_net(core_num=16).getProfile()}
    assert one["conv1_2"]["modelled_compute_seconds"] == pytest.approx(
        16 * all16["conv1_2"]["modelled_compute_seconds"])
    assert one["conv1_2"]["modelled_bound"] == "compute"
    assert one["fc6"]["modelled_memory_seconds"] == all16["fc6"]["modelled_memory_seconds"]


def test_round_trips_cost_more_than_whole_net():
    net = vgg19_net()
    tot = pycnml.modelled_totals(net)
    dev = devmodel.MLU270
    rows = net.getProfile()
    pcie = lambda b: dev.pcie_latency_seconds + b / dev.pcie_bytes_per_s  # noqa: E731
    whole = (pcie(1 * 3 * 224 * 224 * 4) + dev.launch_seconds
             + sum(r["modelled_device_seconds"] for r in rows) + pcie(1000 * 4))
    assert tot["whole_net_seconds"] == pytest.approx(whole)
    per_layer = sum(r["modelled_seconds"] + pcie(r["input_bytes"]) + pcie(r["output_bytes"]) for r in rows)
    assert tot["per_layer_round_trip_seconds"] == pytest.approx(per_layer)
    assert tot["per_layer_round_trip_seconds"] > 2 * tot["whole_net_seconds"]
    assert tot["per_layer_launches"] == len(rows) == 46
    assert tot["per_layer_pcie_bytes"] > 50 * tot["whole_net_pcie_bytes"]


def test_device_selection_and_labels():
    assert devmodel.device_for(pycnml.CNML_C10) is devmodel.MLU100
    assert devmodel.device_for(pycnml.CNML_MLU270) is devmodel.MLU270
    other = devmodel.device_for(pycnml.CNML_MLU220)
    assert "MLU270 figures" in other.name and any("CNML_MLU220" in a for a in other.assumed)
    text = pycnml.format_profile(vgg19_net())
    assert "modelled" in text.splitlines()[0]
    assert all("modelled" in line for line in text.splitlines()[-3:-1])
    assert "PCIe 12 GB/s" in text


def test_profile_records_host_time_after_forward():
    with contextlib.redirect_stdout(io.StringIO()):
        net = pycnml.CnmlNet(16)
    net.setInputShape(1, 2, 4, 4)
    net.createReLuLayer("relu")
    net.createPoolingLayer("pool", 2, 2)
    net.setInputData(np.arange(32.0))
    net.forward()
    rows = net.getProfile()
    assert [r["name"] for r in rows] == ["cast_in", "relu", "pool", "cast_out"]
    assert all(r["host_seconds"] is not None and r["host_seconds"] >= 0 for r in rows)
    assert pycnml.modelled_totals(net)["host_seconds"] == pytest.approx(
        sum(r["host_seconds"] for r in rows))
