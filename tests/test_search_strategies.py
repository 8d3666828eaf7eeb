"""The strategies of docs/search.md: scans cover their spaces exactly, the DE variants and
JADE match NumPy references, Sparse-RS follows its schedule, presets and the stall rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import onepixel_jax as opj
from onepixel_jax.search import de
from onepixel_jax.search.base import SearchSpace
from onepixel_jax.search.corner_scan import corner_scan
from onepixel_jax.search.grid_scan import colour_order, grid_scan
from onepixel_jax.search.jade import jade
from onepixel_jax.search.sparse_rs import moved_pixels, sparse_rs


def drive(strategy, key, generations, popsize, fitness_fn=None, image=None):
    """Candidates of ``generations`` steps (initial included), told random fitness; an
    image-aware strategy reads the clean ``image``."""
    rng = np.random.default_rng(0)
    fit = fitness_fn or (lambda g: jnp.asarray(rng.random(popsize), jnp.float32))
    extra = (jnp.asarray(image, jnp.float32),) if strategy.image_aware else ()
    genes = strategy.initial(key, (), *extra)
    state = strategy.init(key, genes, fit(genes), (), *extra)
    out = [np.asarray(genes)]
    ask, tell = jax.jit(strategy.ask), jax.jit(strategy.tell)
    for g in range(1, generations):
        k = jax.random.fold_in(key, g)
        genes, state = ask(k, state, ())
        state = tell(k, genes, fit(genes), state, ())
        out.append(np.asarray(genes))
    return np.concatenate(out), state


def rand_image(h, w, c, seed=5):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c)).astype(np.float32)


@pytest.mark.parametrize("probe", ["farthest", "random"])
@pytest.mark.parametrize("h,w,c,p", [(6, 5, 3, 16), (4, 4, 1, 5), (3, 3, 3, 9)])
def test_corner_scan_visits_every_pixel_and_corner_once(h, w, c, p, probe):
    space = SearchSpace(1, h, w, c, p)
    hw, n = h * w, h * w * 2**c
    pad = -(-hw // p) * p
    steps = (pad + n - hw) // p + 2
    genes, _ = drive(
        corner_scan(space, probe), jax.random.key(0), steps, p, None, rand_image(h, w, c)
    )
    scan = np.concatenate([genes[:hw], genes[pad : pad + n - hw]])
    assert set(np.unique(scan[:, 2:])) <= {0.0, 255.0}
    assert len({tuple(x) for x in scan.tolist()}) == n  # every (pixel, corner) exactly once
    assert len({tuple(x) for x in genes[:hw, :2].tolist()}) == hw  # the probe: every pixel


def test_corner_scan_ranks_pixels_by_their_probe():
    space = SearchSpace(1, 4, 4, 3, 16)
    target = (2, 1)  # the probe of this pixel gets the lowest fitness

    def fit(g):
        g = np.asarray(g)
        return jnp.asarray(np.where((g[:, 0] == 2) & (g[:, 1] == 1), 0.0, 1.0), jnp.float32)

    genes, _ = drive(corner_scan(space), jax.random.key(1), 2, 16, fit, rand_image(4, 4, 3))
    ranked = genes[16:23]  # the first 7 ranked candidates: the other corners of that pixel
    assert np.all(ranked[:, :2] == target)
    assert (
        len(
            {tuple(x) for x in ranked[:, 2:].tolist()}
            | {tuple(genes[:16][(genes[:16, 0] == 2) & (genes[:16, 1] == 1)][0, 2:])}
        )
        == 8
    )


def test_corner_scan_tries_each_pixels_farthest_corner_first():
    """probe="farthest": a pixel's probe is the corner farthest (L1) from its clean colour, and
    its ranked corners follow by decreasing distance (checked against a NumPy loop)."""
    h, w, c, p = 4, 4, 3, 16
    image = rand_image(h, w, c, seed=9)
    corners = np.array([[(k >> b) & 1 for b in range(c)] for k in range(8)]) * 255.0

    def order(r, q):  # NumPy reference: corners by decreasing L1 distance, ties by index
        dist = np.abs(corners - image[r, q]).sum(1)
        return sorted(range(8), key=lambda k: (-dist[k], k))

    target = (1, 2)

    def fit(g):
        g = np.asarray(g)
        hit = (g[:, 0] == target[0]) & (g[:, 1] == target[1])
        return jnp.asarray(np.where(hit, 0.0, 1.0), jnp.float32)

    genes, _ = drive(corner_scan(SearchSpace(1, h, w, c, p)), jax.random.key(4), 2, p, fit, image)
    as_corner = lambda g: int(sum(int(g[2 + b] > 0) << b for b in range(c)))  # noqa: E731
    for g in genes[:p]:  # the probe of every pixel: its farthest corner
        assert as_corner(g) == order(int(g[0]), int(g[1]))[0]
    ranked = genes[p : p + 7]  # the best probe's pixel: its other corners, farthest first
    assert np.all(ranked[:, :2] == target)
    assert [as_corner(g) for g in ranked] == order(*target)[1:]


def test_grid_scan_covers_the_grid():
    space = SearchSpace(2, 3, 2, 3, 10)
    genes, _ = drive(grid_scan(space, 4), jax.random.key(2), 40, 10)
    first = genes[: 6 * 64, :5]
    assert len({tuple(x) for x in first.tolist()}) == 6 * 64
    np.testing.assert_array_equal(genes[:, :5], genes[:, 5:])  # d = 2 repeats the tuple
    cols = np.asarray(colour_order(4, 3))
    assert set(np.unique(cols)) == {0.0, 85.0, 170.0, 255.0}
    assert np.all(np.isin(cols[:8], [0.0, 255.0]))  # corners first


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


def test_paper_preset_is_the_default_de_bit_for_bit():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 6, 6, 3), dtype=np.uint8)
    labels = np.zeros(3, np.int32)

    def model(b):
        return jax.nn.softmax(jnp.stack([b[..., 0].mean((1, 2)), b[..., 2].max((1, 2))], -1) / 30)

    cfgs = [
        opj.AttackConfig(popsize=12, max_iters=4),
        opj.AttackConfig(strategy="paper", popsize=12, max_iters=4),
    ]
    a, b = (opj.attack(jax.random.key(7), model, images, labels, c, progress=False) for c in cfgs)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.fitness_history, b.fitness_history)


def test_config_defaults_and_errors():
    assert (opj.AttackConfig().popsize, opj.AttackConfig().max_iters) == (400, 100)
    fast = opj.AttackConfig(strategy="fast")
    assert fast.budget <= 40_400 and fast.popsize == 64 and fast.stall == 32
    assert opj.AttackConfig(strategy="fast", pixels=3).stall == 64  # Sparse-RS: longer
    assert opj.AttackConfig(strategy="jade", popsize=200).budget == 40_400
    with pytest.raises(ValueError, match="options: strategy 'de' has no option 'levels'"):
        opj.AttackConfig(options=(("levels", 3),))
    with pytest.raises(TypeError, match="options must be a tuple"):
        opj.AttackConfig(options=["dither"])
    with pytest.raises(ValueError, match="stall must be >= 0"):
        opj.AttackConfig(stall=-1)
    with pytest.raises(ValueError, match="mutation must be one of"):
        opj.AttackConfig(mutation="rand3")
