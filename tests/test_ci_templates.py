"""The CI templates of ``examples/`` run here as their CI service would run them.

Each template is read with ``yaml.safe_load``; the shell steps of its grading job are run
in order in a student repository: a temporary copy of the kit (its git files), whose
``.venv`` and synthetic weights are links to the kit's own so that ``source env.sh`` only
activates, never installs. The CI's variables are set (``GITHUB_STEP_SUMMARY``,
``CI_PROJECT_DIR``, ...) and each run gets a fresh copy, as a CI checkout would.

* GitHub Actions: each ``run:`` step is its own ``bash --noprofile --norc -eo pipefail``
  script (what ``shell: bash`` means there); after a failed step only ``if: always()``
  steps run. Steps that ``uses:`` an action (checkout, setup-python, cache,
  upload-artifact) need the service and are skipped; the runs list them.
* GitLab CI: ``before_script`` and ``script`` are one bash script under
  ``set -eo pipefail``; ``after_script`` (if any) is a shell of its own whose status does
  not count; the ``coverage`` regex is applied to the log.

Run as root (as CI runs the kit's tests), the jobs take the path of a container runner;
the GitHub skeleton run puts stand-ins for ``id`` and ``sudo`` first on PATH to take the
path of GitHub's hosted runners (not root, password-less sudo). The full reference of 3.3
takes minutes to grade, so the reference runs limit the experiments with the templates'
own ``AICS_EXPERIMENTS`` setting (3.1 and 3.2 on GitHub, 3.2 on GitLab); the pristine
skeleton runs use the defaults, that is all three.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from grader.kit.paths import REPO_ROOT, parse_experiments
from grader.kit.weights import SYNTHETIC_FILENAME
from tests.gradeutil import reference_copy

GITHUB_FILE = REPO_ROOT / "examples" / "github-classroom" / ".github" / "workflows" / "aics-grade.yml"
GITLAB_FILE = REPO_ROOT / "examples" / "gitlab" / ".gitlab-ci.yml"
GITHUB_JOB = "run-autograding-tests"
GITLAB_JOB = "aics-grade"
SCORE_STEP = "Score, job summary and points"
# What a GitHub job's ``env:`` may hold besides literals: a variable with a default.
VAR_WITH_DEFAULT = re.compile(r"^\$\{\{\s*vars\.([A-Za-z_]\w*)\s*\|\|\s*'([^']*)'\s*\}\}$")
STEP_TIMEOUT = 600


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the student repository


# What .gitignore keeps out of a clone, for a kit that is not a git checkout.
UNTRACKED_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", "build", "output"}
UNTRACKED_PATHS = {"data/generated", "data/vgg19_data", "r.json"}


def kit_files() -> list[str]:
    """The kit's files as a clone has them: tracked, plus new files not yet committed."""
    try:
        proc = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-z", "--cached", "--others",
                               "--exclude-standard"], capture_output=True)
        if proc.returncode == 0:
            return [name for name in proc.stdout.decode().split("\0") if name]
    except OSError:
        pass   # no git on this machine
    files = []
    for folder, dirs, names in os.walk(REPO_ROOT):
        rel = Path(folder).relative_to(REPO_ROOT)
        dirs[:] = [d for d in dirs if d not in UNTRACKED_DIRS and not d.endswith(".egg-info")
                   and (rel / d).as_posix() not in UNTRACKED_PATHS]
        files += [(rel / n).as_posix() for n in names
                  if not n.endswith(".pyc") and (rel / n).as_posix() not in UNTRACKED_PATHS]
    return files


def install_stamp(pyproject: Path) -> str:
    """What env.sh writes to ``.venv/.aics-installed`` for this pyproject.toml (`cat pyproject.toml | cksum`)."""
    with pyproject.open("rb") as f:
        return subprocess.run(["cksum"], stdin=f, capture_output=True, text=True, check=True).stdout.strip()


def link_venv(repo: Path) -> None:
    """``repo/.venv``: the kit's venv, entry by entry, with a stamp of its own.

    env.sh reinstalls when the stamp differs from the repository's pyproject.toml. The
    copy's own stamp means it never does: a pip install here would repoint the kit's venv.
    """
    venv = REPO_ROOT / ".venv"
    stamp = venv / ".aics-installed"
    if not stamp.is_file() or stamp.read_text().strip() != install_stamp(REPO_ROOT / "pyproject.toml"):
        pytest.fail(f"{venv} is not installed for the current pyproject.toml; run `source env.sh` in {REPO_ROOT} "
                    f"first (the student repositories of this test use that venv)")
    (repo / ".venv").mkdir()
    for entry in venv.iterdir():
        if entry.name != stamp.name:
            (repo / ".venv" / entry.name).symlink_to(entry)
    (repo / ".venv" / stamp.name).write_text(install_stamp(repo / "pyproject.toml") + "\n")


def student_repo(tmp_path: Path, reference: tuple[str, ...] = ()) -> Path:
    """A fresh student repository: the kit's files, ``stu_upload/<exp>`` the reference for ``reference``."""
    repo = tmp_path / "repo"
    for name in kit_files():
        source = REPO_ROOT / name
        if not source.is_file() and not source.is_symlink():
            continue   # deleted in the working tree, not yet committed
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    link_venv(repo)
    weights = REPO_ROOT / "data" / "generated" / SYNTHETIC_FILENAME
    if weights.is_file():
        generated = repo / "data" / "generated"
        generated.mkdir(parents=True)
        (generated / SYNTHETIC_FILENAME).symlink_to(weights)
        # Keyed by the resolved path, so the link's fingerprint is not recomputed.
        cache = weights.with_name("hash-cache.json")
        if cache.is_file():
            shutil.copy2(cache, generated / cache.name)
    for exp in reference:
        shutil.rmtree(repo / "stu_upload" / exp)
        reference_copy(repo / "stu_upload" / exp, exp)
    return repo


def clean_env() -> dict[str, str]:
    """A CI machine's environment: this test's venv, kit and grader settings left out."""
    venv_bin = REPO_ROOT / ".venv" / "bin"
    path = [p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
            if p and Path(p) not in (venv_bin, Path(sys.prefix) / "bin")]
    env = {k: os.environ[k] for k in ("HOME", "USER", "LOGNAME", "LANG", "TMPDIR") if k in os.environ}
    env["PATH"] = os.pathsep.join(path)
    return env


@dataclass
class Job:
    status: int                       # the job's result: 0 green, else red
    log: str
    steps: list[tuple[str, int]]      # (step, exit status) of the steps that ran, in order
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (step, action) not run here
    summary: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    coverage: float | None = None

    def report(self, repo: Path) -> dict:
        return json.loads((repo / "aics-report" / "report.json").read_text())


def run_script(text: str, script: Path, repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    script.write_text(text, encoding="utf-8")
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=repo, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=STEP_TIMEOUT)


# --------------------------------------------------------------------------- GitHub Actions


def github_value(value, variables: dict[str, str]) -> str:
    """An ``env:`` value: a literal, or ``${{ vars.NAME || 'default' }}`` (an unset or empty NAME gives the default)."""
    text = str(value)
    match = VAR_WITH_DEFAULT.match(text)
    if match:
        return variables.get(match[1]) or match[2]
    assert "${{" not in text, f"an expression this local run cannot evaluate: {text!r}"
    return text


def parse_env_file(path: Path) -> dict[str, str]:
    """A ``$GITHUB_OUTPUT`` / ``$GITHUB_ENV`` file: ``NAME=value`` lines and ``NAME<<END`` blocks."""
    values: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, end = line.split("<<", 1)
            j = lines.index(end, i + 1)
            values[name] = "\n".join(lines[i + 1:j])
            i = j + 1
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        i += 1
    return values


def run_github(repo: Path, tmp_path: Path, variables: dict[str, str] | None = None,
               only: tuple[str, ...] | None = None, tools: Path | None = None) -> Job:
    """Run the workflow's grading job in ``repo`` with repository ``variables``.

    ``only`` names the steps to run; ``tools`` is a folder of programs put first on PATH.
    """
    doc = load(GITHUB_FILE)
    job = doc["jobs"][GITHUB_JOB]
    assert job["defaults"]["run"]["shell"] == "bash"
    variables = variables or {}
    ci = tmp_path / "github"
    ci.mkdir()
    files = {name: ci / name for name in ("GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH")}
    for path in files.values():
        path.touch()
    env = clean_env() | {"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(repo), "RUNNER_OS": "Linux",
                         "RUNNER_TEMP": str(ci)} | {k: str(v) for k, v in files.items()}
    if tools is not None:
        env["PATH"] = f"{tools}{os.pathsep}{env['PATH']}"
    env |= {k: github_value(v, variables) for k, v in (job.get("env") or {}).items()}
    skipped, ran, failed, log = [], [], False, []
    for index, step in enumerate(job["steps"]):
        name = step.get("name") or step.get("uses") or f"step {index + 1}"
        if "uses" in step:
            skipped.append((name, step["uses"]))
            continue
        if only is not None and name not in only:
            continue
        condition = str(step.get("if", "success()")).strip()
        assert condition in ("success()", "always()"), f"step {name!r}: condition {condition!r} not supported here"
        if failed and condition != "always()":
            log.append(f"--- {name}: not run (an earlier step failed)")
            continue
        assert "${{" not in step["run"], f"step {name!r} puts an expression in its script; use env: instead"
        step_env = env | parse_env_file(files["GITHUB_ENV"])
        step_env |= {k: github_value(v, variables) for k, v in (step.get("env") or {}).items()}
        extra_path = files["GITHUB_PATH"].read_text().split()
        step_env["PATH"] = os.pathsep.join([*reversed(extra_path), step_env["PATH"]])
        proc = run_script(step["run"], ci / f"step{index + 1}.sh", repo, step_env)
        log.append(f"--- {name}: exit {proc.returncode}\n{proc.stdout}")
        ran.append((name, proc.returncode))
        failed = failed or proc.returncode != 0
    return Job(status=1 if failed else 0, log="\n".join(log), steps=ran, skipped=skipped,
               summary=files["GITHUB_STEP_SUMMARY"].read_text(encoding="utf-8"),
               outputs=parse_env_file(files["GITHUB_OUTPUT"]))


# --------------------------------------------------------------------------- GitLab CI


def gitlab_expand(text: str, env: dict[str, str]) -> str:
    """GitLab expands ``$NAME`` and ``${NAME}`` in variables' values."""
    return re.sub(r"\$\{?([A-Za-z_]\w*)\}?", lambda m: env.get(m[1], ""), text)


def run_gitlab(repo: Path, tmp_path: Path, variables: dict[str, str] | None = None,
               script: slice = slice(None)) -> Job:
    """Run the job ``aics-grade`` in ``repo``; ``variables`` are project CI/CD variables (they win over the file's)."""
    doc = load(GITLAB_FILE)
    job = doc[GITLAB_JOB]
    ci = tmp_path / "gitlab"
    ci.mkdir()
    env = clean_env() | {"CI": "true", "GITLAB_CI": "true", "CI_PROJECT_DIR": str(repo), "CI_JOB_NAME": GITLAB_JOB}
    for scope in (doc.get("variables") or {}, job.get("variables") or {}):
        for name, value in scope.items():
            env[name] = gitlab_expand(str(value), env)
    env |= variables or {}
    main = ["set -eo pipefail", *job.get("before_script", []), *job["script"][script]]
    proc = run_script("\n".join(main) + "\n", ci / "script.sh", repo, env)
    log = proc.stdout
    ran = [("before_script + script", proc.returncode)]
    if job.get("after_script"):
        after = run_script("\n".join(job["after_script"]) + "\n", ci / "after_script.sh", repo, env)
        log += after.stdout
        ran.append(("after_script", after.returncode))
    found = re.findall(job["coverage"].strip("/"), log, flags=re.MULTILINE)
    coverage = float(re.search(r"\d+(?:\.\d+)?", found[-1])[0]) if found else None
    return Job(status=proc.returncode, log=log, steps=ran, coverage=coverage)


# --------------------------------------------------------------------------- shared assertions


def junit_suites(repo: Path) -> list[ET.Element]:
    root = ET.parse(repo / "aics-report" / "junit.xml").getroot()
    return root.findall("testsuite")


def assert_reference_graded(job: Job, repo: Path, experiments: tuple[str, ...]) -> None:
    assert job.status == 0, job.log[-4000:]
    total = 100 * len(experiments)
    for exp in experiments:
        assert f"{exp}: 100/100" in job.log, job.log[-4000:]
    assert f"TOTAL {total}/{total}" in job.log
    doc = job.report(repo)
    assert (doc["total"], doc["max_total"]) == (total, total)
    assert [e["id"] for e in doc["experiments"]] == list(experiments)
    assert doc["hidden_checks"]["enabled"] is False and not any(c["hidden"] for e in doc["experiments"]
                                                                for c in e["checks"])
    suites = junit_suites(repo)
    assert [s.get("name") for s in suites] == list(experiments)
    assert all(s.get("failures") == "0" and s.get("errors") == "0" for s in suites)


def assert_skeleton_graded(job: Job, repo: Path) -> None:
    doc = job.report(repo)
    default = parse_experiments(None)   # what the grader grades when no experiment is named
    assert (doc["total"], doc["max_total"]) == (0, 100 * len(default))
    assert [e["id"] for e in doc["experiments"]] == default
    assert f"TOTAL 0/{100 * len(default)}" in job.log
    assert all(int(s.get("failures")) > 0 for s in junit_suites(repo))


# --------------------------------------------------------------------------- the files themselves


def test_github_workflow_has_the_names_classroom_reads_and_keeps_the_reports():
    doc = load(GITHUB_FILE)
    assert doc["name"] == "Autograding Tests" and list(doc["jobs"]) == [GITHUB_JOB]
    job = doc["jobs"][GITHUB_JOB]
    report_dir = job["env"]["AICS_REPORT_DIR"]
    steps = {s.get("name"): s for s in job["steps"]}
    upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()" and upload["with"]["path"].rstrip("/") == report_dir
    cache = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/cache@"))
    assert cache["with"]["path"] == ".venv" and "hashFiles('pyproject.toml')" in cache["with"]["key"]
    grade = steps["Grade stu_upload/ (visible checks)"]["run"]
    assert "python -m grader" in grade and "--visible-only" in grade
    assert '--json "$AICS_REPORT_DIR/report.json"' in grade and '--junit "$AICS_REPORT_DIR/junit.xml"' in grade
    assert steps[SCORE_STEP]["if"] == "always()"
    # Every marketplace action the job uses is GitHub's own.
    assert all(s["uses"].startswith("actions/") for s in job["steps"] if "uses" in s)


def test_gitlab_job_keeps_the_reports_and_reads_the_score_line():
    doc = load(GITLAB_FILE)
    job = doc[GITLAB_JOB]
    report_dir = doc["variables"]["AICS_REPORT_DIR"]
    assert job["artifacts"]["when"] == "always"
    assert f"{report_dir}/" in job["artifacts"]["paths"]
    assert job["artifacts"]["reports"]["junit"] == f"{report_dir}/junit.xml"
    assert job["cache"]["key"]["files"] == ["pyproject.toml"]
    pattern = re.compile(job["coverage"].strip("/"), re.MULTILINE)
    assert pattern.search("Points 160/300\nAICS score: 53.3%\n")
    assert not pattern.search("AICS score: n/a\n") and not pattern.search("  AICS score: 5%\n")
    grade = "\n".join(job["script"])
    assert "python -m grader" in grade and "--visible-only" in grade


# --------------------------------------------------------------------------- the score step on hand-made reports


def canned_report(repo: Path, passed: int) -> None:
    """A report of 3.1 with ``passed`` of 3 tier-60 checks passing, one failure message full of backticks."""
    checks = [{"name": f"conv_case_{i}", "tier": 60, "passed": i < passed, "seconds": 0.1, "hidden": False,
               "message": "ok" if i < passed else "```\n</pre><script>x</script> ``` `` ::error::planted"}
              for i in range(3)]
    score = 60 if passed == 3 else 0
    doc = {"total": score, "max_total": 100, "seconds": 1.0, "submission": str(repo / "stu_upload"),
           "weights": {"kind": "synthetic", "sha256": "0" * 64}, "hidden_checks": {"enabled": False, "seed": None},
           "isolation": {"privilege_drop": True}, "time_scale": 1.0, "quick": False,
           "experiments": [{"id": "exp_3_1_vgg", "score": score, "max_score": 100, "seconds": 1.0, "notes": [],
                            "checks": checks}]}
    (repo / "aics-report").mkdir(exist_ok=True)
    (repo / "aics-report" / "report.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("passed, minimum, status", [(3, "60", 0), (3, "60.5", 1), (0, "", 0), (0, "abc", 1)])
def test_github_score_step_points_summary_and_pass_mark(tmp_path, passed, minimum, status):
    repo = student_repo(tmp_path)
    canned_report(repo, passed)
    job = run_github(repo, tmp_path, {"AICS_MIN_SCORE": minimum}, only=(SCORE_STEP,))
    assert job.steps == [(SCORE_STEP, status)], job.log
    if minimum == "abc":
        assert "AICS_MIN_SCORE='abc' is not a percentage" in job.log and "AICS_MIN_SCORE" in job.summary
        return
    points = 60 if passed == 3 else 0
    assert f"::notice title=Autograding complete::Points {points}/100" in job.log
    assert f'::notice title=Autograding report::{{"totalPoints":{points},"maxPoints":100}}' in job.log
    assert job.outputs["points"] == str(points) and job.outputs["max-points"] == "100"
    assert f"**Score: {points}/100**" in job.summary and f"| exp_3_1_vgg | {points}/100 |" in job.summary
    assert ("below the pass mark" in job.summary) == (status == 1)
    if passed < 3:
        # The planted message sits inside a fence longer than its own runs of backticks.
        fence = re.search(r"^(`{4,})$", job.summary, re.MULTILINE)
        assert fence and job.summary.count(fence[1] + "\n") == 2
        start, end = (m.start() for m in re.finditer(re.escape(fence[1]) + "\n", job.summary))
        assert "<script>" in job.summary[start:end] and "<script>" not in job.summary[:start] + job.summary[end:]


@pytest.mark.parametrize("minimum, status, coverage", [("", 0, 60.0), ("61", 1, 60.0), ("x", 1, None)])
def test_gitlab_score_entry_coverage_and_pass_mark(tmp_path, minimum, status, coverage):
    repo = student_repo(tmp_path)
    canned_report(repo, 3)
    job = run_gitlab(repo, tmp_path, {"AICS_MIN_SCORE": minimum}, script=slice(-1, None))
    assert job.status == status and job.coverage == coverage, job.log
    if status:
        assert "below the pass mark" in job.log or "is not a percentage" in job.log


# --------------------------------------------------------------------------- whole jobs on real submissions

GITHUB_ACTIONS_SKIPPED = ("actions/checkout@", "actions/setup-python@", "actions/cache@", "actions/upload-artifact@")


@pytest.mark.slow
def test_github_job_on_the_reference_scores_100(tmp_path):
    experiments = ("exp_3_1_vgg", "exp_3_2_dlp")
    repo = student_repo(tmp_path, reference=experiments)
    job = run_github(repo, tmp_path, {"AICS_EXPERIMENTS": ",".join(experiments)})
    print("skipped (they need GitHub):", *(f"{name} ({uses})" for name, uses in job.skipped), sep="\n  ")
    assert [uses.split("@")[0] + "@" for _, uses in job.skipped] == list(GITHUB_ACTIONS_SKIPPED)
    assert_reference_graded(job, repo, experiments)
    assert job.steps == [("Set up the kit (source env.sh)", 0), ("Grade stu_upload/ (visible checks)", 0),
                         (SCORE_STEP, 0)]
    assert "::notice title=Autograding complete::Points 200/200" in job.log
    assert job.outputs == {"points": "200", "max-points": "200", "percent": "100.0"}
    assert "**Score: 200/200** (100.0%)" in job.summary and "TOTAL 200/200" in job.summary
    # The grader's lines cannot act as workflow commands: they sit between stop and resume.
    token = re.search(r"^::stop-commands::(aics-[0-9a-f]{32})$", job.log, re.MULTILINE)
    assert token and f"\n::{token[1]}::\n" in job.log
    assert job.log.index("TOTAL 200/200") < job.log.index(f"::{token[1]}::")


def hosted_runner_tools(folder: Path) -> Path:
    """``id`` and ``sudo`` as on GitHub's hosted runners: not root, password-less sudo (logged, then run)."""
    folder.mkdir()
    real_id = shutil.which("id", path=clean_env()["PATH"])
    assert real_id, "no `id` program on PATH"
    (folder / "id").write_text(f'#!/bin/bash\nif [ "$1" = -u ]; then echo 1001; else exec {real_id} "$@"; fi\n')
    (folder / "sudo").write_text('#!/bin/bash\nprintf "%s\\n" "$*" >> "$(dirname "$0")/sudo.log"\n'
                                 '[ "$1" = -n ] && exit 0\n[ "$1" = -E ] && shift\nexec "$@"\n')
    for tool in ("id", "sudo"):
        (folder / tool).chmod(0o755)
    return folder


@pytest.mark.slow
def test_github_job_on_the_skeleton_scores_0_and_stays_green_without_a_pass_mark(tmp_path):
    repo = student_repo(tmp_path)
    tools = hosted_runner_tools(tmp_path / "tools")
    job = run_github(repo, tmp_path, tools=tools)
    assert job.status == 0, job.log[-4000:]
    assert_skeleton_graded(job, repo)
    maximum = 100 * len(parse_experiments(None))
    assert f"::notice title=Autograding complete::Points 0/{maximum}" in job.log and job.outputs["points"] == "0"
    # Not root, so the grader ran through sudo, with the venv's PATH and the kit's PYTHONPATH kept.
    sudo = (tools / "sudo.log").read_text().splitlines()
    assert sudo[0] == "-n true" and len(sudo) == 2, sudo
    assert re.match(rf"-E env PATH=\S*/\.venv/bin:\S* PYTHONPATH={re.escape(str(repo))} python -m grader "
                    rf"--visible-only ", sudo[1]), sudo[1]
    assert "--allow-unisolated" not in sudo[1]


@pytest.mark.slow
def test_github_job_is_red_when_the_grader_fails(tmp_path):
    repo = student_repo(tmp_path)
    job = run_github(repo, tmp_path, {"AICS_EXPERIMENTS": "exp_9_9"})
    assert job.status == 1
    assert dict(job.steps)["Grade stu_upload/ (visible checks)"] == 2 and dict(job.steps)[SCORE_STEP] == 1
    assert "exited with status 2" in job.log and "no score" in job.summary


@pytest.mark.slow
def test_gitlab_job_on_the_reference_scores_100(tmp_path):
    repo = student_repo(tmp_path, reference=("exp_3_2_dlp",))
    job = run_gitlab(repo, tmp_path, {"AICS_EXPERIMENTS": "exp_3_2_dlp"})
    assert_reference_graded(job, repo, ("exp_3_2_dlp",))
    assert job.coverage == 100.0 and "Points 100/100" in job.log


@pytest.mark.slow
def test_gitlab_job_on_the_skeleton_scores_0_and_stays_green_without_a_pass_mark(tmp_path):
    repo = student_repo(tmp_path)
    job = run_gitlab(repo, tmp_path)
    assert job.status == 0, job.log[-4000:]
    assert_skeleton_graded(job, repo)
    assert job.coverage == 0.0


@pytest.mark.slow
def test_gitlab_job_is_red_when_the_grader_fails(tmp_path):
    repo = student_repo(tmp_path)
    job = run_gitlab(repo, tmp_path, {"AICS_EXPERIMENTS": "exp_9_9"})
    assert job.status == 2 and "exited with status 2" in job.log
    assert job.coverage is None and "Points" not in job.log
