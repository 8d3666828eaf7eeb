"""The presets (``paper``, ``fast``), the stall rule through the engine and AttackConfig's
defaults and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import onepixel_jax as opj


def flat(batch):
    """A model no pixel can fool: the true class keeps probability ~1 whatever the input."""
    return jax.nn.softmax(jnp.zeros((batch.shape[0], 3)).at[:, 0].set(9.0), -1)


def test_stall_rule_gives_up_and_is_off_in_the_paper_preset():
    images = np.full((3, 5, 5, 3), 90, np.uint8)
    labels = np.zeros(3, np.int32)
    base = dict(popsize=8, max_iters=20, early_stop="success")
    key = jax.random.key(0)
    stalled = opj.attack(
        key, flat, images, labels, opj.AttackConfig(**base, stall=3), progress=False
    )
    np.testing.assert_array_equal(stalled.queries, 8 * 4)  # generations 0..3, no gain since 0
    for strategy in ("paper", "de"):
        full = opj.attack(
            key, flat, images, labels, opj.AttackConfig(strategy=strategy, **base), progress=False
        )
        np.testing.assert_array_equal(full.queries, 8 * 21)
    assert opj.AttackConfig(strategy="paper").stall == 0
    assert opj.AttackConfig(strategy="fast").stall > 0


CORNER = jnp.zeros((8, 8)).at[:2, :2].set(jnp.array([[1.0, 0.8], [0.6, 0.4]]))


def corner_red(batch):
    """Red at the top-left 2x2 pixels lowers p_true; every other pixel ties with the clean
    image, so a parent and its child often have equal fitness (the selection rule matters)."""
    s = jnp.max(CORNER[None] * (batch[..., 0] - 100.0), axis=(1, 2)) / 40.0
    return jax.nn.softmax(jnp.stack([jnp.full_like(s, 6.0), s], -1), -1)


def test_the_paper_preset_sets_both_strict_selection_and_redraw():
    """The preset equals DE with both settings, and differs from DE with either one alone: a
    preset that dropped one of them (or both) fails here. Whether each rule is right is
    checked against NumPy in test_search_de.py and through the engine in test_engine.py."""
    images = np.full((3, 8, 8, 3), 100, np.uint8)
    labels = np.zeros(3, np.int32)

    def run(strategy, **options):
        cfg = opj.AttackConfig(
            strategy=strategy, popsize=12, max_iters=6, options=tuple(options.items())
        )
        return opj.attack(jax.random.key(7), corner_red, images, labels, cfg, progress=False)

    paper = run("paper")
    both = run("de", selection="strict", bounds="redraw")
    np.testing.assert_array_equal(paper.pixels, both.pixels)
    np.testing.assert_array_equal(paper.fitness_history, both.fitness_history)
    for one in (dict(selection="strict"), dict(bounds="redraw")):  # bounds clip / ties
        other = run("de", **one)
        assert not np.array_equal(paper.fitness_history, other.fitness_history), one


def test_config_defaults_and_errors():
    assert (opj.AttackConfig().popsize, opj.AttackConfig().max_iters) == (400, 100)
    from onepixel_jax.search.fast import setting

    fast = opj.AttackConfig(strategy="fast")
    one, three = setting(1), setting(3)
    assert fast.budget <= 40_400 and fast.popsize == 64
    assert fast.stall == one.stall > one.switch  # given up only after the colour phase
    fast3 = opj.AttackConfig(strategy="fast", pixels=3)
    assert fast3.stall == 0 and fast3.budget == three.budget < 40_400  # Sparse-RS: a budget
    assert opj.AttackConfig(strategy="jade", popsize=200).budget == 40_400
    with pytest.raises(ValueError, match="options: strategy 'de' has no option 'levels'"):
        opj.AttackConfig(options=(("levels", 3),))
    with pytest.raises(TypeError, match="options must be a tuple"):
        opj.AttackConfig(options=["dither"])
    with pytest.raises(ValueError, match="stall must be >= 0"):
        opj.AttackConfig(stall=-1)
    with pytest.raises(ValueError, match="mutation must be one of"):
        opj.AttackConfig(mutation="rand3")


def test_the_paper_preset_ignores_the_de_knobs():
    plain = opj.AttackConfig(strategy="paper", popsize=12, max_iters=4)
    knobs = opj.AttackConfig(
        strategy="paper", popsize=12, max_iters=4, F=1.5, crossover=0.9, mutation="best1",
        sampler="corners",
    )  # fmt: skip
    assert plain.method() == knobs.method()  # same options and the paper's F = 0.5, CR = 0
    assert float(knobs.method().params.F) == 0.5
    images = np.random.default_rng(2).integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
    a, b = (
        opj.attack(jax.random.key(3), flat_ish, images, np.zeros(2, int), c, progress=False)
        for c in (plain, knobs)
    )
    np.testing.assert_array_equal(a.pixels, b.pixels)
    # while "de" does take them
    assert opj.AttackConfig(strategy="de", F=1.5).method() != opj.AttackConfig().method()


def flat_ish(batch):
    return jax.nn.softmax(jnp.stack([batch[..., 0].mean((1, 2)), batch[..., 2].max((1, 2))], -1))


def test_fast_builds_the_corner_scan_at_d1_and_sparse_rs_beyond():
    """fast's search phase is the corner scan (d = 1) or one-chain Sparse-RS (d > 1): its
    first candidates are theirs, under the same key."""
    from onepixel_jax import search
    from onepixel_jax.search.corner_scan import corner_scan
    from onepixel_jax.search.fast import setting
    from onepixel_jax.search.sparse_rs import sparse_rs

    image = jnp.asarray(np.random.default_rng(0).integers(0, 256, (6, 6, 3)), jnp.float32)
    key = jax.random.key(1)
    one = search.make("fast", pixels=1)
    fast1 = one.build(6, 6, 3)
    assert fast1.image_aware and one.popsize == 64
    np.testing.assert_array_equal(
        np.asarray(fast1.initial(key, one.params, image)),
        np.asarray(corner_scan(one.space(6, 6, 3)).initial(key, (), image)),
    )
    three = search.make("fast", pixels=3)
    fast3 = three.build(6, 6, 3)
    assert fast3.image_aware and setting(3).chains == 1
    np.testing.assert_array_equal(
        np.asarray(fast3.initial(key, three.params, image)),
        np.asarray(sparse_rs(three.space(6, 6, 3), chains=1).initial(key, (), image)),
    )
