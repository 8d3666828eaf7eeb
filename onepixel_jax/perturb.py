"""Few-pixel candidate encoding, decoding and patching.

A candidate is a flat float vector of ``d * (2 + C)`` genes: ``d`` tuples
``(row, col, v_0, ..., v_{C-1})``. Coordinates live in ``[-0.5, H - 0.5]`` (rows) and
``[-0.5, W - 0.5]`` (columns) so that rounding gives every pixel the same share of the
search space; channel values live in ``[0, 255]``. Decoding rounds every gene to an
integer and clips it to the image, so what the model sees is exactly representable in
uint8.

All functions are pure and work on one candidate / one image; the attack driver
``vmap``s them over candidates and images.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

COLOUR_MEAN = 128.0
COLOUR_STD = 127.0


def tuple_size(channels: int) -> int:
    """Genes per perturbed pixel: row, column and one value per channel."""
    return 2 + channels


def gene_bounds(pixels: int, height: int, width: int, channels: int) -> tuple[jax.Array, jax.Array]:
    """Lower and upper bounds of every gene, each ``(pixels * (2 + C),)`` float32."""
    lo = jnp.array([-0.5, -0.5] + [0.0] * channels, jnp.float32)
    hi = jnp.array([height - 0.5, width - 0.5] + [255.0] * channels, jnp.float32)
    return jnp.tile(lo, pixels), jnp.tile(hi, pixels)


def sample_candidates(
    key: jax.Array, num: int, pixels: int, height: int, width: int, channels: int
) -> jax.Array:
    """The paper's initial population: coordinates uniform over the image, colours N(128, 127).

    Returns ``(num, pixels * (2 + C))`` float32 genes inside :func:`gene_bounds`.
    """
    k_row, k_col, k_val = jax.random.split(key, 3)
    rows = jax.random.uniform(k_row, (num, pixels, 1), minval=-0.5, maxval=height - 0.5)
    cols = jax.random.uniform(k_col, (num, pixels, 1), minval=-0.5, maxval=width - 0.5)
    vals = COLOUR_MEAN + COLOUR_STD * jax.random.normal(k_val, (num, pixels, channels))
    genes = jnp.concatenate([rows, cols, jnp.clip(vals, 0.0, 255.0)], axis=-1)
    return genes.reshape(num, pixels * tuple_size(channels)).astype(jnp.float32)


def decode_candidate(genes: jax.Array, height: int, width: int, channels: int) -> jax.Array:
    """Decode one candidate into its pixel tuples.

    Args:
      genes: ``(pixels * (2 + C),)`` float genes.
    Returns:
      ``(pixels, 2 + C)`` int32 rows ``(row, col, v_0, ..., v_{C-1})``, coordinates clipped to
      the image and values to ``[0, 255]``.
    """
    t = jnp.round(genes.reshape(-1, tuple_size(channels))).astype(jnp.int32)
    row = jnp.clip(t[:, 0], 0, height - 1)
    col = jnp.clip(t[:, 1], 0, width - 1)
    vals = jnp.clip(t[:, 2:], 0, 255)
    return jnp.concatenate([row[:, None], col[:, None], vals], axis=1)


def apply_pixels(image: jax.Array, pixels: jax.Array) -> jax.Array:
    """Write decoded pixel tuples into one image.

    Args:
      image: ``(H, W, C)`` float image in pixel space.
      pixels: ``(d, 2 + C)`` int rows from :func:`decode_candidate`. Tuples are written in
        order, so when two tuples address the same pixel the later one wins.
    Returns:
      The patched ``(H, W, C)`` image, same dtype as ``image``.
    """
    for j in range(pixels.shape[0]):  # d is static and small: an unrolled, ordered write
        image = image.at[pixels[j, 0], pixels[j, 1]].set(pixels[j, 2:].astype(image.dtype))
    return image


def apply_candidates(image: jax.Array, genes: jax.Array) -> jax.Array:
    """Patch a population of candidates into one image.

    Args:
      image: ``(H, W, C)`` float image.
      genes: ``(P, pixels * (2 + C))`` candidate genes.
    Returns:
      ``(P, H, W, C)`` patched images.
    """
    h, w, c = image.shape
    pix = jax.vmap(lambda g: decode_candidate(g, h, w, c))(genes)
    return jax.vmap(apply_pixels, in_axes=(None, 0))(image, pix)


# --------------------------------------------------------------------------------------
# Initial samplers: (key, num, pixels, height, width, channels) -> (num, pixels * (2 + C))

CORNER_VALUES = (0.0, 255.0)


def sample_corner_candidates(
    key: jax.Array, num: int, pixels: int, height: int, width: int, channels: int
) -> jax.Array:
    """Coordinates uniform over the image, every channel 0 or 255 (a corner of the colour
    cube, as in CornerSearch and Sparse-RS). Same shape and bounds as
    :func:`sample_candidates`."""
    k_row, k_col, k_val = jax.random.split(key, 3)
    rows = jax.random.uniform(k_row, (num, pixels, 1), minval=-0.5, maxval=height - 0.5)
    cols = jax.random.uniform(k_col, (num, pixels, 1), minval=-0.5, maxval=width - 0.5)
    vals = 255.0 * jax.random.bernoulli(k_val, 0.5, (num, pixels, channels))
    genes = jnp.concatenate([rows, cols, vals.astype(jnp.float32)], axis=-1)
    return genes.reshape(num, pixels * tuple_size(channels)).astype(jnp.float32)


SAMPLERS = {"paper": sample_candidates, "corners": sample_corner_candidates}


def get_sampler(name: str):
    """The initial sampler called ``name`` (``"paper"``: N(128, 127) colours; ``"corners"``)."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {name!r}")
    return SAMPLERS[name]


def check_sampler(name) -> str:
    """``name`` if it names a sampler of :data:`SAMPLERS`, else one clear error."""
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {name!r}")
    return name


# --------------------------------------------------------------------------------------
# NumPy twin (reports rebuild adversarial images from stored pixel tuples)


def apply_pixels_np(image: np.ndarray, pixels) -> np.ndarray:
    """:func:`apply_pixels` in NumPy: a copy of ``image`` (H, W[, C]) with the decoded
    tuples ``(row, col, v_0, ...)`` written in order (later tuples win)."""
    out = np.array(image, copy=True)
    for t in np.asarray(pixels, np.int64):
        r, c = int(t[0]), int(t[1])
        out[r, c] = np.asarray(t[2:], out.dtype).reshape(out[r, c].shape)
    return out
