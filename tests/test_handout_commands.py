"""Every shell command the student handout's READMEs show runs, in a fresh venv made as they say.

``python -m grader release OUT`` builds the handout; ``source env.sh`` in it creates its own
``.venv`` (the README's install step); then each command of each ``bash``/``sh`` code block of
the handout's README.md and ``exp_*/README*.md`` runs in its own shell, after ``source
env.sh``, from the handout's root (the folder the READMEs name; a ``cd`` line holds for the
rest of its block). 3.1 and 3.2 in ``stu_upload/`` are completed first (the reference,
student style), so their commands must succeed; 3.3 stays the pristine skeleton, so its
commands may stop at a TODO. A command still running after :data:`COMMAND_SECONDS` without
a traceback counts as running (training, long grading). Nothing is skipped: the test
prints every command with its verdict.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader.kit.paths import REPO_ROOT
from tests.gradeutil import reference_copy

pytestmark = pytest.mark.slow

COMMAND_SECONDS = 240
INSTALL_SECONDS = 1200
COMPLETED = ("exp_3_1_vgg", "exp_3_2_dlp")
PRISTINE_MARKS = ("NotImplementedError", "Not finished", "TODO not done yet")
# A grading run exits 0 whatever the score; these say the handout itself is broken.
GRADER_FAULTS = ("ModuleNotFoundError", "the grader failed while running")
# Commands only the instructor's kit has (grader.authoring, grader.refnet, the reference).
INSTRUCTOR_ONLY = re.compile(r"python -m grader (release|goldens|calibrate|weights)\b|grader/reference")
FENCE = re.compile(r"^```(\w*)\s*$")
SHELL_FENCES = {"bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Command:
    readme: str        # where it is shown, relative to the handout's root
    folder: str        # where it runs, relative to the handout's root
    text: str


def readmes(root: Path) -> list[Path]:
    return [root / "README.md"] + sorted(root.glob("exp_*/README*.md"))


def strip_comment(line: str) -> str:
    """``python x.py   # your stu_upload`` -> ``python x.py`` (a ``#`` starting a word; the
    READMEs put no ``#`` inside quotes)."""
    cut = re.search(r"(^|\s)#", line)
    return (line[:cut.start()] if cut else line).strip()


def shell_commands(readme: Path, root: Path) -> list[Command]:
    """The commands of ``readme``'s shell code blocks, with the folder each runs in."""
    rel = readme.relative_to(root).as_posix()
    commands: list[Command] = []
    in_block, folder, pending = False, ".", ""
    for line in readme.read_text(encoding="utf-8").splitlines():
        fence = FENCE.match(line.strip())
        if fence:
            in_block = not in_block and fence.group(1) in SHELL_FENCES
            folder, pending = ".", ""
            continue
        if not in_block:
            continue
        text = pending + strip_comment(line)
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if not text:
            continue
        if re.fullmatch(r"cd \S+", text):
            folder = os.path.normpath(os.path.join(folder, text[3:]))
            continue
        commands.append(Command(rel, folder, text))
    return commands


def handout_env(handout: Path) -> dict[str, str]:
    """The caller's environment without anything pointing at the kit or its venv."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "AICS_KIT_ROOT", "AICS_DATA_DIR", "VGG19_MAT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    kit_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != kit_bin)
    env["AICS_PYTHON"] = sys.executable
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["MPLBACKEND"] = "Agg"
    env["HOME"] = str(handout.parent / "home")
    return env


def run_limited(script: str, cwd: Path, env: dict, seconds: float, log: Path) -> tuple[int | None, str]:
    """``bash -c script`` for at most ``seconds``; (exit code or None when stopped, output)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", script], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    return code, log.read_text(encoding="utf-8", errors="replace")


def verdict(command: Command, code: int | None, output: str) -> str | None:
    """How the command went ("ok", ...), or None when that is a failure."""
    if any(sign in output for sign in GRADER_FAULTS):
        return None
    if code == 0:
        return "ok"
    if code is None and "Traceback" not in output:
        return f"still running without error after {COMMAND_SECONDS} s"
    pristine = not any(exp in command.readme or exp in command.text or exp in command.folder for exp in COMPLETED)
    if pristine and stops_at_todo(code, output):
        return f"exit {code} at the pristine skeleton's TODO"
    return None


def stops_at_todo(code: int | None, output: str) -> bool:
    """A run on a pristine skeleton that stopped at its first TODO, and only there: a runner's
    message, or a bare script's traceback ending in the skeleton's NotImplementedError."""
    if code is None or "TODO in exp_" not in output:
        return False
    lines = [line for line in output.splitlines() if line.strip()]
    if "Traceback" in output:
        return bool(lines) and lines[-1].startswith("NotImplementedError: TODO in exp_")
    return any(mark in output for mark in PRISTINE_MARKS)


@pytest.fixture(scope="module")
def handout(tmp_path_factory) -> Path:
    """A handout built by `python -m grader release`, 3.1 and 3.2 completed, its venv made by env.sh."""
    base = tmp_path_factory.mktemp("handout")
    root = base / "aics-ch3"
    (base / "home").mkdir()
    build = subprocess.run([sys.executable, "-m", "grader", "release", str(root)], cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    for exp in COMPLETED:
        target = root / "stu_upload" / exp
        for path in target.glob("*.py"):
            path.unlink()
        completed = reference_copy(base / "completed" / exp, exp)
        for path in completed.glob("*.py"):
            (target / path.name).write_bytes(path.read_bytes())
    code, output = run_limited("source env.sh", root, handout_env(root), INSTALL_SECONDS, base / "install.log")
    assert code == 0, output[-4000:]
    assert (root / ".venv" / "bin" / "python").is_file()
    return root


def test_handout_readmes_show_no_instructor_command(handout):
    for readme in readmes(handout) + [handout / "pycnml" / "README.md", handout / "data" / "README.md"]:
        text = readme.read_text(encoding="utf-8")
        assert not INSTRUCTOR_ONLY.search(text), f"{readme.relative_to(handout)}: {INSTRUCTOR_ONLY.search(text)[0]}"
    for rel in ("pycnml/README.md", "data/README.md"):
        text = (handout / rel).read_text(encoding="utf-8")
        assert "tests/" not in text and "benchmarks/" not in text, rel
        assert "<!--" not in text, rel


def test_every_readme_command_runs(handout, capsys):
    commands: list[Command] = []
    for readme in readmes(handout):
        for command in shell_commands(readme, handout):
            if (command.folder, command.text) not in {(c.folder, c.text) for c in commands}:
                commands.append(command)
    shown = {c.text for c in commands}
    # The extractor must find the commands the handouts are about.
    for must in ("source env.sh", "python -m grader --experiments exp_3_1_vgg", "python exp_3_1_vgg/main_exp_3_1.py",
                 "python exp_3_2_dlp/main_exp_3_2.py", "cd stu_upload/exp_3_1_vgg && python vgg_cpu.py",
                 "cd stu_upload/exp_3_2_dlp && python vgg19_demo.py"):
        assert must in shown, f"{must!r} not found in the handout's READMEs: {sorted(shown)}"
    env = handout_env(handout)
    logs = handout.parent / "logs"
    logs.mkdir(exist_ok=True)
    report, failed = [], []
    for index, command in enumerate(commands):
        script = f"source env.sh >/dev/null || exit 97\ncd {shlex.quote(command.folder)} || exit 98\n{command.text}\n"
        code, output = run_limited(script, handout, env, COMMAND_SECONDS, logs / f"{index:02d}.log")
        result = verdict(command, code, output)
        report.append(f"{result or 'FAILED'}: [{command.readme}, in {command.folder}] {command.text}")
        if result is None:
            failed.append(f"{command.text} (exit {code}):\n{output[-2500:]}")
    with capsys.disabled():
        print("\nhandout commands run:\n  " + "\n  ".join(report))
    assert not failed, "\n\n".join(failed)
