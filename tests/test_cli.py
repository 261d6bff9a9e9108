"""The command line: help, exit codes for bad arguments, --lang."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from grader import cli
from grader.batch import parser as batch_parser
from grader.kit.paths import REPO_ROOT

RUNNERS = {
    "exp_3_1_vgg": "main_exp_3_1.py",
    "exp_3_2_dlp": "main_exp_3_2.py",
    "exp_3_3_style_transfer": "main_exp_3_3.py",
}


def run(args: list[str], cwd=REPO_ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_help_lists_the_sub_commands_and_exit_codes():
    proc = run(["-m", "grader", "--help"])
    assert proc.returncode == 0
    for name in cli.SUBCOMMANDS:
        assert f"python -m grader {name}" in proc.stdout
    for flag in ("--quick", "--lang", "--experiments", "--submission"):
        assert flag in proc.stdout
    assert "2 bad arguments" in proc.stdout and "3 an experiment could not be graded" in proc.stdout


def test_unknown_experiment_exits_2_in_the_grader():
    proc = run(["-m", "grader", "--experiments", "exp_3_1_vgg,exp_9_9"])
    assert proc.returncode == 2
    assert "exp_9_9" in proc.stderr and "exp_3_1_vgg, exp_3_2_dlp, exp_3_3_style_transfer" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_experiment_is_a_usage_error_of_the_parsers():
    with pytest.raises(SystemExit) as grade_exit:
        cli.grade_parser().parse_args(["--experiments", "exp_3_4"])
    with pytest.raises(SystemExit) as batch_exit:
        batch_parser().parse_args(["subs", "--csv", "g.csv", "--experiments", "exp_3_4"])
    assert grade_exit.value.code == 2 and batch_exit.value.code == 2
    # Known ids pass through unchanged (the batch hands the text to each grader).
    args = batch_parser().parse_args(["subs", "--csv", "g.csv", "--experiments", "exp_3_1_vgg,exp_3_2_dlp"])
    assert args.experiments == "exp_3_1_vgg,exp_3_2_dlp"


def test_unknown_experiment_exits_2_in_batch(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    csv = tmp_path / "grades.csv"
    proc = run(["-m", "grader", "batch", str(subs), "--csv", str(csv), "--experiments", "nope"])
    assert proc.returncode == 2 and "nope" in proc.stderr
    assert not csv.exists()


@pytest.mark.parametrize("experiment", sorted(RUNNERS))
def test_runners_refuse_an_experiments_option_with_exit_2(experiment):
    proc = run([RUNNERS[experiment], "--experiments", "exp_9"], cwd=REPO_ROOT / experiment)
    assert proc.returncode == 2, proc.stderr[-1000:]
    assert "--experiments" in proc.stderr


def test_bad_lang_exits_2():
    proc = run(["-m", "grader", "--lang", "fr"])
    assert proc.returncode == 2 and "--lang" in proc.stderr


def quick_grade(*extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The pristine stu_upload's 3.1 tier 60 (about a second)."""
    return subprocess.run([sys.executable, "-m", "grader", "--experiments", "exp_3_1_vgg", "--quick",
                           "--visible-only", *extra], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env=env)


def test_lang_chooses_the_report_language():
    zh, en = quick_grade("--lang", "zh"), quick_grade("--lang", "en")
    assert zh.returncode == 0 and en.returncode == 0, zh.stderr[-1000:] + en.stderr[-1000:]
    assert "TODO 尚未完成" in zh.stdout and "TODO 尚未完成" not in en.stdout
    assert "TODO in exp_3_1_vgg/layers_2.py: complete" in en.stdout


def test_lang_defaults_to_the_environment():
    env = dict(os.environ, AICS_LANG="zh")
    assert "TODO 尚未完成" in quick_grade(env=env).stdout
    env["AICS_LANG"] = "en"
    assert "TODO 尚未完成" not in quick_grade(env=env).stdout
