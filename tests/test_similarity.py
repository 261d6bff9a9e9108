"""``python -m grader similarity``: a disguised copy ranks first, the skeleton never counts.

One class folder is built once for the module: the reference, two independently written
solutions (tests/solutions/book and vectorised, the rest of each submission left as the
skeleton, as a student's stu_upload/ would be), the pristine skeleton under a hostile name,
two planted-bug variants of the reference (tests/gradeutil.broken_copy, one experiment
each), a copy of the book solution with every local variable and helper renamed, the
comments replaced, the code re-laid out and the functions reordered (done with ``ast``),
one submission as a zip, and a zip that is not one.
"""
from __future__ import annotations

import ast
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader.authoring.similarity import page, table
from grader.authoring.similarity.collect import Submission, collect
from grader.authoring.similarity.scoring import boilerplate_hashes, fingerprint, score_pairs
from grader.authoring.skeletons import expected_skeletons
from grader.kit.paths import EXPERIMENTS, REFERENCE_DIR, REPO_ROOT

import gradeutil  # tests/, on sys.path

SOLUTIONS = REPO_ROOT / "tests" / "solutions"
HOSTILE = '=HYPERLINK("http:x")<img src=x onerror=alert(1)>\x1b[2J'
SHOWN_HOSTILE = '=HYPERLINK("http:x")<img src=x onerror=alert(1)>?[2J'   # its printable id
COPY_PAIR = {"book", "book_copy"}
INDEPENDENT = [{"book", "vectorised"}, {"book", "reference"}, {"vectorised", "reference"}]
BUG_PAIRS = [{"reference", "bug_relu"}, {"reference", "bug_dlp"}]
REFERENCE_FAMILY = {"reference", "bug_relu", "bug_dlp"}   # one code: the reference, plus a line changed
# Measured: the disguised copy 0.89 (its best part, 3.3), the planted-bug pairs 0.99 and 1.00,
# independent pairs 0.39 at most (book vs reference in 3.1, whose answers are short and the
# book prints much of them). The thresholds leave room on both sides.
COPY_AT_LEAST = 0.8
INDEPENDENT_AT_MOST = 0.5
N_SUBMISSIONS = 7   # the broken zip is not one


# ----- a real disguise: rename, re-comment, re-layout, reorder -------------------------------

class _Renamer(ast.NodeTransformer):
    """Rename the locals of every function and the module's helper functions."""

    def __init__(self, helpers: dict[str, str]):
        self.helpers = helpers
        self.scopes: list[dict[str, str]] = []

    def _lookup(self, name: str) -> str:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return self.helpers.get(name, name)

    def visit_FunctionDef(self, node):
        local = {}
        for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
            if a.arg not in ("self", "cls"):
                local[a.arg] = f"v{len(local)}_{a.arg[::-1]}"
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store) and sub.id not in local:
                local[sub.id] = f"v{len(local)}_{sub.id[::-1]}"
        node.name = self.helpers.get(node.name, node.name) if not self.scopes else node.name
        self.scopes.append(local)
        for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
            a.arg = local.get(a.arg, a.arg)
        self.generic_visit(node)
        self.scopes.pop()
        return node

    def visit_Name(self, node):
        node.id = self._lookup(node.id)
        return node


def _drop_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]


def _reorder(tree: ast.Module) -> None:
    """Reverse the methods of every class and the module's functions; classes too when none
    derives from another of the module (those orders do not change what the code does)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            methods = [n for n in node.body if isinstance(n, ast.FunctionDef)]
            others = [n for n in node.body if not isinstance(n, ast.FunctionDef)]
            node.body = others + methods[::-1]
    names = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    derived = any(isinstance(b, ast.Name) and b.id in names for n in tree.body if isinstance(n, ast.ClassDef)
                  for b in n.bases)
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) or (isinstance(n, ast.ClassDef) and not derived)]
    rest = [n for n in tree.body if n not in defs]
    tree.body = rest + defs[::-1]


def disguise(source: str) -> str:
    """``source`` with locals and helpers renamed, docstrings and comments gone, other comments
    added, laid out again by ``ast.unparse`` and its functions reordered."""
    tree = ast.parse(source)
    helpers = {n.name: f"aux_{i}" for i, n in enumerate(tree.body) if isinstance(n, ast.FunctionDef)}
    tree = _Renamer(helpers).visit(tree)
    _drop_docstrings(tree)
    _reorder(tree)
    lines = []
    for i, line in enumerate(ast.unparse(ast.fix_missing_locations(tree)).splitlines()):
        stripped = line.lstrip()
        if stripped.startswith(("def ", "class ")):
            lines += ["", f"{line[:len(line) - len(stripped)]}# my own version, step {i}"]
        lines.append(line.replace("    ", "  ") + ("  # done" if i % 7 == 3 and not line.rstrip().endswith(":") else ""))
    return "\n".join(lines) + "\n"


def test_the_disguise_changes_the_text_but_keeps_python():
    source = (SOLUTIONS / "book" / "exp_3_1_vgg" / "layers_2.py").read_text()
    out = disguise(source)
    ast.parse(out)
    assert "idxn" not in out and "top = " not in out        # locals renamed
    assert "# formula 3.3" not in out and "# my own version" in out
    assert out.index("class MaxPoolingLayer") < out.index("class ConvolutionalLayer")   # reordered
    assert len(set(source.splitlines()) & set(out.splitlines())) < 15   # hardly a line left as it was


# ----- the class folder ---------------------------------------------------------------------

def _skeletons() -> dict[tuple[str, str], str]:
    return {(rel.parts[1], rel.name): text for rel, text in expected_skeletons().items() if rel.parts[0] == "stu_upload"}


def _student(dest: Path, own: Path | None) -> Path:
    """A stu_upload/-shaped folder: the files of ``own`` (a solution folder), the skeleton elsewhere."""
    for (exp, name), text in _skeletons().items():
        target = dest / exp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        mine = own / exp / name if own is not None else None
        target.write_text(mine.read_text() if mine is not None and mine.is_file() else text)
    return dest


def build_class(base: Path) -> Path:
    """The test's class folder under ``base`` (see the module docstring); returns it."""
    subs = base / "subs"
    subs.mkdir()
    shutil.copytree(REFERENCE_DIR, subs / "reference", ignore=shutil.ignore_patterns("__pycache__"))
    _student(subs / "book", SOLUTIONS / "book")
    _student(subs / HOSTILE, None)
    vectorised = _student(base / "stu_upload", SOLUTIONS / "vectorised")
    members = {f"stu_upload/{p.relative_to(vectorised)}": p.read_bytes() for p in sorted(vectorised.rglob("*.py"))}
    gradeutil.make_zip(subs / "vectorised.zip", members)
    copy = _student(subs / "book_copy", SOLUTIONS / "book")
    for path in sorted(copy.rglob("*.py")):
        if (SOLUTIONS / "book" / path.relative_to(copy)).is_file():
            path.write_text(disguise(path.read_text()))
    bug = gradeutil.broken_copy(base / "b1", "exp_3_3_style_transfer", {"layers_1.py": [
        ("output = np.maximum(self.input, 0)", "output = np.maximum(self.input, 1)")]})
    shutil.move(bug, subs / "bug_relu")
    bug = gradeutil.broken_copy(base / "b2", "exp_3_2_dlp", {"vgg19_demo.py": [
        ("weight = np.transpose(weight, [1, 0]).flatten().astype(np.float64)",
         "weight = weight.flatten().astype(np.float64)")]})
    shutil.move(bug, subs / "bug_dlp")
    (subs / "broken.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    return subs


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory) -> Path:
    return build_class(tmp_path_factory.mktemp("similarity"))


@pytest.fixture(scope="module")
def run(class_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "similarity"
    proc = subprocess.run([sys.executable, "-m", "grader", "similarity", str(class_folder), "--out", str(out),
                           "--top", "30"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out / "pairs.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return proc, out, rows


def _score(rows: list[dict], pair: set[str]) -> tuple[int, float, dict]:
    for i, row in enumerate(rows):
        if {row["id_a"], row["id_b"]} == pair:
            return i, float(row["score"]), row
    raise AssertionError(f"no row for {pair}")


def test_the_disguised_copy_ranks_first(run):
    """First of all pairs of distinct code: only the reference and its planted-bug variants,
    which are the same code but for one line and not disguised at all, may score higher."""
    _, _, rows = run
    distinct = [r for r in rows if not {r["id_a"], r["id_b"]} <= REFERENCE_FAMILY]
    rank, score, row = _score(distinct, COPY_PAIR)
    assert rank == 0, distinct[:3]
    assert score >= COPY_AT_LEAST and row["part"] == "exp_3_3_style_transfer"
    assert _score(rows, COPY_PAIR)[0] == len(BUG_PAIRS)


def test_independent_solutions_rank_low(run):
    _, _, rows = run
    copy = _score(rows, COPY_PAIR)[1]
    for pair in INDEPENDENT:
        score = _score(rows, pair)[1]
        assert score <= INDEPENDENT_AT_MOST and copy - score >= 0.4, (pair, score)


def test_planted_bug_variants_rank_high(run):
    """A variant holds one experiment of the reference with one line changed: it scores near 1
    on that experiment though it shares a small part of all the reference's files."""
    _, _, rows = run
    best_independent = min(_score(rows, p)[0] for p in INDEPENDENT)
    for pair, exp in zip(BUG_PAIRS, ("exp_3_3_style_transfer", "exp_3_2_dlp")):
        rank, score, row = _score(rows, pair)
        assert score >= 0.95 and row["part"] == exp and float(row["score_all"]) < score, row
        assert rank < best_independent, (pair, rank)


def test_the_skeleton_scores_zero_against_everyone(run):
    _, _, rows = run
    mine = [r for r in rows if SHOWN_HOSTILE.replace("=", "'=", 1) in (r["id_a"], r["id_b"])]
    assert len(mine) == N_SUBMISSIONS - 1
    assert all(float(r["score"]) == 0 and r["matched_tokens"] == "0" for r in mine)
    assert all(r["tokens_a" if r["id_a"].startswith("'=") else "tokens_b"] == "0" for r in mine)


def test_csv_has_one_sorted_row_per_pair_and_defused_ids(run):
    _, _, rows = run
    ids = {r["id_a"] for r in rows} | {r["id_b"] for r in rows}
    assert len(ids) == N_SUBMISSIONS and len(rows) == N_SUBMISSIONS * (N_SUBMISSIONS - 1) // 2
    assert len({frozenset((r["id_a"], r["id_b"])) for r in rows}) == len(rows)
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    assert not any(i.startswith(("=", "+", "-", "@")) for i in ids)
    assert not any("\x1b" in i for i in ids)


def test_html_escapes_hostile_ids_and_says_it_is_no_verdict(run):
    proc, out, _ = run
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "<img" not in html and "\x1b" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "never a verdict" in html and "never a verdict" in proc.stdout
    assert "Content-Security-Policy" in html
    assert html.count('<section id="pair-') == N_SUBMISSIONS * (N_SUBMISSIONS - 1) // 2   # --top 30
    assert "<mark>" in html


def test_broken_zip_is_skipped_with_its_reason(run):
    proc, out, rows = run
    assert "skipped broken: zip refused" in proc.stderr
    assert "broken" not in {r["id_a"] for r in rows} | {r["id_b"] for r in rows}
    assert "broken: skipped, zip refused" in (out / "index.html").read_text(encoding="utf-8")


def test_the_extracted_zips_are_removed(run, class_folder, tmp_path):
    # the command's private folder is gone; here collect() is run with a folder we can inspect
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    subs, skipped = collect(class_folder, list(EXPERIMENTS), scratch)
    assert list(scratch.iterdir()) == []
    assert {s.id for s in skipped} == {"broken"} and len(subs) == N_SUBMISSIONS


# ----- units --------------------------------------------------------------------------------

def test_given_code_never_counts_even_next_to_student_code():
    given = "class L(object):\n    def forward(self, input):\n        self.input = input\n"
    tail = "        return self.output\n\n    def backward(self, top_diff):\n        return top_diff * 2\n"
    bp = boilerplate_hashes([given + "        raise NotImplementedError('TODO')\n" + tail])
    mine = fingerprint(given + "        self.output = input * 2\n" + tail, bp)
    # "self.V=input*2" (input is a builtin name): not the 24 given characters on either side
    assert mine.tokens == len("self.V=input*2")
    assert fingerprint(given + "        raise NotImplementedError('TODO')\n" + tail, bp).tokens == 0


def test_common_code_is_ignored_in_a_large_class():
    given = "def f(x):\n    raise NotImplementedError\n"
    line = "def f(x):\n    return (x * 2 + 1) / (x - 3) ** 2 + abs(x)\n"
    special = "def f(x):\n    total = sum(item * item for item in range(x)) / (x + 1)\n    return total\n"
    subs = [Submission(f"s{i}", {("exp_3_1_vgg", "a.py"): line}) for i in range(12)]
    subs += [Submission(f"t{i}", {("exp_3_1_vgg", "a.py"): special}) for i in range(2)]
    bp = boilerplate_hashes([given])
    kept = score_pairs(subs, bp, common=0)
    ignored = score_pairs(subs, bp, common=10)
    def score(result, a, b):
        return next(p.score for p in result.pairs if {subs[p.a].id, subs[p.b].id} == {a, b})
    assert score(kept, "s0", "s1") > 0.9 and score(ignored, "s0", "s1") == 0
    assert score(ignored, "t0", "t1") > 0.9   # two who share what few others wrote still match
    assert ignored.common == {("exp_3_1_vgg", "a.py"): ignored.common[("exp_3_1_vgg", "a.py")]}


@pytest.mark.parametrize("value, shown", [("=1+2", "'=1+2"), ("+x", "'+x"), ("-3 cmd", "'-3 cmd"),
                                          ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("a\nb", "a b"),
                                          ("plain", "plain"), ("0.5000", "0.5000")])
def test_csv_cells_are_defused(value, shown):
    assert table.safe_cell(value) == shown


def test_highlight_escapes_marks_and_cuts_long_gaps():
    text = "".join(f"line {i} <b>&\n" for i in range(100))
    start = text.index("line 50")
    html = page.highlight(text, [(start, start + 7)])
    assert "<mark>line 50</mark>" in html and "<b>" not in html and "&lt;b&gt;&amp;" in html
    assert "lines without a match" in html and "line 10 " not in html and "line 47 " in html
    capped = page.highlight("<" * 100, [(0, 100)], limit=50)
    assert capped.count("<mark>") == capped.count("</mark>") == 1 and "not shown" in capped


def test_bad_arguments_say_what_to_do(tmp_path):
    inside = tmp_path / "subs"
    inside.mkdir()
    for argv, words in [([str(tmp_path / "nope")], "is not a folder"),
                        ([str(inside), "--out", str(inside / "similarity")], "inside the submissions folder"),
                        ([str(inside), "--top", "0"], "--top 0"),
                        ([str(inside), "--experiments", "exp_9"], "unknown experiment")]:
        proc = subprocess.run([sys.executable, "-m", "grader", "similarity", *argv], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and words in proc.stderr, (argv, proc.stderr)


def test_links_and_odd_files_are_not_read(tmp_path):
    subs = tmp_path / "subs"
    exp = subs / "alice" / "exp_3_1_vgg"
    exp.mkdir(parents=True)
    (exp / "layers_1.py").symlink_to("/etc/passwd")
    (exp / "<b>x.py").write_text("x = 1\n")
    (exp / "big.py").write_bytes(b"y = 2\n" * 60_000)
    (subs / "bob").mkdir()
    (subs / "bob" / "exp_3_1_vgg").symlink_to(exp)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    found, skipped = collect(subs, ["exp_3_1_vgg"], scratch)
    alice = found[0]
    assert set(alice.files) == {("exp_3_1_vgg", "<b>x.py"), ("exp_3_1_vgg", "big.py")}
    assert len(alice.files[("exp_3_1_vgg", "big.py")]) == 256 * 1024
    assert any("layers_1.py cannot be opened" in n for n in alice.notes)
    assert any("only its beginning" in n for n in alice.notes)
    assert [s.id for s in skipped] == ["bob"] and "is not a folder (a link?)" in skipped[0].reason
