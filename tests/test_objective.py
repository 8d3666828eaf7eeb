"""The objective: fitness, criteria that combine (&, |, ~), stop rules by name, the stall rule
and the verdict, compared with NumPy; thresholds are traced (no recompilation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from onepixel_jax import objective as obj

RNG = np.random.default_rng(0)
PROBS = RNG.dirichlet(np.ones(4), size=(5, 7)).astype(np.float32)  # (S, P, K)
LABEL = RNG.integers(0, 4, (5, 1))
TARGET = (LABEL + 1) % 4


def _np_class(p, c):
    return np.take_along_axis(p, np.broadcast_to(c, p.shape[:-1])[..., None], -1)[..., 0]


@pytest.mark.parametrize("jit", [False, True])
def test_fitness_and_argmax_rules_match_numpy(jit):
    for targeted in (False, True):
        o = obj.make(targeted, "paper")
        score = jax.jit(o.score) if jit else o.score
        fit, succ, stop = (np.asarray(a) for a in score(PROBS, LABEL, TARGET))
        want = 1 - _np_class(PROBS, TARGET) if targeted else _np_class(PROBS, LABEL)
        np.testing.assert_allclose(fit, want, rtol=1e-6)
        arg = PROBS.argmax(-1)
        np.testing.assert_array_equal(succ, arg == TARGET if targeted else arg != LABEL)
        assert not stop.any()  # no stop rule
    margin = obj.make(False, "margin")
    fit, succ, _ = (np.asarray(a) for a in margin.score(PROBS, LABEL, TARGET))
    other = np.where(np.arange(4) == LABEL[..., None], -np.inf, PROBS).max(-1)
    np.testing.assert_allclose(fit, _np_class(PROBS, LABEL) - other, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(fit < 0, succ)  # negative exactly when it succeeds


def test_nan_fitness_becomes_the_worst():
    probs = PROBS.copy()
    probs[0, 0] = np.nan
    fit = np.asarray(obj.make(False).score(probs, LABEL, TARGET)[0])
    assert fit[0, 0] == np.inf and np.isfinite(fit[1:]).all()


def test_criteria_combine_like_boolean_algebra():
    outputs = {"probs": PROBS, "detection_score": RNG.random((5, 7)).astype(np.float32)}
    mis, det = obj.Misclassified(), obj.Detected(0.5)
    m = np.asarray(mis(outputs, LABEL, TARGET))
    d = outputs["detection_score"] > 0.5
    np.testing.assert_array_equal(np.asarray((mis & ~det)(outputs, LABEL, TARGET)), m & ~d)
    np.testing.assert_array_equal(np.asarray((mis | det)(outputs, LABEL, TARGET)), m | d)
    np.testing.assert_array_equal(np.asarray((~mis)(outputs, LABEL, TARGET)), ~m)
    with pytest.raises(ValueError, match="detection_score"):
        det({"probs": PROBS}, LABEL, TARGET)  # the target does not observe a detector


def test_stop_rules_by_name():
    p = PROBS
    cases = {
        None: np.zeros(p.shape[:-1], bool),
        "success": p.argmax(-1) != LABEL,
        "threshold": _np_class(p, LABEL) < 0.05,
        "target_over_true": p.argmax(-1) != LABEL,  # untargeted: the same as success
    }
    for rule, want in cases.items():
        got = np.asarray(obj.stop_rule(rule, False)(p, LABEL, TARGET))
        np.testing.assert_array_equal(got, want)
    got = np.asarray(obj.stop_rule("target_over_true", True)(p, LABEL, TARGET))
    np.testing.assert_array_equal(got, _np_class(p, TARGET) > _np_class(p, LABEL))
    got = np.asarray(obj.stop_rule("threshold", True, 0.3)(p, LABEL, TARGET))
    np.testing.assert_array_equal(got, _np_class(p, TARGET) > 0.3)
    with pytest.raises(ValueError, match="early_stop must be one of"):
        obj.stop_rule("sometimes", False)


def test_thresholds_are_traced_so_a_new_value_does_not_recompile():
    @jax.jit
    def stops(objective, probs):
        return objective.score(probs, LABEL, TARGET)[2]

    a = stops(obj.make(False, early_stop="threshold", threshold=0.2), PROBS)
    size = stops._cache_size()
    b = stops(obj.make(False, early_stop="threshold", threshold=0.6), PROBS)
    assert stops._cache_size() == size
    np.testing.assert_array_equal(np.asarray(a), _np_class(PROBS, LABEL) < 0.2)
    np.testing.assert_array_equal(np.asarray(b), _np_class(PROBS, LABEL) < 0.6)


def test_penalty_ranks_every_unflagged_candidate_first():
    outputs = {"probs": PROBS, "detection_score": RNG.random((5, 7)).astype(np.float32)}
    o = obj.Objective(success=obj.Misclassified(), stop=obj.Never(), penalty=obj.Detected(0.5))
    fit = np.asarray(o.score(outputs, LABEL, TARGET)[0])
    flagged = outputs["detection_score"] > 0.5
    np.testing.assert_allclose(fit, _np_class(PROBS, LABEL) + flagged, rtol=1e-6)
    assert fit[flagged].min(initial=2.0) >= 1.0 > fit[~flagged].max(initial=0.0)


def test_stall_rule_matches_a_numpy_loop():
    rng = np.random.default_rng(3)
    s, g, k, eps = 6, 12, 3, 1e-4
    # non-increasing best fitness; steps exact in float32: none, below eps (2**-15), above it
    steps = rng.choice([0.0, 0.0, 2.0**-15, 0.25], size=(s, g + 1))
    history = (4.0 - np.cumsum(steps, axis=1)).astype(np.float32)
    o = obj.make(stall=k, stall_eps=eps)
    for gen in range(g + 1):
        gen_a = np.full(s, gen)
        got = np.asarray(o.gives_up(jnp.asarray(history), gen_a, history[:, gen]))
        want = [gen >= k and history[i, gen - k] - history[i, gen] <= eps for i in range(s)]
        np.testing.assert_array_equal(got, want)
    assert not np.asarray(obj.make(stall=0).gives_up(history, np.full(s, g), history[:, g])).any()


def test_make_rejects_bad_names():
    with pytest.raises(ValueError, match="objective must be one of"):
        obj.make(False, "hinge")
    with pytest.raises(ValueError, match="stall must be"):
        obj.make(stall=-1)
