"""What the book's ``get_top5`` and ``evaluate`` print, read back (experiment 3.2, both editions).

``get_top5`` prints a ``------ Top 5 of <image> ------`` line, then ``0.931641 - n02123045
tabby`` lines, best first; ``evaluate`` ends with ``accuracy1: 1.000000 (1/1)``.
"""
from __future__ import annotations

import re

import numpy as np

TOP_LINE = re.compile(r"^\s*[-+0-9.eE]+\s+-\s+(.+?)\s*$")
ACCURACY_LINE = re.compile(r"accuracy1:\s*[-+0-9.eE]+\s*\((\d+)/(\d+)\)")


def printed_top1_ids(text: str, synset_lines: list[str]) -> list[int]:
    """Class ids whose synset line is the first name printed after the last "Top 5 of" line."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if "Top 5 of" in line]
    for line in lines[starts[-1] + 1:] if starts else []:
        match = TOP_LINE.match(line)
        if match:
            name = match.group(1)
            return [i for i, words in enumerate(synset_lines) if words.strip() == name]
    return []


def read_printed(text: str, synset_lines: list[str], out: dict) -> None:
    """Put ``evaluate_top1_ids`` and ``evaluate_accuracy1`` ``[hits, total]`` into ``out`` when printed."""
    ids = printed_top1_ids(text, synset_lines)
    if ids:
        out["evaluate_top1_ids"] = np.array(ids, dtype=np.float64)
    accuracy = ACCURACY_LINE.findall(text)
    if accuracy:
        out["evaluate_accuracy1"] = np.array([int(v) for v in accuracy[-1]], dtype=np.float64)
