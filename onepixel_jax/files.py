"""Crash-safe file writes and JSON-lines records, shared by every command that writes results.

- :func:`write_json_atomic` / :func:`write_bytes_atomic`: write to a temporary file beside
  the target, fsync, ``os.replace``, then fsync the folder (a reader sees the old or the new
  file, never half, and the new name survives a power cut).
- :func:`append_jsonl`: one JSON object per line, flushed and fsynced after each record.
- :func:`read_jsonl`: every complete record; a torn last line (a kill mid-write) is dropped
  and, with ``repair=True``, cut off so appending continues cleanly. A damaged line in the
  middle raises :class:`DamagedFileError` naming the file and the line.

Safety rules of every write here: a target that exists and is not a regular file (a device,
a fifo, a socket, a folder) is never replaced or written through, and neither is a symbolic
link (it could point at another run's records or at a system file): both raise
:class:`UnsafeFileError`. Callers that accept a user's own output path resolve the link first
(:func:`resolve_output`). A full disk or a read-only file system raises ``OSError`` whose
``filename`` is the file being written.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Deepest JSON nesting accepted in the files the package reads (run.json, records, cards):
# they are a few levels deep; anything deeper is damage or hostile.
MAX_JSON_DEPTH = 64


class DamagedFileError(ValueError):
    """A results or state file that cannot be read back (named in the message)."""


class UnsafeFileError(ValueError):
    """A write that would replace or go through something other than a regular file."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a fifo"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def check_writable_file(path: str | os.PathLike) -> None:
    """Raise :class:`UnsafeFileError` unless ``path`` is missing or a regular file (not a
    symbolic link, device, fifo, socket or folder)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError:
        return  # the write itself reports it (with the path)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(
            f"{path} is {_kind(st.st_mode)}, not a regular file; refusing to replace or write "
            "through it (remove it or choose another path)"
        )


def check_readable_file(path: str | os.PathLike, what: str = "file") -> None:
    """Raise :class:`DamagedFileError` when ``path`` exists but is not a regular file (a fifo
    or device would block or stream forever)."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise DamagedFileError(f"{what} {path} is {_kind(st.st_mode)}, not a regular file")


def resolve_output(path: str | os.PathLike) -> Path:
    """A user's output path with symbolic links resolved (the file they point at is written,
    the link is kept); :class:`UnsafeFileError` when the result is not a regular file."""
    resolved = Path(os.path.realpath(path))
    check_writable_file(resolved)
    return resolved


def _with_path(exc: OSError, path: Path) -> OSError:
    """``exc`` carrying ``path`` as its file name (a full disk's ``write`` error has none)."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder so that names created or replaced in it are durable (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (see the module docstring for the rules)."""
    path = Path(path)
    check_writable_file(path)
    # A name of its own per writer: processes writing the same file at once (shards of one
    # run folder) each replace it with a complete copy.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise _with_path(exc, path) from None
    fsync_dir(path.parent)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (trailing newline) atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def json_depth(obj: Any) -> int:
    """Nesting depth of a JSON value (0 for a scalar), computed without recursion."""
    depth, stack = 0, [(obj, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        depth = max(depth, level)
        if depth > MAX_JSON_DEPTH:
            return depth
        stack.extend((child, level + 1) for child in children)
    return depth


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` that raises ``ValueError`` for anything it cannot read, including
    nesting deeper than :data:`MAX_JSON_DEPTH` (which would otherwise exhaust the stack) and
    integers too long to convert."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    if json_depth(obj) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return obj


def read_json_object(path: str | os.PathLike, what: str = "file") -> dict:
    """Read a JSON object; a missing, unreadable or non-object file raises DamagedFileError."""
    path = Path(path)
    check_readable_file(path, what)
    try:
        obj = parse_json(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        detail = str(exc) if "nested" in str(exc) else type(exc).__name__
        raise DamagedFileError(f"{what} {path} cannot be read ({detail})") from None
    if not isinstance(obj, dict):
        raise DamagedFileError(f"{what} {path} is not a JSON object")
    return obj


def append_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Append records as compact JSON lines, flushing and fsyncing after each one.

    The file is created if needed; a symbolic link or a non-regular file raises
    :class:`UnsafeFileError` (records are never written through a link into another file).
    """
    path = Path(path)
    check_writable_file(path)
    created = not path.exists()
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            check_writable_file(path)  # raced into a link: say so
        raise _with_path(exc, path) from None
    try:
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
    except OSError as exc:
        raise _with_path(exc, path) from None
    if created:
        fsync_dir(path.parent)


def read_jsonl_lines(path: str | os.PathLike, repair: bool = False) -> list[tuple[int, dict]]:
    """``(line number, record)`` of every complete record of a JSON-lines file (1-based line
    numbers; ``[]`` when the file does not exist). See :func:`read_jsonl`."""
    path = Path(path)
    if not os.path.lexists(path):
        return []
    if repair:
        check_writable_file(path)
    check_readable_file(path, "records file")
    raw = path.read_bytes()
    records, good_end, pos, line_no = [], 0, 0, 0
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        end = len(raw) if nl < 0 else nl + 1
        line_no += 1
        line = raw[pos:end].strip()
        if line:
            try:
                rec = parse_json(line)
            except (ValueError, UnicodeDecodeError) as exc:
                if end < len(raw):
                    why = f": {exc}" if "nested" in str(exc) else ""
                    raise DamagedFileError(
                        f"{path} line {line_no} is a damaged record (not readable JSON{why})"
                    ) from None
                break  # a torn final line
            if not isinstance(rec, dict):
                if end < len(raw):
                    raise DamagedFileError(
                        f"{path} line {line_no} is a damaged record (not a JSON object)"
                    )
                break
            if nl < 0:
                break  # complete JSON without its newline: treat as torn, rewrite it
            records.append((line_no, rec))
        good_end = end
        pos = end
    if repair and good_end < len(raw):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
            try:
                os.ftruncate(fd, good_end)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _with_path(exc, path) from None
    return records


def read_jsonl(path: str | os.PathLike, repair: bool = False) -> list[dict]:
    """All complete records of a JSON-lines file (``[]`` when it does not exist).

    A torn last line (a kill mid-write) is dropped; with ``repair=True`` it is also cut off
    (the file must then be a regular file, not a link). A damaged line before the last raises
    :class:`DamagedFileError` naming the file and the line.
    """
    return [rec for _, rec in read_jsonl_lines(path, repair=repair)]
