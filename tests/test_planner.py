"""The planner's measured call size: ``planner.calibrate`` and ``call_size="calibrate"``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import onepixel_jax as opj
from onepixel_jax import planner
from onepixel_jax.types import Target

H = W = 6


def tiny_model(batch):
    """Class 1 when the image's mean red exceeds its mean green by a margin, else class 0."""
    gap = jnp.mean(batch[..., 0] - batch[..., 1], axis=(1, 2)) / 255.0
    return jax.nn.softmax(jnp.stack([jnp.zeros_like(gap), 40.0 * gap - 1.0], -1), -1)


def counting_target() -> Target:
    """A target of :func:`tiny_model` (no cache) over ``(S, P, d, 2 + C)`` candidates."""

    def evaluate(cache, images, pixels):
        s, p = pixels.shape[:2]
        return jnp.broadcast_to(tiny_model(images)[:, None, :], (s, p, 2))

    return Target(lambda images: (), evaluate)


def scripted_clock(seconds_per_call: list[float]):
    """A clock for ``repeats=1``: each timed call takes the next of ``seconds_per_call``."""
    ticks, now = [], 0.0
    for d in seconds_per_call:
        ticks += [now, now + d]
        now += d + 1.0
    return iter(ticks).__next__


def test_calibrate_takes_the_smallest_call_within_the_tolerance_of_the_best_rate():
    popsize = 10
    # seconds per call of 1, 2, 4, 8, 16, 32 slots: the rate grows until 8 slots (80 / 0.4 =
    # 200 candidates/s), 16 slots gain 5 % and 32 none: growth stops after two flat doublings
    seconds = [0.2, 0.2, 0.25, 0.4, 0.762, 1.6, 99.0]
    cal = planner.calibrate(
        counting_target(), (H, W, 3), popsize, 1, max_slots=64, repeats=1,
        clock=scripted_clock(seconds),
    )  # fmt: skip
    sizes = [row[0] for row in cal.rows]
    assert sizes == [10, 20, 40, 80, 160, 320]  # 64 slots were never tried
    rates = [row[2] for row in cal.rows]
    expected = [s / d for s, d in zip(sizes, seconds[:6], strict=True)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    best = max(rates)
    assert cal.call_size == 80  # 160 is 5 % faster: within 10 %, and 80 is smaller
    assert rates[sizes.index(80)] >= 0.9 * best
    # a stricter tolerance takes the fastest call instead
    strict = planner.calibrate(
        counting_target(), (H, W, 3), popsize, 1, max_slots=64, repeats=1, tolerance=0.01,
        clock=scripted_clock(seconds),
    )  # fmt: skip
    assert strict.call_size == 160


def test_calibrate_stops_at_max_slots_and_caches_per_process():
    target = counting_target()
    first = planner.calibrate(target, (H, W, 3), 4, 2, max_slots=2, repeats=1)
    assert [row[0] for row in first.rows] == [4, 8]
    assert first.call_size in (4, 8) and first.device_kind
    again = planner.calibrate(target, (H, W, 3), 4, 2, max_slots=2, repeats=1)
    assert again is first  # measured once per process


def test_attack_with_a_calibrated_call_size_gives_the_same_results():
    images = np.full((3, H, W, 3), 120, np.uint8)
    labels = np.zeros(3, np.int32)
    base = dict(pixels=1, popsize=12, max_iters=6, early_stop="success")
    plain = opj.attack(jax.random.key(3), tiny_model, images, labels, opj.AttackConfig(**base))
    cfg = opj.AttackConfig(**base, call_size="calibrate")
    calibrated = opj.attack(jax.random.key(3), tiny_model, images, labels, cfg)
    np.testing.assert_array_equal(plain.success, calibrated.success)
    np.testing.assert_array_equal(plain.pixels, calibrated.pixels)
    np.testing.assert_array_equal(plain.queries, calibrated.queries)


@pytest.mark.parametrize("value", ["auto", "", 0])
def test_a_call_size_that_is_neither_a_size_nor_calibrate_is_one_line(value):
    with pytest.raises((ValueError, TypeError), match="call_size"):
        opj.AttackConfig(call_size=value)
