"""First stage of a sandboxed child: isolate, drop privileges, then exec the real command.

Run by :mod:`grader.sandbox` as ``python -I -S _sandbox_boot.py SPEC_JSON ARGV...``. It runs
as the grader's user (root when privileges are dropped) and uses the standard library only,
because ``-I -S`` keeps the caller's ``PYTHONPATH`` and site-packages out of this trusted
stage. Doing the work here rather than in a ``preexec_fn`` keeps the grader process free of
fork-time hazards (its output-draining threads may hold locks when it forks).

With ``"namespace": true`` the process tree is::

    boot (outer, grader's process group leader)   unshares mount/pid/net/ipc namespaces,
     └─ boot (pid 1 of the new pid namespace)      mounts a private /proc, reaps, reports
         └─ the real command, unprivileged         rlimits set, execve'd

When pid 1 exits the kernel kills everything left in its pid namespace, so no student
process survives the run even if it left the grader's process group. Every stage asks the
kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), so nothing outlives a
grader that is killed itself.

With a ``"view"`` in the spec the command does not see the machine's file system at all:
it is chrooted into a fresh tmpfs holding only bind mounts of what it needs (read-only,
except its work folder), private size-capped tmpfs for ``/tmp``, ``/var/tmp`` and
``/dev/shm``, a few device nodes and its own ``/proc``. What is not listed is not there.

Without root the same isolation comes from an unprivileged user namespace
(``"userns": true``): the grader's user is mapped to itself inside, gets the capabilities
to mount in its own namespaces, and loses them at the ``execve`` of the command.

Messages for the grader go to ``status_fd`` as JSON lines; that descriptor is close-on-exec
in the real command, so student code cannot forge them.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

BOOT_FAILED = 121  # exit code when this stage could not start the real command
OPTIONAL_NAMESPACES = (("pid", CLONE_NEWPID), ("net", CLONE_NEWNET), ("ipc", CLONE_NEWIPC))

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class BootError(Exception):
    """The sandbox could not be set up; the message is shown to the instructor."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise BootError(f"{what} failed: {os.strerror(err)} (errno {err})")


def _enc(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(_enc(source), _enc(target), _enc(fstype), flags, _enc(data)),
           f"mount {source or ''} on {target}")


def report(fd: int, **message) -> None:
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
    except OSError:
        pass  # the grader went away; nothing useful left to do with the message


def _touch(path: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


# statvfs flag -> mount flag: a remount must keep what the source mount has, because in
# a user namespace the kernel refuses to clear flags the outer mount locked.
_KEEP_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
               (os.ST_NOATIME, 1024), (os.ST_NODIRATIME, 2048), (os.ST_RELATIME, 1 << 21), (os.ST_RDONLY, MS_RDONLY))


def _bind(source: str, target: str, writable: bool, device: bool = False) -> None:
    """Bind ``source`` at ``target`` (created as an empty folder or file), read-only unless ``writable``."""
    if os.path.isdir(source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        _touch(target)
    mount(source, target, None, MS_BIND | MS_REC)
    if device:
        return   # device nodes keep their mount's flags (nodev would make them unusable)
    held = os.statvfs(source).f_flag
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (0 if writable else MS_RDONLY)
    flags |= sum(mflag for sflag, mflag in _KEEP_FLAGS if held & sflag)
    mount(None, target, None, flags)


def _cover(path: str) -> None:
    """Make ``path`` (inside the view) empty and unreadable."""
    if not os.path.lexists(path):
        return
    if os.path.isdir(path):
        mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0000,size=4k")
    else:
        mount("/dev/null", path, None, MS_BIND)
        mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def build_view(view: dict) -> None:
    """Fill the empty folder ``view["root"]`` with what the command may see (before chroot).

    Order matters: tmpfs folders first, then binds from the outermost path inwards, so a
    work folder under ``/tmp`` lands inside the private ``/tmp``.
    """
    root = view["root"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    inside = lambda path: root + path  # noqa: E731 - every view path is absolute
    for path, size, mode in view.get("tmpfs", ()):
        os.makedirs(inside(path), mode=0o755, exist_ok=True)
        mount("tmpfs", inside(path), "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode:o},size={int(size)}")
    for target, link in view.get("symlinks", ()):
        os.makedirs(os.path.dirname(inside(link)), mode=0o755, exist_ok=True)
        os.symlink(target, inside(link))
    for device in view.get("devices", ()):
        _bind(device, inside(device), writable=True, device=True)
    for source, target, writable in sorted(view.get("binds", ()), key=lambda b: b[1].count("/")):
        _bind(source, inside(target), writable)
    for path in view.get("hide", ()):
        _cover(inside(path))
    os.makedirs(inside("/proc"), mode=0o555, exist_ok=True)
    # Nothing may be added to the view's skeleton itself.
    mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def enter_view(view: dict, with_proc: bool) -> None:
    """chroot into the view (after a private /proc for the current pid namespace, if wanted)."""
    root = view["root"]
    if with_proc:
        mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chroot(root)
    os.chdir("/")


def _map_user(uid: int, gid: int) -> None:
    """Map the grader's own user and group to themselves inside a new user namespace."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def setup_namespaces(spec: dict) -> list[str]:
    """Unshare and mount; returns the namespaces obtained. Needs root, or ``userns``."""
    if spec.get("userns"):
        uid, gid = os.getuid(), os.getgid()
        _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(CLONE_NEWUSER | CLONE_NEWNS)")
        _map_user(uid, gid)
        features = ["user", "mount"]
    else:
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        features = ["mount"]
    for name, flag in OPTIONAL_NAMESPACES:
        if _libc.unshare(flag) == 0:
            features.append(name)
    # Without this our mounts would propagate back to the host's mount table.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    if spec.get("view"):
        build_view(spec["view"])
        return features
    for path in spec.get("readonly", ()):
        mount(path, path, None, MS_BIND | MS_REC)
        mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for path in spec.get("hide", ()):
        if not os.path.lexists(path):
            continue  # already out of sight: an overlay above it did not keep it
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0000,size=4k")
        else:
            mount("/dev/null", path, None, MS_BIND)
            mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    return features


def exec_command(spec: dict, argv: list[str]) -> None:
    """Drop privileges, apply limits and exec; reports and exits if anything fails."""
    fd = spec["status_fd"]
    try:
        if spec.get("uid") is not None:
            os.setgroups([])
            os.setgid(spec["gid"])
            os.setuid(spec["uid"])
            if os.getuid() == 0 or os.geteuid() == 0:
                raise BootError("privileges were not dropped")
        # Changing credentials clears the parent-death signal: ask for it again.
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # setuid binaries (su, ping, ...) must not hand privileges back.
        _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        # Limits after the drop: an unprivileged process may lower them but never raise them.
        for name, (soft, hard) in spec["rlimits"].items():
            resource.setrlimit(getattr(resource, name), (soft, hard))
        blocked = [p for p in spec.get("must_reach", ()) if not os.access(p, os.R_OK | os.X_OK)]
        if blocked:
            raise BootError(
                f"user {spec.get('user')} cannot read {', '.join(blocked)}: a parent folder is not "
                f"traversable by other users. Move the kit and its venv to a world-readable place "
                f"or run the grader where mount namespaces are allowed")
        os.chdir(spec["workdir"])
        os.set_inheritable(fd, False)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.execve(spec["exe"], argv, dict(os.environ))
    except (OSError, BootError, ValueError) as exc:
        report(fd, boot_error=f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) else str(exc))
    os._exit(BOOT_FAILED)


def run_as_init(spec: dict, argv: list[str]) -> None:
    """Pid 1 of the new pid namespace: start the command, reap orphans, report its end."""
    fd = spec["status_fd"]
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        if spec.get("view"):
            enter_view(spec["view"], with_proc=True)
        else:
            # A private /proc hides the grader's and other runs' processes from the student.
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except (BootError, OSError) as exc:
        if spec.get("view"):
            report(fd, boot_error=f"entering the sandbox's view: {exc}")
            os._exit(BOOT_FAILED)
        report(fd, warning=str(exc))
    child = os.fork()
    if child == 0:
        exec_command(spec, argv)
    while True:
        try:
            pid, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            os._exit(BOOT_FAILED)
        if pid == child:
            break
    cpu = usage.ru_utime + usage.ru_stime
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        report(fd, signal=sig, cpu=cpu)
        os._exit(128 + sig)
    code = os.WEXITSTATUS(status)
    report(fd, exit=code, cpu=cpu)
    os._exit(code)


def probe(fd: int) -> None:
    """Report which namespaces and mounts work here, touching nothing outside a temp folder."""
    import tempfile
    try:
        features = setup_namespaces({"userns": os.geteuid() != 0})
        with tempfile.TemporaryDirectory() as tmp:
            mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, "size=4k")
            mount(None, tmp, None, MS_REMOUNT | MS_RDONLY)
            _check(_libc.umount2(os.fsencode(tmp), 0), "umount")
        report(fd, features=features)
    except (BootError, OSError) as exc:
        report(fd, boot_error=str(exc))


def join_cgroups(spec: dict) -> None:
    """Move this stage (and so everything it starts) into the run's cgroups."""
    for procs in spec.get("cgroups", ()):
        try:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        except OSError as exc:
            report(spec["status_fd"], warning=f"could not join cgroup {procs}: {exc}")


def main() -> None:
    spec = json.loads(sys.argv[1])
    argv = sys.argv[2:]
    fd = spec["status_fd"]
    # Nothing of the sandbox may outlive the grader, even when the grader is SIGKILLed.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if spec.get("parent_pid") and os.getppid() != spec["parent_pid"]:
        os._exit(BOOT_FAILED)   # the grader died before the line above took effect
    join_cgroups(spec)
    if spec.get("probe"):
        probe(fd)
        return
    if not spec.get("namespace"):
        exec_command(spec, argv)
    try:
        features = setup_namespaces(spec)
    except (BootError, OSError) as exc:
        report(fd, boot_error=f"namespace set-up: {exc}")
        os._exit(BOOT_FAILED)
    report(fd, features=features)
    if "pid" not in features:
        if spec.get("view"):
            try:
                enter_view(spec["view"], with_proc=False)
            except (BootError, OSError) as exc:
                report(fd, boot_error=f"entering the sandbox's view: {exc}")
                os._exit(BOOT_FAILED)
        exec_command(spec, argv)
    init = os.fork()
    if init == 0:
        run_as_init(spec, argv)
    os.close(fd)
    _, status = os.waitpid(init, 0)
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
