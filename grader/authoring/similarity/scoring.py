"""Score every pair of submissions from copydetect's fingerprints, counting the students' own code only.

Each file is tokenised and fingerprinted by copydetect (:class:`copydetect.CodeFingerprint`:
names become ``V``/``F``/``O``, strings ``S``, comments and whitespace vanish; every k-gram of
what is left is hashed; a *token* is one character of that filtered text). The given code (the skeletons) is *boilerplate*: its fingerprints
are removed from every file before anything is compared, as copydetect does. copydetect would
still count the given characters of a k-gram that straddles given and student code, so two
students who merely start a line alike would share 24 characters of the skeleton at every
TODO; here a character under any given k-gram is not the student's (:attr:`FilePrint.own`) and
never counts, neither as a token of the file nor as a matched one.

Code that more than ``common`` submissions share in the same file is common knowledge (the
obvious one-line answer to a TODO), not evidence between two of them: in a large class its
fingerprints join the boilerplate of that file (``common=0`` turns this off).

Two submissions are compared file by file: the same file name in the same experiment (the
grader imports the book's file names, so code does not move between files). Over a *part*
of the pair (all its files, or one experiment's):

* ``tokens_a``: A's own tokens in the part's files; likewise ``tokens_b``;
* ``matched_a``: A's own tokens inside a k-gram that B's file of the same name also holds;
* ``similarity_a = matched_a / tokens_a`` (how much of A is found in B), ``similarity_b`` alike;
* ``score = (matched_a + matched_b) / (tokens_a + tokens_b)``: matched tokens over all own
  tokens of the part, both directions.

The pair's score is that of its best part: all the files, or one experiment in which each
side wrote at least :data:`MIN_PART_TOKENS` own tokens. A student who copied one experiment
and wrote the others alone shares only a third of all the files, but all of that experiment.

Cost: fingerprinting grows with the total size of the files; comparing, with the number of
pairs times the files per pair (about 8 for whole submissions: n (n - 1) / 2 * 8 file
pairs, each a set intersection, plus an array pass when they share a fingerprint). Only one
file name's fingerprints are held at a time; the pairs themselves are n (n - 1) / 2 small
records.
"""
from __future__ import annotations

import io
import itertools
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from copydetect import CodeFingerprint
from copydetect.utils import filter_code, find_fingerprint_overlap, hashed_kgrams

from grader.authoring.similarity.collect import Submission

NOISE_TOKENS = 25   # copydetect's default k: shorter common runs of filtered text are noise
TOP_FILES = 3       # files named per pair in the CSV
MIN_PART_TOKENS = 100   # own tokens each side needs in an experiment for it to score the pair alone


def default_common(n: int) -> int:
    """How many submissions may share a fingerprint before it is common knowledge: 10 %, at least 10."""
    return max(10, math.ceil(0.1 * n))


@dataclass
class FilePrint:
    """One file's copydetect fingerprint, and which of its filtered characters the student wrote.

    ``offsets`` is copydetect's table from filtered back to raw positions (see :func:`_raw_ranges`).
    """
    fp: CodeFingerprint
    own: np.ndarray          # bool per filtered character: under no given (or common) k-gram
    offsets: np.ndarray
    k: int

    @property
    def tokens(self) -> int:
        return int(self.own.sum())

    def matched(self, other: "FilePrint") -> tuple[np.ndarray, np.ndarray]:
        """Bool masks (this file's, the other's) of the own characters under a shared fingerprint."""
        idx_a, idx_b = find_fingerprint_overlap(self.fp.hashes, other.fp.hashes, self.fp.hash_idx, other.fp.hash_idx)
        return _covered(idx_a, self.k, self.own.size) & self.own, _covered(idx_b, other.k, other.own.size) & other.own

    def without(self, boilerplate: np.ndarray) -> "FilePrint":
        """The same file fingerprinted again with more boilerplate (no second tokenising)."""
        return _from_filtered(self.fp.filtered_code, self.offsets, boilerplate, self.k)


def fingerprint(text: str, boilerplate: np.ndarray, k: int = NOISE_TOKENS) -> FilePrint:
    """copydetect's fingerprint of one Python file's text, minus ``boilerplate``, with its own characters."""
    filtered, offsets = filter_code(text, "submission.py", "python")
    return _from_filtered(filtered, offsets, boilerplate, k)


def _from_filtered(filtered: str, offsets: np.ndarray, boilerplate: np.ndarray, k: int) -> FilePrint:
    # Tokenising (pygments) is most of the cost, so it is done once per file, by filter_code;
    # copydetect then fingerprints the filtered text as it is.
    fp = CodeFingerprint("submission.py", k, 1, boilerplate=boilerplate, filter=False, fp=io.StringIO(filtered))
    size = len(filtered)
    if size < k:
        return FilePrint(fp, np.zeros(size, dtype=bool), offsets, k)   # too short to hold one fingerprint
    starts = np.flatnonzero(np.isin(hashed_kgrams(filtered, k), boilerplate))
    return FilePrint(fp, ~_covered(starts, k, size), offsets, k)


def boilerplate_hashes(texts: list[str], k: int = NOISE_TOKENS) -> np.ndarray:
    """Every k-gram hash of the given code (the skeletons), sorted and unique."""
    hashes = [hashed_kgrams(filter_code(text, "given.py", "python")[0], k) for text in texts]
    hashes = [h for h in hashes if h.size]
    return np.unique(np.concatenate(hashes)).astype(np.int64) if hashes else np.array([], dtype=np.int64)


def _covered(starts, k: int, size: int) -> np.ndarray:
    """Bool mask of the characters inside a k-gram starting at one of ``starts``."""
    starts = np.asarray(starts, dtype=np.int64)
    edges = (np.bincount(starts, minlength=size + 1)[:size + 1]
             - np.bincount(np.minimum(starts + k, size), minlength=size + 1)[:size + 1])
    return np.cumsum(edges[:-1]) > 0


@dataclass
class Part:
    """The counts of a pair over some of its files: one experiment's, or all of them."""
    matched_a: int = 0
    matched_b: int = 0
    tokens_a: int = 0
    tokens_b: int = 0

    @property
    def matched(self) -> int:
        return self.matched_a + self.matched_b

    @property
    def score(self) -> float:
        total = self.tokens_a + self.tokens_b
        return self.matched / total if total else 0.0

    @property
    def similarity_a(self) -> float:
        return self.matched_a / self.tokens_a if self.tokens_a else 0.0

    @property
    def similarity_b(self) -> float:
        return self.matched_b / self.tokens_b if self.tokens_b else 0.0

    def counts(self) -> bool:
        """Whether this part may give the pair its score: each side wrote enough code of its own."""
        return min(self.tokens_a, self.tokens_b) >= MIN_PART_TOKENS


ALL = "all"   # the name of the part made of all the files of the pair


@dataclass
class Pair:
    """Submissions ``a`` and ``b`` (indices into the submission list) compared.

    ``parts`` holds all the files (:data:`ALL`) and each experiment either side has code in.
    The pair's ``score`` is that of its ``best`` part: the highest of all the files and of
    each experiment where both wrote at least :data:`MIN_PART_TOKENS` own tokens, so a pair
    that shares one experiment ranks as high as one that shares everything.
    """
    a: int
    b: int
    parts: dict[str, Part] = field(default_factory=dict)
    files: dict[tuple[str, str], int] = field(default_factory=dict)   # file -> matched tokens, both sides

    @property
    def best(self) -> tuple[str, Part]:
        whole = self.parts.get(ALL, Part())
        chosen = (ALL, whole)
        for name, part in self.parts.items():
            if name != ALL and part.counts() and part.score > chosen[1].score:
                chosen = (name, part)
        return chosen

    @property
    def score(self) -> float:
        return self.best[1].score

    def top_files(self, n: int = TOP_FILES) -> list[tuple[tuple[str, str], int]]:
        """The files with the most matched tokens, most first (files without a match left out)."""
        ranked = sorted(self.files.items(), key=lambda item: (-item[1], item[0]))
        return [(key, count) for key, count in ranked[:n] if count > 0]


@dataclass
class Scoring:
    """What :func:`score_pairs` found: the ranked pairs, and what the caller needs to redo a pair."""
    pairs: list[Pair]
    boilerplate: dict[tuple[str, str], np.ndarray]   # per file: the given and the common fingerprints
    common: dict[tuple[str, str], int]               # per file: how many fingerprints were common
    stats: dict


def score_pairs(subs: list[Submission], boilerplate: np.ndarray, common: int | None = None,
                k: int = NOISE_TOKENS, progress=None) -> Scoring:
    """Every pair of ``subs``, ranked most similar first.

    ``common``: a fingerprint held by more than this many submissions (in the same file) is
    ignored; None takes :func:`default_common`, 0 keeps everything. ``progress(key, files,
    seconds)`` is called after each file name is done. The ranking is by ``score``, then by
    the larger one-sided similarity of the best part, then by the ids (a stable order).
    """
    n = len(subs)
    limit = default_common(n) if common is None else common
    tokens: list[Counter] = [Counter() for _ in range(n)]                  # per submission: experiment -> tokens
    matched: dict[tuple[int, int], dict[str, list[int]]] = {}               # per pair: experiment -> [a, b]
    files: dict[tuple[int, int], dict[tuple[str, str], int]] = {}
    per_file_bp: dict[tuple[str, str], np.ndarray] = {}
    common_counts: dict[tuple[str, str], int] = {}
    stats = {"files": 0, "file_pairs": 0, "compared": 0}
    for key, members in _by_file(subs).items():
        started = time.monotonic()
        prints = _fingerprints([subs[i].files[key] for i in members], boilerplate, k)
        file_bp = boilerplate
        if limit and len(members) > limit:
            held = Counter(h for p in prints for h in p.fp.hashes)
            shared = np.array(sorted(h for h, count in held.items() if count > limit), dtype=np.int64)
            if shared.size:
                common_counts[key] = int(shared.size)
                file_bp = np.union1d(boilerplate, shared)
                again: dict[int, FilePrint] = {}
                for p in prints:
                    if id(p) not in again:
                        again[id(p)] = p.without(file_bp)
                prints = [again[id(p)] for p in prints]
        per_file_bp[key] = file_bp
        stats["files"] += len(prints)
        for i, p in zip(members, prints):
            tokens[i][key[0]] += p.tokens
        for (i, pa), (j, pb) in itertools.combinations(zip(members, prints), 2):
            stats["file_pairs"] += 1
            if not pa.fp.hashes or pa.fp.hashes.isdisjoint(pb.fp.hashes):
                continue
            stats["compared"] += 1
            mask_a, mask_b = pa.matched(pb)
            got_a, got_b = int(mask_a.sum()), int(mask_b.sum())
            if got_a or got_b:
                counts = matched.setdefault((i, j), {}).setdefault(key[0], [0, 0])
                counts[0] += got_a
                counts[1] += got_b
                files.setdefault((i, j), {})[key] = got_a + got_b
        if progress is not None:
            progress(key, len(members), time.monotonic() - started)
    pairs = [_pair(i, j, tokens, matched.get((i, j), {}), files.get((i, j), {}))
             for i, j in itertools.combinations(range(n), 2)]
    pairs.sort(key=lambda p: (-p.score, -max(p.best[1].similarity_a, p.best[1].similarity_b),
                              subs[p.a].id, subs[p.b].id))
    return Scoring(pairs, per_file_bp, common_counts, stats)


def _fingerprints(texts: list[str], boilerplate: np.ndarray, k: int) -> list[FilePrint]:
    """The fingerprint of each text; equal texts (a skeleton left as it was) share one."""
    done: dict[str, FilePrint] = {}
    for text in texts:
        if text not in done:
            done[text] = fingerprint(text, boilerplate, k)
    return [done[text] for text in texts]


def _pair(i: int, j: int, tokens: list[Counter], matched: dict[str, list[int]], files: dict) -> Pair:
    """The :class:`Pair` of submissions i, j from the per-experiment counts."""
    pair = Pair(i, j, files=files)
    whole = Part()
    for exp in sorted(set(tokens[i]) | set(tokens[j])):
        got = matched.get(exp, [0, 0])
        part = Part(got[0], got[1], tokens[i][exp], tokens[j][exp])
        if part.tokens_a or part.tokens_b:
            pair.parts[exp] = part
        whole.matched_a += part.matched_a
        whole.matched_b += part.matched_b
        whole.tokens_a += part.tokens_a
        whole.tokens_b += part.tokens_b
    pair.parts[ALL] = whole
    return pair


def _by_file(subs: list[Submission]) -> dict[tuple[str, str], list[int]]:
    """Which submissions hold each (experiment, file name), in submission order."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, sub in enumerate(subs):
        for key in sub.files:
            groups.setdefault(key, []).append(i)
    return dict(sorted(groups.items()))


def matching_regions(a: str, b: str, boilerplate: np.ndarray, k: int = NOISE_TOKENS,
                     cache: dict | None = None) -> tuple[list, list]:
    """The students' own matching code of two texts, as sorted (start, end) character ranges of each.

    Run for the page's top pairs only, so no other pair's regions are ever kept. ``cache``
    (a dict the caller keeps) spares fingerprinting a file again for each pair it is in.
    """
    cache = {} if cache is None else cache
    prints = []
    for text in (a, b):
        key = (id(boilerplate), text)
        if key not in cache:
            cache[key] = fingerprint(text, boilerplate, k)
        prints.append(cache[key])
    pa, pb = prints
    if not pa.fp.hashes or pa.fp.hashes.isdisjoint(pb.fp.hashes):
        return [], []
    mask_a, mask_b = pa.matched(pb)
    return _raw_ranges(pa.offsets, mask_a, a), _raw_ranges(pb.offsets, mask_b, b)


_WORD = re.compile(r"\w*")


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _raw_ranges(table: np.ndarray, mask: np.ndarray, raw: str) -> list[tuple[int, int]]:
    """Runs of ``mask`` (filtered positions) as (start, end) ranges of the raw text ``raw``.

    copydetect's offsets table lists, at each place the filter removed or shortened text,
    how many raw characters were removed before it; a filtered position maps to itself plus
    the entry at or after it. A range is widened to whole names at both ends (a run ending
    in ``V`` stands for a whole name).
    """
    if not mask.any():
        return []
    flags = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(flags))
    starts, ends = edges[0::2], edges[1::2] - 1   # inclusive ends
    if len(table):
        def shift(pos):
            return pos + table[:, 1][np.clip(np.searchsorted(table[:, 0], pos), 0, len(table) - 1)]
        starts, ends = shift(starts), shift(ends)
    ranges: list[tuple[int, int]] = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        s, e = max(0, min(s, len(raw))), max(0, min(e + 1, len(raw)))
        if e > 0 and _is_word(raw[e - 1]):
            e = _WORD.match(raw, e).end()
        while 0 < s < len(raw) and _is_word(raw[s]) and _is_word(raw[s - 1]):
            s -= 1   # start at the start of a name, not inside it
        if e <= s:
            continue
        if ranges and s <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], e))
        else:
            ranges.append((s, e))
    return ranges
