"""Shared helpers of the incremental-evaluation tests (not a test module): candidate sets with
border, corner, overlapping and repeated tuples, and the comparison with the full forward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from onepixel_jax.perturb import apply_pixels_np

TOL = 1e-5
BATCH = 250  # reference forward batch


def candidates(rng, h: int, w: int, c: int, d: int, count: int) -> np.ndarray:
    """``(count, d, 2 + C)`` int32 tuples: first the four corners and evenly spaced border
    pixels as the first tuple, then half uniform, half clustered (tuples within 3 pixels of the
    first: overlapping cones) with repeated coordinates (a pixel written twice with different
    values) and corners."""
    out = []
    edge = [(r, q) for r in range(h) for q in range(w) if r in (0, h - 1) or q in (0, w - 1)]
    corners = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)]
    edge = corners + edge[:: max(1, len(edge) // max(1, count // 4))]
    for r, q in edge[: count // 3]:
        t = np.zeros((d, 2 + c), np.int64)
        t[:, 0], t[:, 1] = rng.integers(0, h, d), rng.integers(0, w, d)
        t[0, :2] = (r, q)
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
            if rng.random() < 0.2:
                t[-1, :2] = (rng.choice([0, h - 1]), rng.choice([0, w - 1]))
        out.append(t)
    return np.asarray(out, np.int32)


def images(shape, seed: int, count: int = 2) -> jax.Array:
    """``(count, H, W, C)`` float32 random pixels in [0, 255]."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, 256, (count, *shape)), jnp.float32)


def compare(target, predict_fn, imgs, per_d: dict, seed: int, *, jit=True, channel_axis=True):
    """Probabilities of ``per_d`` = {d: candidates per image} from ``target`` (an incremental
    target) against ``predict_fn`` on the patched images (in fixed batches: one compilation).
    Returns ``(got, want)``, each ``(candidates, K)``."""
    rng = np.random.default_rng(seed)
    s, h, w, c = imgs.shape
    wrap = jax.jit if jit else (lambda f: f)
    cache = wrap(target.prepare)(imgs)
    host = np.asarray(imgs)
    got, patched = [], []
    for d, count in per_d.items():
        pix = np.stack([candidates(rng, h, w, c, d, count) for _ in range(s)])
        probs = wrap(target.evaluate)(cache, imgs, jnp.asarray(pix))
        got.append(np.asarray(probs).reshape(s * count, -1))
        patched += [(i, t) for i in range(s) for t in pix[i]]
    reference = jax.jit(predict_fn)
    want = []
    for start in range(0, len(patched), BATCH):
        part = patched[start : start + BATCH]
        part = part + part[-1:] * (BATCH - len(part))
        batch = jnp.asarray(np.stack([apply_pixels_np(host[i], t) for i, t in part]))
        want.append(np.asarray(reference(batch if channel_axis else batch[..., 0])))
    return np.concatenate(got), np.concatenate(want)[: len(patched)]


def assert_close(got, want, min_count: int = 1):
    """Same shapes, at least ``min_count`` candidates, within :data:`TOL`, and a non-uniform
    reference (so that the comparison means something)."""
    assert got.shape == want.shape and got.shape[0] >= min_count
    assert np.isfinite(want).all() and want.max() > 1.5 / want.shape[1]
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
