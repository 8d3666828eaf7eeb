"""How every ``onepixel`` command reports a mistake: one line on stderr and exit code 2.

:func:`run_command` runs a command's function. Input errors (:class:`UsageError`,
:class:`DamagedFileError`, a dataset that is not found, a path the operating system refuses)
become ``onepixel CMD: error: <one line>`` on stderr and exit code 2; anything else is an
internal error and keeps its traceback. :class:`ArgumentParser` gives argparse's own errors
the same one-line form, and the argument types below reject impossible values while parsing,
before any work starts.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path

from onepixel_jax.errors import UsageError
from onepixel_jax.files import DamagedFileError

SEED_LIMIT = 2**32  # jax.random.key and NumPy seeds take uint32

# Operating-system errors that are about a path the user gave (not a bug in the package).
_PATH_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


def _input_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [UsageError, DamagedFileError]
    try:
        from onepixel_jax.data import DataNotFoundError
    except ImportError:  # pragma: no cover - data is part of the package
        pass
    else:
        errors.append(DataNotFoundError)
    return tuple(errors)


def one_line(message: object) -> str:
    """``message`` on one line: its lines joined, list dashes and blank lines dropped."""
    lines = [ln.strip() for ln in str(message).splitlines()]
    lines = [ln[2:].strip() if ln.startswith("- ") else ln for ln in lines]
    return " ".join(ln for ln in lines if ln) or "unknown error"


def _os_message(exc: OSError) -> str:
    what = exc.strerror or type(exc).__name__
    return f"{exc.filename}: {what}" if exc.filename else what


def error_line(prog: str, message: object) -> str:
    return f"{prog}: error: {one_line(message)}"


def run_command(prog: str, func: Callable[[argparse.Namespace], int | None], args) -> int:
    """Run ``func(args)``; input errors print one line on stderr and return 2.

    ``prog`` is the command's name as shown (``"onepixel attack"``). KeyboardInterrupt returns
    130 with one line; every other exception propagates with its traceback.
    """
    try:
        return int(func(args) or 0)
    except _input_errors() as exc:
        print(error_line(prog, exc), file=sys.stderr)
        return 2
    except _PATH_ERRORS as exc:
        print(error_line(prog, _os_message(exc)), file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT):
            print(error_line(prog, _os_message(exc)), file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def command(prog: str, func: Callable[[argparse.Namespace], int | None]):
    """``func`` wrapped by :func:`run_command`: what each command sets as its ``func``, so
    that calling ``args.func(args)`` directly reports input errors the same way."""

    def wrapped(args: argparse.Namespace) -> int:
        return run_command(prog, func, args)

    wrapped.__name__ = getattr(func, "__name__", "command")
    wrapped.__doc__ = func.__doc__
    return wrapped


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (``PROG: error: MESSAGE``, exit code 2, no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, error_line(self.prog, f"{message} (see {self.prog} --help)") + "\n")


# --------------------------------------------------------------------------------------
# Argument types: they raise argparse.ArgumentTypeError, which argparse reports as
# "argument --flag: MESSAGE".


def seed(text: str) -> int:
    """A random seed: an integer in [0, 2**32)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32), got {value}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argument type for integers ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


def finite_float(text: str) -> float:
    """A finite float (no nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return value


def non_empty(text: str) -> str:
    """A non-empty string (paths: ``--out ""`` would mean the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Raise UsageError unless ``path`` is, or can be created as, a writable directory."""
    out = Path(path)
    if not str(path).strip():
        raise UsageError(f"{flag} must not be empty")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{flag} {out} exists and is not a directory")
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{flag} {out} cannot be created ({probe} is not a directory)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {out} is not writable ({probe} does not allow writing)")
    return out


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """Raise UsageError unless ``path`` can be written as a file (its folder is created)."""
    target = Path(path)
    if not str(path).strip():
        raise UsageError(f"{flag} must not be empty")
    if target.is_dir():
        raise UsageError(f"{flag} {target} is a directory")
    probe = target.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{flag} {target} cannot be created ({probe} is not a directory)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {target} is not writable ({probe} does not allow writing)")
    return target


def check_input_dir(path: str | os.PathLike | None, flag: str) -> None:
    """Raise UsageError when a given input directory does not exist."""
    if path is not None and not Path(path).is_dir():
        raise UsageError(f"{flag} {path} is not a directory")
