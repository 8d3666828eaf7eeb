"""Exceptions that mean "the user asked for something that cannot be done".

:class:`UsageError` is a ``ValueError`` (API users catch it as one); the command line turns
it, and the other input errors listed in ``onepixel_jax.cli.errors``, into one line on stderr
and exit code 2. Anything else is an internal error and keeps its traceback.
"""

from __future__ import annotations

from .files import DamagedFileError


class UsageError(ValueError):
    """A bad argument, input, path or file, with a message that says what was expected."""


__all__ = ["DamagedFileError", "UsageError"]
