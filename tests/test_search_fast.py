"""``fast``: the search phase hands over to the colour phase, which finds colours that are not
corners of the colour cube; the stall rule gives an image up only after the colour phase."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import onepixel_jax as opj

H = W = 4
SPOT = (1, 2)  # the only pixel that matters
COLOUR = jnp.asarray([128.0, 200.0, 60.0])  # fooling needs a colour within RADIUS of this
RADIUS = 40.0


def spot_model(x):
    """Two classes on 4x4 RGB images: class 1 wins only when the pixel at ``SPOT`` is within
    ``RADIUS`` (L2) of ``COLOUR``, which no corner of the colour cube is (the nearest is 151
    away); elsewhere class 1's logit falls off linearly with that distance."""
    dist = jnp.linalg.norm(x[:, SPOT[0], SPOT[1], :] - COLOUR, axis=-1)
    logit1 = 5.0 + (RADIUS - dist) / 40.0
    logits = jnp.stack([jnp.full_like(logit1, 5.0), logit1], -1)
    return jax.nn.softmax(logits, -1)


def blue_images(n):
    """Images of one colour far from ``COLOUR``: the corner pixels nearest to it at ``SPOT``
    are the most promising candidates of the corner scan, and none fools the model."""
    return np.broadcast_to(np.asarray([30, 30, 220], np.uint8), (n, H, W, 3)).copy()


def corners():
    return np.array([[(k >> b) & 1 for b in range(3)] for k in range(8)], np.float32) * 255


def test_the_spot_model_has_no_corner_solution():
    dist = np.linalg.norm(corners() - np.asarray(COLOUR), axis=1)
    assert dist.min() > 3 * RADIUS
    x = blue_images(1).astype(np.float32)
    assert int(np.argmax(spot_model(jnp.asarray(x))[0])) == 0
    x[0, SPOT[0], SPOT[1]] = np.asarray(COLOUR)
    assert int(np.argmax(spot_model(jnp.asarray(x))[0])) == 1


@pytest.mark.parametrize("pixels", [1, 2])
def test_fast_fools_with_a_colour_the_search_phase_cannot_reach(pixels):
    x, y = blue_images(2), np.zeros(2, np.int32)
    key = jax.random.key(0)
    cfg = opj.AttackConfig(strategy="fast", pixels=pixels, popsize=16, max_iters=200,
                           early_stop="success")  # fmt: skip
    res = opj.attack(key, spot_model, x, y, cfg, progress=False)
    assert res.success.all()
    for pix in res.pixels:
        at = [p for p in pix if (p[0], p[1]) == SPOT]
        assert at and np.linalg.norm(at[-1][2:] - np.asarray(COLOUR)) < RADIUS
        assert not np.all(np.isin(at[-1][2:], (0, 255)))  # not a corner
    # the same budget without the colour phase: the corner scan / Sparse-RS alone
    alone = "corner-scan" if pixels == 1 else "sparse-rs"
    cfg = opj.AttackConfig(strategy=alone, pixels=pixels, popsize=16, max_iters=200,
                           early_stop="success")  # fmt: skip
    assert not opj.attack(key, spot_model, x, y, cfg, progress=False).success.any()


def test_an_image_nothing_fools_is_given_up_after_the_colour_phase_stalled():
    """The stall rule (48 generations) ends the run, not the hand-over (32): an image whose
    fitness never moves costs exactly 49 generations (the initial one included)."""
    x, y = blue_images(1), np.zeros(1, np.int32)

    def constant_model(z):
        return jnp.broadcast_to(jnp.asarray([0.9, 0.1]), (z.shape[0], 2))

    cfg = opj.AttackConfig(strategy="fast", pixels=1, popsize=16, early_stop="success")
    res = opj.attack(jax.random.key(1), constant_model, x, y, cfg, progress=False)
    assert not res.success.any()
    assert int(res.queries[0]) == (48 + 1) * 16 < cfg.popsize * (cfg.max_iters + 1)
