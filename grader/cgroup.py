"""One control group per sandboxed run: memory and process limits for the whole tree.

rlimits are per process: three forked children each get the full address-space limit,
and ``RLIMIT_NPROC`` counts every process of the user, so one student's fork bomb could
starve a neighbour's threads. A cgroup bounds the run's processes *together* and lets the
grader kill all of them at the end, however they were started.

Two layouts exist in the wild and both are handled:

* cgroup v2 (one unified tree, ``memory.max``, ``pids.max``, ``cgroup.kill``) when the
  memory and pids controllers can be enabled for a child of the root;
* cgroup v1 (one tree per controller: ``memory/…/memory.limit_in_bytes``,
  ``pids/…/pids.max``), with an empty v2 group beside it when one exists, for
  ``cgroup.kill``.

Only root can create the groups; elsewhere :func:`create` returns ``None`` and the
sandbox falls back to rlimits, which the report says.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(os.environ.get("AICS_CGROUP_ROOT", "/sys/fs/cgroup"))
PARENT = "aics-sandbox"


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _is_v2(folder: Path) -> bool:
    return (folder / "cgroup.controllers").is_file()


def _enable(folder: Path, controllers: tuple[str, ...]) -> bool:
    """Enable ``controllers`` for the children of the v2 group ``folder``."""
    have = set(_read(folder / "cgroup.controllers").split())
    if not set(controllers) <= have:
        return False
    enabled = set(_read(folder / "cgroup.subtree_control").split())
    missing = [c for c in controllers if c not in enabled]
    if missing:
        try:
            _write(folder / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
        except OSError:
            return False
    return True


@dataclass
class RunGroup:
    """The cgroup folders of one run (one per hierarchy) and what they enforce."""
    name: str
    folders: list = field(default_factory=list)
    kill_files: list = field(default_factory=list)   # v2 cgroup.kill
    enforced: list = field(default_factory=list)     # "memory", "pids"
    layout: str = ""

    @property
    def procs_files(self) -> list[str]:
        """Where the sandbox's first stage writes its pid to join every hierarchy."""
        return [str(f / "cgroup.procs") for f in self.folders]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for folder in self.folders:
            for line in _read(folder / "cgroup.procs").split():
                if line.isdigit():
                    found.add(int(line))
        return found

    def oom_kills(self) -> int:
        """How many processes the kernel killed for exceeding the memory limit."""
        for folder in self.folders:
            text = _read(folder / "memory.events") or _read(folder / "memory.oom_control")
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip().isdigit():
                    return int(value)
            failcnt = _read(folder / "memory.failcnt").strip()
            if failcnt.isdigit() and int(failcnt) > 0 and (folder / "memory.limit_in_bytes").exists():
                return int(failcnt)
        return 0

    def kill(self, timeout: float = 5.0) -> int:
        """SIGKILL every process of the run; returns how many were still there."""
        left = self.pids()
        for kill_file in self.kill_files:
            try:
                _write(Path(kill_file), "1")
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids or time.monotonic() > deadline:
                return len(left)
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.02)

    def remove(self) -> None:
        for folder in reversed(self.folders):
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)   # the last processes are still being reaped


def _make(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    return folder


def _sweep(parent: Path) -> None:
    """Remove the empty groups of runs whose grader was killed before it could clean up."""
    try:
        children = [c for c in parent.iterdir() if c.is_dir() and c.name.startswith("run-")]
    except OSError:
        return
    for child in children:
        if not _read(child / "cgroup.procs").split():
            try:
                child.rmdir()   # refused while processes or sub-groups are inside: then it is in use
            except OSError:
                pass


def create(name: str, memory_bytes: int, max_pids: int) -> tuple[RunGroup | None, str]:
    """A new cgroup for one run, with its limits written; (group, reason when None)."""
    if os.geteuid() != 0:
        return None, "cgroups need root"
    if not ROOT.is_dir():
        return None, f"{ROOT} is missing"
    group = RunGroup(name)
    try:
        if _is_v2(ROOT) and _enable(ROOT, ("memory", "pids")):
            parent = _make(ROOT / PARENT)
            _sweep(parent)
            if not _enable(parent, ("memory", "pids")):
                return None, "cgroup v2 without the memory and pids controllers"
            folder = _make(parent / name)
            group.folders.append(folder)
            _write(folder / "memory.max", str(int(memory_bytes)))
            if (folder / "memory.swap.max").exists():
                _write(folder / "memory.swap.max", "0")
            _write(folder / "pids.max", str(int(max_pids)))
            group.kill_files.append(str(folder / "cgroup.kill"))
            group.enforced, group.layout = ["memory", "pids"], "v2"
            return group, ""
        memory, pids = ROOT / "memory", ROOT / "pids"
        if (memory / "memory.limit_in_bytes").exists() and (pids / "cgroup.procs").exists():
            for tree in (memory, pids, ROOT / "unified"):
                _sweep(tree / PARENT)
            folder = _make(_make(memory / PARENT) / name)
            group.folders.append(folder)
            _write(folder / "memory.limit_in_bytes", str(int(memory_bytes)))
            if (folder / "memory.memsw.limit_in_bytes").exists():
                _write(folder / "memory.memsw.limit_in_bytes", str(int(memory_bytes)))
            folder = _make(_make(pids / PARENT) / name)
            group.folders.append(folder)
            _write(folder / "pids.max", str(int(max_pids)))
            unified = ROOT / "unified"
            if _is_v2(unified):
                folder = _make(_make(unified / PARENT) / name)
                group.folders.append(folder)
                if (folder / "cgroup.kill").exists():
                    group.kill_files.append(str(folder / "cgroup.kill"))
            group.enforced, group.layout = ["memory", "pids"], "v1"
            return group, ""
    except OSError as exc:
        group.remove()
        return None, f"could not create a cgroup: {exc}"
    return None, "no cgroup hierarchy with memory and pids controllers"


_DESCRIPTION: list[str] = []


def describe() -> str:
    """One line for the report: what this machine's cgroups give a run (probed once)."""
    if not _DESCRIPTION:
        group, reason = create(f"probe-{os.getpid()}", 2**30, 64)
        if group is None:
            _DESCRIPTION.append(f"unavailable ({reason}): memory and process limits are per process (rlimits)")
        else:
            group.remove()
            _DESCRIPTION.append(f"cgroup {group.layout}: memory and process limits for each check group as a whole")
    return _DESCRIPTION[0]
