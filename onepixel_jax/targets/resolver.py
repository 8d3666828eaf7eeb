"""The model resolver: what evaluates an attack's candidates for a given model.

:func:`resolve` turns what the user passed to :func:`onepixel_jax.attack` into a
:class:`~onepixel_jax.types.Target`: a ``Target`` is used as given; a JAX ``predict_fn`` gets the
exact incremental evaluation where it pays (:mod:`.incremental`) or the patched full forward
(:mod:`.patched`); a host model (:mod:`.host`) runs through its callback.
"""

from __future__ import annotations

import functools
from typing import Any

from ..types import Target
from . import incremental
from .patched import patched_forward


def resolve(model: Any, channel_axis: bool, pixels: int, use_incremental: bool | None) -> Target:
    """The target of ``model`` for candidates of ``pixels`` pixels.

    Args:
      model: a :class:`~onepixel_jax.types.Target`, or a ``predict_fn``.
      channel_axis: ``False`` when the images have no channel axis (the model is called on
        ``(B, H, W)``).
      pixels: ``d``, which the incremental evaluation's plan depends on.
      use_incremental: ``None`` (where it pays), ``True`` (always; an error where it cannot)
        or ``False`` (never).
    """
    if isinstance(model, Target):
        return model
    chosen = incremental.select(
        model if channel_axis else _with_channel(model), pixels, use_incremental
    )
    return chosen if chosen is not None else patched_forward(model, channel_axis)


@functools.lru_cache(maxsize=64)
def _with_channel(predict_fn):
    """``predict_fn`` of ``(B, H, W)`` images as a function of ``(B, H, W, 1)`` batches (one
    object per function, so that compilations are reused)."""

    def predict(batch):
        return predict_fn(batch[..., 0])

    return predict
