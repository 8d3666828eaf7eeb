"""The linear-bound domain (onepixel_jax.targets.bounds): for every supported primitive and for
whole networks, the bounds over random boxes contain the true values at random points of the
boxes, pointwise (the forms evaluated at the point) and as constants; the windowed walk
(clean constants outside the pixel's cone) equals the full walk; an uncovered operation is
named."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from onepixel_jax.targets import bounds, interpret, windows

N = 3  # input variables (a pixel's colour channels)
TOL = 1e-4


def _affine_input(key, shape, scale=2.0):
    """A random exact affine map eps -> x over [-1, 1]^N, as a Lin with zero radius, and the
    function computing it."""
    k1, k2 = jax.random.split(key)
    coefs = scale * jax.random.normal(k1, (N, *shape))
    const = jax.random.normal(k2, shape)
    mid = jnp.concatenate([coefs, const[None]])
    x = bounds.Lin(mid, jnp.zeros_like(mid))
    return x, lambda eps: const + jnp.tensordot(eps, coefs, axes=1)


def _form_at(f, eps):
    return f[-1] + jnp.tensordot(eps, f[:-1], axes=1)


def _forms_at(f, eps):
    """The forms ``f`` ``(N + 1, *shape)`` at the points ``eps`` ``(P, N)``: ``(P, *shape)``."""
    return f[-1][None] + jnp.tensordot(eps, f[:-1], axes=1)


def _check_contains(fn, shape, seed=0, points=64, scale=2.0):
    """``fn``'s bounds over an affine input of ``shape`` contain fn at random points."""
    key = jax.random.PRNGKey(seed)
    x, at = _affine_input(key, shape, scale)
    graph = interpret.trace(fn, jax.ShapeDtypeStruct(shape, jnp.float32))
    (out,) = bounds.propagate(graph, [x])
    assert isinstance(out, bounds.Lin)
    lo_c, hi_c = bounds.bounds_of(out)
    eps = jax.random.uniform(jax.random.PRNGKey(seed + 1), (points, N), minval=-1, maxval=1)
    corners = jnp.array(np.array(np.meshgrid(*[[-1.0, 1.0]] * N)).reshape(N, -1).T)
    eps = jnp.concatenate([eps, corners])
    true = jax.vmap(lambda e: fn(at(e)))(eps)
    lower, upper = _forms_at(out.mid - out.rad, eps), _forms_at(out.mid + out.rad, eps)
    slack = TOL * (1 + jnp.abs(true))
    assert bool(jnp.all(lower <= true + slack)), "a lower form above the value"
    assert bool(jnp.all(true <= upper + slack)), "an upper form below the value"
    assert bool(jnp.all(lo_c <= true + slack)) and bool(jnp.all(true <= hi_c + slack))
    return out


DN = ("NHWC", "HWIO", "NHWC")
W = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (3, 3, 2, 4)), np.float32)
M = np.asarray(jax.random.normal(jax.random.PRNGKey(8), (2, 5)), np.float32)
MASK = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(9), 0.5, (1, 4, 4, 2)))

CASES = {
    "relu": lambda x: jax.nn.relu(x),
    "max_const": lambda x: jnp.maximum(x, 0.7),
    "min_const": lambda x: jnp.minimum(x, -0.3),
    "clamp": lambda x: jnp.clip(x, -1.0, 1.5),
    "max_two": lambda x: jnp.maximum(x, 2 * x[..., ::-1] - 1),
    "min_two": lambda x: jnp.minimum(x, -x + 0.5),
    "abs": jnp.abs,
    "exp": lambda x: jnp.exp(x / 4),
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "sqrt": lambda x: jnp.sqrt(x**2 + 1),
    "rsqrt": lambda x: lax.rsqrt(x**2 + 1),
    "square": lambda x: x**2,
    "cube": lambda x: x**3,
    "product": lambda x: x * x[..., ::-1],
    "conv": lambda x: lax.conv_general_dilated(
        x, W, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN
    ),
    "conv_strided": lambda x: lax.conv_general_dilated(
        x, W, (2, 2), ((0, 1), (1, 0)), rhs_dilation=(1, 1), dimension_numbers=DN
    ),
    "dense": lambda x: x @ M,
    "dense_left": lambda x: (M.T @ x.reshape(-1, 2).T).sum(),
    "sum_mean": lambda x: jnp.mean(x, axis=(1, 2)) - x.sum(),
    "max_pool": lambda x: lax.reduce_window(
        x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
    ),
    "max_pool_padded": lambda x: lax.reduce_window(
        x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    ),
    "min_pool": lambda x: lax.reduce_window(
        x, jnp.inf, lax.min, (1, 2, 2, 1), (1, 1, 1, 1), "VALID"
    ),
    "avg_pool": lambda x: (
        lax.reduce_window(
            x, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
        )
        / 9
    ),
    "pad": lambda x: jnp.pad(x, ((0, 0), (1, 2), (0, 1), (0, 0)), constant_values=3.0),
    "layout": lambda x: jnp.transpose(x, (0, 3, 1, 2)).reshape(1, 2, 16)[:, :, 3:9][..., ::-1],
    "concat": lambda x: jnp.concatenate([x, jnp.ones_like(x), -x], axis=-1),
    "where_const": lambda x: jnp.where(MASK, x, -2 * x),
    "reduce_max": lambda x: jnp.max(x, axis=(1, 2)),
    "broadcast_scalar": lambda x: x[0, 0, 0, 0] + jnp.ones((2, 3)),
    "sub_neg_div": lambda x: (1.0 - x) / -2.0 - (-x),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bounds_contain_true_values_for_each_primitive(name):
    for seed in (0, 1):
        _check_contains(CASES[name], (1, 4, 4, 2), seed=seed)


def test_affine_layers_keep_exact_linear_forms():
    out = _check_contains(CASES["conv"], (1, 4, 4, 2))
    assert float(jnp.abs(out.rad).max()) < 1e-5  # no relaxation before a nonlinearity
    relu = _check_contains(CASES["relu"], (1, 4, 4, 2))
    assert float(jnp.abs(relu.rad).max()) > 0  # the straddling ReLUs are relaxed


def _net(seed, channels=3, hidden=6, classes=4, size=6):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    w1 = jax.random.normal(k[0], (3, 3, channels, hidden)) * 0.3
    b1 = jax.random.normal(k[1], (hidden,)) * 0.1
    w2 = jax.random.normal(k[2], (3, 3, hidden, hidden)) * 0.3
    dense = jax.random.normal(k[3], (hidden * (size // 2) ** 2, classes)) * 0.3

    def logits(x):
        x = (x - 120.0) / 60.0
        x = jax.nn.relu(lax.conv_general_dilated(x, w1, (1, 1), "SAME", dimension_numbers=DN) + b1)
        x = jax.nn.relu(lax.conv_general_dilated(x, w2, (1, 1), "SAME", dimension_numbers=DN))
        x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return x.reshape(x.shape[0], -1) @ dense

    return logits


def _pixel_lin(image, row, col, lo, hi):
    """The full input Lin of one pixel's colour box ``[lo, hi]`` (C,) in ``image`` (H, W, C)."""
    c = image.shape[-1]
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    mid = np.zeros((c + 1, 1, *image.shape), np.float32)
    mid[c, 0] = image
    mid[c, 0, row, col] = centre
    for i in range(c):
        mid[i, 0, row, col, i] = half[i]
    return bounds.Lin(jnp.asarray(mid), jnp.zeros_like(jnp.asarray(mid)))


def test_whole_network_bounds_contain_outputs_and_windowed_equals_full():
    fn = _net(0)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 6, 3)).astype(np.float32)
    graph = interpret.trace(fn, jax.ShapeDtypeStruct((1, 6, 6, 3), jnp.float32))
    plan = windows.plan(graph, 1, 0.5)
    forced = windows.plan(graph, 1, np.inf)
    assert plan.steps and forced.steps  # some operations run on windows
    cache = windows.prepare_one(plan, jnp.asarray(image)[None])
    cache_f = windows.prepare_one(forced, jnp.asarray(image)[None])
    full_fn = jax.jit(lambda lin: bounds.propagate(graph, [lin])[0])
    win_fns = [
        jax.jit(lambda ca, pos, c, h, p=p: bounds.propagate_windowed(p, ca, pos, c, h)[0])
        for p in (plan, forced)
    ]
    for trial in range(4):
        row, col = rng.integers(0, 6, 2)
        a, b = rng.uniform(0, 255, (2, 3))
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        if trial == 0:
            lo, hi = np.zeros(3), np.full(3, 255.0)
        full = full_fn(_pixel_lin(image, row, col, lo, hi))
        centre, half = jnp.asarray((lo + hi) / 2), jnp.asarray((hi - lo) / 2)
        pos = jnp.asarray([row, col], jnp.int32)
        for win_fn, ca in zip(win_fns, (cache, cache_f), strict=True):
            win = win_fn(ca, pos, centre, half)
            np.testing.assert_allclose(win.mid, full.mid, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(win.rad, full.rad, rtol=1e-4, atol=1e-4)
        lo_c, hi_c = bounds.bounds_of(full)
        colours = rng.uniform(lo, hi, (200, 3)).astype(np.float32)
        batch = np.repeat(image[None], len(colours), 0)
        batch[:, row, col] = colours
        out = np.asarray(fn(jnp.asarray(batch)))
        eps = np.where(hi > lo, (colours - (lo + hi) / 2) / np.maximum((hi - lo) / 2, 1e-9), 0)
        eps = jnp.asarray(eps, jnp.float32)
        lower = np.asarray(_forms_at(full.mid - full.rad, eps))[:, 0]
        upper = np.asarray(_forms_at(full.mid + full.rad, eps))[:, 0]
        assert np.all(lower <= out + 1e-3) and np.all(out <= upper + 1e-3)
        assert np.all(out >= lo_c - 1e-3) and np.all(out <= hi_c + 1e-3)


def test_an_uncovered_operation_is_named():
    def fn(x):
        return jnp.where(x > 0, x, 0.0)  # a comparison of the input

    graph = interpret.trace(fn, jax.ShapeDtypeStruct((1, 2, 2, 3), jnp.float32))
    x, _ = _affine_input(jax.random.PRNGKey(0), (1, 2, 2, 3))
    with pytest.raises(bounds.Unsupported, match="'gt'"):
        bounds.propagate(graph, [x])
    with pytest.raises(bounds.Unsupported, match="'dot_general' of several"):
        bounds.propagate(
            interpret.trace(lambda v: v @ v.T, jax.ShapeDtypeStruct((2, 2), jnp.float32)),
            [_affine_input(jax.random.PRNGKey(1), (2, 2))[0]],
        )
