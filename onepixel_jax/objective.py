"""Fitness, success and stop rules: small named functions of the model's probabilities.

Everything here is pure and elementwise over leading axes: ``probs`` is ``(..., K)`` and
``label`` / ``target`` are integer arrays broadcastable to ``probs.shape[:-1]``.

Fitness is minimised (NaN -> +inf):

- ``"paper"``: untargeted ``p_true``; targeted ``1 - p_target`` (Su et al.).
- ``"margin"``: untargeted ``p_true - max_{k != true} p_k``; targeted
  ``max_{k != target} p_k - p_target``. Negative exactly when the attack succeeds.

Success follows the argmax: untargeted ``argmax != label``, targeted ``argmax == target``.

Stop rules (:data:`STOP_RULES`) decide when an image is finished before its budget:
``None`` (never), ``"success"``, ``"threshold"`` (targeted ``p_target > t``, default 0.9;
untargeted ``p_true < t``, default 0.05; the paper's Kaggle-CIFAR / ImageNet rule) and
``"target_over_true"`` (targeted ``p_target > p_true``; untargeted = success; the paper's
original-CIFAR rule). Criteria are plain functions and combine with :func:`all_of` /
:func:`any_of` (e.g. "fooled and not detected").
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from .types import Objective

Criterion = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]

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


# --------------------------------------------------------------------------------------
# Criteria: (probs, label, target) -> bool


def misclassified(probs, label, target) -> jax.Array:
    """Untargeted success: the argmax is not the true class."""
    return jnp.argmax(probs, axis=-1) != jnp.broadcast_to(label, probs.shape[:-1])


def reaches_target(probs, label, target) -> jax.Array:
    """Targeted success: the argmax is the target class."""
    return jnp.argmax(probs, axis=-1) == jnp.broadcast_to(target, probs.shape[:-1])


def target_above(threshold) -> Criterion:
    """``p_target > threshold``."""
    return lambda probs, label, target: class_prob(probs, target) > threshold


def true_below(threshold) -> Criterion:
    """``p_true < threshold``."""
    return lambda probs, label, target: class_prob(probs, label) < threshold


def target_over_true(probs, label, target) -> jax.Array:
    """``p_target > p_true``."""
    return class_prob(probs, target) > class_prob(probs, label)


def never(probs, label, target) -> jax.Array:
    return jnp.zeros(probs.shape[:-1], bool)


def all_of(*criteria: Criterion) -> Criterion:
    """A criterion that holds where every one of ``criteria`` holds."""

    def both(probs, label, target):
        out = criteria[0](probs, label, target)
        for c in criteria[1:]:
            out = out & c(probs, label, target)
        return out

    return both


def any_of(*criteria: Criterion) -> Criterion:
    """A criterion that holds where any of ``criteria`` holds."""

    def either(probs, label, target):
        out = criteria[0](probs, label, target)
        for c in criteria[1:]:
            out = out | c(probs, label, target)
        return out

    return either


def success_criterion(targeted: bool) -> Criterion:
    return reaches_target if targeted else misclassified


def stop_criterion(rule: str | None, targeted: bool, threshold) -> Criterion:
    """The stop rule ``rule`` (see :data:`STOP_RULES`) as a criterion; ``threshold`` may be
    traced."""
    if rule is None:
        return never
    if rule == "success" or (rule == "target_over_true" and not targeted):
        return success_criterion(targeted)
    if rule == "threshold":
        return target_above(threshold) if targeted else true_below(threshold)
    if rule == "target_over_true":
        return target_over_true
    raise ValueError(f"early_stop must be one of {STOP_RULES}, got {rule!r}")


def make_objective(
    targeted: bool,
    fitness: str = "paper",
    stop: str | None = None,
    threshold=None,
    success: Criterion | None = None,
) -> Objective:
    """The objective of an attack: fitness by name, success (default: the argmax rule) and
    the stop rule. ``threshold`` may be a traced scalar."""
    if fitness not in FITNESSES:
        raise ValueError(f"objective must be one of {FITNESSES}, got {fitness!r}")
    fit_fn = paper_fitness if fitness == "paper" else margin_fitness
    succ_fn = success or success_criterion(targeted)
    if threshold is None:
        threshold = DEFAULT_THRESHOLD[bool(targeted)]
    stop_fn = stop_criterion(stop, targeted, threshold)

    def score(probs, label, target):
        fit = clean_fitness(fit_fn(probs, label, target, targeted))
        return fit, succ_fn(probs, label, target), stop_fn(probs, label, target)

    return Objective(score=score)
