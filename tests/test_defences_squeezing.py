"""Input squeezing and feature-squeezing detection against NumPy / SciPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import onepixel_jax as opj
from onepixel_jax.defences import squeezing


def _images(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.float32)


@pytest.mark.parametrize("size", [1, 2, 3])
@pytest.mark.parametrize("shape", [(2, 7, 6, 1), (2, 5, 8, 3)])
def test_median_filter_matches_scipy(size, shape):
    x = _images(shape, seed=size)
    ref = ndimage.median_filter(x, size=(1, size, size, 1), mode="reflect")
    fn = jax.jit(squeezing.median_filter, static_argnums=1)
    np.testing.assert_array_equal(np.asarray(fn(jnp.asarray(x), size)), ref)
    np.testing.assert_array_equal(np.asarray(squeezing.median_filter(x, size)), ref)
    np.testing.assert_array_equal(np.asarray(squeezing.median_filter(x[0], size)), ref[0])


def test_median_filter_rejects_bad_input():
    with pytest.raises(ValueError, match="size"):
        squeezing.median_filter(np.zeros((1, 4, 4, 1)), 0)
    with pytest.raises(ValueError, match="images"):
        squeezing.median_filter(np.zeros((4, 4)), 2)


@pytest.mark.parametrize("bits", [1, 3, 5, 8])
def test_bit_depth_matches_numpy(bits):
    x = _images((3, 4, 4, 3), seed=bits)
    levels = 2**bits - 1
    ref = np.round(x.astype(np.float64) / 255 * levels) / levels * 255
    out = np.asarray(jax.jit(squeezing.bit_depth, static_argnums=1)(x, bits))
    np.testing.assert_allclose(out, ref, atol=1e-4)
    assert len(np.unique(out)) <= levels + 1
    if bits == 8:
        np.testing.assert_allclose(out, x, atol=1e-4)


def test_squeezer_names():
    assert squeezing.get_squeezer("median2") is squeezing.get_squeezer("median2")
    x = _images((1, 6, 6, 1))
    np.testing.assert_array_equal(
        np.asarray(squeezing.get_squeezer("bits1")(x)), np.asarray(squeezing.bit_depth(x, 1))
    )
    for bad in ("median", "bits0", "bits9", "blur2", 3):
        with pytest.raises(ValueError):
            squeezing.get_squeezer(bad)


def _toy_predict(batch):
    """A fixed 3-class 'network' on 6x6x1 images: logits from three pixel sums."""
    x = jnp.asarray(batch, jnp.float32) / 255.0
    logits = jnp.stack(
        [x[:, :3].sum((1, 2, 3)), x[:, 3:].sum((1, 2, 3)), 4.0 * x[:, 2:4, 2:4].sum((1, 2, 3))],
        axis=-1,
    )
    return jax.nn.softmax(logits, axis=-1)


def test_squeezed_pipeline_is_model_on_squeezed_input():
    x = _images((4, 6, 6, 1))
    f = squeezing.squeezed(_toy_predict, "median2", "bits1")
    ref = _toy_predict(squeezing.bit_depth(squeezing.median_filter(x, 2), 1))
    np.testing.assert_allclose(np.asarray(jax.jit(f)(x)), np.asarray(ref), rtol=1e-6)


def test_detection_scores_reference_and_calibration():
    x = _images((40, 6, 6, 1), seed=3)
    got = np.asarray(squeezing.detection_scores(_toy_predict, x, ("median2", "bits1")))
    p = np.asarray(_toy_predict(x))
    ref = np.maximum(
        np.abs(p - np.asarray(_toy_predict(ndimage.median_filter(x, (1, 2, 2, 1))))).sum(1),
        np.abs(p - np.asarray(_toy_predict(squeezing.bit_depth(x, 1)))).sum(1),
    )
    np.testing.assert_allclose(got, ref, atol=1e-6)
    det = squeezing.FeatureSqueezingDetector.calibrated(
        _toy_predict, ("median2", "bits1"), x, fpr=0.05, batch=16
    )
    np.testing.assert_allclose(det.scores(x, batch=16), ref, atol=1e-6)
    assert det.flags(x).sum() <= 2  # at most 5 % of 40
    assert det.threshold == pytest.approx(np.sort(ref)[37], abs=1e-6)


def test_calibrate_threshold_rate():
    s = np.arange(100, dtype=float)
    t = squeezing.calibrate_threshold(s, 0.05)
    assert t == 94.0 and (s > t).sum() == 5
    assert squeezing.calibrate_threshold(s, 0.0) == 99.0
    with pytest.raises(ValueError):
        squeezing.calibrate_threshold([], 0.05)


def test_detection_aware_objective_counts_only_undetected_misclassification():
    """Against the detector-guarded system the attack's success must be 'fooled and not
    flagged' (criteria combined: misclassified & ~detected): a detector that flags everything
    makes every attack fail; one that flags nothing leaves the plain network's answers; the
    verdict equals the criterion recomputed on the returned images."""
    x = _images((6, 6, 6, 1), seed=5)
    labels = np.asarray(_toy_predict(x)).argmax(1)
    method = opj.search.make("random", pixels=1, popsize=16, max_iters=2)
    key = jax.random.key(0)

    def attack(det):
        return opj.run(
            key, squeezing.detector_target(det), x, labels, method=method,
            objective=squeezing.detection_aware_objective(det), progress=False,
        )  # fmt: skip

    flags_all = squeezing.FeatureSqueezingDetector(_toy_predict, ("bits1",), threshold=-1.0)
    flagged_all = attack(flags_all)
    assert not flagged_all.success.any()
    plain_all = np.asarray(_toy_predict(flagged_all.adversarial.astype(np.float32)))
    np.testing.assert_allclose(flagged_all.probs, plain_all, atol=1e-6)  # the network's own
    none = squeezing.FeatureSqueezingDetector(_toy_predict, ("bits1",), threshold=3.0)
    unflagged = attack(none)
    plain = np.asarray(_toy_predict(unflagged.adversarial.astype(np.float32)))
    np.testing.assert_allclose(unflagged.probs, plain, atol=1e-6)
    np.testing.assert_array_equal(unflagged.success, plain.argmax(1) != labels)
    assert unflagged.success.any()  # the toy network is foolable: the criterion can hold
    # a real threshold: success is exactly "misclassified and not flagged" on the results
    mid = squeezing.FeatureSqueezingDetector.calibrated(_toy_predict, ("bits1",), x, fpr=0.5)
    res = attack(mid)
    flagged = mid.flags(res.adversarial.astype(np.float32))
    fooled = np.asarray(_toy_predict(res.adversarial.astype(np.float32))).argmax(1) != labels
    np.testing.assert_array_equal(res.success, fooled & ~flagged)
