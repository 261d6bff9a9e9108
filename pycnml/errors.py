"""Exceptions raised by the emulator where the vendor library would print and exit(1)."""
from __future__ import annotations


class CnmlError(Exception):
    """A misuse of the CnmlNet API: wrong sizes, wrong order of calls, wrong layer.

    The vendor library prints a message and calls ``exit(1)`` (or silently reads
    the wrong memory) in these cases; the emulator raises instead, naming the
    layer and the sizes involved.
    """


class CnmlIndexError(CnmlError, IndexError):
    """A layer index outside ``range(net.size())``."""
