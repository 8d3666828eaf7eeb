"""onepixel-jax: batched, jit-compiled black-box few-pixel attacks and fooling images in JAX.

The curated API: :func:`attack`, :func:`random_search`, :class:`AttackConfig`,
:class:`AttackResult`, :func:`probs_from_logits`, :func:`verify` (exact one-pixel
verification, :mod:`onepixel_jax.verification`), and the subpackages ``search``,
``targets``, ``objective``, ``perturb``, ``metrics``, ``zoo`` (the model zoo, also reachable as
``models``) and ``data``. ``onepixel_jax.defences``, ``onepixel_jax.fooling`` and
``onepixel_jax.experiments`` are imported on demand.
"""

from . import data, engine, metrics, objective, perturb, search, targets, zoo
from . import zoo as models  # opj.models: the model zoo under its established name
from .config import AttackConfig
from .perturb import apply_pixels, decode_candidate
from .runner import AttackResult, attack, random_search, run
from .targets import predict_in_batches, probs_from_logits
from .verification import Verification, VerifyConfig, verify

__version__ = "0.1.0"

__all__ = [
    "AttackConfig",
    "AttackResult",
    "apply_pixels",
    "attack",
    "data",
    "engine",
    "decode_candidate",
    "metrics",
    "models",
    "objective",
    "perturb",
    "predict_in_batches",
    "probs_from_logits",
    "random_search",
    "run",
    "search",
    "targets",
    "Verification",
    "VerifyConfig",
    "verify",
    "zoo",
]
