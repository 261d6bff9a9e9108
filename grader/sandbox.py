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

When the grader runs as root it also gets, in a private mount/pid/net/ipc namespace set
up by :mod:`grader._sandbox_boot`:

* an unprivileged user (``aics-sandbox``, created on first use, else ``nobody``), no
  supplementary groups, ``no_new_privs`` and a process-count limit;
* ``hide_paths`` covered by an empty read-only tmpfs, ``readonly_paths`` bound read-only;
* folders it needs that sit below a root-only parent (a venv whose interpreter lives in a
  0700 ``/root/.pyenv``, a pytest temp folder) made reachable by a tmpfs over the root-only
  parent that holds just those folders; no network; its own /proc.

If namespaces are refused (some containers), hidden paths fall back to root-owned mode
0700 and read-only paths lose their group/other write bits: that changes permissions on
disk and is listed in ``RunResult.protections["changed_permissions"]``. Set
``AICS_SANDBOX_METHOD`` to ``permissions`` or ``none`` to choose a weaker method.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from grader.kit.paths import REPO_ROOT

BOOT_SCRIPT = Path(__file__).resolve().with_name("_sandbox_boot.py")
BOOT_FAILED = 121  # must match grader._sandbox_boot.BOOT_FAILED
SANDBOX_USER = "aics-sandbox"
MAX_PROCESSES = 256  # threads count too; numpy/numba/BLAS are pinned to one thread each
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
METHODS = ("namespace", "permissions", "none")
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
    status: str  # ok | exit | timeout | cpu-limit | memory-limit | signal | start-failed
    returncode: int | None
    signal_name: str | None
    seconds: float
    stdout: str
    stderr: str
    truncated: bool
    message: str
    protections: dict


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
    """Ask the boot stage to unshare and mount once; (features, error)."""
    if not _is_root():
        return [], "not running as root"
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
        info.update(privilege_drop=False, method="none", namespaces=[], user=pwd.getpwuid(os.geteuid()).pw_name,
                    reason_off="the grader is not running as root, so the child runs as the same user "
                               "and can read whatever that user can (hidden checks and references included)")
        return info
    entry = _lookup_user(os.environ.get("AICS_SANDBOX_USER", SANDBOX_USER))
    info["user"] = entry.pw_name if entry else (f"{SANDBOX_USER} (created on first run)"
                                                if shutil.which("useradd") else "nobody")
    info["privilege_drop"] = True
    features, error = _namespace_probe()
    info["namespaces"] = features
    if requested in (None, "namespace") and features:
        info["method"] = "namespace"
    elif requested == "none":
        info["method"] = "none"
    else:
        info["method"] = "permissions"
        if not features:
            info["reason_off"] = f"mount namespaces unavailable ({error}); hidden paths are made root-only instead"
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


def _plan_overlays(needed: list[Path]) -> tuple[list[dict], list[str]]:
    overlays: dict[Path, list[str]] = {}
    for path in needed:
        top = _blocking_parent(path)
        if top is not None:
            overlays.setdefault(top, []).append(str(path))
    plan = []
    for top, keep in overlays.items():
        # A folder inside another kept one comes along with its bind mount.
        paths = sorted({Path(k) for k in keep})
        outer = [p for p in paths if not any(q != p and q in p.parents for q in paths)]
        plan.append({"dir": str(top), "keep": [str(p) for p in outer]})
    return plan, [str(t) for t in overlays]


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


# --------------------------------------------------------------------------- main entry

def run_sandboxed(argv: list[str], *, workdir: Path, limits: Limits, env: dict[str, str] | None = None,
                  hide_paths: Sequence[Path] = (), readonly_paths: Sequence[Path] = (),
                  drop_privileges: bool | None = None) -> RunResult:
    """Run ``argv`` in ``workdir`` under ``limits``; never raises for the child's behaviour."""
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"argv must be a non-empty list of str, got {argv!r}")
    workdir = Path(workdir).resolve()
    if not workdir.is_dir():
        raise FileNotFoundError(f"sandbox work folder {workdir} does not exist; create it before running the child")
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

    spec: dict = {"workdir": str(workdir), "exe": exe, "namespace": False, "uid": None, "gid": None}
    cpu_hard = int(limits.cpu_seconds + max(2.0, 0.1 * limits.cpu_seconds)) + 1
    rlimits = {
        "RLIMIT_CPU": [max(1, int(round(limits.cpu_seconds))), cpu_hard],
        "RLIMIT_AS": [int(limits.memory_bytes)] * 2,
        "RLIMIT_FSIZE": [int(limits.file_bytes)] * 2,
        "RLIMIT_CORE": [0, 0],
    }
    try:
        if drop:
            entry, note = _sandbox_user(create=True)
            if entry is None:
                return _failed_start(f"no unprivileged user to run as ({note})", protections)
            uid, gid = entry.pw_uid, entry.pw_gid
            rlimits["RLIMIT_NPROC"] = [MAX_PROCESSES, MAX_PROCESSES]
            spec.update(uid=uid, gid=gid, user=entry.pw_name)
            protections.update(privilege_drop=True, user=entry.pw_name)
            if note:
                protections["note"] = note
            _chown_tree(workdir, uid, gid)
            requested = _requested_method()
            features, error = _namespace_probe() if requested in (None, "namespace") else ([], "")
            needed = _needed_paths(exe, child_env, workdir, readonly)
            spec["must_reach"] = [str(p) for p in needed]
            existing_hidden = [p for p in hide if os.path.lexists(p)]
            if features:
                overlays, covered = _plan_overlays(needed)
                spec.update(namespace=True, overlays=overlays, readonly=[str(p) for p in readonly],
                            hide=[str(p) for p in existing_hidden])
                protections.update(method="namespace", hidden_paths=[str(p) for p in existing_hidden],
                                   readonly_paths=[str(p) for p in readonly], namespaces=features,
                                   root_only_parents_bridged=covered)
            elif requested == "none":
                protections["reason_off"] = "AICS_SANDBOX_METHOD=none: hidden and read-only paths not enforced"
            else:
                changed = _restrict_hidden(existing_hidden) + _restrict_readonly(readonly, uid, gid)
                protections.update(method="permissions", hidden_paths=[str(p) for p in existing_hidden],
                                   readonly_paths=[str(p) for p in readonly], changed_permissions=changed)
                if error:
                    protections["reason_off"] = f"mount namespaces unavailable ({error})"
                unreachable = [str(p) for p in needed if _blocking_parent(p) is not None]
                if unreachable:
                    protections["unreachable"] = unreachable
    except OSError as exc:
        return _failed_start(f"sandbox preparation failed: {exc}", protections)
    spec["rlimits"] = rlimits
    return _run(argv, spec, child_env, workdir, limits, protections)


def _run(argv: list[str], spec: dict, env: dict[str, str], workdir: Path, limits: Limits,
         protections: dict) -> RunResult:
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
    timed_out = False
    usage = None
    status = 0
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() >= deadline:
                timed_out = True
                _kill_group(proc.pid)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(_POLL)
    except BaseException:
        # The grader itself is stopping (Ctrl-C, its own timeout): take the child with it.
        _kill_group(proc.pid)
        proc.wait()
        os.close(status_read)
        raise
    seconds = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # keeps Popen from waiting again
    # Leftovers in the group (a forked grandchild) must not outlive the run or hold the pipes.
    _kill_group(proc.pid)
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
        return RunResult(kind, returncode, name, seconds, stdout, stderr, truncated, message, protections)

    if timed_out:
        return result("timeout", f"timed out after {limits.wall_seconds:.1f} s (wall-clock limit)")
    if boot_error is not None and returncode == BOOT_FAILED:
        return _failed_start(boot_error, protections, seconds, stderr)
    return _classify(result, returncode, sig, cpu, stderr, limits)


def _classify(result, returncode: int, sig: int | None, cpu: float, stderr: str, limits: Limits) -> RunResult:
    mem = _gib(limits.memory_bytes)
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
