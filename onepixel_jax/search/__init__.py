"""Search strategies, registered by name (``AttackConfig(strategy=NAME)``).

Each strategy lives in its own module and implements the ask/tell protocol of
:class:`onepixel_jax.types.Strategy`; :func:`register` adds one to the registry, and the
engine builds it by name. Built-in:

- ``"de"``: differential evolution; the defaults are the paper's DE/rand/1, F = 0.5, no
  crossover, colours from N(128, 127). Config knobs: ``F``, ``crossover``, ``mutation``
  (``rand1``, ``best1``, ``current_to_best1``, ``rand2``), ``sampler``, option ``dither``.
- ``"paper"``: the paper's DE exactly, whatever the DE knobs say.
- ``"random"``: the paper's random baseline (fresh draws from the initial sampler; ``sampler``
  ``"paper"`` or ``"corners"``).
- ``"jade"``, ``"sparse-rs"``, ``"corner-scan"``, ``"grid-scan"``, ``"cma-es"`` (with evosax)
  and ``"fast"`` (the corner scan at d = 1, Sparse-RS at d > 1, with the stall rule): see
  ``docs/search.md`` for what each does and how they compare.

A :class:`StrategySpec` may declare its default ``popsize``, a query ``budget`` (used when the
config leaves ``max_iters`` unset), a default ``stall`` rule and the names of its ``options``.
"""

from __future__ import annotations

import dataclasses
import importlib.util

from .base import SearchSpace, StrategySpec
from .corner_scan import PROBES, corner_scan
from .de import DEParams, DEState, differential_evolution
from .grid_scan import grid_scan
from .jade import JADEParams, jade
from .random import random_search
from .sparse_rs import sparse_rs

PAPER_BUDGET = 40_400  # the paper's evaluations per image (400 x 101)
GRID_BUDGET = 65_536  # 32 x 32 pixels x 4^3 colours: the whole grid of a CIFAR-10 image
FAST_POPSIZE = 64  # candidates per image and generation of "fast"
# generations without improvement after which "fast" gives up: the corner scan at d = 1 (2,048
# queries), Sparse-RS at d > 1 (4,096: its chains improve in later, rarer steps)
FAST_STALL = 32
FAST_STALL_SPARSE = 64

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


def check_options(spec: StrategySpec, options) -> None:
    """Validate ``AttackConfig.options`` for ``spec``: ``(name, value)`` pairs, names known
    to the strategy, hashable values (they are static: a new value recompiles)."""
    if not isinstance(options, tuple) or not all(
        isinstance(o, tuple) and len(o) == 2 and isinstance(o[0], str) for o in options
    ):
        raise TypeError(f"options must be a tuple of (name, value) pairs, got {options!r}")
    for name, value in options:
        if name not in spec.options:
            known = ", ".join(spec.options) or "none"
            raise ValueError(
                f"options: strategy {spec.name!r} has no option {name!r} (it takes: {known})"
            )
        try:
            hash(value)
        except TypeError:
            raise TypeError(f"options: the value of {name!r} must be hashable") from None


def get(name: str) -> StrategySpec:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"strategy must be one of {names()}, got {name!r}")
    return _REGISTRY[name]


register(
    StrategySpec(
        name="de",
        build=lambda space, mutation, crossover, dither: differential_evolution(
            space, mutation, crossover, dither
        ),
        static_options=lambda cfg: {
            "mutation": cfg.mutation,
            "crossover": cfg.crossover is not None,
            "dither": bool(dict(cfg.options).get("dither", False)),
        },
        params=lambda cfg: DEParams(F=cfg.F, crossover_rate=cfg.crossover or 0.0),
        description="differential evolution (paper: DE/rand/1, F=0.5, no crossover)",
        min_popsize=4,
        options=("dither",),
    )
)
register(
    StrategySpec(
        name="paper",
        build=lambda space: differential_evolution(
            dataclasses.replace(space, sampler="paper"), "rand1", False
        ),
        static_options=lambda cfg: {},
        params=lambda cfg: DEParams(F=0.5, crossover_rate=0.0),
        description="the paper's DE exactly: DE/rand/1, F=0.5, no crossover, N(128, 127) colours",
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

register(
    StrategySpec(
        name="jade",
        build=lambda space: jade(space),
        static_options=lambda cfg: {},
        params=lambda cfg: JADEParams(),
        description="JADE: adaptive DE, current-to-pbest/1 with an archive, per-member F and CR",
        min_popsize=4,
        popsize=100,
        budget=PAPER_BUDGET,
    )
)
register(
    StrategySpec(
        name="sparse-rs",
        build=lambda space, horizon: sparse_rs(space, horizon),
        static_options=lambda cfg: {"horizon": cfg.max_iters},
        params=lambda cfg: (),
        description="Sparse-RS: parallel chains of corner pixels, one pixel moved per step",
        popsize=100,
        budget=PAPER_BUDGET,
    )
)
register(
    StrategySpec(
        name="corner-scan",
        build=lambda space, probe: corner_scan(space, probe),
        static_options=lambda cfg: {"probe": _probe_option(cfg)},
        params=lambda cfg: (),
        description="every pixel x every colour-cube corner once, most promising pixels first",
        popsize=128,
        budget=PAPER_BUDGET,
        options=("probe",),
    )
)
register(
    StrategySpec(
        name="grid-scan",
        build=lambda space, levels: grid_scan(space, levels),
        static_options=lambda cfg: {"levels": int(dict(cfg.options).get("levels", 4))},
        params=lambda cfg: (),
        description="every pixel x a colour grid (4 levels per channel): which images can flip",
        popsize=128,
        budget=GRID_BUDGET,
        options=("levels",),
    )
)


def _probe_option(cfg) -> str:
    probe = dict(cfg.options).get("probe", "farthest")
    if probe not in PROBES:
        raise ValueError(f"options: probe must be one of {list(PROBES)}, got {probe!r}")
    return probe


def _fast(space: SearchSpace, horizon: int):
    return corner_scan(space) if space.pixels == 1 else sparse_rs(space, horizon)


register(
    StrategySpec(
        name="fast",
        build=_fast,
        static_options=lambda cfg: {"horizon": cfg.max_iters},
        params=lambda cfg: (),
        description="the measured fast preset: corner scan at d=1, Sparse-RS at d>1, stall rule",
        popsize=FAST_POPSIZE,
        budget=PAPER_BUDGET,
        stall=lambda cfg: FAST_STALL if cfg.pixels == 1 else FAST_STALL_SPARSE,
    )
)

if importlib.util.find_spec("evosax") is not None:  # optional: pip install evosax
    from .cma_es import cma_es

    register(
        StrategySpec(
            name="cma-es",
            build=lambda space: cma_es(space),
            static_options=lambda cfg: {},
            params=lambda cfg: (),
            description="CMA-ES (evosax) on the gene box scaled to the unit cube",
            min_popsize=4,
            popsize=100,
            budget=PAPER_BUDGET,
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
