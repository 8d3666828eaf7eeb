"""The one batched-prediction loop of the package, and the check of a model's output."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..types import PredictFn


@functools.partial(jax.jit, static_argnames=("predict_fn",))
def _predict(x: jax.Array, predict_fn: PredictFn) -> jax.Array:
    return predict_fn(x)


def check_probs(probs: Any, batch: int) -> int:
    """Validate a model output as ``(batch, K)`` class probabilities; returns ``K``."""
    shape = getattr(probs, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != batch:
        raise ValueError(
            f"predict_fn must return probabilities of shape (B, K) = ({batch}, K) for a batch "
            f"of {batch} images, got shape {shape}"
        )
    p = np.asarray(probs, np.float64)
    if not np.all(np.isfinite(p)):
        raise ValueError("predict_fn returned NaN or infinite values")
    if p.min() < -1e-4 or p.max() > 1 + 1e-4 or np.abs(p.sum(1) - 1).max() > 1e-2:
        raise ValueError(
            "predict_fn must return class probabilities (non-negative, rows summing to 1); "
            "wrap a logits function with onepixel_jax.probs_from_logits"
        )
    return int(shape[1])


def predict_in_batches(
    predict_fn: PredictFn, images: Any, batch: int, check: bool = False
) -> np.ndarray:
    """``predict_fn`` over ``images`` (float32 pixel space) in chunks of ``batch``.

    With ``check``, every chunk's output is validated as a ``(B, K)`` probability array.
    Returns a NumPy ``(N, K)`` array.
    """
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    x = jnp.asarray(images, jnp.float32)
    out = []
    for i in range(0, len(x), batch):
        probs = _predict(x[i : i + batch], predict_fn)
        if check:
            check_probs(probs, len(x[i : i + batch]))
        out.append(np.asarray(probs))
    return np.concatenate(out, axis=0)
