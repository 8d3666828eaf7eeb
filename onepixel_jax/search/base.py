"""What every strategy shares: the search space, the registry entry and the built method.

A strategy module defines its ask/tell functions (:class:`onepixel_jax.types.Strategy`) and one
:class:`StrategySpec`: how to build the strategy for a search space, and how its settings split
into static options (anything that fixes shapes or control flow: a new value recompiles) and
traced hyperparameters (numeric knobs: a new value does not recompile).
:func:`onepixel_jax.search.make` turns a name and settings into a :class:`SearchMethod`, the
object the engine receives.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from ..perturb import gene_bounds, get_sampler, tuple_size
from ..types import Strategy

PAPER_BUDGET = 40_400  # the paper's evaluations per image (400 x 101)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The genes of one image's candidates: ``pixels`` tuples ``(row, col, v_0..v_{C-1})``.

    ``popsize`` candidates are evaluated per generation, for ``generations`` generations after
    the initial population; ``sampler`` names the initial distribution
    (:data:`onepixel_jax.perturb.SAMPLERS`).
    """

    pixels: int
    height: int
    width: int
    channels: int
    popsize: int
    sampler: str = "paper"
    generations: int = 100

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


def _no_settings() -> tuple[dict, tuple]:
    return {}, ()


@dataclasses.dataclass(frozen=True)
class StrategySpec:
    """A registered strategy.

    Attributes:
      name: registry name (``search.make(name)``, ``AttackConfig(strategy=name)``,
        ``--strategy name``).
      build: ``build(space, **options) -> Strategy``.
      settings: ``settings(**knobs) -> (options, params)``: the strategy's own settings, as
        keyword arguments with defaults, split into hashable static ``options`` (passed to
        ``build``) and a pytree of traced ``params``. A knob it does not take is an error.
      description: one line for listings.
      min_popsize: the smallest population the strategy works with.
      popsize: the population used when none is given.
      budget: evaluations per image when no generation count is given (as many generations
        as fit); ``None``: 100 generations (the paper's); an int or ``budget(pixels) -> int``.
      stall: the default of the stall rule (generations without gain after which an image is
        given up; ``0``: off); an int or ``stall(pixels) -> int``.
    """

    name: str
    build: Callable[..., Strategy]
    description: str
    settings: Callable[..., tuple[dict, Any]] = _no_settings
    min_popsize: int = 1
    popsize: int = 400
    budget: int | Callable[[int], int] | None = None
    stall: int | Callable[[int], int] = 0

    def knobs(self) -> tuple[str, ...]:
        """The names of the settings this strategy takes."""
        return tuple(inspect.signature(self.settings).parameters)

    def default_stall(self, pixels: int) -> int:
        return int(self.stall(pixels) if callable(self.stall) else self.stall)

    def default_budget(self, pixels: int) -> int | None:
        """The declared budget at ``pixels`` (``None``: 100 generations)."""
        return int(self.budget(pixels)) if callable(self.budget) else self.budget


@struct.dataclass
class SearchMethod:
    """A strategy with its settings, ready for the engine (:func:`onepixel_jax.search.make`).

    A pytree: ``params`` (the traced hyperparameters) are its leaves; everything else is
    static (part of the compiled loop). ``build(height, width, channels)`` returns the
    :class:`~onepixel_jax.types.Strategy` for images of that size.

    Attributes:
      name: the registered strategy.
      pixels: perturbed pixels ``d`` per candidate.
      popsize: candidates per image and generation.
      max_iters: generations after the initial population; the budget per image is
        ``popsize * (max_iters + 1)`` evaluations.
      options: the strategy's static options, sorted ``(name, value)`` pairs.
      stall: the strategy's default stall rule (``0``: off); the objective applies it.
      builder: the registered ``build(space, **options) -> Strategy``.
      params: the traced hyperparameters.
    """

    name: str = struct.field(pytree_node=False)
    builder: Callable[..., Strategy] = struct.field(pytree_node=False)
    pixels: int = struct.field(pytree_node=False)
    popsize: int = struct.field(pytree_node=False)
    max_iters: int = struct.field(pytree_node=False)
    options: tuple = struct.field(pytree_node=False, default=())
    stall: int = struct.field(pytree_node=False, default=0)
    params: Any = ()

    @property
    def budget(self) -> int:
        """Model evaluations per image when it never stops early."""
        return self.popsize * (self.max_iters + 1)

    def space(self, height: int, width: int, channels: int) -> SearchSpace:
        opts = dict(self.options)
        return SearchSpace(
            self.pixels,
            height,
            width,
            channels,
            self.popsize,
            opts.get("sampler", "paper"),
            self.max_iters,
        )

    def build(self, height: int, width: int, channels: int) -> Strategy:
        opts = {k: v for k, v in self.options if k != "sampler"}
        return self.builder(self.space(height, width, channels), **opts)


def settings_of(spec: StrategySpec, knobs: Mapping[str, Any]) -> tuple[dict, Any]:
    """``spec.settings(**knobs)`` with one clear error for a knob it does not take."""
    known = spec.knobs()
    for name in knobs:
        if name not in known:
            takes = ", ".join(known) or "none"
            raise ValueError(f"strategy {spec.name!r} has no setting {name!r} (it takes: {takes})")
    return spec.settings(**knobs)
