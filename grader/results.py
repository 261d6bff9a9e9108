"""Read what the sandboxed child wrote into ``out/``, treating every byte as hostile.

The child owns its ``out/`` folder and may have replaced anything in it: a FIFO that
never delivers a byte, a symlink to ``/dev/zero`` or to a root-only file, a zip bomb,
an ``.npz`` with a hundred thousand members, JSON nested a million levels deep. The
trusted parent reads it as root, so every read here is bounded and local:

* ``out/`` is opened once, with ``O_DIRECTORY|O_NOFOLLOW``; every file is then opened
  relative to that descriptor with ``O_NOFOLLOW|O_NONBLOCK`` (nothing outside ``out/`` is
  ever reached, and nothing can block the open);
* only regular files with one link, owned by the user who owns ``out/``, are read, and
  never more than a byte budget per file and per group;
* ``.npz`` archives are checked from their zip directory and each member's ``.npy``
  header (member count, compression, declared sizes, dtype, shape x itemsize) before a
  single data byte is decoded; nothing is ever unpickled;
* JSON records are depth-checked before parsing, and only the fields the probe writes
  are kept, with their expected types.

Any problem raises :class:`Refused`, whose text is one line for the student.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import struct
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

MAX_FILE_BYTES = 64 * 2**20        # one results file, and one decoded array set
MAX_GROUP_BYTES = 128 * 2**20      # all files read and arrays decoded for one group
MAX_JSON_BYTES = 2**20
MAX_JSON_DEPTH = 32
MAX_MEMBERS = 512                  # arrays in one .npz (VGG19: 2 per layer and 3 more, 91)
MAX_DIRECTORY_ENTRY_BYTES = 512    # a zip directory entry: 46 fixed bytes, the name, small extras
MAX_NPY_HEADER_BYTES = 4096        # numpy writes ~128 bytes
MAX_NDIM = 32
MAX_KEY_CHARS = 256
MAX_ERROR_CHARS = 1000
MAX_TRACEBACK_CHARS = 4000
MAX_EXTRA_ITEMS = 4096             # entries of one list or dict in a record's "extra"
MAX_EXTRA_DEPTH = 4
MAX_EXTRA_TEXT = 1000
ACCEPTED_KINDS = "biuf"            # bool, signed and unsigned integers, floats

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_END_RECORD = b"PK\x05\x06"
_END_RECORD_SIZE = 22
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_LOCATOR_SIZE = 20
# A JSON string up to its closing quote or the end of the text (so an unterminated
# string ends the scan instead of being retried from every later quote), or a bracket.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.?)*(?:"|\Z)', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class Refused(Exception):
    """A results file the parent will not use; ``str(exc)`` is one line for the student."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISDIR, "folder")):
        if test(mode):
            return name
    return "unknown file type"


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


class ResultsFolder:
    """The child's ``out/`` folder, opened once; all reads go through its descriptor.

    ``file_bytes`` bounds one file (and the arrays decoded from it), ``group_bytes`` all
    files read and arrays decoded through this object. Use as a context manager.
    """

    def __init__(self, path: Path, *, file_bytes: int = MAX_FILE_BYTES, group_bytes: int = MAX_GROUP_BYTES,
                 json_bytes: int = MAX_JSON_BYTES):
        self.path = Path(path)
        self.file_bytes = file_bytes
        self.group_bytes = group_bytes
        self.json_bytes = json_bytes
        self.spent = 0
        self.missing = False          # out/ does not exist: the child never got that far
        self.problem = ""             # out/ exists but is refused: every read says so
        self._fd: int | None = None
        self._owner: int | None = None
        try:
            self._fd = os.open(self.path, _DIR_FLAGS)
        except FileNotFoundError:
            self.missing = True
            return
        except OSError as exc:
            self.problem = self._folder_problem(exc)
            return
        self._owner = os.fstat(self._fd).st_uid

    def _folder_problem(self, exc: OSError) -> str:
        try:
            kind = _kind(os.lstat(self.path).st_mode)
        except OSError:
            kind = exc.strerror or type(exc).__name__
        return f"the results folder out/ is not a real folder ({kind}); the grader reads nothing through it"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ResultsFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----- files -----------------------------------------------------------------------
    @staticmethod
    def _check_name(name: str) -> None:
        # One component: O_NOFOLLOW guards only the last one, so no folders in between.
        if not name or "/" in name or "\0" in name or name in (".", ".."):
            raise Refused(f"the grader does not read results file {name!r}: not a plain file name")

    def exists(self, name: str) -> bool:
        """Whether ``out/name`` exists as any kind of entry (a marker file); never follows links."""
        self._check_name(name)
        if self._fd is None:
            return False
        try:
            os.stat(name, dir_fd=self._fd, follow_symlinks=False)
            return True
        except OSError:
            return False

    def _charge(self, nbytes: int, name: str, what: str) -> None:
        if self.spent + nbytes > self.group_bytes:
            raise Refused(f"the results file out/{name} {what} takes the group's results past the grader's "
                          f"{_mib(self.group_bytes)} limit")
        self.spent += nbytes

    def read_bytes(self, name: str, limit: int) -> bytes | None:
        """The content of regular file ``out/name``, at most ``limit`` bytes; None if absent."""
        self._check_name(name)
        if self.problem:
            raise Refused(self.problem)
        if self._fd is None:
            return None
        try:
            before = os.stat(name, dir_fd=self._fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(before.st_mode):
            raise Refused(f"the results file out/{name} is not a regular file ({_kind(before.st_mode)})")
        try:
            fd = os.open(name, _OPEN_FLAGS, dir_fd=self._fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Refused(f"the results file out/{name} could not be opened ({exc.strerror})") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (before.st_dev, before.st_ino):
                raise Refused(f"the results file out/{name} was replaced while the grader opened it")
            if info.st_nlink != 1:
                raise Refused(f"the results file out/{name} is a hard link ({info.st_nlink} names)")
            if info.st_uid != self._owner:
                raise Refused(f"the results file out/{name} is not owned by the user that ran the submission")
            if info.st_size > limit:
                raise Refused(f"the results file out/{name} is {info.st_size} bytes, more than the grader's "
                              f"{_mib(limit) if limit >= 2**20 else f'{limit} bytes'} limit")
            self._charge(info.st_size, name, f"({info.st_size} bytes)")
            chunks, total = [], 0
            while total <= limit:   # the file may still grow: never read past the limit
                chunk = os.read(fd, min(1 << 20, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            if total > limit:
                raise Refused(f"the results file out/{name} grew past the grader's limit while being read")
            return b"".join(chunks)
        finally:
            os.close(fd)

    # ----- records -----------------------------------------------------------------------
    def read_record(self, name: str) -> dict | None:
        """The probe's record for one case from ``out/name`` (JSON), cleaned; None if absent.

        Returns ``{"status": "ok" | "error", "seconds": float | None, "error": str,
        "traceback": str, "extra": dict}``.
        """
        data = self.read_bytes(name, self.json_bytes)
        if data is None:
            return None
        text = data.decode("utf-8", errors="replace")
        depth = json_depth(text)
        if depth > MAX_JSON_DEPTH:
            raise Refused(f"the results file out/{name} is nested {depth} levels deep; the grader reads at most "
                          f"{MAX_JSON_DEPTH}")
        try:
            doc = json.loads(text)
        except RecursionError:
            raise Refused(f"the results file out/{name} is nested too deeply to read") from None
        except ValueError as exc:
            raise Refused(f"the results file out/{name} is not valid JSON ({str(exc)[:200]})") from None
        if not isinstance(doc, dict):
            raise Refused(f"the results file out/{name} is not a JSON object")
        return clean_record(doc)

    # ----- arrays -------------------------------------------------------------------------
    def read_arrays(self, name: str, expected: set | frozenset | None = None) -> dict | None:
        """Arrays of ``out/name`` (an ``.npz``) as float64, checked before decoding; None if absent.

        Only members ``<key>.npy`` are read; with ``expected`` given, other keys are skipped
        unread. Each array keeps its stored shape.
        """
        data = self.read_bytes(name, self.file_bytes)
        if data is None:
            return None
        check_zip_directory(data, name)
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - every malformed archive is the child's doing
            raise Refused(f"the results file out/{name} is not a valid .npz archive ({_reason(exc)})") from None
        with archive:
            infos = archive.infolist()
            if len(infos) > MAX_MEMBERS:
                raise Refused(f"the results file out/{name} has {len(infos)} arrays; the grader reads at most "
                              f"{MAX_MEMBERS}")
            names = [info.filename for info in infos]
            if len(set(names)) != len(names):
                twice = sorted({n for n in names if names.count(n) > 1})[0]
                raise Refused(f"the results file out/{name} holds {twice[:80]!r} more than once")
            decoded = 0
            arrays: dict[str, np.ndarray] = {}
            for info in infos:
                key = _member_key(info.filename, name)
                if expected is not None and key not in expected:
                    continue
                if info.flag_bits & 0x1:
                    raise Refused(f"the results file out/{name} has an encrypted member {key!r}")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise Refused(f"the results file out/{name} uses zip compression method {info.compress_type} "
                                  f"for {key!r}; only stored and deflated members are read")
                if decoded + info.file_size > self.file_bytes:
                    raise Refused(f"the results file out/{name} declares {info.file_size} bytes for {key!r}, past "
                                  f"the grader's {_mib(self.file_bytes)} limit")
                try:
                    array, nbytes = self._read_member(archive, info, key, name, self.file_bytes - decoded)
                except Refused:
                    raise
                except Exception as exc:  # noqa: BLE001 - corrupt or truncated data
                    raise Refused(f"the results file out/{name} has an unreadable array {key!r} "
                                  f"({_reason(exc)})") from None
                decoded += nbytes
                arrays[key] = array
            return arrays

    def _read_member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, name: str,
                     room: int) -> tuple[np.ndarray, int]:
        """Decode one member: header first, checked, then exactly the bytes it announces."""
        with archive.open(info) as member:
            version = npy_format.read_magic(io.BytesIO(_read_exact(member, npy_format.MAGIC_LEN)))
            if version == (1, 0):
                length_format, read_header = "<H", npy_format.read_array_header_1_0
            elif version == (2, 0):
                length_format, read_header = "<I", npy_format.read_array_header_2_0
            else:
                raise Refused(f"the results file out/{name} stores {key!r} in .npy version {version}; "
                              f"the grader reads versions 1.0 and 2.0")
            length_bytes = _read_exact(member, struct.calcsize(length_format))
            (length,) = struct.unpack(length_format, length_bytes)
            if length > MAX_NPY_HEADER_BYTES:
                raise Refused(f"the results file out/{name} has a {length}-byte header for {key!r}")
            header = _read_exact(member, length)
            shape, fortran, dtype = read_header(io.BytesIO(length_bytes + header),
                                                max_header_size=MAX_NPY_HEADER_BYTES)
            check_array_header(shape, dtype, key, name)
            count = math.prod(shape)
            nbytes = count * dtype.itemsize
            # What the parent holds afterwards: float64, so a bool array costs 8x its file.
            held = count * max(dtype.itemsize, 8)
            if held > room:
                raise Refused(f"the results file out/{name} announces array {key!r} of shape {tuple(shape)} and "
                              f"dtype {dtype} ({held} bytes as float64), past the grader's "
                              f"{_mib(self.file_bytes)} limit")
            self._charge(held, name, f"(array {key!r}, {held} bytes)")
            raw = _read_exact(member, nbytes)
            if member.read(1):
                raise Refused(f"the results file out/{name} has data after array {key!r}")
        flat = np.frombuffer(raw, dtype=dtype, count=count)
        array = flat.reshape(shape, order="F" if fortran else "C")
        return np.array(array, dtype=np.float64, order="C"), held


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def _read_exact(stream, n: int) -> bytes:
    chunks, total = [], 0
    while total < n:
        chunk = stream.read(min(n - total, 1 << 20))
        if not chunk:
            raise EOFError(f"the data ends after {total} of {n} bytes (truncated?)")
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _member_key(filename: str, name: str) -> str:
    if not filename.endswith(".npy"):
        raise Refused(f"the results file out/{name} holds {filename[:80]!r}, which is not an .npy array")
    key = filename[:-4]
    if not key or len(key) > MAX_KEY_CHARS or not key.isprintable():
        raise Refused(f"the results file out/{name} holds an array with an unusable name {key[:80]!r}")
    return key


def check_zip_directory(data: bytes, name: str) -> None:
    """Refuse an archive whose zip directory is large before ``zipfile`` parses it.

    ``zipfile`` walks the whole central directory the end record points to, so a file
    with 100k members costs minutes before its member count can be seen. The end record
    is found where ``zipfile`` looks for it (the last 22 bytes, else the last match in
    the final 64 KiB); zip64 archives are refused (no results file is that large).
    """
    size = len(data)
    if size >= _END_RECORD_SIZE and data[-_END_RECORD_SIZE:-_END_RECORD_SIZE + 4] == _END_RECORD \
            and data[-2:] == b"\0\0":
        at = size - _END_RECORD_SIZE
    else:
        at = data.rfind(_END_RECORD, max(0, size - _END_RECORD_SIZE - 65535))
    if at < 0 or at + _END_RECORD_SIZE > size:
        raise Refused(f"the results file out/{name} is not a valid .npz archive (no zip directory: truncated?)")
    fields = struct.unpack("<4s4H2LH", data[at:at + _END_RECORD_SIZE])
    on_disk, total, directory_bytes = fields[3], fields[4], fields[5]
    if at >= _ZIP64_LOCATOR_SIZE and data[at - _ZIP64_LOCATOR_SIZE:at - _ZIP64_LOCATOR_SIZE + 4] == _ZIP64_LOCATOR:
        raise Refused(f"the results file out/{name} is a zip64 archive; the grader reads at most {MAX_MEMBERS} "
                      f"arrays in an ordinary .npz")
    if max(on_disk, total) > MAX_MEMBERS:
        raise Refused(f"the results file out/{name} has {max(on_disk, total)} arrays; the grader reads at most "
                      f"{MAX_MEMBERS}")
    if directory_bytes > MAX_MEMBERS * MAX_DIRECTORY_ENTRY_BYTES:
        raise Refused(f"the results file out/{name} has a {directory_bytes}-byte zip directory; the grader reads "
                      f"at most {MAX_MEMBERS * MAX_DIRECTORY_ENTRY_BYTES} bytes of it")


def check_array_header(shape, dtype: np.dtype, key: str, name: str) -> None:
    """Plain numeric or bool dtype (no object, structured, void, string, datetime), sane shape."""
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in ACCEPTED_KINDS:
        raise Refused(f"the results file out/{name} holds array {key!r} of dtype {str(dtype)[:60]}; the grader "
                      f"reads numeric and bool arrays only")
    if len(shape) > MAX_NDIM or any(n < 0 for n in shape):
        raise Refused(f"the results file out/{name} holds array {key!r} with an invalid shape {tuple(shape)[:8]}")


def json_depth(text: str) -> int:
    """The deepest bracket nesting of JSON ``text``, counted outside strings, without parsing."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if not brackets:
        return 0
    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max(initial=0))


def finite_seconds(value) -> float | None:
    """``value`` as seconds if it is a finite, non-negative number; otherwise None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# C0 controls but tab and newline, DEL and C1 (ESC sequences rewrite a terminal's lines).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` safe to print or to send as strict UTF-8: controls and lone surrogates -> '?'."""
    text = str(text).encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("?", text)


def _text(value, limit: int) -> str:
    if isinstance(value, str):
        return printable(value[:limit])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)[:limit]
    return ""


def _clean_extra(value, depth: int = 0):
    """A record's ``extra`` value with JSON types only: finite numbers, short strings, small lists."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return printable(value[:MAX_EXTRA_TEXT])
    if depth >= MAX_EXTRA_DEPTH:
        return None
    if isinstance(value, list):
        return [_clean_extra(v, depth + 1) for v in value[:MAX_EXTRA_ITEMS]]
    if isinstance(value, dict):
        out = {}
        for key, item in list(value.items())[:MAX_EXTRA_ITEMS]:
            if isinstance(item, float) and not math.isfinite(item):
                continue   # a non-finite number is no fact: leave the entry out
            out[str(key)[:MAX_KEY_CHARS]] = _clean_extra(item, depth + 1)
        return out
    return None


def clean_record(doc: dict) -> dict:
    """The fields the probe writes, with the types the parent expects (see ``read_record``)."""
    extra = doc.get("extra")
    return {
        "status": "ok" if doc.get("status") == "ok" else "error",
        "seconds": finite_seconds(doc.get("seconds")),
        "error": _text(doc.get("error"), MAX_ERROR_CHARS) or "error",
        "traceback": _text(doc.get("traceback"), MAX_TRACEBACK_CHARS),
        "extra": _clean_extra(extra) if isinstance(extra, dict) else {},
    }
