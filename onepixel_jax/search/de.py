"""Differential evolution (Storn & Price), the one-pixel paper's search, as pure functions.

The paper's setting is DE/rand/1 with ``F = 0.5`` and no crossover::

    child_i = x_r1 + F * (x_r2 - x_r3),   r1, r2, r3 distinct and different from i

and each child competes only with its parent (same index). The paper's text keeps a child
"only if [it is] more fitted" than its parent: ``selection="strict"``. The ``"de"`` strategy's
default lets a child win ties (``"ties"``, SciPy's rule) and clips out-of-range mutants to the
box (``bounds="clip"``); SciPy redraws them uniformly (``"redraw"``). The ``"paper"`` preset is
strict with redraw. Variants (the ablation of docs/search-results.md):

- ``mutation="best1"``: ``x_best + F * (x_r1 - x_r2)`` (SciPy's default, with crossover);
- ``mutation="current_to_best1"``: ``x_i + F * (x_best - x_i) + F * (x_r1 - x_r2)``;
- ``mutation="rand2"``: ``x_r1 + F * (x_r2 - x_r3) + F * (x_r4 - x_r5)`` (needs 6 members);
- binomial crossover on/off; ``dither``: every generation draws its ``F`` uniformly from
  ``[F, 2F)`` (SciPy's ``mutation=(0.5, 1)`` for the paper's ``F = 0.5``).

Current-to-pbest/1 with an archive and adaptive F and CR is JADE (:mod:`.jade`).
Fitness is minimised; NaN counts as the worst value.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ..objective import clean_fitness
from ..perturb import check_sampler
from ..types import Strategy
from .base import SearchSpace, StrategySpec

MUTATIONS = ("rand1", "best1", "current_to_best1", "rand2")
_DRAWS = {"rand1": 3, "best1": 3, "current_to_best1": 3, "rand2": 5}


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


SELECTIONS = ("ties", "strict")
BOUNDS = ("clip", "redraw")


def select(state: DEState, child_fitness: jax.Array, selection: str = "ties") -> jax.Array:
    """Parent-versus-child selection mask: True where the child replaces its parent.

    ``"ties"``: a child wins ties (``<=``), which lets the population drift across plateaus
    (SciPy's rule). ``"strict"``: only a fitter child survives (``<``), the paper's text
    ("only if they are more fitted than their parents").
    """
    child = clean_fitness(child_fitness)
    return child < state.fitness if selection == "strict" else child <= state.fitness


def handle_bounds(
    space: SearchSpace, genes: jax.Array, bounds: str = "clip", key: jax.Array | None = None
) -> jax.Array:
    """Mutants brought back into the gene box: ``"clip"`` to the nearest bound, or
    ``"redraw"`` every out-of-range gene uniformly inside its bounds (SciPy's DE)."""
    if bounds == "clip":
        return space.clip(genes)
    lower, upper = space.bounds()
    fresh = jax.random.uniform(key, genes.shape, minval=lower, maxval=upper)
    return jnp.where((genes < lower) | (genes > upper), fresh, genes)


def mutate_variant(
    mutation: str,
    population: jax.Array,
    fitness: jax.Array,
    indices: jax.Array,
    F: jax.Array | float,
) -> jax.Array:
    """Mutants ``(P, D)`` of any of :data:`MUTATIONS` (``indices``: ``(P, >= 3 or 5)``)."""
    if mutation == "rand1":
        return mutate(population, indices, F)
    best = jnp.argmin(fitness)
    if mutation == "best1":
        return mutate(population, indices, F, best)
    x = population
    if mutation == "current_to_best1":
        return x + F * (x[best][None, :] - x) + F * (x[indices[:, 0]] - x[indices[:, 1]])
    if mutation == "rand2":
        d1 = x[indices[:, 1]] - x[indices[:, 2]]
        d2 = x[indices[:, 3]] - x[indices[:, 4]]
        return x[indices[:, 0]] + F * d1 + F * d2
    raise ValueError(f"mutation must be one of {MUTATIONS}, got {mutation!r}")


def differential_evolution(
    space: SearchSpace,
    mutation: str = "rand1",
    crossover: bool = False,
    dither: bool = False,
    selection: str = "ties",
    bounds: str = "clip",
) -> Strategy:
    """DE over ``space``: ``mutation`` in :data:`MUTATIONS`, binomial ``crossover`` on/off,
    ``dither`` (a fresh ``F`` in ``[F, 2F)`` every generation), ``selection`` in
    :data:`SELECTIONS` and the handling of out-of-range mutants, ``bounds`` in :data:`BOUNDS`."""
    if mutation not in MUTATIONS:
        raise ValueError(f"mutation must be one of {MUTATIONS}, got {mutation!r}")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if bounds not in BOUNDS:
        raise ValueError(f"bounds must be one of {BOUNDS}, got {bounds!r}")
    popsize = space.popsize
    draws = _DRAWS[mutation]
    if popsize < draws + 1:
        raise ValueError(f"popsize must be at least {draws + 1} for mutation {mutation!r}")

    def initial(key, params):
        return space.sample(jax.random.split(key)[0])

    def init(key, genes, fitness, params):
        return DEState(population=genes, fitness=clean_fitness(fitness))

    def ask(key, state, params):
        k_ask = jax.random.split(key)[1]
        k_idx, k_cross = jax.random.split(k_ask)
        pop = state.population
        idx = sample_indices(k_idx, popsize, draws)
        f = params.F
        if dither:
            f = f * (1.0 + jax.random.uniform(jax.random.fold_in(k_ask, 1)))
        children = mutate_variant(mutation, pop, state.fitness, idx, f)
        if crossover:
            children = binomial_crossover(k_cross, pop, children, params.crossover_rate)
        return handle_bounds(space, children, bounds, jax.random.fold_in(k_ask, 2)), state

    def tell(key, genes, fitness, state, params):
        win = select(state, fitness, selection)
        return DEState(
            population=jnp.where(win[:, None], genes, state.population),
            fitness=jnp.where(win, clean_fitness(fitness), state.fitness),
        )

    return Strategy(initial, init, ask, tell, DEParams())


def check_F(F) -> float:
    """The differential weight as a float in (0, 2], or one clear error."""
    if isinstance(F, bool) or not isinstance(F, int | float | np.integer | np.floating):
        raise TypeError(f"F must be a number, got {type(F).__name__} {F!r}")
    if not np.isfinite(F) or not 0.0 < float(F) <= 2.0:
        raise ValueError(f"F must be in (0, 2], got {F!r}")
    return float(F)


def check_crossover(rate) -> float | None:
    """A binomial crossover rate in [0, 1], or ``None`` (no crossover), or one clear error."""
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, int | float | np.integer | np.floating):
        raise TypeError(f"crossover must be a number, got {type(rate).__name__} {rate!r}")
    if not np.isfinite(rate) or not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"crossover must be None or a rate in [0, 1], got {rate!r}")
    return float(rate)


def check_mutation(mutation) -> str:
    if mutation not in MUTATIONS:
        raise ValueError(f"mutation must be one of {MUTATIONS}, got {mutation!r}")
    return mutation


def de_settings(
    F=0.5,
    crossover=None,
    mutation="rand1",
    sampler="paper",
    dither=False,
    selection="ties",
    bounds="clip",
):
    """DE's settings: ``F`` and the crossover rate are traced; the mutation, whether there is
    crossover, the initial ``sampler``, ``dither``, the ``selection`` rule and the ``bounds``
    handling are static."""
    rate = check_crossover(crossover)
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if bounds not in BOUNDS:
        raise ValueError(f"bounds must be one of {BOUNDS}, got {bounds!r}")
    if not isinstance(dither, bool | np.bool_):
        raise TypeError(f"dither must be a bool, got {dither!r}")
    options = {
        "mutation": check_mutation(mutation),
        "crossover": rate is not None,
        "dither": bool(dither),
        "sampler": check_sampler(sampler),
        "selection": selection,
        "bounds": bounds,
    }
    return options, DEParams(F=np.float32(check_F(F)), crossover_rate=np.float32(rate or 0.0))


PAPER_BOUNDS = "redraw"


def paper_settings(bounds=PAPER_BOUNDS):
    """The paper's DE: DE/rand/1, F = 0.5, no crossover, colours from N(128, 127), a child
    replaces its parent only when it is fitter (the paper's text). The text is silent on
    mutants outside the box; ``bounds`` defaults to SciPy's redraw (the implementation most
    reproductions use), ``"clip"`` is the alternative."""
    if bounds not in BOUNDS:
        raise ValueError(f"bounds must be one of {BOUNDS}, got {bounds!r}")
    return {"bounds": bounds}, DEParams(F=np.float32(0.5), crossover_rate=np.float32(0.0))


def _paper(space: SearchSpace, bounds: str = PAPER_BOUNDS) -> Strategy:
    space = dataclasses.replace(space, sampler="paper")
    return differential_evolution(space, "rand1", False, False, "strict", bounds)


SPEC = StrategySpec(
    name="de",
    build=differential_evolution,
    settings=de_settings,
    description="differential evolution (paper: DE/rand/1, F=0.5, no crossover)",
    min_popsize=4,
)
PAPER_SPEC = StrategySpec(
    name="paper",
    build=_paper,
    settings=paper_settings,
    description="the paper's DE: DE/rand/1, F=0.5, no crossover, N(128, 127) colours, strict "
    "selection, out-of-range mutants redrawn",
    min_popsize=4,
)
