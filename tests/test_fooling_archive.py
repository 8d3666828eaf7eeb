"""The per-class archive against a NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from onepixel_jax.fooling import archive as archive_lib


def reference_add(fitness, genomes, candidates, scores):
    """Loop-based NumPy reference: strict improvement, lowest index wins ties, NaN is -inf."""
    fitness = fitness.copy()
    genomes = genomes.copy()
    scores = np.where(np.isnan(scores), -np.inf, scores)
    for k in range(fitness.shape[0]):
        best_b, best_v = -1, -np.inf
        for b in range(scores.shape[0]):
            if scores[b, k] > best_v:
                best_b, best_v = b, scores[b, k]
        if best_b >= 0 and best_v > fitness[k]:
            fitness[k] = best_v
            genomes[k] = candidates[best_b]
    return fitness, genomes


def make_archive(fitness, genomes):
    arch = archive_lib.empty(len(fitness), jnp.zeros(genomes.shape[1:]), (2, 2, 1))
    return archive_lib.Archive(
        genomes=jnp.asarray(genomes),
        images=arch.images,
        fitness=jnp.asarray(fitness, jnp.float32),
    )


@pytest.mark.parametrize("use_jit", [False, True])
def test_add_matches_numpy_reference_with_ties_and_empty_cells(use_jit):
    rng = np.random.default_rng(0)
    num_cells, batch, dim = 6, 9, 3
    add = jax.jit(archive_lib.add) if use_jit else archive_lib.add
    for trial in range(20):
        # Coarse values so that ties between candidates and with the incumbent are frequent.
        fitness = rng.integers(0, 4, num_cells).astype(np.float32) / 4
        fitness[rng.random(num_cells) < 0.3] = -np.inf  # empty cells
        genomes = rng.normal(size=(num_cells, dim)).astype(np.float32)
        candidates = rng.normal(size=(batch, dim)).astype(np.float32)
        scores = rng.integers(0, 5, (batch, num_cells)).astype(np.float32) / 4
        scores[rng.random((batch, num_cells)) < 0.1] = np.nan
        if trial == 0:
            scores[:] = -np.inf  # nothing can fill an empty cell
        images = jnp.broadcast_to(jnp.asarray(candidates[:, :1, None, None]), (batch, 2, 2, 1))
        arch = make_archive(fitness, genomes)
        new, improved = add(arch, jnp.asarray(candidates), images, jnp.asarray(scores))
        ref_fit, ref_gen = reference_add(fitness, genomes, candidates, scores)
        np.testing.assert_array_equal(np.asarray(new.fitness), ref_fit)
        np.testing.assert_array_equal(np.asarray(new.genomes), ref_gen)
        np.testing.assert_array_equal(np.asarray(improved), ref_fit > fitness)
        # Images follow their genomes (candidate's first gene broadcast), untouched cells stay 0.
        np.testing.assert_array_equal(
            np.asarray(new.images[:, 0, 0, 0]),
            np.where(ref_fit > fitness, ref_gen[:, 0], 0.0),
        )


def test_tie_prefers_incumbent_then_lowest_index():
    arch = make_archive(np.array([0.5, -np.inf], np.float32), np.zeros((2, 1), np.float32))
    candidates = jnp.array([[1.0], [2.0], [3.0]])
    images = jnp.zeros((3, 2, 2, 1))
    scores = jnp.array([[0.5, 0.2], [0.5, 0.7], [0.1, 0.7]])
    new, improved = archive_lib.add(arch, candidates, images, scores)
    assert new.genomes[0, 0] == 0.0  # tie with incumbent: kept
    assert new.genomes[1, 0] == 2.0  # tie between candidates 1 and 2: lowest index
    np.testing.assert_array_equal(np.asarray(improved), [False, True])


def test_add_to_cells_single_cell_entries_and_extra_columns_ignored():
    arch = archive_lib.empty(3, jnp.zeros(()), (1, 1, 1))
    genomes = jnp.array([10.0, 20.0, 30.0, 40.0])
    images = jnp.zeros((4, 1, 1, 1))
    new, improved = archive_lib.add_to_cells(
        arch, genomes, images, jnp.array([0.3, 0.9, 0.4, 0.2]), jnp.array([2, 0, 2, 0])
    )
    np.testing.assert_array_equal(np.asarray(new.genomes), [20.0, 0.0, 30.0])
    np.testing.assert_array_equal(np.asarray(new.filled), [True, False, True])
    # An (n+1)-class score matrix: the extra column never becomes a cell.
    new2, _ = archive_lib.add(arch, genomes, images, jnp.ones((4, 4)) * jnp.arange(4.0))
    assert new2.fitness.shape == (3,)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="num_cells"):
        archive_lib.empty(0, jnp.zeros(()), (1, 1, 1))
    with pytest.raises(ValueError, match="image_shape"):
        archive_lib.empty(2, jnp.zeros(()), (1, 1))
    arch = archive_lib.empty(3, jnp.zeros(()), (1, 1, 1))
    with pytest.raises(ValueError, match="scores"):
        archive_lib.add(arch, jnp.zeros(2), jnp.zeros((2, 1, 1, 1)), jnp.zeros((2, 2)))


def test_sample_parents_only_filled_cells():
    arch = make_archive(np.array([-np.inf, 0.1, -np.inf, 0.9], np.float32), np.zeros((4, 1)))
    idx = np.asarray(archive_lib.sample_parents(jax.random.PRNGKey(0), arch, 4000))
    assert set(np.unique(idx)) == {1, 3}
    # Uniform over the two filled cells: 2000 expected each, binomial sd about 32.
    assert abs(np.sum(idx == 1) - 2000) < 160
