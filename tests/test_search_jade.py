"""JADE adapts mu_F (Lehmer mean) and mu_CR from its successful children and archives the
parents they replace."""

import jax
import jax.numpy as jnp
import numpy as np

from onepixel_jax.search.base import SearchSpace
from onepixel_jax.search.jade import jade


def test_jade_adapts_from_successful_children():
    space = SearchSpace(1, 6, 6, 3, 10)
    strat = jade(space)
    key = jax.random.key(4)
    genes = strat.initial(key, ())
    state = strat.init(key, genes, jnp.ones(10), strat.default_params)
    kids, state = strat.ask(jax.random.fold_in(key, 1), state, strat.default_params)
    f, cr = np.asarray(state.F), np.asarray(state.CR)
    assert np.all((f >= 0.05) & (f <= 1)) and np.all((cr >= 0) & (cr <= 1))
    fit = jnp.where(jnp.arange(10) < 4, 0.5, 2.0)  # children 0..3 improve, the rest lose
    told = strat.tell(jax.random.fold_in(key, 1), kids, fit, state, strat.default_params)
    lehmer = np.sum(f[:4] ** 2) / np.sum(f[:4])
    np.testing.assert_allclose(float(told.mu_F), 0.9 * 0.5 + 0.1 * lehmer, rtol=1e-5)
    np.testing.assert_allclose(float(told.mu_CR), 0.9 * 0.5 + 0.1 * cr[:4].mean(), rtol=1e-5)
    assert int(told.archive_size) == 4
    np.testing.assert_array_equal(np.asarray(told.archive[:4]), np.asarray(genes[:4]))
    np.testing.assert_array_equal(np.asarray(told.population[:4]), np.asarray(kids[:4]))
