"""The attack engine: configuration, input checks and THE compiled generation loop.

Every generation of every image runs inside one ``lax.while_loop``. Images go through
``batch_size`` *slots*; a loop step reads as four stages over all slots at once:

1. the strategy **asks** for ``popsize`` candidates per slot (``vmap`` over slots);
2. the target **evaluates** them (one model call on ``slots * popsize`` images);
3. the objective **scores** them (fitness, success, stop);
4. the strategy is **told** the fitness.

When an image finishes (its stop rule fires or its budget is spent) its result is written
out and the next waiting image takes the slot inside the loop. Image ``i`` draws its
randomness from ``fold_in(key, i)``, so its result does not depend on the other images or on
``batch_size``. The engine knows no strategy, model kind or stop rule by name: they come from
:mod:`onepixel_jax.search`, :mod:`onepixel_jax.targets` and :mod:`onepixel_jax.objective`.

Fitness is minimised (see :mod:`onepixel_jax.objective`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import search as search_lib
from .objective import DEFAULT_THRESHOLD, FITNESSES, STOP_RULES, make_objective
from .perturb import SAMPLERS, apply_pixels, decode_candidate
from .search.base import SearchSpace
from .targets import check_probs, incremental, patched_forward, predict_in_batches
from .targets.host import check_traceable
from .types import PredictFn, Target

EARLY_STOP_RULES = STOP_RULES
_LEGACY_STRATEGIES = {"rand1": "rand1", "best1": "best1"}


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Settings of a few-pixel attack; the defaults are the paper's DE.

    Attributes:
      pixels: number of perturbed pixels ``d`` (paper: 1, 3, 5).
      popsize: candidates per image per generation (paper: 400). ``None``: the strategy's
        own default (400 for the DE strategies).
      max_iters: generations after the initial population (paper: 100). The budget per
        image is ``popsize * (max_iters + 1)`` model evaluations. ``None``: 100 generations,
        or for strategies that declare a query budget (``"fast"``, the scans, Sparse-RS,
        JADE) as many as fit the paper's 40,400 evaluations.
      targeted: maximise ``p_target`` instead of minimising ``p_true``.
      strategy: a registered search strategy (:func:`onepixel_jax.search.names`):
        ``"de"`` (DE, default; its defaults are the paper's), ``"paper"`` (the paper's DE
        whatever the DE knobs say), ``"fast"``, ``"random"`` (the paper's baseline), ...
      options: strategy-specific static options as ``(name, value)`` pairs, for instance
        ``(("dither", True),)`` for ``"de"``; each strategy lists the names it takes.
      stall: give up on an image once its best fitness has not improved by more than
        ``stall_eps`` over the last ``stall`` generations (``0``: never; the paper's setting).
        ``None``: the strategy's default (off for all but ``"fast"``).
      stall_eps: the improvement the stall rule counts as progress.
      F: DE differential weight (paper: 0.5). Traced: changing it does not recompile.
      crossover: DE binomial crossover rate in [0, 1], or ``None`` (paper: no crossover).
      mutation: DE mutation, ``"rand1"`` (paper) or ``"best1"``.
      sampler: initial distribution, ``"paper"`` (coordinates uniform, colours N(128, 127))
        or ``"corners"`` (every channel 0 or 255).
      objective: fitness, ``"paper"`` (``p_true`` / ``1 - p_target``) or ``"margin"``.
      early_stop: ``None`` (run every generation), ``"success"`` (stop an image once any
        candidate fools the model), ``"threshold"`` (paper, Kaggle CIFAR-10 / ImageNet:
        targeted ``p_target > threshold``, default 0.9; untargeted ``p_true < threshold``,
        default 0.05) or ``"target_over_true"`` (paper, original CIFAR-10: targeted
        ``p_target > p_true``; untargeted: same as ``"success"``).
      threshold: threshold of the ``"threshold"`` rule; ``None`` uses the paper's value.
      batch_size: number of images evolved side by side (slots), at most the number of
        images of the call. Results do not depend on it (see the README for what is exact).
        ``None`` picks a size that is fast on the device (:func:`plan_slots`).
      call_size: at most this many candidates per model call; the slots are evaluated in
        groups of ``max(1, call_size // popsize)`` slots, one call each. ``None`` picks a
        size that is fast on the device.
      compact: once no image is waiting, busy slots are packed together and groups of idle
        slots make no model call, so no evaluation is spent on finished images. Results do
        not change; only speed (``False`` evaluates every slot every generation).
      incremental: exact incremental evaluation of zoo networks
        (:mod:`onepixel_jax.targets.incremental`): ``None`` uses it where it pays, ``True``
        always (an error for other models), ``False`` never (the full forward). Probabilities
        agree to float rounding, so results can differ only where fitnesses tie to ~1e-7.
    """

    pixels: int = 1
    popsize: int | None = None
    max_iters: int | None = None
    targeted: bool = False
    strategy: str = "de"
    options: tuple = ()
    stall: int | None = None
    stall_eps: float = 1e-4
    F: float = 0.5
    crossover: float | None = None
    mutation: str = "rand1"
    sampler: str = "paper"
    objective: str = "paper"
    early_stop: str | None = None
    threshold: float | None = None
    batch_size: int | None = None
    call_size: int | None = None
    compact: bool = True
    incremental: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.strategy, str) and self.strategy in _LEGACY_STRATEGIES:
            warnings.warn(
                f"AttackConfig(strategy={self.strategy!r}) is the DE mutation; spell it "
                f"AttackConfig(strategy='de', mutation={self.strategy!r})",
                DeprecationWarning,
                stacklevel=3,
            )
            object.__setattr__(self, "mutation", self.strategy)
            object.__setattr__(self, "strategy", "de")
        spec = search_lib.get(self.strategy)
        _check_int("pixels", self.pixels, 1)
        if self.popsize is None:
            object.__setattr__(self, "popsize", spec.popsize)
        why = f"(strategy {spec.name!r} needs at least {spec.min_popsize})"
        _check_int("popsize", self.popsize, max(spec.min_popsize, 1), why)
        if self.max_iters is None:
            iters = 100 if spec.budget is None else max(spec.budget // self.popsize - 1, 0)
            object.__setattr__(self, "max_iters", iters)
        _check_int("max_iters", self.max_iters, 0)
        if self.stall is None:
            stall = spec.stall(self) if callable(spec.stall) else spec.stall
            object.__setattr__(self, "stall", stall)
        _check_int("stall", self.stall, 0)
        _check_number("stall_eps", self.stall_eps)
        search_lib.check_options(spec, self.options)
        spec.static_options(self)  # the option values (a bad one fails here, not in the loop)
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, 1)
        if self.call_size is not None:
            _check_int("call_size", self.call_size, 1)
        for name in ("targeted", "compact"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.incremental is not None and not isinstance(self.incremental, bool | np.bool_):
            raise TypeError(f"incremental must be None or a bool, got {self.incremental!r}")
        _check_number("F", self.F)
        if not 0.0 < float(self.F) <= 2.0:
            raise ValueError(f"F must be in (0, 2], got {self.F!r}")
        if self.crossover is not None:
            _check_number("crossover", self.crossover)
            if not 0.0 <= float(self.crossover) <= 1.0:
                raise ValueError(
                    f"crossover must be None or a rate in [0, 1], got {self.crossover!r}"
                )
        if self.mutation not in search_lib.de.MUTATIONS:
            raise ValueError(
                f"mutation must be one of {search_lib.de.MUTATIONS}, got {self.mutation!r}"
            )
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {self.sampler!r}")
        if self.objective not in FITNESSES:
            raise ValueError(f"objective must be one of {FITNESSES}, got {self.objective!r}")
        if self.early_stop not in EARLY_STOP_RULES:
            raise ValueError(
                f"early_stop must be one of {EARLY_STOP_RULES}, got {self.early_stop!r}"
            )
        if self.threshold is not None:
            _check_number("threshold", self.threshold)
            if not 0.0 < float(self.threshold) < 1.0:
                raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")

    @property
    def stop_threshold(self) -> float:
        """The threshold in force for the ``"threshold"`` rule."""
        if self.threshold is not None:
            return float(self.threshold)
        return DEFAULT_THRESHOLD[bool(self.targeted)]

    @property
    def budget(self) -> int:
        """Model evaluations per image when it never stops early."""
        return self.popsize * (self.max_iters + 1)


@dataclasses.dataclass(frozen=True)
class AttackResult:
    """Per-image outcome of :func:`attack` (NumPy arrays).

    Attributes:
      adversarial: ``(N, H, W[, C])`` the best candidate applied, same shape/dtype as images.
      pixels: ``(N, d, 2 + C)`` int32 rows ``(row, col, v_0, ..)`` of the applied perturbation.
      success: ``(N,)`` bool; untargeted: argmax != label, targeted: argmax == target, both
        evaluated by the model on ``adversarial``.
      queries: ``(N,)`` int64 model evaluations consumed (initial population included).
      probs: ``(N, K)`` float32 model output on ``adversarial``.
      original_probs: ``(N, K)`` float32 model output on the clean images.
      fitness_history: ``(N, max_iters + 1)`` float32 best fitness after each generation
        (index 0 = initial population; lower is better; held constant after an early stop).
      labels: ``(N,)`` int32 true classes. targets: ``(N,)`` int32 or ``None``.
      model_evaluations: candidate evaluations carried by the model calls of the loop, busy
        slots or not (``queries.sum()`` of them were useful).
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
    model_evaluations: int = 0

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
    strategy_options: tuple
    sampler: str
    objective: str
    early_stop: str | None
    stall: int  # give up after this many generations without improvement (0: never)
    stall_eps: float
    slots: int
    call_slots: int  # slots per model call: the S slots are evaluated in S / call_slots calls
    compact: bool  # pack busy slots first and skip model calls on all-idle call groups
    progress: bool  # report per generation to the active progress reporter


class LoopState(NamedTuple):
    """The carry of the compiled loop. ``S`` slots, ``P`` popsize, ``D`` genes, ``N`` images,
    ``G`` = max_iters."""

    slot_image: jax.Array  # (S,) int32: image in each slot; N = empty
    generation: jax.Array  # (S,) int32: generation of each slot's image (0 = fresh)
    next_image: jax.Array  # () int32: first image not yet started
    search: Any  # strategy state, leading axis S
    cache: Any  # target cache, leading axis S
    best_fitness: jax.Array  # (S,) float32: best fitness seen for the slot's image
    champion: jax.Array  # (S, D) float32: the candidate returned for the slot's image
    champion_score: jax.Array  # (S,) float32: its score (success first, then fitness)
    history: jax.Array  # (S, G + 1) float32: best fitness per generation
    out_genes: jax.Array  # (N, D) float32
    out_history: jax.Array  # (N, G + 1) float32
    out_rounds: jax.Array  # (N,) int32: generations run (queries = rounds * P)
    model_calls: jax.Array  # () int32: model calls made (each on call_slots * P candidates)


# Candidates per model call that run fastest per image on a CPU (benchmarks/RESULTS.md,
# "call size"), and the input values per model call aimed at on accelerators.
CPU_CALL_SIZE = 512
ACCELERATOR_CALL_VALUES = 2**26


def plan_slots(cfg: AttackConfig, num_images: int, image_shape: tuple) -> tuple[int, int]:
    """``(slots, call_slots)``: images evolved side by side, and slots per model call.

    On a CPU the default is one model call of about :data:`CPU_CALL_SIZE` candidates per
    generation (bigger calls are no faster per image there); on an accelerator, as many
    slots as about :data:`ACCELERATOR_CALL_VALUES` input values allow, in calls of a quarter
    of them. ``slots`` is a multiple of ``call_slots``; slots beyond the number of images
    stay idle.
    """
    p = cfg.popsize
    cpu = jax.default_backend() == "cpu"
    per_slot = p * int(np.prod(image_shape))
    if cfg.call_size is not None:
        call_slots = max(1, cfg.call_size // p)
    elif cpu:
        call_slots = max(1, CPU_CALL_SIZE // p)
    else:
        call_slots = max(1, ACCELERATOR_CALL_VALUES // (4 * per_slot))
    if cfg.batch_size is not None:
        slots = cfg.batch_size
    elif cpu:
        slots = call_slots
    else:
        slots = max(call_slots, ACCELERATOR_CALL_VALUES // per_slot)
    slots = max(1, min(slots, num_images))
    call_slots = min(call_slots, slots)
    slots = -(-slots // call_slots) * call_slots
    return slots, call_slots


def probs_from_logits(logits_fn: PredictFn) -> PredictFn:
    """Wrap a logits function into the ``predict_fn`` the attack expects (softmax)."""

    def predict_fn(batch: jax.Array) -> jax.Array:
        return jax.nn.softmax(logits_fn(batch), axis=-1)

    return predict_fn


def attack(
    key: jax.Array,
    predict_fn: PredictFn | Target,
    images: Any,
    labels: Any,
    cfg: AttackConfig | None = None,
    targets: Any = None,
    *,
    progress: bool | Callable[[dict], None] = True,
    mesh: Any = None,
) -> AttackResult:
    """Few-pixel black-box attack on a batch of images.

    Args:
      key: a JAX PRNG key (``jax.random.key(seed)`` or ``jax.random.PRNGKey(seed)``).
      predict_fn: JAX-traceable map from a float32 batch ``(B, H, W, C)`` (or ``(B, H, W)``
        when ``images`` are greyscale without a channel axis) in pixel space [0, 255] to class
        probabilities ``(B, K)``; or a :class:`~onepixel_jax.types.Target`. It is a static
        argument of the compiled loop: pass the same object again to reuse the compilation.
      images: ``(N, H, W, C)`` or ``(N, H, W)``, uint8 or float in [0, 255].
      labels: ``(N,)`` integer true classes.
      cfg: :class:`AttackConfig` (default: the paper's DE, untargeted).
      targets: ``(N,)`` integer target classes, required iff ``cfg.targeted``.
      progress: ``True`` prints images done, evaluations/s and ETA on stderr, updated per
        generation from inside the compiled loop (once the attack has run for a second);
        ``False`` is silent; a callable receives the same figures as a dict per generation.
      mesh: the devices that share the images: ``None`` (all devices, ``jax.devices()``;
        under ``jax.distributed`` those of every process), a sequence of devices or a
        ``jax.sharding.Mesh`` (all its axes together). Each device attacks its own queue of
        images; results equal those on one device, bit for bit. One device runs the loop
        as is. See :mod:`onepixel_jax.distributed` and ``docs/scaling.md``.

    Returns:
      :class:`AttackResult`.
    """
    cfg = AttackConfig() if cfg is None else cfg
    return _run_attack(key, predict_fn, images, labels, cfg, targets, progress, mesh=mesh)


def random_search(
    key: jax.Array,
    predict_fn: PredictFn | Target,
    images: Any,
    labels: Any,
    cfg: AttackConfig | None = None,
    targets: Any = None,
    *,
    progress: bool | Callable[[dict], None] = True,
    mesh: Any = None,
) -> AttackResult:
    """The paper's random baseline with the same budget: :func:`attack` with
    ``strategy="random"`` (every generation draws ``popsize`` fresh candidates from the
    initial distribution; the best candidate seen is returned)."""
    cfg = AttackConfig() if cfg is None else cfg
    if not isinstance(cfg, AttackConfig):
        raise TypeError(f"cfg must be an AttackConfig, got {type(cfg).__name__}")
    cfg = dataclasses.replace(cfg, strategy="random")
    return _run_attack(key, predict_fn, images, labels, cfg, targets, progress, mesh=mesh)


# --------------------------------------------------------------------------------------
# Input checking


def _check_int(name: str, value: Any, minimum: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}{' ' + why if why else ''}, got {value}")


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


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


# --------------------------------------------------------------------------------------
# Driver


@jax.jit
def _decode_all(images: jax.Array, genes: jax.Array) -> jax.Array:
    h, w, c = images.shape[1:]
    return jax.vmap(lambda g: decode_candidate(g, h, w, c))(genes)


@jax.jit
def _apply_all(images: jax.Array, pixels: jax.Array) -> jax.Array:
    return jax.vmap(apply_pixels)(images, pixels)


def _noop_pixels(x: jax.Array, pixels: int) -> jax.Array:
    """``(N, pixels, 2 + C)`` tuples that rewrite pixel (0, 0) with its own value."""
    n, _, _, c = x.shape
    corner = jnp.round(x[:, 0, 0, :]).astype(jnp.int32)
    t = jnp.concatenate([jnp.zeros((n, 2), jnp.int32), corner], axis=1)
    return jnp.broadcast_to(t[:, None, :], (n, pixels, 2 + c))


def _target_probs(target: Target, x: jax.Array, pixels: jax.Array, chunk: int) -> np.ndarray:
    """Probabilities of ``pixels`` (N, d, 2 + C) applied to ``x`` through a Target."""

    @jax.jit
    def run(xs, ps):
        return target.evaluate(target.prepare(xs), xs, ps[:, None])[:, 0]

    out = [
        np.asarray(run(x[i : i + chunk], pixels[i : i + chunk])) for i in range(0, len(x), chunk)
    ]
    return np.concatenate(out, axis=0)


def _warn_if_mostly_misclassified(images: np.ndarray, labels: np.ndarray, probs: np.ndarray):
    """Warn when most images are already misclassified: often images in the wrong pixel scale
    (for instance [0, 1]) or labels that do not belong to the model."""
    n = len(labels)
    wrong = float(np.mean(probs.argmax(axis=1) != labels))
    if n < 4 or wrong <= 0.5:
        return
    hint = "check the labels and the pixel scale (the models expect [0, 255])"
    if np.issubdtype(images.dtype, np.floating) and float(images.max()) <= 1.0:
        hint = "the images' values are all in [0, 1], but the models expect pixel space [0, 255]"
    warnings.warn(
        f"{wrong:.0%} of the {n} images are already misclassified by the model before the attack; "
        f"{hint}",
        UserWarning,
        stacklevel=4,
    )


def _run_attack(key, model, images, labels, cfg, targets, progress, *, mesh=None) -> AttackResult:
    if not isinstance(cfg, AttackConfig):
        raise TypeError(f"cfg must be an AttackConfig, got {type(cfg).__name__}")
    if not callable(model) and not isinstance(model, Target):
        raise TypeError(f"predict_fn must be callable or a Target, got {type(model).__name__}")
    key = _check_key(key)
    from .distributed import resolve_mesh  # noqa: PLC0415 (distributed imports this module)

    mesh = resolve_mesh(mesh)  # None: one device, the loop runs as is
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
    h, w, _ = x.shape[1:]
    if cfg.pixels > h * w:
        raise ValueError(f"pixels must be <= the {h}x{w} = {h * w} image pixels, got {cfg.pixels}")
    slots, call_slots = plan_slots(cfg, n, x.shape[1:])
    chunk = max(call_slots * cfg.popsize // 4, 1)  # clean and final predictions

    if isinstance(model, Target):
        target = model
        original_probs = _target_probs(target, x, _noop_pixels(x, cfg.pixels), chunk)
        check_probs(original_probs, n)
    else:
        target = patched_forward(model, has_channel)
        # Zoo networks: exact incremental evaluation where it pays (cfg.incremental).
        target = incremental.select(model, cfg.pixels, cfg.incremental) or target
        view = (lambda b: b) if has_channel else (lambda b: b[..., 0])
        check_traceable(model, view(x[:2]))  # a NumPy model: one line naming the adapters
        # The clean images' predictions also validate predict_fn before the loop is compiled.
        original_probs = predict_in_batches(model, view(x), chunk, check=True)
    k = original_probs.shape[1]
    for name, cls in (("labels", labels), ("targets", targets)):
        if cls is not None and cls.max() >= k:
            raise ValueError(f"{name} must be < K = {k} (the number of classes), got {cls.max()}")
    _warn_if_mostly_misclassified(arr, labels, original_probs)

    spec = search_lib.get(cfg.strategy)
    static = _Static(
        pixels=cfg.pixels,
        popsize=cfg.popsize,
        max_iters=cfg.max_iters,
        targeted=bool(cfg.targeted),
        strategy=spec.name,
        strategy_options=tuple(sorted(spec.static_options(cfg).items())),
        sampler=cfg.sampler,
        objective=cfg.objective,
        early_stop=cfg.early_stop,
        stall=int(cfg.stall),
        stall_eps=float(cfg.stall_eps),
        slots=slots,
        call_slots=call_slots,
        compact=bool(cfg.compact),
        progress=progress is not False and progress is not None,
    )
    params = jax.tree_util.tree_map(jnp.float32, spec.params(cfg))
    tgt = jnp.asarray(targets if targets is not None else labels)
    problem = _Problem(
        key=key,
        images=x,
        labels=jnp.asarray(labels),
        targets=tgt,
        params=params,
        threshold=jnp.float32(cfg.stop_threshold),
    )
    reporter = None
    if progress is True:
        reporter = ProgressReporter(n, cfg.budget)
    elif callable(progress):
        reporter = ProgressReporter(n, cfg.budget, sink=progress)
    if mesh is None:
        evolve = _evolve
    else:
        from .distributed import evolve_sharded  # noqa: PLC0415

        evolve = functools.partial(evolve_sharded, mesh=mesh)
    genes, history, rounds, evaluations = evolve(
        problem, target=target, static=static, reporter=reporter
    )
    pix = _decode_all(x, genes)
    adv = _apply_all(x, pix)
    if isinstance(model, Target):
        probs = _target_probs(target, x, pix, chunk)
    else:
        probs = predict_in_batches(model, view(adv), chunk)
    check_probs(probs, n)
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
        model_evaluations=int(evaluations),
    )


def _where_slots(mask: jax.Array, a: Any, b: Any) -> Any:
    """Per-slot select between two pytrees whose leaves have a leading slot axis."""

    def pick(x, y):
        return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y)

    return jax.tree_util.tree_map(pick, a, b)


class _Problem(NamedTuple):
    """What one compiled loop call needs besides its carry (all traced)."""

    key: jax.Array  # the call's PRNG key
    images: jax.Array  # (N, H, W, C) float32
    labels: jax.Array  # (N,) int32
    targets: jax.Array  # (N,) int32 (labels again when untargeted)
    params: Any  # the strategy's traced hyperparameters
    threshold: jax.Array  # () float32, the "threshold" stop rule's value
    share: _Share | None = None  # set when the images are one device's share of a call


class _Share(NamedTuple):
    """One device's share of a sharded call (:mod:`onepixel_jax.distributed`)."""

    index: jax.Array  # (N,) int32: the call-wide index of each image (its fold_in)
    count: jax.Array  # () int32: the first `count` images are attacked; the rest are padding
    device: jax.Array  # () int32: the share's position, which tags its progress reports


def _setup(problem: _Problem, static: _Static):
    n, h, w, c = problem.images.shape
    space = SearchSpace(static.pixels, h, w, c, static.popsize, static.sampler)
    strategy = search_lib.get(static.strategy).build(space, **dict(static.strategy_options))
    return space, strategy


def _image_hooks(strategy):
    """``initial(key, params, image)`` and ``init(key, genes, fitness, params, image)`` for
    every strategy: the image reaches only those that declare ``image_aware``."""
    if strategy.image_aware:
        return strategy.initial, strategy.init
    return (
        lambda key, params, image: strategy.initial(key, params),
        lambda key, genes, fitness, params, image: strategy.init(key, genes, fitness, params),
    )


def _queue_length(problem: _Problem) -> jax.Array | int:
    """Images to attack: all of them, or the first ``share.count`` (the rest is padding)."""
    return problem.images.shape[0] if problem.share is None else problem.share.count


def _initial_state_impl(problem: _Problem, *, target, static) -> LoopState:
    """The carry before the first generation: slots hold images ``0 .. S-1``."""
    n = problem.images.shape[0]
    count = _queue_length(problem)
    s, p, g = static.slots, static.popsize, static.max_iters
    space, strategy = _setup(problem, static)
    keys = jax.vmap(lambda i: jax.random.fold_in(problem.key, i))(jnp.arange(s))

    initial, init = _image_hooks(strategy)

    def first_state(k):
        image = jnp.zeros(problem.images.shape[1:], jnp.float32)
        genes = initial(k, problem.params, image)
        return init(k, genes, jnp.zeros((p,), jnp.float32), problem.params, image)

    zeros = lambda tree: jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), tree)  # noqa: E731
    d = space.num_genes
    return LoopState(
        slot_image=jnp.where(jnp.arange(s) < count, jnp.arange(s, dtype=jnp.int32), n),
        generation=jnp.zeros((s,), jnp.int32),
        next_image=jnp.minimum(s, count).astype(jnp.int32),
        search=zeros(jax.eval_shape(jax.vmap(first_state), keys)),
        cache=zeros(
            jax.eval_shape(
                target.prepare,
                jax.ShapeDtypeStruct((s,) + problem.images.shape[1:], problem.images.dtype),
            )
        ),
        best_fitness=jnp.full((s,), jnp.inf, jnp.float32),
        champion=jnp.zeros((s, d), jnp.float32),
        champion_score=jnp.full((s,), jnp.inf, jnp.float32),
        history=jnp.zeros((s, g + 1), jnp.float32),
        out_genes=jnp.zeros((n, d), jnp.float32),
        out_history=jnp.zeros((n, g + 1), jnp.float32),
        out_rounds=jnp.zeros((n,), jnp.int32),
        model_calls=jnp.int32(0),
    )


def _run_loop_impl(st: LoopState, problem: _Problem, *, target, static) -> LoopState:
    """Run generations until every image is done or, with ``static.compact``, until the
    queue is empty and at most half of the slots are busy (the caller then re-enters with
    fewer slots)."""
    images, labels, targets, params = (
        problem.images,
        problem.labels,
        problem.targets,
        problem.params,
    )
    n, h, w, c = images.shape
    s, p, g = static.slots, static.popsize, static.max_iters
    space, strategy = _setup(problem, static)
    first_genes, first_state = _image_hooks(strategy)
    objective = make_objective(
        static.targeted, static.objective, static.early_stop, problem.threshold
    )
    decode = jax.vmap(jax.vmap(lambda genes: decode_candidate(genes, h, w, c)))

    count = _queue_length(problem)

    def image_key(i):
        if problem.share is not None:
            i = problem.share.index[jnp.minimum(i, n - 1)]
        return jax.random.fold_in(problem.key, i)

    def cond(st: LoopState):
        return jnp.any(st.slot_image < n)

    cs = static.call_slots
    groups = s // cs

    def evaluate(cache, slot_images, pixels, valid):
        """Probabilities (S, P, K): one model call per group of ``call_slots`` slots; with
        ``compact``, a group whose slots are all idle makes no call."""
        if groups == 1 and not static.compact:
            return target.evaluate(cache, slot_images, pixels), jnp.int32(1)
        split = lambda a: a.reshape((groups, cs) + a.shape[1:])  # noqa: E731
        args = jax.tree_util.tree_map(split, (cache, slot_images, pixels))
        out = jax.eval_shape(
            lambda a: target.evaluate(*a), jax.tree_util.tree_map(lambda a: a[0], args)
        )

        def one(group):
            arg, busy = group
            if not static.compact:
                return target.evaluate(*arg)
            return jax.lax.cond(
                jnp.any(busy),
                lambda: target.evaluate(*arg),
                lambda: jnp.zeros(out.shape, out.dtype),
            )

        probs = jax.lax.map(one, (args, split(valid)))
        calls = jnp.sum(jnp.any(split(valid), axis=1)) if static.compact else jnp.int32(groups)
        return probs.reshape((s,) + probs.shape[2:]), calls.astype(jnp.int32)

    def body(st: LoopState) -> LoopState:
        valid = st.slot_image < n
        fresh = st.generation == 0
        idx = jnp.minimum(st.slot_image, n - 1)
        slot_images = images[idx]
        keys = jax.vmap(jax.random.fold_in)(jax.vmap(image_key)(st.slot_image), st.generation)
        cache = jax.lax.cond(
            jnp.any(fresh),
            lambda: _where_slots(fresh, target.prepare(slot_images), st.cache),
            lambda: st.cache,
        )

        # 1. ask (initial populations only in the steps where some slot starts an image)
        asked, asked_state = jax.vmap(strategy.ask, in_axes=(0, 0, None))(keys, st.search, params)
        clean = slot_images.astype(jnp.float32)
        initial = jax.lax.cond(
            jnp.any(fresh),
            lambda: jax.vmap(first_genes, in_axes=(0, None, 0))(keys, params, clean),
            lambda: jnp.zeros_like(asked),
        )
        cand = jnp.where(fresh[:, None, None], initial, asked)
        # 2. evaluate
        probs, calls = evaluate(cache, slot_images, decode(cand), valid)
        # 3. score
        fit, succ, stop = objective.score(probs, labels[idx][:, None], targets[idx][:, None])
        # 4. tell (a fresh slot starts its strategy state from the evaluated population)
        told = jax.vmap(strategy.tell, in_axes=(0, 0, 0, 0, None))(
            keys, cand, fit, asked_state, params
        )
        # init only in the steps where some slot starts an image (CMA-ES / JADE init is not free)
        started = jax.lax.cond(
            jnp.any(fresh),
            lambda: jax.vmap(first_state, in_axes=(0, 0, 0, None, 0))(
                keys, cand, fit, params, clean
            ),
            lambda: told,
        )
        search_state = _where_slots(fresh, started, told)

        # Bookkeeping: best fitness, the returned candidate (successful ones first), history.
        gen_best = jnp.min(fit, axis=1)
        best_fitness = jnp.where(fresh, gen_best, jnp.minimum(st.best_fitness, gen_best))
        score = jnp.where(succ, fit - 2.0, fit)
        best = jnp.argmin(score, axis=1)
        best_score = jnp.take_along_axis(score, best[:, None], axis=1)[:, 0]
        better = fresh | (best_score < st.champion_score)
        champion = jnp.where(
            better[:, None], jnp.take_along_axis(cand, best[:, None, None], 1)[:, 0], st.champion
        )
        champion_score = jnp.where(better, best_score, st.champion_score)
        rnd = st.generation
        history = st.history.at[jnp.arange(s), rnd].set(best_fitness)
        finished = valid & (jnp.any(stop, axis=1) | (rnd == g))
        if static.stall > 0:  # no gain over the last `stall` generations: give up the image
            k = static.stall
            before = jnp.take_along_axis(history, jnp.maximum(rnd - k, 0)[:, None], axis=1)[:, 0]
            finished = finished | (valid & (rnd >= k) & (before - best_fitness <= static.stall_eps))

        # Write finished images out; rows of unfinished slots go out of bounds and are dropped.
        out_idx = jnp.where(finished, st.slot_image, n)
        steps = jnp.arange(g + 1)[None, :]
        last = jnp.take_along_axis(history, rnd[:, None], axis=1)
        filled = jnp.where(steps > rnd[:, None], last, history)
        out_genes = st.out_genes.at[out_idx].set(champion, mode="drop")
        out_history = st.out_history.at[out_idx].set(filled, mode="drop")
        out_rounds = st.out_rounds.at[out_idx].set(rnd + 1, mode="drop")

        # Refill finished slots with the next waiting images, in slot order.
        order = jnp.cumsum(finished) - 1
        refill = jnp.where(st.next_image + order < count, st.next_image + order, n)
        slot_image = jnp.where(finished, refill, st.slot_image)
        next_image = jnp.minimum(st.next_image + jnp.sum(finished), count)
        generation = jnp.where(finished | ~valid, 0, rnd + 1)
        if static.progress:
            busy = slot_image < n
            done = next_image - jnp.sum(busy)
            useful = jnp.sum(out_rounds) + jnp.sum(jnp.where(busy, generation, 0))
            tag = () if problem.share is None else (problem.share.device,)
            jax.debug.callback(_progress_hook, done, useful * p, s * p, *tag)
        new = LoopState(
            slot_image=slot_image,
            generation=generation,
            next_image=next_image,
            search=search_state,
            cache=cache,
            best_fitness=best_fitness,
            champion=champion,
            champion_score=champion_score,
            history=history,
            out_genes=out_genes,
            out_history=out_history,
            out_rounds=out_rounds,
            model_calls=st.model_calls + calls,
        )
        if static.compact and groups > 1:
            new = _pack_busy_first(new, n)
        return new

    return jax.lax.while_loop(cond, body, st)


_PER_SLOT = (
    "slot_image",
    "generation",
    "search",
    "cache",
    "best_fitness",
    "champion",
    "champion_score",
    "history",
)


def _pack_busy_first(st: LoopState, num_images: int) -> LoopState:
    """Move busy slots before idle ones (stable). While images wait, every slot is busy and
    this is the identity; once the queue is empty, finished slots gather at the end, so
    whole call groups go idle and their model calls are skipped."""
    order = jnp.argsort(st.slot_image >= num_images, stable=True)
    take = lambda tree: jax.tree_util.tree_map(lambda a: a[order], tree)  # noqa: E731
    return st._replace(**{name: take(getattr(st, name)) for name in _PER_SLOT})


def _evolve_impl(problem: _Problem, *, target, static) -> LoopState:
    st = _initial_state_impl(problem, target=target, static=static)
    return _run_loop_impl(st, problem, target=target, static=static)


_evolve_jit = jax.jit(_evolve_impl, static_argnames=("target", "static"))


def _evolve(problem: _Problem, *, target: Target, static: _Static, reporter=None):
    """Run every image to completion; returns genes (N, D), history (N, G+1), rounds (N,)
    and the number of candidate evaluations the model calls carried (busy slots or not)."""
    with _progress_session(reporter):
        st = _evolve_jit(problem, target=target, static=static)
        calls = int(st.model_calls)
    evaluations = calls * static.call_slots * static.popsize
    return st.out_genes, st.out_history, st.out_rounds, evaluations


# --------------------------------------------------------------------------------------
# Progress: the compiled loop calls _progress_hook once per generation (jax.debug.callback);
# the hook forwards to the reporter of the attack in progress.

_ACTIVE_REPORTERS: list = []


def _progress_hook(done, useful, per_step, *device) -> None:
    if _ACTIVE_REPORTERS:  # a sharded call's reporter also receives the device's position
        _ACTIVE_REPORTERS[-1].update(int(done), int(useful), int(per_step), *map(int, device))


@contextlib.contextmanager
def _progress_session(reporter):
    if reporter is None:
        yield
        return
    _ACTIVE_REPORTERS.append(reporter)
    try:
        yield
    finally:
        _ACTIVE_REPORTERS.remove(reporter)
        reporter.close()


class ProgressReporter:
    """Per-generation progress of one attack: images done, evaluations/s and ETA.

    ``sink`` is called with a dict (``images_done``, ``images``, ``evaluations``,
    ``evaluations_per_s``, ``eta_s``, ``call_size``, ``elapsed_s``); the default prints one
    updating line on stderr, at most every ``interval`` seconds, once the attack has run
    for ``interval`` seconds.
    """

    def __init__(self, num_images: int, budget: int, sink=None, interval: float = 1.0):
        self.num_images, self.budget, self.sink, self.interval = num_images, budget, sink, interval
        self.start = time.perf_counter()
        self.last = self.start
        self.printed = False
        self.first: tuple[float, int] | None = None
        self.stats: dict = {}

    def update(self, done: int, useful: int, per_step: int) -> None:
        now = time.perf_counter()
        if self.first is None:  # the first generation: compilation has just finished
            self.first = (now, useful)
        t0, u0 = self.first
        elapsed = now - self.start
        rate = (useful - u0) / (now - t0) if now > t0 and useful > u0 else 0.0
        if done > 0 and now > t0:
            eta = (now - t0) * (self.num_images - done) / done
        else:
            eta = max(self.num_images * self.budget - useful, 0) / max(rate, 1e-9)
        self.stats = {
            "images_done": done,
            "images": self.num_images,
            "evaluations": useful,
            "evaluations_per_s": rate,
            "eta_s": eta,
            "call_size": per_step,
            "elapsed_s": elapsed,
        }
        if self.sink is not None:
            self.sink(dict(self.stats))
        elif now - self.last >= self.interval:
            self.last = now
            self.printed = True
            print(
                f"\r[attack] {done}/{self.num_images} images  {useful:,} evaluations  "
                f"{rate:,.0f}/s  ETA {_duration(eta) if rate > 0 or done > 0 else '?'}   ",
                end="",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.printed and self.sink is None:
            print(file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
