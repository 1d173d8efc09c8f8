"""The one error type for problems with what a user passed in (plans, files, data, options)."""

from __future__ import annotations


class PaintersError(Exception):
    """A problem with the user's input or environment, shown as one line with no traceback."""


class PlanError(PaintersError, ValueError):
    """A plan text or value that cannot run: says what is wrong and where."""


class RuntimeMissingError(PaintersError):
    """The llama_cpp library found is not the patched build this package needs."""
