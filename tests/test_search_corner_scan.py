"""The corner scan visits every (pixel, corner) once, ranks pixels by their probe and tries
each pixel's farthest corner first."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from strategy_driver import drive, rand_image

from onepixel_jax.search.base import SearchSpace
from onepixel_jax.search.corner_scan import corner_scan


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
