"""Hostile children against the sandbox itself: leaks, lifetime, limits, reduced mode.

Each test starts real sandboxed processes with the view the grader gives a check group
(``grader.groups.readonly_paths``) and asserts the safe outcome. Most need root, as CI
and Gradescope run the grader; the reduced-mode tests run a grader as another user.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from grader import cgroup, sandbox
from grader.groups import readonly_paths
from grader.kit.paths import REFERENCE_DIR, REPO_ROOT
from grader.sandbox import Limits, run_sandboxed

IS_ROOT = os.geteuid() == 0
HAS_VIEW = IS_ROOT and sandbox.protections_available().get("method") == "namespace"
needs_view = pytest.mark.skipif(not HAS_VIEW, reason="needs root and mount/pid namespaces (as in CI)")
HAS_CGROUP = IS_ROOT and cgroup.describe().startswith("cgroup")


def child(code: str, workdir: Path, **limits) -> sandbox.RunResult:
    values = dict(wall_seconds=30.0, cpu_seconds=30.0, memory_bytes=2 * 2**30)
    values.update(limits)
    return run_sandboxed([sys.executable, "-c", textwrap.dedent(code)], workdir=workdir, limits=Limits(**values),
                         env={"PYTHONPATH": str(REPO_ROOT)}, readonly_paths=readonly_paths({}),
                         hide_paths=(REFERENCE_DIR,))


def _uids_alive(low: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("Uid:") and int(line.split()[1]) >= low:
                    found.append(int(entry))
    return found


# ----- reading the answers ----------------------------------------------------------------

@needs_view
def test_the_child_sees_an_allow_list_and_nothing_of_the_kit_it_does_not_need(tmp_path):
    other = Path(tempfile.mkdtemp(prefix="other-checkout-"))
    try:
        other.chmod(0o755)
        (other / "grader" / "reference").mkdir(parents=True)
        secret = other / "grader" / "reference" / "layers_1.py"
        secret.write_text("ANSWER = 42\n")
        secret.chmod(0o644)
        code = f"""
        import json, os, subprocess
        out = {{}}
        def attempt(name, fn):
            try:
                out[name] = fn()
            except Exception as exc:
                out[name] = "refused: " + type(exc).__name__
        attempt("git_dir", lambda: os.listdir({str(REPO_ROOT / '.git')!r}))
        attempt("git_show", lambda: subprocess.run(["git", "-C", {str(REPO_ROOT)!r}, "show",
                "HEAD:grader/reference/exp_3_1_vgg/layers_2.py"], capture_output=True, text=True).stdout[:40])
        attempt("reference", lambda: open({str(REFERENCE_DIR / 'exp_3_1_vgg' / 'layers_2.py')!r}).read()[:40])
        attempt("refnet_by_path", lambda: open({str(REPO_ROOT / 'grader' / 'refnet' / 'fastops.py')!r}).read()[:40])
        attempt("authoring", lambda: os.listdir({str(REPO_ROOT / 'grader' / 'authoring')!r}))
        attempt("other_checkout", lambda: open({str(secret)!r}).read())
        attempt("kit_root", lambda: sorted(os.listdir({str(REPO_ROOT)!r})))
        attempt("grader_dir", lambda: sorted(os.listdir({str(REPO_ROOT / 'grader')!r})))
        attempt("home", lambda: sorted(os.listdir(os.path.expanduser("~root"))))
        attempt("kit_import", lambda: __import__("grader.kit.paths").__name__)
        print(json.dumps(out))
        """
        result = child(code, tmp_path)
        assert result.status == "ok", (result.message, result.stderr)
        seen = json.loads(result.stdout)
        for name in ("git_dir", "reference", "refnet_by_path", "authoring", "other_checkout"):
            assert str(seen[name]).startswith("refused"), (name, seen[name])
        assert seen["git_show"] == ""   # git finds no repository in the view
        assert ".git" not in seen["kit_root"] and "tests" not in seen["kit_root"]
        assert not {"refnet", "authoring", "experiments", "reference"} & set(seen["grader_dir"])
        assert seen["kit_import"] == "grader"
        assert "view" in result.protections
    finally:
        shutil.rmtree(other)


@needs_view
def test_private_temp_folders_start_empty_and_leave_nothing(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    plant = """
    import os
    for d in ("/tmp", "/dev/shm", "/var/tmp"):
        with open(os.path.join(d, "planted.py"), "w") as f:
            f.write("print('from the previous student')")
    print(sorted(os.listdir("/tmp")), sorted(os.listdir("/dev/shm")))
    """
    result = child(plant, first)
    assert result.status == "ok", result.stderr
    for d in ("/tmp", "/dev/shm", "/var/tmp"):
        assert not os.path.exists(os.path.join(d, "planted.py")), f"{d}/planted.py reached the host"
    look = """
    import os, json
    print(json.dumps({d: os.path.exists(os.path.join(d, "planted.py")) for d in ("/tmp", "/dev/shm", "/var/tmp")}))
    """
    result = child(look, second)
    assert json.loads(result.stdout) == {"/tmp": False, "/dev/shm": False, "/var/tmp": False}


@needs_view
def test_a_host_unix_socket_cannot_be_reached(tmp_path):
    path = Path(tempfile.gettempdir()) / f"aics-host-{os.getpid()}.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o777)
    server.listen(1)
    try:
        code = f"""
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect({str(path)!r})
            print("connected")
        except OSError as exc:
            print("refused", type(exc).__name__)
        """
        result = child(code, tmp_path)
        assert result.stdout.startswith("refused"), result.stdout
    finally:
        server.close()
        path.unlink()


# ----- outliving the limits ---------------------------------------------------------------

@pytest.mark.skipif(not IS_ROOT, reason="per-run user ids need root")
def test_a_daemon_does_not_outlive_its_check(tmp_path):
    code = """
    import os, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(300)
        os._exit(0)
    print(os.getuid())
    """
    result = child(code, tmp_path)
    assert result.status == "ok", result.stderr
    uid = int(result.stdout.split()[0])
    time.sleep(0.5)
    assert not [p for p in _uids_alive(uid) if _uid_of(p) == uid]


def _uid_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@pytest.mark.slow
@needs_view
def test_sigterm_and_sigkill_of_the_grader_leave_no_student_process(tmp_path):
    hang = tmp_path / "sub" / "exp_3_3_style_transfer"
    shutil.copytree(REFERENCE_DIR / "exp_3_3_style_transfer", hang, ignore=shutil.ignore_patterns("__pycache__"))
    with open(hang / "layers_1.py", "a") as f:
        f.write("\nimport os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\nwhile True:\n    time.sleep(1)\n")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = subprocess.Popen([sys.executable, "-m", "grader", "--submission", str(tmp_path / "sub"),
                                 "--experiments", "exp_3_3_style_transfer", "--visible-only"],
                                cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not _uids_alive(sandbox.UID_BASE) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _uids_alive(sandbox.UID_BASE), "the student's process never started"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        if sig == signal.SIGTERM:
            assert proc.returncode == 128 + signal.SIGTERM
            assert "stopped by SIGTERM" in err and "Traceback" not in err
        deadline = time.monotonic() + 10
        while _uids_alive(sandbox.UID_BASE) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _uids_alive(sandbox.UID_BASE), f"student processes outlived the grader ({sig.name})"


# ----- out-growing the limits -------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not HAS_CGROUP, reason="needs root and a cgroup with the memory controller")
def test_memory_limit_holds_for_the_whole_process_tree(tmp_path):
    code = """
    import os, time
    kids = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            block = bytearray(1400 * 2**20)
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(5)
            os._exit(0)
        kids.append(pid)
    print([os.waitpid(k, 0)[1] for k in kids])
    """
    result = child(code, tmp_path, memory_bytes=2 * 2**30)
    statuses = json.loads(result.stdout) if result.stdout.strip() else None
    # The three children (4.2 GiB together) cannot all live under 2 GiB: the kernel kills.
    assert result.status == "memory-limit" or (statuses and any(os.WIFSIGNALED(s) for s in statuses)), \
        (result.status, result.stdout)


@pytest.mark.skipif(not IS_ROOT, reason="the work folder's tmpfs needs root")
def test_disk_is_capped_for_the_whole_work_folder(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    with sandbox.capped_folder(work, 64 * 2**20) as note:
        assert note == ""
        code = """
        import os
        written = 0
        try:
            for i in range(100):
                with open(f"part{i}.bin", "wb") as f:
                    f.write(b"x" * (8 * 2**20))
                written += 8
        except OSError as exc:
            print(written, exc.errno)
        else:
            print(written, 0)
        """
        result = child(code, work)
        written, errno_ = (int(v) for v in result.stdout.split())
        assert written <= 64 and errno_ == 28, result.stdout   # ENOSPC at the cap, not at 800 MiB
    assert not any(work.iterdir())


@pytest.mark.slow
@pytest.mark.skipif(not IS_ROOT, reason="per-run user ids need root")
def test_a_fork_bomb_does_not_starve_a_neighbour(tmp_path):
    bomb_dir, calm_dir = tmp_path / "bomb", tmp_path / "calm"
    bomb_dir.mkdir()
    calm_dir.mkdir()
    bomb = """
    import os
    while True:
        try:
            os.fork()
        except OSError:
            pass
    """
    results = {}
    thread = threading.Thread(target=lambda: results.update(bomb=child(bomb, bomb_dir, wall_seconds=8.0)))
    thread.start()
    time.sleep(2.0)
    calm = """
    import threading
    threads = [threading.Thread(target=sum, args=(range(1000),)) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("threads ok")
    """
    results["calm"] = child(calm, calm_dir)
    thread.join()
    assert results["calm"].status == "ok" and "threads ok" in results["calm"].stdout, results["calm"]
    assert results["bomb"].status == "timeout"


# ----- reduced mode -----------------------------------------------------------------------

def _copy_for_other_user() -> Path:
    """The kit's pure-Python sandbox code in a folder every user can read."""
    base = Path(tempfile.mkdtemp(prefix="aics-reduced-"))
    base.chmod(0o755)
    shutil.copytree(REPO_ROOT / "grader", base / "grader", ignore=shutil.ignore_patterns("__pycache__", "reference"))
    (base / "pyproject.toml").write_text("")   # marks the folder as a kit tree for grader.kit.paths
    (base / "data").mkdir()
    for path in [base, *base.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return base


REDUCED = """
import json, os, sys
from pathlib import Path
from grader import sandbox
info = sandbox.protections_available()
work = Path(sys.argv[1])
secret = sys.argv[2]
code = "import json, os\\ntry:\\n    print(open(%r).read())\\nexcept OSError as e:\\n    print('refused', type(e).__name__)\\n" % secret
result = sandbox.run_sandboxed(["/usr/bin/python3", "-c", code], workdir=work,
                               limits=sandbox.Limits(wall_seconds=20, cpu_seconds=20, memory_bytes=2**30))
print(json.dumps({"method": info["method"], "isolated": info.get("isolated"), "status": result.status,
                  "out": result.stdout.strip(), "run_method": result.protections.get("method"),
                  "unprotected": info.get("unprotected")}))
"""


@pytest.mark.skipif(not IS_ROOT or not shutil.which("su") or not os.path.exists("/usr/bin/python3"),
                    reason="needs root (to become another user), su and /usr/bin/python3")
def test_reduced_mode_is_isolated_by_a_user_namespace_or_says_what_is_unprotected():
    base = _copy_for_other_user()
    try:
        work = base / "work"
        work.mkdir()
        secret = base / "secret.txt"
        secret.write_text("the reference answer")
        secret.chmod(0o644)
        os.chown(work, 65534, 65534)
        script = base / "reduced.py"
        script.write_text(REDUCED)
        script.chmod(0o644)
        proc = subprocess.run(["su", "-s", "/bin/sh", "nobody", "-c",
                               f"cd {base} && PYTHONPATH={base} /usr/bin/python3 {script} {work} {secret}"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
        if seen["method"] == "userns":
            assert seen["isolated"] is True and seen["run_method"] == "userns"
            assert seen["status"] == "ok" and seen["out"].startswith("refused"), seen
        else:
            assert seen["isolated"] is False and seen["unprotected"], seen
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(not IS_ROOT or not shutil.which("su"), reason="needs root (to become another user) and su")
def test_without_isolation_the_grader_refuses_unless_allowed(tmp_path, monkeypatch):
    env = dict(os.environ, AICS_SANDBOX_METHOD="none")
    proc = subprocess.run([sys.executable, "-m", "grader", "--submission", str(REPO_ROOT / "stu_upload"),
                           "--experiments", "exp_3_1_vgg", "--visible-only"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "refusing to run untrusted code without isolation" in proc.stderr, proc.stderr
    assert "--allow-unisolated" in proc.stderr
