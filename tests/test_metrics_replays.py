"""The replays of the engine's rules in :mod:`onepixel_jax.metrics` against a plain loop over
records, and the stall replay against the engine itself (runs with the rule on)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import onepixel_jax as opj
from onepixel_jax import metrics


def _records(seed: int, n: int = 60) -> list[dict]:
    """Random runs stopped at their first success: popsize, queries (whole generations) and a
    non-increasing best fitness per generation with plateaus."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        popsize = int(rng.choice([4, 16, 64]))
        generations = int(rng.integers(1, 30))
        success = bool(rng.random() < 0.5)
        rounds = int(rng.integers(1, generations + 1)) if success else generations
        steps = np.where(rng.random(rounds) < 0.4, rng.random(rounds) * 0.1, 0.0)
        steps[rng.random(rounds) < 0.2] = 5e-5  # below the default eps: no progress
        history = (1.0 - np.cumsum(steps)).round(6).tolist()
        out.append(
            {
                "success": success,
                "queries": rounds * popsize,
                "popsize": popsize,
                "budget": generations * popsize,
                "history": history,
            }
        )
    return out


def _loop_stall(r: dict, k: int, eps: float = 1e-4) -> tuple[bool, int]:
    """The stall rule replayed on one record, generation by generation."""
    rounds = r["queries"] // r["popsize"]
    h = r["history"]
    for g in range(rounds):
        if g >= k and h[g - k] - h[g] <= eps:
            if r["success"] and g == rounds - 1:
                return True, r["queries"]  # the success is seen first
            return False, (g + 1) * r["popsize"]
    return r["success"], r["queries"]


def _loop_truncate(r: dict, cap: int) -> tuple[bool, int]:
    limit = cap // r["popsize"] * r["popsize"]
    if r["queries"] <= limit:
        return r["success"], r["queries"]
    return False, limit


def _columns(recs):
    return (
        np.array([r["success"] for r in recs]),
        np.array([r["queries"] for r in recs]),
        np.array([r["popsize"] for r in recs]),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_replay_stall_matches_a_loop_over_records(seed, k):
    recs = _records(seed)
    s, q, p = _columns(recs)
    got_s, got_q = metrics.replay_stall(s, q, p, [r["history"] for r in recs], k)
    want = [_loop_stall(r, k) for r in recs]
    assert got_s.tolist() == [w[0] for w in want]
    assert got_q.tolist() == [w[1] for w in want]
    assert (got_q <= q).all() and not (got_s & ~s).any()  # only ever ends a run earlier
    assert (got_q != q).any()  # the rule fires somewhere in these records


def test_replay_stall_reads_padded_histories_and_checks_lengths():
    recs = _records(3, 20)
    s, q, p = _columns(recs)
    width = max(len(r["history"]) for r in recs)
    padded = np.array(
        [r["history"] + [r["history"][-1]] * (width - len(r["history"])) for r in recs]
    )
    a = metrics.replay_stall(s, q, p, padded, 2)
    b = metrics.replay_stall(s, q, p, [r["history"] for r in recs], 2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(
        np.array_equal(x, y)
        for x, y in zip(metrics.replay_stall(s, q, p, padded, 0), (s, q), strict=True)
    )
    with pytest.raises(ValueError, match="fitness values for"):
        metrics.replay_stall(s[:1], q[:1] * 0 + 10 * p[:1], p[:1], [[0.5]], 1)
    with pytest.raises(ValueError, match="stall"):
        metrics.replay_stall(s, q, p, padded, -1)


@pytest.mark.parametrize("cap", [0, 4, 50, 100, 10_000])
def test_truncate_runs_matches_a_loop(cap):
    recs = _records(4)
    s, q, p = _columns(recs)
    got_s, got_q = metrics.truncate_runs(s, q, p, cap)
    want = [_loop_truncate(r, cap) for r in recs]
    assert got_s.tolist() == [w[0] for w in want]
    assert got_q.tolist() == [w[1] for w in want]


def test_success_within_and_curve_match_a_loop():
    recs = _records(5)
    s, q, _ = _columns(recs)
    checks = [0, 16, 64, 100, 500, 2000]
    for c in checks:
        want = [r["success"] and r["queries"] <= c for r in recs]
        assert metrics.success_within(s, q, c).tolist() == want
    assert metrics.success_curve(s, q, checks).tolist() == [
        sum(r["success"] and r["queries"] <= c for r in recs) for c in checks
    ]
    # a run truncated at c succeeds exactly where the full run succeeded within c queries
    for c in (64, 256):
        for popsize in (4, 16, 64):
            mask = np.array([r["popsize"] == popsize for r in recs])
            ts, _ = metrics.truncate_runs(s[mask], q[mask], popsize, c)
            limit = c // popsize * popsize
            assert ts.tolist() == metrics.success_within(s[mask], q[mask], limit).tolist()


@pytest.fixture(scope="module")
def digits():
    predict_fn, _ = opj.models.load("digits-cnn")
    x, y, _ = opj.data.load("digits", "test")
    probs = np.asarray(predict_fn(x[:40].astype(np.float32)))
    keep = np.flatnonzero(probs.argmax(1) == y[:40])[:12]
    return predict_fn, x[keep], y[keep].astype(np.int32)


def test_replay_stall_equals_the_engine_with_the_rule_on(digits):
    """Runs without the stall rule, replayed with rule k, give exactly what the engine gives
    with rule k on (the same key: the same search until the rule ends it)."""
    predict_fn, x, y = digits
    base = dict(strategy="de", popsize=16, max_iters=12, early_stop="success")
    key = jax.random.key(3)
    free = opj.attack(key, predict_fn, x, y, opj.AttackConfig(**base, stall=0), progress=False)
    k = 2  # the stall rule is static in the compiled loop: one more compilation only
    ruled = opj.attack(key, predict_fn, x, y, opj.AttackConfig(**base, stall=k), progress=False)
    s, q = metrics.replay_stall(free.success, free.queries, 16, free.fitness_history, k)
    assert s.tolist() == ruled.success.tolist()
    assert q.tolist() == ruled.queries.tolist()
    assert (q < free.queries).any()  # the rule ended some runs early
    assert free.success.any()
