"""The incremental target against the full forward: every zoo architecture (committed
checkpoints and random networks at other widths, ResNet included), d = 1, 3, 5 with border,
corner, overlapping and repeated tuples; the engine's choice (auto, forced, off, the one-line
error), the fallback of a model that cannot run on windows, chunks, and attacks with and
without it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from incremental_cases import TOL, assert_close, compare, images

import onepixel_jax as opj
from onepixel_jax.targets import incremental, patched_forward
from onepixel_jax.zoo import architectures as arch
from onepixel_jax.zoo.checkpoints import make_predict_fn

DN = ("NHWC", "HWIO", "NHWC")

# --------------------------------------------------------------------------------------
# Plan


def test_plan_counts_allconv():
    predict_fn, card = opj.models.load("allconv-cifar10")
    p = incremental.plan(predict_fn, card.input_shape, 1)
    convs = [op for op in p.ops if op.primitive == "conv_general_dilated"]
    first = convs[0]
    assert first.full_cost == 32 * 32 * 9 * 3 * 24 and first.window == (3, 3)
    assert first.window_cost == 3 * 3 * 9 * 3 * 24 and first.windowed
    full, inc = incremental.macs(predict_fn, card.input_shape, 1)
    assert full == sum(op.full_cost for op in p.ops if op.macs)
    assert inc < full / 5  # about 5.3x fewer multiply-adds for one pixel
    assert incremental.macs(predict_fn, card.input_shape, 5)[1] > inc
    for d in (1, 3, 5):
        modes = [op.windowed for op in incremental.plan(predict_fn, card.input_shape, d).ops]
        convs = [m for m, op in zip(modes, p.ops, strict=False) if op.macs]
        assert convs == sorted(convs, reverse=True)  # once full, full to the end


# --------------------------------------------------------------------------------------
# Random zoo networks (variables drawn directly: no compiled init)


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
        if name in ("var", "scale"):
            return rng.uniform(0.5, 1.5, leaf.shape)
        return rng.normal(0.0, 0.1, leaf.shape)  # bias, mean

    return jax.tree_util.tree_map_with_path(
        lambda p, leaf: jnp.asarray(draw(p, leaf), jnp.float32), dict(tree)
    )


def _random_zoo(name, seed=5, **fields):
    module = arch.create(name, **fields)
    shape = arch.ARCHITECTURES[name].input_shape
    variables = _random_variables(module, shape, seed)
    params = variables["params"]
    last = sorted(k for k in params if k.startswith("Dense"))[-1:] or ["Conv_0"]
    layer = params[last[0]]  # logits of the size a trained network gives (a few units)
    params[last[0]] = {**layer, "kernel": layer["kernel"] * (0.05 if name == "alexnet" else 0.5)}
    return make_predict_fn(module, variables, shape), shape


# --------------------------------------------------------------------------------------
# Probabilities against the full forward

CHECKPOINTS = {  # {d: candidates per image}, two images each
    "allconv-cifar10": {1: 250, 3: 150, 5: 120},
    "lenet-mnist": {1: 300, 5: 200},
    "vgg16-cifar10": {1: 500},
    "resnet20-cifar10": {1: 300, 3: 200},
}


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_checkpoint_probs_equal_full_forward(name):
    predict_fn, card = opj.models.load(name)
    target = incremental.incremental_target(predict_fn, chunks=1)
    got, want = compare(target, predict_fn, images(card.input_shape, 0), CHECKPOINTS[name], 1)
    assert_close(got, want, 1000)


RANDOM = [  # (architecture, module fields, {d: candidates per image})
    ("alexnet", dict(width=0.03125, num_classes=10), {1: 500}),  # 227x227, LRN, groups
    ("allconv", dict(width=0.25, batch_norm=True), {3: 500}),
    ("nin", dict(width=0.125, batch_norm=False), {5: 500}),
    ("vgg16", dict(width=0.0625, batch_norm=False), {5: 500}),
    ("digits-cnn", dict(width=2.0, batch_norm=True), {3: 500}),
    ("resnet", dict(width=0.25), {1: 300, 5: 200}),
]


@pytest.mark.parametrize("name, fields, per_d", RANDOM, ids=[r[0] for r in RANDOM])
def test_random_zoo_networks_equal_full_forward(name, fields, per_d):
    """Every architecture at another width than its checkpoint, random weights."""
    predict_fn, shape = _random_zoo(name, **fields)
    target = incremental.incremental_target(predict_fn, chunks=1)
    got, want = compare(target, predict_fn, images(shape, 2), per_d, 3)
    assert_close(got, want, 1000)


def test_resnet_runs_its_residual_blocks_on_windows():
    predict_fn, shape = _random_zoo("resnet", width=0.25, blocks=1)
    p = incremental.plan(predict_fn, shape, 1)
    windowed = [p.graph.eqns[i].name for i in p.steps]
    assert windowed.count("conv_general_dilated") >= 4
    union = [s for s in p.steps.values() if isinstance(s.info, tuple) and "read" in s.info]
    assert union  # an addition reading the shortcut on the main branch's region
    full, inc = incremental.macs(predict_fn, shape, 1)
    assert inc < 0.8 * full


# --------------------------------------------------------------------------------------
# The engine's choice


def _flatten_first(x):
    """A model whose first operation merges the spatial axes: nothing runs on windows."""
    w = jnp.ones((int(np.prod(x.shape[1:])), 10), jnp.float32) / 1e4
    return jax.nn.softmax(x.reshape(x.shape[0], -1) @ w)


def test_select_auto_on_off():
    allconv, card = opj.models.load("allconv-cifar10")
    digits, _ = opj.models.load("digits-cnn")
    target = incremental.select(allconv, 1, None)
    assert target is not None and target is incremental.select(allconv, 1, True)
    assert incremental.select(allconv, 1, False) is None
    assert incremental.select(digits, 1, None) is None  # too small to pay
    assert incremental.select(digits, 1, True) is not None
    assert incremental.select(_flatten_first, 1, None, image_shape=(8, 8, 3)) is None
    with pytest.raises(ValueError, match="'reshape' merging the spatial axes") as err:
        incremental.select(_flatten_first, 1, True, image_shape=(8, 8, 3))
    assert "\n" not in str(err.value) and "incremental=None or False" in str(err.value)
    sort_first = lambda x: _flatten_first(jnp.sort(x, axis=1))  # noqa: E731
    assert incremental.blocker(sort_first, (8, 8, 3)) == "unknown primitive 'sort'"
    with pytest.raises(TypeError, match="incremental"):
        incremental.select(allconv, 1, "yes")
    with pytest.raises(TypeError, match="incremental"):
        opj.AttackConfig(incremental="yes")
    assert incremental.pays_off(allconv, card.input_shape, 1)
    assert not incremental.pays_off(allconv, card.input_shape, 40)


def test_select_without_shape_decides_when_traced():
    """A function without ``input_shape``: ``None`` gives a target that is the full forward
    where windows cannot run; ``True`` raises when the target is traced."""
    imgs = images((8, 8, 3), 0)
    pix = jnp.asarray(np.random.default_rng(0).integers(0, 8, (2, 5, 1, 5)), jnp.int32)
    auto = incremental.select(_flatten_first, 1, None)
    assert auto is not None
    got = jax.jit(auto.evaluate)(jax.jit(auto.prepare)(imgs), imgs, pix)
    want = patched_forward(_flatten_first).evaluate((), imgs, pix)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    forced = incremental.select(_flatten_first, 1, True)
    with pytest.raises(ValueError, match="'reshape' merging the spatial axes"):
        jax.jit(forced.prepare)(imgs)


def test_model_materialised_midway_equals_full_forward():
    """Global pooling and flatten in the middle, a dense layer over space: the walker
    materialises there and the result equals the full forward."""
    rng = np.random.default_rng(1)
    k1 = jnp.asarray(rng.normal(0, 0.3, (3, 3, 3, 4)), jnp.float32)
    dense = jnp.asarray(rng.normal(0, 0.05, (16 * 16 * 4 + 4, 6)), jnp.float32)

    def fn(x):
        y = jax.lax.conv_general_dilated(x / 255.0, k1, (1, 1), "SAME", dimension_numbers=DN)
        y = jax.nn.relu(y)
        se = jax.nn.sigmoid(y.mean(axis=(1, 2), keepdims=True))  # squeeze-excitation
        y = y * se
        flat = jnp.concatenate([y.reshape(y.shape[0], -1), se[:, 0, 0]], axis=1)
        return jax.nn.softmax(flat @ dense)

    target = incremental.incremental_target(fn, chunks=1)
    got, want = compare(target, fn, images((16, 16, 3), 1), {2: 300}, 2)
    assert_close(got, want, 600)


def test_evaluate_recomputes_the_cache_for_another_d():
    predict_fn, card = opj.models.load("digits-cnn")
    target = incremental.for_predict_fn(predict_fn)  # prepared for d = 1
    got, want = compare(target, predict_fn, images(card.input_shape, 4), {4: 200}, 5)
    assert_close(got, want, 400)


def test_chunks_split_the_candidates_without_changing_results():
    """Three uneven chains, more chains than candidates: the full forward's probabilities
    (within float rounding), in the candidates' order."""
    predict_fn, card = opj.models.load("digits-cnn")
    imgs = images(card.input_shape, 4)
    pix = jnp.asarray(np.random.default_rng(5).integers(0, 8, (2, 7, 2, 3)), jnp.int32)
    full = np.asarray(patched_forward(predict_fn).evaluate((), imgs, pix))
    outs = {}
    for chunks, p in ((3, pix), (5, pix[:, :2])):
        target = incremental.incremental_target(predict_fn, pixels=2, chunks=chunks)
        outs[chunks] = np.asarray(jax.jit(target.evaluate)(target.prepare(imgs), imgs, p))
    assert outs[3].shape == (2, 7, 10) and outs[5].shape == (2, 2, 10)
    np.testing.assert_allclose(outs[3], full, rtol=0, atol=TOL)
    np.testing.assert_allclose(outs[5], full[:, :2], rtol=0, atol=TOL)
    assert incremental.default_chunks() >= 1
    with pytest.raises(ValueError, match="chunks"):
        incremental.incremental_target(predict_fn, chunks=0)


def test_cache_bytes_of_a_zoo_network():
    predict_fn, card = opj.models.load("allconv-cifar10")
    cache = jax.jit(incremental.for_predict_fn(predict_fn).prepare)(images(card.input_shape, 0, 1))
    held = sum(int(np.prod(a.shape[1:])) * a.dtype.itemsize for a in cache)
    assert held == incremental.cache_bytes(predict_fn, card.input_shape, 1) > 0


# --------------------------------------------------------------------------------------
# The engine


def test_attack_same_results_as_full_forward():
    """LeNet on greyscale images given without a channel axis: same pixels, success and
    queries with and without the incremental target."""
    predict_fn, _ = opj.models.load("lenet-mnist")
    rng = np.random.default_rng(7)
    imgs = rng.integers(0, 256, (3, 28, 28)).astype(np.uint8)
    labels = np.asarray(predict_fn(jnp.asarray(imgs, jnp.float32))).argmax(1).astype(np.int32)
    res = {}
    for mode in (True, False):
        cfg = opj.AttackConfig(popsize=40, max_iters=4, incremental=mode)
        res[mode] = opj.attack(jax.random.key(1), predict_fn, imgs, labels, cfg, progress=False)
    np.testing.assert_array_equal(res[True].pixels, res[False].pixels)
    np.testing.assert_array_equal(res[True].success, res[False].success)
    np.testing.assert_array_equal(res[True].queries, res[False].queries)
    np.testing.assert_allclose(res[True].fitness_history, res[False].fitness_history, atol=TOL)
