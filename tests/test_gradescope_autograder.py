"""The Gradescope autograder zip (``python -m grader gradescope``), built and run as Gradescope runs it.

Fast tests check the zip's layout, the refusal of a wrong ``--weights`` file, the file
modes ``setup.sh`` sets, and that ``run_autograder`` leaves a valid results.json when the
upload is unreadable or the grader crashes or hangs. The slow test unpacks the zip into a
temporary root laid out like Gradescope's (``source/``, ``submission/``, ``results/``, named
by ``$AICS_AUTOGRADER_ROOT``), runs ``setup.sh`` (a real venv, pip installing the pinned
packages from the registry) and then ``run_autograder`` on several uploads. It uses the
synthetic weights, since the real VGG19 file is not available here. Every results.json is
validated against ``tests/gradescope_schema.json``, written from Gradescope's specification.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from grader.authoring.gradescope_build import build, container, manifest, outcome, permissions
from grader.authoring.gradescope_build.build import Weights
from grader.gradescope import to_gradescope
from grader.kit.paths import EXPERIMENTS, REFERENCE_DIR, REPO_ROOT, STU_UPLOAD_DIR
from grader.kit.weights import SYNTHETIC_SHA256, synthetic_weights_path
from tests.gradeutil import make_zip, reference_copy, style_copy

SCHEMA = json.loads(Path(__file__).with_name("gradescope_schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
SEED = 424242
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="setup.sh chowns to root and Gradescope runs as root (as CI does)")


def valid(doc: dict) -> dict:
    """``doc`` when it follows Gradescope's results.json specification (else the schema's reasons)."""
    errors = sorted(VALIDATOR.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
    return doc


# --------------------------------------------------------------------------- the schema itself


def test_schema_accepts_the_specification_example_and_rejects_what_it_does_not_list():
    example = {"score": 44.0, "execution_time": 136, "output": "text", "visibility": "after_due_date",
               "stdout_visibility": "visible", "extra_data": {},
               "tests": [{"score": 2.0, "max_score": 2.0, "name": "n", "number": "1.1", "output": "o",
                          "tags": ["t"], "visibility": "visible", "extra_data": {}}],
               "leaderboard": [{"name": "Accuracy", "value": 0.926}, {"name": "Time", "value": 15.1, "order": "asc"}]}
    valid(example)
    for broken in ({**example, "scores": 1}, {**example, "visibility": "later"},
                   {**example, "tests": [{"score": 1, "status": "ok"}]},
                   {"tests": [{"max_score": 2.0}]}):
        assert list(VALIDATOR.iter_errors(broken)), broken


def test_the_kits_gradescope_mapping_follows_the_schema():
    """grader.gradescope as the grader writes it (a hidden check, a blocked tier, a grader error)."""
    doc = {"total": 60, "max_total": 200, "seconds": 12.6, "weights": {"kind": "synthetic", "sha256": "ab" * 32},
           "hidden_checks": {"seed": 3},
           "experiments": [
               {"id": "exp_3_1_vgg", "score": 60, "max_score": 100, "checks": [
                   {"name": "conv", "tier": 60, "passed": True, "message": "ok", "hidden": False},
                   {"name": "hidden_conv", "tier": 60, "passed": True, "message": "ok", "hidden": True},
                   {"name": "vgg19", "tier": 80, "passed": False, "message": "wrong", "hidden": False},
                   {"name": "speed", "tier": 100, "passed": True, "message": "fast", "hidden": False}]},
               {"id": "exp_3_2_dlp", "score": 0, "max_score": 100, "error": "boom", "checks": []}]}
    results = valid(to_gradescope(doc))
    hidden = [t for t in results["tests"] if "hidden_conv" in t["name"]]
    assert hidden and hidden[0]["visibility"] == "after_published"
    assert results["score"] == 60.0


# --------------------------------------------------------------------------- building the zip


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gradescope-zip") / "autograder.zip"
    assert build.main([str(out), "--synthetic-weights", "--seed", str(SEED)]) == 0
    return out


def test_zip_has_the_scripts_at_its_root_and_the_kit_without_local_files(built):
    with zipfile.ZipFile(built) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    names = set(infos)
    for script in ("setup.sh", "run_autograder"):
        assert script in names, sorted(names)[:20]
        assert stat.S_IMODE(infos[script].external_attr >> 16) == 0o755
    for needed in ("requirements.txt", "python-version", "autograder.json", "pyproject.toml", "grader/cli.py",
                   "grader/authoring/gradescope_build/container.py", "pycnml/__init__.py",
                   "data/golden/exp_3_1_vgg/cases.npz", "exp_3_1_vgg/main_exp_3_1.py"):
        assert needed in names, needed
    assert not any(n.startswith((".venv/", "data/generated/", "data/vgg19_data/", "tests/", "stu_upload/", ".git"))
                   for n in names)
    assert not any("__pycache__" in n or n.endswith((".pyc", ".lock")) or "/." in n for n in names)
    assert all(not n.startswith("/") and ".." not in n.split("/") for n in names)
    # Every stored file is a regular file: no links, no folders that could hide a link.
    assert all(stat.S_ISREG(i.external_attr >> 16) for i in infos.values())


def test_the_reference_is_in_the_zip_only_under_grader_reference(built):
    reference = {p.read_bytes() for p in REFERENCE_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    with zipfile.ZipFile(built) as zf:
        inside = [n for n in zf.namelist() if n.startswith("grader/reference/")]
        assert {f"grader/reference/{p.relative_to(REFERENCE_DIR).as_posix()}"
                for p in REFERENCE_DIR.rglob("*.py") if "__pycache__" not in p.parts} <= set(inside)
        outside = [n for n in zf.namelist() if not n.startswith("grader/reference/") and n.endswith(".py")]
        copies = [n for n in outside if zf.read(n) in reference]
    assert not copies, f"reference solutions outside grader/reference/: {copies}"


def test_zip_pins_the_installed_versions_and_records_the_build(built):
    with zipfile.ZipFile(built) as zf:
        pins = dict(line.split("==") for line in zf.read("requirements.txt").decode().splitlines()
                    if line and not line.startswith("#"))
        python = zf.read("python-version").decode().strip()
        recorded = json.loads(zf.read("autograder.json"))
    for name in ("numpy", "scipy", "numba", "llvmlite", "pytest", "pillow"):
        assert pins[name] == importlib.metadata.version(name), name
    assert not {"copydetect", "jsonschema", "pyyaml", "pip", "setuptools"} & set(pins)
    assert python == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert recorded["seed"] == SEED and recorded["experiments"] == list(EXPERIMENTS)
    assert recorded["weights_mode"] == "synthetic" and recorded["weights_sha256"] == SYNTHETIC_SHA256
    assert recorded["gradescope_timeout_seconds"] >= recorded["grader_timeout_seconds"] > 0


def test_baked_weights_are_stored_where_the_kit_looks_first(tmp_path):
    weights = tmp_path / "mine.mat"
    weights.write_bytes(b"\x00" * 4096)
    m = manifest.Manifest(experiments=["exp_3_1_vgg"], seed=1, weights_mode="baked", weights_sha256="0" * 64,
                          weights_kind="custom", python="3.11", grader_timeout_seconds=10.0)
    out = tmp_path / "baked.zip"
    build.write_zip(out, m, "numpy==1\n", Weights("baked", "0" * 64, "custom", weights))
    with zipfile.ZipFile(out) as zf:
        info = zf.getinfo("data/vgg19_data/imagenet-vgg-verydeep-19.mat")
        assert info.compress_type == zipfile.ZIP_STORED and zf.read(info) == weights.read_bytes()


@pytest.mark.parametrize("problem", ["junk", "missing", "synthetic"])
def test_wrong_weights_are_refused_before_anything_is_written(tmp_path, capsys, problem):
    if problem == "junk":
        weights = tmp_path / "imagenet-vgg-verydeep-19.mat"
        weights.write_bytes(b"MATLAB 5.0 MAT-file, but cut short")
        expected = "neither the real VGG19 nor a VGG19 in MatConvNet's layout"
    elif problem == "missing":
        weights, expected = tmp_path / "nowhere.mat", "no such file"
    else:
        weights, expected = synthetic_weights_path(), "use --synthetic-weights instead"
        if not weights.is_file():
            pytest.skip("the kit's synthetic weights are not written (run `source env.sh`)")
    out = tmp_path / "autograder.zip"
    assert build.main([str(out), "--weights", str(weights)]) == build.EXIT_BAD_ARGUMENTS
    err = capsys.readouterr().err
    assert expected in err and str(weights.name) in err
    assert not out.exists() and not list(tmp_path.glob(".autograder.zip*"))


def test_bad_build_arguments_are_refused(tmp_path, capsys):
    assert build.main([str(tmp_path / "a.tar"), "--synthetic-weights"]) == build.EXIT_BAD_ARGUMENTS
    assert "must end in .zip" in capsys.readouterr().err
    assert build.main([str(tmp_path / "a.zip"), "--experiments", "exp_9"]) == build.EXIT_BAD_ARGUMENTS
    assert "unknown experiment" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build.main([str(tmp_path / "a.zip"), "--synthetic-weights", "--weights", "x.mat"])


def test_a_hand_edited_manifest_names_the_bad_field(tmp_path):
    good = manifest.Manifest(experiments=["exp_3_1_vgg"], seed=5, weights_mode="fetch", weights_sha256="a" * 64,
                             weights_kind="real", python="3.11", grader_timeout_seconds=60.0)
    manifest.write(good, tmp_path)
    assert manifest.read(tmp_path) == good
    data = json.loads((tmp_path / manifest.MANIFEST_NAME).read_text())
    data["seed"] = "five"
    (tmp_path / manifest.MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(manifest.ManifestError, match="'seed'"):
        manifest.read(tmp_path)


# --------------------------------------------------------------------------- file modes


@needs_root
def test_permissions_make_the_kit_readable_and_the_secrets_root_only():
    # Not pytest's tmp folder: apply() opens the parents for others (o+x), pytest's is root-only.
    base = Path(tempfile.mkdtemp(prefix="aics-gradescope-modes-"))
    try:
        base.chmod(0o755)
        _check_modes(base / "source")
    finally:
        shutil.rmtree(base)


def _check_modes(source: Path) -> None:
    (source / "grader" / "reference" / "exp_3_1_vgg").mkdir(parents=True)
    (source / "grader" / "reference" / "exp_3_1_vgg" / "layers_1.py").write_text("ANSWER = 1\n")
    (source / "grader" / "kit").mkdir()
    (source / "grader" / "kit" / "paths.py").write_text("x = 1\n")
    os.chmod(source / "grader" / "kit" / "paths.py", 0o600)   # zip modes are not to be trusted
    os.chmod(source / "grader" / "kit", 0o700)
    (source / "tool.sh").write_text("#!/bin/sh\n")
    os.chmod(source / "tool.sh", 0o700)
    (source / manifest.MANIFEST_NAME).write_text("{}")
    cache, numba = source / "data" / "generated" / "cache", source / "data" / "generated" / "numba-cache"
    for folder in (cache, numba):
        folder.mkdir(parents=True)
        (folder / "entry.npz").write_bytes(b"x")
    private = permissions.apply(source, cache, numba)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)   # noqa: E731
    assert mode(source / "grader" / "kit") == 0o755 and mode(source / "grader" / "kit" / "paths.py") == 0o644
    assert mode(source / "tool.sh") == 0o755
    for path in (source / "grader" / "reference", source / "grader" / "reference" / "exp_3_1_vgg", cache, numba):
        assert mode(path) == 0o700, path
    for path in (source / "grader" / "reference" / "exp_3_1_vgg" / "layers_1.py", source / manifest.MANIFEST_NAME,
                 cache / "entry.npz", numba / "entry.npz"):
        assert mode(path) == 0o600, path
    assert set(private) == {source / "grader" / "reference", source / manifest.MANIFEST_NAME, cache, numba}


# --------------------------------------------------------------------------- run_autograder's outcomes


@pytest.fixture
def gradescope_root(tmp_path) -> tuple[Path, Path]:
    """(an autograder root with an empty submission/, a kit folder holding only a manifest)."""
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    kit = tmp_path / "kit"
    kit.mkdir()
    manifest.write(manifest.Manifest(experiments=["exp_3_1_vgg", "exp_3_2_dlp"], seed=9, weights_mode="synthetic",
                                     weights_sha256=SYNTHETIC_SHA256, weights_kind="synthetic", python="3.11",
                                     grader_timeout_seconds=600.0), kit)
    return root, kit


def fake_grader(tmp_path: Path, body: str) -> list[str]:
    """A stand-in for ``python -m grader``: a script given the same arguments."""
    script = tmp_path / "fake_grader.py"
    script.write_text("import json, sys, time\nargs = sys.argv[1:]\n"
                      "def arg(name):\n    return args[args.index(name) + 1]\n" + body)
    return [sys.executable, str(script)]


def run_with(root: Path, kit: Path, command: list[str], timeout: float = 60.0) -> dict:
    path = container.run(root, grader_command=command, timeout=timeout, kit=kit, log=lambda *a: None)
    return valid(json.loads(path.read_text(encoding="utf-8")))


def test_a_hanging_grader_is_stopped_and_the_student_told(gradescope_root, tmp_path):
    root, kit = gradescope_root
    (root / "submission" / "exp_3_1_vgg").mkdir()
    start = time.monotonic()
    doc = run_with(root, kit, fake_grader(tmp_path, "time.sleep(120)\n"), timeout=1.0)
    assert time.monotonic() - start < 30
    assert doc["score"] == 0 and "did not finish within 1 s" in doc["output"]
    assert [t["name"] for t in doc["tests"]] == ["exp_3_1_vgg: not graded", "exp_3_2_dlp: not graded"]
    assert sum(t["max_score"] for t in doc["tests"]) == 200


def test_a_crashing_grader_still_leaves_results(gradescope_root, tmp_path):
    root, kit = gradescope_root
    (root / "submission" / "exp_3_2_dlp").mkdir()
    doc = run_with(root, kit, fake_grader(tmp_path, "sys.exit(7)\n"))
    assert doc["score"] == 0
    assert "exited with code 7" in doc["output"] and "not of your code" in doc["output"]


def test_graded_results_say_loudly_they_are_on_synthetic_weights(gradescope_root, tmp_path):
    root, kit = gradescope_root
    (root / "submission" / "stu_upload" / "exp_3_1_vgg").mkdir(parents=True)
    body = ("open(arg('--results-json'), 'w').write(json.dumps({'score': 60.0, 'output': 'exp_3_1_vgg: 60/100', "
            "'tests': [{'name': 'a', 'score': 60.0, 'max_score': 100.0, 'status': 'passed', "
            "'visibility': 'after_published'}]}))\n"
            "open(arg('--json'), 'w').write(json.dumps({'weights': {'kind': 'synthetic', 'sha256': 'b' * 64}}))\n"
            "assert arg('--seed') == '9' and arg('--experiments') == 'exp_3_1_vgg,exp_3_2_dlp'\n"
            "assert arg('--submission').endswith('stu_upload')\n")
    doc = run_with(root, kit, fake_grader(tmp_path, body))
    assert doc["score"] == 60.0
    assert doc["output"].startswith("WARNING: SYNTHETIC WEIGHTS") and "NOT on the real VGG19" in doc["output"]
    assert "stu_upload/" in doc["output"] and doc["output"].endswith("exp_3_1_vgg: 60/100")
    assert doc["extra_data"]["autograder"]["weights_mode"] == "synthetic"
    assert doc["tests"][0]["visibility"] == "after_published"


@pytest.mark.parametrize("upload, expected", [
    ({"broken.zip": b"PK\x03\x04 not really a zip"}, "Your zip broken.zip was refused"),
    ({"notes.txt": b"hello"}, "found no exp_3_1_vgg/"),
    ({"a.zip": b"", "b.zip": b""}, "upload one zip only"),
])
def test_an_upload_that_cannot_be_graded_gets_score_0_and_the_reason(gradescope_root, tmp_path, upload, expected):
    root, kit = gradescope_root
    for name, data in upload.items():
        (root / "submission" / name).write_bytes(data)
    marker = tmp_path / "grader-ran"
    doc = run_with(root, kit, fake_grader(tmp_path, f"open({str(marker)!r}, 'w')\n"))
    assert doc["score"] == 0 and expected.lower() in doc["output"].lower(), doc["output"]
    assert not marker.exists(), "the grader ran on an upload that could not be read"


def test_a_zip_escaping_its_folder_is_refused(gradescope_root, tmp_path):
    root, kit = gradescope_root
    make_zip(root / "submission" / "upload.zip", {"../../evil.py": b"x", "exp_3_1_vgg/layers_1.py": b"x"})
    doc = run_with(root, kit, fake_grader(tmp_path, "sys.exit(1)\n"))
    assert doc["score"] == 0 and "points outside" in doc["output"]
    assert not (tmp_path / "evil.py").exists() and not (root / "evil.py").exists()


def test_run_autograder_writes_results_even_when_python_is_missing(tmp_path):
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    (root / "results").mkdir()
    (root / "results" / "results.json").write_text('{"score": 100.0}')   # a stale file must not survive
    script = build.TEMPLATES / "run_autograder"
    proc = subprocess.run(["bash", str(script)], env={**os.environ, container.ROOT_ENV: str(root)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = valid(json.loads((root / "results" / "results.json").read_text()))
    assert doc["score"] == 0 and "not of your code" in doc["output"]


def test_setup_sh_fails_clearly_without_the_python_the_pins_need(tmp_path):
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    (root / "source" / "python-version").write_text("3.99\n")
    (root / "source" / "requirements.txt").write_text("")
    env = {**os.environ, container.ROOT_ENV: str(root), "AICS_GRADESCOPE_PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(build.TEMPLATES / "setup.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert "FAILED" in proc.stderr and "is not Python 3.99" in proc.stderr
    assert not (root / "source" / ".venv").exists()


# --------------------------------------------------------------------------- the whole thing, as on Gradescope


@dataclass
class Autograder:
    root: Path
    env: dict
    setup_seconds: float

    def grade(self, fill) -> tuple[dict, float]:
        """Empty submission/, let ``fill(folder)`` put an upload there, run run_autograder: (results, seconds)."""
        submission = self.root / "submission"
        shutil.rmtree(submission)
        submission.mkdir()
        fill(submission)
        start = time.monotonic()
        proc = subprocess.run(["bash", str(self.root / "run_autograder")], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=3000)
        seconds = time.monotonic() - start
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = self.root / "results" / "results.json"
        assert results.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
        return valid(json.loads(results.read_text(encoding="utf-8"))), seconds


def clean_env(root: Path) -> dict:
    """The caller's environment without anything pointing at this kit or its venv."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "AICS_KIT_ROOT", "AICS_DATA_DIR", "VGG19_MAT",
            "AICS_GRADER_TIME_SCALE", "AICS_SANDBOX_METHOD")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    kit_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p != kit_bin)
    env[container.ROOT_ENV] = str(root)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    env["AICS_GRADESCOPE_PYTHON"] = str(base if base.is_file() else sys.executable)
    return env


@pytest.fixture(scope="module")
def autograder(built) -> Autograder:
    # Not pytest's tmp folder: that is root-only, and the sandbox user must reach the venv inside.
    root = Path(tempfile.mkdtemp(prefix="aics-gradescope-test-"))
    try:
        root.chmod(0o755)
        for sub in ("source", "submission", "results"):
            (root / sub).mkdir()
        with zipfile.ZipFile(built) as zf:
            zf.extractall(root / "source")     # modes are dropped, as setup.sh must expect
        shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
        env = clean_env(root)
        start = time.monotonic()
        proc = subprocess.run(["bash", "setup.sh"], cwd=root / "source", env=env, capture_output=True, text=True,
                              timeout=2400)
        seconds = time.monotonic() - start
        assert proc.returncode == 0, f"setup.sh failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        assert "AICS kit ready" in proc.stdout and "SYNTHETIC" in proc.stdout
        print(f"\nsetup.sh took {seconds:.0f} s")
        yield Autograder(root, env, seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _tests(doc: dict, experiment: str) -> list[dict]:
    return [t for t in doc["tests"] if t["name"].startswith(experiment + ":")]


def _cache_entries(source: Path) -> dict[str, int]:
    cache = source / "data" / "generated" / "gradescope-golden-cache"
    return {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npz")}


@pytest.mark.slow
@needs_root
def test_gradescope_autograder_end_to_end(autograder):
    source = autograder.root / "source"
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)   # noqa: E731
    # setup.sh made the secrets root-only and the rest readable.
    for path in [source / "grader" / "reference", *[p for p in (source / "grader" / "reference").rglob("*")
                                                   if p.is_dir()]]:
        assert mode(path) == 0o700, path
    assert all(mode(p) == 0o600 for p in (source / "grader" / "reference").rglob("*") if p.is_file())
    assert mode(source / "autograder.json") == 0o600
    assert mode(source / "data" / "generated" / "gradescope-golden-cache") == 0o700
    assert mode(source / "grader" / "kit" / "paths.py") == 0o644 and mode(source / ".venv") == 0o755
    warmed = _cache_entries(source)
    assert len(warmed) >= len(EXPERIMENTS), warmed
    timings = {"setup.sh": autograder.setup_seconds}

    # The reference, as a student would upload it (the stu_upload/ folder itself): 100 each.
    # As gradeutil does for 3.1, 3.3 takes the student's vectorised layers: the reference's
    # own loop layers make its style-transfer check take minutes, and CI time is short.
    def reference_upload(folder: Path) -> None:
        for exp in EXPERIMENTS:
            if exp == "exp_3_3_style_transfer":
                style_copy(folder / "stu_upload" / exp, "vectorised", exp)
            else:
                reference_copy(folder / "stu_upload" / exp, exp)
    doc, timings["reference"] = autograder.grade(reference_upload)
    failed = [(t["name"], t["output"][:200]) for t in doc["tests"] if t["status"] != "passed"]
    assert doc["score"] == 100.0 * len(EXPERIMENTS), failed[:10]
    for exp in EXPERIMENTS:
        assert sum(t["score"] for t in _tests(doc, exp)) == pytest.approx(100.0), exp
    assert doc["output"].startswith("WARNING: SYNTHETIC WEIGHTS"), doc["output"][:200]
    assert "stu_upload/" in doc["output"]
    hidden = [t for t in doc["tests"] if ": hidden_" in t["name"]]
    assert hidden and all(t["visibility"] == "after_published" for t in hidden)
    assert doc["extra_data"]["hidden_seed"] == SEED
    # The reference's outputs came from the cache setup.sh filled: nothing was recomputed.
    assert _cache_entries(source) == warmed

    # The pristine skeleton, as its bare contents (exp_3_* at the top): graded, 0.
    def skeleton_contents(folder: Path) -> None:
        for exp in EXPERIMENTS:
            shutil.copytree(STU_UPLOAD_DIR / exp, folder / exp, ignore=shutil.ignore_patterns("__pycache__"))
    doc, timings["skeleton"] = autograder.grade(skeleton_contents)
    assert doc["score"] == 0 and "from your upload" in doc["output"]
    assert any("NotImplementedError" in t["output"] for t in _tests(doc, "exp_3_1_vgg"))

    # A zip of stu_upload/ holding the skeleton: extracted, found, graded.
    def zipped(folder: Path) -> None:
        members = {f"stu_upload/{p.relative_to(STU_UPLOAD_DIR).as_posix()}": p.read_bytes()
                   for p in STU_UPLOAD_DIR.rglob("*.py") if "__pycache__" not in p.parts}
        make_zip(folder / "my_lab3.zip", members)
    doc, timings["zip"] = autograder.grade(zipped)
    assert doc["score"] == 0 and "your zip my_lab3.zip" in doc["output"]
    assert any("NotImplementedError" in t["output"] for t in _tests(doc, "exp_3_3_style_transfer"))

    # A hostile upload reaching for the answers, the seed and the cached reference outputs.
    secrets = {"reference": source / "grader" / "reference" / "exp_3_1_vgg" / "layers_1.py",
               "manifest": source / "autograder.json",
               "cache": source / "data" / "generated" / "gradescope-golden-cache"}
    probe = ("import os\n"
             "def grab(path):\n"
             "    try:\n"
             "        if os.path.isdir(path):\n"
             "            return 'LEAKED ' + ','.join(sorted(os.listdir(path)))[:30]\n"
             "        return 'LEAKED ' + open(path, 'rb').read(30).decode('latin-1')\n"
             "    except Exception as exc:\n"
             "        return 'blocked ' + type(exc).__name__\n"
             f"SECRETS = {dict((k, str(v)) for k, v in secrets.items())!r}\n"
             "raise RuntimeError('PROBE ' + '; '.join(k + ': ' + grab(p) for k, p in SECRETS.items()))\n")

    def hostile(folder: Path) -> None:
        shutil.copytree(STU_UPLOAD_DIR / "exp_3_1_vgg", folder / "exp_3_1_vgg",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (folder / "exp_3_1_vgg" / "layers_1.py").write_text(probe)
    doc, timings["hostile"] = autograder.grade(hostile)
    probed = [t["output"] for t in _tests(doc, "exp_3_1_vgg") if "PROBE" in t["output"]]
    assert probed, [t["output"][:200] for t in _tests(doc, "exp_3_1_vgg")][:5]
    assert "LEAKED" not in json.dumps(doc) and "reference: blocked" in probed[0]
    assert doc["score"] == 0
    assert all("not graded" not in t["name"] for t in doc["tests"])    # graded, not crashed
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
