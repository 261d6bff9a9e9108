"""Attacks beyond issue 9's list, tried as a determined student against a root grader.

An open hole would be an ``xfail(strict=True)`` test; attacks that are contained are plain
tests, so that they stay contained.

Each hole found so far is closed; its test stays to keep it closed.
"""
from __future__ import annotations

import os
import sys
import textwrap
import time

import pytest

from grader import sandbox
from grader.experiments import Case, GroupSpec
from grader.groups import SubmissionRefused, copy_experiment, readonly_paths, run_group
from grader.kit.paths import REFERENCE_DIR, REPO_ROOT, is_student_handout
from grader.results import clean_record
from grader.sandbox import Limits, run_sandboxed
from gradeutil import checks, failures, grade, reference_copy
from hostile import EXP

IS_ROOT = os.geteuid() == 0
HAS_VIEW = IS_ROOT and sandbox.protections_available().get("method") == "namespace"
needs_view = pytest.mark.skipif(not HAS_VIEW, reason="needs root and mount/pid namespaces (as in CI)")


# --------------------------------------------------------------------------- open holes

@needs_view
@pytest.mark.skipif(is_student_handout(), reason="the handout has no compiled kernels of the kit's")
def test_the_kit_private_compiled_kernels_are_not_in_a_student_work_folder(tmp_path):
    folder = tmp_path / "sub" / EXP
    folder.mkdir(parents=True)
    (folder / "layers_1.py").write_text(textwrap.dedent("""
        import glob, os
        found = sorted(p.split("/")[-2] for p in glob.glob(os.environ["NUMBA_CACHE_DIR"] + "/*/*.nbc"))
        raise RuntimeError("CACHE " + " ".join(sorted(set(found))))
        """))
    case = Case("relu_forward", "relu_forward", "layers", "relu")
    run = run_group(tmp_path / "sub", EXP, GroupSpec("layers", 60, 60), [case], {})
    error = run.outcome(case.name).error
    assert "CACHE" in error, error
    assert "refnet_" not in error and "grader_" not in error, error


@pytest.mark.slow
def test_replaying_the_visible_network_golden_does_not_pass_the_network_tiers(tmp_path):
    submission = tmp_path / "replay"
    reference_copy(submission / EXP, EXP)
    (submission / EXP / "vgg_cpu.py").write_text(textwrap.dedent('''
        import glob, os, sys
        import numpy as np

        def _golden():
            root = os.environ.get("AICS_KIT_ROOT", "")
            path = glob.glob(os.path.join(root, "data", "golden", "exp_3_1_vgg", "weights-*.npz"))[0]
            z = np.load(path)
            return {k[len("vgg_network/out/"):]: z[k] for k in z.files if k.startswith("vgg_network/out/")}

        class VGG19(object):
            def __init__(self, param_path=None):
                self.layers = {}

            def build_model(self):
                gold = _golden()
                drv = sys.modules["grader.drivers.exp_3_1_vgg"]
                drv.layer_names = lambda vgg: []
                drv.fingerprint = lambda out, name, output: (out.update(gold), gold["pool5"])[1]
                def run_layers(vgg, image, on_layer):
                    on_layer(0, "pool5", gold["pool5"], 0.0)
                    return gold["prob"], {}
                drv.run_layers = run_layers
                self.input_image = gold["input"]

            def init_model(self):
                pass

            def load_model(self):
                pass

            def load_image(self, path):
                pass
        '''))
    # The instructor's grade runs the network on a fresh image (hidden checks on).
    doc = grade(submission, tmp_path, EXP)
    passed = {name for name, c in checks(doc).items() if c["passed"]}
    # The replayed cat may share its top-1 class with the fresh image; its values never match.
    assert not {"vgg19_pool5", "vgg19_softmax"} & passed, failures(doc)
    assert doc["experiments"][0]["score"] == 60


def test_control_characters_of_a_record_never_reach_the_report():
    doc = {"status": "error", "seconds": 0.1, "error": "RuntimeError: \x1b[2A\x1b[2K\r    60  PASS  relu\x1b[8m",
           "traceback": "tb\x1b[2J\x07", "extra": {"note": "\x1b]0;title\x07"}}
    record = clean_record(doc)
    text = record["error"] + record["traceback"] + str(record["extra"])
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text, repr(text)


def test_a_submission_of_many_empty_files_is_refused_quickly(tmp_path):
    folder = tmp_path / "sub" / EXP
    reference_copy(folder, EXP)
    for i in range(20):
        junk = folder / "junk" / f"d{i}"
        junk.mkdir(parents=True)
        for j in range(1000):
            (junk / f"f{j}").touch()
    start = time.monotonic()
    with pytest.raises(SubmissionRefused):
        copy_experiment(tmp_path / "sub", EXP, tmp_path / "dest", [])
    assert time.monotonic() - start < 5.0


# --------------------------------------------------------------------------- contained

ESCAPES = """
import ctypes, json, os, signal, socket, subprocess
libc = ctypes.CDLL(None, use_errno=True)
out = {}
def attempt(name, fn):
    try:
        out[name] = repr(fn())[:100]
    except Exception as exc:
        out[name] = "refused: " + type(exc).__name__
def errno_of(ret):
    return "refused: errno" if ret != 0 else "allowed"
attempt("userns", lambda: errno_of(libc.unshare(0x10000000)))          # CLONE_NEWUSER, to escape the chroot
attempt("chroot", lambda: os.chroot("/tmp"))
attempt("mount", lambda: errno_of(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, None)))
attempt("kill_init", lambda: os.kill(1, signal.SIGKILL))
attempt("ptrace_init", lambda: errno_of(libc.ptrace(16, 1, 0, 0)))    # PTRACE_ATTACH
attempt("init_fds", lambda: os.listdir("/proc/1/fd"))
attempt("init_root", lambda: os.listdir("/proc/1/root"))
attempt("init_environ", lambda: open("/proc/1/environ").read())
attempt("write_venv", lambda: open(os.path.join(os.path.dirname(os.path.dirname(os.__file__)), "x"), "w"))
attempt("write_kit", lambda: open("KIT/grader/kit/x", "w"))
attempt("write_view_root", lambda: open("/x", "w"))
attempt("tcp", lambda: socket.create_connection(("127.0.0.1", 22), timeout=1))
attempt("sysctl", lambda: open("/proc/sys/kernel/hostname", "w").write("x"))
attempt("cgroupfs", lambda: os.listdir("/sys/fs/cgroup"))
attempt("extra_fds", lambda: sorted(set(os.listdir("/proc/self/fd")) - {"0", "1", "2", "3"}) or "refused: none")
print(json.dumps(out))
"""


@needs_view
def test_the_child_cannot_escape_its_chroot_signal_or_trace_init_or_write_outside(tmp_path):
    import json
    code = ESCAPES.replace("KIT", str(REPO_ROOT))
    result = run_sandboxed([sys.executable, "-c", textwrap.dedent(code)], workdir=tmp_path,
                           limits=Limits(wall_seconds=30, cpu_seconds=30, memory_bytes=2 * 2**30),
                           env={"PYTHONPATH": str(REPO_ROOT)}, readonly_paths=readonly_paths({}),
                           hide_paths=(REFERENCE_DIR,))
    assert result.status == "ok", (result.message, result.stderr[-2000:])
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    allowed = {name: value for name, value in seen.items() if not value.startswith("'refused") and
               not value.startswith("refused")}
    assert not allowed, allowed
