"""onepixel-jax: batched, jit-compiled black-box few-pixel attacks and fooling images in JAX."""

from . import data, de, metrics, models, perturb
from .attack import (
    AttackConfig,
    AttackResult,
    attack,
    predict_in_batches,
    probs_from_logits,
    random_search,
)
from .perturb import apply_pixels, decode_candidate

__version__ = "0.1.0"

__all__ = [
    "AttackConfig",
    "AttackResult",
    "apply_pixels",
    "attack",
    "data",
    "de",
    "decode_candidate",
    "metrics",
    "models",
    "perturb",
    "predict_in_batches",
    "probs_from_logits",
    "random_search",
]
