"""Dead-pixel augmentation: training images with a few pixels set to random or extreme colours.

The defence the one-pixel attack's popular write-up suggests: show the network, during
training, images in which ``d`` pixels are "dead" (stuck at some colour), so that one changed
pixel is something it has seen. :func:`dead_pixels` perturbs a batch; :func:`augmentation`
returns it as the per-batch callback that :func:`onepixel_jax.zoo.training.create_train_state`
takes (``batch_fn``), run inside the jitted train step after the crop/flip augmentation.

``onepixel train --dead-pixel-rate R --dead-pixels D --dead-pixel-colours random|extreme``
trains with it (``TrainConfig.dead_pixel_rate`` etc.).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["COLOURS", "augmentation", "dead_pixels"]

COLOURS = ("random", "extreme")


def dead_pixels(
    key: jax.Array, images: jax.Array, rate: float, count: int, colours: str = "random"
) -> jax.Array:
    """Set ``count`` pixels of a ``rate`` share of the images to new colours.

    Args:
      key: PRNG key.
      images: ``(B, H, W, C)`` float32 pixel values in [0, 255].
      rate: probability that an image is perturbed (each image independently), in [0, 1].
      count: pixels per perturbed image, drawn uniformly with replacement (``d``).
      colours: ``"random"``: every channel uniform in [0, 255]; ``"extreme"``: every channel
        0 or 255 (a corner of the colour cube, where one-pixel attacks mostly land).

    Returns:
      ``(B, H, W, C)`` float32; unperturbed images are returned unchanged.
    """
    if colours not in COLOURS:
        raise ValueError(f"colours must be one of {COLOURS}, got {colours!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an int >= 1, got {count!r}")
    x = jnp.asarray(images, jnp.float32)
    b, h, w, c = x.shape
    k_pick, k_row, k_col, k_val = jax.random.split(key, 4)
    chosen = jax.random.bernoulli(k_pick, rate, (b,))
    rows = jax.random.randint(k_row, (b, count), 0, h)
    cols = jax.random.randint(k_col, (b, count), 0, w)
    if colours == "random":
        values = jax.random.uniform(k_val, (b, count, c), jnp.float32, 0.0, 255.0)
    else:
        values = 255.0 * jax.random.bernoulli(k_val, 0.5, (b, count, c)).astype(jnp.float32)
    batch_idx = jnp.broadcast_to(jnp.arange(b)[:, None], (b, count))
    perturbed = x.at[batch_idx, rows, cols].set(values)
    return jnp.where(chosen[:, None, None, None], perturbed, x)


def augmentation(
    rate: float, count: int = 1, colours: str = "random"
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``batch_fn(key, images) -> images``: :func:`dead_pixels` with these settings, for the
    zoo's train step. Equal settings give the same function object (one compiled step)."""
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    dead_pixels(jax.random.PRNGKey(0), jnp.zeros((1, 1, 1, 1)), 0.0, count, colours)  # checks
    return _augmentation(float(rate), int(count), colours)


@functools.cache
def _augmentation(rate: float, count: int, colours: str):
    return functools.partial(dead_pixels, rate=rate, count=count, colours=colours)
