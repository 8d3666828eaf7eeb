"""Exhaustive corner scan: every pixel with each of the ``2^C`` corners of the colour cube.

The one-pixel space restricted to corner colours (CornerSearch, Croce & Hein 2019) has
``H * W * 2^C`` candidates (8,192 on a 32x32 RGB image); this strategy visits each exactly once
per image, most promising first, and then draws random corner pixels:

1. **probe** (``H * W`` candidates): every pixel, in a random order, with its first corner;
2. **ranked** (``H * W * (2^C - 1)`` candidates): the other corners of every pixel, pixels in the
   order of their probe's fitness (lowest first: pixels whose probe already hurt the true class
   most are the likeliest to flip it), each pixel's corners in its order;
3. **random**: uniform pixels with uniform corners (the scan is complete).

A pixel's corners are ordered by ``probe``: ``"farthest"`` (the default) puts first the corner
farthest (L1) from the pixel's own colour in the clean image, then the others by decreasing
distance, ties by corner index: the largest change a corner can make at that pixel is tried
first. ``"random"`` starts at a random corner and takes the others in index order (the scan as
first published here). The order only moves successes earlier; the set of candidates scanned
is the same.

If ``P`` does not divide ``H * W`` the last probe generation is padded with random corner
pixels, so that the ranked order is fixed before it is first used. For ``d > 1`` every tuple
repeats the first (the scan is a one-pixel scan). Fitness is minimised; NaN counts as the worst
value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from ..objective import clean_fitness
from ..types import Strategy
from .base import PAPER_BUDGET, SearchSpace, StrategySpec


@struct.dataclass
class CornerScanState:
    asked: jax.Array  # shape=(), int32: candidates asked so far (the scan position)
    probe: jax.Array  # shape=(H*W,), float32: fitness of each probe, in probe order
    plan_key: jax.Array  # shape=(2,), uint32: key data of the image's probe order
    colours: jax.Array  # shape=(H*W, C), float32: the clean image's pixel colours


def pixel_genes(space: SearchSpace, pixel: jax.Array, corner: jax.Array) -> jax.Array:
    """Genes ``(N, d * (2 + C))`` of pixel indices ``pixel`` (N,) with corner indices
    ``corner`` (N,) (bit ``c`` of the index is channel ``c`` at 255), repeated ``d`` times."""
    c = space.channels
    rows = (pixel // space.width).astype(jnp.float32)
    cols = (pixel % space.width).astype(jnp.float32)
    bits = (corner[:, None] >> jnp.arange(c)[None, :]) & 1
    one = jnp.concatenate([rows[:, None], cols[:, None], 255.0 * bits.astype(jnp.float32)], 1)
    return jnp.tile(one, (1, space.pixels))


def scan_plan(key: jax.Array, space: SearchSpace) -> tuple[jax.Array, jax.Array]:
    """The image's probe order: a permutation of the pixels and one corner per pixel."""
    k_perm, k_corner = jax.random.split(key)
    hw = space.height * space.width
    perm = jax.random.permutation(k_perm, hw)
    corner = jax.random.randint(k_corner, (hw,), 0, 2**space.channels)
    return perm, corner


PROBES = ("farthest", "random")


def corner_order(colours: jax.Array, channels: int) -> jax.Array:
    """Corner indices ``(N, 2^C)`` of pixels with colours ``colours`` ``(N, C)``, farthest (L1)
    first; ties by corner index."""
    corners = jnp.arange(2**channels)
    bits = ((corners[:, None] >> jnp.arange(channels)[None, :]) & 1).astype(jnp.float32)
    dist = jnp.abs(colours[:, None, :] - 255.0 * bits[None]).sum(-1)
    return jnp.argsort(-dist, axis=1, stable=True)


def corner_scan(space: SearchSpace, probe: str = "farthest") -> Strategy:
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    p, hw, k = space.popsize, space.height * space.width, 2**space.channels
    ranked_start = -(-hw // p) * p  # first candidate of the ranked stage (generation-aligned)
    ranked_end = ranked_start + hw * (k - 1)

    def corners_at(pos, perm, first, colours):
        """Each pixel's corner order ``(N, k)``, for probe positions ``pos`` (N,)."""
        if probe == "farthest":
            return corner_order(colours[perm[pos]], space.channels)
        return (first[pos][:, None] + jnp.arange(k)[None, :]) % k

    def candidates(key, plan_key, start, fitness, colours):
        perm, first = scan_plan(plan_key, space)
        i = start + jnp.arange(p)
        k_pix, k_cor = jax.random.split(key)
        rand_pix = jax.random.randint(k_pix, (p,), 0, hw)
        rand_cor = jax.random.randint(k_cor, (p,), 0, k)
        # 1. probe: every pixel with its first corner
        pi = jnp.minimum(i, hw - 1)
        pix, cor = perm[pi], corners_at(pi, perm, first, colours)[:, 0]
        # 2. ranked: pixels by probe fitness, then each pixel's other corners in its order
        r = jnp.clip(i - ranked_start, 0, hw * (k - 1) - 1) if k > 1 else jnp.zeros_like(i)
        order = jnp.argsort(fitness, stable=True)
        pos = order[r // max(k - 1, 1)]
        rank_pix = perm[pos]
        ranked = corners_at(pos, perm, first, colours)
        rank_cor = jnp.take_along_axis(ranked, (1 + r % max(k - 1, 1))[:, None] % k, 1)[:, 0]
        in_probe = i < hw
        in_ranked = (i >= ranked_start) & (i < ranked_end)
        pix = jnp.where(in_probe, pix, jnp.where(in_ranked, rank_pix, rand_pix))
        cor = jnp.where(in_probe, cor, jnp.where(in_ranked, rank_cor, rand_cor))
        return pixel_genes(space, pix, cor)

    def initial(key, params, image):
        k0 = jax.random.split(key)[0]
        colours = image.reshape(hw, space.channels).astype(jnp.float32)
        return candidates(k0, k0, 0, jnp.zeros((hw,), jnp.float32), colours)

    def init(key, genes, fitness, params, image):
        state = CornerScanState(
            asked=jnp.int32(0),
            probe=jnp.full((hw,), jnp.inf, jnp.float32),
            plan_key=jax.random.key_data(jax.random.split(key)[0]),
            colours=image.reshape(hw, space.channels).astype(jnp.float32),
        )
        return tell(key, genes, fitness, state, params)

    def ask(key, state, params):
        plan_key = jax.random.wrap_key_data(state.plan_key)
        genes = candidates(
            jax.random.split(key)[1], plan_key, state.asked, state.probe, state.colours
        )
        return genes, state

    def tell(key, genes, fitness, state, params):
        i = state.asked + jnp.arange(p)
        slot = jnp.where(i < hw, i, hw)
        probe = state.probe.at[slot].set(clean_fitness(fitness), mode="drop")
        return state.replace(asked=state.asked + p, probe=probe)

    return Strategy(initial, init, ask, tell, (), image_aware=True)


def corner_settings(probe="farthest"):
    """The order of each pixel's corners, ``probe`` (static): see the module docstring."""
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {list(PROBES)}, got {probe!r}")
    return {"probe": probe}, ()


SPEC = StrategySpec(
    name="corner-scan",
    build=corner_scan,
    settings=corner_settings,
    description="every pixel x every colour-cube corner once, most promising pixels first",
    popsize=128,
    budget=PAPER_BUDGET,
)
