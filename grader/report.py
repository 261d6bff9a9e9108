"""Reports of a grading run: terminal table, the kit's JSON, Gradescope results.json, JUnit XML.

Every file is strict: JSON has no ``NaN`` or ``Infinity`` (a time that is not a finite
number becomes ``null``) and JUnit ``time`` attributes are finite numbers (0 when unknown),
whatever a check reported. Files are written whole or not at all (:mod:`grader.atomic`).
"""
from __future__ import annotations

import io
import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from grader import atomic
from grader.kit.i18n import display_width, translate, word
from grader.results import printable
from grader.scoring import ExperimentResult
from grader.session import GradingSession

# Exit status of ``python -m grader`` when grading ran but a report file could not be
# written (a full disk); the batch stops on it instead of recording a crash per student.
EXIT_REPORT_UNWRITTEN = 4


def finite(value, default=None):
    """``value`` if it is a finite real number, else ``default`` (NaN, inf, None, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return value if math.isfinite(value) else default


def strict(obj):
    """A copy of ``obj`` that strict JSON can carry: non-finite floats become None.

    Dicts, lists and tuples are copied all the way down; other values are kept as they are.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str):
        return printable(obj)
    if isinstance(obj, dict):
        return {printable(key) if isinstance(key, str) else key: strict(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(value) for value in obj]
    return obj


def dumps(obj, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj`` (``allow_nan=False`` after :func:`strict`)."""
    return json.dumps(strict(obj), indent=indent, allow_nan=False)


def write_json(doc: dict, path: Path) -> None:
    """The kit's JSON report (``--json``), strict and written atomically; raises OSError."""
    atomic.write_text(Path(path), dumps(doc))


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
    """``text`` wrapped to ``width`` terminal columns under ``indent``, paragraph by paragraph.

    Lines break at spaces, and between wide (CJK) characters, which count two columns; a
    paragraph that starts with spaces (a crash frame line) continues two columns deeper.
    """
    out = []
    room = max(width - len(indent), 20)
    for para in str(text).splitlines() or [""]:
        lead = len(para) - len(para.lstrip(" "))
        out += _fill(para.rstrip(), room, " " * (lead + 2) if lead else "")
    return [indent + line for line in out]


# A run of narrow characters with the spaces after it, or one wide character with its spaces.
_TOKEN = re.compile(r"[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6] *"
                    r"|[^ \u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]+ *"
                    r"| +")


def _fill(para: str, room: int, deeper: str) -> list[str]:
    """Greedy fill of one paragraph into lines of at most ``room`` columns."""
    lines, current = [], ""
    for token in _TOKEN.findall(para):
        while token:
            if display_width(current + token.rstrip()) <= room:
                current += token
                token = ""
            elif current.strip():
                lines.append(current.rstrip())
                current, token = deeper, token.lstrip(" ")
            else:
                # A word longer than a whole line: cut it where the line is full.
                cut = 1
                while cut < len(token) and display_width(current + token[:cut + 1]) <= room:
                    cut += 1
                lines.append((current + token[:cut]).rstrip())
                current, token = deeper, token[cut:]
    if current.strip() or not lines:
        lines.append(current.rstrip())
    return lines


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


# ----- what a check's line shows -------------------------------------------------------

SKIP_PREFIXES = ("skipped:", "not run", "not checked:")


def status(check: dict) -> str:
    """``PASS``, ``FAIL``, or ``SKIP`` for a check that was not run (it never counts as passed)."""
    if check["passed"]:
        return "PASS"
    return "SKIP" if str(check.get("message", "")).startswith(SKIP_PREFIXES) else "FAIL"


def in_tier_order(checks: list[dict]) -> list[dict]:
    """Checks of tier 60 first, then 80, then 100; the declared order within a tier."""
    return sorted(checks, key=lambda c: c["tier"])


_SPEED = re.compile(r"(conv|pool) forward raw ([\d.]+) s.*?speedup ([\d.]+) s.*?ratio ([\d.]+x)")
_TOP1 = re.compile(r"top-1 class id \d+ \(p = [\d.]+\)")
_LOSS = re.compile(r"total loss \S+ -> \S+ in \d+ steps")
_TIMES = re.compile(r"\b(\w+_time) ([\d.]+) s\b")
_MAX_ERR = re.compile(r"max abs err ([\d.eE+-]+)")


def measured(message: str) -> str:
    """The numbers a passing check measured, short: speed-ups, top-1, losses, layer times, max error."""
    items = [f"{kind} {raw} s -> {fast} s ({ratio})" for kind, raw, fast, ratio in _SPEED.findall(message)]
    items += _TOP1.findall(message) + _LOSS.findall(message)
    items += [f"{name} {value} s" for name, value in _TIMES.findall(message)]
    errors = []
    for text in _MAX_ERR.findall(message):
        try:
            errors.append(float(text))
        except ValueError:
            continue
    if errors and math.isfinite(max(errors)):
        items.append(f"max abs err {max(errors):.3g}")
    return ", ".join(items)


# The part of a failure message that names its cause: an exception (a crash or the
# skeleton's TODO, with its crash lines) or the end of the submission's process.
_CAUSE = re.compile(r"(?:^|: )((?:[A-Z]\w*(?:Error|Exception|Exit|Interrupt)\b|the submission's process\b"
                    r"|case was not run\b).*)", re.S)
_EXC_TYPE = re.compile(r"^([A-Z]\w*(?:Error|Exception|Exit|Interrupt))\b")


def cause_of(message: str) -> str:
    """The root cause in a failure message (for "same cause as"), or ``""`` when it has none."""
    found = _CAUSE.search(str(message))
    return found.group(1).strip() if found else ""


def same_cause(name: str, cause: str) -> str:
    """The line shown instead of a cause printed in full under ``name`` already."""
    kind = _EXC_TYPE.match(cause)
    return f"same cause as {name}" + (f" ({kind.group(1)})" if kind else "")


def _pad(text: str, columns: int, right: bool = False) -> str:
    """``text`` padded with spaces to ``columns`` terminal columns."""
    fill = " " * max(columns - display_width(text), 0)
    return fill + text if right else text + fill


def _check_lines(exp: dict, width: int, lang: str) -> list[str]:
    """The rows of one experiment's checks, reasons and numbers under them, in ``lang``."""
    lines = []
    hidden_passed: dict[int, list] = {}
    causes: dict[str, str] = {}    # cause -> the check it was printed under
    for c in in_tier_order(exp["checks"]):
        if c.get("hidden") and c["passed"]:
            hidden_passed.setdefault(c["tier"], []).append(c)
            continue
        mark = status(c)
        row = f"  {c['tier']:>4}  {_pad(word(mark, lang), 6)}  {_seconds(c.get('seconds'))}  {c['name']}"
        if mark == "PASS":
            numbers = translate(measured(c["message"]), lang)
            if numbers and display_width(f"{row}  {numbers}") <= width:
                lines.append(f"{row}  {numbers}")
            else:
                lines.append(row)
                if numbers:
                    lines += _wrap(numbers, width, " " * 10)[:1]
            continue
        text = c["message"]
        cause = cause_of(text) if mark == "FAIL" else ""
        short = mark == "SKIP"
        if cause and cause in causes:
            text, short = same_cause(causes[cause], cause), True
        elif cause:
            causes[cause] = c["name"]
        text = translate(text, lang)
        # A short reason (a skip, "same cause as ...") goes on the check's own line when it fits.
        if short and "\n" not in text and display_width(f"{row}  {text}") <= width:
            lines.append(f"{row}  {text}")
            continue
        lines.append(row)
        lines += _wrap(text, width, " " * 10)
    for tier, group in sorted(hidden_passed.items()):
        secs = sum(finite(c.get("seconds"), 0.0) for c in group)
        folded = translate(f"{len(group)} hidden check(s)", lang)
        lines.append(f"  {tier:>4}  {_pad(word('PASS', lang), 6)}  {_seconds(secs)}  {folded}")
    return lines


def table(doc: dict, width: int = 100, lang: str = "en") -> str:
    """A table a student can read, in ``lang`` ("en" or "zh"): one line per check in tier order.

    A failure's reason is wrapped under it; a cause shared by several failures (the same
    crash, the same TODO) is printed in full once, the others say "same cause as ...". A
    passing check shows the numbers it measured. Passing hidden checks are folded into one
    line per tier; a failing one is listed with its name and the kind of error (never its
    data). The JSON reports keep every message in full and in English.
    """
    tr = lambda text: translate(text, lang)  # noqa: E731
    lines = []
    for exp in doc["experiments"]:
        lines.append("")
        lines.append(tr(summary_line(exp)))
        lines.append(f"  {_pad(word('tier', lang), 4, right=True)}  {_pad(word('result', lang), 6)}  "
                     f"{_pad(word('seconds', lang), 8, right=True)}  {word('check', lang)}")
        lines += _check_lines(exp, width, lang)
        for note in exp.get("notes", []):
            lines += _wrap(tr(f"note: {note}"), width, "  ")
        if exp.get("error"):
            lines += _wrap(tr(f"GRADER ERROR: {exp['error']}"), width, "  ")
    iso = doc.get("isolation", {})
    if iso and not iso.get("privilege_drop", False):
        lines.append("")
        lines += _wrap(tr(f"isolation: reduced ({iso.get('reason_off') or 'privileges cannot be dropped'})"), width, "")
    hidden = doc.get("hidden_checks", {})
    lines.append("")
    lines.append(tr(f"hidden checks: {'on, seed ' + str(hidden.get('seed')) if hidden.get('enabled') else 'off'}"))
    lines.append(tr(f"weights: {doc['weights']['kind']} ({doc['weights']['sha256'][:12]})"))
    lines.append(tr(f"TOTAL {doc['total']}/{doc['max_total']}"))
    # Whatever a submission put in a message or a file name, the terminal shows it inert.
    return "\n".join(printable(line) for line in lines)


def _seconds(value) -> str:
    """A time for the table, 8 characters wide; ``-`` when it is not a finite number."""
    value = finite(value)
    return f"{value:>8.2f}" if value is not None else f"{'-':>8}"


def write_gradescope(doc: dict, path: Path) -> None:
    """Gradescope's results.json: tier points spread over the checks of each tier (strict JSON)."""
    from grader.gradescope import to_gradescope
    atomic.write_text(Path(path), dumps(to_gradescope(doc)))


def _junit_time(value) -> str:
    """A JUnit ``time`` attribute: seconds with three decimals, 0 when unknown or not finite."""
    return f"{max(finite(value, 0.0), 0.0):.3f}"


def _xml_text(text: str) -> str:
    """Drop what XML 1.0 cannot carry and what a terminal would obey (controls, lone surrogates)."""
    text = str(text).encode("utf-8", "replace").decode("utf-8")
    return "".join(ch for ch in text if ch in "\t\n\r" or (" " <= ch <= "\x7e") or ("\xa0" <= ch <= "\ud7ff")
                   or ("\ue000" <= ch <= "\ufffd") or ord(ch) >= 0x10000)


def write_junit(doc: dict, path: Path) -> None:
    """JUnit XML: one testsuite per experiment, one testcase per check; grader errors are <error>."""
    total = sum(len(e["checks"]) + (1 if e.get("error") else 0) for e in doc["experiments"])
    failures = sum(1 for e in doc["experiments"] for c in e["checks"] if not c["passed"])
    errors = sum(1 for e in doc["experiments"] if e.get("error"))
    suites = ET.Element("testsuites", name="aics-ch3-grader", tests=str(total), failures=str(failures),
                        errors=str(errors), time=_junit_time(doc.get("seconds")))
    for exp in doc["experiments"]:
        failed = sum(1 for c in exp["checks"] if not c["passed"])
        suite = ET.SubElement(suites, "testsuite", name=exp["id"], tests=str(len(exp["checks"])),
                              failures=str(failed), errors="1" if exp.get("error") else "0", skipped="0",
                              time=_junit_time(exp.get("seconds")))
        props = ET.SubElement(suite, "properties")
        for key, value in (("score", exp["score"]), ("max_score", exp["max_score"]),
                           ("weights", doc["weights"]["sha256"][:12])):
            ET.SubElement(props, "property", name=key, value=str(value))
        for c in exp["checks"]:
            case = ET.SubElement(suite, "testcase", classname=f"{exp['id']}.tier{c['tier']}", name=c["name"],
                                 time=_junit_time(c.get("seconds")))
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
    buffer = io.BytesIO()
    ET.ElementTree(suites).write(buffer, encoding="utf-8", xml_declaration=True)
    atomic.write_bytes(Path(path), buffer.getvalue())
