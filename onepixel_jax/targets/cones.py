"""Receptive-field window arithmetic for incremental evaluation (one spatial axis at a time).

A spatial layer (convolution or pooling) with kernel ``k``, stride ``s`` and padding
``pad_lo`` maps input position ``i`` to the outputs ``o`` whose window
``[o * s - pad_lo, o * s - pad_lo + k - 1]`` contains ``i``. The functions here give, for a
changed input range, the output range it reaches (:func:`reach`, traced), a static bound on
that range's length (:func:`window_size`) and the start of a fixed-size window that holds it,
clamped inside the layer (:func:`window_start`). Multiply-add counts of the full and the
windowed layer are in :func:`conv_macs`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def out_size(n: int, k: int, s: int, pad_lo: int, pad_hi: int) -> int:
    """Output length of a layer on ``n`` inputs (VALID after padding)."""
    return (n + pad_lo + pad_hi - k) // s + 1


def window_size(n_in: int, k: int, s: int, n_out: int) -> int:
    """Static bound on the outputs reached by any ``n_in`` consecutive inputs.

    The reached outputs satisfy ``o * s`` in an interval of ``n_in + k - 1`` integers, which
    holds at most ``ceil((n_in + k - 1) / s)`` multiples of ``s``; never more than ``n_out``.
    """
    return min(n_out, -(-(n_in + k - 1) // s))


def reach(lo: jax.Array, hi: jax.Array, k: int, s: int, pad_lo: int, n_out: int):
    """Output range ``[o_lo, o_hi]`` (int32, clipped to ``[0, n_out - 1]``) whose windows
    meet the input range ``[lo, hi]``; empty (``o_lo > o_hi``) when strides skip it."""
    o_lo = -((k - 1 - pad_lo - lo) // s)  # ceil((lo + pad_lo - k + 1) / s)
    o_hi = (hi + pad_lo) // s
    return jnp.clip(o_lo, 0, n_out - 1), jnp.clip(o_hi, 0, n_out - 1)


def window_start(o_lo: jax.Array, size: int, n_out: int) -> jax.Array:
    """Start of the ``size``-long window that holds a reached range beginning at ``o_lo``,
    clamped so that the window lies inside ``[0, n_out)``. A range of length at most
    ``size`` starting at ``o_lo`` stays inside the clamped window."""
    return jnp.clip(o_lo, 0, n_out - size)


def input_extent(size: int, k: int, s: int) -> int:
    """Inputs (padded coordinates) read by ``size`` consecutive outputs."""
    return (size - 1) * s + k


def conv_macs(positions: int, kh: int, kw: int, c_in: int, c_out: int, groups: int = 1) -> int:
    """Multiply-adds of a convolution evaluated at ``positions`` output positions."""
    return positions * kh * kw * (c_in // groups) * c_out
