"""``python -m grader gradescope OUT.zip``: write the zip Gradescope's autograder expects.

The zip holds, at its root, ``setup.sh`` and ``run_autograder`` (from ``templates/``),
``requirements.txt`` (:mod:`.pins`), ``python-version`` and ``autograder.json``
(:mod:`.manifest`), and the kit (:mod:`.contents`), plus the weights file when ``--weights``
bakes it in. It is written to a temporary file beside ``OUT.zip`` and renamed into place
only when complete.
"""
from __future__ import annotations

import argparse
import math
import os
import secrets
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from grader.authoring.gradescope_build import contents, manifest, pins
from grader.kit.paths import parse_experiments

TEMPLATES = Path(__file__).resolve().with_name("templates")
SCRIPTS = ("setup.sh", "run_autograder")
# What setup.sh needs on top of the grading itself: a venv, the pinned wheels, the weights.
SETUP_MARGIN_SECONDS = 300
EXIT_BAD_ARGUMENTS = 2


class BuildError(Exception):
    """The zip cannot be built as asked; the message says what to change."""


@dataclass(frozen=True)
class Weights:
    mode: str          # baked | fetch | synthetic
    sha256: str
    kind: str          # real | custom | synthetic
    path: Path | None  # the file to bake in


def check_weights(path: Path) -> Weights:
    """The instructor's ``--weights`` file, checked as ``python -m grader weights verify`` does.

    The real MatConvNet file is recognised by its sha256; the kit's synthetic file is refused
    (``--synthetic-weights`` writes it in the container); any other file must have VGG19's
    layout in MatConvNet's format. BuildError says what is wrong with it.
    """
    from grader.kit.synthetic import check_layout
    from grader.kit.weights import REAL_FILENAME, kind_of, sha256_file
    path = Path(path).expanduser()
    if not path.is_file():
        raise BuildError(f"--weights {path}: no such file; give the path of {REAL_FILENAME}")
    sha = sha256_file(path)
    kind = kind_of(sha)
    if kind == "synthetic":
        raise BuildError(f"--weights {path} is the kit's synthetic VGG19 (sha256 {sha[:12]}); use "
                         f"--synthetic-weights instead (setup.sh writes that file itself)")
    if kind == "custom":
        try:
            problems = check_layout(path)
        except Exception as exc:   # noqa: BLE001 - any unreadable file is refused with the reason
            problems = [f"cannot be read as a MatConvNet .mat file ({type(exc).__name__}: {exc})"]
        if problems:
            shown = "; ".join(str(p) for p in problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5
                                                               else "")
            raise BuildError(f"--weights {path} (sha256 {sha[:12]}) is neither the real VGG19 nor a VGG19 in "
                             f"MatConvNet's layout: {shown}. Check it with `python -m grader weights verify {path}`")
    return Weights("baked", sha, kind, path.resolve())


def choose_weights(args) -> Weights:
    from grader.kit.weights import REAL_SHA256, SYNTHETIC_SHA256
    if args.weights:
        return check_weights(Path(args.weights))
    if args.synthetic_weights:
        return Weights("synthetic", SYNTHETIC_SHA256, "synthetic", None)
    return Weights("fetch", REAL_SHA256, "real", None)


def timeouts(experiments: list[str], time_scale: float) -> tuple[float, int]:
    """(the grader's overall limit in run_autograder, the Gradescope timeout to set, whole minutes).

    The limit is the batch's (``grader.batch.scheduler.default_timeout``): every group's
    wall time for the student and for the reference, plus start-up, so even a golden cache
    that does not match still leaves room to recompute the reference.
    """
    from grader.batch.scheduler import default_timeout
    limit = default_timeout(experiments, time_scale)
    return limit, int(math.ceil((limit + SETUP_MARGIN_SECONDS) / 60.0) * 60)


def _add_file(zf: zipfile.ZipFile, name: str, path: Path, compress: int = zipfile.ZIP_DEFLATED) -> None:
    info = zipfile.ZipInfo.from_file(path, name, strict_timestamps=False)
    info.compress_type = compress
    with open(path, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)


def _add_text(zf: zipfile.ZipFile, name: str, text: str, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.external_attr = (0o100000 | mode) << 16     # a regular file with these permissions
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, text)


def write_zip(out: Path, m: manifest.Manifest, requirements: str, weights: Weights) -> None:
    """Write the autograder zip to ``out``, whole or not at all."""
    files = contents.kit_files()
    generated = {*SCRIPTS, manifest.MANIFEST_NAME, manifest.PYTHON_VERSION_NAME, manifest.REQUIREMENTS_NAME}
    clash = sorted(generated & {name for name, _ in files})
    if clash:
        raise BuildError(f"the kit has files named like the autograder's own ({', '.join(clash)}); rename them")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for script in SCRIPTS:
                _add_text(zf, script, (TEMPLATES / script).read_text(encoding="utf-8"), mode=0o755)
            _add_text(zf, manifest.REQUIREMENTS_NAME, requirements)
            _add_text(zf, manifest.PYTHON_VERSION_NAME, m.python + "\n")
            _add_text(zf, manifest.MANIFEST_NAME, m.to_json(), mode=0o600)
            for name, path in files:
                _add_file(zf, name, path)
            if weights.path is not None:
                # float32 weights barely compress: stored, they unpack at disk speed.
                _add_file(zf, contents.BAKED_WEIGHTS, weights.path, compress=zipfile.ZIP_STORED)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grader gradescope",
                                description="Build a Gradescope autograder zip: setup.sh, run_autograder, the kit "
                                            "with its reference, pinned dependencies and a fixed hidden seed.")
    p.add_argument("out", type=Path, help="the zip to write (e.g. autograder.zip)")
    p.add_argument("--experiments", default=None, help="comma-separated experiments to grade (default: all three)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--weights", default=None, metavar="PATH",
                        help="bake this VGG19 .mat into the zip (default: setup.sh downloads the real file)")
    source.add_argument("--synthetic-weights", action="store_true",
                        help="grade on the kit's synthetic VGG19 (results.json says so loudly)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the hidden checks, shared by every submission (default: random, recorded in the zip)")
    p.add_argument("--time-scale", default="1", help="multiply every time limit by F (slow containers: 2)")
    p.add_argument("--memory-gb", type=float, default=None, help="address-space limit per student process (GiB)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from grader.groups import parse_time_scale
    try:
        experiments = parse_experiments(args.experiments)
        time_scale = parse_time_scale(args.time_scale)
        if args.seed is not None and not 0 <= args.seed < 2**31:
            raise BuildError(f"--seed {args.seed} must be in [0, 2**31)")
        if args.memory_gb is not None and not args.memory_gb > 0:
            raise BuildError(f"--memory-gb {args.memory_gb} must be positive (e.g. 6)")
        out = args.out.expanduser().resolve()
        if out.suffix.lower() != ".zip":
            raise BuildError(f"{args.out} must end in .zip (Gradescope takes a zip)")
        if not out.parent.is_dir():
            raise BuildError(f"the folder {out.parent} does not exist; create it first")
        weights = choose_weights(args)
        requirements = pins.requirements_text(pins.resolve(pins.kit_dependencies()))
    except (BuildError, ValueError, pins.PinError) as exc:
        print(f"grader gradescope: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    limit, gradescope_timeout = timeouts(experiments, time_scale)
    m = manifest.Manifest(experiments=experiments, seed=seed, weights_mode=weights.mode,
                          weights_sha256=weights.sha256, weights_kind=weights.kind,
                          python=f"{sys.version_info[0]}.{sys.version_info[1]}", time_scale=time_scale,
                          memory_gb=args.memory_gb, grader_timeout_seconds=limit,
                          gradescope_timeout_seconds=gradescope_timeout,
                          built=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    try:
        write_zip(out, m, requirements, weights)
    except (BuildError, OSError) as exc:
        print(f"grader gradescope: could not write {out}: {exc}", file=sys.stderr)
        return 1
    print(summary(out, m))
    return 0


def summary(out: Path, m: manifest.Manifest) -> str:
    weights = {"baked": "baked into the zip", "fetch": "downloaded by setup.sh (sha256-verified)",
               "synthetic": "SYNTHETIC (results.json says so on every submission)"}[m.weights_mode]
    return "\n".join([
        f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)",
        f"  experiments: {', '.join(m.experiments)} ({100 * len(m.experiments)} points: set the assignment's "
        f"total to this)",
        f"  hidden seed: {m.seed} (every submission shares the hidden inputs)",
        f"  weights:     {weights}",
        f"  Python:      {m.python} (the base image must provide it, or setup.sh installs it with apt-get)",
        f"  Gradescope:  set the autograder timeout to at least {m.gradescope_timeout_seconds // 60} minutes "
        f"(the grader stops itself after {m.grader_timeout_seconds:.0f} s)",
    ])
