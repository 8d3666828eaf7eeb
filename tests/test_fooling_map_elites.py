"""MAP-Elites over classes on a hand-made model whose optimum is known."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from onepixel_jax.fooling import cppn, direct, map_elites

SIZE = 8  # 8x8 greyscale images, four quadrant classes
SCALE = 5.0


def quadrant_masks() -> np.ndarray:
    masks = np.zeros((4, SIZE, SIZE, 1), np.float32)
    half = SIZE // 2
    for k, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        masks[k, r * half : (r + 1) * half, c * half : (c + 1) * half] = 1.0
    return masks


MASKS = quadrant_masks()


def quadrant_model(batch: jax.Array) -> jax.Array:
    """Logit k = SCALE * mean brightness of quadrant k (in [0, 1]).

    Each logit grows only with its own quadrant, so p_k is maximal exactly for the image
    that is white on quadrant k and black elsewhere: max p_k = e^S / (e^S + 3).
    """
    means = jnp.einsum("bhwc,khwc->bk", batch / 255.0, jnp.asarray(MASKS)) / MASKS[0].sum()
    return jax.nn.softmax(SCALE * means, axis=-1)


MAX_PROB = np.exp(SCALE) / (np.exp(SCALE) + 3.0)


_COMPILED = {}


def init(key, encoding, popsize):
    fn = functools.partial(
        map_elites.init, encoding=encoding, predict_fn=quadrant_model, num_classes=4
    )
    return jax.jit(fn, static_argnames="popsize")(key, popsize=popsize)


def run(encoding, key, popsize, generations, state=None):
    """Jit the loop once per (encoding, popsize, generations), as a caller would."""
    if state is None:
        state = init(key, encoding, popsize)
    cache_key = (id(encoding), popsize, generations)
    if cache_key not in _COMPILED:
        _COMPILED[cache_key] = jax.jit(
            functools.partial(
                map_elites.run,
                encoding=encoding,
                predict_fn=quadrant_model,
                popsize=popsize,
                num_generations=generations,
            )
        )
    return _COMPILED[cache_key](key, state, encoding.params)


def test_direct_encoding_reaches_the_known_maximum():
    enc = direct.direct_encoding((SIZE, SIZE, 1))
    state, metrics = run(enc, jax.random.PRNGKey(0), 64, 300)
    fitness = np.asarray(state.archive.fitness)
    assert np.all(fitness <= MAX_PROB + 1e-6)
    np.testing.assert_allclose(fitness, MAX_PROB, atol=2e-3)
    # The elites are the known optimal pattern: white on their quadrant, dark elsewhere.
    images = np.asarray(state.archive.images)
    for k in range(4):
        inside = images[k][MASKS[k] > 0].mean()
        outside = images[k][MASKS[k] == 0].mean()
        assert inside > 240 and outside < 15, (k, inside, outside)
    curve = np.asarray(metrics.best_fitness)
    assert curve.shape == (300, 4)
    assert np.all(np.diff(curve, axis=0) >= 0)  # elites never get worse
    assert curve[0].max() < MAX_PROB - 0.05  # the start was far from the optimum
    assert int(state.generation) == 300


def test_cppn_encoding_climbs_towards_the_maximum():
    enc = cppn.cppn_encoding((SIZE, SIZE, 1), max_hidden=4)
    key = jax.random.PRNGKey(1)
    state0 = init(key, enc, 32)
    state, _ = run(enc, key, 32, 60, state0)
    start, end = np.asarray(state0.archive.fitness), np.asarray(state.archive.fitness)
    assert np.all(end >= start)
    # Quadrants are easy for x/y-driven CPPNs: close to the optimum for every class.
    assert np.all(end > 0.9 * MAX_PROB), end
    valid = jax.jit(jax.vmap(lambda g: cppn.is_valid(g, 4, 1)))(state.archive.genomes)
    assert bool(jnp.all(valid))


def test_same_seed_same_archive_and_chunked_resume_is_identical():
    enc = direct.direct_encoding((SIZE, SIZE, 1))
    key = jax.random.PRNGKey(7)
    a, ma = run(enc, key, 16, 20)
    b, _ = run(enc, key, 16, 20)
    first, m1 = run(enc, key, 16, 10)
    resumed, m2 = run(enc, key, 16, 10, first)
    other, _ = run(enc, jax.random.PRNGKey(8), 16, 20)
    for x in (b, resumed):
        np.testing.assert_array_equal(np.asarray(a.archive.genomes), np.asarray(x.archive.genomes))
        np.testing.assert_array_equal(np.asarray(a.archive.fitness), np.asarray(x.archive.fitness))
    np.testing.assert_array_equal(
        np.asarray(ma.best_fitness),
        np.concatenate([np.asarray(m1.best_fitness), np.asarray(m2.best_fitness)]),
    )
    assert not np.array_equal(np.asarray(a.archive.genomes), np.asarray(other.archive.genomes))


def test_first_generation_reaching_and_bad_arguments():
    curve = jnp.array([[0.1, 0.5], [0.2, 0.99], [0.995, 0.999]])
    np.testing.assert_array_equal(
        np.asarray(map_elites.first_generation_reaching(curve, 0.99)), [3, 2]
    )
    np.testing.assert_array_equal(
        np.asarray(map_elites.first_generation_reaching(curve, 0.9999)), [-1, -1]
    )
    enc = direct.direct_encoding((SIZE, SIZE, 1))
    with pytest.raises(ValueError, match="num_classes"):
        map_elites.init(jax.random.PRNGKey(0), enc, quadrant_model, 0, 4)
    with pytest.raises(ValueError, match="popsize"):
        map_elites.init(jax.random.PRNGKey(0), enc, quadrant_model, 4, 0)
    with pytest.raises(ValueError, match="num_generations"):
        map_elites.run(jax.random.PRNGKey(0), None, enc.params, enc, quadrant_model, 4, 0)
