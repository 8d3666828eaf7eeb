"""``AttackConfig``: the settings of a few-pixel attack by name, and the thin layer that turns
them into the objects the engine receives (:meth:`AttackConfig.method`,
:meth:`AttackConfig.objective_for`, :meth:`AttackConfig.schedule`).

``opj.attack(key, predict_fn, images, labels, AttackConfig(...))`` is the everyday entry;
:func:`onepixel_jax.runner.run` takes the built objects directly (a strategy from
:func:`onepixel_jax.search.make`, a target, an objective from :func:`onepixel_jax.objective.make`
or criteria of your own).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from . import objective as objective_lib
from . import search as search_lib
from .perturb import check_sampler
from .planner import CALIBRATE, Schedule
from .search import de as de_lib

# Old spellings of the DE mutation as a strategy name (deprecated).
_LEGACY_STRATEGIES = ("rand1", "best1")


def check_int(name: str, value: Any, minimum: int, why: str = "") -> int:
    """``value`` as an int ``>= minimum``, or one clear error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}{' ' + why if why else ''}, got {value}")
    return int(value)


def check_number(name: str, value: Any) -> float:
    """``value`` as a finite float, or one clear error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Settings of a few-pixel attack; the defaults are the paper's DE.

    Attributes:
      pixels: number of perturbed pixels ``d`` (paper: 1, 3, 5).
      popsize: candidates per image per generation (paper: 400). ``None``: the strategy's
        own default (400 for the DE strategies).
      max_iters: generations after the initial population (paper: 100). The budget per
        image is ``popsize * (max_iters + 1)`` model evaluations. ``None``: 100 generations,
        or for strategies that declare a query budget (``"fast"``, the scans, Sparse-RS,
        JADE) as many as fit the paper's 40,400 evaluations.
      targeted: maximise ``p_target`` instead of minimising ``p_true``.
      strategy: a registered search strategy (:func:`onepixel_jax.search.names`):
        ``"de"`` (DE, default; its defaults are the paper's), ``"paper"`` (the paper's DE
        whatever the DE knobs say), ``"fast"``, ``"random"`` (the paper's baseline), ...
      options: further strategy settings as ``(name, value)`` pairs, for instance
        ``(("dither", True),)`` for ``"de"``; ``search.get(name).knobs()`` lists them.
      stall: give up on an image once its best fitness has not improved by more than
        ``stall_eps`` over the last ``stall`` generations (``0``: never; the paper's setting).
        ``None``: the strategy's default (off for all but ``"fast"``).
      stall_eps: the improvement the stall rule counts as progress.
      F: DE differential weight (paper: 0.5). Traced: changing it does not recompile.
      crossover: DE binomial crossover rate in [0, 1], or ``None`` (paper: no crossover).
      mutation: DE mutation, ``"rand1"`` (paper), ``"best1"``, ``"current_to_best1"``,
        ``"rand2"``.
      sampler: initial distribution, ``"paper"`` (coordinates uniform, colours N(128, 127))
        or ``"corners"`` (every channel 0 or 255).
      objective: fitness, ``"paper"`` (``p_true`` / ``1 - p_target``) or ``"margin"``.
      early_stop: ``None`` (run every generation), ``"success"`` (stop an image once any
        candidate fools the model), ``"threshold"`` (paper, Kaggle CIFAR-10 / ImageNet:
        targeted ``p_target > threshold``, default 0.9; untargeted ``p_true < threshold``,
        default 0.05) or ``"target_over_true"`` (paper, original CIFAR-10: targeted
        ``p_target > p_true``; untargeted: same as ``"success"``).
      threshold: threshold of the ``"threshold"`` rule; ``None`` uses the paper's value.
      batch_size: number of images evolved side by side (slots). Results do not depend on it.
        ``None``: the planner's choice for the device (:mod:`onepixel_jax.planner`).
      call_size: at most this many candidates per model call; ``None``: the device's size;
        ``"calibrate"``: measured on the device before the search
        (:func:`onepixel_jax.planner.calibrate`).
      compact: once no image is waiting, busy slots are packed together and groups of idle
        slots make no model call. Results do not change; only speed.
      incremental: exact incremental evaluation (:mod:`onepixel_jax.targets.incremental`):
        ``None`` uses it where it pays, ``True`` always (an error where it cannot),
        ``False`` never (the full forward).

    The DE knobs (``F``, ``crossover``, ``mutation``, ``sampler``) go to the strategies that
    take them (``"de"``; ``"random"`` takes ``sampler``); ``"paper"`` and the others ignore them.
    """

    pixels: int = 1
    popsize: int | None = None
    max_iters: int | None = None
    targeted: bool = False
    strategy: str = "de"
    options: tuple = ()
    stall: int | None = None
    stall_eps: float = 1e-4
    F: float = 0.5
    crossover: float | None = None
    mutation: str = "rand1"
    sampler: str = "paper"
    objective: str = "paper"
    early_stop: str | None = None
    threshold: float | None = None
    batch_size: int | None = None
    call_size: int | str | None = None
    compact: bool = True
    incremental: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.strategy, str) and self.strategy in _LEGACY_STRATEGIES:
            warnings.warn(
                f"AttackConfig(strategy={self.strategy!r}) is the DE mutation; spell it "
                f"AttackConfig(strategy='de', mutation={self.strategy!r})",
                DeprecationWarning,
                stacklevel=3,
            )
            object.__setattr__(self, "mutation", self.strategy)
            object.__setattr__(self, "strategy", "de")
        check_number("F", self.F)
        de_lib.check_F(self.F)
        de_lib.check_crossover(self.crossover)
        de_lib.check_mutation(self.mutation)
        check_sampler(self.sampler)
        if not isinstance(self.options, tuple) or not all(
            isinstance(o, tuple) and len(o) == 2 and isinstance(o[0], str) for o in self.options
        ):
            raise TypeError(f"options must be a tuple of (name, value) pairs, got {self.options!r}")
        for name, value in self.options:
            try:
                hash(value)
            except TypeError:
                raise TypeError(f"options: the value of {name!r} must be hashable") from None
        check_int("pixels", self.pixels, 1)
        method = self.method()  # checks the strategy, popsize, max_iters and options
        object.__setattr__(self, "popsize", method.popsize)
        object.__setattr__(self, "max_iters", method.max_iters)
        if self.stall is None:
            object.__setattr__(self, "stall", method.stall)
        check_int("stall", self.stall, 0)
        check_number("stall_eps", self.stall_eps)
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, 1)
        if self.call_size is not None and self.call_size != CALIBRATE:
            if isinstance(self.call_size, str):
                raise ValueError(
                    f"call_size must be an int >= 1, None or {CALIBRATE!r}, got {self.call_size!r}"
                )
            check_int("call_size", self.call_size, 1)
        for name in ("targeted", "compact"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.incremental is not None and not isinstance(self.incremental, bool | np.bool_):
            raise TypeError(f"incremental must be None or a bool, got {self.incremental!r}")
        if self.objective not in objective_lib.FITNESSES:
            raise ValueError(
                f"objective must be one of {objective_lib.FITNESSES}, got {self.objective!r}"
            )
        objective_lib.check_stop_rule(self.early_stop)
        if self.threshold is not None:
            check_number("threshold", self.threshold)
            if not 0.0 < float(self.threshold) < 1.0:
                raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")

    @property
    def stop_threshold(self) -> float:
        """The threshold in force for the ``"threshold"`` rule."""
        if self.threshold is not None:
            return float(self.threshold)
        return objective_lib.DEFAULT_THRESHOLD[bool(self.targeted)]

    @property
    def budget(self) -> int:
        """Model evaluations per image when it never stops early."""
        return self.popsize * (self.max_iters + 1)

    def method(self) -> search_lib.SearchMethod:
        """The strategy with its settings (:func:`onepixel_jax.search.make`)."""
        spec = search_lib.get(self.strategy)
        knobs = spec.knobs()
        given = {
            "F": self.F,
            "crossover": self.crossover,
            "mutation": self.mutation,
            "sampler": self.sampler,
        }
        settings = {k: v for k, v in given.items() if k in knobs}
        for name, value in self.options:
            if name not in knobs:
                takes = ", ".join(k for k in knobs if k not in given) or "none"
                raise ValueError(
                    f"options: strategy {spec.name!r} has no option {name!r} (it takes: {takes})"
                )
            settings[name] = value
        return search_lib.make(
            spec.name,
            pixels=self.pixels,
            popsize=self.popsize,
            max_iters=self.max_iters,
            **settings,
        )

    def objective_for(self) -> objective_lib.Objective:
        """The objective: fitness, the argmax success rule, the stop rule and the stall rule."""
        return objective_lib.make(
            bool(self.targeted),
            self.objective,
            self.early_stop,
            self.stop_threshold,
            stall=int(self.stall),
            stall_eps=float(self.stall_eps),
        )

    def schedule(self) -> Schedule:
        return Schedule(self.batch_size, self.call_size, bool(self.compact))


__all__ = ["AttackConfig", "check_int", "check_number"]
