import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from onepixel_jax import perturb


def np_decode(genes, h, w, c):
    t = np.round(np.asarray(genes, np.float64).reshape(-1, 2 + c)).astype(np.int64)
    out = np.empty_like(t)
    out[:, 0] = np.clip(t[:, 0], 0, h - 1)
    out[:, 1] = np.clip(t[:, 1], 0, w - 1)
    out[:, 2:] = np.clip(t[:, 2:], 0, 255)
    return out


def np_apply(image, pixels):
    out = np.array(image, copy=True)
    for row in pixels:  # in order: a later tuple overwrites an earlier one
        out[row[0], row[1], :] = row[2:]
    return out


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("c", [1, 3])
def test_decode_and_apply_match_numpy_loop(jit, c):
    rng = np.random.default_rng(0)
    h, w, d = 7, 9, 4
    genes = rng.uniform(-3, 300, size=(50, d * (2 + c))).astype(np.float32)
    genes[:, 0] = rng.uniform(-2, h + 2, 50)  # some rows outside the image
    genes[:5, 2 + c : 4 + c] = genes[:5, 0:2]  # duplicate coordinates: later tuple must win
    image = rng.uniform(0, 255, size=(h, w, c)).astype(np.float32)

    def dec(g):
        return perturb.decode_candidate(g, h, w, c)

    decode = jax.jit(dec) if jit else dec
    apply = jax.jit(perturb.apply_pixels) if jit else perturb.apply_pixels
    for g in genes:
        pix = np.asarray(decode(jnp.asarray(g)))
        np.testing.assert_array_equal(pix, np_decode(g, h, w, c))
        np.testing.assert_array_equal(
            np.asarray(apply(jnp.asarray(image), pix)), np_apply(image, pix)
        )

    batch = perturb.apply_candidates(jnp.asarray(image), jnp.asarray(genes))
    expected = np.stack([np_apply(image, np_decode(g, h, w, c)) for g in genes])
    np.testing.assert_array_equal(np.asarray(batch), expected)


def test_patched_image_differs_in_at_most_d_pixels():
    rng = np.random.default_rng(1)
    image = jnp.asarray(rng.integers(0, 256, (16, 16, 3)), jnp.float32)
    genes = perturb.sample_candidates(jax.random.key(0), 64, 3, 16, 16, 3)
    out = perturb.apply_candidates(image, genes)
    changed = np.any(np.asarray(out) != np.asarray(image)[None], axis=-1).sum(axis=(1, 2))
    assert changed.max() <= 3


def test_initial_distribution_matches_paper():
    n, h, w = 20000, 8, 5
    genes = np.asarray(perturb.sample_candidates(jax.random.key(3), n, 1, h, w, 3))
    lo, hi = perturb.gene_bounds(1, h, w, 3)
    assert np.all(genes >= np.asarray(lo)) and np.all(genes <= np.asarray(hi))
    pix = np.asarray(jax.vmap(lambda g: perturb.decode_candidate(g, h, w, 3))(genes))
    # coordinates: uniform over rows and columns (chi-square goodness of fit)
    for axis, size in ((0, h), (1, w)):
        counts = np.bincount(pix[:, 0, axis], minlength=size)
        assert stats.chisquare(counts).pvalue > 1e-3
    # colours: N(128, 127) clipped to [0, 255]: about Phi(-128/127) = 15.7 % at 0
    vals = genes[:, 2:]
    assert abs(np.mean(vals == 0.0) - stats.norm.cdf(-128 / 127)) < 0.01
    assert abs(np.mean(vals == 255.0) - stats.norm.sf(127 / 127)) < 0.01
    inner = vals[(vals > 0) & (vals < 255)]
    assert abs(np.median(inner) - 128) < 3
