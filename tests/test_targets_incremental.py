"""The incremental target against the full forward: window arithmetic against brute force, the
layer programs against the zoo modules, probabilities of thousands of candidates (borders,
corners, d = 1, 2, 3, 5, repeated and overlapping tuples) on every committed checkpoint and on
random networks at other widths, and attacks with and without it."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import onepixel_jax as opj
from onepixel_jax.perturb import apply_pixels_np
from onepixel_jax.targets import cones, incremental
from onepixel_jax.zoo import architectures as arch
from onepixel_jax.zoo.checkpoints import load_variables, make_predict_fn, model_from_card

TOL = 1e-5


# --------------------------------------------------------------------------------------
# Window arithmetic


def test_reach_and_window_against_brute_force():
    for n, k, s, pad in itertools.product((5, 8, 13), (1, 2, 3, 5, 11), (1, 2, 4), (0, 1, 2)):
        if n + 2 * pad < k:
            continue
        n_out = cones.out_size(n, k, s, pad, pad)
        for size in (1, 2, 3):
            bound = cones.window_size(size, k, s, n_out)
            for lo in range(n - size + 1):
                hi = lo + size - 1
                hits = [o for o in range(n_out) if o * s - pad <= hi and o * s - pad + k - 1 >= lo]
                o_lo, o_hi = (int(v) for v in cones.reach(lo, hi, k, s, pad, n_out))
                # exact when reached; when strides skip the range, at most one spare output
                assert list(range(o_lo, o_hi + 1)) == hits or (not hits and o_hi - o_lo < 1)
                assert len(hits) <= bound
                start = int(cones.window_start(o_lo, bound, n_out))
                assert 0 <= start and start + bound <= n_out
                assert all(start <= o < start + bound for o in hits)


def test_plan_counts_allconv():
    variables, card = load_variables("allconv-cifar10")
    net = incremental.from_flax(model_from_card(card), variables, card.input_shape)
    first = incremental.plan(net, 1)[0]
    assert first.full_macs == 32 * 32 * 9 * 3 * 24 and first.window == (3, 3)
    assert first.window_macs == 3 * 3 * 9 * 3 * 24 and first.incremental
    full, inc = incremental.macs(net, 1)
    assert full == sum(p.full_macs for p in incremental.plan(net, 1) if "conv" in p.kind)
    assert inc < full / 5  # about 5.3x fewer multiply-adds for one pixel
    assert incremental.macs(net, 5)[1] > inc
    for d in (1, 3, 5):
        modes = [p.incremental for p in incremental.plan(net, d)]
        assert modes == sorted(modes, reverse=True)  # once full, full to the end


# --------------------------------------------------------------------------------------
# Random networks (variables drawn directly: no compiled init)


def _random_variables(module, shape, seed):
    """Variables of ``module`` with He-scaled normal kernels, small biases and, with batch
    norm, non-trivial running statistics and affine parameters."""
    tree = jax.eval_shape(lambda: arch.init_variables(module, shape, jax.random.PRNGKey(0)))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return rng.normal(0.0, np.sqrt(2.0 / fan_in), leaf.shape)
        if name == "var":
            return rng.uniform(0.5, 1.5, leaf.shape)
        if name == "scale":
            return rng.uniform(0.5, 1.5, leaf.shape)
        return rng.normal(0.0, 0.1, leaf.shape)  # bias, mean

    return jax.tree_util.tree_map_with_path(
        lambda p, leaf: jnp.asarray(draw(p, leaf), jnp.float32), dict(tree)
    )


# --------------------------------------------------------------------------------------
# Probabilities against the full forward


def _candidates(rng, h, w, c, d, count, *, borders):
    """``(count, d, 2 + C)`` int32 tuples: with ``borders``, border pixels first (all of them,
    or the corners and evenly spaced ones when there are more than ``count``); then half
    uniform, half clustered (tuples within 3 pixels of the first, cones overlapping) with
    repeated coordinates (a tuple re-written with another value) and corners."""
    out = []
    if borders:
        edge = [(r, q) for r in range(h) for q in range(w) if r in (0, h - 1) or q in (0, w - 1)]
        corners = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)]
        if len(edge) > count:
            edge = corners + edge[:: -(-len(edge) // (count - 4))]
        for r, col in edge:
            t = np.zeros((d, 2 + c), np.int64)
            t[:, 0], t[:, 1] = rng.integers(0, h, d), rng.integers(0, w, d)
            t[0, :2] = (r, col)
            t[:, 2:] = rng.integers(0, 256, (d, c))
            out.append(t)
    while len(out) < count:
        t = np.zeros((d, 2 + c), np.int64)
        t[:, 2:] = rng.integers(0, 256, (d, c))
        if len(out) % 2 == 0:
            t[:, 0], t[:, 1] = rng.integers(0, h, d), rng.integers(0, w, d)
        else:
            r0, c0 = rng.integers(0, h), rng.integers(0, w)
            t[:, 0] = np.clip(r0 + rng.integers(-3, 4, d), 0, h - 1)
            t[:, 1] = np.clip(c0 + rng.integers(-3, 4, d), 0, w - 1)
            for j in range(1, d):
                if rng.random() < 0.3:
                    t[j, :2] = t[rng.integers(0, j), :2]
            if rng.random() < 0.2:  # a corner
                t[-1, :2] = (rng.choice([0, h - 1]), rng.choice([0, w - 1]))
        out.append(t)
    return np.asarray(out[:count] if not borders else out, np.int32)


def _compare(predict_fn, target, images, per_d, seed):
    """Incremental probabilities of ``per_d`` = {d: count} candidates on each image against
    ``predict_fn`` on the patched images (one reference call)."""
    rng = np.random.default_rng(seed)
    s, h, w, c = images.shape
    cache = jax.jit(target.prepare)(images)
    got, want_images = [], []
    for d, count in per_d.items():
        pix = np.stack([_candidates(rng, h, w, c, d, count, borders=d == 1) for _ in range(s)])
        probs = jax.jit(target.evaluate)(cache, images, jnp.asarray(pix))
        got.append(np.asarray(probs).reshape(s * pix.shape[1], -1))
        for i in range(s):
            want_images += [apply_pixels_np(np.asarray(images[i]), t) for t in pix[i]]
    want = np.asarray(jax.jit(predict_fn)(jnp.asarray(np.stack(want_images))))
    return np.concatenate(got), want


def _probs_images(shape, seed, count=2):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, 256, (count, *shape)), jnp.float32)


CHECKPOINTS = {  # {d: candidates per image}, two images each: 2,000 or more per network
    "digits-cnn": {1: 400, 3: 400, 5: 400},
    "lenet-mnist": {1: 400, 3: 400, 5: 400},
    "allconv-cifar10": {1: 400, 3: 300, 5: 300},
    "nin-cifar10": {1: 400, 3: 300, 5: 300},
    "vgg16-cifar10": {1: 400, 3: 300, 5: 300},
}


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_checkpoint_probs_equal_full_forward(name):
    predict_fn, card = opj.models.load(name)
    target = incremental.for_predict_fn(predict_fn)
    images = _probs_images(card.input_shape, 0)
    got, want = _compare(predict_fn, target, images, CHECKPOINTS[name], 1)
    assert got.shape == want.shape and got.shape[0] >= 2000
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


RANDOM_NETS = [  # (architecture, module fields, {d: candidates})
    ("alexnet", dict(width=0.0625, num_classes=10), {1: 60, 3: 30}),  # 227x227, LRN, groups
    ("allconv", dict(width=0.5, batch_norm=False), {2: 150}),
    ("nin", dict(width=0.125, batch_norm=False), {1: 150}),
    ("vgg16", dict(width=0.0625, batch_norm=False), {1: 150}),
    ("lenet", dict(width=0.5, batch_norm=True), {3: 150}),
    ("digits-cnn", dict(width=2.0, batch_norm=True), {5: 150}),
]


def test_random_networks_probs_equal_full_forward():
    """Every architecture at another width than its checkpoint (batch norm flipped), random
    weights; AlexNet at 227x227."""
    for name, kwargs, per_d in RANDOM_NETS:
        module = arch.create(name, **kwargs)
        shape = arch.ARCHITECTURES[name].input_shape
        variables = _random_variables(module, shape, 5)
        last = "Dense_2" if name == "alexnet" else None
        if last:  # logits of the size a trained network gives (about +-10)
            dense = variables["params"][last]
            variables["params"][last] = {"kernel": dense["kernel"] * 0.05, "bias": dense["bias"]}
        predict_fn = make_predict_fn(module, variables, shape)
        target = incremental.for_predict_fn(predict_fn)
        got, want = _compare(predict_fn, target, _probs_images(shape, 2, 1), per_d, 3)
        assert np.abs(np.log(want)).max() > 1.0  # not uniform
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


# --------------------------------------------------------------------------------------
# The engine


def test_attack_same_results_as_full_forward():
    """LeNet on greyscale images given without a channel axis: same pixels, success and
    queries with and without the incremental target."""
    predict_fn, _ = opj.models.load("lenet-mnist")
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (3, 28, 28)).astype(np.uint8)
    labels = np.asarray(predict_fn(jnp.asarray(images, jnp.float32))).argmax(1).astype(np.int32)
    res = {}
    for mode in (True, False):
        cfg = opj.AttackConfig(popsize=40, max_iters=4, incremental=mode)
        res[mode] = opj.attack(jax.random.key(1), predict_fn, images, labels, cfg, progress=False)
    np.testing.assert_array_equal(res[True].pixels, res[False].pixels)
    np.testing.assert_array_equal(res[True].success, res[False].success)
    np.testing.assert_array_equal(res[True].queries, res[False].queries)
    np.testing.assert_allclose(res[True].fitness_history, res[False].fitness_history, atol=TOL)


def test_select_auto_on_off():
    allconv, _ = opj.models.load("allconv-cifar10")
    digits, _ = opj.models.load("digits-cnn")
    assert incremental.select(allconv, 1, None) is incremental.for_predict_fn(allconv)
    assert incremental.select(allconv, 1, False) is None
    assert incremental.select(digits, 1, None) is None  # too small to pay
    assert incremental.select(digits, 1, True) is not None
    assert incremental.select(lambda b: b, 1, None) is None
    with pytest.raises(ValueError, match="zoo model"):
        incremental.select(lambda b: b, 1, True)
    with pytest.raises(TypeError, match="incremental"):
        opj.AttackConfig(incremental="yes")


def test_chunks_split_the_candidates_without_changing_results():
    """One chain, three uneven chains, more chains than candidates: the same probabilities
    (within float rounding), in the candidates' order."""
    predict_fn, card = opj.models.load("digits-cnn")
    net = incremental._network_of(predict_fn)
    images = _probs_images(card.input_shape, 4)
    rng = np.random.default_rng(5)
    h, w, c = card.input_shape
    pix = jnp.asarray(np.stack([_candidates(rng, h, w, c, 2, 7, borders=False) for _ in range(2)]))
    outs = {}
    for chunks, p in ((1, pix), (3, pix), (5, pix[:, :2])):
        target = incremental.incremental_target(net, chunks=chunks)
        outs[chunks] = np.asarray(jax.jit(target.evaluate)(target.prepare(images), images, p))
    assert outs[1].shape == (2, 7, 10) and outs[5].shape == (2, 2, 10)
    np.testing.assert_allclose(outs[3], outs[1], rtol=0, atol=TOL)
    np.testing.assert_allclose(outs[5], outs[1][:, :2], rtol=0, atol=TOL)
    assert incremental.default_chunks() >= 1
    with pytest.raises(ValueError, match="chunks"):
        incremental.incremental_target(net, chunks=0)
