"""Hand-computed cases for onepixel_jax.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onepixel_jax import metrics


def test_wilson_interval_matches_textbook_values():
    # 8 of 10: the Wilson 95 % interval is about [0.4902, 0.9433].
    low, high = metrics.wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    # 0 of 20: lower bound exactly 0, upper bound z^2 / (n + z^2).
    low, high = metrics.wilson_interval(0, 20)
    z2 = metrics.Z_95**2
    assert low == 0.0
    assert high == pytest.approx(z2 / (20 + z2), rel=1e-12)
    # Symmetry: k of n mirrors n-k of n.
    lo1, hi1 = metrics.wilson_interval(3, 17)
    lo2, hi2 = metrics.wilson_interval(14, 17)
    assert lo1 == pytest.approx(1 - hi2) and hi1 == pytest.approx(1 - lo2)
    assert all(math.isnan(v) for v in metrics.wilson_interval(0, 0))
    with pytest.raises(ValueError):
        metrics.wilson_interval(5, 4)


def test_rate_with_ci():
    r = metrics.rate_with_ci(np.array([True, False, True, True]))
    assert r["rate"] == 0.75 and r["successes"] == 3 and r["trials"] == 4
    assert r["low"] < 0.75 < r["high"]
    assert math.isnan(metrics.success_rate(np.array([], bool)))


def test_targets_reached_and_derived_untargeted():
    # Image 7: targets 1, 2 succeed; image 3: nothing; image 5: one success.
    ids = np.array([7, 7, 7, 3, 3, 5, 5])
    success = np.array([True, True, False, False, False, False, True])
    got_ids, counts = metrics.targets_reached(ids, success)
    np.testing.assert_array_equal(got_ids, [3, 5, 7])
    np.testing.assert_array_equal(counts, [0, 1, 2])
    _, fooled = metrics.derived_untargeted_success(ids, success)
    np.testing.assert_array_equal(fooled, [False, True, True])
    hist = metrics.target_count_histogram(ids, success, num_classes=4)
    np.testing.assert_array_equal(hist, [1, 1, 1, 0])
    with pytest.raises(ValueError):
        metrics.target_count_histogram(ids, success, num_classes=2)


def test_confidence_targeted_and_untargeted():
    probs = np.array(
        [
            [0.1, 0.7, 0.2],  # success, target 1 -> 0.7
            [0.5, 0.2, 0.3],  # failure, ignored
            [0.2, 0.2, 0.6],  # success, target 2 -> 0.6
        ]
    )
    success = np.array([True, False, True])
    assert metrics.confidence(probs, success, np.array([1, 1, 2])) == pytest.approx(0.65)
    # Untargeted: the probability of the new argmax, here also 0.7 and 0.6.
    assert metrics.confidence(probs, success) == pytest.approx(0.65)
    # With a target that is not the argmax the targeted confidence uses the target.
    assert metrics.confidence(probs, success, np.array([0, 0, 0])) == pytest.approx(0.15)
    assert math.isnan(metrics.confidence(probs, np.zeros(3, bool)))


def test_class_pair_counts_and_per_class():
    original = np.array([0, 0, 1, 2, 2, 2])
    reached = np.array([1, 1, 0, 0, 1, 0])
    success = np.array([True, True, True, False, True, True])
    pairs = metrics.class_pair_counts(original, reached, success, num_classes=3)
    expected = np.array([[0, 2, 0], [1, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(pairs, expected)
    as_original, as_target = metrics.per_class_counts(pairs)
    np.testing.assert_array_equal(as_original, [2, 1, 2])
    np.testing.assert_array_equal(as_target, [2, 3, 0])


def test_avg_evaluations_and_distortion():
    queries = np.array([400, 40400, 1200])
    success = np.array([True, False, True])
    assert metrics.avg_evaluations(queries, success) == 800.0
    assert math.isnan(metrics.avg_evaluations(queries, np.zeros(3, bool)))
    # One pixel, three channels: |255-0|, |0-0|, |100-130| -> mean 95.
    before = np.array([[[0, 0, 130]], [[10, 10, 10]], [[50, 50, 50]]])
    after = np.array([[[255, 0, 100]], [[10, 10, 10]], [[50, 60, 50]]])
    d = metrics.pixel_distortion(before, after)
    np.testing.assert_allclose(d, [95.0, 0.0, 10 / 3])
    assert metrics.avg_distortion(d, success) == pytest.approx((95.0 + 10 / 3) / 2)
    with pytest.raises(ValueError):
        metrics.pixel_distortion(before, after[:, :, :2])


def test_mean_fitness_curve_ignores_nan():
    h = np.array([[1.0, 0.5, 0.2], [0.8, np.nan, 0.4]])
    np.testing.assert_allclose(metrics.mean_fitness_curve(h), [0.9, 0.5, 0.3])


def test_paired_comparison_counts():
    de = np.array([True, True, True, False, False])
    rnd = np.array([True, False, False, False, True])
    cmp = metrics.paired_comparison(de, rnd)
    assert cmp["a_rate"] == pytest.approx(0.6)
    assert cmp["b_rate"] == pytest.approx(0.4)
    assert cmp["difference"] == pytest.approx(0.2)
    assert (cmp["both"], cmp["a_only"], cmp["b_only"], cmp["neither"]) == (1, 2, 1, 1)
    assert cmp["trials"] == 5
    with pytest.raises(ValueError, match="unpaired"):
        metrics.paired_comparison(de, rnd[:3])


def test_paired_comparison_is_antisymmetric():
    rng = np.random.default_rng(0)
    a, b = rng.random(40) < 0.6, rng.random(40) < 0.4
    fa, fb = rng.random(40), rng.random(40)
    ab, ba = metrics.paired_comparison(a, b, fa, fb), metrics.paired_comparison(b, a, fb, fa)
    assert ab["difference"] == pytest.approx(-ba["difference"])
    assert (ab["a_only"], ab["b_only"]) == (ba["b_only"], ba["a_only"])
    assert (ab["neither_a_lower"], ab["neither_b_lower"]) == (
        ba["neither_b_lower"],
        ba["neither_a_lower"],
    )
    assert ab["p_value"] == ba["p_value"] and ab["neither_p_value"] == ba["neither_p_value"]


@pytest.mark.parametrize(
    "wins, losses", [(0, 0), (3, 0), (0, 5), (7, 2), (10, 10), (1, 12), (25, 14)]
)
def test_sign_test_matches_scipy_binomtest(wins, losses):
    from scipy.stats import binomtest

    p = metrics.sign_test_p(wins, losses)
    expected = 1.0 if wins + losses == 0 else binomtest(wins, wins + losses, 0.5).pvalue
    assert p == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert p == metrics.sign_test_p(losses, wins)  # symmetric


def test_sign_test_rejects_negative_counts():
    with pytest.raises(ValueError, match="non-negative"):
        metrics.sign_test_p(-1, 3)


def test_paired_comparison_fitness_on_attacks_neither_method_won():
    de = np.array([True, False, False, False, False, True])
    rnd = np.array([False, False, False, False, True, True])
    f_de = np.array([0.1, 0.5, 0.7, 0.3, 0.9, 0.2])
    f_rnd = np.array([0.6, 0.6, 0.7, 0.2, 0.4, 0.1])
    cmp = metrics.paired_comparison(de, rnd, f_de, f_rnd)
    # neither succeeded on attacks 1, 2, 3: DE lower on 1, tie on 2, random lower on 3
    assert cmp["neither"] == 3
    assert (cmp["neither_a_lower"], cmp["neither_b_lower"]) == (1, 1)
    assert cmp["neither_p_value"] == pytest.approx(1.0)
    assert cmp["p_value"] == pytest.approx(1.0)  # one discordant pair each way
    assert "neither_a_lower" not in metrics.paired_comparison(de, rnd)
    with pytest.raises(ValueError, match="both"):
        metrics.paired_comparison(de, rnd, f_de, None)
    with pytest.raises(ValueError, match="shape"):
        metrics.paired_comparison(de, rnd, f_de[:3], f_rnd[:3])
