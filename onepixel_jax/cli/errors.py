"""How every ``onepixel`` command reports a mistake: one line on stderr and exit code 2.

:func:`run_command` runs a command's function. Input errors (:class:`UsageError`,
:class:`DamagedFileError`, an unsafe output path, a dataset that is not found, a path the
operating system refuses, a full disk, a host model that raised during the search, memory
that runs out) become ``onepixel CMD: error: <one line>`` on stderr and exit code 2; anything
else is an internal error and keeps its traceback. :class:`ArgumentParser` gives argparse's
own errors the same one-line form, and the argument types below reject impossible values
while parsing, before any work starts.

Interrupts: in the ``onepixel`` process itself (not when ``main(argv)`` is called from
Python), :func:`install_interrupt_handlers` makes SIGINT and SIGTERM end the process at once
with one line and exit code 130 (SIGINT) or 143 (SIGTERM), through ``os._exit`` after
flushing: every file a command writes is safe at any moment, and the interpreter's teardown,
where XLA's threads could crash it, is skipped. Called from Python, a KeyboardInterrupt
returns 130 with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from onepixel_jax.errors import UsageError
from onepixel_jax.files import DamagedFileError, UnsafeFileError

SEED_LIMIT = 2**32  # jax.random.key and NumPy seeds take uint32
INT32_MAX = 2**31 - 1  # the engine counts generations, images and queries in int32

# Operating-system errors that are about a path the user gave (not a bug in the package).
_PATH_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


def _input_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [UsageError, DamagedFileError, UnsafeFileError]
    data = sys.modules.get("onepixel_jax.data")  # loaded with the package (it imports this)
    if data is not None:
        errors.append(data.DataNotFoundError)
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


def _os_hint(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "; free some space and run the same command again (finished work is kept)"
    if exc.errno == errno.ENAMETOOLONG:
        return "; use a shorter path"
    return ""


def _host_failure(exc: BaseException) -> BaseException | None:
    """The recorded error of a host model (NumPy, ONNX, PyTorch) that raised inside the
    compiled search, which reaches us as an opaque XLA runtime error; None for others."""
    host = sys.modules.get("onepixel_jax.targets.host")
    if host is None:
        return None
    return host.host_failure(exc)


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    return type(exc).__name__ in ("JaxRuntimeError", "XlaRuntimeError") and (
        "RESOURCE_EXHAUSTED" in str(exc) or "Out of memory" in str(exc)
    )


def run_command(prog: str, func: Callable[[argparse.Namespace], int | None], args) -> int:
    """Run ``func(args)``; input errors print one line on stderr and return 2.

    ``prog`` is the command's name as shown (``"onepixel attack"``). KeyboardInterrupt returns
    130 with one line; every other exception propagates with its traceback.
    """
    _SIGNAL["prog"] = prog
    try:
        code = int(func(args) or 0)
    except _input_errors() as exc:
        print(error_line(prog, exc), file=sys.stderr)
        code = 2
    except _PATH_ERRORS as exc:
        print(error_line(prog, _os_message(exc) + _os_hint(exc)), file=sys.stderr)
        code = 2
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENAMETOOLONG):
            raise
        print(error_line(prog, _os_message(exc) + _os_hint(exc)), file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:
        failure = _host_failure(exc)
        if failure is not None:
            print(error_line(prog, failure), file=sys.stderr)
            code = 2
        elif _out_of_memory(exc):
            print(
                error_line(
                    prog,
                    "ran out of memory; lower --popsize, --chunk-size or --batch-size "
                    "(finished work is kept)",
                ),
                file=sys.stderr,
            )
            code = 2
        else:
            raise
    return code


# --------------------------------------------------------------------------------------
# Interrupts

_SIGNAL: dict[str, object] = {"received": None, "installed": False, "prog": "onepixel"}


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError, RuntimeError):
            pass  # RuntimeError: the signal came in the middle of a write to the stream


def _on_signal(signum: int, frame) -> None:
    """End the ``onepixel`` process now, with exit code 128 + ``signum``.

    Every file a command writes is safe at any moment: records are appended and fsynced one
    at a time (a torn last line is dropped on resume), everything else is replaced
    atomically, and the kernel drops the run folder's lock. Exiting here, rather than raising
    KeyboardInterrupt, means the signal cannot be swallowed (Python ignores an exception
    raised inside a garbage-collection callback, which JAX has) and the interpreter's
    teardown, where XLA's threads can crash, never runs."""
    _SIGNAL["received"] = signum
    name = "terminated" if signum == signal.SIGTERM else "interrupted"
    message = (
        f"{_SIGNAL['prog']}: {name}; finished work is on disk (run the same command again "
        "to resume)\n"
    )
    _flush()
    try:
        os.write(2, (("\n" if sys.stderr.isatty() else "") + message).encode())
    except (OSError, ValueError, AttributeError):
        pass
    os._exit(128 + signum)


def running_as_onepixel() -> bool:
    """Whether this process is the ``onepixel`` command (the console script, or ``python -m
    onepixel_jax.cli``), as opposed to a program or test that imports the package."""
    if sys.argv and os.path.basename(sys.argv[0]) == "onepixel":
        return True
    orig = list(getattr(sys, "orig_argv", []))
    return "-m" in orig and orig[orig.index("-m") + 1 : orig.index("-m") + 2] == [
        "onepixel_jax.cli"
    ]


def install_interrupt_handlers() -> bool:
    """SIGINT and SIGTERM end the process at once with exit code 130 or 143 and one line
    (see :func:`_on_signal`). Returns False where handlers cannot be installed (not the
    main thread). Only for the ``onepixel`` process: a program importing the package keeps
    its own handlers."""
    try:
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
    except ValueError:
        return False
    _SIGNAL["installed"] = True
    return True


def guard_onepixel_process() -> None:
    """Install the interrupt handlers as early as possible when this process is the
    ``onepixel`` command (the package calls it before importing JAX, so that a Ctrl-C in the
    first second is not lost in JAX's start-up)."""
    if not _SIGNAL["installed"] and running_as_onepixel():
        install_interrupt_handlers()


def interrupts_handled() -> bool:
    """True once :func:`install_interrupt_handlers` has run in this process."""
    return bool(_SIGNAL["installed"])


def finish_process(code: int) -> int:
    """The exit code of a command run by the ``onepixel`` process itself (a signal that
    arrived meanwhile ended the process already)."""
    _flush()
    return code


# --------------------------------------------------------------------------------------


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


def add_image_flags(p: argparse.ArgumentParser) -> None:
    """The flags that choose a command's images, shared by ``attack`` and ``verify`` so that
    the same values pick the same images: ``--dataset``, ``--split``, ``--data-dir``,
    ``--download`` and ``--n-images``."""
    p.add_argument("--dataset", required=True, help="cifar10, mnist, digits, imagenet-sample")
    p.add_argument("--split", default="test", help="dataset split (default: test)")
    p.add_argument("--data-dir", default=None, type=non_empty, help="dataset folder")
    p.add_argument(
        "--download",
        action="store_true",
        help="download the dataset if it is not found locally (never done otherwise)",
    )
    p.add_argument("--n-images", type=int_at_least(1), default=100, help="images (default: 100)")


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


def int_between(minimum: int, maximum: int, why: str = "") -> Callable[[str], int]:
    """An argument type for integers in ``[minimum, maximum]`` (``why`` explains the bound)."""

    def parse(text: str) -> int:
        value = int_at_least(minimum)(text)
        if value > maximum:
            reason = f" ({why})" if why else ""
            raise argparse.ArgumentTypeError(f"must be at most {maximum:,}{reason}, got {value:,}")
        return value

    parse.__name__ = f"int in [{minimum}, {maximum}]"
    return parse


def host_port(text: str) -> str:
    """A ``HOST:PORT`` address (a port in [1, 65535]; IPv6 hosts in brackets)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be HOST:PORT with a port in [1, 65535], such as 10.0.0.1:1234, got {text!r}"
        )
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not bare or any(c.isspace() or c in "/?#@" for c in bare):
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, got {text!r}")
    return text.strip()


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


def check_path_length(path: str | os.PathLike, flag: str) -> None:
    """Raise UsageError when a component of ``path``, or the whole path, is longer than the
    file system allows (``NAME_MAX``/``PATH_MAX`` of the nearest existing folder)."""
    p = Path(path)
    probe = p if os.path.exists(p) else p.parent  # os.path: False, not an error, on a long name
    while not os.path.exists(probe) and probe != probe.parent:
        probe = probe.parent
    try:
        name_max = os.pathconf(probe, "PC_NAME_MAX")
        path_max = os.pathconf(probe, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        name_max, path_max = 255, 4096
    for part in p.parts:
        if len(os.fsencode(part)) > name_max:
            raise UsageError(
                f"{flag}: the name {part[:20]}... is {len(os.fsencode(part))} bytes long, the file "
                f"system allows {name_max}; use a shorter name"
            )
    # Room for the longest file name written inside (results.I-of-N.jsonl and the like).
    if len(os.fsencode(os.path.abspath(p))) + 64 > path_max:
        raise UsageError(f"{flag}: the path is longer than the file system allows ({path_max})")


@contextlib.contextmanager
def removed_on_failure(path: str | os.PathLike) -> Iterator[None]:
    """Remove what the block created under the folder ``path`` if the block fails: the
    folder itself when it did not exist before, else the entries that were not in it (a
    refused or failed command leaves nothing behind). An interrupt keeps everything:
    commands that resume continue from what an interrupted run wrote. A command refused
    because another process writes the folder removes nothing: what is there is that
    writer's (it may have created the folder since this command looked)."""
    from onepixel_jax.experiments.lock import RunFolderBusyError

    path = Path(path)
    existed = os.path.lexists(path)
    before = set(os.listdir(path)) if existed and path.is_dir() else None
    try:
        yield
    except (KeyboardInterrupt, RunFolderBusyError):
        raise
    except BaseException:
        if path.is_symlink() or not path.is_dir():
            raise
        if not existed:
            shutil.rmtree(path, ignore_errors=True)
        elif before is not None:
            for name in set(os.listdir(path)) - before:
                entry = path / name
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        entry.unlink()
        raise


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Raise UsageError unless ``path`` is, or can be created as, a writable directory."""
    out = Path(path)
    if not str(path).strip():
        raise UsageError(f"{flag} must not be empty")
    check_path_length(out, flag)
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
    check_path_length(target, flag)
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


guard_onepixel_process()  # in the onepixel process, as early as this module is imported
