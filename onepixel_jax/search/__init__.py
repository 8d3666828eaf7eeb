"""Search strategies, registered by name (``AttackConfig(strategy=NAME)``).

Each strategy lives in its own module and implements the ask/tell protocol of
:class:`onepixel_jax.types.Strategy`; :func:`register` adds one to the registry, and the
engine builds it by name. Built-in:

- ``"de"``: differential evolution; the defaults are the paper's DE/rand/1, F = 0.5, no
  crossover, colours from N(128, 127). Config knobs: ``F``, ``crossover``, ``mutation``,
  ``sampler``.
- ``"random"``: the paper's random baseline (fresh draws from the initial sampler).
"""

from __future__ import annotations

from .base import SearchSpace, StrategySpec
from .de import DEParams, DEState, differential_evolution
from .random import random_search

_REGISTRY: dict[str, StrategySpec] = {}


def register(spec: StrategySpec) -> StrategySpec:
    """Add ``spec`` to the registry (a name may be registered once)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"strategy {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def names() -> list[str]:
    """Registered strategy names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> StrategySpec:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"strategy must be one of {names()}, got {name!r}")
    return _REGISTRY[name]


register(
    StrategySpec(
        name="de",
        build=lambda space, mutation, crossover: differential_evolution(space, mutation, crossover),
        static_options=lambda cfg: {
            "mutation": cfg.mutation,
            "crossover": cfg.crossover is not None,
        },
        params=lambda cfg: DEParams(F=cfg.F, crossover_rate=cfg.crossover or 0.0),
        description="differential evolution (paper: DE/rand/1, F=0.5, no crossover)",
        min_popsize=4,
    )
)
register(
    StrategySpec(
        name="random",
        build=lambda space: random_search(space),
        static_options=lambda cfg: {},
        params=lambda cfg: (),
        description="random search from the initial sampler (the paper's baseline)",
    )
)

__all__ = [
    "DEParams",
    "DEState",
    "SearchSpace",
    "StrategySpec",
    "differential_evolution",
    "get",
    "names",
    "random_search",
    "register",
]
