"""Defences against one-pixel attacks and fooling images, built on the zoo's training steps.

Modules: :mod:`fooling_class` (retraining with an extra "fooling" class, round after round,
fine-tuned or from scratch).
"""

from onepixel_jax.defences import fooling_class
from onepixel_jax.defences.fooling_class import (
    FoolingClassConfig,
    extend_head,
    fooling_class_rate,
    retrain_with_fooling_class,
)

__all__ = [
    "FoolingClassConfig",
    "extend_head",
    "fooling_class",
    "fooling_class_rate",
    "retrain_with_fooling_class",
]
