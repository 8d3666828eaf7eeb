"""CMA-ES (evosax): on a smooth one-pixel landscape with a known optimum it converges there,
beats random search at the same budget, stays inside the gene bounds and survives NaN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import onepixel_jax as opj

pytest.importorskip("evosax", reason="the search extra (evosax) provides CMA-ES")

H = W = 8
TARGET = np.array([5.0, 2.0, 200.0])  # row, col, grey value of the optimum


def bowl(batch):
    """p_true grows with the distance of the one changed pixel from TARGET (the clean image
    is zero everywhere, so the changed pixel is the only non-zero one)."""
    flat = batch[..., 0].reshape(batch.shape[0], -1)
    idx = jnp.argmax(flat, axis=1)
    value = jnp.max(flat, axis=1)
    row, col = idx // W, idx % W
    dist = jnp.abs(row - TARGET[0]) / H + jnp.abs(col - TARGET[1]) / W + jnp.abs(value - 200) / 255
    p_true = 0.55 + 0.4 * jnp.tanh(dist)
    return jnp.stack([p_true, 1.0 - p_true], axis=-1)


def run(strategy: str, n: int, seed: int = 0):
    images = np.zeros((n, H, W, 1), np.float32)
    labels = np.zeros(n, np.int32)
    cfg = opj.AttackConfig(
        strategy=strategy, popsize=16, max_iters=40, early_stop=None, incremental=False
    )
    return opj.attack(jax.random.key(seed), bowl, images, labels, cfg, progress=False)


def test_cma_es_converges_to_the_known_optimum_and_beats_random_search():
    n = 20
    cma, rnd = run("cma-es", n), run("random", n)
    pix = np.asarray(cma.pixels)[:, 0]  # (n, 3): row, col, value
    assert np.all((pix[:, 0] >= 0) & (pix[:, 0] < H) & (pix[:, 1] >= 0) & (pix[:, 1] < W))
    assert np.all((pix[:, 2] >= 0) & (pix[:, 2] <= 255))
    # nearly every image ends at the optimum (a run whose mean leaves the colour range can
    # stall on the bound: the clipped samples all score the same)
    at_optimum = np.all(pix[:, :2] == TARGET[:2], axis=1) & (np.abs(pix[:, 2] - 200) <= 20)
    assert at_optimum.sum() >= 18, pix
    f_cma, f_rnd = np.asarray(cma.probs)[:, 0], np.asarray(rnd.probs)[:, 0]
    assert np.mean(f_cma < f_rnd - 1e-4) >= 0.8
    assert np.all(np.asarray(cma.queries) == 16 * 41)  # the whole budget, no early stop


def test_cma_es_survives_nan_fitness():
    def sometimes_nan(batch):
        probs = bowl(batch)
        bad = batch[..., 0].reshape(batch.shape[0], -1).max(axis=1) > 240
        return jnp.where(bad[:, None], jnp.nan, probs)

    images = np.zeros((4, H, W, 1), np.float32)
    labels = np.zeros(4, np.int32)
    cfg = opj.AttackConfig(strategy="cma-es", popsize=16, max_iters=20, incremental=False)
    res = opj.attack(jax.random.key(1), sometimes_nan, images, labels, cfg, progress=False)
    fit = np.asarray(res.probs)[:, 0]
    assert np.all(np.isfinite(fit)) and np.all(fit < 0.95)
    assert np.all(np.asarray(res.pixels)[:, 0, 2] <= 240)  # never a NaN candidate as best
