"""Sparse-RS (Croce, Andriushchenko, Singh, Flammarion & Hein, AAAI 2022) for few-pixel attacks.

Each chain holds ``d`` perturbed pixels at **distinct** positions, each coloured with a corner of
the colour cube. A step takes ``m(t)`` of the chain's pixels back to their clean colour and
perturbs ``m(t)`` positions drawn uniformly among the positions the chain does *not* perturb
(so the chain always perturbs exactly ``d`` distinct pixels), each with a random corner
colour. The proposal replaces the chain's point only when its fitness is strictly lower (lower
is better, NaN the worst).

The schedule is the authors' L0 one: ``m(t) = max(1, floor(alpha(t) * d))`` with
``alpha(t) = alpha_init / q``, ``q`` = 1 at the first step, then 2, 4, 5, 6, 8, 10, 12, 15 and
20 after 50, 200, 500, 1,000, 2,000, 4,000, 6,000 and 8,000 steps of a 10,000-step run, the
step counter rescaled from the run's ``horizon`` generations to 10,000 (their
``resc_schedule``). ``alpha_init = 0.3`` (their untargeted L0 setting).

Where this implementation differs from the authors' code (``fra31/sparse-rs``,
``rs_attacks.py``), and why:

- The engine evaluates ``P`` candidates per image and generation (``popsize``). They are
  the proposals of ``K`` chains (``chains``, default ``P``: independent chains side by side,
  each with ``budget / P`` steps); with ``K < P`` a chain makes ``P / K`` proposals per step
  and keeps the best. The authors run one chain per image with one proposal per step
  (``popsize=1``) and restart it (``n_restarts``) after its whole budget.
- Every chain draws its own moved tuples and new positions; the authors draw one set of
  tuple slots and one set of ranks among the free positions per step for the whole batch.
- A new pixel's corner is redrawn when it equals the clean pixel's colour (a pixel set to its
  own colour perturbs nothing, and the effective ``d`` would drop); the authors do this only
  when a single pixel moves.
- The fitness is the objective's (by default the paper's ``p_true``; ``margin`` is the
  probability margin); the authors use the logit margin (untargeted) or cross-entropy
  (targeted). The strategy never sees logits.
- The engine stops an image at its objective's stop rule (by default at the first success)
  and counts queries in generations of ``P``; the authors count single queries.

When fewer than ``m(t)`` positions are free (``d`` close to ``H * W``), the tuples that cannot
move keep their position and only change colour.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ..objective import clean_fitness
from ..types import Strategy
from .base import PAPER_BUDGET, SearchSpace, StrategySpec

ALPHA_INIT = 0.3
RESCALED_STEPS = 10_000  # the authors' schedule is written for a 10,000-step run
# alpha(t) = alpha_init / divisor, for steps t (rescaled) in (ends[i-1], ends[i]]
SCHEDULE_ENDS = (0, 50, 200, 500, 1_000, 2_000, 4_000, 6_000, 8_000)
SCHEDULE_DIVISORS = (1, 2, 4, 5, 6, 8, 10, 12, 15, 20)


@struct.dataclass
class SparseRSState:
    current: jax.Array  # shape=(K, D), float32: each chain's point (d distinct positions)
    fitness: jax.Array  # shape=(K,), float32; lower is better
    step: jax.Array  # shape=(), int32: steps asked so far
    clean_corner: jax.Array  # shape=(H*W,), int32: the clean pixel's corner index, -1 if none


def moved_table(pixels: int, alpha_init: float = ALPHA_INIT) -> tuple[int, ...]:
    """``m`` for each segment of the schedule, as the authors compute it
    (``max(int(alpha * d), 1)`` in double precision)."""
    return tuple(max(int(alpha_init / q * pixels), 1) for q in SCHEDULE_DIVISORS)


def schedule_segment(step: jax.Array, horizon: int) -> jax.Array:
    """The segment of the schedule (index into :data:`SCHEDULE_DIVISORS`) of ``step``."""
    step, n = step.astype(jnp.int32), max(int(horizon), 1)
    t = (step // n) * RESCALED_STEPS + ((step % n) * RESCALED_STEPS) // n  # no int32 overflow
    return jnp.sum(t > jnp.asarray(SCHEDULE_ENDS, jnp.int32)).astype(jnp.int32)


def moved_pixels(
    step: jax.Array, pixels: int, horizon: int, alpha_init: float = ALPHA_INIT
) -> jax.Array:
    """``m(t)``: how many of the ``pixels`` tuples step ``step`` moves (int32, at least 1)."""
    table = jnp.asarray(moved_table(pixels, alpha_init), jnp.int32)
    return table[schedule_segment(step, horizon)]


def corner_bits(corner: jax.Array, channels: int) -> jax.Array:
    """Channel values ``corner.shape + (C,)`` float32 (0 or 255) of corner indices (bit ``c``
    of the index is channel ``c`` at 255)."""
    bits = (corner[..., None] >> jnp.arange(channels)) & 1
    return 255.0 * bits.astype(jnp.float32)


def clean_corners(image: jax.Array) -> jax.Array:
    """Each pixel's corner index ``(H*W,)`` int32, or -1 where its colour is no corner."""
    h, w, c = image.shape
    colours = image.reshape(h * w, c)
    at_corner = jnp.all((colours == 0.0) | (colours == 255.0), axis=1)
    index = jnp.sum((colours == 255.0).astype(jnp.int32) << jnp.arange(c), axis=1)
    return jnp.where(at_corner, index, -1).astype(jnp.int32)


def fresh_corners(key: jax.Array, positions: jax.Array, clean_corner: jax.Array, channels: int):
    """Random corner indices for pixel ``positions`` (any shape), never the clean pixel's own
    colour (with one channel: the other corner)."""
    k = 2**channels
    k_draw, k_shift = jax.random.split(key)
    corner = jax.random.randint(k_draw, positions.shape, 0, k)
    own = clean_corner[positions]
    shift = jax.random.randint(k_shift, positions.shape, 1, max(k, 2))
    return jnp.where(corner == own, (own + shift) % k, corner)


def tuples_at(space: SearchSpace, positions: jax.Array, corner: jax.Array) -> jax.Array:
    """Pixel tuples ``positions.shape + (2 + C,)`` float32 at flat ``positions``."""
    rows = (positions // space.width).astype(jnp.float32)
    cols = (positions % space.width).astype(jnp.float32)
    vals = corner_bits(corner, space.channels)
    return jnp.concatenate([rows[..., None], cols[..., None], vals], -1)


def flat_positions(space: SearchSpace, tuples: jax.Array) -> jax.Array:
    """Flat pixel indices of tuples ``(..., 2 + C)`` (rounded and clipped like the decoder)."""
    rows = jnp.clip(jnp.round(tuples[..., 0]), 0, space.height - 1).astype(jnp.int32)
    cols = jnp.clip(jnp.round(tuples[..., 1]), 0, space.width - 1).astype(jnp.int32)
    return rows * space.width + cols


def distinct_positions(key: jax.Array, chains: int, pixels: int, hw: int) -> jax.Array:
    """``(chains, pixels)`` positions, distinct within each chain, uniform."""
    return jax.lax.top_k(jax.random.uniform(key, (chains, hw)), pixels)[1].astype(jnp.int32)


def propose_moves(key, space: SearchSpace, current, clean_corner, m):
    """Every chain of ``current`` ``(P, d, 2 + C)`` with ``m`` of its tuples moved to distinct
    positions it does not perturb, each with a fresh corner (see the module docstring)."""
    p, d = current.shape[:2]
    hw = space.height * space.width
    k_which, k_where, k_colour = jax.random.split(key, 3)
    pos = flat_positions(space, current)  # (P, d)
    rank = jnp.argsort(jax.random.uniform(k_which, (p, d)), axis=1)
    rank = jnp.argsort(rank, axis=1)  # a random permutation of 0..d-1 per chain
    move = rank < m
    scores = jax.random.uniform(k_where, (p, hw))
    scores = scores.at[jnp.arange(p)[:, None], pos].set(2.0)  # perturbed: never drawn
    top, free = jax.lax.top_k(-scores, d)  # (P, d): the d lowest scores per chain
    new_pos = jnp.take_along_axis(free, rank, axis=1).astype(jnp.int32)
    is_free = jnp.take_along_axis(top, rank, axis=1) > -1.5
    new_pos = jnp.where(is_free, new_pos, pos)  # no free position left: stay, recolour
    corner = fresh_corners(k_colour, new_pos, clean_corner, space.channels)
    fresh = tuples_at(space, new_pos, corner)
    return jnp.where(move[..., None], fresh, current)


def chain_of(popsize: int, chains: int) -> jax.Array:
    """The chain of each candidate ``(P,)`` int32: candidate ``i`` belongs to ``i mod K``."""
    return (jnp.arange(popsize) % chains).astype(jnp.int32)


def best_per_chain(genes, fitness, chains: int) -> tuple[jax.Array, jax.Array]:
    """Each chain's best candidate ``(K, D)`` and its fitness ``(K,)`` (ties: the first)."""
    mine = chain_of(genes.shape[0], chains)[None, :] == jnp.arange(chains)[:, None]  # (K, P)
    masked = jnp.where(mine, fitness[None, :], jnp.inf)
    pick = jnp.argmin(masked, axis=1)
    return genes[pick], jnp.min(masked, axis=1)


def sparse_rs(
    space: SearchSpace,
    horizon: int | None = None,
    alpha_init: float = ALPHA_INIT,
    chains: int | None = None,
) -> Strategy:
    """Sparse-RS over ``space``; ``horizon``: the schedule's time axis in generations
    (``None``: the run's, ``space.generations + 1``, the initial population included as the
    authors count their first query). ``chains`` ``K`` (``None``: ``popsize``, independent
    chains): candidate ``i`` of a generation is a proposal of chain ``i mod K``, and a chain
    moves to the best of its ``P / K`` proposals when that is strictly better (one proposal
    per chain and step when ``K = P``)."""
    p, d, t = space.popsize, space.pixels, 2 + space.channels
    hw = space.height * space.width
    k = p if chains is None else min(int(chains), p)
    horizon = space.generations + 1 if horizon is None else horizon
    owner = chain_of(p, k)

    def initial(key, params, image):
        k_pos, k_col = jax.random.split(jax.random.split(key)[0])
        pos = distinct_positions(k_pos, p, d, hw)
        corners = fresh_corners(k_col, pos, clean_corners(image), space.channels)
        return tuples_at(space, pos, corners).reshape(p, d * t)

    def init(key, genes, fitness, params, image):
        current, fit = best_per_chain(genes, clean_fitness(fitness), k)
        return SparseRSState(
            current=current, fitness=fit, step=jnp.int32(0), clean_corner=clean_corners(image)
        )

    def ask(key, state, params):
        m = moved_pixels(state.step + 1, d, horizon, alpha_init)
        cur = state.current[owner].reshape(p, d, t)
        prop = propose_moves(jax.random.split(key)[1], space, cur, state.clean_corner, m)
        return prop.reshape(p, d * t), state.replace(step=state.step + 1)

    def tell(key, genes, fitness, state, params):
        best, fit = best_per_chain(genes, clean_fitness(fitness), k)
        win = fit < state.fitness
        return state.replace(
            current=jnp.where(win[:, None], best, state.current),
            fitness=jnp.where(win, fit, state.fitness),
        )

    return Strategy(initial, init, ask, tell, (), image_aware=True)


def sparse_rs_settings(alpha_init=ALPHA_INIT, chains=None):
    """``alpha_init`` in (0, 1] (static: it fixes the schedule's table of ``m``) and
    ``chains`` (static; ``None``: one chain per candidate of a generation)."""
    if isinstance(alpha_init, bool) or not isinstance(alpha_init, int | float | np.floating):
        raise TypeError(f"alpha_init must be a number, got {alpha_init!r}")
    if not 0.0 < float(alpha_init) <= 1.0:
        raise ValueError(f"alpha_init must be in (0, 1], got {alpha_init!r}")
    if chains is not None and (isinstance(chains, bool) or not isinstance(chains, int)):
        raise TypeError(f"chains must be an int or None, got {chains!r}")
    if chains is not None and chains < 1:
        raise ValueError(f"chains must be >= 1, got {chains}")
    return {"alpha_init": float(alpha_init), "chains": chains}, ()


SPEC = StrategySpec(
    name="sparse-rs",
    build=sparse_rs,
    settings=sparse_rs_settings,
    description="Sparse-RS: chains of d distinct corner pixels, moved among unperturbed positions",
    popsize=100,
    budget=PAPER_BUDGET,
)
