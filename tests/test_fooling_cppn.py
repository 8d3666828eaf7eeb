"""Fixed-capacity CPPN genomes: rendering and mutation invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from onepixel_jax.fooling import cppn


def test_activations_against_numpy():
    z = np.linspace(-3, 3, 13).astype(np.float32)
    expected = [
        np.sin(z),
        np.exp(-2 * z * z),
        2 / (1 + np.exp(-z)) - 1,
        np.tanh(z),
        np.abs(z),
        z,
        np.cos(z),
    ]
    assert len(expected) == len(cppn.ACTIVATIONS)
    for i, ref in enumerate(expected):
        np.testing.assert_allclose(
            np.asarray(cppn.apply_activation(i, jnp.asarray(z))), ref, atol=1e-6
        )


def init(enc, key, num):
    return jax.jit(enc.init, static_argnums=1)(key, num)


def test_render_shape_range_and_determinism():
    enc = cppn.cppn_encoding((12, 10, 3), max_hidden=6)
    genomes = init(enc, jax.random.PRNGKey(0), 16)
    render = jax.jit(enc.render)
    images = np.asarray(render(genomes))
    assert images.shape == (16, 12, 10, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 255.0
    np.testing.assert_array_equal(images, np.round(images))  # integer pixel values
    np.testing.assert_array_equal(images, np.asarray(render(genomes)))
    np.testing.assert_array_equal(images, np.asarray(render(init(enc, jax.random.PRNGKey(0), 16))))
    # Different genomes give different images (the population is not degenerate).
    assert np.unique(images.reshape(16, -1).round(1), axis=0).shape[0] > 8


def test_render_matches_hand_computed_network():
    # Inputs -> one hidden tanh node (from x with weight 2) -> linear output with weight 0.5.
    max_hidden, channels = 2, 1
    n = cppn.NUM_INPUTS + max_hidden + channels
    w = np.zeros((n, n), np.float32)
    conn = np.zeros((n, n), bool)
    w[0, 4], conn[0, 4] = 2.0, True  # x -> h0
    w[4, 6], conn[4, 6] = 0.5, True  # h0 -> out
    w[5, 6], conn[5, 6] = 9.0, False  # disabled connection from an unused slot
    acts = np.zeros(n, np.int32)
    acts[4] = cppn.ACTIVATIONS.index("tanh")
    acts[6] = cppn.ACTIVATIONS.index("linear")
    active = np.array([1, 1, 1, 1, 1, 0, 1], bool)
    genome = cppn.CPPNGenome(
        jnp.asarray(w), jnp.asarray(conn), jnp.asarray(active), jnp.asarray(acts)
    )
    assert bool(cppn.is_valid(genome, max_hidden, channels))
    coords = cppn.coordinate_inputs(3, 5)
    out = np.asarray(cppn.render_one(genome, coords, channels))[:, 0]
    x = np.asarray(coords)[:, 0]
    expected = 127.5 * (np.clip(0.5 * np.tanh(2 * x), -1, 1) + 1)
    assert np.all(np.abs(out - expected) <= 0.5 + 1e-3)
    np.testing.assert_array_equal(out, np.round(out))


def test_mutations_keep_genomes_valid_and_grow_within_capacity():
    max_hidden, channels = 5, 1
    params = cppn.CPPNParams(
        weight_rate=1.0, activation_rate=0.5, add_connection_rate=0.7, add_node_rate=0.7
    )
    enc = cppn.cppn_encoding(
        (6, 6, channels), max_hidden=max_hidden, params=params, init_mutations=0
    )
    genomes = init(enc, jax.random.PRNGKey(1), 32)
    vary = jax.jit(enc.vary)
    valid = jax.jit(jax.vmap(lambda g: cppn.is_valid(g, max_hidden, channels)))
    hidden_counts = []
    for i in range(30):
        genomes = vary(jax.random.PRNGKey(100 + i), genomes, genomes, params, jnp.int32(i))
        assert bool(jnp.all(valid(genomes))), f"invalid genome after {i + 1} mutations"
        hidden_counts.append(int(genomes.active.sum()) - 32 * (cppn.NUM_INPUTS + channels))
    assert hidden_counts[-1] > hidden_counts[0]  # nodes are added ...
    assert hidden_counts[-1] <= 32 * max_hidden  # ... never beyond capacity
    assert float(jnp.abs(genomes.weights).max()) <= params.weight_limit
    images = np.asarray(jax.jit(enc.render)(genomes))
    assert images.min() >= 0.0 and images.max() <= 255.0


def test_invalid_genome_is_detected_and_bad_arguments_raise():
    g = jax.jit(cppn.init_one, static_argnums=(1, 2))(jax.random.PRNGKey(0), 3, 1)
    n = g.weights.shape[0]
    cycle = g.replace(connections=g.connections.at[n - 1, 0].set(True))  # output -> input
    assert not bool(cppn.is_valid(cycle, 3, 1))
    with pytest.raises(ValueError, match="max_hidden"):
        cppn.cppn_encoding((4, 4, 1), max_hidden=-1)
    with pytest.raises(ValueError, match="image_shape"):
        cppn.cppn_encoding((4, 4))
    with pytest.raises(TypeError, match="params"):
        cppn.cppn_encoding((4, 4, 1), params=0.5)
