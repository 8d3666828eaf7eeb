"""The writer's lock of a run folder: one writer per folder, or one per share of it.

A sweep holds :class:`RunFolderLock` for as long as it writes (``run_sweep`` takes it). The
lock is ``fcntl.flock`` on ``RUN/.lock``:

- an unsharded writer holds it exclusively, so a second writer on the same folder (another
  ``onepixel attack``, with the same or other settings) is refused at once with
  :class:`RunFolderBusyError` (a ``UsageError``: one line, exit code 2 on the command line);
- a share (``--shard I/N``, or one process of a ``jax.distributed`` job) holds it shared,
  plus ``RUN/.lock.I-of-N`` exclusively: the shares of a folder run side by side, each
  appending to its own results file, but the same share twice, or a share next to an
  unsharded writer, is refused.

The kernel drops a ``flock`` when its process dies, ``kill -9`` included, so a lock is never
left behind: the next writer takes it over and resumes. The lock file records the holder
(pid, host, start time, command) for the refusal message; a holder that ends normally
empties it, so a record found there by the next holder is the sign of a writer that was
killed (:attr:`RunFolderLock.stale`). Where ``fcntl`` does not exist (Windows) the lock is a
no-op.

A run folder that the lock created is removed again when the writer fails before writing
anything but the lock (a refused run leaves no empty folder behind).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path

from onepixel_jax.errors import UsageError
from onepixel_jax.files import UnsafeFileError, check_writable_file

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
SHARD_LOCK_FILE = ".lock.{i}-of-{n}"
_INFO_LIMIT = 4096  # bytes of holder information read from a lock file


class RunFolderBusyError(UsageError):
    """Another process is writing the run folder (or the same share of it)."""


def _holder_text(info: dict | None) -> str:
    if not info:
        return "another process"
    parts = [f"pid {info.get('pid', '?')}"]
    if info.get("host"):
        parts.append(f"on {info['host']}")
    if info.get("started"):
        parts.append(f"since {info['started']}")
    text = "process " + " ".join(parts)
    if info.get("shard"):
        text += f" (share {info['shard']})"
    return text


def read_holder(path: str | os.PathLike) -> dict | None:
    """The holder information recorded in a lock file (None when empty or unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        raw = os.read(fd, _INFO_LIMIT)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        info = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return info if isinstance(info, dict) else None


class RunFolderLock:
    """Context manager holding a run folder's writer lock (see the module docstring).

    Args:
      run_dir: the run folder; created (with its parents) if needed.
      shard: ``(i, n)`` for share ``i`` of ``n``, or None for the whole folder.
      flag: the name of the folder in messages (``--out`` on the command line).

    Raises (on entering):
      RunFolderBusyError: the folder, or this share of it, is being written by another
        process; the message names it (pid, host, start time).
      UnsafeFileError: the lock file is a symbolic link or not a regular file.
    """

    def __init__(
        self, run_dir: str | os.PathLike, shard: tuple[int, int] | None = None, flag: str = "--out"
    ) -> None:
        self.run_dir = Path(run_dir)
        self.shard = None if shard is None else (int(shard[0]), int(shard[1]))
        self.flag = flag
        self.stale: dict | None = None  # the record of a killed holder that was taken over
        self._fds: list[int] = []
        self._own: Path | None = None  # the lock file holding this writer's record
        self._created: list[Path] = []

    # -- paths ----------------------------------------------------------------------------

    @property
    def folder_lock(self) -> Path:
        return self.run_dir / LOCK_FILE

    @property
    def shard_lock(self) -> Path | None:
        if self.shard is None:
            return None
        return self.run_dir / SHARD_LOCK_FILE.format(i=self.shard[0], n=self.shard[1])

    def lock_files(self) -> list[Path]:
        return [self.folder_lock] + ([self.shard_lock] if self.shard is not None else [])

    # -- acquiring --------------------------------------------------------------------------

    def _make_folder(self) -> None:
        missing = []
        probe = self.run_dir
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._created = missing  # deepest first

    def _open(self, path: Path) -> int:
        check_writable_file(path)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFileError(
                    f"{path} is a symbolic link; a run folder's lock must be its own file"
                ) from None
            raise
        self._fds.append(fd)
        return fd

    def _try_lock(self, fd: int, shared: bool) -> bool:
        if fcntl is None:  # pragma: no cover
            return True
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def _busy(self, what: str, holders: list[dict | None]) -> RunFolderBusyError:
        known = [h for h in holders if h]
        who = ", ".join(_holder_text(h) for h in known) if known else "another process"
        return RunFolderBusyError(
            f"{self.flag} {self.run_dir}{what} is being written by {who}; only one writer at "
            "a time: wait for it to finish (then run the same command to resume) or use "
            f"another {self.flag}"
        )

    def _shard_holders(self) -> list[dict | None]:
        return [read_holder(p) for p in sorted(self.run_dir.glob(".lock.*-of-*"))]

    def _record(self, fd: int) -> None:
        old = os.pread(fd, _INFO_LIMIT, 0) if hasattr(os, "pread") else b""
        if old.strip():
            try:
                self.stale = json.loads(old.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                self.stale = {}
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv)[:1000],
            "shard": None if self.shard is None else f"{self.shard[0]}/{self.shard[1]}",
        }
        data = (json.dumps(info) + "\n").encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0) if hasattr(os, "pwrite") else os.write(fd, data)
        os.fsync(fd)

    def acquire(self) -> RunFolderLock:
        self._make_folder()
        try:
            folder_fd = self._open(self.folder_lock)
            if not self._try_lock(folder_fd, shared=self.shard is not None):
                holders = [read_holder(self.folder_lock)] + self._shard_holders()
                raise self._busy("", holders)
            if self.shard is None:
                self._record(folder_fd)
                self._own = self.folder_lock
            else:
                shard_fd = self._open(self.shard_lock)
                if not self._try_lock(shard_fd, shared=False):
                    what = f" (share {self.shard[0]}/{self.shard[1]})"
                    raise self._busy(what, [read_holder(self.shard_lock)])
                self._record(shard_fd)
                self._own = self.shard_lock
        except BaseException:
            self._close()
            self._remove_created()
            raise
        return self

    # -- releasing ------------------------------------------------------------------------

    def _close(self) -> None:
        for fd in reversed(self._fds):
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []

    def _remove_created(self) -> None:
        """Remove the folders this lock created, if nothing but lock files is in them."""
        for folder in self._created:
            try:
                names = set(os.listdir(folder))
            except OSError:
                return
            if not all(n == LOCK_FILE or n.startswith(LOCK_FILE + ".") for n in names):
                return
            for n in names:
                try:
                    os.unlink(folder / n)
                except OSError:
                    return
            try:
                folder.rmdir()
            except OSError:
                return
        self._created = []

    def release(self, failed: bool = False) -> None:
        """Empty this writer's record and drop the lock; after a failure, also remove a
        folder the lock created that holds nothing else."""
        if self._own is not None and self._fds:
            fd = self._fds[-1]
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
        self._own = None
        self._close()
        if failed:
            self._remove_created()
        self._created = []

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release(failed=exc_type is not None)

    def __del__(self) -> None:  # a lock object dropped without release
        self._close()


__all__ = ["LOCK_FILE", "SHARD_LOCK_FILE", "RunFolderBusyError", "RunFolderLock", "read_holder"]
