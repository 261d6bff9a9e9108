"""Reports of a grading run: terminal table, the kit's JSON, Gradescope results.json, JUnit XML."""
from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

from grader.scoring import ExperimentResult
from grader.session import GradingSession


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
        "isolation": dict(sandbox.protections_available(),
                          **({"submission": "the kit's own grader/reference, run as trusted kit code"}
                             if getattr(session, "trusted_submission", False) else {})),
        "experiments": [dict(r.as_dict(), error=r.error) for r in results],
    }


def _wrap(text: str, width: int, indent: str) -> list[str]:
    out = []
    for para in str(text).splitlines() or [""]:
        out += textwrap.wrap(para, max(width - len(indent), 20), break_long_words=True,
                             break_on_hyphens=False) or [""]
    return [indent + line for line in out]


def summary_line(exp: dict) -> str:
    """One line a student reads first: the score and what stands in the way of the next tier."""
    checks = exp["checks"]
    failed = [c for c in checks if not c["passed"]]
    head = f"{exp['id']}: {exp['score']}/{exp['max_score']}  ({len(checks) - len(failed)} of {len(checks)} checks passed)"
    if exp.get("error"):
        return head + "  - the grader could not finish this experiment"
    if not failed:
        return head
    blocking = min(c["tier"] for c in failed)
    names = [c["name"] for c in failed if c["tier"] == blocking]
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return head + f"  - tier {blocking} needs: {', '.join(names[:3])}{more}"


def table(doc: dict, width: int = 100) -> str:
    """A table a student can read: one line per check, reasons wrapped under failures.

    Passing hidden checks are folded into one line per tier; a failing one is listed
    with its name and the kind of error (never its data).
    """
    lines = []
    for exp in doc["experiments"]:
        lines.append("")
        lines.append(summary_line(exp))
        lines.append(f"  {'tier':>4}  {'result':<6}  {'seconds':>8}  check")
        hidden_passed: dict[int, list] = {}
        for c in exp["checks"]:
            if c.get("hidden") and c["passed"]:
                hidden_passed.setdefault(c["tier"], []).append(c)
                continue
            mark = "PASS" if c["passed"] else "FAIL"
            lines.append(f"  {c['tier']:>4}  {mark:<6}  {c['seconds']:>8.2f}  {c['name']}")
            if not c["passed"]:
                lines += _wrap(c["message"], width, " " * 10)
        for tier, group in sorted(hidden_passed.items()):
            secs = sum(c["seconds"] for c in group)
            lines.append(f"  {tier:>4}  {'PASS':<6}  {secs:>8.2f}  {len(group)} hidden check(s)")
        for note in exp.get("notes", []):
            lines += _wrap(f"note: {note}", width, "  ")
        if exp.get("error"):
            lines += _wrap(f"GRADER ERROR: {exp['error']}", width, "  ")
    iso = doc.get("isolation", {})
    if iso and not iso.get("privilege_drop", False):
        lines.append("")
        lines += _wrap(f"isolation: reduced ({iso.get('reason_off') or 'privileges cannot be dropped'})", width, "")
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


def _xml_text(text: str) -> str:
    """Drop characters XML 1.0 cannot carry (a student's exception may contain any)."""
    return "".join(ch for ch in str(text) if ch in "\t\n\r" or (" " <= ch <= "\ud7ff") or ("\ue000" <= ch <= "\ufffd")
                   or ord(ch) >= 0x10000)


def write_junit(doc: dict, path: Path) -> None:
    """JUnit XML: one testsuite per experiment, one testcase per check; grader errors are <error>."""
    total = sum(len(e["checks"]) + (1 if e.get("error") else 0) for e in doc["experiments"])
    failures = sum(1 for e in doc["experiments"] for c in e["checks"] if not c["passed"])
    errors = sum(1 for e in doc["experiments"] if e.get("error"))
    suites = ET.Element("testsuites", name="aics-ch3-grader", tests=str(total), failures=str(failures),
                        errors=str(errors), time=f"{doc.get('seconds', 0):.3f}")
    for exp in doc["experiments"]:
        failed = sum(1 for c in exp["checks"] if not c["passed"])
        suite = ET.SubElement(suites, "testsuite", name=exp["id"], tests=str(len(exp["checks"])),
                              failures=str(failed), errors="1" if exp.get("error") else "0", skipped="0",
                              time=f"{exp.get('seconds', 0):.3f}")
        props = ET.SubElement(suite, "properties")
        for key, value in (("score", exp["score"]), ("max_score", exp["max_score"]),
                           ("weights", doc["weights"]["sha256"][:12])):
            ET.SubElement(props, "property", name=key, value=str(value))
        for c in exp["checks"]:
            case = ET.SubElement(suite, "testcase", classname=f"{exp['id']}.tier{c['tier']}", name=c["name"],
                                 time=f"{c['seconds']:.3f}")
            if not c["passed"]:
                message = _xml_text(c["message"])
                failure = ET.SubElement(case, "failure", message=message[:500], type="CheckFailure")
                failure.text = message
        if exp.get("error"):
            # JUnit has no suite-level error element: the grader's own failure is a test case.
            case = ET.SubElement(suite, "testcase", classname=f"{exp['id']}.grader", name="grader", time="0.000")
            ET.SubElement(case, "error", message=_xml_text(exp["error"])[:500], type="GraderError").text = \
                _xml_text(exp["error"])
            suite.set("tests", str(len(exp["checks"]) + 1))
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
