"""Each experiment's checks, declared once: inputs, the call, the comparison, tier and name.

One module per experiment (``grader/experiments/<experiment>.py``, the trusted parent's
side) declares

* ``GROUPS``: the check groups, each run by one sandboxed process with its limits;
* ``visible_cases()`` / ``hidden_cases(seed)``: :class:`Case` objects, one call into the
  submission each (its inputs, and the driver handler that makes the call);
* ``checks(cases)``: :class:`Check` objects, one row of the report each (name, tier and
  the function that compares the case's outputs with its golden);
* optionally ``extra_resources(session)``: files the child needs beyond weights and image.

The call itself runs in the sandboxed child, in ``grader/drivers/<experiment>.py``: the
one other file a new check may touch. Visible cases use fixed seeds and ship with goldens
in ``data/golden``; hidden cases draw fresh inputs every run and take their goldens from
the reference set at grade time.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

from grader.diagnose import diagnose
from grader.kit.compare import CheckFailure, Tolerance, assert_close
from grader.kit.paths import DEFAULT_CAT, DEFAULT_CONTENT, DEFAULT_STYLE


@dataclass
class Case:
    name: str                      # unique within an experiment
    kind: str                      # driver handler
    group: str                     # probe group (one sandboxed process per group)
    label: str                     # what a student reads: layer, parameters, shapes
    params: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)   # name -> ndarray
    hidden: bool = False
    weights_dependent: bool = False              # golden keyed by the weights' fingerprint
    needs_golden: bool = True                    # False: the check tests properties (loss falls, speed-up)
    # What kind of input a hidden case has, in words a failure message may show (never its
    # data): "batch N = 2, stride 2", "gradients near zero".
    hint: str = ""


@dataclass(frozen=True)
class GroupSpec:
    name: str
    wall_seconds: float
    cpu_seconds: float
    # An expensive group (a whole network) is not run when a lower tier has already failed:
    # its checks could not count (grader.checks.plugin).
    expensive: bool = False


@dataclass(frozen=True)
class Check:
    """One row of the report: ``run(ctx)`` returns the pass message or raises CheckFailure."""
    name: str
    tier: int                      # 60, 80 or 100: written here and nowhere else
    case: str                      # the case whose outputs the check reads
    run: Callable[["CheckContext"], str]
    hidden: bool = False


class CheckContext:
    """What a check function may ask: its case, the case's outputs and golden, a comparison.

    Built by the grading plugin for one check of one session. Failures of the child
    (crash, timeout, missing output) surface as :class:`CheckFailure` with the case's
    label, so a check function only states its comparison.
    """

    def __init__(self, session, experiment: str, check: Check):
        self.session = session
        self.experiment = experiment
        self.check = check
        self.case: Case = session.case(experiment, check.case)
        self.seconds: float | None = None

    @property
    def where(self) -> str:
        """How a message names the check: the visible case's label, or only a hidden check's name."""
        return f"hidden check {self.case.name}" if self.case.hidden else self.case.label

    def outcome(self):
        """The child's outcome for the case; raises CheckFailure unless it ran to the end."""
        outcome = self.session.outcome(self.experiment, self.case.name)
        self.seconds = outcome.seconds
        if outcome.status != "ok":
            raise CheckFailure(f"{self.where}: {outcome.error}")
        return outcome

    @property
    def outputs(self) -> dict:
        return self.outcome().outputs

    @property
    def extra(self) -> dict:
        return self.outcome().extra or {}

    @property
    def golden(self) -> dict:
        return self.session.golden(self.experiment, self.case.name)

    def compare(self, key: str, tol: Tolerance, what: str | None = None) -> str:
        """Compare output ``key`` with the golden's; on a mismatch add a diagnosis if one fits.

        A hidden case's message tells no data: the kind of error, the diagnosis (a named
        mistake, never a value), what kind of input the case has, and its visible twin.
        """
        got, want = self.outputs.get(key), self.golden[key]
        try:
            return assert_close(got, want, what or f"{self.where} [{key}]", tol)
        except CheckFailure as exc:
            hint = diagnose(self.case, key, got, want, tol)
            if self.case.hidden:
                raise CheckFailure(self.hidden_failure(key, exc, hint, tol)) from None
            raise CheckFailure(f"{exc}; {hint}" if hint else str(exc)) from None

    def hidden_failure(self, key: str, exc: CheckFailure, hint: str, tol: Tolerance) -> str:
        """A hidden check's failure message: kind of error, diagnosis, input kind, visible twin."""
        parts = [f"hidden check {self.case.name} ({self.case.kind}): {describe_failure_kind(exc)}"]
        if hint:
            parts.append(hint)
        twin = self.visible_twin()
        if twin is not None and self.twin_passes(twin, key, tol):
            parts.append(f"the visible check {twin.name} passes; this case differs in kind: "
                         f"{input_kind(self.case, twin)}")
        else:
            parts.append(f"input: {input_kind(self.case, None)}")
            parts.append(f"the visible check {twin.name} shows details" if twin is not None
                         else "the visible checks of the same layer show details")
        return "; ".join(parts)

    def visible_twin(self) -> Case | None:
        """The visible case a hidden case mirrors (its name without ``hidden_``), if there is one."""
        name = self.case.name.removeprefix("hidden_")
        if name == self.case.name:
            return None
        try:
            twin = self.session.case(self.experiment, name)
        except KeyError:
            return None
        return twin if not twin.hidden and twin.kind == self.case.kind else None

    def twin_passes(self, twin: Case, key: str, tol: Tolerance) -> bool:
        """Whether output ``key`` of the visible twin matches its golden (its group runs anyway)."""
        outcome = self.session.outcome(self.experiment, twin.name)
        if outcome.status != "ok" or key not in outcome.outputs:
            return False
        try:
            assert_close(outcome.outputs[key], self.session.golden(self.experiment, twin.name)[key], twin.name, tol)
        except (CheckFailure, KeyError):
            return False
        return True


_SHAPES = re.compile(r"\[\d+(?:, \d+)*\]")


def input_kind(case: Case, twin: Case | None) -> str:
    """What kind of input ``case`` has, in words that tell no data: its hint, else its label's shapes.

    Next to a visible ``twin`` of the same label it says that only the values are fresh.
    """
    if case.hint:
        return case.hint
    if twin is not None and twin.label == case.label:
        return ("the same shapes and parameters with fresh random values (does the code depend on "
                "particular values, or keep results between calls?)")
    shapes = _SHAPES.findall(case.label)
    return f"shapes {', '.join(shapes)}" if shapes else "fresh random values"


def describe_failure_kind(exc: CheckFailure) -> str:
    """A hidden check's failure, told without its data."""
    text = str(exc)
    if "non-finite" in text:
        return "output has NaN or inf values"
    if "value differs" in text:
        return "wrong value"
    if "elements differ" in text:
        count = re.search(r"\d+ of \d+ elements differ", text)
        return "wrong values (shape right)" + (f": {count.group(0)}" if count else "")
    if "shape" in text and "expected" in text:
        return "wrong output shape"
    if "got None" in text:
        return "no output (None returned)"
    return "failed"


def compare_keys(tolerances: dict[str, Tolerance], show_seconds: bool = True) -> Callable[[CheckContext], str]:
    """A check function comparing each output key with its golden under its tolerance."""
    def run(ctx: CheckContext) -> str:
        summaries = [ctx.compare(key, tol) for key, tol in tolerances.items()]
        if show_seconds and ctx.seconds is not None:
            summaries[-1] += f" in {ctx.seconds:.3f} s"
        return "; ".join(summaries)
    return run


def random_image(seed: int) -> np.ndarray:
    """A fresh ``[H, W, 3]`` uint8 test image: a random crop of a kit image, maybe flipped, plus noise."""
    rng = np.random.default_rng(seed)
    source = [DEFAULT_CAT, DEFAULT_CONTENT, DEFAULT_STYLE][int(rng.integers(3))]
    image = np.asarray(Image.open(source).convert("RGB"), dtype=np.float64)
    h, w = image.shape[:2]
    ch, cw = int(h * rng.uniform(0.6, 0.9)), int(w * rng.uniform(0.6, 0.9))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = image[top:top + ch, left:left + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = crop + rng.normal(0.0, 6.0, crop.shape)
    return np.clip(np.rint(crop), 0, 255).astype(np.uint8)


def he_normal(rng: np.random.Generator, shape, fan_in: int) -> np.ndarray:
    return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)


def spec_of(experiment: str):
    """The parent-side module of ``experiment``: its groups, cases and checks."""
    from grader.kit.paths import EXPERIMENTS
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"grader.experiments.{experiment}")
