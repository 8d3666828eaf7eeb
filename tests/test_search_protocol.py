"""The common contract of every registered strategy (parametrized over the registry, so a
new strategy gets these tests for free)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import onepixel_jax as opj
from onepixel_jax import search
from onepixel_jax.search.base import SearchSpace

NAMES = search.names()
SPACE = SearchSpace(pixels=2, height=7, width=6, channels=3, popsize=16)
# the clean image that image-aware strategies (Strategy.image_aware) read in initial / init
IMAGE = jnp.asarray(np.random.default_rng(0).integers(0, 256, (7, 6, 3)), jnp.float32)


@functools.cache
def build(name):
    """The strategy and its parameters, built once per name: strategies are pure functions,
    and one instance lets the tests share what a strategy compiles (evosax's CMA-ES jits its
    methods per instance)."""
    method = search.make(name, pixels=SPACE.pixels, popsize=SPACE.popsize)
    strategy = method.build(SPACE.height, SPACE.width, SPACE.channels)
    params = method.params
    if strategy.image_aware:  # the same contract, with the image fixed
        initial, init = strategy.initial, strategy.init
        strategy = strategy._replace(
            initial=lambda key, params: initial(key, params, IMAGE),
            init=lambda key, genes, fitness, params: init(key, genes, fitness, params, IMAGE),
        )
    return strategy, params


def toy_fitness(genes):
    """A smooth fitness of the genes (lower is better), independent of any model."""
    return jnp.sum((genes[:, :2] - 3.0) ** 2, axis=1) + 0.001 * jnp.sum(genes[:, 2:5], axis=1)


def run_generations(strategy, params, key, steps=4):
    genes = strategy.initial(key, params)
    state = strategy.init(key, genes, toy_fitness(genes), params)
    out = [genes]
    for g in range(1, steps):
        k = jax.random.fold_in(key, g)
        genes, state = strategy.ask(k, state, params)
        state = strategy.tell(k, genes, toy_fitness(genes), state, params)
        out.append(genes)
    return out, state


def test_registry_has_the_paper_methods():
    assert {"de", "random"} <= set(NAMES)
    with pytest.raises(ValueError, match="strategy must be one of"):
        search.get("no-such-strategy")


@pytest.mark.parametrize("name", NAMES)
def test_shapes_bounds_and_state_structure(name):
    strategy, params = build(name)
    gens, state = run_generations(strategy, params, jax.random.key(0))
    lo, hi = (np.asarray(b) for b in SPACE.bounds())
    for genes in gens:
        g = np.asarray(genes)
        assert g.shape == (SPACE.popsize, SPACE.num_genes) and g.dtype == np.float32
        assert np.all(g >= lo - 1e-6) and np.all(g <= hi + 1e-6)
    # the state keeps its structure and shapes across tell (a while_loop carry needs that)
    genes = strategy.initial(jax.random.key(1), params)
    s0 = strategy.init(jax.random.key(1), genes, toy_fitness(genes), params)
    s1 = strategy.tell(jax.random.key(2), genes, toy_fitness(genes), s0, params)
    assert jax.tree_util.tree_structure(s0) == jax.tree_util.tree_structure(s1)
    for a, b in zip(jax.tree_util.tree_leaves(s0), jax.tree_util.tree_leaves(s1), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_a_key_and_jit_equal(name):
    strategy, params = build(name)
    a, _ = run_generations(strategy, params, jax.random.key(3))
    b, _ = run_generations(strategy, params, jax.random.key(3))
    c, _ = run_generations(strategy, params, jax.random.key(4))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert any(not np.array_equal(np.asarray(x), np.asarray(z)) for x, z in zip(a, c, strict=True))
    k = jax.random.key(5)
    genes = strategy.initial(k, params)
    state = strategy.init(k, genes, toy_fitness(genes), params)
    eager, _ = strategy.ask(k, state, params)
    jitted, _ = jax.jit(strategy.ask)(k, state, params)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_nan_fitness_is_never_preferred(name):
    strategy, params = build(name)
    k = jax.random.key(6)
    genes = strategy.initial(k, params)
    fit = jnp.full((SPACE.popsize,), jnp.nan).at[0].set(0.5)
    state = strategy.init(k, genes, fit, params)
    # then a generation whose every candidate is NaN: tell must not prefer any of them
    k2 = jax.random.fold_in(k, 1)
    asked, asked_state = strategy.ask(k2, state, params)
    told = strategy.tell(k2, asked, jnp.full((SPACE.popsize,), jnp.nan), asked_state, params)
    for tree in (state, told):
        for leaf in jax.tree_util.tree_leaves(tree):
            if jnp.issubdtype(leaf.dtype, jnp.floating):
                assert not np.any(np.isnan(np.asarray(leaf))), "NaN fitness leaked into the state"
    if hasattr(told, "population"):  # the one member with a finite fitness keeps its place
        np.testing.assert_array_equal(np.asarray(told.population[0]), np.asarray(genes[0]))
        assert float(told.fitness[0]) == 0.5


def needle(batch):
    """Class 1 iff some pixel has red far above green (any location)."""
    diff = (batch[..., 0] - batch[..., 1]) / 255.0
    a = jnp.max(diff, axis=(1, 2))
    return jax.nn.softmax(jnp.stack([jnp.full_like(a, 4.0), 8.0 * a], -1), -1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("early_stop", [None, "success"])
def test_through_the_engine_budget_result_type_and_determinism(name, early_stop):
    images = np.full((5, 7, 6, 3), 100, np.uint8)
    labels = np.zeros(5, np.int32)
    cfg = opj.AttackConfig(
        strategy=name, pixels=1, popsize=16, max_iters=6, early_stop=early_stop, batch_size=2
    )
    res = opj.attack(jax.random.key(0), needle, images, labels, cfg)
    again = opj.attack(jax.random.key(0), needle, images, labels, cfg)
    assert isinstance(res, opj.AttackResult)
    assert res.pixels.shape == (5, 1, 5) and res.fitness_history.shape == (5, 7)
    assert np.all(res.queries % cfg.popsize == 0)
    assert np.all(res.queries >= cfg.popsize) and np.all(res.queries <= cfg.budget)
    if early_stop is None:
        np.testing.assert_array_equal(res.queries, cfg.budget)
    np.testing.assert_array_equal(res.pixels, again.pixels)
    np.testing.assert_array_equal(res.queries, again.queries)
    probs = np.asarray(needle(jnp.asarray(res.adversarial, jnp.float32)))
    np.testing.assert_array_equal(res.success, probs.argmax(1) != labels)
