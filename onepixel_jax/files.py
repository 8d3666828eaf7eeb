"""Crash-safe file writes and JSON-lines records, shared by every command that writes results.

- :func:`write_json_atomic` / :func:`write_bytes_atomic`: write to a temporary file beside
  the target, fsync, then ``os.replace`` (a reader sees the old or the new file, never half).
- :func:`append_jsonl`: one JSON object per line, flushed and fsynced after each record.
- :func:`read_jsonl`: every complete record; a torn last line (a kill mid-write) is dropped
  and, with ``repair=True``, cut off so appending continues cleanly. A damaged line in the
  middle raises :class:`DamagedFileError` naming the file and the byte offset.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class DamagedFileError(ValueError):
    """A results or state file that cannot be read back (named in the message)."""


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    # A name of its own per writer: processes writing the same file at once (shards of one
    # run folder) each replace it with a complete copy.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (trailing newline) atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def read_json_object(path: str | os.PathLike, what: str = "file") -> dict:
    """Read a JSON object; a missing, unreadable or non-object file raises DamagedFileError."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedFileError(f"{what} {path} cannot be read ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise DamagedFileError(f"{what} {path} is not a JSON object")
    return obj


def append_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Append records as compact JSON lines, flushing and fsyncing after each one."""
    with open(path, "a", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def read_jsonl(path: str | os.PathLike, repair: bool = False) -> list[dict]:
    """All complete records of a JSON-lines file (``[]`` when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    records, good_end, pos = [], 0, 0
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        end = len(raw) if nl < 0 else nl + 1
        line = raw[pos:end].strip()
        if line:
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                if end < len(raw):
                    raise DamagedFileError(f"{path} has a damaged record at byte {pos}") from None
                break  # a torn final line
            if not isinstance(rec, dict):
                if end < len(raw):
                    raise DamagedFileError(
                        f"{path} has a record that is not an object at byte {pos}"
                    )
                break
            if nl < 0:
                break  # complete JSON without its newline: treat as torn, rewrite it
            records.append(rec)
        good_end = end
        pos = end
    if repair and good_end < len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
            fh.flush()
            os.fsync(fh.fileno())
    return records
