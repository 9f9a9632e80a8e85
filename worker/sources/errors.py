"""The one error every source raises when it cannot be read at all."""

from __future__ import annotations


class SourceError(RuntimeError):
    """The source cannot be read at all; the worker exits 1 with this line."""
