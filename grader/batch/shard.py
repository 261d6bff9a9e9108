"""Which submissions shard K of N grades: a stable hash of each submission's id.

``batch DIR --shard K/N`` grades the submissions whose id hashes to K. The hash is SHA-256
of the id's bytes (UTF-8, surrogate escapes as their raw bytes), so the split depends on
nothing but the id and N: not on the order ``os.listdir`` gives, not on the machine or its
locale, not on which other shards ran or what they saw. Every submission lands in exactly
one shard. A submission added to the folder late lands in one shard without moving any
other one (dealing a sorted list round-robin would shift every later id to another shard
and grade some twice and some never); the price is shards of unequal size on a small
class, which costs minutes of wall time, not correctness.
"""
from __future__ import annotations

import hashlib
import re

from grader.batch.names import id_bytes

MAX_SHARDS = 10_000


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)`` with ``1 <= K <= N``; ValueError with what to write otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise ValueError(f"{text!r} is not K/N; write the shard and the number of shards as two whole "
                         f"numbers, e.g. --shard 2/3 for the second of three")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or n > MAX_SHARDS:
        raise ValueError(f"{text!r}: the number of shards N must be between 1 and {MAX_SHARDS}")
    if not 1 <= k <= n:
        raise ValueError(f"{text!r}: the shard K must be between 1 and N={n} (shards count from 1)")
    return k, n


def shard_of(ident: str, n: int) -> int:
    """The shard (1 to ``n``) that grades submission ``ident``."""
    digest = hashlib.sha256(id_bytes(ident)).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def assigned(idents, k: int, n: int) -> list[str]:
    """The ids among ``idents`` that shard ``k`` of ``n`` grades, in their order."""
    return [ident for ident in idents if shard_of(ident, n) == k]


def listing_digest(idents) -> str:
    """A fingerprint of the whole set of ids a batch listed: shards that saw different folders differ."""
    h = hashlib.sha256()
    for ident in sorted(idents):
        h.update(id_bytes(ident) + b"\0")
    return h.hexdigest()
