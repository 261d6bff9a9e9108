"""Single source: skeletons are generated from the reference and must not drift."""
from __future__ import annotations

import pytest

from grader.authoring.markers import MarkerError, leaked_lines, strip_solutions
from grader.kit.paths import REPO_ROOT
from grader.authoring.release import expected_skeletons


def test_committed_skeletons_match_release():
    drift = []
    for rel, text in expected_skeletons().items():
        path = REPO_ROOT / rel
        if not path.exists():
            drift.append(f"{rel} is missing")
        elif path.read_text(encoding="utf-8") != text:
            drift.append(f"{rel} differs")
    assert not drift, ("skeletons drifted from grader/reference; run `python -m grader release`:\n"
                       + "\n".join(drift))


def test_no_solution_line_in_skeletons():
    from grader.kit.paths import REFERENCE_DIR
    for ref in REFERENCE_DIR.glob("exp_*/*.py"):
        text = ref.read_text(encoding="utf-8")
        skeleton = strip_solutions(text, ref.name)
        # Lines that also appear outside solution blocks (e.g. `return self.output`) are given code.
        leaked = leaked_lines(text, skeleton, ref.name)
        assert not leaked, f"{ref}: solution lines leaked: {leaked}"
        assert "### BEGIN" not in skeleton and "### END" not in skeleton


SAMPLE = '''class A:
    def f(self, x):
        # TODO: compute y
        ### BEGIN SOLUTION
        ### HINT y = ______
        y = x * 2
        ### END SOLUTION
        return y
### BEGIN REFERENCE ONLY
SECRET = 1
### END REFERENCE ONLY
'''


def test_strip_solutions_replaces_block_with_hint_and_raise():
    out = strip_solutions(SAMPLE, "exp/a.py")
    assert "y = x * 2" not in out and "SECRET" not in out
    assert "        # TODO: compute y\n        # y = ______\n" in out
    assert 'raise NotImplementedError("TODO in exp/a.py: complete A.f")' in out
    assert out.rstrip().endswith("return y")


@pytest.mark.parametrize("bad", [
    "### BEGIN SOLUTION\nx = 1\n",                                   # never closed
    "x = 1\n### END SOLUTION\n",                                     # end without begin
    "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n",    # nested
    "### BEGIN SOLUTION\nx = 1\n### END REFERENCE ONLY\n",           # mismatched
])
def test_malformed_markers_are_errors_with_line_numbers(bad):
    with pytest.raises(MarkerError, match=r"exp/b.py:\d+"):
        strip_solutions(bad, "exp/b.py")


def test_skeleton_module_raises_not_implemented(tmp_path):
    out = strip_solutions(SAMPLE, "exp/a.py")
    ns: dict = {}
    exec(compile(out, "a.py", "exec"), ns)
    with pytest.raises(NotImplementedError, match="A.f"):
        ns["A"]().f(1)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["experiment folder", "kit root"])
@pytest.mark.parametrize("exp, script, result", [
    ("exp_3_1_vgg", "vgg_cpu.py", "Classification result: id = "),
    ("exp_3_2_dlp", "vgg19_demo.py", "accuracy1: "),
])
def test_completed_skeleton_runs_as_a_script(tmp_path, exp, script, result, where):
    """`python vgg_cpu.py` / `python vgg19_demo.py` after `source env.sh`, on the kit's weights and cat.

    The completed copy is the reference's (the skeleton's `__main__` is the reference's, as the
    drift test above asserts), placed like a student's `stu_upload/<exp>/`.
    """
    import shlex
    import subprocess

    from tests.gradeutil import reference_copy
    folder = reference_copy(tmp_path / "stu_upload" / exp, exp)
    cwd = folder if where == "experiment folder" else REPO_ROOT
    command = (f"source {shlex.quote(str(REPO_ROOT / 'env.sh'))} >/dev/null && cd {shlex.quote(str(cwd))} && "
               f"python {shlex.quote(str(folder / script))}")
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert result in proc.stdout and "weights:" in proc.stdout, proc.stdout[-2000:]
