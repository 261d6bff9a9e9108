"""The settings file of a gradebook, ``<csv>.batch.json``: what a resumed batch and a merge check.

A batch writes it beside its CSV when it starts (atomically, like the CSV): the seed, the
experiments, ``--visible-only`` and ``--quick``, the shard (``K/N``, or none), the ids this
run is responsible for, a fingerprint of every id the submissions folder held, where the
results folder is, and the command that resumes it. A resumed batch refuses settings that
differ from it (rows graded two ways would mix in one gradebook); ``batch merge`` reads it
to know which submissions each shard owed, and that the shards graded one class one way.

Ids are stored as :func:`grader.batch.names.encode_id` writes them (plain text, reversible).
A CSV without this file (from an older kit) resumes as an unsharded batch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from grader import atomic
from grader.batch.names import decode_id, encode_id

KIND = "aics-batch-settings"
VERSION = 1
MAX_RECORD_BYTES = 32 * 2**20


class RecordError(Exception):
    """The settings file exists but cannot be used; the message names the file and the problem."""


@dataclass
class BatchRecord:
    seed: int
    experiments: list[str]
    visible_only: bool = False
    quick: bool = False
    shard: tuple[int, int] | None = None      # (K, N), or None for an unsharded batch
    assigned: list[str] = field(default_factory=list)   # ids this gradebook is responsible for
    listed: int = 0                            # submissions the folder held
    listed_sha256: str = ""                    # grader.batch.shard.listing_digest of their ids
    submissions: str = ""                      # the submissions folder, as graded
    results_dir: str = ""                      # relative to the CSV's folder when inside it
    command: str = ""                          # the command that resumes this batch

    def label(self) -> str:
        """``shard 2/3`` or ``an unsharded batch``, for messages."""
        return shard_label(self.shard)

    def mode(self) -> dict:
        """The settings that change a row's score: two gradebooks merge only when these agree."""
        return {"seed": self.seed, "experiments": list(self.experiments), "visible_only": self.visible_only,
                "quick": self.quick}

    def results_folder(self, csv_path: Path) -> Path:
        """The results folder, found relative to where the CSV is now (it may have been copied)."""
        folder = Path(self.results_dir)
        return folder if folder.is_absolute() else Path(csv_path).parent / folder


def shard_label(shard: tuple[int, int] | None) -> str:
    """``shard 2/3`` for ``(2, 3)``, ``an unsharded batch`` for None."""
    return f"shard {shard[0]}/{shard[1]}" if shard else "an unsharded batch"


def record_path(csv_path: Path) -> Path:
    """The settings file of a gradebook, beside it."""
    return Path(csv_path).with_name(Path(csv_path).name + ".batch.json")


def relative_results(csv_path: Path, results_dir: Path) -> str:
    """``results_dir`` as the record stores it: relative to the CSV's folder when it is inside it."""
    try:
        return str(Path(results_dir).relative_to(Path(csv_path).parent))
    except ValueError:
        return str(results_dir)


def write_record(csv_path: Path, record: BatchRecord) -> None:
    """Write the settings file of ``csv_path`` atomically (raises OSError, old file intact)."""
    doc = {"kind": KIND, "version": VERSION, "seed": record.seed, "experiments": list(record.experiments),
           "visible_only": record.visible_only, "quick": record.quick,
           "shard": {"k": record.shard[0], "n": record.shard[1]} if record.shard else None,
           "assigned": sorted(encode_id(i) for i in record.assigned), "listed": record.listed,
           "listed_sha256": record.listed_sha256, "submissions": str(record.submissions),
           "results_dir": record.results_dir, "command": record.command}
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    atomic.write_bytes(record_path(csv_path), (text + "\n").encode("utf-8", "replace"))


def read_record(csv_path: Path) -> BatchRecord | None:
    """The settings file of ``csv_path``; None when there is none; :class:`RecordError` when it is unusable."""
    path = record_path(csv_path)
    try:
        if not path.exists():
            return None
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise RecordError(f"{path} is larger than {MAX_RECORD_BYTES >> 20} MiB: not a settings file of a batch")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RecordError(f"cannot read {path} ({type(exc).__name__}: {exc})") from None
    try:
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise ValueError("not a settings file of a batch")
        if doc.get("version") != VERSION:
            raise ValueError(f"version {doc.get('version')!r}, this kit reads version {VERSION}")
        shard = doc.get("shard")
        if shard is not None:
            shard = (_int(shard["k"], "shard.k"), _int(shard["n"], "shard.n"))
            if not 1 <= shard[0] <= shard[1]:
                raise ValueError(f"shard {shard[0]}/{shard[1]} is not K/N with 1 <= K <= N")
        return BatchRecord(seed=_int(doc["seed"], "seed"), experiments=_strings(doc["experiments"], "experiments"),
                           visible_only=_bool(doc["visible_only"], "visible_only"), quick=_bool(doc["quick"], "quick"),
                           shard=shard, assigned=[decode_id(i) for i in _strings(doc["assigned"], "assigned")],
                           listed=_int(doc["listed"], "listed"), listed_sha256=str(doc["listed_sha256"]),
                           submissions=str(doc.get("submissions", "")), results_dir=str(doc.get("results_dir", "")),
                           command=str(doc.get("command", "")))
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise RecordError(f"{path} is malformed ({what})") from None


def _int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} is {value!r}, not a non-negative integer")
    return value


def _bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} is {value!r}, not true or false")
    return value


def _strings(value, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} is not a list of strings")
    return list(value)
