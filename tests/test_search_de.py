import jax
import jax.numpy as jnp
import numpy as np
import pytest

from onepixel_jax.search import de
from onepixel_jax.search.base import SearchSpace

SPACE = SearchSpace(pixels=1, height=6, width=5, channels=3, popsize=10)


def test_sample_indices_distinct_and_uniform():
    p = 6
    draws = np.stack(
        [np.asarray(de.sample_indices(jax.random.key(s), p, 3)) for s in range(400)]
    )  # (400, P, 3)
    own = np.arange(p)[None, :, None]
    assert np.all(draws != own), "an index equal to the member itself was drawn"
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert np.all(draws[..., a] != draws[..., b]), "indices of one member must be distinct"
    # every other member is equally likely in every slot: expected 400 / 5 = 80 per cell
    for slot in range(3):
        for i in range(p):
            counts = np.bincount(draws[:, i, slot], minlength=p)
            others = np.delete(counts, i)
            assert counts[i] == 0 and others.min() > 45 and others.max() < 120


def test_sample_indices_needs_four_members():
    with pytest.raises(ValueError, match="popsize"):
        de.sample_indices(jax.random.key(0), 3, 3)


def np_rand1(pop, idx, f):
    out = np.empty_like(pop)
    for i in range(len(pop)):
        r1, r2, r3 = idx[i]
        out[i] = pop[r1] + f * (pop[r2] - pop[r3])
    return out


def np_select(parents, parent_fit, children, child_fit):
    pop, fit = parents.copy(), parent_fit.copy()
    for i in range(len(pop)):
        cf = np.inf if np.isnan(child_fit[i]) else child_fit[i]
        if cf <= fit[i]:
            pop[i], fit[i] = children[i], cf
    return pop, fit


@pytest.mark.parametrize("jit", [False, True])
def test_mutation_and_selection_match_numpy(jit):
    rng = np.random.default_rng(0)
    pop = rng.normal(size=(10, 5)).astype(np.float32)
    idx = np.stack([rng.choice(np.delete(np.arange(10), i), 3, replace=False) for i in range(10)])
    mutate = jax.jit(de.mutate) if jit else de.mutate
    got = np.asarray(mutate(jnp.asarray(pop), jnp.asarray(idx), 0.5))
    np.testing.assert_allclose(got, np_rand1(pop, idx, 0.5), rtol=1e-6)

    best = 4
    got_b = np.asarray(mutate(jnp.asarray(pop), jnp.asarray(idx), 0.7, jnp.int32(best)))
    ref_b = pop[best][None] + 0.7 * (pop[idx[:, 0]] - pop[idx[:, 1]])
    np.testing.assert_allclose(got_b, ref_b, rtol=1e-6)

    algo = de.differential_evolution(SearchSpace(1, 8, 8, 3, 10))
    params = de.DEParams()
    key = jax.random.key(0)
    parent_fit = rng.uniform(size=10).astype(np.float32)
    child_fit = rng.uniform(size=10).astype(np.float32)
    child_fit[0] = np.nan  # NaN is the worst value: parent kept
    child_fit[1] = parent_fit[1]  # tie: the child wins
    children = rng.normal(size=(10, 5)).astype(np.float32)
    state = algo.init(key, jnp.asarray(pop), jnp.asarray(parent_fit), params)
    tell = jax.jit(algo.tell) if jit else algo.tell
    new = tell(key, jnp.asarray(children), jnp.asarray(child_fit), state, params)
    ref_pop, ref_fit = np_select(pop, parent_fit, children, child_fit)
    np.testing.assert_array_equal(np.asarray(new.population), ref_pop)
    np.testing.assert_array_equal(np.asarray(new.fitness), ref_fit)


def test_ask_is_rand1_with_clipping_and_jit_equal():
    space = SearchSpace(pixels=1, height=4, width=4, channels=2, popsize=8)
    algo = de.differential_evolution(space)
    lo, hi = (np.asarray(b) for b in space.bounds())
    pop = jnp.asarray(np.random.default_rng(2).uniform(-1, 5, size=(8, 4)), jnp.float32)
    params = de.DEParams(F=0.5)
    key = jax.random.key(7)
    state = algo.init(key, pop, jnp.zeros(8), params)
    eager, _ = algo.ask(key, state, params)
    jitted, _ = jax.jit(algo.ask)(key, state, params)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), rtol=1e-6, atol=1e-6)
    # reproduce with the same indices the ask drew (same key split as inside ask)
    k_idx, _ = jax.random.split(jax.random.split(key)[1])
    idx = np.asarray(de.sample_indices(k_idx, 8, 3))
    ref = np.clip(np_rand1(np.asarray(pop), idx, 0.5), lo, hi)
    np.testing.assert_allclose(np.asarray(eager), ref, rtol=1e-6)


def test_best1_uses_the_best_member():
    algo = de.differential_evolution(SPACE, mutation="best1")
    rng = np.random.default_rng(3)
    pop = jnp.asarray(rng.uniform(0, 4, size=(10, 5)), jnp.float32)
    fit = jnp.asarray(rng.uniform(size=10), jnp.float32).at[6].set(-1.0)
    key = jax.random.key(1)
    state = algo.init(key, pop, fit, de.DEParams())
    children, _ = algo.ask(key, state, de.DEParams(F=0.5))
    k_idx, _ = jax.random.split(jax.random.split(key)[1])
    idx = np.asarray(de.sample_indices(k_idx, 10, 3))
    ref = np.asarray(pop)[6] + 0.5 * (np.asarray(pop)[idx[:, 0]] - np.asarray(pop)[idx[:, 1]])
    lo, hi = (np.asarray(b) for b in SPACE.bounds())
    np.testing.assert_allclose(np.asarray(children), np.clip(ref, lo, hi), rtol=1e-6)


def test_binomial_crossover_rate_and_forced_gene():
    p, d = 4000, 10
    parents = jnp.zeros((p, d))
    mutants = jnp.ones((p, d))
    for rate in (0.0, 0.3, 0.9):
        out = np.asarray(de.binomial_crossover(jax.random.key(1), parents, mutants, rate))
        assert np.all(out.sum(axis=1) >= 1), "at least one gene comes from the mutant"
        expected = rate + (1 - rate) / d  # the forced gene adds (1 - rate) / d
        assert abs(out.mean() - expected) < 0.01


def test_unknown_mutation_rejected():
    with pytest.raises(ValueError, match="mutation"):
        de.differential_evolution(SPACE, mutation="rand2x")


@pytest.mark.parametrize("jit", [False, True])
def test_de_variants_match_numpy(jit):
    rng = np.random.default_rng(0)
    pop = rng.normal(size=(8, 5)).astype(np.float32)
    fit = rng.random(8).astype(np.float32)
    idx = np.stack([rng.choice(np.delete(np.arange(8), i), 5, replace=False) for i in range(8)])
    fn = jax.jit(de.mutate_variant, static_argnums=0) if jit else de.mutate_variant
    b = int(np.argmin(fit))
    want = {
        "current_to_best1": pop + 0.5 * (pop[b] - pop) + 0.5 * (pop[idx[:, 0]] - pop[idx[:, 1]]),
        "rand2": pop[idx[:, 0]]
        + 0.5 * (pop[idx[:, 1]] - pop[idx[:, 2]])
        + 0.5 * (pop[idx[:, 3]] - pop[idx[:, 4]]),
        "best1": pop[b] + 0.5 * (pop[idx[:, 0]] - pop[idx[:, 1]]),
    }
    for name, ref in want.items():
        got = fn(name, jnp.asarray(pop), jnp.asarray(fit), jnp.asarray(idx), 0.5)
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-6)


def test_de_rand2_needs_six_members():
    with pytest.raises(ValueError, match="popsize must be at least 6"):
        de.differential_evolution(SearchSpace(1, 4, 4, 3, 5), "rand2")


def test_strict_selection_keeps_the_parent_on_ties():
    state = de.DEState(population=jnp.zeros((4, 5)), fitness=jnp.array([0.5, 0.5, 0.5, jnp.inf]))
    child = jnp.array([0.4, 0.5, 0.6, jnp.nan])
    np.testing.assert_array_equal(np.asarray(de.select(state, child)), [True, True, False, True])
    np.testing.assert_array_equal(
        np.asarray(de.select(state, child, "strict")), [True, False, False, False]
    )


def test_redraw_replaces_only_out_of_range_genes_uniformly_inside_the_box():
    space = SearchSpace(pixels=1, height=6, width=5, channels=3, popsize=4000)
    lo, hi = (np.asarray(b) for b in space.bounds())
    rng = np.random.default_rng(0)
    genes = rng.uniform(lo - 50, hi + 50, size=(4000, 5)).astype(np.float32)
    out = np.asarray(de.handle_bounds(space, jnp.asarray(genes), "redraw", jax.random.key(1)))
    inside = (genes >= lo) & (genes <= hi)
    np.testing.assert_array_equal(out[inside], genes[inside])  # in range: untouched
    assert np.all((out >= lo) & (out <= hi))
    # redrawn values are uniform over each gene's range (not piled on the bounds)
    redrawn = out[:, 2][~inside[:, 2]]
    assert len(redrawn) > 500
    assert np.mean(redrawn == 0.0) + np.mean(redrawn == 255.0) < 0.01
    assert abs(np.mean(redrawn) - 127.5) < 10
    clipped = np.asarray(de.handle_bounds(space, jnp.asarray(genes), "clip"))
    np.testing.assert_array_equal(clipped, np.clip(genes, lo, hi))


def test_the_paper_preset_is_strict_with_redraw():
    import onepixel_jax as opj

    paper = opj.search.make("paper")
    assert dict(paper.options) == {"bounds": "redraw"}
    assert dict(opj.search.make("paper", bounds="clip").options) == {"bounds": "clip"}
    strategy = paper.build(6, 5, 3)
    pop = jnp.asarray(np.random.default_rng(0).uniform(0, 4, (10, 5)), jnp.float32)
    state = strategy.init(jax.random.key(0), pop, jnp.full((10,), 0.5), paper.params)
    told = strategy.tell(jax.random.key(1), pop + 1.0, jnp.full((10,), 0.5), state, paper.params)
    np.testing.assert_array_equal(np.asarray(told.population), np.asarray(pop))  # ties: parents
    with pytest.raises(ValueError, match="bounds must be one of"):
        opj.search.make("paper", bounds="wrap")
