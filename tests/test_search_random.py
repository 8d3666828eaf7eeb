"""Random search: independent draws from the initial sampler, checked against the analytic
success probability of a model that flips on one known event."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import norm

import onepixel_jax as opj
from onepixel_jax.search.base import SearchSpace
from onepixel_jax.search.random import random_search

H = W = 4
POP, ITERS = 10, 5  # 60 candidates per image


def flips_on_red_corner(batch):
    """Class 1 exactly when pixel (0, 0) has red > 200 (colours are integers)."""
    p1 = jax.nn.sigmoid(50.0 * (batch[:, 0, 0, 0] - 200.25))
    return jnp.stack([1.0 - p1, p1], axis=-1)


def attack(sampler: str, n: int):
    images = np.zeros((n, H, W, 3), np.float32)
    labels = np.zeros(n, np.int32)
    cfg = opj.AttackConfig(
        strategy="random",
        popsize=POP,
        max_iters=ITERS,
        sampler=sampler,
        early_stop="success",
        incremental=False,
    )
    return opj.attack(jax.random.key(1), flips_on_red_corner, images, labels, cfg, progress=False)


def check_rate(res, p_event: float, n: int):
    """Successes within the first population and within the whole budget against
    1 - (1 - p)^k for independent draws (4 standard deviations)."""
    success = np.asarray(res.success)
    queries = np.asarray(res.queries)
    for k, observed in ((POP, success & (queries <= POP)), (POP * (ITERS + 1), success)):
        expected = 1.0 - (1.0 - p_event) ** k
        sd = np.sqrt(n * expected * (1.0 - expected))
        assert abs(observed.sum() - n * expected) < 4 * sd, (k, observed.sum(), n * expected)


def test_random_search_draws_independently_paper_sampler():
    # coordinates: each of the 16 positions with probability 1/16; red: round(clip(N(128,
    # 127))) > 200, i.e. the normal draw >= 200.5
    n = 2000
    p_event = (1 / (H * W)) * norm.sf((200.5 - 128.0) / 127.0)
    res = attack("paper", n)
    check_rate(res, p_event, n)
    # a failed image spent the whole budget, a success a whole number of generations
    q = np.asarray(res.queries)
    assert np.all(q[~np.asarray(res.success)] == POP * (ITERS + 1))
    assert np.all(q % POP == 0) and q.min() >= POP


def test_random_search_draws_independently_corner_sampler():
    n = 2000
    p_event = (1 / (H * W)) * 0.5  # red is 0 or 255 with equal chance
    res = attack("corners", n)
    check_rate(res, p_event, n)
    fooled = np.asarray(res.pixels)[np.asarray(res.success)]
    assert np.all(fooled[..., 2:] % 255 == 0)  # only corner colours


def test_random_search_ignores_fitness_and_state():
    space = SearchSpace(1, H, W, 3, POP)
    strat = random_search(space)
    key = jax.random.key(3)
    genes = strat.initial(key, ())
    state = strat.init(key, genes, jnp.ones(POP), ())
    a, state_a = strat.ask(jax.random.fold_in(key, 1), state, ())
    told = strat.tell(key, a, jnp.zeros(POP), state_a, ())
    b, _ = strat.ask(jax.random.fold_in(key, 1), told, ())
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # same key, same draw
    c, _ = strat.ask(jax.random.fold_in(key, 2), told, ())
    assert not np.array_equal(np.asarray(a), np.asarray(c))  # a new key, a new draw
    assert not np.array_equal(np.asarray(a), np.asarray(genes))  # not the initial population
