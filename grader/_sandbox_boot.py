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
process survives the run even if it left the grader's process group.

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


def _overlay(folder: str, keep: list[str]) -> None:
    """Cover a folder other users cannot traverse with a readable tmpfs holding only ``keep``.

    The kept folders are opened before the tmpfs hides them and bound back from the open
    descriptors, so a 0700 ``/root`` can expose ``/root/.pyenv/versions/3.11`` and nothing else.
    """
    fds = [(k, os.open(k, os.O_PATH | os.O_CLOEXEC)) for k in keep]
    mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
    for path, fd in fds:
        os.makedirs(path, mode=0o755, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    mount(None, folder, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def setup_namespaces(spec: dict) -> list[str]:
    """Unshare and mount; returns the namespaces obtained. Needs root."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    features = ["mount"]
    for name, flag in OPTIONAL_NAMESPACES:
        if _libc.unshare(flag) == 0:
            features.append(name)
    # Without this our mounts would propagate back to the host's mount table.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for item in spec.get("overlays", ()):
        _overlay(item["dir"], item["keep"])
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
        # A private /proc hides the grader's and other runs' processes from the student.
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except BootError as exc:
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
        features = setup_namespaces({})
        with tempfile.TemporaryDirectory() as tmp:
            mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, "size=4k")
            mount(None, tmp, None, MS_REMOUNT | MS_RDONLY)
            _check(_libc.umount2(os.fsencode(tmp), 0), "umount")
        report(fd, features=features)
    except (BootError, OSError) as exc:
        report(fd, boot_error=str(exc))


def main() -> None:
    spec = json.loads(sys.argv[1])
    argv = sys.argv[2:]
    fd = spec["status_fd"]
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
        exec_command(spec, argv)
    init = os.fork()
    if init == 0:
        run_as_init(spec, argv)
    os.close(fd)
    _, status = os.waitpid(init, 0)
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
