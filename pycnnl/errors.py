"""Exceptions raised by the pycnnl emulator where the vendor library would exit or misbehave."""
from __future__ import annotations


class CnnlError(Exception):
    """A misuse of the CnnlNet API: a shape that does not fit, a wrong size, a wrong call order.

    The vendor library prints a message and calls ``exit(1)``, or (more often: it checks
    very little) reads or writes the wrong amount of device memory. The emulator raises
    instead, naming the layer, the shapes and the sizes involved.
    """


class CnnlIndexError(CnnlError, IndexError):
    """A layer index outside ``range(net.size())`` (the vendor library does not check it)."""
