"""What a student uploaded to Gradescope, turned into the folder the grader reads.

Gradescope puts the upload in ``/autograder/submission``. Students upload the
``stu_upload/`` folder, its contents (the ``exp_3_*`` folders at the top), a folder named
after themselves, or a zip of any of these. The folder holding ``exp_*`` is found as a
batch finds it (:func:`grader.batch.intake.find_root`); a zip is extracted with the
batch's safe extraction into a private folder first. An upload the grader cannot read
gives an :class:`UploadProblem` whose message tells the student what to upload instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grader.batch.intake import UnsafeArchive, find_root, safe_extract
from grader.kit.paths import EXPERIMENTS

MAX_LISTED = 8
WHAT_TO_UPLOAD = ("upload your stu_upload/ folder, the exp_3_* folders inside it, or one .zip of either")


class UploadProblem(Exception):
    """The upload cannot be graded; the message is for the student."""


@dataclass(frozen=True)
class Located:
    root: Path      # the folder holding exp_* (or the upload itself when it holds none)
    note: str       # what was found, in one sentence for the student


def _has_experiment(folder: Path) -> bool:
    return any((folder / exp).is_dir() for exp in EXPERIMENTS)


def _listing(folder: Path) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError:
        return "(unreadable)"
    if not names:
        return "nothing"
    shown = ", ".join(_printable(n) for n in names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def _printable(name: str, limit: int = 60) -> str:
    """A file name as a student may see it again: no control characters, bounded length."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in name)
    return clean if len(clean) <= limit else clean[:limit] + "..."


def _describe(root: Path, upload: Path, inside: str) -> str:
    found = [exp for exp in EXPERIMENTS if (root / exp).is_dir()]
    where = root.relative_to(upload).as_posix() if root != upload else ""
    place = f"the folder {_printable(where)}/ of {inside}" if where else inside
    return f"graded {', '.join(found)} from {place}"


def locate(upload: Path, scratch: Path) -> Located:
    """The folder to grade for the upload at ``upload``; a zip is extracted into ``scratch``.

    ``scratch`` must be a private, empty folder (root-only): the extracted files stay there
    while the grader runs. Raises UploadProblem when nothing gradable is there.
    """
    upload = Path(upload)
    if not upload.is_dir():
        raise UploadProblem(f"no upload was found (the autograder looked in {upload}); {WHAT_TO_UPLOAD}")
    root = find_root(upload)
    if _has_experiment(root):
        return Located(root, _describe(root, upload, "your upload"))
    zips = sorted(p for p in upload.iterdir() if p.is_file() and not p.is_symlink()
                  and p.suffix.lower() == ".zip")
    if not zips:
        raise UploadProblem(f"found no {', '.join(d + '/' for d in EXPERIMENTS)} folder in your upload "
                            f"(it holds {_listing(upload)}); {WHAT_TO_UPLOAD}")
    if len(zips) > 1:
        raise UploadProblem(f"your upload holds {len(zips)} zip files ({', '.join(_printable(z.name) for z in zips)})"
                            f" and no exp_3_* folder; upload one zip only")
    archive = zips[0]
    target = Path(scratch) / "unzipped"
    target.mkdir()
    try:
        safe_extract(archive, target)
    except UnsafeArchive as exc:
        raise UploadProblem(f"your zip {_printable(archive.name)} was refused: {exc}") from None
    root = find_root(target)
    if not _has_experiment(root):
        raise UploadProblem(f"found no exp_3_* folder in your zip {_printable(archive.name)} "
                            f"(it holds {_listing(target)}); {WHAT_TO_UPLOAD}")
    return Located(root, _describe(root, target, f"your zip {_printable(archive.name)}"))
