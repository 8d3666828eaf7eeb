"""MAP-Elites for fooling images: one cell per class, the loop compiled with ``lax.scan``.

Each generation draws ``popsize`` parents uniformly from the filled cells (and as many
mates, for encodings that recombine), varies them, renders the children, evaluates them
in one ``predict_fn`` call and lets every child compete for every class cell: its
probability of class ``k`` is its fitness in cell ``k`` (maximised).

The random key of generation ``g`` is ``fold_in(key, g)``, so a run split into chunks
(resumed from a saved state) gives exactly the archive of an uninterrupted run.

Nothing here is jitted; jit :func:`run` once at the outer boundary, with ``encoding``,
``predict_fn``, ``popsize`` and ``num_generations`` static.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from onepixel_jax.fooling import archive as archive_lib
from onepixel_jax.fooling.encoding import Encoding

PredictFn = Callable[[jax.Array], jax.Array]


@struct.dataclass
class FoolingState:
    """What a run carries from one generation to the next."""

    archive: archive_lib.Archive
    generation: jax.Array  # shape=(), int32: generations done (0 after init)


class GenerationMetrics(NamedTuple):
    best_fitness: jax.Array  # shape=(K,), float32: archive fitness after the generation
    improved: jax.Array  # shape=(K,), bool: cells whose elite changed this generation


def evaluate(encoding: Encoding, predict_fn: PredictFn, genomes) -> tuple[jax.Array, jax.Array]:
    """Render ``genomes`` and classify them: ``(images (B, H, W, C), probs (B, K'))``."""
    images = encoding.render(genomes)
    probs = predict_fn(images)
    return images, probs


def init(
    key: jax.Array,
    encoding: Encoding,
    predict_fn: PredictFn,
    num_classes: int,
    popsize: int,
) -> FoolingState:
    """Fill the archive from ``popsize`` random genomes (generation 0).

    ``num_classes`` cells are kept: the first ``num_classes`` columns of the model's output.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not isinstance(popsize, int) or popsize < 1:
        raise ValueError(f"popsize must be a positive int, got {popsize!r}")
    genomes = encoding.init(key, popsize)
    example = jax.tree_util.tree_map(lambda leaf: leaf[0], genomes)
    arch = archive_lib.empty(num_classes, example, encoding.image_shape)
    images, probs = evaluate(encoding, predict_fn, genomes)
    arch, _ = archive_lib.add(arch, genomes, images, probs)
    return FoolingState(archive=arch, generation=jnp.zeros((), jnp.int32))


def step(
    key: jax.Array,
    state: FoolingState,
    params,
    encoding: Encoding,
    predict_fn: PredictFn,
    popsize: int,
) -> tuple[FoolingState, GenerationMetrics]:
    """One generation. ``key`` is used as is (see :func:`run` for the per-generation keys)."""
    arch = state.archive
    k_par, k_mate, k_vary = jax.random.split(key, 3)
    take = lambda idx: jax.tree_util.tree_map(lambda leaf: leaf[idx], arch.genomes)
    parents = take(archive_lib.sample_parents(k_par, arch, popsize))
    mates = take(archive_lib.sample_parents(k_mate, arch, popsize))
    children = encoding.vary(k_vary, parents, mates, params, state.generation)
    images, probs = evaluate(encoding, predict_fn, children)
    arch, improved = archive_lib.add(arch, children, images, probs)
    new_state = FoolingState(archive=arch, generation=state.generation + 1)
    return new_state, GenerationMetrics(best_fitness=arch.fitness, improved=improved)


def run(
    key: jax.Array,
    state: FoolingState,
    params,
    encoding: Encoding,
    predict_fn: PredictFn,
    popsize: int,
    num_generations: int,
) -> tuple[FoolingState, GenerationMetrics]:
    """``num_generations`` generations with ``lax.scan``; metrics are stacked ``(G, K)``.

    Generation ``g`` (counted from ``state.generation``) uses ``fold_in(key, g)``.
    """
    if not isinstance(num_generations, int) or num_generations < 1:
        raise ValueError(f"num_generations must be a positive int, got {num_generations!r}")

    def body(carry: FoolingState, _):
        gen_key = jax.random.fold_in(key, carry.generation)
        return step(gen_key, carry, params, encoding, predict_fn, popsize)

    return jax.lax.scan(body, state, None, length=num_generations)


def first_generation_reaching(curve: jax.Array, threshold: float) -> jax.Array:
    """Per class, the first generation (1-based row of ``curve`` ``(G, K)``) whose fitness is
    ``>= threshold``, or -1 if none. Row 0 of ``curve`` is taken as generation 1."""
    reached = curve >= threshold
    first = jnp.argmax(reached, axis=0) + 1
    return jnp.where(jnp.any(reached, axis=0), first, -1)
