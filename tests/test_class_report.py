"""The class report (``python -m grader report``): aggregation, hostile input, a real batch in Chromium.

The fast tests write small gradebooks and kit-shaped JSON reports into ``tmp_path`` and
read the numbers back from the aggregation and from the written page. The slow test grades
a few real submissions with ``python -m grader batch``, writes the report and opens it in
headless Chromium (a screenshot, and the DOM after load with each figure's natural size).
"""
from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from grader.authoring import classreport
from grader.authoring.classreport import aggregate, browser, inputs
from grader.batch import gradebook
from grader.drivers import fingerprint
from grader.experiments import spec_of
from grader.kit.paths import REPO_ROOT, STU_UPLOAD_DIR
from grader.kit.weights import REAL_SHA256, SYNTHETIC_SHA256
from grader.scoring import CheckResult, ExperimentResult

EXP = "exp_3_1_vgg"
HEADER = gradebook.columns([EXP])
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# ----------------------------------------------------------------------------- fixtures


def kit_report(checks: list[tuple[str, int, bool, str]], kind: str = "synthetic", seed: int | None = 5,
               experiment: str = EXP) -> dict:
    """A report shaped like ``grader.report.build``: one experiment, ``(name, tier, passed, message)`` checks."""
    result = ExperimentResult(experiment, [CheckResult(n, t, p, m, 0.5, n.startswith("hidden_"))
                                           for n, t, p, m in checks])
    sha = SYNTHETIC_SHA256 if kind == "synthetic" else REAL_SHA256
    return {"total": result.score, "max_total": 100, "seconds": 3.0, "submission": "/x",
            "weights": {"kind": kind, "sha256": sha}, "hidden_checks": {"enabled": seed is not None, "seed": seed},
            "isolation": {}, "experiments": [dict(result.as_dict(), error="")]}


def first_layer_message(layer: str) -> str:
    """A network failure message as 3.1's pool5 check words it, with ``layer`` the first that differs."""
    return f"VGG19 pool5 output on the cat image: 9 of 25088 elements differ; first layer that differs: {layer}"


PASS_ALL = [("conv_k3_p1_s1", 60, True, "matches"), ("pool_k2_s2", 60, True, "matches"),
            ("vgg19_pool5", 80, True, "matches"), ("vgg19_softmax", 100, True, "matches"),
            ("vgg19_top1", 100, True, "top-1 class id 1 (p = 0.5) matches")]


def with_failures(failures: dict[str, str]) -> list[tuple[str, int, bool, str]]:
    return [(n, t, n not in failures, failures.get(n, m)) for n, t, _, m in PASS_ALL]


def write_batch(folder: Path, rows: list[dict], reports: dict[str, dict | str | bytes],
                header: list[str] = HEADER) -> tuple[Path, Path]:
    """grades.csv (written by the gradebook itself) and results/<report_path> for each report."""
    csv_path, results = folder / "grades.csv", folder / "results"
    results.mkdir(parents=True, exist_ok=True)
    defaults = {"seed": "5", "weights": SYNTHETIC_SHA256[:12], "max_total": "100", "seconds": "1.0", "message": ""}
    gradebook.write_csv(csv_path, header, {r["id"]: dict(defaults, **r) for r in rows})
    for ident, doc in reports.items():
        path = gradebook.report_path(results, ident)
        if isinstance(doc, dict):
            path.write_text(json.dumps(doc), encoding="utf-8")
        else:
            path.write_bytes(doc if isinstance(doc, bytes) else doc.encode())
    return csv_path, results


def graded(ident: str, score: int, seconds: float = 1.0, **extra) -> dict:
    return dict({"id": ident, EXP: str(score), "total": str(score), "status": "graded", "seconds": str(seconds)},
                **extra)


def small_class(tmp_path: Path) -> tuple[Path, Path]:
    """Five graded rows with reports, a bad zip and a timeout (no reports)."""
    rows = [graded("alice", 100, 12.0), graded("bob", 80, 14.0), graded("carol", 60, 9.0), graded("dave", 60, 11.0),
            graded("erin", 0, 2.0),
            {"id": "frank", "status": "bad-submission", "seconds": "0.1", "message": "zip refused: not a zip file"},
            {"id": "gina", "status": "timeout", "seconds": "300.0",
             "message": "the grader did not finish within 300 s"}]
    conv_fail = "ConvolutionalLayer(3, 3, 4).forward: 12 of 128 elements differ; worst element at index (0, 0, 0, 0)"
    reports = {
        "alice": kit_report(PASS_ALL),
        "bob": kit_report(with_failures({"vgg19_softmax": "VGG19 softmax output: 3 of 1000 elements differ; "
                                                          "first layer that differs: fc6",
                                         "vgg19_top1": "top-1 class id 2 but the reference gives 1"})),
        "carol": kit_report(with_failures({"vgg19_pool5": first_layer_message("conv1_1"),
                                           "vgg19_softmax": "VGG19 softmax: ...; first layer that differs: conv1_1"})),
        "dave": kit_report(with_failures({"vgg19_pool5": first_layer_message("conv1_1")})),
        # Declared order is the spec's, whatever order the report lists its checks in.
        "erin": kit_report(list(reversed(with_failures({"conv_k3_p1_s1": conv_fail, "vgg19_pool5": "skipped: tier 60 "
                                                        "failed", "vgg19_softmax": "skipped: tier 60 failed",
                                                        "vgg19_top1": "skipped: tier 60 failed"})))),
    }
    return write_batch(tmp_path, rows, reports)


class PageParser(html.parser.HTMLParser):
    """Every tag and attribute of a page, and its text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse_page(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def run_report(csv_path: Path, results: Path, out: Path) -> int:
    return classreport.main([str(csv_path), "--results-dir", str(results), "--out", str(out)])


# ----------------------------------------------------------------------------- aggregation


def test_scores_checks_layers_and_times_of_a_small_class(tmp_path):
    book = inputs.load_gradebook(*small_class(tmp_path))
    assert [r.label for r in book.rows] == ["alice", "bob", "carol", "dave", "erin", "frank", "gina"]
    dist = aggregate.score_distribution(book)[EXP]
    assert dist == {"100": 1, "80": 1, "60": 2, "0": 1, "no score": 2}
    totals, no_total = aggregate.total_distribution(book)
    assert totals == {100: 1, 80: 1, 60: 2, 0: 1} and no_total == 2

    stats = aggregate.check_stats(book)[EXP]
    # Tier order, and the declared order within a tier (erin's report lists them backwards).
    assert [(s.tier, s.name) for s in stats] == [(60, "conv_k3_p1_s1"), (60, "pool_k2_s2"), (80, "vgg19_pool5"),
                                                 (100, "vgg19_softmax"), (100, "vgg19_top1")]
    by_name = {s.name: s for s in stats}
    assert (by_name["conv_k3_p1_s1"].failed, by_name["conv_k3_p1_s1"].seen) == (1, 5)
    assert (by_name["vgg19_pool5"].failed, by_name["vgg19_pool5"].skipped, by_name["vgg19_pool5"].passed) == (2, 1, 2)
    assert by_name["vgg19_softmax"].failure_rate == pytest.approx(2 / 5)
    assert by_name["vgg19_top1"].failed_ids == ["bob"]

    layers = aggregate.first_failing_layers(book)
    # carol names conv1_1 twice (pool5 and softmax) but counts once; most common first.
    assert layers == {EXP: [("conv1_1", ["carol", "dave"]), ("fc6", ["bob"])]}

    timed = aggregate.times(book)
    assert [t[0] for t in timed][:3] == ["gina", "bob", "alice"] and timed[0][2] == "timeout"
    assert [r.label for r in aggregate.problem_rows(book)] == ["frank", "gina"]
    assert aggregate.rows_without_details(book) == []   # frank and gina ended before a report

    facts = aggregate.batch_facts(book)
    assert facts.submissions == 7 and facts.statuses["graded"] == 5 and facts.synthetic
    assert facts.warnings[0].startswith("SYNTHETIC WEIGHTS")
    assert not any(w.startswith("MIXED") for w in facts.warnings)


def test_checks_no_spec_declares_follow_the_declared_ones_of_their_tier(tmp_path):
    extra = PASS_ALL[:3] + [("made_up_check", 80, False, "x")] + PASS_ALL[3:]
    book = inputs.load_gradebook(*write_batch(tmp_path, [graded("a", 60)], {"a": kit_report(extra)}))
    names = [s.name for s in aggregate.check_stats(book)[EXP]]
    assert names == ["conv_k3_p1_s1", "pool_k2_s2", "vgg19_pool5", "made_up_check", "vgg19_softmax", "vgg19_top1"]


def test_first_divergent_layer_is_read_from_the_kits_own_messages():
    """The messages come from the kit's real checks, so a change of their wording fails here."""
    rng = np.random.default_rng(0)
    right = {"conv1_1": rng.standard_normal((1, 4, 6, 6)), "relu1_1": rng.random((1, 4, 6, 6)),
             "pool5": rng.standard_normal((1, 4, 3, 3))}
    wrong = dict(right, relu1_1=right["relu1_1"] + 1.0, pool5=right["pool5"] + 1.0)
    golden, outputs = {"pool5": right["pool5"]}, {"pool5": wrong["pool5"]}
    for name in right:
        fingerprint(golden, name, right[name])
        fingerprint(outputs, name, wrong[name])
    spec = spec_of(EXP)
    network = next(c for c in spec.visible_cases() if c.group == "network")
    pool5 = next(c for c in spec.checks([network]) if c.name == "vgg19_pool5")
    ctx = SimpleNamespace(outputs=outputs, golden=golden, case=SimpleNamespace(hidden=False, name=network.name))
    with pytest.raises(AssertionError) as failure:
        pool5.run(ctx)
    assert aggregate.first_divergent_layer_of(str(failure.value)) == "relu1_1"
    # 3.3's speed-up network checks its features layer by layer, in order.
    from grader.experiments.exp_3_3_style_transfer import network_speedup
    ctx = SimpleNamespace(outputs={"feature/relu1_1": wrong["relu1_1"], "feature/conv1_1": right["conv1_1"]},
                          golden={"feature/relu1_1": right["relu1_1"], "feature/conv1_1": right["conv1_1"]},
                          case=SimpleNamespace(hidden=False, params={"layers": ["conv1_1", "relu1_1"]}), seconds=1.0)
    with pytest.raises(AssertionError) as failure:
        network_speedup(ctx)
    assert aggregate.first_divergent_layer_of(str(failure.value)) == "relu1_1"
    assert aggregate.first_divergent_layer_of("12 of 128 elements differ; worst element at index (0, 1)") is None
    assert aggregate.first_divergent_layer_of("first layer that differs: pool1 (no layer of that name)") == "pool1"


def test_mixed_seeds_and_weights_are_said_at_the_top(tmp_path):
    rows = [graded("a", 100, seed="5"), graded("b", 100, seed="6", weights=REAL_SHA256[:12])]
    csv_path, results = write_batch(tmp_path, rows, {"a": kit_report(PASS_ALL),
                                                     "b": kit_report(PASS_ALL, kind="real", seed=6)})
    assert run_report(csv_path, results, tmp_path / "out") == 0
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    body = page[page.index("<body>"):]
    warnings = re.findall(r'<div class="warning[^"]*">([^<]*)</div>', body)
    assert [w.split(":")[0] for w in warnings] == ["SYNTHETIC WEIGHTS", "MIXED SEEDS", "MIXED WEIGHTS"]
    # The warnings come before anything else the page says.
    assert body.index("MIXED SEEDS") < body.index("<h2>")


def test_real_weights_and_one_seed_give_no_warning(tmp_path):
    rows = [graded("a", 100, weights=REAL_SHA256[:12])]
    book = inputs.load_gradebook(*write_batch(tmp_path, rows, {"a": kit_report(PASS_ALL, kind="real")}))
    facts = aggregate.batch_facts(book)
    assert not facts.synthetic and facts.warnings == []
    assert aggregate.weights_kind(book.rows[0]) == "real"
    book.rows[0].report = None   # without a report the CSV's sha256 prefix tells the kind
    assert aggregate.weights_kind(book.rows[0]) == "real"


# ----------------------------------------------------------------------------- hostile input

HOSTILE_IDS = ["<script>alert(1)</script>", "\"quoted\" & 'single' <b>", "\x1b[31mred\x1b[0m", "evil\u202eftp.exe",
               "$x^{2$ \\frac", "=HYPERLINK(\"http://x\")", "long" * 300]
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "div", "p", "b", "table", "thead",
                "tbody", "tr", "th", "td", "figure", "img", "figcaption", "span", "code", "details", "summary"}
ALLOWED_ATTRIBUTES = {"lang", "charset", "http-equiv", "content", "name", "class", "src", "alt"}


def test_hostile_ids_and_messages_are_text_on_the_page(tmp_path):
    rows = [graded(ident, 60, message="<img src=x onerror=alert(2)> \x1b]0;title\x07") for ident in HOSTILE_IDS]
    reports = {ident: kit_report(with_failures({"vgg19_pool5": first_layer_message("conv1_1") + "<script>x</script>"}))
               for ident in HOSTILE_IDS}
    csv_path, results = write_batch(tmp_path, rows, reports)
    out = tmp_path / "out"
    assert run_report(csv_path, results, out) == 0
    text = (out / "index.html").read_text(encoding="utf-8")
    parsed = parse_page(out / "index.html")
    assert {tag for tag, _ in parsed.tags} <= ALLOWED_TAGS
    assert {name for _, attrs in parsed.tags for name in attrs} <= ALLOWED_ATTRIBUTES
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]", text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;img src=x onerror=alert(2)&gt;" in text
    # Every report was found (the ids are encoded in the CSV and decoded for report_path).
    book = inputs.load_gradebook(csv_path, results)
    assert all(row.report is not None for row in book.rows), [(r.label, r.problem) for r in book.rows]
    assert all(len(row.label) <= inputs.MAX_ID_CHARS for row in book.rows)
    # The figures were drawn whatever the ids hold ("$" is no formula for matplotlib).
    for _, attrs in (t for t in parsed.tags if t[0] == "img"):
        assert re.fullmatch(r"fig_[a-z0-9_]+\.png", attrs["src"]) and attrs["alt"]
        assert (out / attrs["src"]).read_bytes()[:8] == PNG_SIGNATURE


def test_the_page_allows_no_script(tmp_path):
    csv_path, results = small_class(tmp_path)
    assert run_report(csv_path, results, tmp_path / "out") == 0
    meta = [a for t, a in parse_page(tmp_path / "out" / "index.html").tags
            if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert len(meta) == 1 and "default-src 'none'" in meta[0]["content"] and "script-src" not in meta[0]["content"]


def test_missing_malformed_and_foreign_reports_cost_only_their_rows(tmp_path):
    outside = tmp_path / "elsewhere.json"
    outside.write_text(json.dumps(kit_report(PASS_ALL)))
    rows = [graded("good", 100), graded("missing", 100), graded("truncated", 100), graded("not_a_list", 100),
            graded("wrong_tier", 100), graded("linked", 100), graded("stale", 80), graded("nan", 100),
            graded("deep", 100), graded("huge", 100), graded("linked_inside", 100)]
    broken_tier = kit_report(PASS_ALL)
    broken_tier["experiments"][0]["checks"][0]["tier"] = "60"
    reports = {"good": kit_report(PASS_ALL), "truncated": json.dumps(kit_report(PASS_ALL))[:200],
               "not_a_list": dict(kit_report(PASS_ALL), experiments={"x": 1}), "wrong_tier": broken_tier,
               "stale": kit_report(PASS_ALL), "nan": json.dumps(kit_report(PASS_ALL)).replace("0.5", "NaN"),
               "deep": "[" * 100000 + "]" * 100000, "huge": json.dumps(kit_report(PASS_ALL))}
    csv_path, results = write_batch(tmp_path, rows, reports)
    gradebook.report_path(results, "linked").symlink_to(outside)
    gradebook.report_path(results, "linked_inside").symlink_to(gradebook.report_path(results, "good"))
    with open(gradebook.report_path(results, "huge"), "r+b") as f:
        f.truncate(inputs.MAX_REPORT_BYTES + 1)   # sparse: valid JSON followed by NUL bytes
    assert run_report(csv_path, results, tmp_path / "out") == 0
    book = inputs.load_gradebook(csv_path, results)
    problems = {r.label: r.problem for r in book.rows}
    assert problems["good"] == "" and problems["nan"] == ""   # NaN times are read as null
    assert problems["missing"] == "no report"
    assert "malformed: not valid JSON" in problems["truncated"] and "not valid JSON" in problems["deep"]
    assert "'experiments' is not a list" in problems["not_a_list"]
    assert "tier is not 60, 80 or 100" in problems["wrong_tier"]
    assert problems["linked"] == "its report path is outside the results folder"
    assert problems["linked_inside"] == "linked_inside.json is not a regular file"
    assert "the report says exp_3_1_vgg 100, the CSV 80" in problems["stale"]
    assert "huge.json is larger than 16 MiB" in problems["huge"]
    stats = {s.name: s for s in aggregate.check_stats(book)[EXP]}
    assert stats["vgg19_pool5"].seen == 2   # good and nan only
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "<h3>Rows without details</h3>" in page and "9 row(s) have no usable report" in page


def test_reports_are_found_only_through_report_path(tmp_path, monkeypatch):
    moved = tmp_path / "results" / "by-id"
    monkeypatch.setattr(gradebook, "report_path", lambda folder, ident: Path(folder) / "by-id" / ident / "r.json")
    (moved / "alice").mkdir(parents=True)
    (moved / "alice" / "r.json").write_text(json.dumps(kit_report(PASS_ALL)))
    csv_path, results = write_batch(tmp_path, [graded("alice", 100), graded("bob", 100)], {})
    (results / "bob.json").write_text(json.dumps(kit_report(PASS_ALL)))   # the old naming: not looked at
    book = inputs.load_gradebook(csv_path, results)
    assert book.rows[0].report is not None and book.rows[1].problem == "no report"

    def escaping(folder, ident):
        return Path(folder) / ".." / "elsewhere.json"
    (tmp_path / "elsewhere.json").write_text(json.dumps(kit_report(PASS_ALL)))
    monkeypatch.setattr(gradebook, "report_path", escaping)
    book = inputs.load_gradebook(csv_path, results)
    assert book.rows[0].problem == "its report path is outside the results folder"

    def failing(folder, ident):
        raise ValueError("no name for this id")
    monkeypatch.setattr(gradebook, "report_path", failing)
    book = inputs.load_gradebook(csv_path, results)
    assert book.rows[0].report is None and "no report path" in book.rows[0].problem


def test_a_hand_edited_csv_is_read_as_far_as_it_makes_sense(tmp_path):
    csv_path = tmp_path / "grades.csv"
    csv_path.write_text("\ufeffid,exp_3_1_vgg,total,max_total,status,seconds,seed,weights,message,notes\n"
                        "a,100,100,100,graded,nan,5,,,x\n"
                        "b,eighty,,100,graded,-3,5,,,\n"
                        "a,60,60,100,graded,1e9,5,,,\n"
                        ",,,,,,,,,\n"
                        "c,75,75,100,weird,2,5,,,\n", encoding="utf-8")
    book = inputs.load_gradebook(csv_path, tmp_path / "none")
    assert [r.label for r in book.rows] == ["a", "b", "c"]
    a, b, c = book.rows
    assert a.scores[EXP] == 60 and a.seconds is None     # the last of a repeated id; 1e9 s is no time
    assert b.scores[EXP] is None and b.seconds is None
    assert aggregate.score_distribution(book)[EXP] == {"60": 1, "no score": 1, "other": 1}
    assert [r.label for r in aggregate.problem_rows(book)] == ["c"]
    assert any("repeated id" in n for n in book.notes) and any("notes" in n for n in book.notes)


@pytest.mark.parametrize("content, words", [
    (None, "cannot read the gradebook"),
    ("name,score\nx,1\n", "has no 'id' column"),
])
def test_an_unreadable_gradebook_is_a_clear_error(tmp_path, capsys, content, words):
    csv_path = tmp_path / "grades.csv"
    if content is not None:
        csv_path.write_text(content)
    assert classreport.main([str(csv_path), "--out", str(tmp_path / "out")]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_rerun_replaces_its_own_figures_and_leaves_other_files(tmp_path):
    csv_path, results = small_class(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "fig_checks_exp_3_2_dlp.png").write_bytes(PNG_SIGNATURE)   # of an earlier, larger batch
    (out / "notes.txt").write_text("mine")
    assert run_report(csv_path, results, out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["fig_checks_exp_3_1_vgg.png", "fig_layers.png",
                                                     "fig_scores.png", "fig_times.png", "index.html", "notes.txt"]


def test_alt_texts_carry_the_numbers(tmp_path):
    csv_path, results = small_class(tmp_path)
    out = tmp_path / "out"
    assert run_report(csv_path, results, out) == 0
    alts = {a["src"]: a["alt"] for t, a in parse_page(out / "index.html").tags if t == "img"}
    assert "exp_3_1_vgg: 0 1, 60 2, 80 1, 100 1, no score 2" in alts["fig_scores.png"]
    assert "conv1_1 2, fc6 1" in alts["fig_layers.png"]
    assert "vgg19_pool5 (tier 80) 2 of 5" in alts["fig_checks_exp_3_1_vgg.png"]
    assert "Slowest: gina 300.0 s (timeout)" in alts["fig_times.png"]


# ----------------------------------------------------------------------------- a real batch in Chromium


def _chromium_or_skip() -> None:
    try:
        browser.find()
    except browser.BrowserMissing as exc:
        if os.environ.get("AICS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"AICS_REQUIRE_BROWSER=1 but {exc}")
        pytest.skip(str(exc))


# Appended to a copy of the page: writes each image's natural size into the DOM after load.
PROBE = ("<script>window.addEventListener('load', function () {"
         "var out = [].map.call(document.images, function (i) {"
         "return [i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight]; });"
         "var p = document.createElement('pre'); p.id = 'probe'; p.textContent = JSON.stringify(out);"
         "document.body.appendChild(p); });</script>")


def _loaded_images(index: Path) -> list[list]:
    """[src, complete, naturalWidth, naturalHeight] of every <img>, from Chromium, under the page's own img-src."""
    page = index.read_text(encoding="utf-8")
    # The page forbids every script; the probe copy allows inline script only, and keeps img-src as it is.
    probe_page = page.replace("default-src &#x27;none&#x27;;", "default-src &#x27;none&#x27;; "
                              "script-src &#x27;unsafe-inline&#x27;;", 1).replace("</body>", PROBE + "</body>")
    assert probe_page != page
    probe = index.with_name("probe.html")
    probe.write_text(probe_page, encoding="utf-8")
    try:
        dom = browser.dump_dom(probe)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe did not run:\n{dom[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"'))


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.slow
def test_a_real_batch_report_loads_in_chromium(tmp_path):
    _chromium_or_skip()
    from gradeutil import broken_copy   # tests/, on sys.path
    from test_exp31_grading import BROKEN
    edits = {name: files for name, files, *_ in BROKEN}
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copytree(STU_UPLOAD_DIR / EXP, subs / "<b>pristine" / EXP)
    for name in ("conv_missing_bias", "load_weights_wrong_transpose"):
        shutil.move(broken_copy(tmp_path / name, EXP, edits[name]), subs / name)
    (subs / "broken.zip").write_bytes(b"not a zip at all")
    csv_path, results, out = tmp_path / "grades.csv", tmp_path / "results", tmp_path / "class_report"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    batch = subprocess.run([sys.executable, "-m", "grader", "batch", str(subs), "--jobs", "2", "--csv", str(csv_path),
                            "--results-dir", str(results), "--experiments", EXP, "--visible-only", "--seed", "5"],
                           capture_output=True, text=True, env=env, timeout=600)
    assert batch.returncode == 0, batch.stderr[-3000:]
    report = subprocess.run([sys.executable, "-m", "grader", "report", str(csv_path), "--results-dir", str(results),
                             "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "4 submissions, 3 with a report" in report.stdout

    book = inputs.load_gradebook(csv_path, results)
    assert {r.label: r.status for r in book.rows} == {"<b>pristine": "graded", "broken": "bad-submission",
                                                      "conv_missing_bias": "graded",
                                                      "load_weights_wrong_transpose": "graded"}
    assert aggregate.first_failing_layers(book) == {EXP: [("conv1_1", ["load_weights_wrong_transpose"])]}
    stats = {s.name: s for s in aggregate.check_stats(book)[EXP]}
    assert stats["conv_k3_p1_s1"].failed == 2 and stats["vgg19_pool5"].skipped == 2

    shot = browser.screenshot(out / "index.html", tmp_path / "shot.png", width=1200, height=1800)
    from PIL import Image
    with Image.open(shot) as image:
        assert image.size == (1200, 1800)
        pixels = np.asarray(image.convert("RGB"))
    not_white = np.any(pixels < 240, axis=2).mean()
    assert not_white > 0.03 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot looks blank"

    images = _loaded_images(out / "index.html")
    assert {src for src, *_ in images} == {"fig_scores.png", "fig_checks_exp_3_1_vgg.png", "fig_layers.png",
                                           "fig_times.png"}
    for src, complete, width, height in images:
        assert complete and (width, height) == _png_size(out / src), (src, complete, width, height)

    dom = browser.dump_dom(out / "index.html")
    assert "<script" not in dom and "&lt;b&gt;pristine" in dom and "bad-submission" in dom
