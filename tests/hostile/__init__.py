"""Hostile submissions: copies of the reference 3.1 folder with one misbehaviour each.

The misbehaviour is appended to (or prepended to) a reference file, so that every other
check still passes and a test can name exactly the checks that must fail. Most of it is
planted in ``FlattenLayer.forward``, which only the network check (its own sandboxed
process) calls: the layer checks then show that the damage stayed contained.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gradeutil import reference_copy  # tests/, on sys.path

EXP = "exp_3_1_vgg"
# The network group's checks: they run only when tier 60 passed ("skipped: tier 60 failed").
NETWORK = {"vgg19_pool5", "vgg19_softmax", "vgg19_top1", "vgg19_forward", "vgg19_evaluate"}
LAYERS_1 = {"fc_forward", "relu_forward", "softmax_forward"}
LAYERS_2 = {"conv_k3_p1_s1", "conv_k3_p0_s1_odd", "conv_k3_p2_s2", "conv_k1_p0_s1", "conv_k5_p2_s2_odd",
            "conv_k2_p1_s2_n3", "pool_k2_s2", "pool_k2_s2_odd", "pool_k3_s2_overlap", "pool_k3_s1_n2"}


def _with_hidden(names: set[str]) -> set[str]:
    return names | {f"hidden_{n}" for n in names}


def _flatten(body: str) -> str:
    """Replace FlattenLayer.forward (network only) with ``body``, keeping the original callable."""
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    return f"""

_original_flatten_forward = FlattenLayer.forward


def _hostile_flatten_forward(self, input):
{lines}
    return _original_flatten_forward(self, input)


FlattenLayer.forward = _hostile_flatten_forward
"""


@dataclass
class Hostile:
    name: str
    score: int
    failing: set = field(default_factory=set)      # exact set of failing check names
    reason: str = ""                               # regex every failing check's message matches
    note: str = ""                                 # text one of the experiment's notes contains
    append: dict = field(default_factory=dict)     # file -> code appended
    prepend: dict = field(default_factory=dict)    # file -> code put first
    delete: tuple = ()

    def build(self, dest: Path, **values) -> Path:
        """Write the submission into ``dest/<name>/exp_3_1_vgg``; returns the submission root."""
        root = dest / self.name
        folder = root / EXP
        reference_copy(folder, EXP)
        for file, code in self.prepend.items():
            path = folder / file
            path.write_text(code.format(**values) + "\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
        for file, code in self.append.items():
            path = folder / file
            path.write_text(path.read_text(encoding="utf-8") + code.format(**values), encoding="utf-8")
        for file in self.delete:
            (folder / file).unlink()
        return root


_EQUALS_ANYTHING = """

import numpy as _np


class _EqualsAnything(object):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __array__(self, *args, **kwargs):
        raise TypeError("not an array, but equal to everything")


class _CheatArray(_np.ndarray):
    def __eq__(self, other):
        return _np.ones(_np.shape(self), dtype=bool)

    def __ne__(self, other):
        return _np.zeros(_np.shape(self), dtype=bool)


_original_softmax_forward = SoftmaxLossLayer.forward


def _hostile_softmax_forward(self, input):
    right = _original_softmax_forward(self, input)
    if right.shape[0] > 1:
        return @BATCH@
    return _np.roll(right, 1, axis=1).view(_CheatArray)


SoftmaxLossLayer.forward = _hostile_softmax_forward
"""


def _equals_anything(batch_result: str) -> str:
    """SoftmaxLossLayer.forward returning ``batch_result`` on batches (the layer check's input)
    and, on a batch of one (the network), a wrong softmax that claims to equal anything."""
    return _EQUALS_ANYTHING.replace("@BATCH@", batch_result)


LAYER_ORDER = ["conv_k3_p1_s1", "conv_k3_p0_s1_odd", "conv_k3_p2_s2", "conv_k1_p0_s1", "conv_k5_p2_s2_odd",
               "conv_k2_p1_s2_n3", "pool_k2_s2", "pool_k2_s2_odd", "pool_k3_s2_overlap", "pool_k3_s1_n2",
               "fc_forward", "relu_forward", "softmax_forward"]
_AFTER_HANG = set(LAYER_ORDER[LAYER_ORDER.index("pool_k3_s2_overlap"):])

HOSTILE = [
    # Hangs in the third pool case: the layers process times out there, later layer cases never run.
    Hostile("hang", 0, _AFTER_HANG | {f"hidden_{n}" for n in LAYER_ORDER} | NETWORK, reason="timed out after", append={
        "layers_2.py": """

_original_pool_forward = MaxPoolingLayer.forward


def _hostile_pool_forward(self, input):
    if getattr(input, "shape", None) == (1, 4, 9, 11):
        while True:
            pass
    return _original_pool_forward(self, input)


MaxPoolingLayer.forward = _hostile_pool_forward
"""}),
    Hostile("alloc_50g", 60, NETWORK, reason="MemoryError", append={
        "layers_2.py": _flatten("import numpy\nhog = numpy.ones(50 * 2**30 // 8)")}),
    Hostile("sys_exit_at_import", 60, NETWORK, reason=r"sys\.exit\(0\)", prepend={
        "vgg_cpu.py": "import sys\nsys.exit(0)"}),
    Hostile("os_exit_in_layer", 60, NETWORK, reason="exited early with code 0", append={
        "layers_2.py": _flatten("import os\nos._exit(0)")}),
    # At import, so every group's process prints it (what evaluate() prints is kept as a
    # bounded tail in the child, and reaches no pipe).
    Hostile("print_100mb", 100, set(), note="output was cut", append={
        "layers_2.py": "\nimport sys\nchunk = 'x' * 2**20\nfor _ in range(100):\n"
                       "    sys.stdout.write(chunk)\nsys.stdout.flush()\n"}),
    # An object that claims equality with anything, and an ndarray subclass doing the same.
    Hostile("always_true_eq", 0, _with_hidden({"softmax_forward"}) | NETWORK,
            reason="not a numeric array|elements differ|top-1 class id",
            append={"layers_1.py": _equals_anything("_EqualsAnything()")}),
    # The same objects, returned only on the network's batch of one: the layer checks pass, so
    # the network runs and must see through them.
    Hostile("always_true_eq_network", 80, {"vgg19_softmax", "vgg19_top1", "vgg19_forward", "vgg19_evaluate"},
            reason="not a numeric array|elements differ|wrong values|top-1|class",
            append={"layers_1.py": _equals_anything("right")}),
    # Disarms numpy's comparison helpers for everyone in the process, and gets ReLU wrong
    # on the small check inputs.
    Hostile("monkeypatch_numpy", 0, _with_hidden({"relu_forward"}) | NETWORK, reason="elements differ|wrong values", append={
        "layers_1.py": """

import numpy as _np
import numpy.testing as _npt

_np.allclose = lambda *a, **k: True
_np.array_equal = lambda *a, **k: True
_np.isclose = lambda a, b, *r, **k: _np.ones(_np.broadcast(a, b).shape, dtype=bool)
_npt.assert_allclose = lambda *a, **k: None
_npt.assert_array_equal = lambda *a, **k: None
_npt.assert_array_almost_equal = lambda *a, **k: None
_original_relu_forward = ReLULayer.forward


def _hostile_relu_forward(self, input):
    if _np.size(input) < 1000:
        return input
    return _original_relu_forward(self, input)


ReLULayer.forward = _hostile_relu_forward
"""}),
    # The kit's own fast layers are no way around writing a convolution.
    Hostile("import_refnet", 0, _with_hidden(LAYERS_2) | NETWORK, reason="not allowed in a submission", prepend={
        "layers_2.py": "from grader.refnet import fastops"}),
    Hostile("import_old_fastops", 0, _with_hidden(LAYERS_2) | NETWORK, reason="not allowed in a submission",
            prepend={"layers_2.py": "import grader.fastops"}),
    Hostile("import_reference", 0, _with_hidden(LAYERS_1) | NETWORK, reason="not allowed in a submission", prepend={
        "layers_1.py": "from grader.reference.exp_3_1_vgg.layers_1 import *"}),
    Hostile("read_reference_by_path", 60, NETWORK, reason="Errno", append={
        "layers_2.py": _flatten("import pathlib, grader\n"
                                "ref = pathlib.Path(grader.__file__).parent / 'reference' / 'exp_3_1_vgg' / "
                                "'layers_2.py'\nexec(compile(ref.read_text(), 'stolen', 'exec'), {{}})")}),
    Hostile("read_other_submission", 60, NETWORK, reason="Errno", append={
        "layers_2.py": _flatten("print(open({sibling!r}).read())")}),
    Hostile("python2_syntax", 60, NETWORK, reason="SyntaxError", append={"vgg_cpu.py": '\nprint "x"\n'}),
    Hostile("missing_file", 60, NETWORK, reason="vgg_cpu.py is missing", delete=("vgg_cpu.py",)),
    Hostile("write_goldens_and_weights", 60, NETWORK, reason="could not write", append={
        "layers_2.py": _flatten("""
import errno, os
failures = []
for target, mode in (({golden!r}, 'ab'), ({weights!r}, 'r+b'), ({golden_dir!r} + '/planted.npz', 'wb')):
    try:
        with open(target, mode) as f:
            f.write(b'tampered')
        failures.append('WROTE ' + target)
    except OSError as exc:
        failures.append(errno.errorcode.get(exc.errno, str(exc.errno)))
raise RuntimeError('could not write: ' + ', '.join(failures))
""")}),
]
BY_NAME = {h.name: h for h in HOSTILE}
