"""How a submission id is written where it has to be safe: in the CSV, in file names, on a terminal.

An id is the name of an entry of the submissions folder, so it can hold anything a file name
can: a leading ``=`` a spreadsheet would run as a formula, a line break, an escape sequence,
bytes that are not UTF-8 (Python carries them as surrogate escapes, ``\\udcff``), 255 bytes.

* In the CSV an id is written by :func:`encode_id`: unchanged when it is plain, otherwise
  with the unsafe characters written as ``%XX`` (the bytes of their UTF-8, or the raw byte
  of a surrogate escape). :func:`decode_id` gives back exactly the id that was graded, so a
  resumed batch finds it again; a spreadsheet sees ``%3D1+2``, text, never ``=1+2``.
* In the results folder an id becomes :func:`file_stem`: the same escapes plus ``/``, ``~``
  and a leading ``.``, bounded in length (a long id keeps a readable prefix and a hash), and
  never ending in ``.results``, so that the files of two submissions never share a path.
* On a terminal and in messages an id is shown as :func:`display_id`: its CSV form, which is
  printable and is what the instructor finds in the gradebook.
"""
from __future__ import annotations

import hashlib
import re

from grader.results import printable

# A cell starting with one of these is run as a formula by spreadsheets (tab and CR are
# control characters, escaped anywhere in an id anyway).
FORMULA_PREFIXES = ("=", "+", "-", "@")
MAX_STEM_BYTES = 120        # file name of a report: stem + ".results.json", temporary files add ~20
_PREFIX_BYTES = 100         # readable part kept of a longer stem, before "~" and the hash
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_RESULTS_SUFFIX = ".results"   # the Gradescope file is <stem>.results.json, the kit report <stem>.json


def id_bytes(ident: str) -> bytes:
    """The bytes of an id: its UTF-8, with each surrogate escape back to the raw byte of the file name."""
    try:
        return ident.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:   # a lone surrogate no file system name can yield
        return ident.encode("utf-8", "surrogatepass")


def _escape(ch: str) -> str:
    return "".join(f"%{byte:02X}" for byte in id_bytes(ch))


def _escaped(text: str, also: str = "") -> str:
    return "".join(_escape(ch) if ch == "%" or ch in also or not ch.isprintable() else ch for ch in text)


def encode_id(ident: str) -> str:
    """The id as the CSV's ``id`` cell: printable, never a formula, reversible by :func:`decode_id`.

    Reversible for every id a file system can name (Linux gives surrogates only as escapes of
    single bytes); a lone surrogate built by hand reads back as three escaped bytes.
    """
    text = _escaped(ident)
    if text[:1] in FORMULA_PREFIXES:
        text = _escape(text[0]) + text[1:]
    return text


def decode_id(text: str) -> str:
    """The id an ``id`` cell stands for: every run of ``%XX`` back to its bytes, the rest as it is.

    A ``%`` not followed by two hex digits is kept, so hand-typed ids read as typed.
    """
    return _ESCAPES.sub(lambda m: bytes.fromhex(m.group(0).replace("%", "")).decode("utf-8", "surrogateescape"),
                        text)


def display_id(ident: str) -> str:
    """The id as messages and progress lines show it: printable, as in the CSV."""
    return printable(encode_id(ident))


def file_stem(ident: str) -> str:
    """A file name stem for ``ident``: one folder level, not hidden, at most :data:`MAX_STEM_BYTES`.

    Different ids give different stems, and no stem ends in ``.results``, so ``<stem>.json``
    of one submission is never ``<stem>.results.json`` of another.
    """
    if not ident:
        return "~"   # "~" is escaped in every other stem, so this one is the empty id's alone
    text = _escaped(ident, also="/~")
    if text.startswith("."):
        text = _escape(".") + text[1:]
    if text.endswith(_RESULTS_SUFFIX):
        cut = len(text) - len(_RESULTS_SUFFIX)
        text = text[:cut] + _escape(".") + text[cut + 1:]
    if len(text.encode("utf-8")) <= MAX_STEM_BYTES:
        return text
    digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:16]   # injective on str
    prefix, used = [], 0
    for token in re.findall(r"%[0-9A-F]{2}|.", text, flags=re.S):   # never cut an escape in half
        size = len(token.encode("utf-8"))
        if used + size > _PREFIX_BYTES:
            break
        prefix.append(token)
        used += size
    return "".join(prefix) + "~" + digest
