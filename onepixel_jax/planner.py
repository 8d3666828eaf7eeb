"""The one owner of slot and call sizing: how many images are evolved side by side (slots) and
how many candidates go into one model call.

Used alike by :func:`onepixel_jax.attack`, the sweep and the command line. On a CPU the
default is one model call of about :data:`CPU_CALL_SIZE` candidates per generation (bigger
calls are no faster per image there; ``benchmarks/bench_call_size.py``); on an accelerator,
as many slots as about :data:`ACCELERATOR_CALL_VALUES` input values allow, in calls of a
quarter of them. Plans never hold more slots than there are images.

``call_size="calibrate"`` (:class:`Schedule`, ``AttackConfig``) measures instead:
:func:`calibrate` times the attack's own target (incremental evaluation included) at growing
calls on the device it runs on and takes the smallest call within
:data:`CALIBRATION_TOLERANCE` of the best rate; the result is kept per process for the device
kind, target, image shape, population and ``d``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Candidates per model call on a CPU: larger calls are not faster per image there
# (benchmarks/bench_call_size.py; on a loaded machine smaller calls were sometimes faster),
# and the input values per model call aimed at on accelerators.
CPU_CALL_SIZE = 512
ACCELERATOR_CALL_VALUES = 2**26


class Schedule(NamedTuple):
    """How the engine spends its model calls (none of it changes results).

    Attributes:
      batch_size: images evolved side by side (slots); ``None``: :func:`plan_slots` decides.
      call_size: at most this many candidates per model call; ``None``: the device's size;
        ``"calibrate"``: measured on the device (:func:`calibrate`; the engine resolves it
        before planning).
      compact: once no image waits, pack busy slots together and skip model calls of
        call groups whose slots are all idle.
    """

    batch_size: int | None = None
    call_size: int | str | None = None  # an int, None or "calibrate"
    compact: bool = True


def on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def plan_slots(
    popsize: int, num_images: int, image_shape: tuple, schedule: Schedule = Schedule()
) -> tuple[int, int]:
    """``(slots, call_slots)``: images evolved side by side, and slots per model call.

    ``slots`` is a multiple of ``call_slots`` and at most ``num_images`` rounded up to one.
    """
    p = int(popsize)
    per_slot = p * int(np.prod(image_shape))
    cpu = on_cpu()
    if isinstance(schedule.call_size, str):
        raise ValueError(f"call_size {schedule.call_size!r} must be resolved (calibrate) first")
    if schedule.call_size is not None:
        call_slots = max(1, schedule.call_size // p)
    elif cpu:
        call_slots = max(1, CPU_CALL_SIZE // p)
    else:
        call_slots = max(1, ACCELERATOR_CALL_VALUES // (4 * per_slot))
    if schedule.batch_size is not None:
        slots = schedule.batch_size
    elif cpu:
        slots = call_slots
    else:
        slots = max(call_slots, ACCELERATOR_CALL_VALUES // per_slot)
    slots = max(1, min(slots, num_images))
    call_slots = min(call_slots, slots)
    slots = -(-slots // call_slots) * call_slots
    return slots, call_slots


MEMORY_SHARE = 0.6  # plans use at most this share of the device's memory


def device_memory() -> int | None:
    """Bytes the default device can hold (``memory_stats()["bytes_limit"]`` on GPU/TPU);
    ``None`` on a CPU or where the device does not say."""
    if on_cpu():
        return None
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # some backends do not implement it
        return None
    limit = stats.get("bytes_limit")
    return int(limit) if limit else None


def fit_to_memory(
    slots: int,
    call_slots: int,
    popsize: int,
    per_slot_bytes: int,
    per_candidate_bytes: int,
    memory: int | None,
) -> tuple[int, int]:
    """``(slots, call_slots)`` shrunk until the plan fits :data:`MEMORY_SHARE` of ``memory``:
    ``slots * per_slot_bytes`` (each slot's state and cache, e.g. the incremental
    evaluation's clean activations) plus ``call_slots * popsize * per_candidate_bytes`` (one
    model call's inputs and activations). Unchanged when ``memory`` is ``None``."""
    if memory is None:
        return slots, call_slots
    budget = MEMORY_SHARE * memory

    def need(s: int, c: int) -> float:
        return s * per_slot_bytes + c * popsize * per_candidate_bytes

    while call_slots > 1 and need(call_slots, call_slots) > budget:
        call_slots = max(1, call_slots // 2)
    slots = max(call_slots, slots // call_slots * call_slots)
    while slots > call_slots and need(slots, call_slots) > budget:
        slots -= call_slots
    if need(slots, call_slots) > budget:
        raise MemoryError(
            f"one slot of {popsize} candidates needs {need(1, 1) / 2**30:.2f} GiB, more than "
            f"{MEMORY_SHARE:.0%} of the device's {memory / 2**30:.1f} GiB; lower popsize"
        )
    return slots, call_slots


MIN_CHUNK = 16  # images per sweep chunk at least (a chunk is one engine call and one write)
CHUNK_WAVES = 4  # a chunk fills the device's slots this many times over (queue, short tail)


def chunk_images(
    popsize: int, image_shape: tuple, attacks_per_image: int = 1, schedule: Schedule = Schedule()
) -> int:
    """Images per sweep chunk on this device: enough attacks (``attacks_per_image`` each) to
    fill the planner's slots :data:`CHUNK_WAVES` times, so that images wait in the engine's
    queue and finished slots are refilled inside the compiled loop; at least
    :data:`MIN_CHUNK`."""
    slots, _ = plan_slots(popsize, 2**31 - 1, image_shape, schedule)
    return max(MIN_CHUNK, CHUNK_WAVES * slots // max(1, attacks_per_image))


CALIBRATE = "calibrate"
CALIBRATION_TOLERANCE = 0.1  # the smallest call within 10 % of the best rate per candidate
CALIBRATION_REPEATS = 3  # timed calls per size (the fastest counts), after a warm-up call


class Calibration(NamedTuple):
    """What :func:`calibrate` measured: the chosen ``call_size`` (candidates per model call)
    and one row per size tried: ``(call_size, seconds per call, candidates per second)``."""

    call_size: int
    rows: tuple[tuple[int, float, float], ...]
    device_kind: str


_CALIBRATIONS: dict = {}


def _call_limit(popsize: int, image_shape: tuple) -> int:
    """The largest call :func:`calibrate` tries, in slots."""
    if on_cpu():
        return max(1, 8 * CPU_CALL_SIZE // popsize)
    per_slot = popsize * int(np.prod(image_shape))
    return max(1, 4 * ACCELERATOR_CALL_VALUES // per_slot)


def calibrate(
    target,
    image_shape: tuple,
    popsize: int,
    pixels: int,
    *,
    max_slots: int | None = None,
    tolerance: float = CALIBRATION_TOLERANCE,
    repeats: int = CALIBRATION_REPEATS,
    clock: Callable[[], float] = time.perf_counter,
) -> Calibration:
    """Time ``target`` (a :class:`~onepixel_jax.types.Target`) at calls of 1, 2, 4, ... slots
    of ``popsize`` candidates of ``pixels`` pixels (at the image's centre, so incremental
    windows are whole) and choose the smallest call whose rate is within ``tolerance`` of the
    best. Growth stops at ``max_slots`` (default: 8x the CPU size, or 4x the accelerator's
    planned call), when a call does not fit the device's memory, or when two doublings in a
    row gain less than ``tolerance``. Results are cached per process.
    """
    h, w, c = (tuple(image_shape) + (1,))[:3] if len(image_shape) == 2 else tuple(image_shape)
    kind = str(getattr(jax.devices()[0], "device_kind", jax.default_backend()))
    limit = _call_limit(popsize, (h, w, c)) if max_slots is None else int(max_slots)
    key = (kind, target, (h, w, c), int(popsize), int(pixels), limit, float(tolerance))
    if key in _CALIBRATIONS:
        return _CALIBRATIONS[key]
    prepare = jax.jit(target.prepare)
    evaluate = jax.jit(target.evaluate)
    gene = jnp.asarray([h // 2, w // 2] + [0] * c, jnp.int32)
    rows: list[tuple[int, float, float]] = []
    slots, best, flat = 1, 0.0, 0
    while slots <= limit:
        images = jnp.full((slots, h, w, c), 128.0, jnp.float32)
        px = jnp.broadcast_to(gene, (slots, popsize, pixels, 2 + c))
        try:
            cache = jax.block_until_ready(prepare(images))
            jax.block_until_ready(evaluate(cache, images, px))  # compile and warm up
            times = []
            for _ in range(max(1, repeats)):
                t0 = clock()
                jax.block_until_ready(evaluate(cache, images, px))
                times.append(clock() - t0)
        except Exception as err:  # out of device memory: the sizes so far decide
            if rows and "RESOURCE_EXHAUSTED" in str(err).upper().replace(" ", "_"):
                break
            raise
        seconds = max(min(times), 1e-9)
        rate = slots * popsize / seconds
        rows.append((slots * popsize, seconds, rate))
        flat = flat + 1 if rate < best * (1 + tolerance) else 0
        best = max(best, rate)
        if flat >= 2:
            break
        slots *= 2
    chosen = min(size for size, _, rate in rows if rate >= (1 - tolerance) * best)
    result = Calibration(chosen, tuple(rows), kind)
    _CALIBRATIONS[key] = result
    return result


__all__ = [
    "ACCELERATOR_CALL_VALUES",
    "CALIBRATE",
    "CALIBRATION_TOLERANCE",
    "Calibration",
    "CPU_CALL_SIZE",
    "CHUNK_WAVES",
    "MIN_CHUNK",
    "Schedule",
    "MEMORY_SHARE",
    "calibrate",
    "chunk_images",
    "device_memory",
    "fit_to_memory",
    "on_cpu",
    "plan_slots",
]
