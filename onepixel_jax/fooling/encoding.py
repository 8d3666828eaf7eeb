"""The interface every genome encoding provides to :mod:`onepixel_jax.fooling.map_elites`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax


class Encoding(NamedTuple):
    """A genome encoding: pure functions over a batch of genomes.

    Attributes:
      name: short identifier (``"direct"``, ``"cppn"``).
      image_shape: ``(H, W, C)`` of the rendered images.
      init: ``init(key, num) -> genomes``, a pytree whose leaves have leading axis ``num``.
      vary: ``vary(key, parents, mates, params, generation) -> children``; ``mates`` is a
        second batch of parents for encodings that recombine (ignored otherwise),
        ``generation`` an int32 scalar for schedules.
      render: ``render(genomes) -> images``, ``(num, H, W, C)`` float32 with integer values
        in ``[0, 255]`` (so a saved uint8 image is classified exactly as during the search).
      params: default hyperparameters, a pytree of traced scalars passed to ``vary``.
    """

    name: str
    image_shape: tuple[int, int, int]
    init: Callable[[jax.Array, int], Any]
    vary: Callable[[jax.Array, Any, Any, Any, jax.Array], Any]
    render: Callable[[Any], jax.Array]
    params: Any


def check_image_shape(image_shape: object) -> tuple[int, int, int]:
    """Validate ``(H, W, C)`` with positive ints and ``C`` in {1, 3}."""
    try:
        shape = tuple(int(s) for s in image_shape)  # type: ignore[union-attr]
    except TypeError as err:
        raise TypeError(f"image_shape must be a tuple (H, W, C), got {image_shape!r}") from err
    if len(shape) != 3 or min(shape) < 1 or shape[2] not in (1, 3):
        raise ValueError(f"image_shape must be (H, W, C) with C in {{1, 3}}, got {image_shape!r}")
    return shape  # type: ignore[return-value]
