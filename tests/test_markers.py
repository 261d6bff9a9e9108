"""Solution markers on hand-written sources: skeleton text, regions, leak lines, errors."""
from __future__ import annotations

import pytest

from grader.authoring.markers import (MARKERS, MarkerError, given_lines, leaked_lines, read_lines, regions,
                                      solution_lines, strip_solutions)

SOURCE = '''import numpy as np


class ConvLayer:
    def forward(self, x):
        # TODO: book comment stays
        ### BEGIN SOLUTION
        ### HINT out = ______
        ### HINT
        out = np.dot(x, self.weight)   # the answer
        # a comment inside the solution
        ### END SOLUTION
        return out

    class Inner:
        def backward(self, d):
            ### BEGIN SOLUTION
            return d * 2.0
            ### END SOLUTION


### BEGIN REFERENCE ONLY
FAST_PATH = "kit glue"
### END REFERENCE ONLY


def top_level():
    ### BEGIN SOLUTION
    value = 41 + 1
    ### END SOLUTION
    return value
'''


def skeleton() -> str:
    return strip_solutions(SOURCE, "exp_x/layers.py")


def test_solution_block_becomes_hints_and_a_raise():
    out = skeleton()
    expected = ("        # TODO: book comment stays\n"
                "        # out = ______\n"
                "        #\n"
                '        raise NotImplementedError("TODO in exp_x/layers.py: complete ConvLayer.forward")\n'
                "        return out\n")
    assert expected in out


def test_raise_names_the_nested_and_the_top_level_function():
    out = skeleton()
    assert '            raise NotImplementedError("TODO in exp_x/layers.py: complete ConvLayer.Inner.backward")' in out
    assert '    raise NotImplementedError("TODO in exp_x/layers.py: complete top_level")\n    return value' in out


def test_solution_code_and_reference_only_blocks_are_gone():
    out = skeleton()
    for secret in ("np.dot(x, self.weight)", "a comment inside the solution", "return d * 2.0", "41 + 1",
                   "FAST_PATH", "kit glue", "###"):
        assert secret not in out, secret


def test_removed_block_leaves_at_most_two_blank_lines_and_the_final_newline():
    out = skeleton()
    assert "\n\n\n\n" not in out
    assert "ConvLayer.Inner.backward\")\n\n\ndef top_level():" in out
    assert out.endswith("return value\n")
    assert not strip_solutions("x = 1", "a.py").endswith("\n")


def test_given_code_is_kept_verbatim():
    out = skeleton()
    assert out.startswith("import numpy as np\n\n\nclass ConvLayer:\n    def forward(self, x):\n")


def test_skeleton_compiles_and_raises_not_implemented():
    ns: dict = {"__name__": "skeleton_under_test"}
    exec(compile(skeleton(), "layers.py", "exec"), ns)
    with pytest.raises(NotImplementedError, match=r"exp_x/layers\.py: complete ConvLayer\.forward"):
        ns["ConvLayer"]().forward(1)
    with pytest.raises(NotImplementedError, match="complete top_level"):
        ns["top_level"]()


def test_indented_markers_count_but_markers_sharing_a_line_do_not():
    text = "def f():\n    x = 1  ### BEGIN SOLUTION\n    return x\n"
    assert strip_solutions(text, "a.py") == text
    assert regions(text) == [("given", "def f():"), ("given", "x = 1  ### BEGIN SOLUTION"), ("given", "return x")]


@pytest.mark.parametrize("text, line, words", [
    ("a = 1\n### BEGIN SOLUTION\nx = 1\n", 2, "never closed"),
    ("a = 1\nb = 2\n### END SOLUTION\n", 3, "without a matching begin"),
    ("### BEGIN SOLUTION\n### BEGIN REFERENCE ONLY\n### END REFERENCE ONLY\n### END SOLUTION\n", 2,
     "inside an open block started at line 1"),
    ("### BEGIN REFERENCE ONLY\n### BEGIN SOLUTION\n", 2, "inside an open block"),
    ("### BEGIN SOLUTION\nx = 1\n### END REFERENCE ONLY\n", 3, "without a matching begin"),
    ("### BEGIN REFERENCE ONLY\nx = 1\n### END SOLUTION\n", 3, "without a matching begin"),
])
def test_malformed_markers_name_file_and_line(text, line, words):
    with pytest.raises(MarkerError, match=rf"^exp_x/bad\.py:{line}: .*{words}"):
        strip_solutions(text, "exp_x/bad.py")
    # The leak scans read markers the same way, so they refuse the same files.
    with pytest.raises(MarkerError, match=rf"^exp_x/bad\.py:{line}:"):
        regions(text, "exp_x/bad.py")


def test_marker_error_is_a_value_error():
    assert issubclass(MarkerError, ValueError)


def test_read_lines_gives_region_and_role_of_every_line():
    text = "a\n  ### BEGIN SOLUTION\n  b\n  ### END SOLUTION\n### BEGIN REFERENCE ONLY\nc\n### END REFERENCE ONLY\nd\n"
    assert read_lines(text) == [
        ("given", None, "a"),
        ("solution", "begin", "  ### BEGIN SOLUTION"),
        ("solution", None, "  b"),
        ("solution", "end", "  ### END SOLUTION"),
        ("refonly", "begin", "### BEGIN REFERENCE ONLY"),
        ("refonly", None, "c"),
        ("refonly", "end", "### END REFERENCE ONLY"),
        ("given", None, "d"),
    ]


def test_regions_strip_lines_and_drop_markers():
    got = regions(SOURCE)
    assert ("solution", "### HINT out = ______") in got
    assert ("solution", "out = np.dot(x, self.weight)   # the answer") in got
    assert ("refonly", 'FAST_PATH = "kit glue"') in got
    assert ("given", "return out") in got
    assert ("given", "") in got
    assert not any(line in MARKERS for _, line in got)
    # One entry per non-marker line, in file order.
    assert len(got) == len(SOURCE.splitlines()) - 8
    assert got[0] == ("given", "import numpy as np")


def test_solution_lines_skip_blanks_comments_hints_and_reference_only_code():
    assert solution_lines(SOURCE) == ["out = np.dot(x, self.weight)   # the answer", "return d * 2.0",
                                      "value = 41 + 1"]


def test_given_lines_are_the_lines_outside_every_block():
    given = given_lines(SOURCE)
    assert {"import numpy as np", "return out", "return value", "def top_level():"} <= given
    assert "return d * 2.0" not in given and 'FAST_PATH = "kit glue"' not in given
    assert not given & MARKERS


def test_leaked_lines_finds_solution_lines_but_not_given_code():
    reference = "def f(x):\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n\n" \
                "def g(y):\n    return y\n"
    assert leaked_lines(reference, strip_solutions(reference, "a.py")) == []
    # `return y` is also given code (in g), so only the real answer counts as a leak.
    assert leaked_lines(reference, "z = 0\n        y = x + 1\nreturn y\n") == ["y = x + 1"]


def test_markers_constant_holds_the_four_markers():
    assert MARKERS == {"### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN REFERENCE ONLY",
                       "### END REFERENCE ONLY"}
