"""Solution markers: one reference source yields the student skeleton.

Inside ``grader/reference/**.py``:

``### BEGIN SOLUTION`` … ``### END SOLUTION``
    The student writes this part. In the skeleton the block becomes its hint lines
    (``### HINT text`` inside the block → ``# text``) followed by
    ``raise NotImplementedError(...)`` naming the file and the function. The book's TODO
    comment stays *above* the block in the reference, so it survives unchanged.

``### BEGIN REFERENCE ONLY`` … ``### END REFERENCE ONLY``
    Kit-only code (e.g. a fast path the grader uses to compute goldens quickly);
    removed from the skeleton without a trace.

Markers must stand alone on their line (indentation allowed). Unbalanced or nested
markers are an error that names the file and line: a silent mis-strip would leak a
solution into a student release.
"""
from __future__ import annotations

import re
from pathlib import Path

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_REFONLY = "### BEGIN REFERENCE ONLY"
END_REFONLY = "### END REFERENCE ONLY"
HINT = "### HINT"
# Every marker line; a release holding one of them has leaked part of a reference file.
MARKERS = frozenset({BEGIN_SOLUTION, END_SOLUTION, BEGIN_REFONLY, END_REFONLY})
_BEGIN = {BEGIN_SOLUTION: "solution", BEGIN_REFONLY: "refonly"}
_END = {END_SOLUTION: "solution", END_REFONLY: "refonly"}

_DEF_RE = re.compile(r"^(\s*)(?:async\s+)?(def|class)\s+([A-Za-z_][A-Za-z0-9_]*)")


class MarkerError(ValueError):
    """A reference file's markers are malformed."""


def _enclosing_name(lines: list[str], index: int, indent: int) -> str:
    """Dotted name of the def/class that encloses line ``index`` (indent ``indent``)."""
    names: list[str] = []
    limit = indent
    for line in reversed(lines[:index]):
        m = _DEF_RE.match(line)
        if m and len(m.group(1)) < limit:
            names.append(m.group(3))
            limit = len(m.group(1))
            if limit == 0:
                break
    return ".".join(reversed(names)) or "<module>"


def read_lines(text: str, filename: str = "<reference>") -> list[tuple[str, str | None, str]]:
    """The one reading of the markers: each line of ``text`` with its region and marker role.

    Returns ``(region, marker, line)`` per line, in order. ``region`` is ``"given"``
    (outside any block: the book's own code), ``"solution"`` or ``"refonly"``; a marker
    line carries the region of the block it opens or closes and ``marker`` is
    ``"begin"`` or ``"end"`` (``None`` on every other line). ``line`` is unstripped.
    Raises :class:`MarkerError` naming ``filename`` and the line for unbalanced,
    nested or mismatched markers.
    """
    out: list[tuple[str, str | None, str]] = []
    open_region: str | None = None
    start = 0
    for i, line in enumerate(text.splitlines()):
        stripped = line.strip()
        if stripped in _BEGIN:
            if open_region is not None:
                raise MarkerError(f"{filename}:{i + 1}: {stripped!r} inside an open block started at line {start + 1}")
            open_region, start = _BEGIN[stripped], i
            out.append((open_region, "begin", line))
        elif stripped in _END:
            if _END[stripped] != open_region:
                raise MarkerError(f"{filename}:{i + 1}: {stripped!r} without a matching begin marker")
            out.append((open_region, "end", line))
            open_region = None
        else:
            out.append((open_region or "given", None, line))
    if open_region is not None:
        raise MarkerError(f"{filename}:{start + 1}: block opened here is never closed")
    return out


def strip_solutions(text: str, filename: str) -> str:
    """Return the skeleton for a reference file's ``text``.

    ``filename`` is the path shown in error messages and in the generated
    ``NotImplementedError`` (e.g. ``exp_3_1_vgg/layers_2.py``).
    """
    lines = text.splitlines()
    out: list[str] = []
    start = 0
    hints: list[str] = []
    indent = ""
    for i, (region, marker, line) in enumerate(read_lines(text, filename)):
        stripped = line.strip()
        if marker == "begin":
            start, hints = i, []
            indent = line[: len(line) - len(line.lstrip())]
        elif marker == "end":
            if region == "solution":
                out.extend(f"{indent}# {h}" if h else f"{indent}#" for h in hints)
                where = _enclosing_name(lines, start, len(indent))
                out.append(f'{indent}raise NotImplementedError("TODO in {filename}: complete {where}")')
        elif region == "given":
            out.append(line)
        elif region == "solution" and stripped.startswith(HINT):
            hints.append(stripped[len(HINT):].strip())
    # A removed reference-only block leaves its surrounding blank lines behind; keep at
    # most two in a row, as PEP 8 does.
    tidy: list[str] = []
    for line in out:
        if not line.strip() and len(tidy) >= 2 and not tidy[-1].strip() and not tidy[-2].strip():
            continue
        tidy.append(line)
    return "\n".join(tidy) + ("\n" if text.endswith("\n") else "")


def regions(text: str, filename: str = "<reference>") -> list[tuple[str, str]]:
    """Each non-marker line of a reference file, stripped, with its region.

    The region is ``"given"``, ``"solution"`` or ``"refonly"`` (see :func:`read_lines`,
    whose errors it raises). Leak scans and the skeleton tests use this one reading.
    """
    return [(region, line.strip()) for region, marker, line in read_lines(text, filename) if marker is None]


def given_lines(text: str, filename: str = "<reference>") -> set[str]:
    """The stripped lines outside every block: code the book prints, hence no secret."""
    return {s for region, s in regions(text, filename) if region == "given"}


def solution_lines(text: str, filename: str = "<reference>") -> list[str]:
    """The non-blank, non-comment code lines inside solution blocks (for leak scans)."""
    return [s for region, s in regions(text, filename) if region == "solution" and s and not s.startswith("#")]


def leaked_lines(reference_text: str, generated_text: str, filename: str = "<reference>") -> list[str]:
    """Solution lines of ``reference_text`` that stand on a line of ``generated_text``.

    A line that also appears outside the reference's blocks (``return self.output``) is
    given code and not counted. Used to prove a skeleton gives no answer away.
    """
    present = {line.strip() for line in generated_text.splitlines()}
    given = given_lines(reference_text, filename)
    return [s for s in solution_lines(reference_text, filename) if s in present and s not in given]


def skeleton_for(path: Path, reference_root: Path) -> str:
    rel = path.relative_to(reference_root).as_posix()
    return strip_solutions(path.read_text(encoding="utf-8"), rel)
