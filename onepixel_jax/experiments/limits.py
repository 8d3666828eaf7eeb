"""Sizes checked before any work: counters that must fit int32, and memory that must exist.

:func:`check_sweep_sizes` bounds a sweep's settings (``popsize``, ``max_iters``,
``chunk_size``, ``n_images``, ``batch_size``) by the int32 counters of the engine and, given
the image shape, by an estimate of the memory one engine call needs (the candidate batch of
one generation, the chunk's images, the fitness curves kept per attack) against the memory
this machine has available. The estimate counts only what the engine must hold whatever the
network, so a size it refuses cannot run; a size it accepts can still run out of memory in a
large network's activations, which the command line reports as one line too.

:func:`check_fooling_sizes` does the same for ``onepixel fool`` (population, CPPN capacity).
Errors are :class:`~onepixel_jax.errors.UsageError` naming the flag (``--popsize``...), what
the size needs and what the machine has.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

from onepixel_jax import planner
from onepixel_jax.errors import UsageError
from onepixel_jax.planner import Schedule

INT32_MAX = 2**31 - 1
FLOAT_BYTES = 4
# Share of the available memory one engine call may plan to use.
MEMORY_SHARE = 0.8


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable`` on Linux, else the
    free physical pages); None when it cannot be told."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def human_bytes(n: float) -> str:
    """``n`` bytes as ``"12.3 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"  # pragma: no cover


def _flag(names: Mapping[str, str], field: str) -> str:
    return names.get(field, field)


def check_int32(values: Mapping[str, int], names: Mapping[str, str]) -> None:
    """Each value must fit the engine's int32 counters."""
    for field, value in values.items():
        if value is not None and value > INT32_MAX:
            raise UsageError(
                f"{_flag(names, field)} must be at most {INT32_MAX:,} (the engine counts in "
                f"int32), got {value:,}"
            )


def _memory_refusal(what: str, need: float, have: int, advice: str) -> UsageError:
    return UsageError(
        f"{what} needs about {human_bytes(need)} of memory, more than the "
        f"{human_bytes(have)} this machine has available; {advice}"
    )


def check_sweep_sizes(
    *,
    popsize: int,
    max_iters: int,
    chunk_size: int | None,
    n_images: int,
    pixels: int = 1,
    image_shape: Sequence[int] | None = None,
    attacks_per_image: int = 1,
    batch_size: int | None = None,
    names: Mapping[str, str] | None = None,
    memory: int | None = None,
) -> None:
    """Raise UsageError when a sweep's sizes cannot work (see the module docstring).

    Args:
      popsize, max_iters, chunk_size, n_images, pixels: the sweep's settings.
      image_shape: ``(H, W, C)``; None checks only the int32 bounds.
      attacks_per_image: 1, or ``K - 1`` in the all-targets mode.
      batch_size: attacks evolved side by side (None: the planner's choice).
      names: how each field is called in messages (default: ``--popsize``...).
      memory: bytes available (default: :func:`available_memory`).
    """
    if chunk_size is None:  # the device's chunk (what the sweep will pick)
        shape = tuple(image_shape) if image_shape is not None else (1, 1, 1)
        chunk_size = planner.chunk_images(popsize, shape, attacks_per_image)
    names = dict(
        {
            "popsize": "--popsize",
            "max_iters": "--max-iters",
            "chunk_size": "--chunk-size",
            "n_images": "--n-images",
            "batch_size": "--batch-size",
        },
        **(names or {}),
    )
    if max_iters + 1 > INT32_MAX:  # the generation counter holds max_iters + 1
        raise UsageError(
            f"{names['max_iters']} must be at most {INT32_MAX - 1:,} (the engine counts "
            f"generations in int32), got {max_iters:,}"
        )
    check_int32(
        {
            "popsize": popsize,
            "chunk_size": chunk_size,
            "n_images": n_images,
            "batch_size": batch_size,
        },
        names,
    )
    if popsize * (max_iters + 1) > 2**53:
        raise UsageError(
            f"{names['popsize']} x ({names['max_iters']} + 1) = {popsize * (max_iters + 1):,} "
            "evaluations per attack is beyond any budget that can be counted; lower them"
        )
    if image_shape is None:
        return
    have = available_memory() if memory is None else memory
    if have is None:
        return
    budget = have * MEMORY_SHARE
    values = math.prod(int(s) for s in image_shape)
    channels = int(image_shape[-1])
    attacks = chunk_size * attacks_per_image  # attacks in one engine call
    slots, _ = planner.plan_slots(popsize, attacks, tuple(image_shape), Schedule(batch_size))
    candidates = slots * popsize * values * FLOAT_BYTES * 2  # patched batch and its copy
    genes = slots * popsize * pixels * (2 + channels) * FLOAT_BYTES * 3
    chunk_images = attacks * values * FLOAT_BYTES * 2
    curves = attacks * (max_iters + 1) * (FLOAT_BYTES * 2 + 12)  # arrays and the JSON lines
    terms = [
        (
            candidates + genes,
            f"{names['popsize']} {popsize:,} on {'x'.join(map(str, image_shape))} images "
            f"({slots:,} attacks side by side)",
            f"lower {names['popsize']}" + (f" or {names['batch_size']}" if slots > 1 else ""),
        ),
        (
            chunk_images,
            f"{names['chunk_size']} {chunk_size:,} ({attacks:,} attacks per engine call)",
            f"lower {names['chunk_size']}",
        ),
        (
            curves,
            f"{names['max_iters']} {max_iters:,} (a fitness curve of {max_iters + 1:,} values "
            f"for each of {attacks:,} attacks per engine call)",
            f"lower {names['max_iters']} or {names['chunk_size']}",
        ),
    ]
    total = sum(t[0] for t in terms)
    if total > budget:
        need, what, advice = max(terms, key=lambda t: t[0])
        raise _memory_refusal(what, total, have, advice)


def check_fooling_sizes(
    *,
    popsize: int,
    chunk: int,
    generations: int,
    image_shape: Sequence[int],
    num_classes: int,
    encoding: str,
    max_hidden: int,
    memory: int | None = None,
) -> None:
    """Raise UsageError when ``onepixel fool``'s sizes cannot work (int32 counters, memory
    of the population, the archive, a chunk's curves and, for CPPNs, the genomes)."""
    names = {
        "popsize": "--popsize",
        "chunk": "--chunk",
        "generations": "--generations",
        "max_hidden": "--max-hidden",
    }
    check_int32(
        {
            "popsize": popsize,
            "chunk": chunk,
            "generations": generations + 1,
            "max_hidden": max_hidden,
        },
        names,
    )
    have = available_memory() if memory is None else memory
    if have is None:
        return
    values = math.prod(int(s) for s in image_shape)
    channels = int(image_shape[-1])
    images = (popsize + num_classes) * values * FLOAT_BYTES * 3
    nodes = 4 + max_hidden + channels
    genomes = (popsize + num_classes) * nodes * nodes * FLOAT_BYTES * 3 if encoding == "cppn" else 0
    curves = min(chunk, generations) * num_classes * FLOAT_BYTES * 2
    terms = [
        (
            images,
            f"--popsize {popsize:,} on {'x'.join(map(str, image_shape))} images",
            "lower --popsize",
        ),
        (
            genomes,
            f"--max-hidden {max_hidden:,} ({nodes:,} x {nodes:,} connections per CPPN)",
            "lower --max-hidden or --popsize",
        ),
        (curves, f"--chunk {chunk:,} generations per call", "lower --chunk"),
    ]
    total = sum(t[0] for t in terms)
    if total > have * MEMORY_SHARE:
        _, what, advice = max(terms, key=lambda t: t[0])
        raise _memory_refusal(what, total, have, advice)


__all__ = [
    "INT32_MAX",
    "available_memory",
    "check_fooling_sizes",
    "check_int32",
    "check_sweep_sizes",
    "human_bytes",
]
