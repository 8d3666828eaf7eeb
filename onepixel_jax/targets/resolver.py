"""The model resolver: what evaluates an attack's candidates for a given model.

:func:`resolve` turns what the user passed to :func:`onepixel_jax.attack` into a
:class:`~onepixel_jax.types.Target`: a ``Target`` is used as given; a JAX ``predict_fn`` gets the
exact incremental evaluation where it pays (:mod:`.incremental`) or the patched full forward
(:mod:`.patched`); a host model (:mod:`.host`) runs through its callback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..types import Target
from . import incremental
from .patched import patched_forward


def resolve(
    model: Any,
    channel_axis: bool,
    pixels: int,
    use_incremental: bool | None,
    image_shape: Sequence[int] | None = None,
) -> Target:
    """The target of ``model`` for candidates of ``pixels`` pixels.

    Args:
      model: a :class:`~onepixel_jax.types.Target`, or a ``predict_fn``.
      channel_axis: ``False`` when the images have no channel axis (the model is called on
        ``(B, H, W)``).
      pixels: ``d``, which the incremental evaluation's plan depends on.
      use_incremental: ``None`` (where it pays), ``True`` (always; an error naming the
        operation where it cannot) or ``False`` (never).
      image_shape: ``(H, W, C)``; with it the choice (and an ``incremental=True`` error) is
        made here, before anything is compiled.
    """
    if isinstance(model, Target):
        return model
    chosen = incremental.select(
        model, pixels, use_incremental, image_shape=image_shape, channel_axis=channel_axis
    )
    return chosen if chosen is not None else patched_forward(model, channel_axis)
