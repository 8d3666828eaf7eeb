"""Sparse-RS follows its schedule, moves corner pixels and keeps a chain's point unless the
proposal is not worse."""

import jax
import jax.numpy as jnp
import numpy as np

from onepixel_jax.search.base import SearchSpace
from onepixel_jax.search.sparse_rs import moved_pixels, sparse_rs


def test_sparse_rs_schedule_and_moves():
    assert [int(moved_pixels(jnp.int32(t), 5, 1000)) for t in (0, 1, 5, 20)] == [
        2,
        1,
        1,
        1,
    ]
    assert int(moved_pixels(jnp.int32(0), 10, 1000)) == 3
    assert int(moved_pixels(jnp.int32(999), 1, 1000)) == 1
    space = SearchSpace(5, 8, 8, 3, 12)
    strat = sparse_rs(space, horizon=1000)
    key = jax.random.key(3)
    genes = strat.initial(key, ())
    state = strat.init(key, genes, jnp.ones(12), ())
    prop, state2 = strat.ask(jax.random.fold_in(key, 1), state, ())
    changed = np.any(np.asarray(prop).reshape(12, 5, 5) != np.asarray(genes).reshape(12, 5, 5), -1)
    assert np.all(changed.sum(1) <= 2) and int(state2.step) == 1
    assert set(np.unique(np.asarray(prop)[:, 2::5])) <= {0.0, 255.0}
    told = strat.tell(key, prop, jnp.full((12,), 2.0).at[0].set(0.5), state2, ())
    np.testing.assert_array_equal(np.asarray(told.current[0]), np.asarray(prop[0]))
    np.testing.assert_array_equal(np.asarray(told.current[1:]), np.asarray(genes[1:]))
