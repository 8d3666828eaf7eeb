"""The contract every attacked model must keep, checked once, up front, on one small batch.

:func:`check_model` calls the model on a batch of two images and checks what the engine
relies on: the call works on more than one image at once, the output is ``(B, K)`` with
``K >= 2`` classes (and ``K`` equal to what the model card declares), the values are finite,
and they are probabilities (non-negative rows summing to 1; a model returning logits must
say so). The first broken rule raises :class:`ModelContractError` with one line naming the
model, what it returned and what to do. The command line checks every model it loads this
way, and so do the host adapters (:mod:`onepixel_jax.targets.host`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from onepixel_jax.errors import UsageError

PROB_TOLERANCE = 1e-2  # |row sum - 1| allowed (float32 softmax, rounded outputs)
RANGE_TOLERANCE = 1e-4
LOGITS_HINT = (
    "if these are logits, declare them: output='logits' for opj.targets.from_numpy / "
    "from_onnx / from_torch, opj.probs_from_logits(fn) for a JAX function, or the metadata "
    "onepixel.output=logits in an ONNX file (onepixel_jax.targets.export writes it)"
)


class ModelContractError(UsageError):
    """A model that runs but breaks the contract of :func:`check_model`."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {line}" if line else type(err).__name__


def example_batch(
    images: Any = None, image_shape: Sequence[int] | None = None, batch: int = 2
) -> np.ndarray:
    """``batch`` float32 images in [0, 255]: the first of ``images`` (repeated if there are
    fewer), or, from ``image_shape`` ``(H, W, C)``, a black, a white and a seeded noise image."""
    if images is not None:
        x = np.asarray(images, np.float32)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or len(x) == 0:
            raise ValueError(f"images must have shape (N, H, W, C), got {x.shape}")
        return x[np.arange(batch) % len(x)]
    if image_shape is None or len(image_shape) != 3:
        raise ValueError(f"image_shape must be (H, W, C), got {image_shape!r}")
    shape = tuple(int(s) for s in image_shape)
    noise = np.random.default_rng(0).integers(0, 256, shape).astype(np.float32)
    pool = [np.zeros(shape, np.float32), np.full(shape, 255.0, np.float32), noise]
    return np.stack([pool[i % len(pool)] for i in range(batch)])


def check_model(
    predict_fn: Callable,
    images: Any = None,
    *,
    image_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    name: str | None = None,
    batch: int = 2,
) -> int:
    """Check the model contract on one small batch; return the class count ``K``.

    Args:
      predict_fn: float32 ``(B, H, W, C)`` pixels in [0, 255] -> ``(B, K)`` probabilities (a
        JAX function, a :class:`~onepixel_jax.targets.host.HostTarget`, any callable).
      images: example images ``(N, H, W, C)`` (or ``(N, H, W)``) in [0, 255], e.g. the
        dataset's first; ``None``: synthetic ones of ``image_shape``.
      image_shape: ``(H, W, C)`` when ``images`` is None.
      num_classes: the class count the model card declares (``None``: not checked).
      name: how the model is named in messages (default: its ``name`` attribute or
        ``"model"``).
      batch: images per call, at least 2 (the attack calls the model on many at once).

    Returns:
      ``K``, the number of classes.

    Raises:
      ModelContractError: one line naming the model and the broken rule: the call fails on
        ``batch`` images (a fixed batch size of 1, a wrong input size...), the output is not
        ``(B, K)``, ``K < 2``, ``K`` differs from ``num_classes``, values are NaN or
        infinite, or they are not probabilities.
    """
    name = name or getattr(predict_fn, "name", None) or "model"
    if batch < 2:
        raise ValueError(f"batch must be at least 2, got {batch}")
    x = example_batch(images, image_shape, batch)
    size = "x".join(map(str, x.shape[1:]))
    try:
        out, logits = _outputs(predict_fn, x)
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except ModelContractError as err:
        text = str(err)
        raise ModelContractError(text if name in text else f"{name} {text}") from None
    except Exception as err:
        raise ModelContractError(
            f"{name} fails on a batch of {batch} images of {size}: {_first_line(err)}; the "
            "attack calls it on many images at once (a model exported with a fixed batch size "
            "of 1 must be exported again with a dynamic batch axis)"
        ) from None
    shape = tuple(out.shape)
    if len(shape) != 2 or shape[0] != batch:
        raise ModelContractError(
            f"{name} must return shape (B, K) = ({batch}, K) for a batch of {batch} images, got "
            f"shape {shape}: one row of class scores per image (squeeze or reshape its output)"
        )
    k = shape[1]
    if k < 2:
        raise ModelContractError(
            f"{name} returns {k} class; an attack needs a classifier with at least 2 classes"
        )
    if num_classes is not None and k != int(num_classes):
        raise ModelContractError(
            f"{name} returns {k} classes, its model card says num_classes = {num_classes}; fix "
            "the card (or the checkpoint) so that they agree"
        )
    if not np.all(np.isfinite(out)):
        raise ModelContractError(
            f"{name} returns NaN or infinite values on {size} images (damaged weights, or a "
            "computation that overflows); it cannot be attacked"
        )
    if logits:
        return int(k)
    lo, hi = float(out.min()), float(out.max())
    sums = out.sum(axis=1)
    worst = float(sums[np.argmax(np.abs(sums - 1.0))])
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE or abs(worst - 1.0) > PROB_TOLERANCE:
        raise ModelContractError(
            f"{name} returns values that are not class probabilities (range [{lo:.3g}, "
            f"{hi:.3g}], a row sums to {worst:.4g}); {LOGITS_HINT}"
        )
    return int(k)


def _outputs(predict_fn: Callable, x: np.ndarray) -> tuple[np.ndarray, bool]:
    """The model's raw output on ``x`` as float64, and whether it is logits (a host model
    declared with ``output='logits'``, checked before the softmax the adapter applies)."""
    import jax
    import jax.numpy as jnp

    if callable(getattr(predict_fn, "host_fn", None)):  # a HostTarget (targets.host)
        prepared = predict_fn.prepare(jnp.asarray(x))
        try:
            predict_fn._check_model_shape(tuple(prepared.shape))
        except ValueError as err:
            raise ModelContractError(str(err)) from None
        arr = np.asarray(prepared)
        if predict_fn.input_dtype == "float64":
            arr = arr.astype(np.float64)
        out = predict_fn.host_fn(arr)
        logits = predict_fn.output == "logits"
    else:
        out = jax.device_get(predict_fn(jnp.asarray(x)))
        logits = False
    try:
        return np.asarray(out, np.float64), logits
    except (TypeError, ValueError) as err:
        raise ModelContractError(
            f"returns {type(out).__name__}, not an array of class probabilities ({err})"
        ) from None


__all__ = ["ModelContractError", "check_model", "example_batch"]
