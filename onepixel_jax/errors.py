"""Exceptions that mean "the user asked for something that cannot be done".

:class:`UsageError` is a ``ValueError`` (API users catch it as one); the command line turns
it, and the other input errors listed in ``onepixel_jax.cli.errors``, into one line on stderr
and exit code 2. Anything else is an internal error and keeps its traceback.
"""

from __future__ import annotations

from .files import DamagedFileError


class UsageError(ValueError):
    """A bad argument, input, path or file, with a message that says what was expected."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a
    one-line error quotes of a model's or a library's own error."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


__all__ = ["DamagedFileError", "UsageError", "first_line"]
