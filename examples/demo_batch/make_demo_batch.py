"""Build a demo class of submissions for ``python -m grader batch`` and the class report.

    python examples/demo_batch/make_demo_batch.py OUT [--run] [--docs docs/class_report]

Writes ``OUT/submissions/``: 24 submissions shaped as students hand them in:

* the reference solution of all three experiments, as a folder and as a zip;
* the pristine ``stu_upload/`` as shipped (every TODO open);
* planted bugs at each tier of each experiment (the edits of the grading tests in
  ``tests/test_exp3*_grading.py``), each in an otherwise finished 3.1 + 3.2 with the 3.3
  skeleton (or, for a 3.3 bug, finished 3.1 and 3.2);
* hostile submissions of ``tests/hostile`` (an infinite loop, a 50 GiB allocation, an
  ``os._exit`` in a layer, an import of the grader's reference), a file that is not a zip,
  and two submissions whose names are HTML and a terminal escape sequence.

With ``--run`` it then grades them (``python -m grader batch ... --jobs 2``, hidden checks
on, seed 2024), writes the class report to ``OUT/class_report/`` and, when Chromium is
installed, a screenshot of it; ``--docs DIR`` copies the screenshot and the CSV there.
Run it from the kit's root after ``source env.sh``; the full run takes a while (about
25 minutes on two busy cores), so start it in the background.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for folder in (ROOT, ROOT / "tests"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from grader.kit.paths import EXPERIMENTS, STU_UPLOAD_DIR  # noqa: E402
from gradeutil import apply_edits, reference_copy  # noqa: E402  (tests/)
from hostile import BY_NAME as HOSTILE  # noqa: E402  (tests/hostile)
from tests.test_exp31_grading import BROKEN as BROKEN_31  # noqa: E402
from tests.test_exp32_grading import BROKEN as BROKEN_32  # noqa: E402
from tests.test_exp32_grading import DEMO as DEMO_32  # noqa: E402
from tests.test_exp33_grading import BROKEN as BROKEN_33  # noqa: E402

SEED = 2024
# experiment -> planted bugs (by the grading tests' names), one or more per tier
BUGS = {
    "exp_3_1_vgg": ["conv_missing_bias", "pool_mean_not_max", "load_weights_wrong_transpose",
                    "flatten_wrong_order", "fc_bias_dropped", "evaluate_prints_wrong_class"],
    "exp_3_2_dlp": ["relu6_missing", "conv_kernel_transposed", "quant_params_swapped", "fc_not_transposed",
                    "softmax_axis_0"],
    "exp_3_3_style_transfer": ["conv_backward_no_bias_grad", "style_grad_missing_factor", "loops_only"],
}
HOSTILE_NAMES = ["hang", "alloc_50g", "os_exit_in_layer", "import_reference"]
# Names a class report must show as text: markup, and a terminal escape sequence.
ODD_NAMES = ["<img src=x onerror=alert(1)>", "\x1b[31mred"]


def _edits() -> dict[str, dict[str, dict[str, list]]]:
    """experiment -> bug name -> {file: [(old, new), ...]}, from the grading tests."""
    edits = {"exp_3_1_vgg": {name: files for name, files, *_ in BROKEN_31},
             "exp_3_2_dlp": {p.id: {DEMO_32: p.values[1]} for p in BROKEN_32},
             "exp_3_3_style_transfer": {name: files for name, files, *_ in BROKEN_33}}
    return edits


def _skeleton(dest: Path, experiment: str) -> None:
    shutil.copytree(STU_UPLOAD_DIR / experiment, dest, ignore=shutil.ignore_patterns("__pycache__"))


def build(out: Path) -> Path:
    """Write the submissions under ``out/submissions`` (which must not exist yet); returns that folder."""
    subs = out / "submissions"
    subs.mkdir(parents=True)
    for exp in EXPERIMENTS:
        reference_copy(subs / "reference" / exp, exp)
    # Zipped as many students do: the contents of stu_upload/ at the zip's root.
    shutil.make_archive(str(subs / "reference_zipped"), "zip", subs / "reference")
    shutil.copytree(STU_UPLOAD_DIR, subs / "pristine", ignore=shutil.ignore_patterns("__pycache__"))
    edits = _edits()
    for exp, names in BUGS.items():
        for name in names:
            root = subs / f"{exp[4:7].replace('_', '.')}_{name}"
            for other in EXPERIMENTS:
                # 3.3's loop style transfer takes minutes: only its own bugs come with it finished.
                if other != "exp_3_3_style_transfer" or exp == other:
                    reference_copy(root / other, other)
                else:
                    _skeleton(root / other, other)
            apply_edits(root / exp, edits[exp][name])
    for name in HOSTILE_NAMES:
        HOSTILE[name].build(subs, golden="", weights="", golden_dir="", sibling=str(subs / "reference" / "x"))
        (subs / name).rename(subs / f"hostile_{name}")
    (subs / "broken.zip").write_bytes(b"PK\x03\x04 this is not a zip, only its first bytes")
    for name in ODD_NAMES:
        _skeleton(subs / name / "exp_3_1_vgg", "exp_3_1_vgg")
    return subs


def run(out: Path, docs: Path | None) -> int:
    """Grade, report and screenshot; prints each step's wall time."""
    from grader.authoring.classreport import browser
    csv_path, results = out / "grades.csv", out / "results"
    start = time.monotonic()
    batch = subprocess.run([sys.executable, "-m", "grader", "batch", str(out / "submissions"), "--jobs", "2",
                            "--csv", str(csv_path), "--results-dir", str(results), "--seed", str(SEED)], cwd=ROOT)
    print(f"demo: batch exit {batch.returncode} in {time.monotonic() - start:.0f} s", flush=True)
    start = time.monotonic()
    report = subprocess.run([sys.executable, "-m", "grader", "report", str(csv_path), "--results-dir", str(results),
                             "--out", str(out / "class_report")], cwd=ROOT)
    print(f"demo: report exit {report.returncode} in {time.monotonic() - start:.1f} s", flush=True)
    if report.returncode:
        return report.returncode
    shot = out / "class_report.png"
    try:
        browser.screenshot(out / "class_report" / "index.html", shot, width=1200, height=3600)
    except browser.BrowserMissing as exc:
        print(f"demo: no screenshot: {exc}")
        return 0
    print(f"demo: screenshot {shot}")
    if docs is not None:
        docs.mkdir(parents=True, exist_ok=True)
        # 64 colours keep the picture of the docs small (the page is flat colours and text).
        from PIL import Image
        with Image.open(shot) as image:
            image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(
                docs / "class_report.png", optimize=True)
        shutil.copyfile(csv_path, docs / "grades.csv")
        print(f"demo: copied the screenshot and grades.csv to {docs}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="a new folder for the submissions (and, with --run, the CSV, results and report)")
    p.add_argument("--run", action="store_true", help="also grade them, write the class report and a screenshot")
    p.add_argument("--docs", default=None, help="with --run: copy the screenshot and the CSV to this folder")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    if (out / "submissions").exists():
        print(f"{out / 'submissions'} exists already; give a new folder", file=sys.stderr)
        return 2
    subs = build(out)
    print(f"demo: {sum(1 for _ in subs.iterdir())} submissions in {subs}")
    if not args.run:
        print(f"next: python -m grader batch {subs} --jobs 2 --csv {out / 'grades.csv'} --results-dir "
              f"{out / 'results'} --seed {SEED}")
        return 0
    return run(out, Path(args.docs).resolve() if args.docs else None)


if __name__ == "__main__":
    sys.exit(main())
