"""Defences against one-pixel attacks and fooling images, built on the zoo's training steps.

Modules: :mod:`fooling_class` (retraining with an extra "fooling" class, round after round,
fine-tuned or from scratch; on the command line ``onepixel defend fooling-class``);
:mod:`squeezing` (median filters and bit-depth reduction as prediction wrappers, the
feature-squeezing detector); :mod:`dead_pixels` (dead-pixel augmentation for training);
:mod:`adversarial_training` (one-pixel adversarial / dead-pixel fine-tuning).
Submodules load on first use, so running one as a script does not import it twice.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AdversarialTrainingConfig": "adversarial_training",
    "FeatureSqueezingDetector": "squeezing",
    "adversarial_fine_tune": "adversarial_training",
    "bit_depth": "squeezing",
    "detection_aware_objective": "squeezing",
    "detector_target": "squeezing",
    "median_filter": "squeezing",
    "squeezed": "squeezing",
    "FoolingClassConfig": "fooling_class",
    "extend_head": "fooling_class",
    "fooling_class_rate": "fooling_class",
    "retrain_with_fooling_class": "fooling_class",
}
_SUBMODULES = ("adversarial_training", "dead_pixels", "fooling_class", "squeezing")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
