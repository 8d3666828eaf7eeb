"""The objective of an attack: fitness, success, when an image is finished, and the final verdict.

Everything here is pure. A target's output for a batch of candidates is a mapping of arrays
(an :data:`Outputs`): ``"probs"`` ``(..., K)`` always, and whatever else the target observes
(a detector's score, say). ``label`` / ``target`` are integer arrays broadcastable to
``probs.shape[:-1]``.

Fitness is minimised (NaN -> +inf):

- ``"paper"``: untargeted ``p_true``; targeted ``1 - p_target`` (Su et al.).
- ``"margin"``: untargeted ``p_true - max_{k != true} p_k``; targeted
  ``max_{k != target} p_k - p_target``. Negative exactly when the argmax rule succeeds.

**Criteria** are small objects ``criterion(outputs, label, target) -> bool array`` that combine
with ``&``, ``|`` and ``~`` (as in foolbox): ``Misclassified() & ~Detected(0.3)`` is "fooled and
not flagged by the detector". They are pytrees: a threshold is a traced leaf, so a new value
does not recompile the attack loop. Built-in: :class:`Misclassified`, :class:`ReachesTarget`,
:class:`TargetAbove`, :class:`TrueBelow`, :class:`TargetOverTrue`, :class:`Detected`,
:class:`Never`.

**Stop rules** by name (:data:`STOP_RULES`, the one place they are spelled): ``None`` (never),
``"success"``, ``"threshold"`` (targeted ``p_target > t``, default 0.9; untargeted
``p_true < t``, default 0.05; the paper's Kaggle-CIFAR / ImageNet rule) and
``"target_over_true"`` (targeted ``p_target > p_true``; untargeted = success; the paper's
original-CIFAR rule). :func:`stop_rule` turns a name into a criterion.

**The stall rule** gives an image up once its best fitness has not improved by more than
``stall_eps`` over the last ``stall`` generations (``0``: never); it is the objective's
stop criterion over an image's history (:meth:`Objective.gives_up`).

:class:`Objective` holds the fitness, the success criterion (also the final verdict on the
returned candidate), the stop criterion and the stall rule; :func:`make` builds one by names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

Outputs = Mapping[str, jax.Array]

FITNESSES = ("paper", "margin")
STOP_RULES = (None, "success", "threshold", "target_over_true")
DEFAULT_THRESHOLD = {True: 0.9, False: 0.05}


def clean_fitness(fitness: jax.Array) -> jax.Array:
    """Replace NaN by +inf so that NaN is never preferred."""
    return jnp.where(jnp.isnan(fitness), jnp.inf, fitness)


def class_prob(probs: jax.Array, cls: jax.Array) -> jax.Array:
    """``probs[..., cls]`` with ``cls`` broadcast over the leading axes."""
    cls = jnp.broadcast_to(cls, probs.shape[:-1])
    return jnp.take_along_axis(probs, cls[..., None], axis=-1)[..., 0]


def max_other(probs: jax.Array, cls: jax.Array) -> jax.Array:
    """``max_{k != cls} probs[..., k]``."""
    cls = jnp.broadcast_to(cls, probs.shape[:-1])
    mask = jnp.arange(probs.shape[-1]) == cls[..., None]
    return jnp.max(jnp.where(mask, -jnp.inf, probs), axis=-1)


def paper_fitness(probs, label, target, targeted: bool) -> jax.Array:
    """``p_true`` (untargeted) or ``1 - p_target`` (targeted)."""
    return 1.0 - class_prob(probs, target) if targeted else class_prob(probs, label)


def margin_fitness(probs, label, target, targeted: bool) -> jax.Array:
    """``p_true - max other`` (untargeted) or ``max other - p_target`` (targeted)."""
    if targeted:
        return max_other(probs, target) - class_prob(probs, target)
    return class_prob(probs, label) - max_other(probs, label)


_FITNESS_FNS = {"paper": paper_fitness, "margin": margin_fitness}


def as_outputs(outputs: Any) -> Outputs:
    """A target's output as a mapping with ``"probs"`` (a bare array is the probabilities)."""
    if isinstance(outputs, Mapping):
        return outputs
    return {"probs": outputs}


# --------------------------------------------------------------------------------------
# Criteria


class Criterion:
    """Base of the criteria: ``criterion(outputs, label, target) -> bool``; combine with
    ``&``, ``|`` and ``~``. A subclass is a ``flax.struct.dataclass`` (a pytree) and defines
    ``__call__``."""

    def __and__(self, other: Criterion) -> Criterion:
        return AllOf((self, other))

    def __or__(self, other: Criterion) -> Criterion:
        return AnyOf((self, other))

    def __invert__(self) -> Criterion:
        return Not(self)


def _probs(outputs) -> jax.Array:
    return as_outputs(outputs)["probs"]


@struct.dataclass
class Misclassified(Criterion):
    """Untargeted success: the argmax is not the true class."""

    def __call__(self, outputs, label, target):
        probs = _probs(outputs)
        return jnp.argmax(probs, axis=-1) != jnp.broadcast_to(label, probs.shape[:-1])


@struct.dataclass
class ReachesTarget(Criterion):
    """Targeted success: the argmax is the target class."""

    def __call__(self, outputs, label, target):
        probs = _probs(outputs)
        return jnp.argmax(probs, axis=-1) == jnp.broadcast_to(target, probs.shape[:-1])


@struct.dataclass
class TargetAbove(Criterion):
    """``p_target > threshold`` (traced)."""

    threshold: Any = 0.9

    def __call__(self, outputs, label, target):
        return class_prob(_probs(outputs), target) > self.threshold


@struct.dataclass
class TrueBelow(Criterion):
    """``p_true < threshold`` (traced)."""

    threshold: Any = 0.05

    def __call__(self, outputs, label, target):
        return class_prob(_probs(outputs), label) < self.threshold


@struct.dataclass
class TargetOverTrue(Criterion):
    """``p_target > p_true``."""

    def __call__(self, outputs, label, target):
        probs = _probs(outputs)
        return class_prob(probs, target) > class_prob(probs, label)


@struct.dataclass
class Never(Criterion):
    def __call__(self, outputs, label, target):
        return jnp.zeros(_probs(outputs).shape[:-1], bool)


@struct.dataclass
class Detected(Criterion):
    """A detector flags the input: ``outputs[score] > threshold`` (traced). The target must
    observe the score (e.g. :func:`onepixel_jax.defences.squeezing.detector_target`)."""

    threshold: Any = 0.0
    score: str = struct.field(pytree_node=False, default="detection_score")

    def __call__(self, outputs, label, target):
        outputs = as_outputs(outputs)
        if self.score not in outputs:
            raise ValueError(
                f"the criterion Detected reads outputs[{self.score!r}], which the target does not "
                f"produce (it gives {sorted(outputs)})"
            )
        return outputs[self.score] > self.threshold


@struct.dataclass
class AllOf(Criterion):
    criteria: tuple

    def __call__(self, outputs, label, target):
        out = self.criteria[0](outputs, label, target)
        for c in self.criteria[1:]:
            out = out & c(outputs, label, target)
        return out


@struct.dataclass
class AnyOf(Criterion):
    criteria: tuple

    def __call__(self, outputs, label, target):
        out = self.criteria[0](outputs, label, target)
        for c in self.criteria[1:]:
            out = out | c(outputs, label, target)
        return out


@struct.dataclass
class Not(Criterion):
    criterion: Any

    def __call__(self, outputs, label, target):
        return ~self.criterion(outputs, label, target)


def success_criterion(targeted: bool) -> Criterion:
    """The argmax rule: :class:`ReachesTarget` (targeted) or :class:`Misclassified`."""
    return ReachesTarget() if targeted else Misclassified()


def check_stop_rule(rule: Any) -> str | None:
    if rule not in STOP_RULES:
        raise ValueError(f"early_stop must be one of {STOP_RULES}, got {rule!r}")
    return rule


def stop_rule(rule: str | None, targeted: bool, threshold: Any = None) -> Criterion:
    """The stop rule ``rule`` (see :data:`STOP_RULES`) as a criterion; ``threshold`` (``None``:
    the paper's value for ``targeted``) may be traced."""
    check_stop_rule(rule)
    if threshold is None:
        threshold = DEFAULT_THRESHOLD[bool(targeted)]
    if rule is None:
        return Never()
    if rule == "success" or (rule == "target_over_true" and not targeted):
        return success_criterion(targeted)
    if rule == "threshold":
        return TargetAbove(threshold) if targeted else TrueBelow(threshold)
    return TargetOverTrue()


# --------------------------------------------------------------------------------------
# The objective


@struct.dataclass
class Objective:
    """Fitness, success, stop and the stall rule of an attack (a pytree: thresholds and
    ``stall_eps`` are traced; the rest is static).

    Attributes:
      targeted: whether fitness is measured against the target class.
      fitness: ``"paper"`` or ``"margin"`` (:data:`FITNESSES`).
      success: the criterion a candidate must meet to count as a success; also the verdict on
        the candidate the attack returns.
      stop: the criterion that finishes an image before its budget.
      penalty: optional criterion; a candidate meeting it gets ``+1`` fitness, which ranks it
        behind every candidate that does not (e.g. a detector's flag).
      stall: generations without gain after which an image is given up (``0``: never).
      stall_eps: the improvement the stall rule counts as progress.
    """

    success: Any
    stop: Any
    penalty: Any = None
    stall_eps: Any = 1e-4
    targeted: bool = struct.field(pytree_node=False, default=False)
    fitness: str = struct.field(pytree_node=False, default="paper")
    stall: int = struct.field(pytree_node=False, default=0)

    def score(self, outputs, label, target) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(fitness, success, stop)`` of candidates: float32 fitness (lower is better, NaN
        mapped to +inf), bool success and stop, shaped like ``label`` broadcast."""
        outputs = as_outputs(outputs)
        fit = _FITNESS_FNS[self.fitness](outputs["probs"], label, target, self.targeted)
        if self.penalty is not None:
            fit = fit + self.penalty(outputs, label, target).astype(fit.dtype)
        fit = clean_fitness(fit)
        return fit, self.success(outputs, label, target), self.stop(outputs, label, target)

    def verdict(self, outputs, label, target) -> jax.Array:
        """Whether the candidates succeed (the final success of an attack)."""
        return self.success(as_outputs(outputs), label, target)

    def gives_up(self, history: jax.Array, generation: jax.Array, best: jax.Array) -> jax.Array:
        """The stall rule per image: ``history`` ``(S, G + 1)`` best fitness per generation,
        ``generation`` ``(S,)`` the current one, ``best`` ``(S,)`` the best so far."""
        if self.stall <= 0:
            return jnp.zeros(best.shape, bool)
        k = self.stall
        before = jnp.take_along_axis(history, jnp.maximum(generation - k, 0)[:, None], 1)[:, 0]
        return (generation >= k) & (before - best <= self.stall_eps)


def make(
    targeted: bool = False,
    fitness: str = "paper",
    early_stop: str | None = None,
    threshold: Any = None,
    *,
    success: Criterion | None = None,
    penalty: Criterion | None = None,
    stall: int = 0,
    stall_eps: float = 1e-4,
) -> Objective:
    """An :class:`Objective` by names: ``fitness`` in :data:`FITNESSES`, the stop rule
    ``early_stop`` in :data:`STOP_RULES` (``threshold``: its value for ``"threshold"``;
    ``None``: the paper's), ``success`` (default: the argmax rule for ``targeted``), an
    optional fitness ``penalty`` criterion and the stall rule."""
    if fitness not in FITNESSES:
        raise ValueError(f"objective must be one of {FITNESSES}, got {fitness!r}")
    if isinstance(stall, bool) or not isinstance(stall, int) or stall < 0:
        raise ValueError(f"stall must be an int >= 0, got {stall!r}")
    if threshold is not None:
        threshold = jnp.float32(threshold)
    return Objective(
        success=success_criterion(targeted) if success is None else success,
        stop=stop_rule(early_stop, targeted, threshold),
        penalty=penalty,
        stall_eps=jnp.float32(stall_eps),
        targeted=bool(targeted),
        fitness=fitness,
        stall=int(stall),
    )


__all__ = [
    "DEFAULT_THRESHOLD",
    "FITNESSES",
    "STOP_RULES",
    "AllOf",
    "AnyOf",
    "Criterion",
    "Detected",
    "Misclassified",
    "Never",
    "Not",
    "Objective",
    "Outputs",
    "ReachesTarget",
    "TargetAbove",
    "TargetOverTrue",
    "TrueBelow",
    "as_outputs",
    "check_stop_rule",
    "class_prob",
    "clean_fitness",
    "make",
    "margin_fitness",
    "max_other",
    "paper_fitness",
    "stop_rule",
    "success_criterion",
]
