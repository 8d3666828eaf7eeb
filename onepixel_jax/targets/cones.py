"""Receptive-field cones of single input pixels, one spatial axis at a time (NumPy, plan time).

A *cone table* of a variable along one of its spatial axes is a pair of int64 arrays
``(lo, hi)`` with one entry per input position ``p`` of the image axis it derives from (rows or
columns): positions ``lo[p] .. hi[p]`` of the variable can change when input pixel ``p``
changes, and no others (``lo[p] > hi[p]``: none can). The input itself has ``lo = hi = p``.

A windowed operation (convolution or pooling with kernel ``k``, stride ``s``, low padding
``pad_lo`` and kernel dilation ``dil``) reads input positions ``o * s - pad_lo + t * dil``
(``t = 0 .. k - 1``) for output ``o``; :func:`reach` gives the hull of the outputs that read a
changed position. An elementwise operation of two variables has the :func:`union` of their
tables. A table gives a static window size (:func:`window`): the longest cone, and per input
position the start of the window that holds its cone, clamped inside the axis. A cone of one
pixel depends on that pixel only, so ``d`` pixels have ``d`` windows, each holding its own cone.
"""

from __future__ import annotations

import numpy as np


def identity(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The input's table along an axis of ``size`` positions: ``lo = hi = p``."""
    p = np.arange(size, dtype=np.int64)
    return p, p.copy()


def out_size(size: int, k: int, s: int, pad_lo: int, pad_hi: int, dil: int = 1) -> int:
    """Output length of a windowed operation on ``size`` inputs (VALID after padding)."""
    return (size + pad_lo + pad_hi - (k - 1) * dil - 1) // s + 1


def reach(
    lo: np.ndarray,
    hi: np.ndarray,
    size_in: int,
    k: int,
    s: int,
    pad_lo: int,
    dil: int,
    size_out: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The output table of a windowed operation whose input has table ``(lo, hi)`` along an
    axis of ``size_in`` positions: the hull of the outputs ``o < size_out`` that read a
    position in ``[lo[p], hi[p]]``; empty (``lo > hi``) when strides skip the whole range."""
    taps = np.arange(size_out)[:, None] * s - pad_lo + np.arange(k)[None, :] * dil
    hit = np.zeros((size_in + 1, size_out), np.int64)  # hit[i, o]: output o reads input i
    o_idx = np.broadcast_to(np.arange(size_out)[:, None], taps.shape)
    valid = (taps >= 0) & (taps < size_in)
    hit[taps[valid], o_idx[valid]] = 1
    cum = np.concatenate([np.zeros((1, size_out), np.int64), np.cumsum(hit, axis=0)])
    a = np.clip(lo, 0, size_in)
    b = np.clip(hi + 1, 0, size_in)
    reached = (cum[np.maximum(b, a)] - cum[a]) > 0  # (positions, size_out)
    any_hit = reached.any(axis=1)
    first = np.where(any_hit, reached.argmax(axis=1), size_out)
    last = np.where(any_hit, size_out - 1 - reached[:, ::-1].argmax(axis=1), -1)
    return first.astype(np.int64), last.astype(np.int64)


def union(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]):
    """The table of a value computed from two tables' values (hull per position)."""
    big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    lo, hi = np.full_like(a[0], big), np.full_like(a[1], small)
    for t_lo, t_hi in (a, b):
        some = t_lo <= t_hi  # empty entries take no part
        lo = np.where(some, np.minimum(lo, t_lo), lo)
        hi = np.where(some, np.maximum(hi, t_hi), hi)
    empty = lo > hi
    return np.where(empty, 0, lo), np.where(empty, -1, hi)


def window(lo: np.ndarray, hi: np.ndarray, size: int) -> tuple[int, np.ndarray]:
    """``(n, starts)``: the static window length that holds every cone of the table along an
    axis of ``size`` positions (at least 1, at most ``size``), and per input position the start
    of its window, ``starts[p] <= lo[p]`` and ``hi[p] < starts[p] + n``, clamped inside the
    axis (int32)."""
    lengths = np.where(lo <= hi, hi - lo + 1, 0)
    n = int(min(size, max(1, int(lengths.max(initial=0)))))
    starts = np.clip(np.minimum(lo, size), 0, size - n)
    return n, starts.astype(np.int32)
