"""What every strategy shares: the search space and the registry entry.

A strategy is registered as a :class:`StrategySpec`: how to build it from the static part of
an :class:`~onepixel_jax.engine.AttackConfig` (anything that fixes shapes or control flow)
and how to read its traced hyperparameters from the same config (numeric knobs: changing them
does not recompile the engine).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ..perturb import gene_bounds, get_sampler, tuple_size
from ..types import Strategy


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The genes of one image's candidates: ``pixels`` tuples ``(row, col, v_0..v_{C-1})``.

    ``popsize`` candidates are evaluated per generation; ``sampler`` names the initial
    distribution (:data:`onepixel_jax.perturb.SAMPLERS`).
    """

    pixels: int
    height: int
    width: int
    channels: int
    popsize: int
    sampler: str = "paper"

    @property
    def num_genes(self) -> int:
        return self.pixels * tuple_size(self.channels)

    def bounds(self) -> tuple[jax.Array, jax.Array]:
        """``(lower, upper)``, each ``(D,)`` float32."""
        return gene_bounds(self.pixels, self.height, self.width, self.channels)

    def sample(self, key: jax.Array, num: int | None = None) -> jax.Array:
        """``(num or popsize, D)`` genes from the space's initial sampler."""
        fn = get_sampler(self.sampler)
        n = self.popsize if num is None else num
        return fn(key, n, self.pixels, self.height, self.width, self.channels)

    def clip(self, genes: jax.Array) -> jax.Array:
        lower, upper = self.bounds()
        return jnp.clip(genes, lower, upper)


@dataclasses.dataclass(frozen=True)
class StrategySpec:
    """A registered strategy.

    Attributes:
      name: registry name (``AttackConfig(strategy=name)``, ``--strategy name``).
      build: ``build(space, **static_options) -> Strategy``.
      static_options: ``static_options(cfg) -> dict`` of hashable options read from the config.
      params: ``params(cfg) -> pytree`` of traced hyperparameters read from the config.
      description: one line for listings.
      min_popsize: the smallest population the strategy works with.
      popsize: the population used when the config leaves ``popsize`` unset.
      budget: evaluations per image when the config leaves ``max_iters`` unset (as many
        generations as fit); ``None``: 100 generations (the paper's).
      stall: the stall rule used when the config leaves ``stall`` unset (``0``: off); an int,
        or ``stall(cfg) -> int`` where it depends on the config (``fast``: on ``pixels``).
      options: the names of the strategy's static options (``AttackConfig.options``).
    """

    name: str
    build: Callable[..., Strategy]
    static_options: Callable[[Any], dict]
    params: Callable[[Any], Any]
    description: str
    min_popsize: int = 1
    popsize: int = 400
    budget: int | None = None
    stall: int | Callable[[Any], int] = 0
    options: tuple[str, ...] = ()
