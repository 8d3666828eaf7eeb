"""Input squeezing as prediction wrappers, and feature-squeezing detection (Xu et al., NDSS 2018).

Squeezers map a float32 batch ``(B, H, W, C)`` in pixel space [0, 255] to a batch of the same
shape and dtype:

* :func:`median_filter`: the ``k x k`` median of each channel, with the borders reflected
  (``scipy.ndimage.median_filter(x, size=(1, k, k, 1), mode="reflect")``, the reference the
  tests compare with; for even ``k`` the window is the pixel and the ``k - 1`` before it on
  each axis, and the median is the upper of the two middle values, as in SciPy).
* :func:`bit_depth`: colour bit-depth reduction to ``bits`` bits per channel,
  ``round(x / 255 * (2**bits - 1)) / (2**bits - 1) * 255``.

:func:`squeezed` wraps a ``predict_fn`` so that the network sees the squeezed input: the
defended pipeline as one JAX-traceable function, which the black-box attack attacks end to
end like any other model.

Feature squeezing detection: the score of an input is the largest L1 distance between the
network's probabilities on the input and on each squeezed version of it
(:func:`detection_scores`); an input is flagged when the score exceeds a threshold chosen for
a given false-positive rate on clean images (:func:`calibrate_threshold`, 5 % by default).
:class:`FeatureSqueezingDetector` holds the squeezers and the threshold.

Attacking the detector: the target :func:`detector_target` observes the network's
probabilities and the detector's score per candidate, and :func:`detection_aware_objective`
makes success "fooled and not detected" by combining criteria
(``Misclassified() & ~Detected(threshold)``, :mod:`onepixel_jax.objective`), with flagged
candidates ranked behind every unflagged one. The attack's verdict on the returned image is
that same criterion::

    res = opj.run(key, detector_target(det), images, labels,
                  method=opj.search.make("paper"), objective=detection_aware_objective(det))
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import objective as objective_lib
from ..perturb import apply_pixels
from ..types import PredictFn, Target

__all__ = [
    "SQUEEZERS",
    "FeatureSqueezingDetector",
    "bit_depth",
    "calibrate_threshold",
    "detection_aware_objective",
    "detection_scores",
    "detector_target",
    "get_squeezer",
    "median_filter",
    "squeezed",
]

Squeezer = Callable[[jax.Array], jax.Array]


def median_filter(images: jax.Array, size: int) -> jax.Array:
    """Per-channel ``size x size`` median filter with reflected borders.

    Args:
      images: ``(B, H, W, C)`` (or ``(H, W, C)``) float32 pixel values.
      size: window side ``k >= 1``.

    Returns:
      The filtered images, same shape and dtype; equals
      ``scipy.ndimage.median_filter(images, size=(1, k, k, 1), mode="reflect")``.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")
    x = jnp.asarray(images)
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"images must be (B, H, W, C) or (H, W, C), got shape {x.shape}")
    # SciPy centres the window at index size // 2: offsets -size//2 .. size - 1 - size//2.
    before, after = size // 2, size - 1 - size // 2
    padded = jnp.pad(x, ((0, 0), (before, after), (before, after), (0, 0)), mode="symmetric")
    h, w = x.shape[1:3]
    windows = [padded[:, i : i + h, j : j + w, :] for i in range(size) for j in range(size)]
    stacked = jnp.sort(jnp.stack(windows, axis=0), axis=0)
    out = stacked[(size * size) // 2]
    return out[0] if single else out


def bit_depth(images: jax.Array, bits: int) -> jax.Array:
    """Colour bit-depth reduction to ``bits`` bits per channel, in pixel space [0, 255].

    ``images``: float32 of any shape; returns the same shape and dtype."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an int in [1, 8], got {bits!r}")
    levels = 2.0**bits - 1.0
    x = jnp.asarray(images, jnp.float32)
    return jnp.round(x / 255.0 * levels) / levels * 255.0


SQUEEZERS = ("median2", "median3", "bits1", "bits2", "bits3", "bits4", "bits5", "bits6", "bits7")


@functools.cache
def get_squeezer(name: str) -> Squeezer:
    """A squeezer by name: ``"median<k>"`` (k x k median filter) or ``"bits<b>"`` (b-bit
    colours). The same name gives the same function object (a stable static argument)."""
    if not isinstance(name, str):
        raise ValueError(f"squeezer must be a name such as 'median2' or 'bits1', got {name!r}")
    if name.startswith("median") and name[6:].isdigit():
        k = int(name[6:])
        if k >= 1:
            return functools.partial(median_filter, size=k)
    if name.startswith("bits") and name[4:].isdigit():
        b = int(name[4:])
        if 1 <= b <= 8:
            return functools.partial(bit_depth, bits=b)
    raise ValueError(f"squeezer must be 'median<k>' or 'bits<1..8>', got {name!r}")


def squeezed(predict_fn: PredictFn, *squeezers: str | Squeezer) -> PredictFn:
    """``predict_fn`` behind input squeezing: ``predict_fn(s_n(...s_1(x)))``.

    The result is a JAX-traceable ``(B, H, W, C) -> (B, K)`` function, the defended pipeline
    as the attack sees it. Squeezers are names (:func:`get_squeezer`) or functions."""
    fns = [get_squeezer(s) if isinstance(s, str) else s for s in squeezers]

    def defended(batch: jax.Array) -> jax.Array:
        x = jnp.asarray(batch, jnp.float32)
        for fn in fns:
            x = fn(x)
        return predict_fn(x)

    return defended


def detection_scores(
    predict_fn: PredictFn, images: jax.Array, squeezers: Sequence[str | Squeezer]
) -> jax.Array:
    """Feature-squeezing score ``max_s || p(x) - p(s(x)) ||_1`` of each image.

    ``images``: ``(B, H, W, C)`` float32 pixel values; returns ``(B,)`` float32 in [0, 2].
    Traceable; the original and every squeezed batch go through the network in one call."""
    fns = [get_squeezer(s) if isinstance(s, str) else s for s in squeezers]
    if not fns:
        raise ValueError("give at least one squeezer")
    x = jnp.asarray(images, jnp.float32)
    b = x.shape[0]
    probs = predict_fn(jnp.concatenate([x, *[fn(x) for fn in fns]], axis=0))
    probs = probs.reshape(len(fns) + 1, b, -1)
    return jnp.max(jnp.sum(jnp.abs(probs[1:] - probs[0][None]), axis=-1), axis=0)


def calibrate_threshold(clean_scores: np.ndarray, fpr: float = 0.05) -> float:
    """The smallest threshold that flags at most ``fpr`` of ``clean_scores``.

    An input is flagged when its score is strictly greater than the threshold; the threshold
    is the ``ceil((1 - fpr) n)``-th smallest clean score, so at most ``floor(fpr n)`` clean
    scores (fewer with ties) lie above it."""
    s = np.sort(np.asarray(clean_scores, np.float64).ravel())
    if s.size == 0:
        raise ValueError("clean_scores is empty")
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be in [0, 1), got {fpr!r}")
    rank = int(np.ceil((1.0 - fpr) * s.size))  # 1-based
    return float(s[max(rank, 1) - 1])


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureSqueezingDetector:
    """Feature squeezing (Xu et al.): flag ``x`` when ``detection_scores(x) > threshold``.

    Attributes:
      predict_fn: the undefended network, ``(B, H, W, C) -> (B, K)`` probabilities.
      squeezers: names or functions (Xu et al.: ``("bits1", "median2")`` on MNIST,
        ``("bits5", "median2")`` on CIFAR-10, plus a non-local means filter left out here).
      threshold: flag above this score (from :meth:`calibrated`).
      fpr: the false-positive rate the threshold was calibrated for on clean images.
    """

    predict_fn: PredictFn
    squeezers: tuple
    threshold: float
    fpr: float = 0.05

    @classmethod
    def calibrated(
        cls,
        predict_fn: PredictFn,
        squeezers: Sequence[str | Squeezer],
        clean_images: np.ndarray,
        fpr: float = 0.05,
        batch: int = 500,
    ) -> FeatureSqueezingDetector:
        """A detector whose threshold flags ``fpr`` of ``clean_images`` (uint8 or float
        ``(N, H, W, C)``)."""
        det = cls(predict_fn, tuple(squeezers), float("inf"), fpr)
        return dataclasses.replace(
            det, threshold=calibrate_threshold(det.scores(clean_images, batch), fpr)
        )

    @functools.cached_property
    def _jit_scores(self):
        return jax.jit(lambda x: detection_scores(self.predict_fn, x, self.squeezers))

    def scores(self, images: np.ndarray, batch: int = 500) -> np.ndarray:
        """``(N,)`` float64 detection scores of ``images`` (``(N, H, W, C)`` pixel values)."""
        x = np.asarray(images, np.float32)
        out = [np.asarray(self._jit_scores(x[i : i + batch])) for i in range(0, len(x), batch)]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def flags(self, images: np.ndarray, batch: int = 500) -> np.ndarray:
        """``(N,)`` bool: the images the detector flags."""
        return self.scores(images, batch) > self.threshold


def detector_target(detector: FeatureSqueezingDetector) -> Target:
    """The network guarded by ``detector`` as a Target that observes both: per candidate it
    returns the network's ``"probs"`` and the detector's ``"detection_score"``, for criteria
    such as ``Misclassified() & ~Detected(detector.threshold)``
    (:func:`detection_aware_objective`). The detector costs ``1 + len(squeezers)`` network
    evaluations per candidate; the engine counts one query."""
    return _detector_target(detector)


@functools.lru_cache(maxsize=16)
def _detector_target(detector: FeatureSqueezingDetector) -> Target:
    predict_fn, squeezers = detector.predict_fn, detector.squeezers

    def prepare(images):
        return ()

    def evaluate(cache, images, pixels):
        s, p = pixels.shape[:2]
        h, w, c = images.shape[1:]
        patch = jax.vmap(jax.vmap(apply_pixels, in_axes=(None, 0)))
        batch = patch(images, pixels).reshape(s * p, h, w, c)
        fns = [get_squeezer(q) if isinstance(q, str) else q for q in squeezers]
        probs = predict_fn(jnp.concatenate([batch, *[fn(batch) for fn in fns]], axis=0))
        probs = probs.reshape(len(fns) + 1, s * p, -1)
        score = jnp.max(jnp.sum(jnp.abs(probs[1:] - probs[0][None]), axis=-1), axis=0)
        return {"probs": probs[0].reshape(s, p, -1), "detection_score": score.reshape(s, p)}

    return Target(prepare=prepare, evaluate=evaluate)


def detection_aware_objective(
    detector: FeatureSqueezingDetector,
    targeted: bool = False,
    early_stop: str | None = "success",
) -> objective_lib.Objective:
    """The attacker's objective against the detector-guarded network (with
    :func:`detector_target`): success is "fooled and not flagged"
    (``Misclassified() & ~Detected(threshold)``, or ``ReachesTarget()`` targeted); a flagged
    candidate's fitness is the paper's plus 1, so every unflagged candidate ranks first. With
    ``early_stop="success"`` an image stops at its first undetected success."""
    flagged = objective_lib.Detected(jnp.float32(detector.threshold))
    success = objective_lib.success_criterion(targeted) & ~flagged
    stop = success if early_stop == "success" else objective_lib.stop_rule(early_stop, targeted)
    return objective_lib.Objective(
        success=success,
        stop=stop,
        penalty=flagged,
        targeted=bool(targeted),
    )
