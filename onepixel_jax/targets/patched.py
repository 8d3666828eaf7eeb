"""The default target: patch each candidate's pixels into its image and call the model.

One ``predict_fn`` call per generation on all ``S * P`` patched images.
"""

from __future__ import annotations

import functools

import jax

from ..perturb import apply_pixels
from ..types import PredictFn, Target


@functools.lru_cache(maxsize=64)
def patched_forward(predict_fn: PredictFn, channel_axis: bool = True) -> Target:
    """The full-forward :class:`~onepixel_jax.types.Target` of ``predict_fn``.

    ``channel_axis=False`` calls ``predict_fn`` on ``(B, H, W)`` (greyscale images given
    without a channel axis). Cached per ``(predict_fn, channel_axis)`` so that passing the
    same function again reuses the engine's compilation.
    """

    def prepare(images):
        return ()

    def evaluate(cache, images, pixels):
        s, p = pixels.shape[:2]
        h, w, c = images.shape[1:]
        patch = jax.vmap(jax.vmap(apply_pixels, in_axes=(None, 0)))
        batch = patch(images, pixels).reshape(s * p, h, w, c)
        probs = predict_fn(batch if channel_axis else batch[..., 0])
        return probs.reshape(s, p, -1)

    return Target(prepare=prepare, evaluate=evaluate)


def probs_from_logits(logits_fn: PredictFn) -> PredictFn:
    """Wrap a logits function into the ``predict_fn`` the attack expects (softmax)."""

    def predict_fn(batch: jax.Array) -> jax.Array:
        return jax.nn.softmax(logits_fn(batch), axis=-1)

    return predict_fn
