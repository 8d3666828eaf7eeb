"""The attack API: :func:`attack` (by names, :class:`~onepixel_jax.config.AttackConfig`) and
:func:`run` (by built objects), checking inputs, driving the compiled loop of
:mod:`onepixel_jax.engine` on one device or through :mod:`onepixel_jax.distributed` on several,
and returning an :class:`AttackResult`.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import compile_cache, distributed, engine, planner
from . import progress as progress_lib
from .config import AttackConfig
from .objective import Objective
from .perturb import apply_pixels, decode_candidate
from .planner import Schedule, plan_slots
from .search import SearchMethod
from .targets import check_probs, predict_in_batches
from .targets.host import check_traceable, surface_host_errors
from .targets.resolver import resolve
from .types import PredictFn, Target


@dataclasses.dataclass(frozen=True)
class AttackResult:
    """Per-image outcome of :func:`attack` (NumPy arrays).

    Attributes:
      adversarial: ``(N, H, W[, C])`` the best candidate applied, same shape/dtype as images.
      pixels: ``(N, d, 2 + C)`` int32 rows ``(row, col, v_0, ..)`` of the applied perturbation.
      success: ``(N,)`` bool: the objective's verdict on ``adversarial`` (by default the argmax
        rule: untargeted argmax != label, targeted argmax == target).
      queries: ``(N,)`` int64 model evaluations consumed (initial population included).
      probs: ``(N, K)`` float32 model output on ``adversarial``.
      original_probs: ``(N, K)`` float32 model output on the clean images.
      fitness_history: ``(N, max_iters + 1)`` float32 best fitness after each generation
        (index 0 = initial population; lower is better; held constant after an early stop).
      labels: ``(N,)`` int32 true classes. targets: ``(N,)`` int32 or ``None``.
      model_evaluations: candidate evaluations carried by the model calls of the loop, busy
        slots or not (``queries.sum()`` of them were useful).
      compile_seconds: seconds from the start of the loop call to its first generation
        (compilation included; ``None`` when progress was off).
      seconds: wall-clock seconds of the whole call.
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
    compile_seconds: float | None = None
    seconds: float = 0.0

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.success)) if self.success.size else float("nan")


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
    image_keys: Any = None,
    count: int | None = None,
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
      progress: ``True`` prints images done, evaluations/s and ETA on stderr per generation
        (plain lines when stderr is not a terminal); ``False`` is silent; a callable receives
        the same figures as a dict per generation.
      mesh: the devices that share the images: ``None`` (all devices), a sequence of devices
        or a ``jax.sharding.Mesh``. Results equal those on one device, bit for bit
        (``docs/scaling.md``).
      image_keys: ``(N,)`` keys, one per image, instead of ``fold_in(key, i)`` (see
        :func:`run`): an image's result then does not depend on which images share the call.
      count: attack only the first ``count`` images (``None``: all ``N``); see :func:`run`.
    """
    cfg = AttackConfig() if cfg is None else cfg
    if not isinstance(cfg, AttackConfig):
        raise TypeError(f"cfg must be an AttackConfig, got {type(cfg).__name__}")
    arr, channel = _check_model_and_images(predict_fn, images)
    shape = arr.shape[1:] if channel else (*arr.shape[1:], 1)
    if not isinstance(predict_fn, Target):  # before the incremental choice traces it
        check_traceable(predict_fn, jax.ShapeDtypeStruct((1, *arr.shape[1:]), jnp.float32))
    target = resolve(predict_fn, channel, cfg.pixels, cfg.incremental, shape)
    return run(
        key,
        target,
        images,
        labels,
        method=cfg.method(),
        objective=cfg.objective_for(),
        targets=targets,
        schedule=cfg.schedule(),
        progress=progress,
        mesh=mesh,
        predict_fn=None if isinstance(predict_fn, Target) else predict_fn,
        image_keys=image_keys,
        count=count,
    )


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
    return attack(key, predict_fn, images, labels, cfg, targets, progress=progress, mesh=mesh)


def run(
    key: jax.Array,
    target: Target,
    images: Any,
    labels: Any,
    *,
    method: SearchMethod,
    objective: Objective,
    targets: Any = None,
    schedule: Schedule = Schedule(),
    progress: bool | Callable[[dict], None] = True,
    mesh: Any = None,
    predict_fn: PredictFn | None = None,
    image_keys: Any = None,
    count: int | None = None,
) -> AttackResult:
    """The attack from built objects: a search ``method`` (:func:`onepixel_jax.search.make`),
    a ``target`` (:func:`onepixel_jax.targets.resolver.resolve`, or your own
    :class:`~onepixel_jax.types.Target`) and an ``objective``
    (:func:`onepixel_jax.objective.make`, or criteria of your own).

    ``predict_fn``, when given, computes the clean and final probabilities in batches (and is
    checked up front); otherwise the target does. ``image_keys`` ``(N,)`` (key data or typed
    keys) gives each image its own key instead of ``fold_in(key, i)``: the sweep uses it to
    hand the engine several chunks at once with the keys each chunk would have had.

    ``count`` (``None``: all ``N``) attacks only the first ``count`` images; the others are
    padding that keeps the compiled shape of a larger call (the sweep's last chunk): no model
    call is spent on them, and their rows of the result are the clean image, pixels ``-1``,
    the clean probabilities, zero queries and ``success`` False.
    """
    with surface_host_errors():  # a host model that raises: one line naming it
        return _run(
            key, target, images, labels, method, objective, targets, schedule, progress, mesh,
            predict_fn, image_keys, count,
        )  # fmt: skip


def _run(
    key, target, images, labels, method, objective, targets, schedule, progress, mesh,
    predict_fn, image_keys, count,
) -> AttackResult:  # fmt: skip
    started = time.perf_counter()
    compile_cache.enable()
    if not isinstance(method, SearchMethod):
        raise TypeError(f"method must be a SearchMethod (search.make), got {type(method).__name__}")
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be an Objective, got {type(objective).__name__}")
    if not isinstance(target, Target):
        raise TypeError(f"target must be a Target, got {type(target).__name__}")
    key = _check_key(key)
    mesh = distributed.resolve_mesh(mesh)  # None: one device, the loop runs as is
    arr, has_channel = _check_images(images)
    n = arr.shape[0]
    count = _check_count(count, n)
    labels = _check_classes("labels", labels, n)
    if objective.targeted:
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
    h, w = x.shape[1:3]
    if method.pixels > h * w:
        raise ValueError(
            f"pixels must be <= the {h}x{w} = {h * w} image pixels, got {method.pixels}"
        )
    if schedule.call_size == planner.CALIBRATE:  # measured on this device, once per process
        calibration = planner.calibrate(target, x.shape[1:], method.popsize, method.pixels)
        schedule = schedule._replace(call_size=calibration.call_size)
    elif isinstance(schedule.call_size, str):
        raise ValueError(
            f"call_size must be an int, None or {planner.CALIBRATE!r}, got {schedule.call_size!r}"
        )
    slots, call_slots = plan_slots(method.popsize, n, x.shape[1:], schedule)
    memory = planner.device_memory()
    if memory is not None:  # an accelerator: the plan, caches included, must fit
        per_slot, per_candidate = _plan_bytes(target, predict_fn, x.shape[1:], method)
        slots, call_slots = planner.fit_to_memory(
            slots, call_slots, method.popsize, per_slot, per_candidate, memory
        )
    chunk = max(call_slots * method.popsize // 4, 1)  # clean and final predictions
    view = (lambda b: b) if has_channel else (lambda b: b[..., 0])
    if predict_fn is None:
        original = _target_outputs(target, x, _noop_pixels(x, method.pixels), chunk)
        check_probs(original["probs"], n)
    else:
        check_traceable(predict_fn, view(x[:2]))
        # The clean images' predictions also validate predict_fn before the loop is compiled.
        original = {"probs": predict_in_batches(predict_fn, view(x), chunk, check=True)}
    k = original["probs"].shape[1]
    for name, cls in (("labels", labels), ("targets", targets)):
        if cls is not None and cls.max() >= k:
            raise ValueError(f"{name} must be < K = {k} (the number of classes), got {cls.max()}")
    _warn_if_mostly_misclassified(arr, labels, original["probs"])

    if image_keys is None:
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
    else:
        keys = _check_image_keys(image_keys, n)
    reporter = None
    if progress is True:
        reporter = progress_lib.ProgressReporter(count, method.budget)
    elif callable(progress):
        reporter = progress_lib.ProgressReporter(count, method.budget, sink=progress)
    problem = engine.Problem(
        keys=jax.random.key_data(keys),
        images=x,
        labels=jnp.asarray(labels),
        targets=jnp.asarray(targets if targets is not None else labels),
        count=jnp.int32(count),
        method=method,
        objective=objective,
        channel=jnp.int32(0),
        device=jnp.int32(0),
    )
    plan = engine.Plan(
        slots=slots,
        call_slots=call_slots,
        compact=bool(schedule.compact),
        tail_slots=engine.tail_slots(call_slots) if schedule.compact else 0,
        key_impl=jax.random.key_impl(keys),
    )
    genes, history, rounds, evaluations = _evolve(
        problem, target, plan, reporter, mesh, method.popsize
    )
    jax.block_until_ready((genes, history, rounds))
    pix = _decode_all(x, genes)
    adv = _apply_all(x, pix)
    if predict_fn is None:
        final = _target_outputs(target, x, pix, chunk)
    else:
        final = {"probs": predict_in_batches(predict_fn, view(adv), chunk)}
    check_probs(final["probs"], n)
    tgt = targets if targets is not None else labels
    success = np.array(objective.verdict(final, jnp.asarray(labels), jnp.asarray(tgt)), bool)
    adv_np = np.array(adv)
    pix_np = np.array(pix, np.int32)
    probs = np.array(final["probs"], np.float32)
    if count < n:  # padding rows: never attacked
        adv_np[count:] = np.asarray(x[count:])
        pix_np[count:] = -1
        probs[count:] = np.asarray(original["probs"][count:], np.float32)
        success[count:] = False
    if not has_channel:
        adv_np = adv_np[..., 0]
    return AttackResult(
        adversarial=adv_np.astype(arr.dtype),
        pixels=pix_np,
        success=success,
        queries=np.asarray(rounds, np.int64) * method.popsize,
        probs=probs,
        original_probs=np.asarray(original["probs"], np.float32),
        fitness_history=np.asarray(history, np.float32),
        labels=labels,
        targets=targets,
        model_evaluations=int(evaluations),
        compile_seconds=None if reporter is None else reporter.compile_seconds,
        seconds=time.perf_counter() - started,
    )


def _plan_bytes(target, predict_fn, image_shape, method) -> tuple[int, int]:
    """Bytes per slot (the target's cache for one image and the strategy's genes) and per
    candidate (the patched image and, for a JAX model, the temporaries of its forward pass
    per image, from XLA's memory analysis of a small call)."""
    one = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    cache = jax.eval_shape(target.prepare, one)
    per_slot = sum(
        int(np.prod(a.shape)) * a.dtype.itemsize for a in jax.tree_util.tree_leaves(cache)
    )
    per_slot += 4 * method.popsize * method.pixels * (2 + image_shape[-1]) * 4
    per_candidate = 4 * int(np.prod(image_shape)) * 2
    if predict_fn is not None:
        try:
            batch = jax.ShapeDtypeStruct((8, *image_shape), jnp.float32)
            stats = jax.jit(predict_fn).lower(batch).compile().memory_analysis()
            per_candidate += int(getattr(stats, "temp_size_in_bytes", 0)) // 8
        except Exception:  # no analysis on this backend: the inputs alone
            pass
    return per_slot, per_candidate


def _evolve(problem, target, plan, reporter, mesh, popsize):
    """The loop on one device (in segments when progress is reported) or sharded."""
    if mesh is not None:
        plan = plan._replace(progress=reporter is not None)
        return distributed.evolve_sharded(
            problem, target=target, plan=plan, reporter=reporter, mesh=mesh
        )
    if reporter is None:
        out = engine.evolve(problem, target=target, plan=plan)
    else:
        try:
            out = engine.evolve_in_segments(
                problem, target=target, plan=plan, report=reporter.update
            )
        finally:
            reporter.close()
    return out.genes, out.history, out.rounds, int(out.slots_evaluated) * popsize


# --------------------------------------------------------------------------------------
# Input checking


def _check_model_and_images(model: Any, images: Any) -> tuple[np.ndarray, bool]:
    if not callable(model) and not isinstance(model, Target):
        raise TypeError(f"predict_fn must be callable or a Target, got {type(model).__name__}")
    return _check_images(images)


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


def _check_count(count: Any, n: int) -> int:
    if count is None:
        return n
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= n:
        raise ValueError(f"count must be an int in [0, N = {n}] (images attacked), got {count!r}")
    return int(count)


def _check_image_keys(keys: Any, n: int) -> jax.Array:
    if isinstance(keys, jax.Array) and jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
        if keys.shape != (n,):
            raise ValueError(f"image_keys must have shape ({n},), got {keys.shape}")
        return keys
    arr = jnp.asarray(keys)
    if arr.shape != (n, 2) or arr.dtype != jnp.uint32:
        raise ValueError(f"image_keys must be {n} typed keys or ({n}, 2) uint32 key data")
    return jax.random.wrap_key_data(arr)


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
    if arr.size and int(arr.max()) > np.iinfo(np.int32).max:
        raise ValueError(f"{name} must be class indices below 2**31, got {int(arr.max())}")
    return arr.astype(np.int32)


def _warn_if_mostly_misclassified(images: np.ndarray, labels: np.ndarray, probs: np.ndarray):
    """Warn when most images are already misclassified: often images in the wrong pixel scale
    (for instance [0, 1]) or labels that do not belong to the model."""
    n = len(labels)
    wrong = float(np.mean(np.asarray(probs).argmax(axis=1) != labels))
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


# --------------------------------------------------------------------------------------
# Decoding and the target's outputs outside the loop


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


def _target_outputs(target: Target, x: jax.Array, pixels: jax.Array, chunk: int) -> dict:
    """The target's outputs for ``pixels`` ``(N, d, 2 + C)`` applied to ``x``, as NumPy."""

    @jax.jit
    def one(xs, ps):
        out = target.evaluate(target.prepare(xs), xs, ps[:, None])
        out = out if isinstance(out, dict) else {"probs": out}
        return jax.tree_util.tree_map(lambda a: a[:, 0], out)

    parts = [one(x[i : i + chunk], pixels[i : i + chunk]) for i in range(0, len(x), chunk)]
    return jax.tree_util.tree_map(lambda *a: np.concatenate([np.asarray(b) for b in a]), *parts)


__all__ = ["AttackResult", "attack", "random_search", "run"]
