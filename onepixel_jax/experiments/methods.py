"""Named search methods: a strategy of :mod:`onepixel_jax.search` with settings and a budget.

A sweep (``SweepConfig.methods``) and the measurement grids
(:mod:`onepixel_jax.experiments.grids`) name their methods. A name is either

- a registered strategy (``"de"``, ``"paper"``, ``"fast"``, ``"jade"``, ...,
  :func:`onepixel_jax.search.names`) with its default settings and budget, or
- a **preset** of :data:`PRESETS`: a strategy with settings (``de-best1`` is DE with the best/1
  mutation), its own population and generations, a stall rule and a fitness. Earlier forms of
  the ``fast`` preset are kept under their own names (``fast-p128``, ``fast-p64-random``...)
  so that the records measured with them keep their meaning.

:func:`attack_config` turns a name into the :class:`~onepixel_jax.config.AttackConfig` it runs:
at its own budget (``budget=None``: the preset's popsize and generations, or the strategy's
defaults) or at a budget given by the caller (a sweep whose methods share its popsize and
generations), capped at ``max_queries`` evaluations per attack when given
(``max_iters = max_queries // popsize - 1``, as a run stopped there would have gone).

>>> attack_config("de-best1", pixels=1).budget          # 400 x (100 + 1)
40400
>>> attack_config("fast", pixels=1, max_queries=4000).budget   # 64 x 62
3968
"""

from __future__ import annotations

import dataclasses
from typing import Any

from onepixel_jax import search
from onepixel_jax.config import AttackConfig

# AttackConfig fields a preset may set; its other settings are strategy options.
CONFIG_KNOBS = ("F", "crossover", "mutation", "sampler")


@dataclasses.dataclass(frozen=True)
class MethodPreset:
    """A named search method.

    Attributes:
      name: the method's name in configurations, records and tables.
      strategy: a registered strategy (:func:`onepixel_jax.search.names`).
      settings: ``(name, value)`` pairs: the DE knobs of ``AttackConfig`` (``F``,
        ``crossover``, ``mutation``, ``sampler``) and the strategy's options
        (``("probe", "random")`` for the corner scan, ``("dither", True)`` for DE).
      popsize, max_iters: its own budget, ``popsize * (max_iters + 1)`` evaluations per
        attack; ``None``: the strategy's defaults.
      stall: the stall rule in generations (``None``: the strategy's default, ``0``: off).
      fitness: the objective's fitness, ``"paper"`` or ``"margin"``.
      about: one line for listings.
    """

    name: str
    strategy: str
    settings: tuple[tuple[str, Any], ...] = ()
    popsize: int | None = None
    max_iters: int | None = None
    stall: int | None = None
    fitness: str = "paper"
    about: str = ""

    def attack_config(
        self,
        *,
        pixels: int = 1,
        targeted: bool = False,
        early_stop: str | None = "success",
        threshold: float | None = None,
        budget: tuple[int, int] | None = None,
        max_queries: int | None = None,
        batch_size: int | None = None,
    ) -> AttackConfig:
        """The engine settings of this method (see :func:`attack_config`)."""
        popsize, max_iters = (self.popsize, self.max_iters) if budget is None else budget
        knobs = {k: v for k, v in self.settings if k in CONFIG_KNOBS}
        options = tuple((k, v) for k, v in self.settings if k not in CONFIG_KNOBS)
        cfg = AttackConfig(
            strategy=self.strategy,
            pixels=pixels,
            popsize=popsize,
            max_iters=max_iters,
            targeted=bool(targeted),
            options=options,
            stall=self.stall,
            objective=self.fitness,
            early_stop=early_stop,
            threshold=threshold,
            batch_size=batch_size,
            **knobs,
        )
        return capped(cfg, max_queries, self.name)


def capped(cfg: AttackConfig, max_queries: int | None, name: str = "") -> AttackConfig:
    """``cfg`` with its generations cut so that its budget is at most ``max_queries``
    (unchanged when it already is, or when ``max_queries`` is None)."""
    if max_queries is None or cfg.budget <= max_queries:
        return cfg
    max_iters = max_queries // cfg.popsize - 1
    if max_iters < 0:
        raise ValueError(
            f"max_queries {max_queries} is less than one generation of "
            f"{name or cfg.strategy} ({cfg.popsize} candidates)"
        )
    return dataclasses.replace(cfg, max_iters=max_iters)


def _preset(name, strategy, about, settings=(), **fields) -> MethodPreset:
    return MethodPreset(name, strategy, tuple(settings), about=about, **fields)


_PRESETS = (
    _preset(
        "random-corners", "random", "random search over corner colours", [("sampler", "corners")]
    ),
    _preset("de-best1", "de", "DE/best/1, F = 0.5, no crossover", [("mutation", "best1")]),
    _preset(
        "de-best1-bin",
        "de",
        "DE/best/1 with binomial crossover (CR = 0.7)",
        [("mutation", "best1"), ("crossover", 0.7)],
    ),
    _preset(
        "de-current-to-best1", "de", "DE/current-to-best/1", [("mutation", "current_to_best1")]
    ),
    _preset("de-rand2", "de", "DE/rand/2", [("mutation", "rand2")]),
    _preset(
        "de-rand1-bin", "de", "DE/rand/1 with binomial crossover (CR = 0.7)", [("crossover", 0.7)]
    ),
    _preset(
        "de-rand1-dither", "de", "DE/rand/1, F drawn in [F, 2F) per generation", [("dither", True)]
    ),
    _preset(
        "de-rand1-corners",
        "de",
        "DE/rand/1 from a corner-colour population",
        [("sampler", "corners")],
    ),
    _preset("de-rand1-margin", "de", "DE/rand/1 on the margin fitness", fitness="margin"),
    _preset(
        "de-small",
        "de",
        "the paper's DE at a small budget: 100 x (10 + 1)",
        popsize=100,
        max_iters=10,
    ),
    _preset(
        "corner-scan-random",
        "corner-scan",
        "the corner scan as first measured: a random first corner per pixel",
        [("probe", "random")],
        popsize=128,
        max_iters=314,
    ),
    _preset(
        "fast-nostall", "fast", "fast without the stall rule", popsize=64, max_iters=630, stall=0
    ),
    _preset(
        "fast-p128",
        "fast",
        "an earlier fast: 128 candidates per generation, stall 32",
        popsize=128,
        max_iters=314,
        stall=32,
    ),
    _preset(
        "fast-p64-stall32",
        "fast",
        "an earlier fast at d > 1: 64 candidates, stall 32",
        popsize=64,
        max_iters=630,
        stall=32,
    ),
    _preset(
        "fast-p64-random",
        "corner-scan",
        "an earlier fast: the random-order corner scan, 64 candidates, stall 64",
        [("probe", "random")],
        popsize=64,
        max_iters=630,
        stall=64,
    ),
    _preset("paper-stall", "paper", "the paper's DE with a stall rule of 10 generations", stall=10),
    _preset(
        "paper-clip",
        "paper",
        "the paper's DE with out-of-range mutants clipped to the box instead of redrawn",
        [("bounds", "clip")],
    ),
)

# The published Sparse-RS of the L0 protocols (onepixel_jax.experiments.l0.PROTOCOLS): one
# chain, one query per step, 10,000 queries (Croce et al., AAAI 2022).
_L0_PRESETS = (
    _preset(
        "sparse-rs-10k",
        "sparse-rs",
        "Sparse-RS as published: one chain, alpha_init 0.3, 10,000 queries",
        popsize=1,
        max_iters=9_999,
    ),
)

# Variants of fast and Sparse-RS compared on training images when fast's constants were chosen
# (docs/search-results.md, "`fast` tuned on training images, judged on test images").
_TUNING_PRESETS = (
    _preset(
        "fast-corners",
        "corner-scan",
        "the corner scan alone, as fast was at d = 1 before its colour phase: stall 32",
        popsize=64,
        max_iters=630,
        stall=32,
    ),
    _preset(
        "fast-stall128",
        "fast",
        "fast with a stall rule of 128 generations (shorter rules are replayed on its records)",
        stall=128,
    ),
    _preset("fast-anchors16", "fast", "fast whose colour phase has 16 anchors", [("anchors", 16)]),
    _preset(
        "sparse-rs-k1",
        "sparse-rs",
        "Sparse-RS, one chain with 64 proposals per step, 10,000 queries",
        [("chains", 1)],
        popsize=64,
        max_iters=155,
    ),
    _preset(
        "sparse-rs-k64",
        "sparse-rs",
        "Sparse-RS, 64 independent chains, 10,000 queries",
        popsize=64,
        max_iters=155,
    ),
)

PRESETS: dict[str, MethodPreset] = {p.name: p for p in _PRESETS + _L0_PRESETS + _TUNING_PRESETS}


def register(preset: MethodPreset) -> MethodPreset:
    """Add a preset (its name may not be a strategy's or another preset's); checks that it
    makes an attack configuration. Returns it."""
    if not isinstance(preset, MethodPreset):
        raise TypeError(f"preset must be a MethodPreset, got {type(preset).__name__}")
    if preset.name in search.names() or preset.name in PRESETS:
        raise ValueError(f"method {preset.name!r} is already registered")
    preset.attack_config()  # raises for an unknown strategy or impossible settings
    PRESETS[preset.name] = preset
    return preset


def names() -> list[str]:
    """Every method name: the registered strategies, then the presets (sorted)."""
    strategies = search.names()
    return strategies + sorted(n for n in PRESETS if n not in strategies)


def get(name: str) -> MethodPreset:
    """The method ``name``: a strategy with its defaults, or a preset. ValueError if unknown."""
    if isinstance(name, str) and name in search.names():
        return MethodPreset(name, name, about=search.get(name).description)
    if isinstance(name, str) and name in PRESETS:
        return PRESETS[name]
    raise ValueError(f"unknown method {name!r} (available: {', '.join(names())})")


def attack_config(
    name: str,
    *,
    pixels: int = 1,
    targeted: bool = False,
    early_stop: str | None = "success",
    threshold: float | None = None,
    budget: tuple[int, int] | None = None,
    max_queries: int | None = None,
    batch_size: int | None = None,
) -> AttackConfig:
    """The :class:`AttackConfig` of method ``name``.

    ``budget``: ``(popsize, max_iters)`` given by the caller, or ``None`` for the method's own
    (a preset's, else the strategy's defaults); ``max_queries`` then caps it. The method's
    settings, stall rule and fitness always apply. Raises ValueError for an unknown name or an
    impossible setting.
    """
    return get(name).attack_config(
        pixels=pixels,
        targeted=targeted,
        early_stop=early_stop,
        threshold=threshold,
        budget=budget,
        max_queries=max_queries,
        batch_size=batch_size,
    )


def describe(cfg: AttackConfig) -> dict[str, Any]:
    """The fields of ``cfg`` that decide a method's records, JSON-ready (for run.json): the
    strategy, its budget, stall rule, fitness and the settings it takes."""
    takes = search.get(cfg.strategy).knobs()
    settings = {k: getattr(cfg, k) for k in CONFIG_KNOBS if k in takes}
    return {
        "strategy": cfg.strategy,
        "popsize": cfg.popsize,
        "max_iters": cfg.max_iters,
        "budget": cfg.budget,
        "stall": cfg.stall,
        "stall_eps": cfg.stall_eps,
        "objective": cfg.objective,
        "settings": settings | {k: v for k, v in cfg.options},
    }


__all__ = [
    "CONFIG_KNOBS",
    "PRESETS",
    "MethodPreset",
    "attack_config",
    "capped",
    "describe",
    "get",
    "names",
    "register",
]
