"""The grid scan covers its colour grid at every pixel, corners first."""

import jax
import numpy as np
from strategy_driver import drive

from onepixel_jax.search.base import SearchSpace
from onepixel_jax.search.grid_scan import colour_order, grid_scan


def test_grid_scan_covers_the_grid():
    space = SearchSpace(2, 3, 2, 3, 10)
    genes, _ = drive(grid_scan(space, 4), jax.random.key(2), 40, 10)
    first = genes[: 6 * 64, :5]
    assert len({tuple(x) for x in first.tolist()}) == 6 * 64
    np.testing.assert_array_equal(genes[:, :5], genes[:, 5:])  # d = 2 repeats the tuple
    cols = np.asarray(colour_order(4, 3))
    assert set(np.unique(cols)) == {0.0, 85.0, 170.0, 255.0}
    assert np.all(np.isin(cols[:8], [0.0, 255.0]))  # corners first
