"""Tests of the VGG19 weights: the synthetic generator and layout check (grader.kit.synthetic),
resolution and hashing (grader.kit.weights), fetch and command line (grader.authoring.weights_cli)."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from grader.authoring import weights_cli
from grader.kit import paths, synthetic, weights

# The book's 44-name list (figure 3.6): MatConvNet's 43 entries plus 'flatten'.
BOOK_LAYER_NAMES = (
    'conv1_1', 'relu1_1', 'conv1_2', 'relu1_2', 'pool1',
    'conv2_1', 'relu2_1', 'conv2_2', 'relu2_2', 'pool2',
    'conv3_1', 'relu3_1', 'conv3_2', 'relu3_2', 'conv3_3', 'relu3_3', 'conv3_4', 'relu3_4', 'pool3',
    'conv4_1', 'relu4_1', 'conv4_2', 'relu4_2', 'conv4_3', 'relu4_3', 'conv4_4', 'relu4_4', 'pool4',
    'conv5_1', 'relu5_1', 'conv5_2', 'relu5_2', 'conv5_3', 'relu5_3', 'conv5_4', 'relu5_4', 'pool5',
    'flatten', 'fc6', 'relu6', 'fc7', 'relu7', 'fc8', 'Softmax')

DIVISOR = 16  # reduced variant: same structure, 1/16 of the channels


@pytest.fixture
def kit_dirs(tmp_path, monkeypatch):
    """Point the kit's weight folders at a temporary data folder."""
    real_dir = tmp_path / "vgg19_data"
    generated = tmp_path / "generated"
    monkeypatch.setattr(paths, "REAL_WEIGHTS_DIR", real_dir)
    monkeypatch.setattr(paths, "GENERATED_DIR", generated)
    monkeypatch.delenv("VGG19_MAT", raising=False)
    return real_dir, generated


@pytest.fixture(scope="module")
def small_mat(tmp_path_factory):
    """A reduced synthetic file written twice; returns (path, sha, second path, sha)."""
    folder = tmp_path_factory.mktemp("small")
    a = folder / "a.mat"
    b = folder / "b.mat"
    # write_synthetic leaves the hash cache alone, so the repository's data folder is not touched.
    sha_a = synthetic.write_synthetic(a, channels_divisor=DIVISOR)
    sha_b = synthetic.write_synthetic(b, channels_divisor=DIVISOR)
    return a, sha_a, b, sha_b


# ----------------------------------------------------------------------------- generator


def test_layer_names_match_the_book_without_flatten():
    assert len(synthetic.LAYER_NAMES) == 43
    book_without_flatten = tuple(n for n in BOOK_LAYER_NAMES if n != 'flatten')
    assert synthetic.LAYER_NAMES[:-1] == book_without_flatten[:-1]
    assert synthetic.LAYER_NAMES[-1] == 'prob'
    assert [synthetic.LAYER_NAMES.index(n) for n in ('fc6', 'fc7', 'fc8')] == [37, 39, 41]
    # The book reads fc layers one index later than the file holds them.
    for name in ('fc6', 'fc7', 'fc8'):
        assert synthetic.LAYER_NAMES[BOOK_LAYER_NAMES.index(name) - 1] == name


def test_reduced_file_is_byte_identical_across_runs(small_mat):
    a, sha_a, b, sha_b = small_mat
    assert sha_a == sha_b
    assert a.read_bytes() == b.read_bytes()
    assert sha_a == hashlib.sha256(a.read_bytes()).hexdigest()
    # The creation date scipy writes into the header is replaced by fixed text.
    header = a.read_bytes()[:116]
    assert header.startswith(b"MATLAB 5.0 MAT-file")
    assert b"Created on" not in header
    assert not list(a.parent.glob("*.part"))


def test_book_loader_reads_the_synthetic_file_unchanged(small_mat):
    path = small_mat[0]
    params = scipy.io.loadmat(str(path))
    shapes = synthetic.param_shapes(DIVISOR)

    image_mean = params['normalization'][0][0][0]
    assert image_mean.shape == (224, 224, 3) and image_mean.dtype == np.float32
    np.testing.assert_allclose(np.mean(image_mean, axis=(0, 1)), synthetic.IMAGE_MEAN, rtol=1e-6)

    loaded = []
    for idx in range(43):  # the book's loop, with the book's 44-name list
        name = BOOK_LAYER_NAMES[idx]
        if 'conv' in name:
            weight, bias = params['layers'][0][idx][0][0][0][0]
            assert weight.shape == shapes[name] and weight.dtype == np.float32
            weight = np.transpose(weight, [2, 0, 1, 3])
            bias = bias.reshape(-1)
            assert bias.shape == (shapes[name][3],) and bias.dtype == np.float32
            loaded.append(name)
        if idx >= 37 and 'fc' in name:
            weight, bias = params['layers'][0][idx - 1][0][0][0][0]
            assert weight.shape == shapes[name]
            weight = weight.reshape([weight.shape[0] * weight.shape[1] * weight.shape[2], weight.shape[3]])
            # Row-vector biases add onto [1, num_output] outputs without broadcasting.
            assert bias.shape == (1, weight.shape[1])
            loaded.append(name)
    assert loaded == list(shapes)
    fc6 = params['layers'][0][37][0][0][0][0][0]
    assert fc6.reshape(-1, fc6.shape[3]).shape == (7 * 7 * 512 // DIVISOR, 4096 // DIVISOR)

    # Biases are drawn, not zero, and every array is float32.
    for name in shapes:
        weight, bias = params['layers'][0][synthetic.LAYER_NAMES.index(name)][0][0][0][0]
        assert np.count_nonzero(bias) == bias.size
        assert np.isfinite(weight).all() and weight.std() > 0


def test_entries_follow_matconvnet_layout(small_mat):
    layers = scipy.io.loadmat(str(small_mat[0]))['layers']
    assert layers.shape == (1, 43)
    for idx, name in enumerate(synthetic.LAYER_NAMES):
        entry = layers[0][idx]
        assert entry.shape == (1, 1)
        fields = entry.dtype.names
        assert str(entry[0][0]['name'][0]) == name
        kind = str(entry[0][0]['type'][0])
        if name.startswith(('conv', 'fc')):
            assert fields[0] == 'weights' and kind == 'conv'
            assert entry[0][0]['weights'].shape == (1, 2)
        else:
            assert 'weights' not in fields
            expected = 'relu' if name.startswith('relu') else 'pool' if name.startswith('pool') else 'softmax'
            assert kind == expected
        if name.startswith('pool'):
            assert str(entry[0][0]['method'][0]) == 'max'
            assert entry[0][0]['pool'].tolist() == [[2, 2]]
            assert entry[0][0]['stride'].tolist() == [[2, 2]]
    assert synthetic.check_layout(small_mat[0], channels_divisor=DIVISOR) == []
    problems = synthetic.check_layout(small_mat[0])
    assert any("conv1_1: weight shape" in p for p in problems)


def test_draws_are_pinned():
    # Guards the stream itself: a change here changes SYNTHETIC_SHA256 and every golden.
    name, weight, bias = next(synthetic.synthetic_params(synthetic.DEFAULT_SEED))
    assert name == 'conv1_1' and weight.shape == (3, 3, 3, 64) and bias.shape == (1, 64)
    a = np.sqrt(3.0) * np.sqrt(2.0 / 27)
    assert np.abs(weight).max() < a and np.abs(bias).max() < 10.0
    bitgen = np.random.default_rng(synthetic.DEFAULT_SEED).bit_generator
    raw = bitgen.random_raw(3)
    expected = ((raw >> np.uint64(41)).astype(np.float64) + 0.5) * 2.0 ** -22 - 1.0
    np.testing.assert_array_equal(weight.reshape(-1)[:3], (expected * np.float32(a)).astype(np.float32))
    # Literal values, so a change in numpy's raw PCG64 stream would show up here.
    np.testing.assert_array_equal(
        weight.reshape(-1)[:3], np.array([-0.39065369963645935, -0.248137429356575, 0.2840442955493927], np.float32))
    np.testing.assert_array_equal(bias.reshape(-1)[:2], np.array([5.344172477722168, -2.919818162918091], np.float32))
    other = next(synthetic.synthetic_params(synthetic.DEFAULT_SEED + 1))[1]
    assert not np.array_equal(weight, other)


def test_forward_with_synthetic_weights_stays_alive():
    """A reduced-width forward of the reduced file keeps activations finite and non-trivial."""
    params = {n: (w, b) for n, w, b in synthetic.synthetic_params(synthetic.DEFAULT_SEED, channels_divisor=8)}
    rng = np.random.default_rng(0)
    x = rng.uniform(-60, 60, size=(1, 32, 32, 3)).astype(np.float32)
    for name in synthetic.LAYER_NAMES[:37]:
        if name.startswith('conv'):
            w, b = params[name]
            xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            h, wd = x.shape[1:3]
            cols = np.concatenate([xp[:, i:i + h, j:j + wd] for i in range(3) for j in range(3)], axis=-1)
            x = (cols.reshape(-1, cols.shape[-1]) @ w.reshape(-1, w.shape[3]) + b.reshape(-1)).reshape(1, h, wd, -1)
        elif name.startswith('relu'):
            x = np.maximum(x, 0)
            assert 0.2 < np.mean(x > 0) < 0.8, name
            assert 1.0 < x.std() < 1e4, name
        else:
            n, h, wd, c = x.shape
            x = x.reshape(n, h // 2, 2, wd // 2, 2, c).max(axis=(2, 4))
    assert x.shape == (1, 1, 1, 512 // 8) and np.isfinite(x).all()


@pytest.mark.slow
def test_full_synthetic_file_matches_pinned_sha(kit_dirs):
    real_dir, generated = kit_dirs
    t0 = time.monotonic()
    info = weights.resolve_weights(generate=True)
    elapsed = time.monotonic() - t0
    assert info.kind == "synthetic", f"sha256 {info.sha256} != SYNTHETIC_SHA256 (numpy/scipy changed the bytes?)"
    assert info.sha256 == weights.SYNTHETIC_SHA256
    assert info.path == (generated / weights.SYNTHETIC_FILENAME).resolve()
    assert synthetic.check_layout(info.path) == []
    assert "SYNTHETIC" in info.banner() and "NOT a classification" in info.banner()
    # The second resolution is served from the hash cache.
    t0 = time.monotonic()
    assert weights.resolve_weights(generate=False) == info
    assert time.monotonic() - t0 < min(elapsed, 0.5)
    info.path.unlink()  # pytest keeps recent tmp folders; do not leave 575 MB behind


# ----------------------------------------------------------------------------- resolution


def test_resolve_prefers_env_then_real_dir_then_synthetic(kit_dirs, tmp_path, small_mat, monkeypatch):
    real_dir, generated = kit_dirs
    synthetic = generated / weights.SYNTHETIC_FILENAME
    generated.mkdir()
    synthetic.write_bytes(small_mat[0].read_bytes())

    info = weights.resolve_weights(generate=False)
    assert (info.source, info.kind, info.path) == ("synthetic", "custom", synthetic.resolve())

    real_dir.mkdir()
    (real_dir / weights.REAL_FILENAME).write_bytes(b"not really vgg19")
    info = weights.resolve_weights(generate=False)
    assert info.source == "data/vgg19_data" and info.kind == "custom"
    assert info.sha256 == hashlib.sha256(b"not really vgg19").hexdigest()
    assert info.short() == info.sha256[:12]
    assert "unverified" in info.banner() and info.short() in info.banner()

    env_file = tmp_path / "elsewhere.mat"
    env_file.write_bytes(b"another file")
    monkeypatch.setenv("VGG19_MAT", str(env_file))
    info = weights.resolve_weights(generate=False)
    assert info.source == "$VGG19_MAT" and info.path == env_file.resolve()

    monkeypatch.setenv("VGG19_MAT", str(tmp_path / "missing.mat"))
    with pytest.raises(FileNotFoundError, match=r"\$VGG19_MAT.*missing\.mat"):
        weights.resolve_weights(generate=False)


def test_resolve_without_weights_says_where_it_looked(kit_dirs):
    real_dir, generated = kit_dirs
    with pytest.raises(FileNotFoundError) as err:
        weights.resolve_weights(generate=False)
    message = str(err.value)
    assert str(real_dir / weights.REAL_FILENAME) in message
    assert str(generated / weights.SYNTHETIC_FILENAME) in message
    assert "source env.sh" in message and "python -m grader weights synthetic" in message


def test_kind_and_banners():
    assert weights.kind_of(weights.REAL_SHA256) == "real"
    assert weights.kind_of(weights.SYNTHETIC_SHA256) == "synthetic"
    assert weights.kind_of("0" * 64) == "custom"
    real = weights.WeightsInfo(Path("/x.mat"), "real", weights.REAL_SHA256, "$VGG19_MAT")
    assert real.banner() == f"weights: real MatConvNet VGG19 (sha256 {weights.REAL_SHA256[:12]})"
    syn = weights.WeightsInfo(Path("/y.mat"), "synthetic", weights.SYNTHETIC_SHA256, "synthetic")
    assert syn.banner().startswith("weights: SYNTHETIC VGG19 (deterministic, seed ")
    assert "\n" not in syn.banner() and weights.SYNTHETIC_SHA256[:12] in syn.banner()


def test_sha256_is_cached_by_path_size_and_mtime(kit_dirs, tmp_path):
    _, generated = kit_dirs
    f = tmp_path / "blob.bin"
    f.write_bytes(b"abc" * 1000)
    true_sha = hashlib.sha256(f.read_bytes()).hexdigest()
    assert weights.sha256_file(f) == true_sha
    cache_file = generated / "hash-cache.json"
    cache = json.loads(cache_file.read_text())
    entry = cache[str(f.resolve())]
    assert entry["size"] == 3000 and entry["sha256"] == true_sha

    # A planted entry with matching size and mtime is trusted: the file is not re-read.
    entry["sha256"] = "f" * 64
    cache_file.write_text(json.dumps(cache))
    assert weights.sha256_file(f) == "f" * 64

    # Touching the file invalidates the entry.
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert weights.sha256_file(f) == true_sha


# ----------------------------------------------------------------------------- fetch


class _Server:
    """A real HTTP server on 127.0.0.1 that serves one payload with Range support."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.ranges: list[str | None] = []
        self.ignore_range = False
        self.drop_first_after: int | None = None  # close the 1st response after N bytes
        self.status = 200
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                header = self.headers.get("Range")
                server.ranges.append(header)
                if server.status != 200:
                    self.send_error(server.status)
                    return
                body, code = server.payload, 200
                if header and not server.ignore_range:
                    start = int(header.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    body, code = body[start:], 206
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                if code == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                self.end_headers()
                if server.drop_first_after is not None and len(server.ranges) == 1:
                    self.wfile.write(body[:server.drop_first_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/imagenet-vgg-verydeep-19.mat"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def payload():
    return np.random.default_rng(7).integers(0, 256, size=300_000, dtype=np.uint8).tobytes()


@pytest.fixture
def server(payload):
    srv = _Server(payload)
    yield srv
    srv.close()


def _fetch(srv, dest, payload, **kw):
    kw.setdefault("progress", False)
    return weights_cli.fetch_real(dest, url=srv.url, size=len(payload),
                                  sha256=hashlib.sha256(payload).hexdigest(), backoff=0.01, timeout=5, **kw)


def test_fetch_downloads_and_verifies(server, payload, kit_dirs, tmp_path, capsys):
    dest = tmp_path / "w" / weights.REAL_FILENAME
    assert _fetch(server, dest, payload, progress=True) == dest
    assert dest.read_bytes() == payload
    assert not dest.with_name(dest.name + ".part").exists()
    assert server.ranges == [None]
    assert "MB/s" in capsys.readouterr().err


def test_fetch_resumes_a_partial_file_with_range(server, payload, kit_dirs, tmp_path):
    dest = tmp_path / weights.REAL_FILENAME
    dest.with_name(dest.name + ".part").write_bytes(payload[:123_456])
    _fetch(server, dest, payload)
    assert server.ranges == ["bytes=123456-"]
    assert dest.read_bytes() == payload


def test_fetch_restarts_when_server_ignores_range(server, payload, kit_dirs, tmp_path):
    server.ignore_range = True
    dest = tmp_path / weights.REAL_FILENAME
    dest.with_name(dest.name + ".part").write_bytes(b"\0" * 1000)
    _fetch(server, dest, payload)
    assert server.ranges == ["bytes=1000-"]
    assert dest.read_bytes() == payload


def test_fetch_retries_a_dropped_connection_and_resumes(server, payload, kit_dirs, tmp_path):
    server.drop_first_after = 100_000
    dest = tmp_path / weights.REAL_FILENAME
    _fetch(server, dest, payload)
    assert server.ranges[0] is None
    assert server.ranges[1] == "bytes=100000-"
    assert dest.read_bytes() == payload


def test_fetch_rejects_a_corrupted_payload(server, payload, kit_dirs, tmp_path):
    good_sha = hashlib.sha256(payload).hexdigest()
    server.payload = payload[:-1] + bytes([payload[-1] ^ 0xFF])
    dest = tmp_path / weights.REAL_FILENAME
    with pytest.raises(weights_cli.FetchError) as err:
        weights_cli.fetch_real(dest, url=server.url, size=len(payload), sha256=good_sha,
                               progress=False, backoff=0.01, timeout=5)
    message = str(err.value)
    assert good_sha in message and hashlib.sha256(server.payload).hexdigest() in message
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


def test_fetch_rejects_a_wrong_size(server, payload, kit_dirs, tmp_path):
    server.payload = payload[:1000]
    dest = tmp_path / weights.REAL_FILENAME
    with pytest.raises(weights_cli.FetchError, match=rf"1000 bytes.*{len(payload)}"):
        _fetch(server, dest, payload)
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


def test_fetch_reports_http_errors_without_retrying(server, payload, kit_dirs, tmp_path):
    server.status = 404
    dest = tmp_path / weights.REAL_FILENAME
    with pytest.raises(weights_cli.FetchError, match="HTTP 404"):
        _fetch(server, dest, payload)
    assert len(server.ranges) == 1 and not dest.exists()


def test_fetch_unreachable_host_fails_fast_and_clearly(kit_dirs, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The port is closed now: connections are refused.
    dest = tmp_path / weights.REAL_FILENAME
    t0 = time.monotonic()
    with pytest.raises(weights_cli.FetchError) as err:
        weights_cli.fetch_real(dest, url=f"http://127.0.0.1:{port}/x.mat", size=10, sha256="0" * 64,
                               retries=2, progress=False, backoff=0.01, timeout=2)
    assert time.monotonic() - t0 < 5
    message = str(err.value)
    assert "cannot reach 127.0.0.1" in message and "offline" in message
    assert str(dest) in message and "$VGG19_MAT" in message
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


# ----------------------------------------------------------------------------- command line


def test_cli_verify_and_status(kit_dirs, small_mat, tmp_path, capsys):
    assert weights_cli.main(["verify", str(small_mat[0])]) == 1
    out = capsys.readouterr().out
    assert small_mat[1] in out and "kind custom" in out and "conv1_1: weight shape" in out

    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"hello")
    assert weights_cli.main(["verify", str(junk)]) == 1
    assert "loadmat cannot read" in capsys.readouterr().out

    assert weights_cli.main(["status"]) == 1
    assert "no VGG19 weights found" in capsys.readouterr().err

    real_dir, _ = kit_dirs
    real_dir.mkdir()
    (real_dir / weights.REAL_FILENAME).write_bytes(small_mat[0].read_bytes())
    assert weights_cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "unverified file" in out and "source: data/vgg19_data" in out and small_mat[1] in out


def test_module_entry_point_runs(tmp_path):
    env = dict(os.environ, AICS_DATA_DIR=str(tmp_path))
    env.pop("VGG19_MAT", None)
    proc = subprocess.run([sys.executable, "-m", "grader", "weights", "status"], cwd=paths.REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "no VGG19 weights found" in proc.stderr and str(tmp_path) in proc.stderr


# ----------------------------------------------------------------------------- data/README.md


def test_data_readme_lists_every_tracked_input_with_its_sha256():
    readme = (paths.REPO_ROOT / "data" / "README.md").read_text(encoding="utf-8")
    listed = {}
    for line in readme.splitlines():
        cells = [c.strip().strip("`") for c in line.split("|")]
        if len(cells) > 6 and len(cells[5]) == 64:
            listed[cells[1]] = (int(cells[4]), cells[5])
    data_dir = paths.REPO_ROOT / "data"
    # Derived or untracked folders are described in prose, not checksummed.
    skip = {"generated", "golden", "vgg19_data"}
    present = {p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*")
               if p.is_file() and p.name != "README.md" and p.relative_to(data_dir).parts[0] not in skip}
    assert present == set(listed), "data/README.md and data/ disagree"
    for rel, (size, sha) in listed.items():
        content = (data_dir / rel).read_bytes()
        assert (len(content), hashlib.sha256(content).hexdigest()) == (size, sha), rel
    assert weights.SYNTHETIC_SHA256 in readme and weights.REAL_SHA256 in readme
