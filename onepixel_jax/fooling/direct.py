"""Direct encoding: one gene per pixel value, varied by polynomial mutation.

A genome is the image itself, ``(H, W, C)`` float32 in ``[0, 255]``, initialised uniform;
rendering rounds it to integers, so the classifier sees exactly what a PNG stores.
Each gene is mutated with probability ``mutation_rate`` by Deb's bounded polynomial
mutation with distribution index ``eta`` (the fooling-images paper: rate 0.1, eta 15); the
rate may decay geometrically with the generation, and an optional uniform crossover mixes
two parents gene by gene before mutation.

Bounded polynomial mutation of ``x`` in ``[lo, hi]`` with ``u ~ U[0, 1)``::

    d1 = (x - lo) / (hi - lo),  d2 = (hi - x) / (hi - lo),  p = 1 / (eta + 1)
    u < 0.5:  dq = (2u + (1 - 2u) (1 - d1)^(eta + 1))^p - 1
    u >= 0.5: dq = 1 - (2(1 - u) + 2(u - 0.5) (1 - d2)^(eta + 1))^p
    x' = x + dq (hi - lo)

so ``x'`` stays in ``[lo, hi]`` by construction (it is clipped against rounding only).
Far from the bounds ``dq`` has density ``(eta + 1) / 2 (1 - |dq|)^eta`` on ``[-1, 1]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from onepixel_jax.fooling.encoding import Encoding, check_image_shape


@struct.dataclass
class DirectParams:
    """Traced hyperparameters of the direct encoding."""

    mutation_rate: jax.Array | float = 0.1  # shape=(), probability per gene at generation 0
    eta: jax.Array | float = 15.0  # shape=(), polynomial mutation distribution index
    rate_decay: jax.Array | float = 1.0  # shape=(), rate at generation g: rate * decay**g
    min_rate: jax.Array | float = 0.0  # shape=(), floor of the decayed rate
    crossover_rate: jax.Array | float = 0.0  # shape=(), probability a child is a crossover


def polynomial_delta(u: jax.Array, x: jax.Array, lo: float, hi: float, eta) -> jax.Array:
    """The bounded polynomial mutation step ``dq`` (in units of ``hi - lo``) for draws ``u``."""
    span = hi - lo
    d1 = (x - lo) / span
    d2 = (hi - x) / span
    p = 1.0 / (eta + 1.0)
    low = jnp.power(2.0 * u + (1.0 - 2.0 * u) * jnp.power(1.0 - d1, eta + 1.0), p) - 1.0
    high = 1.0 - jnp.power(2.0 * (1.0 - u) + 2.0 * (u - 0.5) * jnp.power(1.0 - d2, eta + 1.0), p)
    return jnp.where(u < 0.5, low, high)


def polynomial_mutation(
    key: jax.Array,
    x: jax.Array,
    rate: jax.Array | float,
    eta: jax.Array | float,
    lo: float = 0.0,
    hi: float = 255.0,
) -> jax.Array:
    """Mutate every element of ``x`` (any shape, within ``[lo, hi]``) with probability ``rate``.

    Returns an array of the same shape and dtype, within ``[lo, hi]``.
    """
    if not hi > lo:
        raise ValueError(f"hi must be greater than lo, got lo={lo}, hi={hi}")
    key_mask, key_u = jax.random.split(key)
    mask = jax.random.uniform(key_mask, x.shape) < rate
    u = jax.random.uniform(key_u, x.shape)
    xf = x.astype(jnp.float32)
    moved = xf + polynomial_delta(u, xf, lo, hi, eta) * (hi - lo)
    return jnp.where(mask, jnp.clip(moved, lo, hi), xf).astype(x.dtype)


def uniform_crossover(key: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """Each gene from ``a`` or ``b`` with probability 1/2 (same shapes)."""
    return jnp.where(jax.random.bernoulli(key, 0.5, a.shape), a, b)


def mutation_rate_at(params: DirectParams, generation: jax.Array) -> jax.Array:
    """The per-gene mutation probability at ``generation`` (int32 scalar)."""
    g = jnp.asarray(generation, jnp.float32)
    rate = params.mutation_rate * jnp.power(params.rate_decay, g)
    return jnp.maximum(rate, params.min_rate)


def direct_encoding(image_shape: tuple[int, int, int], params: DirectParams | None = None):
    """The direct encoding for images of ``image_shape`` ``(H, W, C)``.

    Genomes are ``(num, H, W, C)`` float32 arrays in ``[0, 255]``.
    """
    shape = check_image_shape(image_shape)
    params = DirectParams() if params is None else params
    if not isinstance(params, DirectParams):
        raise TypeError(f"params must be DirectParams, got {type(params).__name__}")

    def init(key: jax.Array, num: int) -> jax.Array:
        return jax.random.uniform(key, (num, *shape), jnp.float32, 0.0, 255.0)

    def vary(key, parents, mates, params: DirectParams, generation) -> jax.Array:
        key_pick, key_cross, key_mut = jax.random.split(key, 3)
        crossed = uniform_crossover(key_cross, parents, mates)
        do_cross = jax.random.uniform(key_pick, (parents.shape[0], 1, 1, 1)) < params.crossover_rate
        start = jnp.where(do_cross, crossed, parents)
        return polynomial_mutation(key_mut, start, mutation_rate_at(params, generation), params.eta)

    def render(genomes: jax.Array) -> jax.Array:
        return jnp.round(genomes)  # what a uint8 image file holds

    return Encoding("direct", shape, init, vary, render, params)
