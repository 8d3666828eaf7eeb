"""CMA-ES from evosax (``pip install evosax``), adapted to the gene bounds.

evosax's ``CMA_ES`` searches the unit cube ``[0, 1]^D`` (coordinates and colours scaled by
their bounds) from the best member of the initial population, with ``std_init = 0.3``; its
samples are clipped to the cube before they are scaled back to genes, and evosax is told the
unclipped samples (kept in the state) with the fitness of their clipped versions. Fitness is
minimised; NaN counts as the worst value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from ..objective import clean_fitness
from ..types import Strategy
from .base import PAPER_BUDGET, SearchSpace, StrategySpec

STD_INIT = 0.3


@struct.dataclass
class CMAState:
    es: object  # evosax's CMA-ES state (mean, covariance, step size, ...)
    samples: jax.Array  # shape=(P, D), float32: the last ask's unclipped samples in [0, 1]^D


def cma_es(space: SearchSpace) -> Strategy:
    from evosax.algorithms import CMA_ES  # noqa: PLC0415 (optional dependency)

    p, d = space.popsize, space.num_genes
    lo, hi = space.bounds()
    es = CMA_ES(population_size=p, solution=jnp.zeros((d,), jnp.float32))
    es_params = es.default_params.replace(std_init=STD_INIT)

    def to_genes(u):
        return space.clip(lo + jnp.clip(u, 0.0, 1.0) * (hi - lo))

    def initial(key, params):
        return space.sample(jax.random.split(key)[0])

    def init(key, genes, fitness, params):
        best = genes[jnp.argmin(clean_fitness(fitness))]
        mean = (best - lo) / (hi - lo)
        state = es.init(jax.random.split(key)[1], mean, es_params)
        state = state.replace(best_solution=mean)  # evosax starts it as NaN until a tell
        return CMAState(es=state, samples=jnp.zeros((p, d), jnp.float32))

    def ask(key, state, params):
        u, es_state = es.ask(jax.random.split(key)[1], state.es, es_params)
        u = u.astype(jnp.float32)
        return to_genes(u), CMAState(es=es_state, samples=u)

    def tell(key, genes, fitness, state, params):
        fit = clean_fitness(fitness)
        fit = jnp.where(jnp.isinf(fit), jnp.finfo(jnp.float32).max, fit)
        es_state, _ = es.tell(jax.random.split(key)[1], state.samples, fit, state.es, es_params)
        return CMAState(es=es_state, samples=state.samples)

    return Strategy(initial, init, ask, tell, ())


SPEC = StrategySpec(
    name="cma-es",
    build=cma_es,
    description="CMA-ES (evosax) on the gene box scaled to the unit cube",
    min_popsize=4,
    popsize=100,
    budget=PAPER_BUDGET,
)
