"""The jaxpr walker and the window domain: cone tables against brute force, the flat graph
against the function, and small random networks that exercise each supported operation
(strides, dilations, groups, depthwise, odd and non-square sizes, every padding form, max,
average and generic pooling, residual additions with and without projection, concatenation,
channel-only operations, spatial pads and crops, NCHW layout, full-extent constants) written
in plain JAX, Flax nnx and Equinox, against the full forward, windows forced everywhere
(``max_fraction=inf``) and with the default plan."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from incremental_cases import assert_close, compare, images
from jax import lax

from onepixel_jax.targets import cones, incremental, interpret, windows

DN = ("NHWC", "HWIO", "NHWC")

# --------------------------------------------------------------------------------------
# Cone tables


def _brute_reach(lo, hi, n_in, k, s, pad, dil, n_out):
    hits = [
        o
        for o in range(n_out)
        if any(
            lo <= o * s - pad + t * dil <= hi and 0 <= o * s - pad + t * dil < n_in
            for t in range(k)
        )
    ]
    return (hits[0], hits[-1]) if hits else None


def test_reach_union_window_against_brute_force():
    for n, k, s, pad, dil in itertools.product(
        (5, 8, 13), (1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2)
    ):
        n_out = cones.out_size(n, k, s, pad, pad, dil)
        if n_out < 1:
            continue
        for width in (1, 2, 4):
            lo = np.clip(np.arange(n) - width // 2, 0, n - 1)
            hi = np.clip(lo + width - 1, 0, n - 1)
            r_lo, r_hi = cones.reach(lo, hi, n, k, s, pad, dil, n_out)
            for p in range(n):
                want = _brute_reach(lo[p], hi[p], n, k, s, pad, dil, n_out)
                got = None if r_lo[p] > r_hi[p] else (r_lo[p], r_hi[p])
                assert got == want, (n, k, s, pad, dil, width, p)
            size, starts = cones.window(r_lo, r_hi, n_out)
            assert 1 <= size <= n_out
            for p in range(n):
                assert 0 <= starts[p] <= n_out - size
                if r_lo[p] <= r_hi[p]:
                    assert starts[p] <= r_lo[p] and r_hi[p] < starts[p] + size
    a = (np.array([0, 3, 5]), np.array([1, 2, 6]))  # the middle one is empty
    b = (np.array([2, 1, 9]), np.array([2, 1, 8]))  # the last one is empty
    lo, hi = cones.union(a, b)
    assert lo.tolist() == [0, 1, 5] and hi.tolist() == [2, 1, 6]


# --------------------------------------------------------------------------------------
# The flat graph


def test_trace_inlines_nested_calls_and_walks_to_the_same_values():
    @jax.custom_jvp
    def soft(x):
        return jnp.log1p(jnp.exp(x))

    soft.defjvp(lambda p, t: (soft(p[0]), t[0] * jax.nn.sigmoid(p[0])))

    @jax.custom_vjp
    def twice(x):
        return 2.0 * x

    twice.defvjp(lambda x: (twice(x), None), lambda _, g: (2.0 * g,))

    @jax.jit
    def inner(x):
        return jax.checkpoint(lambda y: jnp.sin(y) + jnp.clip(y, 0, 6))(x)

    def fn(x):
        return twice(soft(inner(x))).sum(axis=(1, 2))

    x = jnp.linspace(-3, 3, 2 * 4 * 5 * 3).reshape(2, 4, 5, 3)
    graph = interpret.trace(fn, x)
    names = {e.name for e in graph.eqns}
    assert not names & {"jit", "pjit", "custom_jvp_call", "custom_vjp_call", "remat2"}
    out, _ = interpret.walk(graph, [x], interpret.concrete_domain())
    np.testing.assert_allclose(out[0], fn(x), rtol=1e-6)


# --------------------------------------------------------------------------------------
# Small random networks in plain JAX


def _w(rng, *shape):
    return jnp.asarray(rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape), jnp.float32)


def _head(w, y):
    """Global average pool and the dense layer ``w`` ``(C, K)`` to probabilities."""
    return jax.nn.softmax(y.mean(axis=(1, 2)) @ w * 2.0)


def net_conv_forms(seed=0):
    """Strides, dilation, SAME (asymmetric), VALID, explicit and negative padding, a 1x1,
    a non-square kernel, groups and depthwise convolutions, bias as a broadcast constant."""
    rng = np.random.default_rng(seed)
    w1, w2, w3, w4 = (
        _w(rng, 5, 5, 3, 8),
        _w(rng, 3, 3, 4, 8),
        _w(rng, 3, 2, 8, 8),
        _w(rng, 3, 3, 1, 8),
    )
    w5, b1 = _w(rng, 1, 1, 8, 6), jnp.asarray(rng.normal(0, 0.1, 8), jnp.float32)
    tail = _w(np.random.default_rng(seed + 1), 6, 7)

    def fn(x):
        y = (x - 127.5) / 64.0
        y = jax.nn.relu(lax.conv_general_dilated(y, w1, (2, 1), "SAME", dimension_numbers=DN) + b1)
        y = jnp.tanh(
            lax.conv_general_dilated(
                y,
                w2,
                (1, 1),
                "VALID",
                rhs_dilation=(2, 1),
                dimension_numbers=DN,
                feature_group_count=2,
            )
        )
        y = jax.nn.relu(
            lax.conv_general_dilated(y, w3, (1, 2), ((2, 0), (0, 1)), dimension_numbers=DN)
        )
        y = lax.conv_general_dilated(
            y, w4, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN, feature_group_count=8
        )
        y = lax.conv_general_dilated(
            jax.nn.gelu(y), w5, (1, 1), ((-1, 1), (1, -1)), dimension_numbers=DN
        )
        return _head(tail, y)

    return fn


def net_pools_and_channels(seed=0):
    """Max pooling with padding, flax's average pooling (a sum then a division), a generic
    reduce_window, local response norm (channel pad, slices, pow), channel split and concatenate,
    dot_general over channels, select_n, clamp, a full-extent constant (a mean image)."""
    from onepixel_jax.zoo.architectures import local_response_norm

    rng = np.random.default_rng(seed)
    w1, w2, dense = _w(rng, 3, 3, 3, 6), _w(rng, 3, 3, 6, 6), _w(rng, 6, 6)
    mean_image = jnp.asarray(rng.uniform(100, 150, (23, 19, 3)), jnp.float32)
    tail = _w(np.random.default_rng(seed + 1), 6, 7)

    def fn(x):
        y = (x - mean_image) / 60.0
        y = jax.nn.relu(lax.conv_general_dilated(y, w1, (1, 1), "SAME", dimension_numbers=DN))
        y = lax.reduce_window(
            y, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
        )
        y = local_response_norm(y, size=3, alpha=0.1)
        a, b = jnp.split(y, [2], axis=-1)
        y = jnp.concatenate([jnp.where(a > 0.1, a, 0.5 * a), jnp.clip(b, -1.0, 1.0)], axis=-1)
        y = jnp.einsum("bhwc,cd->bhwd", y, dense)
        y = lax.conv_general_dilated(y, w2, (1, 1), ((1, 1), (0, 2)), dimension_numbers=DN)
        y = (
            lax.reduce_window(
                y, 0.0, lax.add, (1, 2, 3, 1), (1, 1, 2, 1), ((0, 0), (0, 1), (1, 0), (0, 0))
            )
            / 6
        )
        y = lax.reduce_window(y, 0.0, lambda p, q: p + 0.5 * q, (1, 2, 2, 1), (1, 1, 1, 1), "VALID")
        return _head(tail, jax.nn.sigmoid(y) + y**2)

    return fn


def net_residual(seed=0):
    """Residual additions with an identity and with a strided 1x1 projection shortcut, a
    concatenation of two branches with different cones, and an addition of a branch with the
    network's input."""
    rng = np.random.default_rng(seed)
    ws = [_w(rng, 3, 3, 3, 6), _w(rng, 3, 3, 6, 6), _w(rng, 3, 3, 6, 6), _w(rng, 3, 3, 6, 8)]
    wp, w5, w6 = _w(rng, 1, 1, 6, 8), _w(rng, 5, 5, 8, 4), _w(rng, 1, 1, 8, 4)
    w4 = _w(rng, 3, 3, 8, 8)
    w0 = _w(rng, 3, 3, 3, 3)
    tail = _w(np.random.default_rng(seed + 1), 8, 7)

    def conv(y, w, s=1, pad="SAME"):
        return lax.conv_general_dilated(y, w, (s, s), pad, dimension_numbers=DN)

    def fn(x):
        x = x / 128.0 - 1.0
        x = x + jnp.tanh(conv(x, w0))  # a branch added to the input
        y = jax.nn.relu(conv(x, ws[0]))
        y = jax.nn.relu(y + conv(jax.nn.relu(conv(y, ws[1])), ws[2]))  # identity shortcut
        z = conv(jax.nn.relu(conv(y, ws[3], 2, ((1, 1), (1, 1)))), w4)
        y = jax.nn.relu(z + conv(y, wp, 2, "VALID"))  # projection shortcut
        y = jnp.concatenate([conv(y, w5), conv(y, w6)], axis=-1)  # branches, other cones
        return _head(tail, y)

    return fn


def net_nchw(seed=0):
    """A PyTorch-style model: the input transposed to NCHW, OIHW kernels, bias as (1, C, 1, 1),
    max pooling over the last two axes, a transpose that swaps height and width, then a
    channels-first reshape that keeps both spatial axes."""
    rng = np.random.default_rng(seed)
    w1 = jnp.asarray(rng.normal(0, 0.3, (6, 3, 3, 3)), jnp.float32)
    w2 = jnp.asarray(rng.normal(0, 0.3, (4, 6, 2, 3)), jnp.float32)
    b1 = jnp.asarray(rng.normal(0, 0.1, (6,)), jnp.float32)
    tail = _w(np.random.default_rng(seed + 1), 2, 7)
    nchw = ("NCHW", "OIHW", "NCHW")

    def fn(x):
        y = jnp.transpose(x / 255.0, (0, 3, 1, 2))
        y = lax.conv_general_dilated(y, w1, (1, 1), ((1, 1), (1, 1)), dimension_numbers=nchw)
        y = jax.nn.relu(y + b1[None, :, None, None])
        y = lax.reduce_window(y, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        y = jnp.swapaxes(y, 2, 3)  # (B, C, W, H)
        y = lax.conv_general_dilated(y, w2, (2, 1), ((0, 1), (1, 1)), dimension_numbers=nchw)
        y = y.reshape(y.shape[0], 2, 2, *y.shape[2:]).sum(axis=1)  # channel groups
        return _head(tail, jnp.transpose(y, (0, 2, 3, 1)))

    return fn


def net_pads_and_crops(seed=0):
    """Explicit spatial padding (TensorFlow-style SAME before a VALID convolution, a constant
    other than zero, a negative pad that crops) and spatial slices."""
    rng = np.random.default_rng(seed)
    w1, w2 = _w(rng, 4, 4, 3, 6), _w(rng, 3, 3, 6, 6)
    tail = _w(np.random.default_rng(seed + 1), 6, 7)

    def fn(x):
        y = jnp.pad(x / 255.0, ((0, 0), (1, 2), (2, 1), (0, 0)))
        y = jax.nn.relu(lax.conv_general_dilated(y, w1, (2, 2), "VALID", dimension_numbers=DN))
        y = lax.pad(y, jnp.float32(0.5), ((0, 0, 0), (2, -1, 0), (-1, 3, 0), (1, 0, 0)))[..., 1:]
        y = lax.conv_general_dilated(y[:, 1:-1, 2:, :], w2, (1, 1), "SAME", dimension_numbers=DN)
        return _head(tail, jnp.tanh(y))

    return fn


def net_unknown_op(seed=0):
    """A primitive the rules do not know (sort along channels) between two convolutions, and
    a spatial pad: the walker materialises there and runs the rest in full."""
    rng = np.random.default_rng(seed)
    w1, w2 = _w(rng, 3, 3, 3, 5), _w(rng, 3, 3, 5, 5)
    tail = _w(np.random.default_rng(seed + 1), 5, 7)

    def fn(x):
        y = jax.nn.relu(
            lax.conv_general_dilated(x / 255.0, w1, (1, 1), "SAME", dimension_numbers=DN)
        )
        y = jnp.sort(y, axis=-1)
        y = jnp.pad(y, ((0, 0), (1, 2), (0, 1), (0, 0)), mode="edge")
        return _head(tail, lax.conv_general_dilated(y, w2, (1, 1), "VALID", dimension_numbers=DN))

    return fn


PLAIN = {  # name: (factory, image shape (H, W, C), {d: candidates per image}, windowed primitives)
    "conv_forms": (net_conv_forms, (21, 17, 3), {1: 300, 3: 200}, {"conv_general_dilated"}),
    "pools_and_channels": (
        net_pools_and_channels,
        (23, 19, 3),
        {1: 300, 5: 150},
        {
            "reduce_window_max",
            "reduce_window_sum",
            "reduce_window",
            "dot_general",
            "concatenate",
            "pad",
        },
    ),
    "residual": (net_residual, (24, 24, 3), {3: 300}, {"add", "concatenate"}),
    "nchw": (
        net_nchw,
        (20, 16, 3),
        {1: 300, 3: 200},
        {"transpose", "reshape", "reduce_window_max"},
    ),
    "unknown_op": (net_unknown_op, (16, 16, 3), {3: 300}, {"conv_general_dilated"}),
    "pads_and_crops": (net_pads_and_crops, (19, 22, 3), {1: 300, 3: 200}, {"pad", "slice"}),
}


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_networks_equal_full_forward(name):
    """Windows forced wherever the rules allow (``max_fraction=inf``): every rule runs, on
    windows up to the whole map (clamped at the borders)."""
    factory, shape, per_d, prims = PLAIN[name]
    fn = factory()
    p = incremental.plan(fn, shape, min(per_d), max_fraction=math.inf)
    windowed = {p.graph.eqns[i].name for i in p.steps}
    assert prims <= windowed, prims - windowed
    target = incremental.incremental_target(fn, max_fraction=math.inf, chunks=1)
    got, want = compare(target, fn, images(shape, 3), per_d, 4)
    assert_close(got, want, 2 * sum(per_d.values()))


@pytest.mark.parametrize("name, d", [("residual", 5), ("conv_forms", 1)])
def test_default_plan_equals_full_forward(name, d):
    """The default plan: windows where they pay, the full map from there (materialised in the
    middle of a branch)."""
    factory, shape, _, _ = PLAIN[name]
    fn = factory()
    p = incremental.plan(fn, shape, d)
    assert p.steps and any(
        not op.windowed for op in p.ops if op.primitive == "conv_general_dilated"
    )
    target = incremental.incremental_target(fn, pixels=d, chunks=1)
    got, want = compare(target, fn, images(shape, 5), {d: 300}, 6)
    assert_close(got, want, 600)


def test_residual_reads_a_union_of_cones():
    """The identity shortcut's window is read on the main branch's (larger) region."""
    fn = net_residual()
    p = incremental.plan(fn, (24, 24, 3), 1, max_fraction=math.inf)
    reads = [s for i, s in p.steps.items() if isinstance(s.info, tuple) and "read" in s.info]
    assert any(p.graph.eqns[i].name == "add" for i, s in p.steps.items() if s in reads)


def test_unjitted_evaluation_equals_full_forward():
    rng = np.random.default_rng(2)
    w1, tail = _w(rng, 3, 3, 3, 4), _w(rng, 4, 5) * 4.0

    def fn(x):
        y = lax.conv_general_dilated(x / 255.0, w1, (2, 2), "SAME", dimension_numbers=DN)
        return _head(tail, jax.nn.relu(y))

    target = incremental.incremental_target(fn, max_fraction=math.inf, chunks=1)
    got, want = compare(target, fn, images((11, 9, 3), 5, 1), {2: 6}, 6, jit=False)
    assert_close(got, want, 6)


def test_greyscale_model_without_channel_axis():
    """A function that only accepts (B, H, W): traced without the channel axis."""
    rng = np.random.default_rng(0)
    w1, tail = _w(rng, 3, 3, 1, 4), _w(np.random.default_rng(1), 4, 7)

    def fn(x):
        if x.ndim != 3:
            raise ValueError("expects (B, H, W)")
        y = lax.conv_general_dilated(x[..., None] / 255.0, w1, (1, 1), "SAME", dimension_numbers=DN)
        return _head(tail, jax.nn.relu(y))

    p = incremental.plan(fn, (14, 14, 1), 1)
    assert p.graph.shape(p.graph.inputs[0]) == (1, 14, 14)
    target = incremental.incremental_target(fn, max_fraction=math.inf, chunks=1)
    got, want = compare(target, fn, images((14, 14, 1), 0), {1: 200, 3: 100}, 1, channel_axis=False)
    assert_close(got, want, 600)


# --------------------------------------------------------------------------------------
# Flax nnx and Equinox


def _random_leaves(tree, seed=0):
    """Every array leaf (``jax.ShapeDtypeStruct``) of ``tree`` drawn from N(0, 0.3)."""
    rng = np.random.default_rng(seed)

    def draw(leaf):
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf
        return jnp.asarray(rng.normal(0.0, 0.3, leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map(draw, tree)


def test_flax_nnx_module():
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.c1 = nnx.Conv(3, 6, (3, 3), rngs=rngs)
            self.bn = nnx.BatchNorm(6, use_running_average=True, rngs=rngs)
            self.c2 = nnx.Conv(6, 8, (3, 3), strides=(2, 2), padding="VALID", rngs=rngs)
            self.out = nnx.Linear(8, 5, rngs=rngs)

        def __call__(self, x):
            y = nnx.relu(self.bn(self.c1(x / 255.0)))
            y = nnx.relu(self.c2(nnx.max_pool(y, (2, 2), strides=(1, 1))))
            return nnx.softmax(self.out(y.mean(axis=(1, 2))) * 4.0)

    # Random values without running the initialisers (each would compile on its own).
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Net(nnx.Rngs(0))))
    net = nnx.merge(graphdef, _random_leaves(state))
    net.bn.var[...] = np.linspace(0.5, 1.5, 6, dtype=np.float32)
    fn = lambda x: net(x)  # noqa: E731
    p = incremental.plan(fn, (18, 18, 3), 1, max_fraction=math.inf)
    assert "conv_general_dilated" in {p.graph.eqns[i].name for i in p.steps}
    target = incremental.incremental_target(fn, max_fraction=math.inf, chunks=1)
    got, want = compare(target, fn, images((18, 18, 3), 2), {3: 250}, 3)
    assert_close(got, want, 500)


def test_equinox_module():
    eqx = pytest.importorskip("equinox")

    class Net(eqx.Module):
        c1: eqx.nn.Conv2d
        c2: eqx.nn.Conv2d
        pool: eqx.nn.MaxPool2d
        out: eqx.nn.Linear

        def __init__(self, key):
            keys = jax.random.split(key, 3)
            self.c1 = eqx.nn.Conv2d(3, 6, 3, padding=1, key=keys[0])
            self.c2 = eqx.nn.Conv2d(6, 8, 3, stride=2, key=keys[1])
            self.pool = eqx.nn.MaxPool2d(2, 1)
            self.out = eqx.nn.Linear(8, 5, key=keys[2])

        def __call__(self, x):  # one (C, H, W) image
            y = self.pool(jax.nn.relu(self.c1(x / 255.0)))
            y = jax.nn.relu(self.c2(y))
            return jax.nn.softmax(self.out(y.mean(axis=(1, 2))) * 4.0)

    net = _random_leaves(eqx.filter_eval_shape(Net, jax.random.PRNGKey(0)))
    fn = jax.jit(lambda x: jax.vmap(net)(jnp.transpose(x, (0, 3, 1, 2))))
    p = incremental.plan(fn, (17, 17, 3), 1, max_fraction=math.inf)
    assert {"conv_general_dilated", "reduce_window_max"} <= {p.graph.eqns[i].name for i in p.steps}
    target = incremental.incremental_target(fn, max_fraction=math.inf, chunks=1)
    got, want = compare(target, fn, images((17, 17, 3), 4), {5: 250}, 5)
    assert_close(got, want, 500)


# --------------------------------------------------------------------------------------
# Cache and plan bookkeeping


def test_cache_holds_what_the_plan_lists():
    fn = net_residual()
    p = incremental.plan(fn, (24, 24, 3), 3)
    cache = jax.jit(jax.vmap(lambda im: windows.prepare_one(p, im[None])))(images((24, 24, 3), 0))
    assert len(cache) == len(p.cache)
    total = sum(int(np.prod(a.shape[1:])) * a.dtype.itemsize for a in cache)
    assert total == windows.cache_bytes(p) == incremental.cache_bytes(fn, (24, 24, 3), 3)
