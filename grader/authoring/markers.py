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


def strip_solutions(text: str, filename: str) -> str:
    """Return the skeleton for a reference file's ``text``.

    ``filename`` is the path shown in error messages and in the generated
    ``NotImplementedError`` (e.g. ``exp_3_1_vgg/layers_2.py``).
    """
    lines = text.splitlines()
    out: list[str] = []
    mode: str | None = None  # None, "solution" or "refonly"
    start = 0
    hints: list[str] = []
    indent = ""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped in (BEGIN_SOLUTION, BEGIN_REFONLY):
            if mode is not None:
                raise MarkerError(f"{filename}:{i + 1}: {stripped!r} inside an open block started at line {start + 1}")
            mode = "solution" if stripped == BEGIN_SOLUTION else "refonly"
            start, hints = i, []
            indent = line[: len(line) - len(line.lstrip())]
            continue
        if stripped in (END_SOLUTION, END_REFONLY):
            expected = END_SOLUTION if mode == "solution" else END_REFONLY if mode == "refonly" else None
            if stripped != expected:
                raise MarkerError(f"{filename}:{i + 1}: {stripped!r} without a matching begin marker")
            if mode == "solution":
                out.extend(f"{indent}# {h}" if h else f"{indent}#" for h in hints)
                where = _enclosing_name(lines, start, len(indent))
                out.append(f'{indent}raise NotImplementedError("TODO in {filename}: complete {where}")')
            mode = None
            continue
        if mode is None:
            out.append(line)
        elif mode == "solution" and stripped.startswith(HINT):
            hints.append(stripped[len(HINT):].strip())
    if mode is not None:
        raise MarkerError(f"{filename}:{start + 1}: block opened here is never closed")
    # A removed reference-only block leaves its surrounding blank lines behind; keep at
    # most two in a row, as PEP 8 does.
    tidy: list[str] = []
    for line in out:
        if not line.strip() and len(tidy) >= 2 and not tidy[-1].strip() and not tidy[-2].strip():
            continue
        tidy.append(line)
    return "\n".join(tidy) + ("\n" if text.endswith("\n") else "")


def regions(text: str) -> list[tuple[str, str]]:
    """Each non-marker line of a reference file, stripped, with its region.

    The region is ``"given"`` (outside any block: the book's own code), ``"solution"``
    or ``"refonly"``. Leak scans and the skeleton tests use this one reading of the markers.
    """
    out: list[tuple[str, str]] = []
    region = "given"
    for line in text.splitlines():
        s = line.strip()
        if s == BEGIN_SOLUTION:
            region = "solution"
        elif s == BEGIN_REFONLY:
            region = "refonly"
        elif s in (END_SOLUTION, END_REFONLY):
            region = "given"
        else:
            out.append((region, s))
    return out


def solution_lines(text: str) -> list[str]:
    """The non-blank, non-comment code lines inside solution blocks (for leak scans)."""
    return [s for region, s in regions(text) if region == "solution" and s and not s.startswith("#")]


def skeleton_for(path: Path, reference_root: Path) -> str:
    rel = path.relative_to(reference_root).as_posix()
    return strip_solutions(path.read_text(encoding="utf-8"), rel)
