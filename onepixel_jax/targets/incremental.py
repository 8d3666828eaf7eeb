"""Exact incremental evaluation of few-pixel candidates for any JAX model.

A candidate changes ``d`` pixels of an image whose clean activations are computed once per
image (the target's ``prepare``). Per candidate, each operation recomputes only a fixed-size
window around each changed pixel's receptive-field cone, with all ``d`` windows of its inputs
written in, so overlapping cones, residual additions and concatenations stay exact;
probabilities equal the full forward up to float rounding (tested within 1e-5).

Nothing here knows a network by name: ``predict_fn`` is traced to a jaxpr at batch size 1
(:mod:`~onepixel_jax.targets.interpret`) and walked with per-tuple windows
(:mod:`~onepixel_jax.targets.windows`): convolutions of any kernel, stride, padding, dilation
and groups in any layout, max / sum / average pooling, elementwise operations with constants,
operations on channels only, additions and concatenations of branches. Any other operation
(global pooling, flatten, dense layers over space, attention, an unknown primitive)
materialises its input per candidate and runs the rest in full. From the first operation where
``d`` windows cost at least ``max_fraction`` of the full operation, it runs in full too.

The engine asks :func:`select` for a target; :func:`pays_off`, :func:`macs`,
:func:`cache_bytes` and :func:`plan` describe the choice.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from ..types import Target
from . import interpret, windows
from .patched import patched_forward

__all__ = [
    "DEFAULT_MAX_FRACTION",
    "blocker",
    "cache_bytes",
    "default_chunks",
    "for_predict_fn",
    "from_zoo",
    "incremental_target",
    "macs",
    "pays_off",
    "plan",
    "select",
]

DEFAULT_MAX_FRACTION = 0.5
MAX_CHUNKS = 8

# Below this many multiply-adds per candidate the windows' bookkeeping (slices, overlays,
# writes) eats the arithmetic saved (digits-cnn, 0.34 M: 0.6x to 1.2x the full forward's
# speed; benchmarks/RESULTS.md); from there on the saving has to be at least 10 %.
AUTO_MIN_FULL_MACS = 1_000_000
AUTO_MAX_RATIO = 0.9


def default_chunks() -> int:
    """Independent candidate chunks per call: one per usable CPU core on the CPU backend
    (at most :data:`MAX_CHUNKS`), one elsewhere.

    The windowed path is a chain of small gathers, convolutions and overlays per candidate;
    XLA's CPU runtime runs such a chain on one thread at a time but runs independent chains
    side by side, so splitting the candidates into one chain per core uses the cores the full
    forward's large convolutions use (benchmarks/RESULTS.md). On GPU and TPU every operation
    is already parallel and one chain is best.
    """
    if jax.default_backend() != "cpu":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_CHUNKS, cores))


# --------------------------------------------------------------------------------------
# Analysis, cached per function object


def _image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(v) for v in image_shape)
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (H, W) or (H, W, C), got {tuple(image_shape)}")
    return shape


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


@functools.lru_cache(maxsize=32)
def _graph(predict_fn: Callable, image_shape: tuple, channel_axis: bool) -> interpret.Graph:
    h, w, c = image_shape
    shape = (1, h, w, c) if channel_axis else (1, h, w)
    graph = interpret.trace(predict_fn, jax.ShapeDtypeStruct(shape, jnp.float32))
    if any(isinstance(c, jax.core.Tracer) for c in graph.consts.values()):
        raise ValueError("predict_fn closes over traced values; pass it concrete weights")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1 or len(graph.shape(graph.outputs[0])) != 2:
        raise ValueError(
            f"predict_fn must map one (B, H, W[, C]) batch to (B, K) probabilities; "
            f"at batch size 1 it returns {[graph.shape(o) for o in graph.outputs]}"
        )
    return graph


def _channel_axis(predict_fn: Callable, image_shape: tuple, channel_axis: bool | None) -> bool:
    """``channel_axis`` as given, or (``None``) whether ``predict_fn`` traces on ``(1, H, W,
    C)``; a one-channel model that only takes ``(1, H, W)`` gets ``False``."""
    if channel_axis is not None:
        return bool(channel_axis)
    try:
        _graph(predict_fn, image_shape, True)
        return True
    except Exception:
        if image_shape[2] != 1:
            raise
        _graph(predict_fn, image_shape, False)
        return False


@functools.lru_cache(maxsize=64)
def _plan(predict_fn, image_shape, channel_axis, pixels, max_fraction) -> windows.Plan:
    return windows.plan(_graph(predict_fn, image_shape, channel_axis), pixels, max_fraction)


def _check_fraction(max_fraction: float) -> float:
    if not isinstance(max_fraction, int | float) or not max_fraction > 0:
        raise ValueError(f"max_fraction must be a number > 0, got {max_fraction!r}")
    return float(max_fraction)


def plan(
    predict_fn: Callable,
    image_shape: Sequence[int],
    pixels: int,
    *,
    channel_axis: bool | None = None,
    max_fraction: float = DEFAULT_MAX_FRACTION,
) -> windows.Plan:
    """The static plan of ``predict_fn`` on ``image_shape`` ``(H, W, C)`` images for ``pixels``
    tuples (:class:`~onepixel_jax.targets.windows.Plan`: per operation its window and costs in
    ``ops``, multiply-adds in ``full_macs`` / ``incremental_macs``, the cached values in
    ``cache``). ``channel_axis=False``: ``predict_fn`` takes ``(B, H, W)`` (one channel);
    ``None``: ``(B, H, W, C)`` if it traces so, else ``(B, H, W)``. Cached per function."""
    shape = _image_shape(image_shape)
    ch = _channel_axis(predict_fn, shape, channel_axis)
    return _plan(predict_fn, shape, ch, int(pixels), _check_fraction(max_fraction))


def macs(
    predict_fn: Callable, image_shape: Sequence[int], pixels: int, **kwargs
) -> tuple[int, int]:
    """Multiply-adds per candidate ``(full forward, incremental)`` of the convolutions and
    ``dot_general`` operations (pooling and elementwise work not counted); keywords as
    :func:`plan`."""
    p = plan(predict_fn, image_shape, pixels, **kwargs)
    return p.full_macs, p.incremental_macs


def pays_off(predict_fn: Callable, image_shape: Sequence[int], pixels: int, **kwargs) -> bool:
    """Whether the automatic choice uses the incremental path: the full forward costs at least
    :data:`AUTO_MIN_FULL_MACS` multiply-adds per candidate and the windows save at least
    ``1 - AUTO_MAX_RATIO`` of them. Keywords as :func:`plan`."""
    full, inc = macs(predict_fn, image_shape, pixels, **kwargs)
    return full >= AUTO_MIN_FULL_MACS and inc <= AUTO_MAX_RATIO * full


def cache_bytes(predict_fn: Callable, image_shape: Sequence[int], pixels: int, **kwargs) -> int:
    """Bytes of clean activations the incremental target keeps per image slot (its
    ``prepare`` output for one image); keywords as :func:`plan`."""
    return windows.cache_bytes(plan(predict_fn, image_shape, pixels, **kwargs))


def blocker(
    predict_fn: Callable,
    image_shape: Sequence[int],
    pixels: int = 1,
    *,
    channel_axis: bool | None = None,
) -> str | None:
    """``None`` when some convolution, pooling or channel contraction of ``predict_fn`` runs on
    windows (whatever their cost); otherwise the first operation on the input's windows that
    cannot run on them, as ``"'<primitive>' <why>"``."""
    p = plan(predict_fn, image_shape, pixels, channel_axis=channel_axis, max_fraction=math.inf)
    eqns = p.graph.eqns
    if any(eqns[i].name in windows.WINDOW_OPS or s.macs for i, s in p.steps.items()):
        return None
    if p.declines:
        return p.declines[0][1]
    return "no convolution or pooling on the input"


# --------------------------------------------------------------------------------------
# The Target


def _prepare_all(p: windows.Plan, images: jax.Array, channel_axis: bool):
    """Clean values of plan ``p`` for ``images`` ``(S, H, W, C)``: a tuple of ``(S, ...)``."""
    x = jnp.asarray(images, jnp.float32)
    x = x[:, None] if channel_axis else x[:, None, ..., 0]
    return jax.vmap(functools.partial(windows.prepare_one, p))(x)


def incremental_target(
    predict_fn: Callable,
    *,
    pixels: int | None = None,
    channel_axis: bool | None = None,
    max_fraction: float = DEFAULT_MAX_FRACTION,
    chunks: int | None = None,
    fallback: bool = False,
) -> Target:
    """The incremental :class:`~onepixel_jax.types.Target` of ``predict_fn`` (any JAX-traceable
    function of ``(B, H, W, C)`` float32 pixels in [0, 255] to ``(B, K)`` probabilities that
    treats batch elements independently; ``channel_axis`` as :func:`plan`).

    ``prepare(images (S, H, W, C))`` keeps the clean activations the plan for ``pixels``
    tuples reads (``None``: the plan for one; :func:`cache_bytes` per image);
    ``evaluate(cache, images, pixels (S, P, d, 2 + C) int32)`` returns probabilities ``(S, P,
    K)``. A call with another ``d`` than prepared recomputes the clean activations it needs
    from ``images`` (one clean forward per slot per call). ``chunks`` splits a call's ``P``
    candidates into that many independent chains (``None``: :func:`default_chunks`); results do
    not depend on it. The analysis runs when the functions are traced (shapes known then).

    ``fallback=True`` (the automatic choice): where the model cannot be traced at batch size 1
    or the windows do not pay (:func:`pays_off`), the target is the full forward; otherwise a
    model whose first operations on the input cannot run on windows raises a ``ValueError``
    naming the operation (:func:`blocker`).
    """
    if chunks is not None and (not isinstance(chunks, int) or chunks < 1):
        raise ValueError(f"chunks must be a positive int or None, got {chunks!r}")
    if pixels is not None and (not isinstance(pixels, int) or pixels < 1):
        raise ValueError(f"pixels must be a positive int or None, got {pixels!r}")
    max_fraction = _check_fraction(max_fraction)

    def setup(image_shape, d: int):
        """``(plan or None for the full forward, channel_axis)`` for this call's shapes."""
        shape = _image_shape(image_shape)
        if fallback:
            try:
                ch = _channel_axis(predict_fn, shape, channel_axis)
            except Exception:
                return None, bool(channel_axis is None or channel_axis)
            if blocker(predict_fn, shape, d, channel_axis=ch) or not pays_off(
                predict_fn, shape, d, channel_axis=ch
            ):
                return None, ch
        else:
            ch = _channel_axis(predict_fn, shape, channel_axis)
            reason = blocker(predict_fn, shape, d, channel_axis=ch)
            if reason:
                raise ValueError(_blocked_message(predict_fn, reason))
        return _plan(predict_fn, shape, ch, d, max_fraction), ch

    def prepare(images):
        p, ch = setup(images.shape[1:], pixels or 1)
        return () if p is None else _prepare_all(p, images, ch)

    def evaluate(cache, images, pix):
        pix = jnp.asarray(pix).astype(jnp.int32)
        p, ch = setup(images.shape[1:], pix.shape[2])
        if p is None:
            return patched_forward(predict_fn, ch).evaluate((), images, pix)
        prepared, _ = setup(images.shape[1:], pixels or 1)
        if prepared is None or prepared.cache != p.cache:
            cache = _prepare_all(p, images, ch)
        one = functools.partial(windows.evaluate_one, p)
        per_slot = jax.vmap(one, in_axes=(None, 0))
        k = min(default_chunks() if chunks is None else chunks, pix.shape[1])
        parts = [jax.vmap(per_slot)(cache, c) for c in jnp.array_split(pix, k, axis=1)]
        return parts[0] if k == 1 else jnp.concatenate(parts, axis=1)

    return Target(prepare=prepare, evaluate=evaluate)


def _blocked_message(predict_fn: Callable, reason: str) -> str:
    return (
        f"incremental=True: {_name(predict_fn)}'s first operation on the input that cannot run "
        f"on windows, {reason}, comes before any convolution or pooling; use incremental=None "
        "or False"
    )


@functools.lru_cache(maxsize=32)
def _cached_target(predict_fn, pixels, channel_axis, fallback) -> Target:
    return incremental_target(
        predict_fn, pixels=pixels, channel_axis=channel_axis, fallback=fallback
    )


def for_predict_fn(predict_fn: Callable, channel_axis: bool | None = None) -> Target:
    """The incremental target of ``predict_fn`` (see :func:`incremental_target`), cached per
    function object so that the engine reuses its compilation."""
    return _cached_target(predict_fn, None, channel_axis, False)


@functools.lru_cache(maxsize=16)
def from_zoo(name: str) -> Target:
    """The incremental target of a committed checkpoint (``"allconv-cifar10"``...) or a
    checkpoint directory; cached."""
    from ..zoo.checkpoints import load

    return for_predict_fn(load(name)[0])


def select(
    predict_fn: Callable,
    pixels: int,
    incremental: bool | None,
    *,
    image_shape: Sequence[int] | None = None,
    channel_axis: bool | None = None,
) -> Target | None:
    """The engine's choice for ``predict_fn`` and ``pixels`` tuples: the incremental target,
    or ``None`` for the full forward.

    ``incremental=None`` (auto): incremental where :func:`pays_off`; ``True``: incremental, or a
    ``ValueError`` naming the operation that prevents it; ``False``: never. With the image
    shape (``image_shape``, or a zoo function's ``input_shape`` attribute) the choice is made
    now; without it, when the engine traces the target (then ``None`` gives a target that is
    the full forward where the windows do not pay, and ``True`` raises at that point).
    ``channel_axis`` as :func:`plan`.
    """
    if incremental is False:
        return None
    if incremental is not None and incremental is not True:
        raise TypeError(f"incremental must be None or a bool, got {incremental!r}")
    if not isinstance(pixels, int) or pixels < 1:
        raise ValueError(f"pixels must be a positive int, got {pixels!r}")
    shape = image_shape if image_shape is not None else getattr(predict_fn, "input_shape", None)
    if shape is None:
        return _cached_target(predict_fn, pixels, channel_axis, incremental is None)
    shape = _image_shape(shape)
    try:
        ch = _channel_axis(predict_fn, shape, channel_axis)
    except Exception as err:
        if incremental:
            raise ValueError(
                f"incremental=True: {_name(predict_fn)} cannot be traced on one "
                f"{shape} image ({type(err).__name__}); use incremental=None or False"
            ) from err
        return None
    reason = blocker(predict_fn, shape, pixels, channel_axis=ch)
    if incremental:
        if reason:
            raise ValueError(_blocked_message(predict_fn, reason))
    elif reason or not pays_off(predict_fn, shape, pixels, channel_axis=ch):
        return None
    return _cached_target(predict_fn, pixels, channel_axis, False)
