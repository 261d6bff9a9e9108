"""Run untrusted student code in a child process with limits and, when possible, isolation.

The grader (trusted, usually root in CI) calls :func:`run_sandboxed` to start a probe that
imports a submission and writes its outputs into a work folder. Every way the child can
misbehave (crash, hang, fork, allocate, print without end) comes back as a
:class:`RunResult`; only misuse by the caller raises.

What the child gets, on every machine:

* its own session and process group, killed as a whole at the wall-clock limit;
* an environment built from scratch (no tokens or CI secrets), stdin from /dev/null,
  cwd and HOME in the work folder;
* rlimits on CPU time, address space, file size and core dumps.

When the grader runs as root it also gets, in private mount/pid/net/ipc namespaces set
up by :mod:`grader._sandbox_boot`:

* a user id of its own for this run (from :data:`UID_BASE`, no passwd entry, no
  supplementary groups, ``no_new_privs``), so no two runs share files, processes or a
  process-count limit;
* a cgroup (:mod:`grader.cgroup`) bounding the memory and the processes of the whole
  tree, killed as a whole at the end;
* an allow-list view of the file system: the system's programs and libraries, the Python
  environment, the ``readonly_paths`` and its work folder, nothing else; ``hide_paths``
  inside that view covered by an empty tmpfs; private size-capped ``/tmp``, ``/var/tmp``
  and ``/dev/shm``; no network; its own /proc.

Not root, the same view comes from an unprivileged user namespace where the kernel
allows one (``method: userns``). If namespaces are refused (some containers), hidden
paths fall back to root-owned mode 0700 and read-only paths lose their group/other write
bits: that changes permissions on disk and is listed in
``RunResult.protections["changed_permissions"]``. Set ``AICS_SANDBOX_METHOD`` to
``permissions`` or ``none`` to choose a weaker method.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import stat
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from grader import cgroup
from grader.kit.paths import REPO_ROOT

BOOT_SCRIPT = Path(__file__).resolve().with_name("_sandbox_boot.py")
BOOT_FAILED = 121  # must match grader._sandbox_boot.BOOT_FAILED
SANDBOX_USER = "aics-sandbox"
MAX_PROCESSES = 256  # threads count too; numpy/numba/BLAS are pinned to one thread each
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
METHODS = ("namespace", "userns", "permissions", "none")
# What every child's view holds besides its own paths: the system's programs and
# libraries, a few files of /etc, device nodes, and private size-capped temp folders.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd", "/etc/group",
                "/etc/nsswitch.conf", "/etc/localtime", "/etc/hosts")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
DEV_LINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"), ("/proc/self/fd/1", "/dev/stdout"),
             ("/proc/self/fd/2", "/dev/stderr"))
PRIVATE_TMP = (("/dev", 64 * 1024, 0o755), ("/tmp", 512 * 2**20, 0o1777), ("/var/tmp", 64 * 2**20, 0o1777),
               ("/dev/shm", 256 * 2**20, 0o1777))
# Each run gets its own user id from this range (no passwd entry needed): its processes,
# files and RLIMIT_NPROC are its own, never shared with a neighbouring run.
UID_BASE = int(os.environ.get("AICS_SANDBOX_UID_BASE", "3100000000"))
UID_SLOTS = 4096
UID_LOCK_DIR = Path(os.environ.get("AICS_SANDBOX_LOCK_DIR", "/run/aics-sandbox"))
_CHUNK = 64 * 1024
_POLL = 0.05
# After the child has gone, how long leftover holders of its output pipes may keep them open.
_DRAIN_GRACE = 2.0


def _default_memory() -> int:
    value = os.environ.get("AICS_GRADER_MEMORY_GB")
    if not value:
        return 6 * 2**30
    try:
        gib = float(value)
    except ValueError:
        raise ValueError(f"AICS_GRADER_MEMORY_GB={value!r} is not a number of GiB (e.g. 6 or 1.5)") from None
    if gib <= 0:
        raise ValueError(f"AICS_GRADER_MEMORY_GB={value!r} must be positive")
    return int(gib * 2**30)


@dataclass
class Limits:
    wall_seconds: float = 600.0
    cpu_seconds: float = 900.0
    memory_bytes: int = field(default_factory=_default_memory)
    output_bytes: int = 256 * 1024
    file_bytes: int = 512 * 2**20


@dataclass
class RunResult:
    status: str  # ok | exit | timeout | cpu-limit | memory-limit | signal | start-failed | cancelled
    returncode: int | None
    signal_name: str | None
    seconds: float
    stdout: str
    stderr: str
    truncated: bool
    message: str
    protections: dict
    # time.monotonic() marks of the parent's side: "prepare" (run_sandboxed entered),
    # "spawn" (just before the boot stage starts) and "exit" (the child was reaped); and
    # "cpu", the command's CPU seconds (user + system, its waited-for children included).
    timeline: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- output capture

class _BoundedReader(threading.Thread):
    """Drain one pipe, keeping its first and last ``limit/2`` bytes."""

    def __init__(self, stream, limit: int):
        super().__init__(daemon=True)
        self.stream = stream
        self.half = max(limit // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def run(self) -> None:
        try:
            # read1 returns what is there instead of waiting for a full chunk.
            while chunk := self.stream.read1(_CHUNK):
                self.total += len(chunk)
                room = self.half - len(self.head)
                if room > 0:
                    self.head += chunk[:room]
                    chunk = chunk[room:]
                if chunk:
                    self.tail += chunk
                    if len(self.tail) > self.half:
                        del self.tail[: len(self.tail) - self.half]
        except (OSError, ValueError):
            pass  # pipe closed under us at shutdown

    def text(self) -> tuple[str, bool]:
        kept = len(self.head) + len(self.tail)
        if self.total <= kept:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace"), False
        marker = f"\n[... {self.total - kept} bytes of output omitted by the grader ...]\n".encode()
        return (bytes(self.head) + marker + bytes(self.tail)).decode("utf-8", "replace"), True


# --------------------------------------------------------------------------- machine facts

def _is_root() -> bool:
    return os.geteuid() == 0


def _requested_method() -> str | None:
    value = os.environ.get("AICS_SANDBOX_METHOD", "").strip().lower()
    if value and value not in METHODS:
        raise ValueError(f"AICS_SANDBOX_METHOD={value!r}: expected one of {', '.join(METHODS)}")
    return value or None


def _lookup_user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _sandbox_user(create: bool) -> tuple[pwd.struct_passwd | None, str]:
    """The account the child runs as, creating the dedicated one if allowed; (entry, note)."""
    wanted = os.environ.get("AICS_SANDBOX_USER", SANDBOX_USER)
    entry = _lookup_user(wanted)
    if entry is None and create and wanted == SANDBOX_USER and shutil.which("useradd"):
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", SANDBOX_USER],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        entry = _lookup_user(SANDBOX_USER)  # also covers a concurrent grader creating it first
    if entry is not None and entry.pw_uid != 0:
        return entry, ""
    fallback = _lookup_user("nobody")
    if fallback is None:
        return None, f"neither {wanted!r} nor 'nobody' exists and the user could not be created"
    return fallback, f"{wanted!r} unavailable, using 'nobody'"


@lru_cache(maxsize=1)
def _namespace_probe() -> tuple[list[str], str]:
    """Ask the boot stage to unshare and mount once; (features, error).

    As root: mount/pid/net/ipc namespaces. Otherwise: the same inside an unprivileged
    user namespace, where the kernel allows one.
    """
    read, write = os.pipe()
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-S", str(BOOT_SCRIPT), json.dumps({"probe": True, "status_fd": write})],
            pass_fds=(write,), stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"namespace probe failed: {exc}"
    finally:
        os.close(write)
    messages = _read_messages(read)
    for msg in messages:
        if "features" in msg:
            return list(msg["features"]), ""
        if "boot_error" in msg:
            return [], msg["boot_error"]
    return [], f"namespace probe gave no answer (exit {proc.returncode}): {proc.stderr.decode(errors='replace')[-300:]}"


def protections_available() -> dict:
    """What this machine can enforce, for the grader's report."""
    requested = _requested_method()
    info: dict = {"root": _is_root(), "requested_method": requested}
    if not _is_root():
        features, error = _namespace_probe() if requested in (None, "userns", "namespace") else ([], "")
        info.update(privilege_drop=False, namespaces=features, user=pwd.getpwuid(os.geteuid()).pw_name)
        if features and "user" in features:
            info.update(method="userns", isolated=True,
                        note="not root: the child runs as the grader's user inside its own user, mount, pid "
                             "and network namespaces, and sees only a read-only view of what it needs; "
                             "no per-run user id and no cgroup limits (rlimits only)")
        else:
            info.update(method="none", isolated=False,
                        reason_off="the grader is not running as root and user namespaces are unavailable"
                                   + (f" ({error})" if error else "") + ", so the child runs as the same user: "
                                   "it can read whatever that user can (hidden checks and references included), "
                                   "write the kit and the reports, and leave processes behind",
                        unprotected=["reading the kit's reference and hidden checks", "writing the kit",
                                     "writing the reports", "processes outliving the check"])
        return info
    entry = _lookup_user(os.environ.get("AICS_SANDBOX_USER", SANDBOX_USER))
    info["user"] = entry.pw_name if entry else (f"{SANDBOX_USER} (created on first run)"
                                                if shutil.which("useradd") else "nobody")
    info["privilege_drop"] = True
    features, error = _namespace_probe()
    info["namespaces"] = features
    if requested in (None, "namespace") and features:
        info["method"] = "namespace"
        info["isolated"] = True
    elif requested == "none":
        info["method"] = "none"
        info["isolated"] = False
        info["unprotected"] = ["reading the kit's reference and hidden checks"]
    else:
        info["method"] = "permissions"
        info["isolated"] = True
        if not features:
            info["reason_off"] = f"mount namespaces unavailable ({error}); hidden paths are made root-only instead"
    from grader import cgroup
    info["cgroups"] = cgroup.describe()
    return info


# --------------------------------------------------------------------------- path planning

def _other_can_enter(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IXOTH)
    except OSError:
        return False


def _needed_paths(exe: str, env: dict[str, str], workdir: Path, readonly: list[Path]) -> list[Path]:
    """Folders the child must be able to read: interpreter, venv, kit, inputs, work folder."""
    candidates = [Path(exe).resolve().parent, workdir, *readonly]
    if _is_python(exe):
        # The venv, the interpreter's standard library and the kit's own (non-hidden) code.
        candidates += [Path(sys.prefix), Path(sys.base_prefix), REPO_ROOT]
    candidates += [Path(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    out: list[Path] = []
    for path in candidates:
        path = path.resolve()
        if not path.exists():
            continue
        if path.is_file():
            path = path.parent
        if path not in out:
            out.append(path)
    return out


def _is_python(exe: str) -> bool:
    real = Path(exe).resolve()
    return real == Path(sys.executable).resolve() or real.name.startswith("python")


def _blocking_parent(path: Path) -> Path | None:
    """The highest proper ancestor of ``path`` that other users cannot traverse."""
    for parent in reversed(path.parents):  # from "/" down
        if parent != Path("/") and not _other_can_enter(parent):
            return parent
    return None


# --------------------------------------------------------------------------- helpers

def _child_env(workdir: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": str(workdir / ".tmp"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "MPLBACKEND": "Agg",
        "NUMBA_CACHE_DIR": str(workdir / ".numba_cache"),
    }
    env.update({name: "1" for name in THREAD_VARS})
    for key, value in (extra or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"env entries must be str: str, got {key!r}: {value!r}")
        env[key] = value
    return env


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    # Never follow symlinks: a planted link must not make root chown files outside the tree.
    os.chown(root, uid, gid, follow_symlinks=False)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


def _restrict_hidden(paths: list[Path]) -> list[str]:
    changed = []
    for path in paths:
        st = path.lstat()
        mode = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if st.st_uid != 0 or st.st_gid != 0 or stat.S_IMODE(st.st_mode) != mode:
            os.chown(path, 0, 0, follow_symlinks=False)
            os.chmod(path, mode)
            changed.append(f"{path}: owner root, mode {mode:o}")
    return changed


def _restrict_readonly(paths: list[Path], uid: int, gid: int) -> list[str]:
    changed = []
    for top in paths:
        entries = [top] + [Path(f, n) for f, ds, fs in os.walk(top) for n in ds + fs]
        for path in entries:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            new = mode & ~stat.S_IWOTH
            if st.st_gid == gid:
                new &= ~stat.S_IWGRP
            if st.st_uid == uid:
                os.chown(path, 0, -1)
            if new != mode:
                os.chmod(path, new)
            if new != mode or st.st_uid == uid:
                changed.append(f"{path}: write access removed for the sandbox user")
    return changed


def _read_messages(fd: int) -> list[dict]:
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    messages = []
    for line in data.splitlines():
        try:
            messages.append(json.loads(line))
        except ValueError:
            continue
    return messages


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


_MEMORY_LAST_LINE = re.compile(r"^[\w.]*MemoryError\b|Cannot allocate memory|std::bad_alloc|out of memory", re.I)


def _failed_start(message: str, protections: dict, seconds: float = 0.0, stderr: str = "") -> RunResult:
    return RunResult("start-failed", None, None, seconds, "", stderr, False, f"could not start: {message}", protections)


# --------------------------------------------------------------------------- disk cap

_libc = None


def _mount_tmpfs(path: Path, size_bytes: int) -> str:
    """Mount a tmpfs of ``size_bytes`` on ``path``; '' on success, else why not."""
    global _libc
    import ctypes
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    data = f"size={int(size_bytes)},mode=0700".encode()
    if _libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", 2 | 4, data) != 0:   # MS_NOSUID | MS_NODEV
        err = ctypes.get_errno()
        return f"mount failed: {os.strerror(err)}"
    return ""


@contextlib.contextmanager
def capped_folder(path: Path, size_bytes: int):
    """Make the empty folder ``path`` a tmpfs of at most ``size_bytes`` while the block runs.

    The child's work folder is the one place it may write; as a size-capped tmpfs, writing
    many files cannot fill the machine's disk (pages are charged to the run's cgroup too).
    Yields a note for the report: '' when capped, else why not (not root, mount refused).
    """
    path = Path(path)
    if not _is_root():
        yield "not root: the work folder's size is capped per file only"
        return
    why = _mount_tmpfs(path, size_bytes)
    try:
        yield (f"mount refused ({why}): the work folder's size is capped per file only" if why else "")
    finally:
        if not why:
            _libc.umount2(os.fsencode(path), 2)   # MNT_DETACH: gone even if something holds it open


# --------------------------------------------------------------------------- main entry

def run_sandboxed(argv: list[str], *, workdir: Path, limits: Limits, env: dict[str, str] | None = None,
                  hide_paths: Sequence[Path] = (), readonly_paths: Sequence[Path] = (),
                  drop_privileges: bool | None = None, cancel: threading.Event | None = None) -> RunResult:
    """Run ``argv`` in ``workdir`` under ``limits``; never raises for the child's behaviour.

    Setting ``cancel`` (from another thread) kills the child as the wall-clock limit would;
    the result's status is then ``cancelled``.
    """
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"argv must be a non-empty list of str, got {argv!r}")
    workdir = Path(workdir).resolve()
    if not workdir.is_dir():
        raise FileNotFoundError(f"sandbox work folder {workdir} does not exist; create it before running the child")
    prepare = time.monotonic()
    hide = [Path(p).resolve() for p in hide_paths]
    readonly = [Path(p).resolve() for p in readonly_paths]
    for path in readonly:
        if not path.exists():
            raise FileNotFoundError(f"read-only path {path} given to the sandbox does not exist")
    child_env = _child_env(workdir, env)
    for sub in (".tmp", ".numba_cache"):
        (workdir / sub).mkdir(exist_ok=True)

    root = _is_root()
    drop = root if drop_privileges is None else drop_privileges
    protections: dict = {"privilege_drop": False, "user": pwd.getpwuid(os.geteuid()).pw_name,
                         "hidden_paths": [], "readonly_paths": [], "method": "none", "reason_off": ""}
    if drop and not root:
        protections["reason_off"] = "the grader is not running as root, so it cannot switch to an unprivileged user"
        drop = False
    elif not drop:
        protections["reason_off"] = ("privilege drop disabled by the caller" if root else
                                     "the grader is not running as root, so the child runs as the same user")

    exe = argv[0] if os.sep in argv[0] else shutil.which(argv[0], path=child_env["PATH"])
    if not exe or not os.path.exists(exe):
        return _failed_start(f"command {argv[0]!r} not found", protections)
    exe = os.path.abspath(exe)

    spec: dict = {"workdir": str(workdir), "exe": exe, "namespace": False, "uid": None, "gid": None,
                  "parent_pid": os.getpid()}
    cpu_hard = int(limits.cpu_seconds + max(2.0, 0.1 * limits.cpu_seconds)) + 1
    rlimits = {
        "RLIMIT_CPU": [max(1, int(round(limits.cpu_seconds))), cpu_hard],
        "RLIMIT_AS": [int(limits.memory_bytes)] * 2,
        "RLIMIT_FSIZE": [int(limits.file_bytes)] * 2,
        "RLIMIT_CORE": [0, 0],
    }
    uid_lock = None
    group = None
    try:
        requested = _requested_method()
        if drop:
            uid, gid, uid_lock, name = _run_identity()
            spec.update(uid=uid, gid=gid, user=name)
            protections.update(privilege_drop=True, user=name, uid=uid)
            _chown_tree(workdir, uid, gid)
            group, why_not = cgroup.create(f"run-{uid}-{os.getpid()}-{workdir.name[-8:]}", limits.memory_bytes,
                                           MAX_PROCESSES)
            if group is not None:
                spec["cgroups"] = group.procs_files
                protections["cgroup"] = f"{group.layout}: memory {_gib(limits.memory_bytes)} and " \
                                        f"{MAX_PROCESSES} processes for the whole check group"
            else:
                # Without a cgroup the per-user process limit is all there is; the user id is
                # this run's own, so it is never shared with a neighbour.
                rlimits["RLIMIT_NPROC"] = [MAX_PROCESSES, MAX_PROCESSES]
                protections["cgroup"] = f"none ({why_not}): limits are per process (rlimits)"
            features, error = _namespace_probe() if requested in (None, "namespace") else ([], "")
            existing_hidden = [p for p in hide if os.path.lexists(p)]
            if features:
                spec.update(namespace=True, view=_view(exe, workdir, readonly, existing_hidden))
                protections.update(method="namespace", hidden_paths=[str(p) for p in existing_hidden],
                                   readonly_paths=[str(p) for p in readonly], namespaces=features,
                                   view="only the listed paths, read-only; private /tmp, /var/tmp, /dev/shm")
            elif requested == "none":
                protections["reason_off"] = "AICS_SANDBOX_METHOD=none: hidden and read-only paths not enforced"
            else:
                # Only the permissions fallback needs to know which paths the child must reach.
                needed = _needed_paths(exe, child_env, workdir, readonly)
                spec["must_reach"] = [str(p) for p in needed]
                changed = _restrict_hidden(existing_hidden) + _restrict_readonly(readonly, uid, gid)
                protections.update(method="permissions", hidden_paths=[str(p) for p in existing_hidden],
                                   readonly_paths=[str(p) for p in readonly], changed_permissions=changed)
                if error:
                    protections["reason_off"] = f"mount namespaces unavailable ({error})"
                unreachable = [str(p) for p in needed if _blocking_parent(p) is not None]
                if unreachable:
                    protections["unreachable"] = unreachable
        elif not root and requested in (None, "userns", "namespace") and drop_privileges is not False:
            features, error = _namespace_probe()
            if "user" in features:
                existing_hidden = [p for p in hide if os.path.lexists(p)]
                spec.update(namespace=True, userns=True, view=_view(exe, workdir, readonly, existing_hidden))
                protections.update(method="userns", hidden_paths=[str(p) for p in existing_hidden],
                                   readonly_paths=[str(p) for p in readonly], namespaces=features,
                                   view="only the listed paths, read-only; private /tmp, /var/tmp, /dev/shm",
                                   reason_off="not root: same user id as the grader, no cgroup limits")
        spec["rlimits"] = rlimits
        result = _run(argv, spec, child_env, workdir, limits, protections, group, cancel)
        result.timeline["prepare"] = prepare
        return result
    except OSError as exc:
        return _failed_start(f"sandbox preparation failed: {exc}", protections)
    finally:
        if group is not None:
            group.kill()
            group.remove()
        if uid_lock is not None:
            os.close(uid_lock)


def _view(exe: str, workdir: Path, readonly: list[Path], hidden: list[Path]) -> dict:
    """What the child's file system holds (see ``_sandbox_boot.build_view``): an allow-list."""
    binds: list[list] = []
    symlinks: list[list[str]] = [[target, link] for target, link in DEV_LINKS]
    seen: set[str] = set()

    def add(path: Path, writable: bool = False) -> None:
        if not os.path.lexists(path):
            return
        if path.is_symlink() and str(path.parent) == "/":
            symlinks.append([os.readlink(path), str(path)])   # /bin -> usr/bin on merged-/usr systems
            return
        real = path.resolve()
        key = str(real)
        if key in seen:
            return
        seen.add(key)
        binds.append([key, key, writable])

    for name in SYSTEM_PATHS:
        add(Path(name))
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        add(Path(prefix))
    real_exe = Path(exe).resolve()
    if not any(real_exe.is_relative_to(b[0]) for b in binds):
        add(real_exe.parent)
    for path in readonly:
        add(path)
    add(workdir, writable=True)
    root = Path(tempfile.mkdtemp(prefix="aics-view-"))   # an empty mount point; removed after the run
    os.chmod(root, 0o755)
    return {"root": str(root), "binds": binds, "symlinks": symlinks,
            "tmpfs": [[path, size, mode] for path, size, mode in PRIVATE_TMP],
            "devices": [d for d in DEVICES if os.path.exists(d)], "hide": [str(p) for p in hidden]}


def _run_identity() -> tuple[int, int, int, str]:
    """(uid, gid, lock fd, name) of this run: a user id no other run holds at the same time."""
    if os.environ.get("AICS_SANDBOX_USER"):
        entry, note = _sandbox_user(create=False)
        if entry is None:
            raise OSError(f"no unprivileged user to run as ({note})")
        return entry.pw_uid, entry.pw_gid, None, entry.pw_name
    UID_LOCK_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    start = secrets.randbelow(UID_SLOTS)
    for step in range(UID_SLOTS):
        slot = (start + step) % UID_SLOTS
        fd = os.open(UID_LOCK_DIR / f"uid-{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        uid = UID_BASE + slot
        return uid, uid, fd, f"{SANDBOX_USER} (uid {uid})"
    raise OSError(f"all {UID_SLOTS} sandbox user ids are in use")


def _leftovers(uid: int) -> list[int]:
    """Processes still running as ``uid`` (this run's own user id) after the run."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            found.append(int(entry))
                        break
        except (OSError, ValueError, IndexError):
            continue
    return found


def _run(argv: list[str], spec: dict, env: dict[str, str], workdir: Path, limits: Limits,
         protections: dict, group=None, cancel: threading.Event | None = None) -> RunResult:
    try:
        return _run_child(argv, spec, env, workdir, limits, protections, group, cancel)
    finally:
        view = spec.get("view")
        if view:
            try:
                os.rmdir(view["root"])
            except OSError:
                pass


def _after(spec: dict, protections: dict, group) -> None:
    """Kill whatever of the run is left: its cgroup, or every process of its own user id."""
    if group is not None:
        left = group.kill()
        if left:
            protections["leftover_process"] = f"{left} process(es) of the check were still running; killed"
        return
    uid = spec.get("uid")
    if uid is not None and uid >= UID_BASE:
        left = _leftovers(uid)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if left:
            protections["leftover_process"] = f"{len(left)} process(es) of the check were still running; killed"


def _run_child(argv: list[str], spec: dict, env: dict[str, str], workdir: Path, limits: Limits,
               protections: dict, group, cancel: threading.Event | None = None) -> RunResult:
    status_read, status_write = os.pipe()
    spec["status_fd"] = status_write
    command = [sys.executable, "-I", "-S", str(BOOT_SCRIPT), json.dumps(spec), *argv]
    start = time.monotonic()
    try:
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=(status_write,), start_new_session=True)
    except OSError as exc:
        os.close(status_write)
        os.close(status_read)
        return _failed_start(f"{exc}", protections)
    os.close(status_write)
    readers = [_BoundedReader(proc.stdout, limits.output_bytes), _BoundedReader(proc.stderr, limits.output_bytes)]
    for reader in readers:
        reader.start()

    deadline = start + limits.wall_seconds
    timed_out = cancelled = False
    usage = None
    status = 0
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = time.monotonic()
            if now >= deadline or (cancel is not None and cancel.is_set()):
                timed_out = now >= deadline
                cancelled = not timed_out
                _kill_group(proc.pid)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(_POLL)
    except BaseException:
        # The grader itself is stopping (Ctrl-C, SIGTERM, its own timeout): take the child with it.
        _kill_group(proc.pid)
        _after(spec, protections, group)
        proc.wait()
        os.close(status_read)
        raise
    exited = time.monotonic()
    seconds = exited - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # keeps Popen from waiting again
    # Leftovers in the group (a forked grandchild) must not outlive the run or hold the pipes.
    _kill_group(proc.pid)
    oom_kills = group.oom_kills() if group is not None else 0
    _after(spec, protections, group)
    for reader in readers:
        reader.join(timeout=_DRAIN_GRACE)
    leftover = any(reader.is_alive() for reader in readers)
    stdout, cut_out = readers[0].text()
    stderr, cut_err = readers[1].text()
    if leftover:
        protections["leftover_process"] = "a process outside the group still held the output pipes"
    else:
        proc.stdout.close()
        proc.stderr.close()

    messages = _read_messages(status_read)
    boot_error = next((m["boot_error"] for m in messages if "boot_error" in m), None)
    final = next((m for m in messages if "exit" in m or "signal" in m), None)
    for m in messages:
        if "warning" in m:
            protections.setdefault("warnings", []).append(m["warning"])

    if final is not None:
        sig = final.get("signal")
        returncode = -sig if sig else final["exit"]
        cpu = final["cpu"]
    else:
        returncode = proc.returncode
        sig = -returncode if returncode < 0 else None
        cpu = usage.ru_utime + usage.ru_stime if usage else 0.0
    truncated = cut_out or cut_err

    def result(kind: str, message: str) -> RunResult:
        name = signal.Signals(sig).name if sig else None
        return RunResult(kind, returncode, name, seconds, stdout, stderr, truncated, message, protections,
                         {"spawn": start, "exit": exited, "cpu": cpu})

    if timed_out:
        return result("timeout", f"timed out after {limits.wall_seconds:.1f} s (wall-clock limit)")
    if cancelled:
        return result("cancelled", "stopped by the grader: its results were no longer needed")
    if boot_error is not None and returncode == BOOT_FAILED:
        return _failed_start(boot_error, protections, seconds, stderr)
    return _classify(result, returncode, sig, cpu, stderr, limits, oom_kills)


def _classify(result, returncode: int, sig: int | None, cpu: float, stderr: str, limits: Limits,
              oom_kills: int = 0) -> RunResult:
    mem = _gib(limits.memory_bytes)
    if sig == signal.SIGKILL and oom_kills:
        return result("memory-limit", f"killed: the processes of this check together exceeded the {mem} memory limit")
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= limits.cpu_seconds - 0.5):
        return result("cpu-limit",
                      f"stopped after {cpu:.1f} s of CPU time (CPU-time limit {limits.cpu_seconds:.1f} s)")
    if sig == signal.SIGXFSZ:
        size = f"{limits.file_bytes / 2**20:.0f} MiB"
        return result("signal", f"killed by SIGXFSZ: a file grew past the {size} file-size limit")
    if sig == signal.SIGKILL:
        return result("memory-limit", f"killed by SIGKILL: memory limit {mem} exceeded?")
    if sig:
        hint = f" (possibly the {mem} memory limit)" if sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS) else ""
        return result("signal", f"killed by {signal.Signals(sig).name}{hint}")
    if returncode == 0:
        return result("ok", "exited normally (code 0)")
    lines = [line for line in stderr.rstrip().splitlines() if line.strip()]
    if lines and _MEMORY_LAST_LINE.search(lines[-1]):
        return result("memory-limit",
                      f"ran out of memory: the {mem} memory limit was exceeded ({lines[-1].strip()[:120]})")
    return result("exit", f"exited with code {returncode}")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
