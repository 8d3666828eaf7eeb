"""Random search: every generation is a fresh draw from the initial sampler.

With the ``"paper"`` sampler this is the one-pixel paper's baseline (coordinates uniform,
colours N(128, 127)) at the same evaluation budget as DE; with ``"corners"`` every colour
channel is 0 or 255. The generation's draw uses the same key an initial population would
(``split(key)[0]``). The engine keeps the best candidate seen.
"""

from __future__ import annotations

import jax

from ..perturb import check_sampler
from ..types import Strategy
from .base import SearchSpace, StrategySpec


def random_search(space: SearchSpace) -> Strategy:
    def initial(key, params):
        return space.sample(jax.random.split(key)[0])

    def init(key, genes, fitness, params):
        return ()

    def ask(key, state, params):
        return initial(key, params), state

    def tell(key, genes, fitness, state, params):
        return state

    return Strategy(initial, init, ask, tell, ())


def random_settings(sampler="paper"):
    """Random search takes the initial ``sampler`` (static)."""
    return {"sampler": check_sampler(sampler)}, ()


SPEC = StrategySpec(
    name="random",
    build=random_search,
    settings=random_settings,
    description="random search from the initial sampler (the paper's baseline)",
)
