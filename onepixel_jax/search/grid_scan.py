"""Exhaustive grid scan: every pixel with every colour of a ``levels^C`` grid.

The reference for which images one pixel can flip at all (beyond the corners): with 4 levels
per channel (0, 85, 170, 255) a 32x32 RGB image has 1024 x 64 = 65,536 candidates. Pixels are
visited in a random order (drawn from the image's first key), each with all its grid colours
(the corners of the grid first, then the inner colours); after the scan, candidates are random
grid points. For ``d > 1`` every tuple repeats the first. The strategy does not read the
fitness: the engine keeps the best candidate and stops at success.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from ..types import Strategy
from .base import SearchSpace, StrategySpec


@struct.dataclass
class GridScanState:
    asked: jax.Array  # shape=(), int32: candidates asked so far
    plan_key: jax.Array  # shape=(2,), uint32: key data of the image's pixel order


def colour_order(levels: int, channels: int) -> jax.Array:
    """Grid colours ``(levels^C, C)`` float32, the cube's corners first."""
    grid = jnp.stack(jnp.meshgrid(*[jnp.arange(levels)] * channels, indexing="ij"), -1).reshape(
        -1, channels
    )
    corner = jnp.all((grid == 0) | (grid == levels - 1), axis=1)
    order = jnp.argsort(~corner, stable=True)
    return (grid[order] * (255.0 / (levels - 1))).astype(jnp.float32)


def grid_scan(space: SearchSpace, levels: int = 4) -> Strategy:
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    p, hw = space.popsize, space.height * space.width
    colours = colour_order(levels, space.channels)
    nc = colours.shape[0]

    def candidates(key, plan_key, start):
        perm = jax.random.permutation(plan_key, hw)
        i = start + jnp.arange(p)
        k_pix, k_col = jax.random.split(key)
        done = i >= hw * nc
        pix = jnp.where(done, jax.random.randint(k_pix, (p,), 0, hw), perm[(i // nc) % hw])
        col = jnp.where(done, jax.random.randint(k_col, (p,), 0, nc), i % nc)
        rows = (pix // space.width).astype(jnp.float32)
        cols = (pix % space.width).astype(jnp.float32)
        one = jnp.concatenate([rows[:, None], cols[:, None], colours[col]], 1)
        return jnp.tile(one, (1, space.pixels))

    def initial(key, params):
        k0 = jax.random.split(key)[0]
        return candidates(k0, k0, 0)

    def init(key, genes, fitness, params):
        k0 = jax.random.split(key)[0]
        return GridScanState(asked=jnp.int32(p), plan_key=jax.random.key_data(k0))

    def ask(key, state, params):
        plan_key = jax.random.wrap_key_data(state.plan_key)
        genes = candidates(jax.random.split(key)[1], plan_key, state.asked)
        return genes, state.replace(asked=state.asked + p)

    def tell(key, genes, fitness, state, params):
        return state

    return Strategy(initial, init, ask, tell, ())


GRID_BUDGET = 65_536  # 32 x 32 pixels x 4^3 colours: the whole grid of a CIFAR-10 image


def grid_settings(levels=4):
    """The grid's ``levels`` per channel (static)."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an int >= 2, got {levels!r}")
    return {"levels": int(levels)}, ()


SPEC = StrategySpec(
    name="grid-scan",
    build=grid_scan,
    settings=grid_settings,
    description="every pixel x a colour grid (4 levels per channel): which images can flip",
    popsize=128,
    budget=GRID_BUDGET,
)
