"""The sandbox that runs student code: limits, clean environment, isolation.

Every test starts real child processes. Limits are short so the file runs in well under a
minute; the isolation tests need root (as in CI) and say so when skipped.
"""
from __future__ import annotations

import json
import os
import resource
import stat
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from grader import sandbox
from grader.sandbox import Limits, protections_available, run_sandboxed

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="privilege drop and path hiding need the grader to run as root")
HAS_NAMESPACE = IS_ROOT and protections_available().get("method") == "namespace"
needs_namespace = pytest.mark.skipif(not HAS_NAMESPACE, reason="needs root and mount/pid namespaces")


def py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def quick(**overrides) -> Limits:
    values = dict(wall_seconds=20.0, cpu_seconds=20.0, memory_bytes=2 * 2**30)
    values.update(overrides)
    return Limits(**values)


# A grandchild that proves it is alive by rewriting a file ten times a second.
HEARTBEAT = ("import time, pathlib\np = pathlib.Path('beat')\n"
             "while True:\n    p.write_text(repr(time.time())); time.sleep(0.1)\n")


def assert_heartbeat_stopped(workdir: Path) -> None:
    beat = workdir / "beat"
    assert beat.exists(), "the grandchild never started"
    first = beat.read_text()
    time.sleep(0.6)
    assert beat.read_text() == first, "the grandchild is still running after the call returned"


def test_normal_child_writes_into_workdir(tmp_path):
    result = run_sandboxed(py("""
        import os, pathlib
        pathlib.Path('result.txt').write_text('done')
        print('cwd', os.getcwd())
    """), workdir=tmp_path, limits=quick())
    assert result.status == "ok", result
    assert result.returncode == 0 and result.signal_name is None
    assert (tmp_path / "result.txt").read_text() == "done"
    assert f"cwd {tmp_path.resolve()}" in result.stdout
    assert not result.truncated
    assert result.message == "exited normally (code 0)"


def test_environment_is_rebuilt_from_scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("AICS_TEST_SECRET_TOKEN", "hunter2")
    result = run_sandboxed(py("""
        import json, os, sys
        json.dump({"env": dict(os.environ), "stdin": sys.stdin.read()}, sys.stdout)
    """), workdir=tmp_path, limits=quick(), env={"PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "2"})
    assert result.status == "ok", result
    seen = json.loads(result.stdout)
    env = seen["env"]
    assert "AICS_TEST_SECRET_TOKEN" not in env
    assert "hunter2" not in result.stdout
    assert seen["stdin"] == ""
    assert env["HOME"] == str(tmp_path.resolve())
    assert env["TMPDIR"].startswith(str(tmp_path.resolve()))
    assert env["NUMBA_CACHE_DIR"].startswith(str(tmp_path.resolve()))
    assert env["PYTHONPATH"] == str(tmp_path)
    assert env["OMP_NUM_THREADS"] == "2" and env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["LC_ALL"] == "C.UTF-8" and env["PYTHONHASHSEED"] == "0" and env["MPLBACKEND"] == "Agg"
    allowed = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED",
               "MPLBACKEND", "NUMBA_CACHE_DIR", "PYTHONPATH", *sandbox.THREAD_VARS}
    # The interpreter itself may add LC_CTYPE when coercing the locale; nothing else is allowed.
    assert set(env) - allowed <= {"LC_CTYPE"}


def test_infinite_loop_hits_wall_clock_limit(tmp_path):
    result = run_sandboxed(py("import time\nwhile True: time.sleep(0.01)"), workdir=tmp_path,
                           limits=quick(wall_seconds=3))
    assert result.status == "timeout", result
    assert 3.0 <= result.seconds < 6.0
    assert result.message == "timed out after 3.0 s (wall-clock limit)"


def test_cpu_burner_hits_cpu_limit(tmp_path):
    result = run_sandboxed(py("while True: pass"), workdir=tmp_path, limits=quick(cpu_seconds=1))
    assert result.status == "cpu-limit", result
    assert result.seconds < 10
    assert "CPU-time limit 1.0 s" in result.message


def test_huge_allocation_hits_memory_limit(tmp_path):
    result = run_sandboxed(py("""
        import numpy as np
        a = np.ones(50 * 2**30 // 8)
        print('allocated', a.nbytes)
    """), workdir=tmp_path, limits=quick(memory_bytes=2 * 2**30))
    assert result.status == "memory-limit", result
    assert "allocated" not in result.stdout
    assert "MemoryError" in result.stderr
    assert "2.0 GiB" in result.message
    # The parent is still here and can run the next child.
    assert run_sandboxed(py("pass"), workdir=tmp_path, limits=quick()).status == "ok"


def _peak_rss_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_flood_of_output_is_bounded(tmp_path):
    limit = 64 * 1024
    reset = _peak_rss_reset()
    before = _peak_rss_bytes()
    result = run_sandboxed(py("""
        import sys
        line = b'x' * 1023 + b'\\n'
        block = line * 1024
        sys.stdout.buffer.write(b'FIRST LINE\\n')
        for _ in range(100):
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.write(b'LAST LINE\\n')
        sys.stderr.write('err\\n')
    """), workdir=tmp_path, limits=quick(output_bytes=limit))
    grown = _peak_rss_bytes() - before
    assert result.status == "ok", result.message
    assert result.truncated
    assert result.stdout.startswith("FIRST LINE")
    assert result.stdout.rstrip().endswith("LAST LINE")
    assert "bytes of output omitted" in result.stdout
    assert len(result.stdout) < limit + 200
    assert result.stderr == "err\n"
    if reset:
        assert grown < 50 * 2**20, f"parent peak RSS grew by {grown / 2**20:.0f} MiB"


@pytest.mark.parametrize("code", ["import sys; sys.exit(0)", "import os; os._exit(0)"])
def test_early_clean_exit_is_ok(tmp_path, code):
    result = run_sandboxed(py(code), workdir=tmp_path, limits=quick())
    assert result.status == "ok" and result.returncode == 0, result


def test_nonzero_exit_and_crash_are_reported(tmp_path):
    result = run_sandboxed(py("raise SystemExit(3)"), workdir=tmp_path, limits=quick())
    assert (result.status, result.returncode, result.message) == ("exit", 3, "exited with code 3")
    result = run_sandboxed(py("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"), workdir=tmp_path,
                           limits=quick())
    assert (result.status, result.signal_name) == ("signal", "SIGSEGV"), result
    assert result.returncode == -11
    assert not list(tmp_path.glob("core*")), "core dumps must be off"


def test_file_size_limit_caps_what_the_child_writes(tmp_path):
    result = run_sandboxed(py("""
        with open('big.bin', 'wb') as f:
            for _ in range(4):
                f.write(b'x' * 2**20)
    """), workdir=tmp_path, limits=quick(file_bytes=2**20))
    assert result.status in ("exit", "signal"), result
    assert (tmp_path / "big.bin").stat().st_size <= 2**20


def test_grandchild_sleeping_forever_is_killed_at_wall_limit(tmp_path):
    result = run_sandboxed(py(f"""
        import subprocess, sys
        subprocess.run([sys.executable, '-c', {HEARTBEAT!r}])
    """), workdir=tmp_path, limits=quick(wall_seconds=3))
    assert result.status == "timeout", result
    assert result.seconds < 6.0
    assert_heartbeat_stopped(tmp_path)


def test_orphaned_grandchild_does_not_hold_the_call(tmp_path):
    # The child leaves at once; its grandchild keeps stdout open and would run forever.
    result = run_sandboxed(py(f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, '-c', {HEARTBEAT!r}])
        time.sleep(0.5)
    """), workdir=tmp_path, limits=quick(wall_seconds=30))
    assert result.status == "ok", result
    assert result.seconds < 5.0
    assert_heartbeat_stopped(tmp_path)


@needs_namespace
def test_grandchild_leaving_the_process_group_is_still_killed(tmp_path):
    result = run_sandboxed(py(f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, '-c', {HEARTBEAT!r}], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    """), workdir=tmp_path, limits=quick())
    assert result.status == "ok", result
    assert_heartbeat_stopped(tmp_path)


def test_missing_command_and_missing_workdir(tmp_path):
    result = run_sandboxed(["no-such-command-aics"], workdir=tmp_path, limits=quick())
    assert result.status == "start-failed"
    assert "no-such-command-aics" in result.message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_sandboxed(py("pass"), workdir=tmp_path / "absent", limits=quick())


def test_memory_default_follows_environment(monkeypatch):
    monkeypatch.setenv("AICS_GRADER_MEMORY_GB", "1.5")
    assert Limits().memory_bytes == int(1.5 * 2**30)
    monkeypatch.setenv("AICS_GRADER_MEMORY_GB", "lots")
    with pytest.raises(ValueError, match="AICS_GRADER_MEMORY_GB"):
        Limits()
    monkeypatch.delenv("AICS_GRADER_MEMORY_GB")
    assert Limits().memory_bytes == 6 * 2**30


def test_protections_are_reported(tmp_path):
    info = protections_available()
    assert info["root"] == IS_ROOT
    assert info["method"] in sandbox.METHODS
    result = run_sandboxed(py("pass"), workdir=tmp_path, limits=quick())
    assert result.protections["privilege_drop"] == IS_ROOT
    if not IS_ROOT:
        assert "not running as root" in result.protections["reason_off"]


def _make_guarded_tree(base: Path) -> tuple[Path, Path, Path]:
    """A work folder, a hidden folder with a world-readable secret, and a world-writable read-only folder."""
    work, hidden, ro = base / "work", base / "hidden", base / "goldens"
    for folder in (work, hidden, ro):
        folder.mkdir()
    (hidden / "secret.txt").write_text("reference answer")
    (hidden / "secret.txt").chmod(0o644)
    hidden.chmod(0o755)
    (ro / "golden.txt").write_text("golden")
    (ro / "golden.txt").chmod(0o666)
    ro.chmod(0o777)  # so only the sandbox, not the file modes, can keep the child out
    # A hidden folder inside a folder the child may read, like grader/reference in the kit.
    (ro / "private").mkdir(mode=0o755)
    (ro / "private" / "secret.txt").write_text("hidden golden")
    (ro / "private" / "secret.txt").chmod(0o644)
    return work, hidden, ro


PROBE_GUARDS = """
import json, os, sys
hidden, ro = sys.argv[1], sys.argv[2]
out = {"uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups()}
def attempt(name, fn):
    try:
        fn()
        out[name] = "allowed"
    except OSError as exc:
        out[name] = type(exc).__name__
attempt("read_hidden", lambda: open(os.path.join(hidden, "secret.txt")).read())
attempt("read_nested_hidden", lambda: open(os.path.join(ro, "private", "secret.txt")).read())
try:
    out["list_nested_hidden"] = os.listdir(os.path.join(ro, "private"))
except OSError as exc:
    out["list_nested_hidden"] = type(exc).__name__
attempt("write_ro_new", lambda: open(os.path.join(ro, "new.txt"), "w").write("x"))
attempt("write_ro_golden", lambda: open(os.path.join(ro, "golden.txt"), "w").write("x"))
attempt("write_work", lambda: open("mine.txt", "w").write("x"))
print(json.dumps(out))
"""


@needs_root
def test_child_is_unprivileged_and_cannot_see_hidden_or_write_readonly(tmp_path):
    work, hidden, ro = _make_guarded_tree(tmp_path)
    result = run_sandboxed([sys.executable, "-c", PROBE_GUARDS, str(hidden), str(ro)], workdir=work,
                           limits=quick(), hide_paths=[hidden, ro / "private"], readonly_paths=[ro])
    assert result.status == "ok", (result.message, result.stderr)
    seen = json.loads(result.stdout)
    assert seen["uid"] != 0 and seen["euid"] != 0
    assert 0 not in seen["groups"]
    assert seen["read_hidden"] != "allowed"
    assert seen["read_nested_hidden"] != "allowed"
    assert seen["list_nested_hidden"] in ([], "PermissionError")
    assert seen["write_ro_new"] != "allowed"
    assert seen["write_ro_golden"] != "allowed"
    assert seen["write_work"] == "allowed"
    assert result.protections["privilege_drop"] is True
    assert str(hidden) in result.protections["hidden_paths"]
    # The grader still sees everything intact.
    assert (hidden / "secret.txt").read_text() == "reference answer"
    assert (ro / "golden.txt").read_text() == "golden"
    assert (ro / "private" / "secret.txt").read_text() == "hidden golden"
    assert not (ro / "new.txt").exists()
    if result.protections["method"] == "namespace":
        assert seen["list_nested_hidden"] == "PermissionError"  # a mode-0 empty tmpfs covers it
        assert stat.S_IMODE((hidden / "secret.txt").stat().st_mode) == 0o644, "namespace mode changed permissions"


@needs_root
def test_permissions_fallback_when_namespaces_are_not_used(monkeypatch):
    monkeypatch.setenv("AICS_SANDBOX_METHOD", "permissions")
    base = Path(tempfile.mkdtemp(prefix="aics-sandbox-test-"))
    try:
        base.chmod(0o755)  # mkdtemp's 0700 would block the unprivileged child
        work, hidden, ro = _make_guarded_tree(base)
        script = "; ".join([
            "id -u", f"cat {hidden}/secret.txt && echo READ", f"cat {ro}/private/secret.txt && echo READ",
            f"echo x > {ro}/new.txt && echo WROTE", f"echo x > {ro}/golden.txt && echo WROTE", "true"])
        result = run_sandboxed(["/bin/sh", "-c", script], workdir=work, limits=quick(),
                               hide_paths=[hidden, ro / "private"], readonly_paths=[ro])
        assert result.status == "ok", (result.message, result.stderr)
        assert result.protections["method"] == "permissions"
        assert result.protections["changed_permissions"]
        uid = int(result.stdout.split()[0])
        assert uid != 0
        assert "READ" not in result.stdout and "WROTE" not in result.stdout
        assert stat.S_IMODE(hidden.stat().st_mode) == 0o700
        # A Python child needs the interpreter; under a root-only folder it cannot start, and says why.
        blocked = sandbox._blocking_parent(Path(sys.base_prefix).resolve())
        result = run_sandboxed(py("print('hi')"), workdir=work, limits=quick())
        if blocked is None:
            assert result.status == "ok", result
        else:
            assert result.status == "start-failed", result
            assert "cannot read" in result.message and str(blocked) in result.message
    finally:
        import shutil
        shutil.rmtree(base)
