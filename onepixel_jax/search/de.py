"""Differential evolution (Storn & Price), the one-pixel paper's search, as pure functions.

The paper's setting is DE/rand/1 with ``F = 0.5`` and no crossover::

    child_i = x_r1 + F * (x_r2 - x_r3),   r1, r2, r3 distinct and different from i

and each child competes only with its parent (same index; the child wins ties). Variants:
``mutation="best1"`` (``x_best + F * (x_r1 - x_r2)``) and binomial crossover.
Fitness is minimised; NaN counts as the worst value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from ..objective import clean_fitness
from ..types import Strategy
from .base import SearchSpace

MUTATIONS = ("rand1", "best1")


@struct.dataclass
class DEParams:
    """Traced DE hyperparameters."""

    F: jax.Array | float = 0.5  # shape=(), float32: differential weight
    crossover_rate: jax.Array | float = 0.0  # shape=(), float32: binomial CR (if enabled)


@struct.dataclass
class DEState:
    """One population and its fitness."""

    population: jax.Array  # shape=(P, D), float32
    fitness: jax.Array  # shape=(P,), float32; lower is better


def sample_indices(key: jax.Array, popsize: int, num: int = 3) -> jax.Array:
    """For every member ``i`` draw ``num`` distinct indices, all different from ``i``.

    Returns ``(popsize, num)`` int32. Each draw is uniform over the indices not yet
    excluded (the member itself and the earlier draws), by drawing a rank among the
    remaining ``popsize - 1 - k`` values and stepping over the excluded ones in order.
    """
    if popsize < num + 1:
        raise ValueError(f"popsize must be at least {num + 1} to draw {num} distinct others")
    keys = jax.random.split(key, num)
    excluded = jnp.arange(popsize, dtype=jnp.int32)[:, None]  # (P, 1): the member itself
    for k in range(num):
        u = jax.random.randint(keys[k], (popsize,), 0, popsize - 1 - k, dtype=jnp.int32)
        ex = jnp.sort(excluded, axis=1)
        for j in range(ex.shape[1]):  # ascending: each excluded value at or below u shifts it
            u = u + (u >= ex[:, j]).astype(jnp.int32)
        excluded = jnp.concatenate([excluded, u[:, None]], axis=1)
    return excluded[:, 1:]


def mutate(
    population: jax.Array,
    indices: jax.Array,
    F: jax.Array | float,
    best_index: jax.Array | None = None,
) -> jax.Array:
    """Mutant vectors from given indices.

    ``rand1`` (``best_index is None``): ``x[r1] + F * (x[r2] - x[r3])`` with ``indices[:, :3]``.
    ``best1``: ``x[best] + F * (x[r1] - x[r2])`` with ``indices[:, :2]``.
    """
    if best_index is None:
        base = population[indices[:, 0]]
        diff = population[indices[:, 1]] - population[indices[:, 2]]
    else:
        base = jnp.broadcast_to(population[best_index], population.shape)
        diff = population[indices[:, 0]] - population[indices[:, 1]]
    return base + F * diff


def binomial_crossover(
    key: jax.Array, parents: jax.Array, mutants: jax.Array, rate: jax.Array | float
) -> jax.Array:
    """Take each gene from the mutant with probability ``rate``; one random gene always."""
    k_mask, k_forced = jax.random.split(key)
    p, d = parents.shape
    take = jax.random.uniform(k_mask, (p, d)) < rate
    forced = jax.random.randint(k_forced, (p,), 0, d)
    take = take | (jnp.arange(d)[None, :] == forced[:, None])
    return jnp.where(take, mutants, parents)


def select(state: DEState, child_fitness: jax.Array) -> jax.Array:
    """Parent-versus-child selection mask: True where the child replaces its parent.

    A child wins ties (``<=``), which lets the population drift across plateaus.
    """
    return clean_fitness(child_fitness) <= state.fitness


def differential_evolution(
    space: SearchSpace, mutation: str = "rand1", crossover: bool = False
) -> Strategy:
    """DE over ``space``: ``mutation`` in :data:`MUTATIONS`, binomial ``crossover`` on/off."""
    if mutation not in MUTATIONS:
        raise ValueError(f"mutation must be one of {MUTATIONS}, got {mutation!r}")
    popsize = space.popsize

    def initial(key, params):
        return space.sample(jax.random.split(key)[0])

    def init(key, genes, fitness, params):
        return DEState(population=genes, fitness=clean_fitness(fitness))

    def ask(key, state, params):
        k_idx, k_cross = jax.random.split(jax.random.split(key)[1])
        pop = state.population
        idx = sample_indices(k_idx, popsize, 3)
        best = jnp.argmin(state.fitness) if mutation == "best1" else None
        children = mutate(pop, idx, params.F, best)
        if crossover:
            children = binomial_crossover(k_cross, pop, children, params.crossover_rate)
        return space.clip(children), state

    def tell(key, genes, fitness, state, params):
        win = select(state, fitness)
        return DEState(
            population=jnp.where(win[:, None], genes, state.population),
            fitness=jnp.where(win, clean_fitness(fitness), state.fitness),
        )

    return Strategy(initial, init, ask, tell, DEParams())
