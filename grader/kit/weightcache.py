"""A fast, exact stand-in for ``scipy.io.loadmat`` of the kit's VGG19 weights file.

``scipy.io.loadmat`` parses the 576 MB ``.mat`` and copies every array out of it on each
call, and a grading run loads the weights in many processes (the student's and the
reference's, per check group). The weights file is uncompressed MAT v5: its arrays lie
in the file as raw little-endian bytes. So, once per weights file:

* :func:`build` calls the real ``loadmat``, finds each large array's bytes in the file
  itself (in file order, each range checked byte for byte), stores the rest (small
  arrays, and anything not found as-is, e.g. compressed data) in a ``blob`` file, and
  writes a ``manifest.json`` describing the tree (dicts, cell and struct arrays, their
  shapes, dtypes and memory orders). The cache is kept only if :func:`load` of it is
  :func:`differences`-free against the real result.
* :func:`load` rebuilds the same tree from a copy-on-write memory map of the ``.mat`` and
  the blob: no parsing, no copying, and each call gets arrays of its own (writable, and
  a write never reaches the file or another call's arrays).

A cache lives in ``data/generated/weights-cache/<sha256>/`` and is valid only for the
file of that sha256, size and mtime (:func:`valid`). Who may use it for which call is the
caller's decision (``grader.drivers.WeightsHook``); anything unusual falls back to the
real ``loadmat``.
"""
from __future__ import annotations

import fcntl
import json
import mmap
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from grader.kit import paths

FORMAT = 1
MANIFEST = "manifest.json"
BLOB = "blob.bin"
# Arrays smaller than this go to the blob: looking them up in the file costs more than it saves.
MIN_MAPPED_BYTES = 4096
NEEDLE_BYTES = 256
ALIGN = 64
# Leaf dtypes rebuilt from raw bytes: bools, integers, floats, complex, strings.
LEAF_KINDS = "biufcSU"


class CacheError(Exception):
    """A cache could not be built or read; the caller falls back to ``scipy.io.loadmat``."""


def cache_root() -> Path:
    return paths.GENERATED_DIR / "weights-cache"


def cache_dir(sha256: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / sha256


# --------------------------------------------------------------------------- building

class _Writer:
    """Turns a loadmat tree into manifest nodes, placing each array in the .mat or the blob."""

    def __init__(self, source: mmap.mmap, blob):
        self.source = source
        self.blob = blob
        self.blob_size = 0
        self.position = 0            # arrays are looked up in file order, never overlapping
        self.mapped_bytes = 0

    def node(self, value) -> dict:
        if isinstance(value, dict):
            return {"t": "dict", "items": [[str(k), self.node(v)] for k, v in value.items()]}
        if isinstance(value, bytes):
            return {"t": "bytes", "v": value.decode("latin-1")}
        if isinstance(value, str):
            return {"t": "str", "v": value}
        if isinstance(value, list):
            return {"t": "list", "items": [self.node(v) for v in value]}
        if type(value) is not np.ndarray:
            raise CacheError(f"unsupported value of type {type(value).__name__} in the loadmat result")
        order = _order(value)
        shape = list(value.shape)
        if value.dtype == object:
            return {"t": "objects", "shape": shape, "order": order,
                    "items": [self.node(value[i]) for i in _indices(value.shape)]}
        if value.dtype.names is not None:
            fields = list(value.dtype.names)
            if any(value.dtype.fields[f][0] != object for f in fields):
                raise CacheError("a struct array with non-object fields")
            return {"t": "struct", "shape": shape, "order": order, "fields": fields,
                    "items": [[self.node(value[f][i]) for f in fields] for i in _indices(value.shape)]}
        if value.dtype.kind not in LEAF_KINDS:
            raise CacheError(f"unsupported array dtype {value.dtype}")
        return {"t": "array", "dtype": value.dtype.str, "shape": shape, "order": order, **self._place(value)}

    def _place(self, value: np.ndarray) -> dict:
        data = value.ravel(order="K").view(np.uint8)   # the array's bytes in memory order, no copy
        if data.size >= MIN_MAPPED_BYTES:
            offset = self._find(data, value.dtype.alignment)
            if offset is not None:
                self.position = offset + data.size
                self.mapped_bytes += data.size
                return {"in": "mat", "offset": offset}
        offset = -self.blob_size % ALIGN + self.blob_size
        self.blob.write(b"\0" * (offset - self.blob_size))
        self.blob.write(data.tobytes())
        self.blob_size = offset + data.size
        return {"in": "blob", "offset": offset}

    def _find(self, data: np.ndarray, alignment: int) -> int | None:
        """Where ``data`` lies in the .mat after the previous array, aligned for its dtype; None if nowhere."""
        needle = data[:NEEDLE_BYTES].tobytes()
        start = self.position
        for _ in range(8):   # a few false starts (a repeated prefix), then give up: the blob takes it
            offset = self.source.find(needle, start)
            if offset < 0 or offset + data.size > len(self.source):
                return None
            if offset % alignment == 0 and np.array_equal(
                    np.frombuffer(self.source, np.uint8, data.size, offset), data):
                return offset
            start = offset + 1
        return None


def _order(value: np.ndarray) -> str:
    if value.flags.f_contiguous and not value.flags.c_contiguous:
        return "F"
    if value.flags.c_contiguous:
        return "C"
    raise CacheError("an array that is neither C- nor F-contiguous")


def _indices(shape) -> list[tuple]:
    """Every index of ``shape`` in column-major order, the order a .mat stores elements in."""
    return [tuple(reversed(i)) for i in np.ndindex(*reversed(shape))]


def build(mat_path: str | os.PathLike, sha256: str, root: Path | None = None) -> Path:
    """Write the cache of ``mat_path`` (whose sha256 the caller computed); its folder.

    The folder appears whole or not at all (written beside it, checked, then renamed).
    Raises :class:`CacheError` when the file's loadmat result cannot be rebuilt exactly.
    """
    import scipy.io

    mat_path = Path(mat_path).resolve()
    target = cache_dir(sha256, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    st = mat_path.stat()
    real = scipy.io.loadmat(str(mat_path))
    part = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}-", dir=target.parent))
    try:
        with open(mat_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as source, \
                open(part / BLOB, "wb") as blob:
            writer = _Writer(source, blob)
            tree = writer.node(real)
        manifest = {"format": FORMAT, "sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                    "source": str(mat_path), "mapped_bytes": writer.mapped_bytes, "blob_bytes": writer.blob_size,
                    "tree": tree}
        (part / MANIFEST).write_text(json.dumps(manifest))
        rebuilt = load(part, mat_path)
        problem = differences(rebuilt, real)
        del rebuilt
        if problem:
            raise CacheError(f"the rebuilt weights differ from scipy.io.loadmat's: {problem}")
        os.chmod(part, 0o755)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(part, target)
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return target


def read_manifest(folder: Path) -> dict | None:
    try:
        doc = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None


def valid(folder: Path, mat_path: str | os.PathLike, sha256: str) -> bool:
    """Whether ``folder`` is a cache of this very file: same sha256, size and mtime."""
    manifest = read_manifest(folder)
    if manifest is None or not (Path(folder) / BLOB).is_file():
        return False
    try:
        st = os.stat(mat_path)
    except OSError:
        return False
    return (manifest.get("sha256") == sha256 and manifest.get("size") == st.st_size
            and manifest.get("mtime_ns") == st.st_mtime_ns)


def ensure(mat_path: str | os.PathLike, sha256: str, root: Path | None = None) -> tuple[Path | None, str]:
    """The valid cache of ``mat_path``, built now if missing: ``(folder, "")`` or ``(None, why not)``.

    Concurrent graders build it once: the others wait on a lock in the cache folder.
    """
    folder = cache_dir(sha256, root)
    if valid(folder, mat_path, sha256):
        return folder, ""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / f".{sha256[:16]}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not valid(folder, mat_path, sha256):
                build(mat_path, sha256, root)
    except (OSError, CacheError, ValueError, MemoryError) as exc:
        return None, f"no fast weights cache ({type(exc).__name__}: {str(exc)[:200]}); using scipy.io.loadmat"
    return folder, ""


# --------------------------------------------------------------------------- loading

def load(folder: str | os.PathLike, mat_path: str | os.PathLike) -> dict:
    """The loadmat result of ``mat_path`` rebuilt from its cache in ``folder``.

    Arrays are views of private (copy-on-write) memory maps: writable, never shared with
    the file or with the result of another call. Raises :class:`CacheError` on a damaged
    cache; it does not re-check the sha256 (see :func:`valid`).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise CacheError(f"{folder / MANIFEST} is missing or unreadable")
    maps = {"mat": _private_map(mat_path), "blob": _private_map(folder / BLOB)}
    try:
        return _rebuild(manifest["tree"], maps)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CacheError(f"damaged weights cache {folder}: {type(exc).__name__}: {exc}") from None


def _private_map(path) -> mmap.mmap | bytes:
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)


def _rebuild(node: dict, maps: dict):
    kind = node["t"]
    if kind == "dict":
        return {key: _rebuild(child, maps) for key, child in node["items"]}
    if kind == "bytes":
        return node["v"].encode("latin-1")
    if kind == "str":
        return node["v"]
    if kind == "list":
        return [_rebuild(child, maps) for child in node["items"]]
    shape, order = tuple(node["shape"]), node["order"]
    if kind == "objects":
        out = np.empty(shape, dtype=object, order=order)
        for index, child in zip(_indices(shape), node["items"]):
            out[index] = _rebuild(child, maps)
        return out
    if kind == "struct":
        out = np.empty(shape, dtype=[(name, object) for name in node["fields"]], order=order)
        for index, children in zip(_indices(shape), node["items"]):
            for name, child in zip(node["fields"], children):
                out[name][index] = _rebuild(child, maps)
        return out
    if kind == "array":
        dtype = np.dtype(node["dtype"])
        count = int(np.prod(shape, dtype=np.int64))
        if count == 0:
            return np.empty(shape, dtype=dtype, order=order)
        flat = np.frombuffer(maps[node["in"]], dtype=dtype, count=count, offset=int(node["offset"]))
        return flat.reshape(shape, order=order)
    raise ValueError(f"unknown node kind {kind!r}")


# --------------------------------------------------------------------------- equality

def differences(got, want, where: str = "") -> str:
    """'' when ``got`` equals ``want`` in every key, type, dtype, shape, memory order and byte; else the first difference."""
    here = where or "the result"
    if type(got) is not type(want):
        return f"{here}: type {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, dict):
        if list(got) != list(want):
            return f"{here}: keys {list(got)} != {list(want)}"
        for key in want:
            found = differences(got[key], want[key], f"{where}[{key!r}]")
            if found:
                return found
        return ""
    if isinstance(want, list):
        if len(got) != len(want):
            return f"{here}: {len(got)} items != {len(want)}"
        return next((d for d in (differences(g, w, f"{where}[{i}]") for i, (g, w) in enumerate(zip(got, want))) if d),
                    "")
    if not isinstance(want, np.ndarray):
        return "" if got == want else f"{here}: {got!r} != {want!r}"
    if got.dtype != want.dtype or got.shape != want.shape:
        return f"{here}: {got.dtype}{got.shape} != {want.dtype}{want.shape}"
    for flag in ("c_contiguous", "f_contiguous", "writeable", "aligned"):
        if getattr(got.flags, flag) != getattr(want.flags, flag):
            return f"{here}: flag {flag} {getattr(got.flags, flag)} != {getattr(want.flags, flag)}"
    if want.dtype == object:
        for index in np.ndindex(*want.shape):
            found = differences(got[index], want[index], f"{where}[{','.join(map(str, index))}]")
            if found:
                return found
        return ""
    if want.dtype.names is not None:
        for name in want.dtype.names:
            found = differences(got[name], want[name], f"{where}.{name}")
            if found:
                return found
        return ""
    return "" if _same_bytes(got, want) else f"{here}: values differ"


def _same_bytes(got: np.ndarray, want: np.ndarray) -> bool:
    """Bitwise equality (NaN equals NaN, -0.0 differs from 0.0) of two arrays of one dtype and layout."""
    try:
        return bool(np.array_equal(got.ravel(order="K").view(np.uint8), want.ravel(order="K").view(np.uint8)))
    except ValueError:   # a view as bytes needs contiguous memory: compare copies
        return got.tobytes(order="A") == want.tobytes(order="A")
