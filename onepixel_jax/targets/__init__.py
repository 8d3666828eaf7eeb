"""Targets: how the engine evaluates candidates (:class:`onepixel_jax.types.Target`).

- :func:`resolve`: the model resolver (a Target as given; the incremental evaluation of a JAX
  model where it pays; else the patched forward).
- :func:`patched_forward`: the default; patch the pixels into the image, one model call.
- :func:`predict_in_batches`: the package's one batched-prediction loop (clean images,
  reports, training checks, benchmarks).
"""

from __future__ import annotations

from ..types import Target
from .batched import check_probs, predict_in_batches
from .host import HostTarget, from_numpy, from_onnx, from_torch
from .patched import patched_forward, probs_from_logits
from .resolver import resolve

__all__ = [
    "HostTarget",
    "Target",
    "check_probs",
    "from_numpy",
    "from_onnx",
    "from_torch",
    "patched_forward",
    "predict_in_batches",
    "probs_from_logits",
    "resolve",
]
