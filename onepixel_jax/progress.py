"""Live progress of an attack: images done, evaluations per second, ETA.

On one device the loop runs in segments of generations and the caller reports between them
(:func:`onepixel_jax.engine.evolve_in_segments`: no host callback inside the compiled loop, so
the persistent compilation cache can keep it). The sharded loop reports once per generation
through ``jax.debug.callback`` with a *channel* number it receives as data
(:func:`open_channel`); the callback forwards to the reporter registered under that number.
Two attacks running at once (threads) have two channels, so their reports never cross, and
the channel number being data keeps it out of the compiled program (a new reporter does not
recompile).

:class:`ProgressReporter` prints one line per update on stderr: an updating line (carriage
return) on a terminal, plain lines at most every ``plain_interval`` seconds otherwise (batch
jobs, CI, ``> log 2>&1``), so logs stay small.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
import time
from collections.abc import Callable, Iterator

_CHANNELS: dict[int, object] = {}
_LOCK = threading.Lock()
_NEXT = itertools.count(1)


@contextlib.contextmanager
def open_channel(reporter) -> Iterator[int]:
    """Register ``reporter`` (an object with ``update(done, useful, per_step, *device)`` and
    ``close()``) for the duration of the block; yields its channel number (``0``: no
    reporter, reports are dropped)."""
    if reporter is None:
        yield 0
        return
    with _LOCK:
        channel = next(_NEXT)
        _CHANNELS[channel] = reporter
    try:
        yield channel
    finally:
        with _LOCK:
            _CHANNELS.pop(channel, None)
        reporter.close()


def report(channel, done, useful, per_step, *device) -> None:
    """The host side of the loop's per-generation callback."""
    reporter = _CHANNELS.get(int(channel))
    if reporter is not None:
        reporter.update(int(done), int(useful), int(per_step), *map(int, device))


def duration(seconds: float) -> str:
    """``"42s"``, ``"3m05s"``, ``"2h07m"``; ``"?"`` for a value that is not a sane duration."""
    if not seconds >= 0 or seconds > 1e7:  # NaN, negative, or beyond ~4 months: unknown
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressReporter:
    """Per-generation progress of one attack: images done, evaluations/s and ETA.

    ``sink`` is called with a dict (``images_done``, ``images``, ``evaluations``,
    ``evaluations_per_s``, ``eta_s``, ``call_size``, ``elapsed_s``, ``compile_s``) per update;
    the default prints to ``stream`` (stderr): on a terminal one updating line at most every
    ``interval`` seconds, otherwise a plain line at most every ``plain_interval`` seconds
    (and always the first and the last report).
    ``compile_s`` is the time to the first generation (compilation included).
    """

    def __init__(
        self,
        num_images: int,
        budget: int,
        sink: Callable[[dict], None] | None = None,
        interval: float = 1.0,
        plain_interval: float = 30.0,
        stream=None,
    ):
        self.num_images, self.budget, self.sink = num_images, budget, sink
        self.stream = sys.stderr if stream is None else stream
        tty = getattr(self.stream, "isatty", lambda: False)()
        self.tty = bool(tty)
        self.interval = interval if self.tty else plain_interval
        self.start = time.perf_counter()
        self.last = self.start
        self.printed = False
        self.first: tuple[float, int] | None = None
        self.stats: dict = {}

    @property
    def compile_seconds(self) -> float | None:
        """Seconds from the start to the first generation's report (compilation included)."""
        return None if self.first is None else self.first[0] - self.start

    def update(self, done: int, useful: int, per_step: int, device: int = 0) -> None:
        now = time.perf_counter()
        if self.first is None:  # the first generation: compilation has just finished
            self.first = (now, useful)
        t0, u0 = self.first
        rate = (useful - u0) / (now - t0) if now > t0 and useful > u0 else 0.0
        if done > 0 and now > t0:
            eta = (now - t0) * (self.num_images - done) / done
        elif rate > 0:
            eta = max(self.num_images * self.budget - useful, 0) / rate
        else:
            eta = float("nan")
        self.stats = {
            "images_done": done,
            "images": self.num_images,
            "evaluations": useful,
            "evaluations_per_s": rate,
            "eta_s": eta,
            "call_size": per_step,
            "elapsed_s": now - self.start,
            "compile_s": t0 - self.start,
        }
        if self.sink is not None:
            self.sink(dict(self.stats))
            return
        first = not self.printed  # the first report: compilation is over
        if not first and now - self.last < self.interval and done < self.num_images:
            return
        self.last = now
        self.printed = True
        line = (
            f"[attack] {done}/{self.num_images} images  {useful:,} evaluations  "
            f"{rate:,.0f}/s  ETA {duration(eta)}"
        )
        if self.tty:
            print(f"\r{line}   ", end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.printed and self.sink is None and self.tty:
            print(file=self.stream, flush=True)


class SumOfShares:
    """Sums the per-generation reports of several devices (``update(..., device)``) into one
    reporter."""

    def __init__(self, reporter) -> None:
        self.reporter = reporter
        self.latest: dict[int, tuple[int, int, int]] = {}
        self.lock = threading.Lock()

    def update(self, done: int, useful: int, per_step: int, device: int = 0) -> None:
        with self.lock:
            self.latest[device] = (done, useful, per_step)
            d, u, s = (sum(v) for v in zip(*self.latest.values(), strict=True))
            self.reporter.update(d, u, s)

    def close(self) -> None:
        self.reporter.close()
