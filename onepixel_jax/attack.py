"""Batched few-pixel attack by differential evolution (Su, Vargas & Sakurai, 2019).

The driver runs every generation of every image inside one compiled ``lax.while_loop``.
Images are processed through ``batch_size`` *slots*: each slot holds one image and its
population; one loop step patches all ``batch_size * popsize`` candidates into their images
and calls ``predict_fn`` once on that batch. When an image finishes (early stop or budget
spent) its result is written out and the next waiting image takes over the slot, so the
accelerator never evaluates finished images while work remains.

Randomness for image ``i`` is derived from ``fold_in(key, i)``, so an image's result does not
depend on ``batch_size`` or on the other images of the call.

Fitness is minimised: untargeted ``p_true``; targeted ``1 - p_target``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .de import STRATEGIES, DEParams, DEState, clean_fitness, differential_evolution
from .perturb import apply_candidates, apply_pixels, decode_candidate, gene_bounds
from .perturb import sample_candidates as _sample

PredictFn = Callable[[jax.Array], jax.Array]

EARLY_STOP_RULES = (None, "success", "threshold", "target_over_true")
_DEFAULT_THRESHOLD = {True: 0.9, False: 0.05}  # targeted: p_target > 0.9; untargeted: p_true < 0.05


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Settings of a few-pixel DE attack; the defaults are the paper's.

    Attributes:
      pixels: number of perturbed pixels ``d`` (paper: 1, 3, 5).
      popsize: candidates per image (paper: 400). At least 4.
      max_iters: DE generations after the initial population (paper: 100).
      targeted: maximise ``p_target`` instead of minimising ``p_true``.
      F: differential weight (paper: 0.5). Traced: changing it does not recompile.
      crossover: ``None`` for the paper's no-crossover DE, else a binomial rate in [0, 1].
      strategy: ``"rand1"`` (paper) or ``"best1"``.
      early_stop: ``None`` (run every generation), ``"success"`` (stop an image once any
        candidate fools the model), ``"threshold"`` (paper, Kaggle CIFAR-10 / ImageNet:
        targeted ``p_target > threshold``, default 0.9; untargeted ``p_true < threshold``,
        default 0.05) or ``"target_over_true"`` (paper, original CIFAR-10: targeted
        ``p_target > p_true``; untargeted: same as ``"success"``).
      threshold: threshold of the ``"threshold"`` rule; ``None`` uses the paper's value.
      batch_size: number of images evolved together (slots); ``None`` means all images of the
        call. One model call per generation evaluates ``batch_size * popsize`` images.
    """

    pixels: int = 1
    popsize: int = 400
    max_iters: int = 100
    targeted: bool = False
    F: float = 0.5
    crossover: float | None = None
    strategy: str = "rand1"
    early_stop: str | None = None
    threshold: float | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        _check_int("pixels", self.pixels, 1)
        _check_int("popsize", self.popsize, 4, "(DE/rand/1 needs 3 distinct other members)")
        _check_int("max_iters", self.max_iters, 0)
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, 1)
        if not isinstance(self.targeted, bool | np.bool_):
            raise TypeError(f"targeted must be a bool, got {self.targeted!r}")
        if not np.isfinite(self.F) or not 0.0 < float(self.F) <= 2.0:
            raise ValueError(f"F must be in (0, 2], got {self.F!r}")
        if self.crossover is not None and not 0.0 <= float(self.crossover) <= 1.0:
            raise ValueError(f"crossover must be None or a rate in [0, 1], got {self.crossover!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.early_stop not in EARLY_STOP_RULES:
            raise ValueError(
                f"early_stop must be one of {EARLY_STOP_RULES}, got {self.early_stop!r}"
            )
        if self.threshold is not None and not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")

    @property
    def stop_threshold(self) -> float:
        """The threshold in force for the ``"threshold"`` rule."""
        if self.threshold is not None:
            return float(self.threshold)
        return _DEFAULT_THRESHOLD[bool(self.targeted)]

    @property
    def budget(self) -> int:
        """Model evaluations per image when it never stops early."""
        return self.popsize * (self.max_iters + 1)


@dataclasses.dataclass(frozen=True)
class AttackResult:
    """Per-image outcome of :func:`attack` / :func:`random_search` (NumPy arrays).

    Attributes:
      adversarial: ``(N, H, W[, C])`` the best candidate applied, same shape/dtype as images.
      pixels: ``(N, d, 2 + C)`` int32 rows ``(row, col, v_0, ..)`` of the applied perturbation.
      success: ``(N,)`` bool; untargeted: argmax != label, targeted: argmax == target, both
        evaluated by ``predict_fn`` on ``adversarial``.
      queries: ``(N,)`` int64 model evaluations consumed (initial population included).
      probs: ``(N, K)`` float32 ``predict_fn`` output on ``adversarial``.
      original_probs: ``(N, K)`` float32 ``predict_fn`` output on the clean images.
      fitness_history: ``(N, max_iters + 1)`` float32 best fitness after each generation
        (index 0 = initial population; lower is better; held constant after an early stop).
      labels: ``(N,)`` int32 true classes. targets: ``(N,)`` int32 or ``None``.
    """

    adversarial: np.ndarray
    pixels: np.ndarray
    success: np.ndarray
    queries: np.ndarray
    probs: np.ndarray
    original_probs: np.ndarray
    fitness_history: np.ndarray
    labels: np.ndarray
    targets: np.ndarray | None

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.success)) if self.success.size else float("nan")


class _Static(NamedTuple):
    """Everything that fixes shapes or control flow of the compiled loop (hashable)."""

    pixels: int
    popsize: int
    max_iters: int
    targeted: bool
    strategy: str
    use_crossover: bool
    early_stop: str | None
    slots: int
    random: bool
    channel_axis: bool  # False when the caller's images are (N, H, W)


# Incremented each time the compiled driver is traced (tests use it to catch recompiles).
TRACE_COUNT = 0


def probs_from_logits(logits_fn: PredictFn) -> PredictFn:
    """Wrap a logits function into the ``predict_fn`` the attack expects (softmax)."""

    def predict_fn(batch: jax.Array) -> jax.Array:
        return jax.nn.softmax(logits_fn(batch), axis=-1)

    return predict_fn


def attack(
    key: jax.Array,
    predict_fn: PredictFn,
    images: Any,
    labels: Any,
    cfg: AttackConfig | None = None,
    targets: Any = None,
) -> AttackResult:
    """Few-pixel differential-evolution attack on a batch of images.

    Args:
      key: a JAX PRNG key (``jax.random.key(seed)`` or ``jax.random.PRNGKey(seed)``).
      predict_fn: JAX-traceable map from a float32 batch ``(B, H, W, C)`` (or ``(B, H, W)``
        when ``images`` are greyscale without a channel axis) in pixel space [0, 255] to class
        probabilities ``(B, K)``. It is a static argument of the compiled driver: pass the same
        function object to reuse the compilation.
      images: ``(N, H, W, C)`` or ``(N, H, W)``, uint8 or float in [0, 255].
      labels: ``(N,)`` integer true classes.
      cfg: :class:`AttackConfig` (default: the paper's settings, untargeted).
      targets: ``(N,)`` integer target classes, required iff ``cfg.targeted``.

    Returns:
      :class:`AttackResult`.
    """
    return _run_attack(key, predict_fn, images, labels, cfg or AttackConfig(), targets, False)


def random_search(
    key: jax.Array,
    predict_fn: PredictFn,
    images: Any,
    labels: Any,
    cfg: AttackConfig | None = None,
    targets: Any = None,
) -> AttackResult:
    """The paper's random baseline with the same budget as :func:`attack`.

    Every generation draws ``popsize`` fresh candidates from the DE's initial distribution
    (coordinates uniform, colours N(128, 127)); the best candidate seen is returned. Early
    stopping, ``queries`` and the result type are as in :func:`attack`.
    """
    return _run_attack(key, predict_fn, images, labels, cfg or AttackConfig(), targets, True)


# --------------------------------------------------------------------------------------
# Input checking


def _check_int(name: str, value: Any, minimum: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}{' ' + why if why else ''}, got {value}")


def _check_key(key: Any) -> jax.Array:
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"key must be a single PRNG key, got a key array of shape {key.shape}")
        return key
    arr = np.asarray(key) if not isinstance(key, jax.Array) else key
    if arr.shape == (2,) and arr.dtype == np.uint32:
        return jax.random.wrap_key_data(jnp.asarray(arr))
    raise TypeError(
        "key must be a JAX PRNG key such as jax.random.key(0), "
        f"got {type(key).__name__} with shape {getattr(arr, 'shape', None)}"
    )


def _check_images(images: Any) -> tuple[np.ndarray, bool]:
    arr = np.asarray(images)
    if arr.ndim not in (3, 4):
        raise ValueError(f"images must have shape (N, H, W, C) or (N, H, W), got shape {arr.shape}")
    if arr.shape[0] == 0 or 0 in arr.shape:
        raise ValueError(f"images must be non-empty, got shape {arr.shape}")
    if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"images must be uint8 or float in [0, 255], got dtype {arr.dtype} "
            "(convert with .astype(np.uint8) or .astype(np.float32))"
        )
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError("images contain NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 255.0:
            raise ValueError(
                f"images must be in pixel space [0, 255], got values in [{lo:g}, {hi:g}]"
            )
    return arr, arr.ndim == 4


def _check_classes(name: str, values: Any, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match images, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be non-negative class indices, got {int(arr.min())}")
    return arr.astype(np.int32)


def _check_probs(probs: Any, batch: int) -> int:
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


# --------------------------------------------------------------------------------------
# Driver


@jax.jit
def _apply_best(images: jax.Array, genes: jax.Array) -> tuple[jax.Array, jax.Array]:
    h, w, c = images.shape[1:]
    pix = jax.vmap(lambda g: decode_candidate(g, h, w, c))(genes)
    return jax.vmap(apply_pixels)(images, pix), pix


@functools.partial(jax.jit, static_argnames=("predict_fn",))
def _predict(x: jax.Array, predict_fn: PredictFn) -> jax.Array:
    return predict_fn(x)


def predict_in_batches(
    predict_fn: PredictFn, images: Any, batch: int, check: bool = False
) -> np.ndarray:
    """``predict_fn`` over ``images`` (float32 pixel space) in chunks of ``batch``.

    With ``check``, every chunk's output is validated as a ``(B, K)`` probability array.
    """
    x = jnp.asarray(images, jnp.float32)
    out = []
    for i in range(0, len(x), batch):
        probs = _predict(x[i : i + batch], predict_fn)
        if check:
            _check_probs(probs, len(x[i : i + batch]))
        out.append(np.asarray(probs))
    return np.concatenate(out, axis=0)


def _run_attack(key, predict_fn, images, labels, cfg, targets, random) -> AttackResult:
    if not isinstance(cfg, AttackConfig):
        raise TypeError(f"cfg must be an AttackConfig, got {type(cfg).__name__}")
    if not callable(predict_fn):
        raise TypeError(f"predict_fn must be callable, got {type(predict_fn).__name__}")
    key = _check_key(key)
    arr, has_channel = _check_images(images)
    n = arr.shape[0]
    labels = _check_classes("labels", labels, n)
    if cfg.targeted:
        if targets is None:
            raise ValueError("targets are required when cfg.targeted is True")
        targets = _check_classes("targets", targets, n)
        if np.any(targets == labels):
            i = int(np.argmax(targets == labels))
            raise ValueError(f"targets must differ from labels (image {i}: both are {labels[i]})")
    elif targets is not None:
        raise ValueError("targets were given but cfg.targeted is False")

    x = jnp.asarray(arr, jnp.float32)
    if not has_channel:
        x = x[..., None]
    slots = min(cfg.batch_size or n, n)
    view = (lambda b: b) if has_channel else (lambda b: b[..., 0])

    # The clean images' predictions also validate predict_fn before the loop is compiled.
    chunk = max(slots * cfg.popsize // 4, slots)
    original_probs = predict_in_batches(predict_fn, view(x), chunk, check=True)
    k = original_probs.shape[1]
    for name, cls in (("labels", labels), ("targets", targets)):
        if cls is not None and cls.max() >= k:
            raise ValueError(f"{name} must be < K = {k} (the number of classes), got {cls.max()}")

    static = _Static(
        pixels=cfg.pixels,
        popsize=cfg.popsize,
        max_iters=cfg.max_iters,
        targeted=bool(cfg.targeted),
        strategy=cfg.strategy,
        use_crossover=cfg.crossover is not None,
        early_stop=cfg.early_stop,
        slots=slots,
        random=random,
        channel_axis=has_channel,
    )
    tgt = jnp.asarray(targets if targets is not None else labels)
    genes, history, rounds = _evolve(
        key,
        x,
        jnp.asarray(labels),
        tgt,
        jnp.float32(cfg.F),
        jnp.float32(cfg.crossover or 0.0),
        jnp.float32(cfg.stop_threshold),
        predict_fn=predict_fn,
        static=static,
    )
    adv, pix = _apply_best(x, genes)
    probs = predict_in_batches(predict_fn, view(adv), chunk)
    pred = probs.argmax(axis=1)
    success = pred == targets if cfg.targeted else pred != labels
    adv_np = np.asarray(adv)
    if not has_channel:
        adv_np = adv_np[..., 0]
    return AttackResult(
        adversarial=adv_np.astype(arr.dtype),
        pixels=np.asarray(pix, np.int32),
        success=np.asarray(success, bool),
        queries=np.asarray(rounds, np.int64) * cfg.popsize,
        probs=probs.astype(np.float32),
        original_probs=original_probs.astype(np.float32),
        fitness_history=np.asarray(history, np.float32),
        labels=labels,
        targets=targets,
    )


def _evolve_impl(key, images, labels, targets, F, crossover_rate, threshold, *, predict_fn, static):
    """The compiled generation loop. Returns best genes (N, D), history (N, G+1), rounds (N,)."""
    global TRACE_COUNT
    TRACE_COUNT += 1
    n, h, w, c = images.shape
    s, p, g = static.slots, static.popsize, static.max_iters
    lower, upper = gene_bounds(static.pixels, h, w, c)
    d = lower.shape[0]
    de = differential_evolution(lower, upper, static.strategy, static.use_crossover)
    params = DEParams(F=F, crossover_rate=crossover_rate)
    image_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n + 1))

    def evaluate(slot_img, cand):
        idx = jnp.minimum(slot_img, n - 1)
        batch = jax.vmap(apply_candidates)(images[idx], cand).reshape(s * p, h, w, c)
        probs = predict_fn(batch if static.channel_axis else batch[..., 0])
        probs = probs.reshape(s, p, -1)
        pred = jnp.argmax(probs, axis=-1)
        lab, tgt = labels[idx][:, None], targets[idx][:, None]
        p_true = jnp.take_along_axis(probs, lab[..., None], axis=-1)[..., 0]
        p_tgt = jnp.take_along_axis(probs, tgt[..., None], axis=-1)[..., 0]
        if static.targeted:
            fit, succ = 1.0 - p_tgt, pred == tgt
        else:
            fit, succ = p_true, pred != lab
        rule = static.early_stop
        if rule is None:
            crit = jnp.zeros_like(succ)
        elif rule == "success" or (rule == "target_over_true" and not static.targeted):
            crit = succ
        elif rule == "threshold":
            crit = p_tgt > threshold if static.targeted else p_true < threshold
        else:  # target_over_true, targeted
            crit = p_tgt > p_true
        return clean_fitness(fit), succ, crit

    def cond(carry):
        return jnp.any(carry["slot_img"] < n)

    def body(carry):
        slot_img, rnd = carry["slot_img"], carry["round"]
        valid = slot_img < n
        fresh = rnd == 0
        keys = jax.vmap(jax.random.fold_in)(image_keys[slot_img], rnd)
        split = jax.vmap(jax.random.split)(keys)
        k_init, k_ask = split[:, 0], split[:, 1]

        def draw_initial(_):
            return jax.vmap(lambda kk: _sample(kk, p, static.pixels, h, w, c))(k_init)

        if static.random:
            cand = draw_initial(None)
        else:
            state = DEState(population=carry["pop"], fitness=carry["fit"])
            asked = jax.vmap(de.ask, in_axes=(0, 0, None))(k_ask, state, params)
            # Initial populations are drawn only in the steps where some slot starts an image.
            init_c = jax.lax.cond(
                jnp.any(fresh), draw_initial, lambda _: jnp.zeros_like(asked), None
            )
            cand = jnp.where(fresh[:, None, None], init_c, asked)
        cfit, csucc, ccrit = evaluate(slot_img, cand)

        # Parent-versus-child selection (every child is accepted into a fresh slot).
        win = fresh[:, None] | (cfit <= carry["fit"])
        pop = jnp.where(win[..., None], cand, carry["pop"])
        fit = jnp.where(win, cfit, carry["fit"])

        # The returned candidate: successful ones first, then lowest fitness, over all seen.
        score = jnp.where(csucc, cfit - 2.0, cfit)
        best = jnp.argmin(score, axis=1)
        best_score = jnp.take_along_axis(score, best[:, None], axis=1)[:, 0]
        better = fresh | (best_score < carry["champ_score"])
        champ = jnp.where(
            better[:, None], jnp.take_along_axis(cand, best[:, None, None], 1)[:, 0], carry["champ"]
        )
        champ_score = jnp.where(better, best_score, carry["champ_score"])

        hist = carry["hist"].at[jnp.arange(s), rnd].set(jnp.min(fit, axis=1))
        finished = valid & (jnp.any(ccrit, axis=1) | (rnd == g))

        # Write finished images out; rows of unfinished slots go out of bounds and are dropped.
        out_idx = jnp.where(finished, slot_img, n)
        steps = jnp.arange(g + 1)[None, :]
        last = jnp.take_along_axis(hist, rnd[:, None], axis=1)
        filled = jnp.where(steps > rnd[:, None], last, hist)
        out_genes = carry["out_genes"].at[out_idx].set(champ, mode="drop")
        out_hist = carry["out_hist"].at[out_idx].set(filled, mode="drop")
        out_rounds = carry["out_rounds"].at[out_idx].set(rnd + 1, mode="drop")

        # Refill finished slots with the next waiting images, in slot order.
        order = jnp.cumsum(finished) - 1
        refill = jnp.minimum(carry["next"] + order, n)
        slot_img = jnp.where(finished, refill, slot_img)
        nxt = jnp.minimum(carry["next"] + jnp.sum(finished), n)
        rnd = jnp.where(finished | ~valid, 0, rnd + 1)
        return dict(
            slot_img=slot_img,
            round=rnd,
            next=nxt,
            pop=pop,
            fit=fit,
            champ=champ,
            champ_score=champ_score,
            hist=hist,
            out_genes=out_genes,
            out_hist=out_hist,
            out_rounds=out_rounds,
        )

    carry = dict(
        slot_img=jnp.arange(s, dtype=jnp.int32),
        round=jnp.zeros((s,), jnp.int32),
        next=jnp.int32(s),
        pop=jnp.zeros((s, p, d), jnp.float32),
        fit=jnp.full((s, p), jnp.inf, jnp.float32),
        champ=jnp.zeros((s, d), jnp.float32),
        champ_score=jnp.full((s,), jnp.inf, jnp.float32),
        hist=jnp.zeros((s, g + 1), jnp.float32),
        out_genes=jnp.zeros((n, d), jnp.float32),
        out_hist=jnp.zeros((n, g + 1), jnp.float32),
        out_rounds=jnp.zeros((n,), jnp.int32),
    )
    carry = jax.lax.while_loop(cond, body, carry)
    return carry["out_genes"], carry["out_hist"], carry["out_rounds"]


_evolve = jax.jit(_evolve_impl, static_argnames=("predict_fn", "static"))
