"""Which images a sweep attacks, with which label, and towards which targets."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onepixel_jax.errors import UsageError

MODES = ("untargeted", "targeted", "all-targets")
SELECT_BATCH = 256
# The stream the seeded random order is drawn from: default_rng([ORDER_STREAM, seed]), so that
# an order's seed never shares a stream with a targeted run's default_rng([seed, index]).
ORDER_STREAM = 0x5E1EC7


def select_images(
    predict_fn: Callable,
    images: np.ndarray,
    labels: np.ndarray,
    n_images: int,
    include_misclassified: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dataset indices, attack labels and clean-image probabilities of the attacked images.

    Default: the first ``n_images`` images (dataset order) the model classifies correctly,
    attacked with their true label. ``include_misclassified``: the first ``n_images`` images,
    attacked with the model's own prediction as label.

    Args:
      predict_fn: ``(B, H, W, C)`` float32 pixels in [0, 255] -> ``(B, K)`` probabilities.
      images: ``(N, H, W, C)`` uint8 dataset images; ``labels``: ``(N,)`` int.

    Returns:
      ``(indices (n,) int64, attack labels (n,) int64, probabilities (n, K) float32)``.

    Raises:
      UsageError: fewer than ``n_images`` images qualify; labels that are not class indices
        of the model (checked before any cast to int32, where 2**32 + 3 would become 3); a
        model whose outputs are not ``(B, K)`` probabilities with ``K >= 2``.
    """
    from onepixel_jax.targets import predict_in_batches

    labels = np.asarray(labels)
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
        raise UsageError(f"labels must be non-negative integer class indices, got {labels.dtype}")
    chosen, chosen_labels, chosen_probs = [], [], []
    for start in range(0, len(images), SELECT_BATCH):
        block = images[start : start + SELECT_BATCH]
        try:
            probs = np.asarray(
                predict_in_batches(predict_fn, block.astype(np.float32), SELECT_BATCH, check=True)
            )
        except ValueError as err:
            raise UsageError(f"the model's output on the dataset's images: {err}") from None
        if probs.shape[1] < 2:
            raise UsageError("the model has 1 class; an attack needs at least 2")
        if start == 0 and labels.size and int(labels.max()) >= probs.shape[1]:
            raise UsageError(
                f"labels must be class indices below the model's {probs.shape[1]} classes, "
                f"found {int(labels.max())}"
            )
        pred = probs.argmax(axis=1)
        for j in range(len(block)):
            idx = start + j
            if include_misclassified or pred[j] == labels[idx]:
                chosen.append(idx)
                chosen_labels.append(int(pred[j]))
                chosen_probs.append(probs[j])
                if len(chosen) == n_images:
                    return np.array(chosen), np.array(chosen_labels), np.array(chosen_probs)
    raise UsageError(
        f"only {len(chosen)} of the {len(images)} images are classified correctly, "
        f"fewer than the {n_images} asked for (lower --n-images or add --include-misclassified)"
    )


def seeded_order(n: int, seed: int) -> np.ndarray:
    """A random order of the ``n`` dataset positions, fixed by ``seed``.

    ``np.random.default_rng([ORDER_STREAM, seed]).permutation(n)`` as ``(n,)`` int64. The first
    images of the order do not depend on how many are taken, so a selection in this order grows
    without changing its first images.

    Raises:
      UsageError: ``n`` is not a non-negative integer or ``seed`` not in ``[0, 2**32)``.
    """
    if not _is_int(n) or n < 0:
        raise UsageError(f"n must be a non-negative integer, got {n!r}")
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise UsageError(f"selection seed must be an integer in [0, 2**32), got {seed!r}")
    return np.random.default_rng([ORDER_STREAM, int(seed)]).permutation(int(n)).astype(np.int64)


def select_random_images(
    predict_fn: Callable,
    images: np.ndarray,
    labels: np.ndarray,
    n_images: int,
    seed: int,
    include_misclassified: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`select_images`, but in the seeded random order :func:`seeded_order`: the
    first ``n_images`` images of that order the model classifies correctly (or, with
    ``include_misclassified``, the first ``n_images`` of the order with the model's own
    prediction as label). The paper's protocol: "500 random images", correctly classified.

    Returns ``(dataset indices (n,) int64, attack labels (n,) int64, probabilities (n, K))``,
    in the order of selection. A larger ``n_images`` with the same seed keeps the first images.
    """
    order = seeded_order(len(images), seed)
    pos, chosen_labels, probs = select_images(
        predict_fn, images[order], np.asarray(labels)[order], n_images, include_misclassified
    )
    return order[pos], chosen_labels, probs


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def targets_for(mode: str, label: int, num_classes: int, seed: int, index: int) -> list:
    """The targets attacked for one image in ``mode`` (one of :data:`MODES`).

    ``[None]`` (untargeted), one class drawn from ``default_rng([seed, index])`` among the
    others (targeted), or every other class in order (all-targets).
    """
    if mode == "untargeted":
        return [None]
    if mode == "targeted":
        rng = np.random.default_rng([seed, index])
        return [int((label + 1 + rng.integers(num_classes - 1)) % num_classes)]
    if mode == "all-targets":
        return [k for k in range(num_classes) if k != label]
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
