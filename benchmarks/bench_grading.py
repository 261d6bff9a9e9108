#!/usr/bin/env python
"""The grader's own cost per submission, against the student's compute, from its own timeline.

    python benchmarks/bench_grading.py --skip-book                 # fast submission, before/after
    python benchmarks/bench_grading.py --quick --experiments exp_3_2_dlp
    python benchmarks/bench_grading.py --repeat 3 --json grading.json

Each round grades each submission with ``python -m grader --submission S --experiments E
--seed N`` as a separate process, once per variant: ``after`` (the grader as it is) and
``before`` (the same grader with its cost-cutting switched off through
:data:`BASELINE_ENV`), back to back, so that both see the same machine load. The grader
writes a timeline (``$AICS_GRADER_TIMELINE``: one JSON line per check group, with the
parent's and the sandboxed child's ``time.monotonic()`` marks, the child's CPU seconds per
case and its seconds inside ``scipy.io.loadmat``); this script only adds them up:

* process start + imports: from spawning ``python -m grader`` to its first experiment;
* weights cache: checking (or, once per weights file, building) the fast weights cache;
* sandbox set-up: per group, the parent's work folder, copy, inputs and sandbox preparation;
* child start + imports: from spawning the sandbox's boot stage to the probe's imports done;
* weights loading: the child's time inside ``scipy.io.loadmat`` (student and reference);
* golden computation: the reference's runs for hidden goldens (trusted groups): their
  wall time, or, for one started beside the submission's, the time the checks waited;
* student compute: the student's cases, minus their weights loading;
* child exit + collect: from the last case to the results read and the folder removed;
* checks + report: what is left of the process's wall time (comparisons, diagnoses,
  pytest, the report).

The grader's own cost is everything but the student compute. Wall seconds are medians
over the rounds; CPU seconds (the grader process and all its children, from ``wait4``)
are less sensitive to other processes on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from grader.kit.paths import EXPERIMENTS, parse_experiments  # noqa: E402

# What "before" switches off: each cost cut of the grader has a switch (see README.md).
BASELINE_ENV = {"AICS_GRADER_WEIGHTS_CACHE": "0", "AICS_GRADER_PREFETCH": "0", "AICS_GRADER_GOLDEN_SHORTCUTS": "0"}
CATEGORIES = ("process start + imports", "weights cache", "sandbox set-up", "child start + imports",
              "weights loading", "golden computation", "child exit + collect", "checks + report",
              "student compute")
OVERHEAD = CATEGORIES[:-1]
SEED = 20240


def build_submissions(root: Path, experiments: list[str], book: bool) -> dict[str, Path]:
    """The submissions to grade: ``fast`` (the reference copied as a student's) and ``book`` (loops)."""
    from gradeutil import reference_copy, style_copy
    subs = {"fast": root / "fast"}
    for exp in experiments:
        reference_copy(subs["fast"] / exp, exp)
    if book:
        subs["book"] = root / "book"
        for exp in experiments:
            style_copy(subs["book"] / exp, "book", exp)
    return subs


def grade_once(submission: Path, experiments: list[str], env_extra: dict, work: Path, seed: int) -> dict:
    """One ``python -m grader`` process; its wall and CPU seconds, its timeline and its scores."""
    timeline = work / "timeline.jsonl"
    report = work / "report.json"
    for path in (timeline, report):
        path.unlink(missing_ok=True)
    env = dict(os.environ, AICS_GRADER_TIMELINE=str(timeline), **env_extra)
    for key in BASELINE_ENV:
        if key not in env_extra:
            env.pop(key, None)
    command = [sys.executable, "-m", "grader", "--submission", str(submission), "--experiments",
               ",".join(experiments), "--seed", str(seed), "--json", str(report)]
    spawn = time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    end = time.monotonic()
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {proc.returncode}:\n{stderr[-2000:]}")
    records = [json.loads(line) for line in timeline.read_text().splitlines() if line.strip()]
    doc = json.loads(report.read_text())
    return {"spawn": spawn, "end": end, "cpu": usage.ru_utime + usage.ru_stime, "records": records,
            "scores": {e["id"]: e["score"] for e in doc["experiments"]}}


def _span(marks: dict, a: str, b: str) -> float:
    if marks.get(a) is None or marks.get(b) is None:
        return 0.0
    return max(0.0, marks[b] - marks[a])


def breakdown(run: dict) -> dict:
    """Seconds per category (wall), per experiment and in total, from one grading process.

    A reference run started beside the submission's (the session's prefetch) costs the
    wall time the checks waited for it, not its own duration; one nobody needed costs none.
    """
    records = run["records"]
    per: dict[str, dict[str, float]] = {}
    total = dict.fromkeys(CATEGORIES, 0.0)
    cpu = {"student compute": 0.0, "golden computation": 0.0, "children": 0.0}
    blocking: dict[str, float] = {}     # experiment -> wall seconds inside group runs and waits

    def add(exp: str | None, category: str, seconds: float) -> None:
        total[category] += seconds
        if exp is not None:
            per.setdefault(exp, dict.fromkeys(CATEGORIES, 0.0))[category] += seconds

    waits = {(r["experiment"], r["group"]): r["end"] - r["t"] for r in records if r["event"] == "golden_wait"}
    caches = [(r["t"], r["end"]) for r in records if r["event"] == "weights_cache"]
    experiments = sorted((r for r in records if r["event"] == "experiment"), key=lambda r: r["t"])
    first = experiments[0]["t"] if experiments else run["end"]

    def caching(a: float, b: float) -> float:
        return sum(end - t for t, end in caches if a <= t <= b)

    add(None, "weights cache", caching(run["spawn"], run["end"]))
    add(None, "process start + imports", first - run["spawn"] - caching(run["spawn"], first))
    for record in records:
        if record["event"] != "group":
            continue
        exp, tl = record["experiment"], record["timeline"]
        child = tl.get("child") or {}
        cases = (child.get("cases") or {}).values()
        both = {**tl, **child}
        cpu["children"] += tl.get("cpu") or 0.0
        whole = _span(tl, "start", "end")
        if record["reference"]:
            cpu["golden computation"] += tl.get("cpu") or 0.0
            if record.get("unused"):   # ran beside the submission, stopped or finished, never waited for
                continue
            spent = waits.get((exp, record["group"]), whole)
            add(exp, "golden computation", spent)
            blocking[exp] = blocking.get(exp, 0.0) + spent
            continue
        blocking[exp] = blocking.get(exp, 0.0) + whole
        weights = sum(c.get("weights") or 0.0 for c in cases)
        add(exp, "sandbox set-up", _span(tl, "start", "spawn"))
        add(exp, "child start + imports", _span(both, "spawn", "imported"))
        add(exp, "weights loading", weights)
        add(exp, "student compute", max(0.0, sum(_span(c, "start", "end") for c in cases) - weights))
        cpu["student compute"] += sum(c.get("cpu") or 0.0 for c in cases)
        add(exp, "child exit + collect", _span(both, "done", "end"))
    # What is left of each experiment (and of the gap before it) is comparisons, pytest, printing.
    last = first
    for record in experiments:
        left = record["end"] - last - blocking.get(record["experiment"], 0.0) - caching(last, record["end"])
        add(record["experiment"], "checks + report", max(0.0, left))
        last = record["end"]
    # The report and the interpreter's exit, after the last experiment.
    add(None, "checks + report", run["end"] - last)
    wall = run["end"] - run["spawn"]
    return {"wall": wall, "per_experiment": per, "total": total,
            "own_cost": wall - total["student compute"],
            "cpu": {"total": run["cpu"], "student compute": cpu["student compute"],
                    "golden computation": cpu["golden computation"],
                    "own_cost": run["cpu"] - cpu["student compute"]},
            "scores": run["scores"]}


def group_lines(run: dict) -> list[str]:
    """One line per check group of one grading process: who ran it, wall and CPU seconds, phases."""
    lines = [f"    {'experiment/group':<34} {'side':<6}{'wall':>7}{'cpu':>7}{'set-up':>8}{'start':>7}"
             f"{'imports':>8}{'weights':>8}{'cases':>8}{'exit':>7}"]
    for record in run["records"]:
        if record["event"] != "group":
            continue
        tl = record["timeline"]
        child = tl.get("child") or {}
        cases = (child.get("cases") or {}).values()
        both = {**tl, **child}
        side = ("ref-x" if record.get("unused") else "ref") if record["reference"] else "stu"
        lines.append(f"    {record['experiment'] + '/' + record['group']:<34} "
                     f"{side:<6}{_span(tl, 'start', 'end'):7.2f}"
                     f"{tl.get('cpu') or 0.0:7.2f}{_span(tl, 'start', 'spawn'):8.2f}"
                     f"{_span(both, 'spawn', 'started'):7.2f}{_span(child, 'started', 'imported'):8.2f}"
                     f"{sum(c.get('weights') or 0.0 for c in cases):8.2f}"
                     f"{sum(_span(c, 'start', 'end') for c in cases):8.2f}{_span(both, 'done', 'end'):7.2f}")
    return lines


def median_breakdown(items: list[dict]) -> dict:
    """The median of each number over the rounds (per category, experiment and total)."""
    def med(values):
        return statistics.median(values) if values else 0.0
    exps = sorted({e for b in items for e in b["per_experiment"]})
    return {
        "rounds": len(items),
        "wall": med([b["wall"] for b in items]),
        "own_cost": med([b["own_cost"] for b in items]),
        "total": {c: med([b["total"][c] for b in items]) for c in CATEGORIES},
        "per_experiment": {e: {c: med([b["per_experiment"].get(e, {}).get(c, 0.0) for b in items])
                               for c in CATEGORIES} for e in exps},
        "cpu": {k: med([b["cpu"][k] for b in items]) for k in ("total", "student compute", "golden computation",
                                                                 "own_cost")},
        "scores": items[-1]["scores"],
    }


def table(name: str, results: dict[str, dict]) -> str:
    """One block per submission: categories x (variant, experiments, total)."""
    variants = list(results)
    exps = sorted({e for r in results.values() for e in r["per_experiment"]})
    short = {e: e.split("_")[1] + "." + e.split("_")[2] if e.count("_") >= 2 else e for e in exps}
    cols = [(v, e) for v in variants for e in exps] + [(v, None) for v in variants]
    head = f"{name:<26}" + "".join(f"{(v + ' ' + short[e]) if e else v + ' total':>14}" for v, e in cols)
    lines = [head, "-" * len(head)]

    def cell(v, e, c):
        r = results[v]
        return (r["per_experiment"][e][c] if e else r["total"][c])

    for c in CATEGORIES:
        if c == "student compute":
            lines.append("")
        lines.append(f"{c:<26}" + "".join(f"{cell(v, e, c):14.2f}" for v, e in cols))
    own = {v: {e: sum(results[v]["per_experiment"][e][c] for c in OVERHEAD) for e in exps} for v in variants}
    lines.append(f"{'grader own cost (wall)':<26}" + "".join(
        f"{(own[v][e] if e else results[v]['own_cost']):14.2f}" for v, e in cols))
    lines.append(f"{'process wall':<26}" + "".join(f"{'':>14}" if e else f"{results[v]['wall']:14.2f}"
                                                   for v, e in cols))
    for key, label in (("total", "CPU all processes"), ("student compute", "CPU student compute"),
                       ("golden computation", "CPU golden computation"), ("own_cost", "CPU grader own cost")):
        lines.append(f"{label:<26}" + "".join(f"{'':>14}" if e else f"{results[v]['cpu'][key]:14.2f}"
                                               for v, e in cols))
    lines.append(f"{'scores':<26}" + "  ".join(f"{v}: {results[v]['scores']}" for v in variants))
    return "\n".join(lines)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experiments", default=",".join(EXPERIMENTS), help="comma-separated experiment ids")
    p.add_argument("--repeat", type=int, default=2, help="rounds (each grades every submission once per variant)")
    p.add_argument("--skip-book", action="store_true",
                   help="grade only the fast submission (the book's loop 3.1 network takes 4-12 minutes)")
    p.add_argument("--quick", action="store_true", help="--skip-book and a single round")
    p.add_argument("--no-baseline", action="store_true", help="only the grader as it is (no 'before' rows)")
    p.add_argument("--seed", type=int, default=SEED, help="seed of the hidden checks (the same for every run)")
    p.add_argument("--groups", action="store_true", help="print every check group's phases after each run")
    p.add_argument("--json", default=None, help="also write every number here")
    args = p.parse_args(argv)
    args.experiments = parse_experiments(args.experiments)
    if args.quick:
        args.skip_book, args.repeat = True, 1
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    variants = {"after": {}} if args.no_baseline else {"before": dict(BASELINE_ENV), "after": {}}
    root = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    try:
        subs = build_submissions(root, args.experiments, book=not args.skip_book)
        print(f"experiments: {', '.join(args.experiments)}; rounds: {args.repeat}; seed {args.seed}; "
              f"load average before: {load_average()}", flush=True)
        # One untimed run first: the weights cache and numba's cache are built once per machine.
        grade_once(subs["fast"], args.experiments, {}, root, args.seed)
        raw: dict[str, dict[str, list[dict]]] = {s: {v: [] for v in variants} for s in subs}
        loads = []
        for rnd in range(args.repeat):
            for sub, path in subs.items():
                for variant, env in variants.items():
                    run = grade_once(path, args.experiments, env, root, args.seed)
                    raw[sub][variant].append(breakdown(run))
                    loads.append(load_average())
                    print(f"  round {rnd + 1} {sub:<5} {variant:<6} {raw[sub][variant][-1]['wall']:7.1f} s wall, "
                          f"load {loads[-1]}", flush=True)
                    if args.groups:
                        print("\n".join(group_lines(run)), flush=True)
        summary = {sub: {v: median_breakdown(items) for v, items in per.items()} for sub, per in raw.items()}
        print()
        for sub, results in summary.items():
            print(table(f"{sub} submission (s)", results))
            print()
        print(f"load averages (1, 5, 15 min) after each run: {'; '.join(loads)}")
        if args.json:
            Path(args.json).write_text(json.dumps({"experiments": args.experiments, "seed": args.seed,
                                                   "baseline_env": BASELINE_ENV, "load": loads,
                                                   "summary": summary, "runs": raw}, indent=1))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
