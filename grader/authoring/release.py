"""Generate student files from the reference set (``python -m grader release``).

Without an output folder: refresh the repository's ``exp_*/skeleton/`` and the pristine
``stu_upload/`` from ``grader/reference`` (a kit test fails when they drift). A
``stu_upload`` file that differs from the previous skeleton holds a student's work and is
never overwritten unless ``--force`` is given.

With an output folder: build the handout a course gives to students (see
:func:`build_student_release`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grader.authoring.handout import ReleaseError, build_student_release
from grader.authoring.skeletons import expected_skeletons, reference_files
from grader.kit.paths import REPO_ROOT, STU_UPLOAD_DIR


def refresh_repo(force: bool = False, out=sys.stdout) -> int:
    """Rewrite skeletons and pristine stu_upload files; return the number of files written."""
    written = 0
    skipped: list[Path] = []
    expected = expected_skeletons()
    # What each skeleton said before this run: a stu_upload file equal to it is pristine.
    previous_skeleton = {rel: (REPO_ROOT / rel).read_text(encoding="utf-8")
                         for rel in expected if rel.parts[0] != "stu_upload" and (REPO_ROOT / rel).exists()}
    for rel, text in expected.items():
        dest = REPO_ROOT / rel
        if dest.exists() and dest.read_text(encoding="utf-8") == text:
            continue
        if rel.parts[0] == "stu_upload" and dest.exists() and not force:
            previous = previous_skeleton.get(Path(rel.parts[1]) / "skeleton" / rel.name)
            if previous is not None and dest.read_text(encoding="utf-8") != previous:
                skipped.append(rel)
                continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
        written += 1
        print(f"wrote {rel}", file=out)
    for rel in skipped:
        print(f"kept {rel}: it holds edits (a student's work?); rerun with --force to overwrite", file=out)
    print(f"release: {written} file(s) written, {len(skipped)} kept", file=out)
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader release",
                                     description="Regenerate skeletons from the reference set, or build a student handout.")
    parser.add_argument("out_dir", nargs="?", help="build the student handout here instead of refreshing the repo")
    parser.add_argument("--force", action="store_true", help="overwrite edited stu_upload files")
    args = parser.parse_args(argv)
    if args.out_dir:
        try:
            build_student_release(Path(args.out_dir))
        except ReleaseError as exc:
            print(f"release: {exc}", file=sys.stderr)
            return 1
        return 0
    refresh_repo(force=args.force)
    return 0


__all__ = ["expected_skeletons", "refresh_repo", "reference_files", "main", "STU_UPLOAD_DIR"]
