"""Polynomial mutation and the direct encoding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from onepixel_jax.fooling import direct


def numpy_polynomial_delta(u, x, lo, hi, eta):
    """Independent NumPy transcription of bounded polynomial mutation (per element)."""
    out = np.empty_like(x, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        xv, uv = float(x[idx]), float(u[idx])
        d1, d2 = (xv - lo) / (hi - lo), (hi - xv) / (hi - lo)
        if uv < 0.5:
            val = 2 * uv + (1 - 2 * uv) * (1 - d1) ** (eta + 1)
            out[idx] = val ** (1 / (eta + 1)) - 1
        else:
            val = 2 * (1 - uv) + 2 * (uv - 0.5) * (1 - d2) ** (eta + 1)
            out[idx] = 1 - val ** (1 / (eta + 1))
    return out


def test_delta_matches_numpy_reference():
    rng = np.random.default_rng(1)
    u = rng.random(500).astype(np.float32)
    x = (rng.random(500) * 255).astype(np.float32)
    x[:5] = [0.0, 255.0, 0.0, 255.0, 127.5]
    for eta in (1.0, 15.0, 30.0):
        got = np.asarray(direct.polynomial_delta(jnp.asarray(u), jnp.asarray(x), 0.0, 255.0, eta))
        np.testing.assert_allclose(got, numpy_polynomial_delta(u, x, 0.0, 255.0, eta), atol=2e-5)


@pytest.mark.parametrize("use_jit", [False, True])
def test_rate_bounds_and_step_size_statistics(use_jit):
    n = 200_000
    x = jnp.full((n,), 127.5, jnp.float32)
    mutate = jax.jit(direct.polynomial_mutation) if use_jit else direct.polynomial_mutation
    y = np.asarray(mutate(jax.random.PRNGKey(0), x, 0.1, 15.0))
    changed = y != 127.5
    # Binomial(n, 0.1): sd = sqrt(n * 0.09) ~ 134; allow 5 sd.
    assert abs(changed.sum() - 0.1 * n) < 5 * np.sqrt(n * 0.09)
    assert y.min() >= 0.0 and y.max() <= 255.0
    step = (y[changed] - 127.5) / 255.0
    # Far from the bounds the step has density (eta + 1) / 2 (1 - |d|)^eta on [-1, 1]:
    # symmetric, E|d| = 1 / (eta + 2), E d^2 = 2 / ((eta + 2)(eta + 3)).
    m = step.size
    assert abs(step.mean()) < 5 * np.sqrt(2 / (17 * 18) / m)
    assert abs(np.abs(step).mean() - 1 / 17) < 0.002
    assert abs((step**2).mean() - 2 / (17 * 18)) < 0.0007


def test_bounds_respected_at_the_edges_and_rate_extremes():
    x = jnp.concatenate([jnp.zeros(5000), jnp.full(5000, 255.0), jnp.full(5000, 1.0)])
    y = np.asarray(direct.polynomial_mutation(jax.random.PRNGKey(3), x, 1.0, 2.0))
    assert y.min() >= 0.0 and y.max() <= 255.0
    assert np.mean(y[:5000] > 0) > 0.4  # moves away from a bound it sits on
    unchanged = direct.polynomial_mutation(jax.random.PRNGKey(3), x, 0.0, 15.0)
    np.testing.assert_array_equal(np.asarray(unchanged), np.asarray(x))


def test_rate_schedule_and_crossover():
    params = direct.DirectParams(mutation_rate=0.2, rate_decay=0.5, min_rate=0.03)
    rates = [float(direct.mutation_rate_at(params, g)) for g in range(5)]
    np.testing.assert_allclose(rates, [0.2, 0.1, 0.05, 0.03, 0.03], rtol=1e-6)

    enc = direct.direct_encoding((4, 4, 1), direct.DirectParams(mutation_rate=0.0))
    a, b = jnp.zeros((200, 4, 4, 1)), jnp.full((200, 4, 4, 1), 255.0)
    key = jax.random.PRNGKey(0)
    no_cross = enc.vary(key, a, b, enc.params, jnp.int32(0))
    np.testing.assert_array_equal(np.asarray(no_cross), 0.0)
    crossed = np.asarray(
        enc.vary(key, a, b, direct.DirectParams(mutation_rate=0.0, crossover_rate=1.0), 0)
    )
    assert set(np.unique(crossed)) == {0.0, 255.0}
    assert abs((crossed == 255.0).mean() - 0.5) < 0.03  # 3200 genes, sd ~ 0.009


def test_encoding_init_and_bad_arguments():
    enc = direct.direct_encoding((5, 6, 3))
    g = np.asarray(enc.init(jax.random.PRNGKey(0), 7))
    assert g.shape == (7, 5, 6, 3) and g.dtype == np.float32
    assert 0.0 <= g.min() and g.max() <= 255.0 and g.std() > 50
    np.testing.assert_array_equal(np.asarray(enc.render(jnp.asarray(g))), np.round(g))
    with pytest.raises(ValueError, match="image_shape"):
        direct.direct_encoding((5, 6, 2))
    with pytest.raises(TypeError, match="params"):
        direct.direct_encoding((5, 6, 1), params={"mutation_rate": 0.1})
    with pytest.raises(ValueError, match="hi"):
        direct.polynomial_mutation(jax.random.PRNGKey(0), jnp.zeros(3), 0.1, 15.0, lo=1.0, hi=1.0)
