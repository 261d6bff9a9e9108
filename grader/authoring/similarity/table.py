"""``pairs.csv``: one row per pair of submissions, most similar first, safe to open in a spreadsheet."""
from __future__ import annotations

import csv
import io

from grader.authoring.similarity.collect import Submission
from grader.authoring.similarity.scoring import ALL, Pair
from grader.kit.paths import EXPERIMENTS

# score .. tokens_b describe the pair's best part (``part``: all files, or one experiment);
# score_all and score_<experiment> give the other parts for comparison.
COLUMNS = ("rank", "id_a", "id_b", "score", "part", "similarity_a", "similarity_b", "matched_tokens",
           "tokens_a", "tokens_b", "score_all", *(f"score_{exp}" for exp in EXPERIMENTS), "top_files")

# A spreadsheet runs a cell starting with one of these as a formula (or a DDE command).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def safe_cell(value) -> str:
    """``value`` as CSV text a spreadsheet shows as text: line breaks -> spaces, formulas defused with ``'``."""
    text = str(value)
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return text.replace("\r", " ").replace("\n", " ")


def file_label(key: tuple[str, str]) -> str:
    """``("exp_3_1_vgg", "layers_1.py")`` -> ``exp_3_1_vgg/layers_1.py``."""
    return f"{key[0]}/{key[1]}"


def rows(pairs: list[Pair], subs: list[Submission]) -> list[dict]:
    """The CSV rows of ``pairs`` (already ranked), values as text, not yet defused."""
    out = []
    for rank, p in enumerate(pairs, start=1):
        name, best = p.best
        row = {"rank": rank, "id_a": subs[p.a].id, "id_b": subs[p.b].id, "score": f"{best.score:.4f}",
               "part": name, "similarity_a": f"{best.similarity_a:.4f}", "similarity_b": f"{best.similarity_b:.4f}",
               "matched_tokens": best.matched, "tokens_a": best.tokens_a, "tokens_b": best.tokens_b}
        for part in (ALL, *EXPERIMENTS):
            # empty: neither side has code of its own there
            row["score_all" if part == ALL else f"score_{part}"] = f"{p.parts[part].score:.4f}" if part in p.parts else ""
        row["top_files"] = "; ".join(f"{file_label(key)}: {count}" for key, count in p.top_files())
        out.append(row)
    return out


def render(pairs: list[Pair], subs: list[Submission]) -> str:
    """The text of ``pairs.csv``: a header, then one defused row per pair in ranked order."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows(pairs, subs):
        writer.writerow({k: safe_cell(v) for k, v in row.items()})
    return buffer.getvalue()
