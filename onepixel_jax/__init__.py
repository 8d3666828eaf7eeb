"""onepixel-jax: batched, jit-compiled black-box few-pixel attacks and fooling images in JAX."""

from . import de, perturb
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
    "de",
    "decode_candidate",
    "perturb",
    "predict_in_batches",
    "probs_from_logits",
    "random_search",
]
