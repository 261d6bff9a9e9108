"""Reports of a grading run: terminal table, the kit's JSON, Gradescope results.json, JUnit XML."""
from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

from grader.grading import ExperimentResult, GradingSession


def build(results: list[ExperimentResult], session: GradingSession, seconds: float) -> dict:
    """The kit's JSON report (``--json``)."""
    from grader import sandbox
    return {
        "total": sum(r.score for r in results),
        "max_total": sum(r.max_score for r in results),
        "seconds": round(seconds, 3),
        "submission": str(session.submission),
        "weights": {"kind": session.weights.kind, "sha256": session.weights.sha256},
        "hidden_checks": {"enabled": session.hidden, "seed": session.seed if session.hidden else None},
        "isolation": sandbox.protections_available(),
        "experiments": [dict(r.as_dict(), error=r.error) for r in results],
    }


def table(doc: dict, width: int = 100) -> str:
    """A table a student can read: one line per check, reasons wrapped under failures."""
    lines = []
    for exp in doc["experiments"]:
        lines.append("")
        lines.append(f"{exp['id']}: {exp['score']}/{exp['max_score']}")
        lines.append(f"  {'tier':>4}  {'result':<6}  {'seconds':>8}  check")
        for c in exp["checks"]:
            mark = "PASS" if c["passed"] else "FAIL"
            lines.append(f"  {c['tier']:>4}  {mark:<6}  {c['seconds']:>8.2f}  {c['name']}")
            if not c["passed"]:
                for part in textwrap.wrap(c["message"], width - 10):
                    lines.append(f"          {part}")
        for note in exp.get("notes", []):
            lines.append(f"  note: {note}")
        if exp.get("error"):
            lines.append(f"  GRADER ERROR: {exp['error']}")
    iso = doc.get("isolation", {})
    if iso and not iso.get("privilege_drop", False):
        lines.append("")
        lines.append(f"isolation: reduced ({iso.get('reason_off', 'privileges cannot be dropped')})")
    hidden = doc.get("hidden_checks", {})
    lines.append("")
    lines.append(f"hidden checks: {'on, seed ' + str(hidden.get('seed')) if hidden.get('enabled') else 'off'}")
    lines.append(f"weights: {doc['weights']['kind']} ({doc['weights']['sha256'][:12]})")
    lines.append(f"TOTAL {doc['total']}/{doc['max_total']}")
    return "\n".join(lines)


def write_gradescope(doc: dict, path: Path) -> None:
    """Gradescope's results.json: tier points spread over the checks of each tier."""
    from grader.gradescope import to_gradescope
    path.write_text(json.dumps(to_gradescope(doc), indent=2))


def write_junit(doc: dict, path: Path) -> None:
    suites = ET.Element("testsuites", tests=str(sum(len(e["checks"]) for e in doc["experiments"])))
    for exp in doc["experiments"]:
        failures = sum(1 for c in exp["checks"] if not c["passed"])
        suite = ET.SubElement(suites, "testsuite", name=exp["id"], tests=str(len(exp["checks"])),
                              failures=str(failures), time=f"{exp.get('seconds', 0):.3f}")
        for c in exp["checks"]:
            case = ET.SubElement(suite, "testcase", classname=f"{exp['id']}.tier{c['tier']}", name=c["name"],
                                 time=f"{c['seconds']:.3f}")
            if not c["passed"]:
                failure = ET.SubElement(case, "failure", message=c["message"][:500])
                failure.text = c["message"]
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
