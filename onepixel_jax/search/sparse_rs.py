"""Sparse-RS (Croce, Andriushchenko, Singh, Flammarion & Hein, AAAI 2022) for few pixels.

``P`` independent chains per image, so one model call still carries ``P`` candidates per image.
Each chain holds ``d`` perturbed pixels with colours at the corners of the colour cube. A step
moves ``m(t)`` of its pixels to new uniformly drawn positions with new random corner colours;
the proposal replaces the chain's current point when its fitness is not worse (lower is better,
NaN the worst). The schedule is Sparse-RS's: ``m(t) = max(1, round(alpha(t) * d))`` with
``alpha`` starting at 0.3 and halving after 1, 5, 20, 50, 100, 200, 400, 600 and 800 thousandths
of the run's ``horizon`` generations. For ``d <= 3`` one pixel moves per step from the start;
for ``d = 1`` every step is a fresh corner pixel (random search with corner colours).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from ..objective import clean_fitness
from ..types import Strategy
from .base import PAPER_BUDGET, SearchSpace, StrategySpec

ALPHA_INIT = 0.3
HALVINGS = (0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8)


@struct.dataclass
class SparseRSState:
    current: jax.Array  # shape=(P, D), float32: each chain's point
    fitness: jax.Array  # shape=(P,), float32; lower is better
    step: jax.Array  # shape=(), int32: generations asked so far


def moved_pixels(step: jax.Array, pixels: int, horizon: int) -> jax.Array:
    """``m(t)``: how many of the ``pixels`` tuples a step moves (int32, at least 1)."""
    t = step.astype(jnp.float32) / max(horizon, 1)
    halvings = jnp.sum(t >= jnp.asarray(HALVINGS, jnp.float32))
    alpha = ALPHA_INIT * 0.5 ** halvings.astype(jnp.float32)
    return jnp.maximum(1, jnp.floor(alpha * pixels + 0.5)).astype(jnp.int32)


def corner_tuples(key: jax.Array, shape: tuple, space: SearchSpace) -> jax.Array:
    """Random integer positions and corner colours: ``shape + (2 + C,)`` float32."""
    k_pos, k_col = jax.random.split(key)
    pos = jax.random.randint(k_pos, shape, 0, space.height * space.width)
    rows = (pos // space.width).astype(jnp.float32)
    cols = (pos % space.width).astype(jnp.float32)
    vals = 255.0 * jax.random.bernoulli(k_col, 0.5, shape + (space.channels,))
    return jnp.concatenate([rows[..., None], cols[..., None], vals.astype(jnp.float32)], -1)


def sparse_rs(space: SearchSpace, horizon: int | None = None) -> Strategy:
    """Sparse-RS over ``space`` with ``space.popsize`` chains; ``horizon``: the schedule's
    time axis in generations (``None``: the run's, ``space.generations``)."""
    p, d, t = space.popsize, space.pixels, 2 + space.channels
    horizon = space.generations if horizon is None else horizon

    def initial(key, params):
        return corner_tuples(jax.random.split(key)[0], (p, d), space).reshape(p, d * t)

    def init(key, genes, fitness, params):
        return SparseRSState(current=genes, fitness=clean_fitness(fitness), step=jnp.int32(0))

    def ask(key, state, params):
        k_new, k_which = jax.random.split(jax.random.split(key)[1])
        m = moved_pixels(state.step, d, horizon)
        fresh = corner_tuples(k_new, (p, d), space)
        # the m tuples of lowest random rank move
        rank = jnp.argsort(jnp.argsort(jax.random.uniform(k_which, (p, d)), axis=1), axis=1)
        move = rank < m
        cur = state.current.reshape(p, d, t)
        prop = jnp.where(move[..., None], fresh, cur).reshape(p, d * t)
        return space.clip(prop), state.replace(step=state.step + 1)

    def tell(key, genes, fitness, state, params):
        fit = clean_fitness(fitness)
        win = fit <= state.fitness
        return state.replace(
            current=jnp.where(win[:, None], genes, state.current),
            fitness=jnp.where(win, fit, state.fitness),
        )

    return Strategy(initial, init, ask, tell, ())


SPEC = StrategySpec(
    name="sparse-rs",
    build=sparse_rs,
    description="Sparse-RS: parallel chains of corner pixels, one pixel moved per step",
    popsize=100,
    budget=PAPER_BUDGET,
)
