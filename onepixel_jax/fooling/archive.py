"""A MAP-Elites archive whose cells are the classifier's classes.

Cell ``k`` holds the best genome found so far for class ``k``, the image it renders to
and its fitness, the classifier's probability of class ``k`` for that image. Fitness is
maximised; an empty cell has fitness ``-inf``. Every array has a fixed leading dimension
``K`` (the number of cells), so the archive is a pytree that ``lax.scan`` can carry.

Insertion is branch-free: the best candidate of each cell is found with
``jax.ops.segment_max`` and written with a scatter whose losing rows point one past the
end of the archive, an index that ``mode="drop"`` ignores.

Rules of :func:`add_to_cells` (and so of :func:`add`):

* a candidate replaces the elite of its cell only if it is strictly better (ties keep the
  incumbent);
* among equally good candidates for the same cell the one with the lowest index wins;
* NaN fitness counts as ``-inf``: it never enters the archive.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Archive:
    """One elite per class (cell)."""

    genomes: object  # pytree, every leaf shape=(K, ...)
    images: jax.Array  # shape=(K, H, W, C), float32 in [0, 255]
    fitness: jax.Array  # shape=(K,), float32; higher is better, -inf when empty

    @property
    def num_cells(self) -> int:
        return int(self.fitness.shape[0])

    @property
    def filled(self) -> jax.Array:
        """``(K,)`` bool: which cells hold an elite."""
        return self.fitness > -jnp.inf


def empty(num_cells: int, genome_example: object, image_shape: tuple[int, int, int]) -> Archive:
    """An archive of ``num_cells`` empty cells.

    ``genome_example`` is one genome (a pytree without the leading population axis); it
    only fixes shapes and dtypes. Empty cells hold zeros and fitness ``-inf``.
    """
    if not isinstance(num_cells, int) or num_cells < 1:
        raise ValueError(f"num_cells must be a positive int, got {num_cells!r}")
    if len(tuple(image_shape)) != 3:
        raise ValueError(f"image_shape must be (H, W, C), got {image_shape!r}")
    genomes = jax.tree_util.tree_map(
        lambda leaf: jnp.zeros((num_cells, *jnp.shape(leaf)), jnp.asarray(leaf).dtype),
        genome_example,
    )
    return Archive(
        genomes=genomes,
        images=jnp.zeros((num_cells, *tuple(image_shape)), jnp.float32),
        fitness=jnp.full((num_cells,), -jnp.inf, jnp.float32),
    )


def add_to_cells(
    archive: Archive,
    genomes: object,
    images: jax.Array,
    fitness: jax.Array,
    cells: jax.Array,
    sources: jax.Array | None = None,
) -> tuple[Archive, jax.Array]:
    """Insert ``N`` candidate entries, each competing for one cell.

    Args:
      archive: the current archive with ``K`` cells.
      genomes: pytree of ``(B, ...)`` candidate genomes.
      images: ``(B, H, W, C)`` their rendered images.
      fitness: ``(N,)`` fitness of each entry (higher is better, NaN is worst).
      cells: ``(N,)`` int cell of each entry in ``[0, K)``.
      sources: ``(N,)`` int row of ``genomes`` / ``images`` each entry refers to;
        defaults to ``arange(N)`` (then ``N == B``).

    Returns:
      ``(new_archive, improved)`` where ``improved`` is ``(K,)`` bool, True for the cells
      whose elite was replaced.
    """
    num_cells = archive.num_cells
    fitness = jnp.asarray(fitness, jnp.float32)
    fitness = jnp.where(jnp.isnan(fitness), -jnp.inf, fitness)
    cells = jnp.asarray(cells, jnp.int32)
    num_entries = fitness.shape[0]
    if sources is None:
        sources = jnp.arange(num_entries, dtype=jnp.int32)

    best = jax.ops.segment_max(fitness, cells, num_segments=num_cells)  # (K,), -inf if none
    # Lowest entry index among the entries that reach their cell's best value.
    entry = jnp.arange(num_entries, dtype=jnp.int32)
    is_best = fitness == best[cells]
    first = jax.ops.segment_min(
        jnp.where(is_best, entry, num_entries), cells, num_segments=num_cells
    )
    improved = best > archive.fitness
    winner = sources[jnp.clip(first, 0, num_entries - 1)]  # (K,) row in the candidate batch
    # Scatter the winners; cells that did not improve write out of bounds and are dropped.
    dest = jnp.where(improved, jnp.arange(num_cells, dtype=jnp.int32), num_cells)

    def put(old, new):
        return old.at[dest].set(new[winner].astype(old.dtype), mode="drop")

    new = Archive(
        genomes=jax.tree_util.tree_map(put, archive.genomes, genomes),
        images=put(archive.images, images),
        fitness=archive.fitness.at[dest].set(best, mode="drop"),
    )
    return new, improved


def add(
    archive: Archive, genomes: object, images: jax.Array, scores: jax.Array
) -> tuple[Archive, jax.Array]:
    """Insert a batch where every candidate competes for every cell.

    ``scores`` is ``(B, K)``: ``scores[b, k]`` is candidate ``b``'s fitness in cell ``k``
    (for fooling images, the probability of class ``k``). Extra columns beyond ``K`` are
    ignored, so an ``(n+1)``-class model's extra class can be left out of the archive.

    Returns ``(new_archive, improved)`` as :func:`add_to_cells`.
    """
    num_cells = archive.num_cells
    if scores.ndim != 2 or scores.shape[1] < num_cells:
        raise ValueError(f"scores must be (B, >= {num_cells}), got shape {scores.shape}")
    scores = scores[:, :num_cells]
    batch = scores.shape[0]
    # Entry b * K + k is candidate b competing for cell k.
    cells = jnp.tile(jnp.arange(num_cells, dtype=jnp.int32), batch)
    sources = jnp.repeat(jnp.arange(batch, dtype=jnp.int32), num_cells)
    return add_to_cells(archive, genomes, images, scores.reshape(-1), cells, sources)


def sample_parents(key: jax.Array, archive: Archive, num: int) -> jax.Array:
    """``(num,)`` int32 cell indices drawn uniformly (with replacement) from filled cells.

    If no cell is filled, draws uniformly from all cells.
    """
    filled = archive.filled
    logits = jnp.where(filled | ~jnp.any(filled), 0.0, -jnp.inf)
    return jax.random.categorical(key, logits, shape=(num,)).astype(jnp.int32)
