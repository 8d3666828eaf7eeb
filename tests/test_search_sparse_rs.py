"""Sparse-RS as published: the authors' L0 schedule, moves only onto unperturbed positions
(every chain always perturbs d distinct pixels), corner colours that differ from the clean
pixel, and a chain that moves only to a strictly better point."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from strategy_driver import rand_image

from onepixel_jax.search.base import SearchSpace
from onepixel_jax.search.sparse_rs import (
    SCHEDULE_DIVISORS,
    flat_positions,
    moved_pixels,
    moved_table,
    schedule_segment,
    sparse_rs,
)


def authors_alpha(it: int, n_queries: int, p_init: float = 0.3) -> float:
    """The authors' L0 schedule (their p_selection with rescaling), written out in Python."""
    it = int(it / n_queries * 10000)
    for end, q in ((50, 2), (200, 4), (500, 5), (1000, 6), (2000, 8), (4000, 10), (6000, 12),
                   (8000, 15)):  # fmt: skip
        if it <= end:
            return p_init if it == 0 else p_init / q
    return p_init / 20


@pytest.mark.parametrize("n_queries", [10_000, 631, 2_500])
def test_the_schedule_is_the_authors(n_queries):
    steps = np.unique(np.linspace(0, n_queries - 1, 300).astype(int))
    steps = np.union1d(steps, [1, 2, n_queries // 200, n_queries // 200 + 1])
    segment = jax.jit(jax.vmap(lambda t: schedule_segment(t, n_queries)))(jnp.asarray(steps))
    for pixels in (1, 3, 5, 10, 20, 24, 100, 150):
        got = np.asarray(moved_table(pixels))[np.asarray(segment)]
        want = [max(int(authors_alpha(int(t), n_queries) * pixels), 1) for t in steps]
        np.testing.assert_array_equal(got, want)
        assert len(moved_table(pixels)) == len(SCHEDULE_DIVISORS)
    assert int(moved_pixels(jnp.int32(1), 20, n_queries)) == 3  # 0.3 / 2 * 20


def positions(space, genes):
    p = genes.shape[0]
    t = 2 + space.channels
    return np.asarray(flat_positions(space, jnp.asarray(genes).reshape(p, space.pixels, t)))


@pytest.mark.parametrize(
    "h,w,c,d,p,chains", [(6, 6, 3, 5, 12, None), (4, 4, 1, 10, 6, 2), (5, 5, 3, 24, 4, 1),
                         (3, 3, 3, 1, 5, None)],
)  # fmt: skip
def test_moves_never_land_on_a_perturbed_position(h, w, c, d, p, chains):
    """Property over many steps, shapes and keys: each proposal perturbs d distinct positions;
    the moved tuples go to positions the chain did not perturb; the others stay as they were;
    every new colour is a corner different from the clean pixel's colour."""
    space = SearchSpace(d, h, w, c, p, generations=15)
    image = rand_image(h, w, c, seed=d)
    image[::2, ::2] = 255.0 * (np.arange(c) % 2)  # some clean pixels at a corner colour
    strat = sparse_rs(space, chains=chains)
    ask, tell = jax.jit(strat.ask), jax.jit(strat.tell)
    rng = np.random.default_rng(d)
    k = p if chains is None else chains
    for seed in range(2):
        key = jax.random.key(seed)
        genes = strat.initial(key, (), jnp.asarray(image))
        state = strat.init(key, genes, jnp.asarray(rng.random(p), jnp.float32), (),
                           jnp.asarray(image))  # fmt: skip
        for step in range(1, 16):
            cur = np.asarray(state.current)
            prop, state = ask(jax.random.fold_in(key, step), state, ())
            prop = np.asarray(prop)
            pos_new, pos_cur = positions(space, prop), positions(space, cur)
            owner = np.arange(p) % k
            m = int(moved_pixels(jnp.int32(step), d, space.generations + 1))
            for i in range(p):
                assert len(set(pos_new[i])) == d  # d distinct pixels, always
                old = cur[owner[i]].reshape(d, 2 + c)
                new = prop[i].reshape(d, 2 + c)
                kept = np.all(new == old, axis=1)
                moved = ~kept
                assert moved.sum() == min(m, h * w - d) or (h * w - d < m)
                assert not set(pos_new[i][moved]) & set(pos_cur[owner[i]])
                assert set(np.unique(new[moved, 2:])) <= {0.0, 255.0}
                for t in new[moved]:
                    clean = image[int(t[0]), int(t[1])]
                    assert not np.array_equal(t[2:], clean)
            state = tell(jax.random.fold_in(key, step), jnp.asarray(prop),
                         jnp.asarray(rng.random(p), jnp.float32), state, ())  # fmt: skip


def test_a_chain_moves_only_to_a_strictly_better_point():
    space = SearchSpace(3, 6, 6, 3, 6)
    image = jnp.asarray(rand_image(6, 6, 3))
    key = jax.random.key(3)
    for chains, better in ((None, [0]), (2, [0, 1])):
        strat = sparse_rs(space, chains=chains)
        genes = strat.initial(key, (), image)
        state = strat.init(key, genes, jnp.linspace(1.0, 2.0, 6), (), image)
        start = np.asarray(state.current)
        prop, state = strat.ask(key, state, ())
        fit = np.asarray(state.fitness).copy()
        k = fit.shape[0]
        told_fit = np.full(6, 5.0, np.float32)
        told_fit[0] = fit[0] - 0.1  # strictly better for chain 0 (candidate 0)
        if chains:
            told_fit[k] = fit[0] - 0.2  # chain 0's second proposal: its best
        told_fit[1] = fit[1] if chains is None else fit[1] - 0.1  # a tie (None) or better (2)
        told = strat.tell(key, prop, jnp.asarray(told_fit), state, ())
        cur = np.asarray(told.current)
        if chains is None:
            np.testing.assert_array_equal(cur[0], np.asarray(prop)[0])
            np.testing.assert_array_equal(cur[1:], start[1:])  # the tie does not move
        else:
            np.testing.assert_array_equal(cur[0], np.asarray(prop)[2])  # the better of 0, 2
            np.testing.assert_array_equal(cur[1], np.asarray(prop)[1])
        assert sorted(np.flatnonzero(np.any(cur != start, axis=1))) == better
