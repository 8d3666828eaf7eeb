"""Search strategies, registered by name: :func:`make` builds the object the engine receives.

Each strategy lives in its own module (its ask/tell functions and one
:class:`~.base.StrategySpec`, ``SPEC``) and is registered here with one line. Built-in:

- ``"de"``: differential evolution; the defaults are the paper's DE/rand/1, F = 0.5, no
  crossover, colours from N(128, 127). Settings: ``F``, ``crossover``, ``mutation``
  (``rand1``, ``best1``, ``current_to_best1``, ``rand2``), ``sampler``, ``dither``.
- ``"paper"``: the paper's DE as its text says (strict selection); its one setting is
  ``bounds`` (out-of-range mutants ``"redraw"``, SciPy's rule, by default, or ``"clip"``).
- ``"random"``: the paper's random baseline (fresh draws from the initial ``sampler``).
- ``"jade"``, ``"sparse-rs"``, ``"corner-scan"`` (setting ``probe``), ``"grid-scan"``
  (setting ``levels``), ``"cma-es"`` (with evosax) and ``"fast"`` (the corner scan at d = 1,
  Sparse-RS at d > 1, with a stall rule): see ``docs/search.md``.

>>> method = make("de", pixels=3, F=0.7)          # a SearchMethod; method.params holds F
>>> method = make("fast", pixels=1)               # popsize 64, the paper's 40,400 budget
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from . import corner_scan, de, fast, grid_scan, jade, random, sparse_rs
from .base import PAPER_BUDGET, SearchMethod, SearchSpace, StrategySpec, settings_of
from .de import DEParams, DEState

_REGISTRY: dict[str, StrategySpec] = {}


def register(spec: StrategySpec) -> StrategySpec:
    """Add ``spec`` to the registry (a name may be registered once)."""
    if not isinstance(spec, StrategySpec):
        raise TypeError(f"spec must be a StrategySpec, got {type(spec).__name__}")
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


def _check_int(name: str, value: Any, minimum: int, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}{' ' + why if why else ''}, got {value}")
    return int(value)


def make(
    name: str,
    *,
    pixels: int = 1,
    popsize: int | None = None,
    max_iters: int | None = None,
    **settings: Any,
) -> SearchMethod:
    """The strategy ``name`` with its settings, as the engine receives it.

    Args:
      name: a registered strategy (:func:`names`).
      pixels: perturbed pixels ``d`` per candidate.
      popsize: candidates per image and generation (``None``: the strategy's own).
      max_iters: generations after the initial population (``None``: 100, or as many as fit
        the strategy's declared query budget).
      **settings: the strategy's own settings (``get(name).knobs()``), for instance ``F`` and
        ``crossover`` for ``"de"``; numeric ones are traced (no recompilation).
    """
    spec = get(name)
    _check_int("pixels", pixels, 1)
    if popsize is None:
        popsize = spec.popsize
    why = f"(strategy {spec.name!r} needs at least {spec.min_popsize})"
    _check_int("popsize", popsize, max(spec.min_popsize, 1), why)
    if max_iters is None:
        budget = spec.default_budget(pixels)
        max_iters = 100 if budget is None else max(budget // popsize - 1, 0)
    _check_int("max_iters", max_iters, 0)
    options, params = settings_of(spec, settings)
    return SearchMethod(
        name=spec.name,
        builder=spec.build,
        pixels=int(pixels),
        popsize=int(popsize),
        max_iters=int(max_iters),
        options=tuple(sorted(options.items())),
        stall=spec.default_stall(pixels),
        params=params,
    )


register(de.SPEC)
register(de.PAPER_SPEC)
register(random.SPEC)
register(jade.SPEC)
register(sparse_rs.SPEC)
register(corner_scan.SPEC)
register(grid_scan.SPEC)
register(fast.SPEC)
if importlib.util.find_spec("evosax") is not None:  # optional: pip install evosax
    from . import cma_es

    register(cma_es.SPEC)

__all__ = [
    "PAPER_BUDGET",
    "DEParams",
    "DEState",
    "SearchMethod",
    "SearchSpace",
    "StrategySpec",
    "get",
    "make",
    "names",
    "register",
]
