"""The autograder's two steps inside a Gradescope container (run by ``setup.sh`` and ``run_autograder``).

    python -m grader.authoring.gradescope_build.container setup   once, when Gradescope builds the image
    python -m grader.authoring.gradescope_build.container run     once per submission, in a fresh container

Both read the manifest (``autograder.json``) of the kit they run from, and take the
autograder's root from ``$AICS_AUTOGRADER_ROOT`` (default ``/autograder``): the upload is
in ``<root>/submission``, the results go to ``<root>/results/results.json``.

``setup`` makes the weights (baked, fetched or synthetic), computes the reference's
grade-time outputs for the zip's seed into the golden cache, and sets the file modes
(:mod:`.permissions`). ``run`` finds the upload (:mod:`.upload`), grades it with
``python -m grader`` under an overall time limit, and always writes a valid results.json
(:mod:`.outcome`), also when the upload is unreadable, the grader crashes or runs out of time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grader.authoring.gradescope_build import manifest as manifest_mod
from grader.authoring.gradescope_build import outcome, permissions, upload
from grader.authoring.gradescope_build.contents import BAKED_WEIGHTS
from grader.kit.paths import EXPERIMENTS, GENERATED_DIR, REPO_ROOT

ROOT_ENV = "AICS_AUTOGRADER_ROOT"
DEFAULT_ROOT = Path("/autograder")
GOLDEN_CACHE = GENERATED_DIR / "gradescope-golden-cache"
NUMBA_CACHE = GENERATED_DIR / "numba-cache"      # grader.groups.NUMBA_CACHE: the reference's kernels
# Settings that would make the grader read other weights or another kit than the zip's.
FOREIGN_ENV = ("VGG19_MAT", "AICS_DATA_DIR", "AICS_KIT_ROOT", "PYTHONPATH", "PYTHONHOME")
# After the time limit the grader gets this long to stop by itself (SIGTERM) before SIGKILL.
STOP_GRACE_SECONDS = 15.0


class SetupError(RuntimeError):
    """``setup`` cannot make a working autograder; the message says what failed and what to do."""


def autograder_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


# --------------------------------------------------------------------------- setup


def prepare_weights(m: manifest_mod.Manifest, log=print) -> None:
    """Make the weights the manifest names, then check that the kit resolves exactly them."""
    from grader.kit import weights as w
    os.environ.pop("VGG19_MAT", None)   # the zip's weights, not a file the image happens to name
    if m.weights_mode == "synthetic":
        target = w.synthetic_weights_path()
        if not (target.is_file() and w.sha256_file(target) == w.SYNTHETIC_SHA256):
            log(f"  writing the synthetic VGG19 to {target}")
            sha = w.write_synthetic_weights(target)
            if sha != w.SYNTHETIC_SHA256:
                raise SetupError(f"the synthetic weights written here hash to {sha[:12]}, not "
                                 f"{w.SYNTHETIC_SHA256[:12]}: numpy or scipy differ from requirements.txt; "
                                 f"rebuild the zip from the kit's own environment (`source env.sh`)")
    elif m.weights_mode == "fetch":
        target = w.real_weights_path()
        if not (target.is_file() and w.sha256_file(target) == w.REAL_SHA256):
            from grader.authoring.weights_cli import FetchError, fetch_real
            log(f"  downloading the real VGG19 weights ({w.REAL_SIZE / 1e6:.0f} MB) from {w.REAL_URL}")
            try:
                fetch_real(target, progress=True)
            except FetchError as exc:
                raise SetupError(f"could not download the VGG19 weights ({exc}); build the zip with "
                                 f"--weights PATH to bake them in") from None
    else:
        target = REPO_ROOT / BAKED_WEIGHTS
        if not target.is_file():
            raise SetupError(f"the baked weights are missing: no file at {target}; rebuild the zip with "
                             f"`python -m grader gradescope OUT.zip --weights PATH`")
    found = w.resolve_weights(generate=False)
    if found.sha256 != m.weights_sha256:
        raise SetupError(f"the kit resolves the weights {found.path} (sha256 {found.short()}), but the zip was "
                         f"built for sha256 {m.weights_sha256[:12]}; the file is damaged or another one is in the "
                         f"way: rebuild the zip")
    log(f"  {found.banner()}")


def setup(log=print) -> None:
    """Everything the image needs before the first submission; SetupError says what failed."""
    m = manifest_mod.read(REPO_ROOT)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if here != m.python:
        raise SetupError(f"this venv runs Python {here}, but the zip's pins were made for Python {m.python}; "
                         f"install python{m.python} in the image, or rebuild the zip with Python {here}")
    log(f"setup: weights ({m.weights_mode})")
    prepare_weights(m, log)
    log(f"setup: the reference's outputs for seed {m.seed} into {GOLDEN_CACHE}")
    from grader.authoring.gradescope_build.warmup import warm
    try:
        warm(m.experiments, m.seed, GOLDEN_CACHE, log=log)
    except RuntimeError as exc:
        raise SetupError(f"{exc}; the autograder would fail every submission: fix the kit and rebuild the zip") \
            from None
    log("setup: file modes (the reference, the manifest and the caches root-only)")
    for path in permissions.apply(REPO_ROOT, GOLDEN_CACHE, NUMBA_CACHE, venv=Path(sys.prefix)):
        log(f"  root-only: {path}")


# --------------------------------------------------------------------------- run


def _grader_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    return env


def _stop(proc: subprocess.Popen) -> None:
    """End the grader and everything it started (its own session): TERM, a grace period, then KILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=STOP_GRACE_SECONDS)
        except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _read_results(path: Path) -> dict | None:
    """The grader's results.json when it is a results document; None otherwise."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
        return None
    score = doc.get("score")
    return doc if isinstance(score, (int, float)) and not isinstance(score, bool) else None


def _weights_of(report: Path, m: manifest_mod.Manifest) -> tuple[str, str]:
    """(kind, sha256) of the weights the grader used, from its JSON report; the manifest's otherwise."""
    try:
        weights = json.loads(report.read_text(encoding="utf-8"))["weights"]
        return str(weights["kind"]), str(weights["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return m.weights_kind, m.weights_sha256


def grade(root: Path, m: manifest_mod.Manifest, scratch: Path, grader_command: list[str] | None = None,
          timeout: float | None = None, log=print) -> dict:
    """Grade ``<root>/submission``: the results document to write (never raises for the upload's faults)."""
    start = time.monotonic()
    extra = {"built": m.built, "weights_mode": m.weights_mode, "experiments": list(m.experiments)}
    try:
        found = upload.locate(root / "submission", scratch)
    except upload.UploadProblem as exc:
        log(f"run: upload refused: {exc}")
        return outcome.not_graded(m.experiments, str(exc), time.monotonic() - start, extra)
    log(f"run: {found.note} ({found.root})")
    out = scratch / "graded"
    out.mkdir()
    cmd = list(grader_command or [sys.executable, "-m", "grader"])
    cmd += ["--submission", str(found.root), "--experiments", ",".join(m.experiments), "--seed", str(m.seed),
            "--golden-cache", str(GOLDEN_CACHE), "--time-scale", repr(float(m.time_scale)),
            "--results-json", str(out / "results.json"), "--json", str(out / "report.json")]
    if m.memory_gb:
        cmd += ["--memory-gb", repr(float(m.memory_gb))]
    limit = timeout if timeout is not None else m.grader_timeout_seconds
    sys.stdout.flush()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, cwd=out, env=_grader_env(), start_new_session=True)
    try:
        proc.wait(timeout=limit)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        _stop(proc)
    seconds = time.monotonic() - start
    if timed_out:
        log(f"run: the grader was stopped after {limit:.0f} s")
        return outcome.not_graded(m.experiments, (
            f"Grading did not finish within {limit:.0f} s, the autograder's limit for "
            f"{', '.join(m.experiments)}, so nothing could be scored. Your code may loop forever or be far "
            f"slower than the book's loops: run `python -m grader` on your machine to see which check takes "
            f"long, fix it and resubmit."), seconds, extra)
    results = _read_results(out / "results.json")
    if results is None:
        log(f"run: the grader exited with code {proc.returncode} and wrote no results")
        return outcome.not_graded(m.experiments, f"{outcome.NOT_YOUR_FAULT} (The grader exited with code "
                                                 f"{proc.returncode} before writing any results.)", seconds, extra)
    kind, sha = _weights_of(out / "report.json", m)
    return outcome.annotate(results, weights_kind=kind, weights_sha256=sha, upload_note=found.note, extra=extra)


def run(root: Path | None = None, grader_command: list[str] | None = None, timeout: float | None = None,
        log=print, kit: Path = REPO_ROOT) -> Path:
    """Grade the upload and write ``<root>/results/results.json``, whatever happens; returns its path.

    ``kit`` holds the manifest; ``grader_command`` and ``timeout`` replace ``python -m grader``
    and the manifest's limit (the tests use them to play a crashing or hanging grader).
    """
    root = Path(root) if root is not None else autograder_root()
    results_path = root / "results" / "results.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Where namespaces are refused, only the modes keep a student's process from writing here.
        os.chmod(results_path.parent, 0o755)
    except OSError:
        pass
    # Gradescope stops a run at its own timeout with SIGTERM: leave a results.json even then.
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    start = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="aics-gradescope-"))   # root-only: the extracted upload, raw results
    experiments = list(EXPERIMENTS)
    try:
        m = manifest_mod.read(kit)
        experiments = list(m.experiments)
        doc = grade(root, m, scratch, grader_command, timeout, log)
    except _Stopped:
        doc = outcome.not_graded(experiments, "Grading was stopped before it finished (the autograder's time "
                                              "limit on Gradescope?). " + outcome.NOT_YOUR_FAULT,
                                 time.monotonic() - start)
    except Exception as exc:   # noqa: BLE001 - whatever failed, the student gets a results.json that says so
        log(f"run: the autograder failed: {type(exc).__name__}: {exc}")
        doc = outcome.not_graded(experiments, f"{outcome.NOT_YOUR_FAULT} ({type(exc).__name__} in the autograder.)",
                                 time.monotonic() - start)
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(scratch, ignore_errors=True)
    outcome.write(results_path, doc)
    log(f"run: wrote {results_path} (score {doc['score']})")
    return results_path


class _Stopped(BaseException):
    """SIGTERM arrived while grading."""


def _raise_stop(signum, frame) -> None:
    raise _Stopped


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.authoring.gradescope_build.container",
                                     description=f"The autograder's steps in a Gradescope container (root: "
                                                 f"${ROOT_ENV}, default {DEFAULT_ROOT}).")
    parser.add_argument("step", choices=("setup", "run"))
    args = parser.parse_args(argv)
    if args.step == "run":
        run()
        return 0
    print(f"setup: Python {platform.python_version()} at {sys.executable}; kit at {REPO_ROOT}", flush=True)
    try:
        setup()
    except (SetupError, manifest_mod.ManifestError) as exc:
        print(f"setup.sh: {exc}", file=sys.stderr)
        return 1
    print("setup: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
