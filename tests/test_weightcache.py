"""The fast weights cache gives exactly what scipy.io.loadmat gives, and the child's hook uses it safely.

The equality tests compare every key, type, dtype, shape, memory order, flag and byte of
``grader.kit.weightcache.load`` with the real ``scipy.io.loadmat`` of the same file: a
small synthetic VGG19 (the real file's layout, fewer channels), a compressed MAT file with
cells, structs and strings, and (slow) the kit's full synthetic VGG19.
"""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
import scipy.io
import scipy.io.matlab

from grader.drivers import BaseContext, WeightsHook
from grader.kit import synthetic, weightcache
from grader.kit.synthetic import file_sha256


@pytest.fixture(scope="module")
def small_mat(tmp_path_factory):
    """A synthetic VGG19 with an eighth of the channels: (path, sha256, cache root)."""
    folder = tmp_path_factory.mktemp("weights")
    path = folder / "small.mat"
    sha = synthetic.write_synthetic(path, channels_divisor=8)
    return path, sha, folder / "cache"


def test_cache_of_the_synthetic_layout_equals_loadmat(small_mat):
    path, sha, root = small_mat
    folder, note = weightcache.ensure(path, sha, root)
    assert folder is not None, note
    manifest = weightcache.read_manifest(folder)
    # The weights are mapped from the .mat itself; only small arrays are copied into the blob.
    assert manifest["mapped_bytes"] > 0.95 * path.stat().st_size
    assert manifest["blob_bytes"] < 0.05 * path.stat().st_size
    assert weightcache.differences(weightcache.load(folder, path), scipy.io.loadmat(str(path))) == ""


def test_loaded_arrays_are_private_and_writable(small_mat):
    path, sha, root = small_mat
    folder, _ = weightcache.ensure(path, sha, root)
    first, second = weightcache.load(folder, path), weightcache.load(folder, path)
    weight = first["layers"][0][0][0][0][0][0][0]
    assert weight.flags.writeable and weight.dtype == np.float32 and weight.flags.f_contiguous
    before = second["layers"][0][0][0][0][0][0][0].copy()
    weight[...] = 7.0
    first["normalization"][0][0][0][0, 0, 0] = -1.0
    assert np.array_equal(second["layers"][0][0][0][0][0][0][0], before)
    assert file_sha256(path) == sha, "a write to a loaded array reached the .mat"
    assert weightcache.differences(weightcache.load(folder, path), scipy.io.loadmat(str(path))) == ""


def test_cache_is_invalid_once_the_file_changes(small_mat, tmp_path):
    path, sha, root = small_mat
    folder, _ = weightcache.ensure(path, sha, root)
    assert weightcache.valid(folder, path, sha)
    assert not weightcache.valid(folder, path, "0" * 64)
    # Same bytes, another mtime: the cache no longer vouches for it (sha256 is cached by mtime).
    copy = tmp_path / "copy.mat"
    copy.write_bytes(path.read_bytes())
    os.utime(copy, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert not weightcache.valid(folder, copy, sha)
    shorter = tmp_path / "shorter.mat"
    shorter.write_bytes(path.read_bytes()[:-8])
    os.utime(shorter, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    assert not weightcache.valid(folder, shorter, sha)


def test_compressed_file_with_cells_structs_and_strings(tmp_path):
    """Nothing can be mapped from a compressed file: every array goes to the blob, still exact."""
    rng = np.random.default_rng(0)
    cell = np.empty((2, 3), dtype=object)
    for i in range(2):
        for j in range(3):
            cell[i, j] = rng.standard_normal((i + 1, j + 2))
    struct = np.empty((1, 2), dtype=[("name", object), ("data", object)])
    struct[0, 0]["name"], struct[0, 0]["data"] = "first", np.arange(12, dtype=np.int32).reshape(3, 4)
    struct[0, 1]["name"], struct[0, 1]["data"] = "second", rng.standard_normal((64, 70)).astype(np.float32)
    path = tmp_path / "mixed.mat"
    scipy.io.savemat(path, {"cell": cell, "struct": struct, "text": "hello", "big": rng.standard_normal((80, 90)),
                            "complex": rng.standard_normal((3, 2)) + 1j}, do_compression=True)
    sha = file_sha256(path)
    folder, note = weightcache.ensure(path, sha, tmp_path / "cache")
    assert folder is not None, note
    assert weightcache.read_manifest(folder)["mapped_bytes"] == 0
    assert weightcache.differences(weightcache.load(folder, path), scipy.io.loadmat(str(path))) == ""


def test_differences_finds_each_kind_of_mismatch():
    a = {"x": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "y": "s"}
    assert weightcache.differences(a, {"x": a["x"].copy(order="F"), "y": "s"}) == ""
    assert "values differ" in weightcache.differences(a, {"x": a["x"] + 1, "y": "s"})
    assert "float32" in weightcache.differences(a, {"x": a["x"].astype(np.float32), "y": "s"})
    assert "contiguous" in weightcache.differences(a, {"x": np.ascontiguousarray(a["x"]), "y": "s"})
    assert "keys" in weightcache.differences(a, {"x": a["x"]})
    assert "type" in weightcache.differences(a, {"x": a["x"], "y": b"s"})


# ----- the child's hook -------------------------------------------------------------------

@pytest.fixture
def hooked(small_mat, monkeypatch):
    """The hook installed as a driver installs it; scipy's loadmat is restored afterwards."""
    path, sha, root = small_mat
    folder, _ = weightcache.ensure(path, sha, root)
    monkeypatch.setattr(scipy.io, "loadmat", scipy.io.loadmat)
    monkeypatch.setattr(scipy.io.matlab, "loadmat", scipy.io.matlab.loadmat)
    real = scipy.io.loadmat
    ctx = BaseContext(submission=path.parent, resources={"weights": str(path), "weights_cache": str(folder),
                                                         "weights_sha256": sha})
    ctx.current = "case"
    ctx.watch_weights()
    return ctx, path, real


def _mapped(params) -> bool:
    """Whether any numeric array of a loadmat result is a view of a memory map (the cache)."""
    import mmap

    def walk(value) -> bool:
        if isinstance(value, dict):
            return any(walk(v) for v in value.values())
        if isinstance(value, np.void):
            return any(walk(value[name]) for name in value.dtype.names)
        if not isinstance(value, np.ndarray):
            return False
        if value.dtype == object:
            return any(walk(v) for v in value.flat)
        if value.dtype.names is not None:
            return any(walk(value[name]) for name in value.dtype.names)
        base = value
        while isinstance(base, np.ndarray):
            base = base.base
        if isinstance(base, memoryview):
            base = base.obj
        return isinstance(base, mmap.mmap)

    return walk(params)


def test_hook_serves_the_kit_weights_from_the_cache(hooked):
    ctx, path, real = hooked
    assert scipy.io.loadmat is not real and scipy.io.matlab.loadmat is scipy.io.loadmat
    got = scipy.io.loadmat(str(path))
    assert _mapped(got)
    assert weightcache.differences(got, real(str(path))) == ""
    assert ctx.weights_seconds["case"] > 0
    # A student's `from scipy.io import loadmat` after the hook and a Path argument work alike.
    from scipy.io import loadmat
    assert _mapped(loadmat(path))


def test_hook_falls_back_to_loadmat_for_anything_else(hooked, tmp_path):
    ctx, path, real = hooked
    squeezed = scipy.io.loadmat(str(path), squeeze_me=True)
    assert not _mapped(squeezed)
    assert weightcache.differences(squeezed, real(str(path), squeeze_me=True)) == ""
    with open(path, "rb") as f:
        assert not _mapped(scipy.io.loadmat(f))
    other = tmp_path / "other.mat"
    other.write_bytes(path.read_bytes())
    assert not _mapped(scipy.io.loadmat(str(other)))
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"a": np.ones((2, 2))})
    assert scipy.io.loadmat(io.BytesIO(buffer.getvalue()))["a"].shape == (2, 2)


def test_hook_survives_a_damaged_cache(hooked):
    ctx, path, real = hooked
    folder = ctx.resources["weights_cache"]
    manifest = weightcache.read_manifest(folder)
    saved = (weightcache.Path(folder) / weightcache.MANIFEST).read_text()
    try:
        (weightcache.Path(folder) / weightcache.MANIFEST).write_text('{"format": 1, "tree": {"t": "nonsense"}}')
        got = scipy.io.loadmat(str(path))
        assert not _mapped(got)
        assert weightcache.differences(got, real(str(path))) == ""
    finally:
        (weightcache.Path(folder) / weightcache.MANIFEST).write_text(saved)
    assert manifest["sha256"] == ctx.resources["weights_sha256"]


def test_hook_without_a_valid_cache_is_the_real_loadmat(small_mat, monkeypatch):
    path, sha, root = small_mat
    folder, _ = weightcache.ensure(path, sha, root)
    monkeypatch.setattr(scipy.io, "loadmat", scipy.io.loadmat)
    monkeypatch.setattr(scipy.io.matlab, "loadmat", scipy.io.matlab.loadmat)
    ctx = BaseContext(submission=path.parent, resources={"weights": str(path), "weights_cache": str(folder),
                                                         "weights_sha256": "f" * 64})
    hook = WeightsHook(ctx)
    assert hook.identity is None
    hook.install()
    assert not _mapped(scipy.io.loadmat(str(path)))


@pytest.mark.slow
def test_cache_of_the_kit_synthetic_vgg19_equals_loadmat():
    """The full-size synthetic VGG19 the kit grades with, against scipy.io.loadmat (about 5 s)."""
    from grader.kit.weights import resolve_weights
    weights = resolve_weights()
    if weights.kind != "synthetic":
        pytest.skip(f"the kit uses {weights.kind} weights here; this test is about the synthetic file")
    folder, note = weightcache.ensure(weights.path, weights.sha256)
    assert folder is not None, note
    assert weightcache.differences(weightcache.load(folder, weights.path),
                                   scipy.io.loadmat(str(weights.path))) == ""
