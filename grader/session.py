"""What the checks of one grading run share: submission, weights, seeds, cached group runs.

A check asks the :class:`GradingSession` for a case's outputs (running the sandboxed
probe group on first use, once per group) and for its golden (stored, or computed from
the reference now for hidden cases). Comparing and scoring happen elsewhere
(``grader.checks.plugin``, ``grader.scoring``).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
from pathlib import Path

import numpy as np

from grader.experiments import Case, spec_of
from grader.groups import CaseOutcome, GroupRun, run_group, time_scale_from_env
from grader.kit import goldens
from grader.kit.compare import CheckFailure
from grader.kit.paths import DEFAULT_CAT, REFERENCE_DIR

class GradingSession:
    """What the checks of one grading run share: submission, weights, seeds, cached runs."""

    def __init__(self, submission: Path, weights, *, visible_only: bool = False, seed: int | None = None,
                 image: Path = DEFAULT_CAT, hide_paths: tuple = (), memory_bytes: int | None = None,
                 time_scale: float | None = None, golden_cache: Path | None = None, quick: bool = False):
        self.submission = submission
        # `--quick`: only the lowest tier's checks run (grader.checks.plugin).
        self.quick = quick
        self.weights = weights
        self.image = image
        self.reference_available = REFERENCE_DIR.is_dir() and any(REFERENCE_DIR.glob("exp_*/*.py"))
        # The kit's own reference folder, graded as a submission, is the kit's code: it runs
        # as a trusted group (its fast paths use grader.refnet, which student code may not).
        # A copy of it anywhere else is a student's submission like any other.
        self.trusted_submission = self.reference_available and Path(submission).resolve() == REFERENCE_DIR.resolve()
        self.hidden = self.reference_available and not visible_only
        self.seed = seed if seed is not None else secrets.randbelow(2**31)
        self.hide_paths = tuple(hide_paths)
        self.memory_bytes = memory_bytes
        # Resolved once here so that every group run and progress line uses the same factor.
        self.time_scale = time_scale_from_env() if time_scale is None else time_scale
        self.progress = None   # where group progress lines go while pytest captures output
        # Reference outputs computed at grade time, shared by the runs of one batch.
        self.golden_cache = Path(golden_cache) if golden_cache else None
        if self.golden_cache is not None:
            # Made now, root-only, so that it is hidden from the very first student process.
            self.golden_cache.mkdir(parents=True, exist_ok=True)
            os.chmod(self.golden_cache, 0o700)
            self.hide_paths += (self.golden_cache,)
        self._cases: dict[str, list[Case]] = {}
        self._runs: dict[tuple, GroupRun] = {}
        self._golden_cache: dict[tuple, dict] = {}
        self.notes: dict[str, list[str]] = {}

    # ----- cases -------------------------------------------------------------------
    def resources(self, experiment: str) -> dict:
        res = {"weights": str(self.weights.path), "image": str(self.image)}
        extra = getattr(spec_of(experiment), "extra_resources", None)
        if extra:
            res.update(extra(self))
        return res

    def cases(self, experiment: str) -> list[Case]:
        if experiment not in self._cases:
            module = spec_of(experiment)
            cases = module.visible_cases()
            stored = goldens.load(goldens.golden_path(experiment))
            for case in cases:  # the golden file's inputs are canonical
                if not case.weights_dependent and case.name in stored:
                    case.inputs = stored[case.name]["in"]
            if self.hidden:
                # A visible case an experiment replaces by a hidden one runs only as that one.
                replaced = set(getattr(module, "REPLACED_BY_HIDDEN", ()))
                cases = [c for c in cases if c.name not in replaced] + module.hidden_cases(self.seed)
            self._cases[experiment] = cases
        return self._cases[experiment]

    def case(self, experiment: str, name: str) -> Case:
        for case in self.cases(experiment):
            if case.name == name:
                return case
        raise KeyError(f"{experiment} has no case {name!r}")

    # ----- runs ----------------------------------------------------------------------
    def _group_run(self, experiment: str, group: str, reference: bool) -> GroupRun:
        """The group's run, started on first use and cached whatever happens.

        A fault of the grader's own side while running or collecting the group (an
        exception here) becomes a failed outcome for each of its cases, cached like any
        run: the submission's process is never started twice for one group.
        """
        key = (experiment, group, reference)
        if key not in self._runs:
            module = spec_of(experiment)
            cases = [c for c in self.cases(experiment) if c.group == group]
            try:
                if reference:
                    cases = [c for c in cases
                             if c.needs_golden and (c.hidden or self._stored_golden(experiment, c) is None)]
                    run = self._reference_run(experiment, group, cases)
                else:
                    spec = module.GROUPS[group]
                    # A book-style loop submission can spend minutes in one group: say what runs.
                    if self.progress is not None:
                        print(f"    {experiment}: running the {group!r} checks ({len(cases)} "
                              f"case{'s' if len(cases) != 1 else ''}, "
                              f"time limit {spec.wall_seconds * self.time_scale:.0f} s) ...", file=self.progress)
                    run = run_group(self.submission, experiment, spec, cases,
                                    self.resources(experiment), trusted=self.trusted_submission,
                                    hide_paths=self.hide_paths,
                                    memory_bytes=self.memory_bytes, time_scale=self.time_scale)
            except Exception as exc:  # noqa: BLE001 - cached as failed outcomes, never rerun
                run = _failed_run(experiment, group, cases, exc, reference)
            if not reference:
                notes = self.notes.setdefault(experiment, [])
                # A refusal of the submission's folder is noted by every group: say it once.
                notes.extend(n for n in run.notes if n not in notes)
                if run.result is not None and run.result.status != "ok":
                    self.notes[experiment].append(f"group {group!r}: the process {run.result.message}")
                if run.result is not None and run.result.truncated:
                    self.notes[experiment].append(
                        f"group {group!r}: the submission printed more than the grader keeps; "
                        f"its output was cut (printing is slow: remove debug prints from loops)")
            self._runs[key] = run
        return self._runs[key]

    def _reference_run(self, experiment: str, group: str, cases: list[Case]) -> GroupRun:
        """The reference's outputs for ``cases``, from the batch's cache when one is set."""
        module = spec_of(experiment)

        def compute() -> GroupRun:
            return run_group(REFERENCE_DIR, experiment, module.GROUPS[group], cases, self.resources(experiment),
                             trusted=True)

        if self.golden_cache is None:
            return compute()
        path = self.golden_cache / f"{experiment}-{group}-{self._cache_key(experiment)}.npz"
        # One grader computes while the others of the batch wait, then all read the file.
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                cached = load_reference_outputs(path)
                if cached is not None and all(c.name in cached for c in cases):
                    return GroupRun(experiment, group, {n: CaseOutcome("ok", out) for n, out in cached.items()},
                                    None, 0.0, ["reference outputs from the batch cache"])
                run = compute()
                ok = {n: o.outputs for n, o in run.outcomes.items() if o.status == "ok"}
                if len(ok) == len(cases):
                    save_reference_outputs(path, ok)
                return run
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _cache_key(self, experiment: str) -> str:
        """Seed, weights and the reference's own code: any change makes a new cache entry."""
        digest = hashlib.sha256()
        for path in sorted((REFERENCE_DIR / experiment).glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        for path in (goldens.golden_path(experiment), goldens.golden_path(experiment, self.weights.sha256)):
            digest.update(path.read_bytes() if path.exists() else b"-")
        seed = self.seed if self.hidden else "visible"
        return f"seed{seed}-w{self.weights.sha256[:12]}-r{digest.hexdigest()[:12]}"

    def outcome(self, experiment: str, name: str) -> CaseOutcome:
        case = self.case(experiment, name)
        return self._group_run(experiment, case.group, reference=False).outcome(name)

    def group_started(self, experiment: str, group: str) -> bool:
        """Whether the submission's process of ``group`` has run (its outcomes are cached)."""
        return (experiment, group, False) in self._runs

    def group_run(self, experiment: str, group: str) -> GroupRun:
        return self._group_run(experiment, group, reference=False)

    def _stored_golden(self, experiment: str, case: Case) -> dict | None:
        sha = self.weights.sha256 if case.weights_dependent else None
        key = (experiment, sha)
        if key not in self._golden_cache:
            self._golden_cache[key] = goldens.load(goldens.golden_path(experiment, sha))
        entry = self._golden_cache[key].get(case.name)
        return entry["out"] if entry else None

    def golden(self, experiment: str, name: str) -> dict:
        """Expected outputs of a case: stored visible golden, else computed from the reference now."""
        case = self.case(experiment, name)
        if not case.hidden:
            stored = self._stored_golden(experiment, case)
            if stored is not None:
                return stored
        if not self.reference_available:
            raise CheckFailure(f"no golden for {name} with weights {self.weights.short()} "
                               f"({self.weights.kind}); ask your instructor for goldens of these weights "
                               f"(they run `python -m grader goldens`)")
        ref = self._group_run(experiment, case.group, reference=True).outcome(name)
        if ref.status != "ok":
            raise RuntimeError(f"the reference failed on {experiment}/{name}: {ref.error}\n{ref.traceback}")
        return ref.outputs


def _failed_run(experiment: str, group: str, cases: list[Case], exc: Exception, reference: bool) -> GroupRun:
    """A group run in which the grader itself failed: every case fails with the reason."""
    whose = "the reference" if reference else "this group"
    reason = (f"the grader failed while running or collecting {whose} ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:200] if str(exc) else 'no message'}); this is a grader problem, "
              f"not your code: tell your instructor")
    return GroupRun(experiment, group, {c.name: CaseOutcome("error", error=reason) for c in cases}, None, 0.0,
                    [f"group {group!r}: {reason}"])


def save_reference_outputs(path: Path, outputs: dict[str, dict]) -> None:
    arrays = {f"{case}/{key}": value for case, out in outputs.items() for key, value in out.items()}
    tmp = path.with_name(path.name + f".{os.getpid()}.part.npz")
    np.savez(tmp, **arrays)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def load_reference_outputs(path: Path) -> dict[str, dict] | None:
    if not path.exists():
        return None
    try:
        found: dict[str, dict] = {}
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                case, name = key.split("/", 1)
                found.setdefault(case, {})[name] = data[key]
        return found
    except (OSError, ValueError):
        return None  # a damaged entry is recomputed
