"""JADE (Zhang & Sanderson, IEEE TEVC 2009): adaptive DE with current-to-pbest/1 and an archive.

Every member ``i`` draws its own ``F_i ~ Cauchy(mu_F, 0.1)`` (clipped to ``[0.05, 1]``; JADE
redraws values <= 0) and ``CR_i ~ N(mu_CR, 0.1)`` (clipped to ``[0, 1]``) in ``ask``; both are
kept in the state and read back in ``tell``. The mutant is::

    v_i = x_i + F_i * (x_pbest - x_i) + F_i * (x_r1 - x~_r2)

with ``x_pbest`` uniform among the best ``max(2, p * P)`` members, ``r1 != i`` from the
population and ``x~_r2`` from the population or the archive of replaced parents, followed by
binomial crossover with ``CR_i``. A child replaces its parent when it is not worse; the F and CR
of strictly better children move ``mu_F`` (Lehmer mean) and ``mu_CR`` (mean) with rate ``c``.
Fitness is minimised; NaN counts as the worst value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ..objective import clean_fitness
from ..types import Strategy
from .base import PAPER_BUDGET, SearchSpace, StrategySpec
from .de import binomial_crossover, sample_indices


@struct.dataclass
class JADEParams:
    """Traced JADE hyperparameters."""

    c: jax.Array | float = 0.1  # shape=(), float32: adaptation rate of mu_F and mu_CR
    mu_F: jax.Array | float = 0.5  # shape=(), float32: initial location of F
    mu_CR: jax.Array | float = 0.5  # shape=(), float32: initial mean of CR


@struct.dataclass
class JADEState:
    population: jax.Array  # shape=(P, D), float32
    fitness: jax.Array  # shape=(P,), float32; lower is better
    archive: jax.Array  # shape=(P, D), float32: replaced parents
    archive_size: jax.Array  # shape=(), int32: filled rows of the archive
    mu_F: jax.Array  # shape=(), float32
    mu_CR: jax.Array  # shape=(), float32
    F: jax.Array  # shape=(P,), float32: the F of the last ask
    CR: jax.Array  # shape=(P,), float32: the CR of the last ask


def jade(space: SearchSpace, p_best: float = 0.1) -> Strategy:
    """JADE over ``space``; ``p_best``: the share of the population ``x_pbest`` comes from."""
    popsize = space.popsize
    top = max(2, int(round(p_best * popsize)))
    if popsize < 4:
        raise ValueError("popsize must be at least 4 for JADE")

    def initial(key, params):
        return space.sample(jax.random.split(key)[0])

    def init(key, genes, fitness, params):
        p, d = genes.shape
        return JADEState(
            population=genes,
            fitness=clean_fitness(fitness),
            archive=jnp.zeros((p, d), jnp.float32),
            archive_size=jnp.int32(0),
            mu_F=jnp.float32(params.mu_F),
            mu_CR=jnp.float32(params.mu_CR),
            F=jnp.zeros((p,), jnp.float32),
            CR=jnp.zeros((p,), jnp.float32),
        )

    def ask(key, state, params):
        k_f, k_cr, k_idx, k_best, k_arch, k_pick, k_cross = jax.random.split(
            jax.random.split(key)[1], 7
        )
        x = state.population
        f = state.mu_F + 0.1 * jax.random.cauchy(k_f, (popsize,))
        f = jnp.clip(f, 0.05, 1.0)
        cr = jnp.clip(state.mu_CR + 0.1 * jax.random.normal(k_cr, (popsize,)), 0.0, 1.0)
        idx = sample_indices(k_idx, popsize, 2)
        ranked = jnp.argsort(state.fitness)
        pbest = ranked[jax.random.randint(k_best, (popsize,), 0, top)]
        # x~_r2: from the union of population and archive, uniformly over its members
        n_arch = state.archive_size
        use_arch = jax.random.randint(k_pick, (popsize,), 0, popsize + n_arch) >= popsize
        a_idx = jax.random.randint(k_arch, (popsize,), 0, jnp.maximum(n_arch, 1))
        r2 = jnp.where(use_arch[:, None], state.archive[a_idx], x[idx[:, 1]])
        v = x + f[:, None] * (x[pbest] - x) + f[:, None] * (x[idx[:, 0]] - r2)
        children = binomial_crossover(k_cross, x, v, cr[:, None])
        return space.clip(children), state.replace(F=f, CR=cr)

    def tell(key, genes, fitness, state, params):
        fit = clean_fitness(fitness)
        win = fit <= state.fitness
        better = fit < state.fitness
        # replaced parents enter the archive; once it is full they overwrite random rows
        rank = jnp.cumsum(win) - 1
        slot = state.archive_size + rank
        rand_slot = jax.random.randint(jax.random.split(key)[1], (popsize,), 0, popsize)
        slot = jnp.where(slot < popsize, slot, rand_slot)
        slot = jnp.where(win, slot, popsize)  # out of bounds: dropped
        archive = state.archive.at[slot].set(state.population, mode="drop")
        size = jnp.minimum(state.archive_size + jnp.sum(win), popsize).astype(jnp.int32)
        n = jnp.sum(better)
        w = better.astype(jnp.float32)
        lehmer = jnp.sum(w * state.F**2) / jnp.maximum(jnp.sum(w * state.F), 1e-12)
        mean_cr = jnp.sum(w * state.CR) / jnp.maximum(n, 1)
        c = params.c
        mu_f = jnp.where(n > 0, (1 - c) * state.mu_F + c * lehmer, state.mu_F)
        mu_cr = jnp.where(n > 0, (1 - c) * state.mu_CR + c * mean_cr, state.mu_CR)
        return state.replace(
            population=jnp.where(win[:, None], genes, state.population),
            fitness=jnp.where(win, fit, state.fitness),
            archive=archive,
            archive_size=size,
            mu_F=mu_f.astype(jnp.float32),
            mu_CR=mu_cr.astype(jnp.float32),
        )

    return Strategy(initial, init, ask, tell, JADEParams())


def jade_settings():
    return {}, JADEParams(c=np.float32(0.1), mu_F=np.float32(0.5), mu_CR=np.float32(0.5))


SPEC = StrategySpec(
    name="jade",
    build=jade,
    settings=jade_settings,
    description="JADE: adaptive DE, current-to-pbest/1 with an archive, per-member F and CR",
    min_popsize=4,
    popsize=100,
    budget=PAPER_BUDGET,
)
