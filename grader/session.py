"""What the checks of one grading run share: submission, weights, seeds, cached group runs.

A check asks the :class:`GradingSession` for a case's outputs (running the sandboxed
probe group on first use, once per group) and for its golden (stored, or computed from
the reference now for hidden cases). Comparing and scoring happen elsewhere
(``grader.checks.plugin``, ``grader.scoring``).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import time
from pathlib import Path

import numpy as np

from grader.background import Job, Worker
from grader.experiments import Case, GroupSpec, spec_of
from grader.groups import CaseOutcome, GroupRun, run_group, time_scale_from_env, work_root
from grader.kit import goldens, weightcache
from grader.kit.compare import CheckFailure
from grader.kit.paths import DEFAULT_CAT, REFERENCE_DIR

# A file to which every group run appends one JSON line of timings (benchmarks/bench_grading.py).
TIMELINE_ENV = "AICS_GRADER_TIMELINE"
# "0" turns the fast weights cache off (the benchmark's baseline; a suspected cache problem).
WEIGHTS_CACHE_ENV = "AICS_GRADER_WEIGHTS_CACHE"
# "0" computes the reference's outputs only when a check asks, never beside the submission.
PREFETCH_ENV = "AICS_GRADER_PREFETCH"
# "0" runs the reference group by group through the book's full call sequence (no shortcuts).
SHORTCUTS_ENV = "AICS_GRADER_GOLDEN_SHORTCUTS"


def _switched_off(variable: str) -> bool:
    return os.environ.get(variable, "").strip() == "0"


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
        self._weights_cache: tuple[Path | None, str] | None = None
        # Reference runs started beside the submission's (see _prefetch): (experiment, group) -> job.
        self._pending: dict[tuple, tuple[Job, list[str]]] = {}
        self._worker: Worker | None = None
        self.timeline_path = os.environ.get(TIMELINE_ENV) or None
        self._record({"event": "session", "t": time.monotonic()})

    # ----- cases -------------------------------------------------------------------
    def resources(self, experiment: str) -> dict:
        res = {"weights": str(self.weights.path), "image": str(self.image)}
        cache = self.weights_cache()
        if cache is not None:
            res.update(weights_cache=str(cache), weights_sha256=self.weights.sha256)
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
            select = getattr(module, "select_cases", None)
            if select is not None:   # an experiment with tracks keeps the cases of this submission's track
                cases = select(self, cases)
            self._cases[experiment] = cases
        return self._cases[experiment]

    def case(self, experiment: str, name: str) -> Case:
        for case in self.cases(experiment):
            if case.name == name:
                return case
        raise KeyError(f"{experiment} has no case {name!r}")

    def weights_cache(self) -> Path | None:
        """The weights' fast cache folder (grader.kit.weightcache), built on first use; None without one.

        Only for the kit's own weights (the real or the synthetic VGG19): a cache is kept for
        as long as its file, and files of other kinds come and go (tests, experiments).
        """
        if self._weights_cache is None:
            if _switched_off(WEIGHTS_CACHE_ENV):
                self._weights_cache = (None, f"{WEIGHTS_CACHE_ENV}=0")
            elif getattr(self.weights, "kind", None) not in ("real", "synthetic"):
                self._weights_cache = (None, "weights of another kind than the kit's")
            else:
                start = time.monotonic()
                self._weights_cache = weightcache.ensure(self.weights.path, self.weights.sha256)
                self._record({"event": "weights_cache", "t": start, "end": time.monotonic(),
                              "note": self._weights_cache[1]})
        return self._weights_cache[0]

    def _record(self, entry: dict) -> None:
        """Append one timing record to ``$AICS_GRADER_TIMELINE`` (when set); never fails the run."""
        if not self.timeline_path:
            return
        try:
            with open(self.timeline_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        except (OSError, TypeError, ValueError):
            pass

    def _record_run(self, run: GroupRun, reference: bool, unused: bool = False) -> None:
        self._record({"event": "group", "experiment": run.experiment, "group": run.group, "reference": reference,
                      "unused": unused, "seconds": run.seconds, "timeline": run.timeline,
                      "cases": {name: o.seconds for name, o in run.outcomes.items()}})

    # ----- runs ----------------------------------------------------------------------
    def _group_run(self, experiment: str, group: str, reference: bool) -> GroupRun:
        """The group's run, started on first use and cached whatever happens.

        A fault of the grader's own side while running or collecting the group (an
        exception here) becomes a failed outcome for each of its cases, cached like any
        run: the submission's process is never started twice for one group.
        """
        key = (experiment, group, reference)
        if reference and key not in self._runs and (experiment, group) in self._pending:
            self._collect(experiment, group)
        if key not in self._runs:
            module = spec_of(experiment)
            cases = [c for c in self.cases(experiment) if c.group == group]
            # The reference computes its outputs for several groups in one process.
            groups = self._reference_groups(experiment, group) if reference else [group]
            try:
                if reference:
                    cases = [c for c in self.cases(experiment) if c.group in groups and self._needs_reference(
                        experiment, c)]
                    run = self._reference_run(experiment, groups, cases)
                else:
                    spec = module.GROUPS[group]
                    # A book-style loop submission can spend minutes in one group: say what runs.
                    if self.progress is not None:
                        print(f"    {experiment}: running the {group!r} checks ({len(cases)} "
                              f"case{'s' if len(cases) != 1 else ''}, "
                              f"time limit {spec.wall_seconds * self.time_scale:.0f} s) ...", file=self.progress)
                    self._prefetch(experiment, group)
                    run = run_group(self.submission, experiment, spec, cases,
                                    self.resources(experiment), trusted=self.trusted_submission,
                                    hide_paths=self.hide_paths,
                                    memory_bytes=self.memory_bytes, time_scale=self.time_scale)
            except Exception as exc:  # noqa: BLE001 - cached as failed outcomes, never rerun
                run = _failed_run(experiment, group, cases, exc, reference)
            self._record_run(run, reference)
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
            for name in groups:
                self._runs[(experiment, name, reference)] = run
        return self._runs[key]

    def _needs_reference(self, experiment: str, case: Case) -> bool:
        """Whether ``case``'s golden comes from the reference now: hidden, or no stored golden."""
        return case.needs_golden and (case.hidden or self._stored_golden(experiment, case) is None)

    def _reference_groups(self, experiment: str, group: str) -> list[str]:
        """``group`` and the groups whose reference outputs are computed with it, in one process.

        Each process start and each load of the network costs seconds, so the reference
        runs every not yet run group of the same cost class (``GroupSpec.expensive``: the
        cheap layer groups together, the whole networks together) with the same reference
        folder. Only groups of the same class: a submission that fails a low tier never
        gets its expensive checks run, and their goldens would be wasted work.
        """
        spec = spec_of(experiment).GROUPS
        cases = self.cases(experiment)
        if _switched_off(SHORTCUTS_ENV):
            return [group]

        def wanted(name: str) -> list[Case]:
            return [c for c in cases if c.group == name and self._needs_reference(experiment, c)]

        try:
            root = reference_root(experiment, wanted(group))
        except RuntimeError:
            return [group]
        together = [group]
        for name, other in spec.items():
            if (name == group or other.expensive != spec[group].expensive or (experiment, name, True) in self._runs
                    or (experiment, name) in self._pending or not wanted(name)):
                continue
            try:
                if reference_root(experiment, wanted(name)) == root:
                    together.append(name)
            except RuntimeError:
                continue
        return together

    # ----- the reference beside the submission -------------------------------------
    def _prefetch(self, experiment: str, group: str) -> None:
        """Start the reference's run for ``group`` (and its companions) in the background.

        Called as the submission's process of ``group`` starts: the two children then run
        side by side (one thread each), and the golden is usually ready when a check asks.
        Only the groups of the same cost class as the one starting (_reference_groups), so
        the expensive goldens start only once the submission gets that far.
        """
        if not self.reference_available or _switched_off(PREFETCH_ENV):
            return
        if (experiment, group, True) in self._runs or (experiment, group) in self._pending:
            return
        groups = self._reference_groups(experiment, group)
        cases = [c for c in self.cases(experiment) if c.group in groups and self._needs_reference(experiment, c)]
        if not cases:
            return
        self.resources(experiment)   # builds the weights cache here, not in the background
        work_root()                  # made once, by this thread

        def run(cancel) -> GroupRun:
            try:
                return self._reference_run(experiment, groups, cases, cancel=cancel)
            except Exception as exc:  # noqa: BLE001 - becomes failed outcomes, like a synchronous run
                return _failed_run(experiment, "+".join(groups), cases, exc, True)

        if self._worker is None:
            self._worker = Worker()
        job = self._worker.submit(run)
        for name in groups:
            self._pending[(experiment, name)] = (job, groups)

    def _collect(self, experiment: str, group: str) -> None:
        """Wait for the background reference run holding ``group`` and cache it as run."""
        job, groups = self._pending[(experiment, group)]
        start = time.monotonic()
        try:
            run = job.result()
        except Exception as exc:  # noqa: BLE001 - includes a cancelled job: failed outcomes
            cases = [c for c in self.cases(experiment) if c.group in groups]
            run = _failed_run(experiment, "+".join(groups), cases, exc, True)
        self._record({"event": "golden_wait", "experiment": experiment, "group": run.group, "t": start,
                      "end": time.monotonic()})
        self._record_run(run, True)
        for name in groups:
            self._pending.pop((experiment, name), None)
            self._runs[(experiment, name, True)] = run

    def finish(self, experiment: str) -> None:
        """Stop the background reference runs of ``experiment`` nobody asked for, and wait for them."""
        jobs = {id(job): (job, groups) for (exp, _), (job, groups) in self._pending.items() if exp == experiment}
        for job, _ in jobs.values():
            job.cancel.set()
        for job, groups in jobs.values():
            try:
                run = job.result()
                self._record_run(run, True, unused=True)
            except Exception:  # noqa: BLE001 - cancelled before it started, or failed: nothing to keep
                pass
            for name in groups:
                self._pending.pop((experiment, name), None)

    def _reference_run(self, experiment: str, groups: list[str], cases: list[Case], cancel=None) -> GroupRun:
        """The reference's outputs for ``cases`` of ``groups``, from the batch's cache when one is set."""
        module = spec_of(experiment)
        root = reference_root(experiment, cases)
        specs = [module.GROUPS[name] for name in groups]
        name = "+".join(groups)
        # The limits of the groups together: the trusted run does the work of each in turn.
        spec = GroupSpec(name, wall_seconds=sum(s.wall_seconds for s in specs),
                         cpu_seconds=sum(s.cpu_seconds for s in specs), expensive=any(s.expensive for s in specs))

        def compute() -> GroupRun:
            return run_group(root, experiment, spec, cases, self.resources(experiment), trusted=True,
                             golden=not _switched_off(SHORTCUTS_ENV), cancel=cancel)

        if self.golden_cache is None:
            return compute()
        path = self.golden_cache / f"{experiment}-{name}-{self._cache_key(experiment, root)}.npz"
        # One grader computes while the others of the batch wait, then all read the file.
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                cached = load_reference_outputs(path)
                if cached is not None and all(c.name in cached for c in cases):
                    return GroupRun(experiment, name, {n: CaseOutcome("ok", out) for n, out in cached.items()},
                                    None, 0.0, ["reference outputs from the batch cache"])
                run = compute()
                ok = {n: o.outputs for n, o in run.outcomes.items() if o.status == "ok"}
                if len(ok) == len(cases):
                    save_reference_outputs(path, ok)
                return run
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _cache_key(self, experiment: str, root: Path = REFERENCE_DIR) -> str:
        """Seed, weights and the reference's own code: any change makes a new cache entry."""
        digest = hashlib.sha256()
        for path in sorted((root / experiment).glob("*.py")):
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


def reference_root(experiment: str, cases: list[Case]) -> Path:
    """The folder holding the reference of ``cases``: ``grader/reference/``, or the one the
    experiment's ``reference_root(case)`` names (3.2 keeps one reference per track)."""
    hook = getattr(spec_of(experiment), "reference_root", None)
    roots = {hook(case) for case in cases} if hook is not None else set()
    if len(roots) > 1:
        raise RuntimeError(f"{experiment}: the cases of one group come from {len(roots)} reference folders")
    return roots.pop() if roots else REFERENCE_DIR


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
