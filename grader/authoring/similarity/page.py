"""``index.html``: the most similar pairs, their matching code highlighted side by side.

Every piece of text that comes from a submission (ids, file names, code) is HTML-escaped,
and the page forbids scripts and every outside resource (a Content-Security-Policy), so a
hostile folder name or file cannot run anything in the reviewer's browser. Long stretches
of code without a match are cut to a few lines of context, and each side of a file is
capped, so the page stays small whatever the submissions hold.
"""
from __future__ import annotations

from html import escape

from grader.authoring.similarity.collect import Skipped, Submission
from grader.authoring.similarity.scoring import ALL, MIN_PART_TOKENS, Scoring, matching_regions
from grader.authoring.similarity.table import file_label

CONTEXT_LINES = 3          # lines kept around each match
MAX_PANE_CHARS = 60_000    # of one file's side, after cutting
MAX_NOTES = 200            # lines of skipped submissions and notes

CAVEAT = ("This page is evidence for a human to review, never a verdict. Similar code can have innocent "
          "causes: the book prints most of the code, students work from the same figures and formulas, "
          "and the short answer to a TODO is often the same line for everyone. Read the highlighted code "
          "before drawing any conclusion, and talk to the students.")

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.caveat { border: 2px solid #c60; background: #fff4e5; padding: .8em 1em; max-width: 60em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: .25em .6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.sides > div { min-width: 0; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: .5em; overflow-x: auto; font-size: 85%; }
mark { background: #ffd27a; }
.gap { color: #888; font-style: italic; }
.muted { color: #666; }
"""


def render(subs: list[Submission], result: Scoring, top: int, skipped: list[Skipped], settings: dict) -> str:
    """The whole page: the caveat, the settings, the top ``top`` pairs as a table, then each pair's code."""
    shown = result.pairs[:top]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
             "<title>Similar submissions: pairs to review</title>", f"<style>{_STYLE}</style></head><body>",
             "<h1>Similar submissions: pairs to review</h1>", f'<p class="caveat">{escape(CAVEAT)}</p>',
             _settings(settings, len(subs), len(result.pairs), len(shown)),
             _summary(shown, subs), _skipped(skipped, subs)]
    prints: dict = {}   # fingerprints of the shown files, shared by the pairs they are in
    for rank, pair in enumerate(shown, start=1):
        parts.append(_section(rank, pair, subs, result, prints))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _settings(settings: dict, n_subs: int, n_pairs: int, n_shown: int) -> str:
    common = settings.get("common")
    common_text = (f"code that more than {common} submissions share in a file is ignored as common"
                   if common else "no code is ignored as common")
    return (f"<p>{n_subs} submissions compared ({n_pairs} pairs), experiments "
            f"{escape(', '.join(settings.get('experiments', [])))}; the {n_shown} most similar pairs are shown. "
            f"The given code (the skeletons) never counts; matches shorter than {settings.get('k')} filtered "
            f"characters are noise; {escape(common_text)}. "
            f"<b>score</b> = matched tokens of both sides / all own tokens of both (a token is a character "
            f"of the code with names, strings, comments and spaces filtered out), over the pair's best "
            f"<b>part</b>: all its files, or one experiment where each side wrote {MIN_PART_TOKENS} tokens or "
            f"more; <b>A in B</b> = share of A's own code also found in B (and the other way).</p>")


def _summary(shown, subs: list[Submission]) -> str:
    head = ("<tr><th>rank</th><th>A</th><th>B</th><th>score</th><th>part</th><th>A in B</th><th>B in A</th>"
            "<th>matched tokens</th><th>all files</th><th>files that match most</th></tr>")
    body = []
    for rank, p in enumerate(shown, start=1):
        name, best = p.best
        files = "<br>".join(f"{escape(file_label(key))} ({count})" for key, count in p.top_files()) or "&ndash;"
        body.append(f'<tr><td class="num"><a href="#pair-{rank}">{rank}</a></td><td>{escape(subs[p.a].id)}</td>'
                    f"<td>{escape(subs[p.b].id)}</td><td class=\"num\">{best.score:.3f}</td><td>{escape(name)}</td>"
                    f'<td class="num">{best.similarity_a:.3f}</td><td class="num">{best.similarity_b:.3f}</td>'
                    f'<td class="num">{best.matched}</td><td class="num">{p.parts[ALL].score:.3f}</td>'
                    f"<td>{files}</td></tr>")
    if not body:
        return "<p>Fewer than two submissions could be read: there is no pair to compare.</p>"
    return f"<table>{head}{''.join(body)}</table>"


def _skipped(skipped: list[Skipped], subs: list[Submission]) -> str:
    items = [f"<li>{escape(s.id)}: skipped, {escape(s.reason)}</li>" for s in skipped]
    items += [f"<li>{escape(sub.id)}: {escape(note)}</li>" for sub in subs for note in sub.notes]
    if not items:
        return ""
    more = len(items) - MAX_NOTES
    tail = f"<li class=\"muted\">... and {more} more</li>" if more > 0 else ""
    return f"<h2>Not compared, or compared in part</h2><ul>{''.join(items[:MAX_NOTES])}{tail}</ul>"


def _section(rank: int, pair, subs: list[Submission], result: Scoring, prints: dict) -> str:
    a, b = subs[pair.a], subs[pair.b]
    out = [f'<section id="pair-{rank}"><h2>{rank}. {escape(a.id)} &harr; {escape(b.id)}</h2>']
    for name, part in pair.parts.items():
        out.append(f"<p>{escape(name)}: score {part.score:.3f}; {part.matched_a} of {part.tokens_a} own tokens "
                   f"of A found in B, {part.matched_b} of {part.tokens_b} of B found in A.</p>")
    files = [key for key, _ in sorted(pair.files.items(), key=lambda item: (-item[1], item[0])) if pair.files[key]]
    if not files:
        out.append('<p class="muted">No matching code of their own.</p>')
    for key in files:
        text_a, text_b = a.files[key], b.files[key]
        ranges_a, ranges_b = matching_regions(text_a, text_b, result.boilerplate[key], cache=prints)
        out.append(f"<h3>{escape(file_label(key))} <span class=\"muted\">({pair.files[key]} matched tokens)</span></h3>"
                   f'<div class="sides"><div><b>A: {escape(a.id)}</b><pre>{highlight(text_a, ranges_a)}</pre></div>'
                   f"<div><b>B: {escape(b.id)}</b><pre>{highlight(text_b, ranges_b)}</pre></div></div>")
    out.append("</section>")
    return "\n".join(out)


def highlight(text: str, ranges: list[tuple[int, int]], context: int = CONTEXT_LINES,
              limit: int = MAX_PANE_CHARS) -> str:
    """HTML of ``text`` with ``ranges`` (sorted, disjoint character ranges) in ``<mark>``, all escaped.

    Between matches only ``context`` lines on each side are kept; the rest becomes a gap
    line saying how many lines were left out. The output is cut after ``limit`` characters.
    """
    out: list[str] = []
    pos = 0
    for i, (start, end) in enumerate(ranges):
        out.append(_gap_text(text[pos:start], keep_head=context if i else -1, keep_tail=context))
        out.append(f"<mark>{escape(text[start:end])}</mark>")
        pos = end
    out.append(_gap_text(text[pos:], keep_head=context if ranges else -1, keep_tail=-1))
    html = "".join(out)
    if len(html) > limit:
        html = _cut(html, limit) + '\n<span class="gap">[... the rest of this file is not shown]</span>'
    return html


def _cut(html: str, limit: int) -> str:
    """``html`` cut before ``limit`` characters, at a line end when there is one, never inside a
    tag or an entity, with an open ``<mark>`` closed."""
    cut = html.rfind("\n", 0, limit)
    if cut <= 0:
        cut = limit
        for opener, closer in (("<", ">"), ("&", ";")):
            i = html.rfind(opener, 0, cut)
            if i >= 0 and html.find(closer, i, cut) < 0:
                cut = i
    html = html[:cut]
    return html + "</mark>" if html.count("<mark>") > html.count("</mark>") else html


def _gap_text(segment: str, keep_head: int, keep_tail: int) -> str:
    """Escaped ``segment`` of code without a match, cut to ``keep_head`` whole lines after its
    start and ``keep_tail`` before its end; -1 keeps nothing on that side (the start or the end
    of the file). The partial lines touching a match are always kept."""
    if keep_head < 0 and keep_tail < 0:
        return escape(segment)
    lines = segment.split("\n")
    head = lines[:keep_head + 1] if keep_head >= 0 else []
    tail = lines[len(lines) - keep_tail - 1:] if keep_tail >= 0 else []
    dropped = len(lines) - len(head) - len(tail)
    if dropped < 2:
        return escape(segment)
    gap = f'<span class="gap">[... {dropped} lines without a match]</span>'
    return ((escape("\n".join(head)) + "\n" if head else "") + gap
            + ("\n" + escape("\n".join(tail)) if tail else ""))
