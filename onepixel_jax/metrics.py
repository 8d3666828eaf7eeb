"""The paper's attack measurements as pure NumPy functions.

Every function takes flat per-attack arrays (one entry per attacked image, or per
(image, target) pair in the all-targets protocol) and returns plain numbers or arrays.
Nothing here knows about JAX, files or models, so a sweep's records can be re-measured
at any time.

Conventions
-----------
- ``success``: ``(N,)`` bool, the attack's own success criterion (untargeted: the
  adversarial argmax differs from the label; targeted: it equals the target).
- ``probs``: ``(N, K)`` float class probabilities on the adversarial image.
- Rates are fractions in ``[0, 1]``; the report multiplies by 100.
- Means over an empty set are ``nan`` (e.g. the confidence of a run without successes).

Replays of the engine's rules
-----------------------------
An attack stopped at its first success records how many queries it took (``queries``, the
whole budget when it failed), so one run answers "how many attacks succeed within ``q``
queries" for every ``q`` (:func:`success_within`, :func:`success_curve`). The cap on queries
and the stall rule only end a run earlier (the search up to that point is the same), so they
are replayed exactly on the records: :func:`truncate_runs` (a run capped at ``q`` queries) and
:func:`replay_stall` (the stall rule of ``k`` generations, on the recorded best fitness per
generation). ``popsize`` is the number of candidates per generation: queries are counted in
whole generations.
"""

from __future__ import annotations

import math

import numpy as np

Z_95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial rate; ``(nan, nan)`` when ``trials == 0``.

    Unlike the normal approximation it stays inside ``[0, 1]`` and is sensible at 0 or
    ``trials`` successes, which is common for small runs.
    """
    if trials <= 0:
        return (math.nan, math.nan)
    if not 0 <= successes <= trials:
        raise ValueError(f"successes={successes} must be in [0, trials={trials}]")
    p = successes / trials
    z2 = z * z
    denom = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def success_rate(success: np.ndarray) -> float:
    """Fraction of successful attacks, ``nan`` for no attacks."""
    success = np.asarray(success, bool)
    return float(success.mean()) if success.size else math.nan


def rate_with_ci(success: np.ndarray, z: float = Z_95) -> dict[str, float]:
    """``{"rate", "low", "high", "successes", "trials"}`` with the Wilson interval."""
    success = np.asarray(success, bool)
    k, n = int(success.sum()), int(success.size)
    low, high = wilson_interval(k, n, z)
    return {"rate": success_rate(success), "low": low, "high": high, "successes": k, "trials": n}


def targets_reached(image_ids: np.ndarray, success: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Number of successful targeted attacks per image.

    Returns ``(ids, counts)``: the sorted distinct image ids and, for each, how many of
    its targeted attacks succeeded (int64).
    """
    image_ids = np.asarray(image_ids)
    success = np.asarray(success, bool)
    ids, inverse = np.unique(image_ids, return_inverse=True)
    counts = np.bincount(inverse.reshape(-1), weights=success, minlength=ids.size)
    return ids, counts.astype(np.int64)


def derived_untargeted_success(
    image_ids: np.ndarray, success: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Non-targeted success derived from targeted attacks, as the paper's "Nontargeted1".

    An image counts as fooled when at least one of its targeted attacks succeeded.
    Returns ``(ids, fooled)`` with ``fooled`` a bool array aligned with the sorted ids.
    """
    ids, counts = targets_reached(image_ids, success)
    return ids, counts > 0


def target_count_histogram(
    image_ids: np.ndarray, success: np.ndarray, num_classes: int
) -> np.ndarray:
    """How many images reached exactly ``n`` target classes, for ``n = 0 .. K-1``.

    Returns ``(K,)`` int64; the entries sum to the number of distinct images.
    """
    _, counts = targets_reached(image_ids, success)
    if counts.size and counts.max() > num_classes - 1:
        raise ValueError("an image reached more targets than there are other classes")
    return np.bincount(counts, minlength=num_classes).astype(np.int64)


def adversarial_class(probs: np.ndarray) -> np.ndarray:
    """The class the model predicts on each adversarial image, ``(N,)`` int64."""
    return np.asarray(probs).argmax(axis=-1).astype(np.int64)


def confidence(probs: np.ndarray, success: np.ndarray, classes: np.ndarray | None = None) -> float:
    """Mean probability of the reached class over successful attacks (the paper's confidence).

    ``classes`` is the target class of each attack for targeted attacks; when omitted
    (untargeted) the class is the new argmax of ``probs``. ``nan`` without successes.
    """
    probs = np.asarray(probs, np.float64)
    success = np.asarray(success, bool)
    if classes is None:
        classes = adversarial_class(probs)
    classes = np.asarray(classes, np.int64)
    if not success.any():
        return math.nan
    picked = probs[np.arange(probs.shape[0]), classes]
    return float(picked[success].mean())


def class_pair_counts(
    original: np.ndarray, reached: np.ndarray, success: np.ndarray, num_classes: int
) -> np.ndarray:
    """Successful attacks per (original class, reached class) pair.

    Returns ``(K, K)`` int64 with rows indexed by the original class and columns by the
    reached class (the target, or the new argmax for untargeted attacks).
    """
    original = np.asarray(original, np.int64)
    reached = np.asarray(reached, np.int64)
    success = np.asarray(success, bool)
    pairs = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(pairs, (original[success], reached[success]), 1)
    return pairs


def per_class_counts(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Successful attacks per class acting as original (row sums) and as target (column sums)."""
    pairs = np.asarray(pairs)
    return pairs.sum(axis=1), pairs.sum(axis=0)


def avg_evaluations(queries: np.ndarray, success: np.ndarray) -> float:
    """Mean number of model evaluations of the successful attacks (the paper's AvgEvaluation)."""
    queries = np.asarray(queries, np.float64)
    success = np.asarray(success, bool)
    return float(queries[success].mean()) if success.any() else math.nan


def pixel_distortion(original_values: np.ndarray, new_values: np.ndarray) -> np.ndarray:
    """Mean absolute change per colour channel of the attacked pixels, per attack.

    ``original_values`` and ``new_values`` are ``(N, d, C)`` channel values of the ``d``
    attacked pixels before and after the attack, in the image's value range (0..255).
    Returns ``(N,)`` float64.
    """
    original_values = np.asarray(original_values, np.float64)
    new_values = np.asarray(new_values, np.float64)
    if original_values.shape != new_values.shape:
        raise ValueError(f"shape mismatch {original_values.shape} vs {new_values.shape}")
    diff = np.abs(new_values - original_values)
    return diff.reshape(diff.shape[0], -1).mean(axis=1)


def avg_distortion(distortion: np.ndarray, success: np.ndarray) -> float:
    """Mean per-attack distortion (see :func:`pixel_distortion`) over successful attacks."""
    distortion = np.asarray(distortion, np.float64)
    success = np.asarray(success, bool)
    return float(distortion[success].mean()) if success.any() else math.nan


def mean_fitness_curve(histories: np.ndarray) -> np.ndarray:
    """Mean best-so-far fitness per generation over attacks, ``(G,)``; NaN entries ignored."""
    histories = np.asarray(histories, np.float64)
    if histories.size == 0:
        return np.zeros((0,))
    return np.nanmean(histories, axis=0)


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test (McNemar's exact test on the discordant pairs).

    ``wins`` and ``losses`` count the pairs where only one side was better; ties are left
    out. Under the null hypothesis each discordant pair goes either way with probability
    1/2. Returns 1.0 when there is no discordant pair.
    """
    if wins < 0 or losses < 0:
        raise ValueError(f"counts must be non-negative, got {wins}, {losses}")
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def paired_comparison(
    a_success: np.ndarray,
    b_success: np.ndarray,
    a_fitness: np.ndarray | None = None,
    b_fitness: np.ndarray | None = None,
) -> dict[str, float]:
    """Compare two search methods ``a`` and ``b`` on the same attacks at the same budget.

    ``a_success`` and ``b_success`` are aligned ``(N,)`` bool (attack ``i`` of both methods is
    the same image and target). ``difference`` is the success rate of ``a`` minus that of ``b``
    (the paper reports DE minus random search in percentage points, e.g. 19.01 for AllConv).
    The paired counts ``both`` / ``a_only`` / ``b_only`` / ``neither`` show on how many attacks
    only one method succeeded, and ``p_value`` is the exact two-sided McNemar test on them.

    ``a_fitness`` / ``b_fitness`` (optional, ``(N,)`` float): the best fitness each method
    reached (lower is better). On the attacks where neither method succeeded they show which
    search got closer: ``neither_a_lower`` / ``neither_b_lower`` count them (ties count for
    neither) and ``neither_p_value`` is the sign test on those counts.
    """
    a = np.asarray(a_success, bool)
    b = np.asarray(b_success, bool)
    if a.shape != b.shape:
        raise ValueError(f"unpaired results: a_success {a.shape} vs b_success {b.shape}")
    a_ci, b_ci = rate_with_ci(a), rate_with_ci(b)
    out = {
        "a_rate": a_ci["rate"],
        "a_low": a_ci["low"],
        "a_high": a_ci["high"],
        "b_rate": b_ci["rate"],
        "b_low": b_ci["low"],
        "b_high": b_ci["high"],
        "difference": a_ci["rate"] - b_ci["rate"],
        "both": int((a & b).sum()),
        "a_only": int((a & ~b).sum()),
        "b_only": int((~a & b).sum()),
        "neither": int((~a & ~b).sum()),
        "trials": int(a.size),
    }
    out["p_value"] = sign_test_p(out["a_only"], out["b_only"])
    if (a_fitness is None) != (b_fitness is None):
        raise ValueError("give both a_fitness and b_fitness, or neither")
    if a_fitness is not None:
        fa = np.asarray(a_fitness, np.float64)
        fb = np.asarray(b_fitness, np.float64)
        if fa.shape != a.shape or fb.shape != a.shape:
            raise ValueError(
                f"a_fitness and b_fitness must have shape {a.shape}, got {fa.shape} and {fb.shape}"
            )
        neither = ~a & ~b
        out["neither_a_lower"] = int((neither & (fa < fb)).sum())
        out["neither_b_lower"] = int((neither & (fb < fa)).sum())
        out["neither_p_value"] = sign_test_p(out["neither_a_lower"], out["neither_b_lower"])
    return out


# --------------------------------------------------------------------------------------
# Replays of the engine's rules on records


def success_within(success: np.ndarray, queries: np.ndarray, limit: int) -> np.ndarray:
    """``(N,)`` bool: the attacks that succeeded with at most ``limit`` queries."""
    success = np.asarray(success, bool)
    return success & (np.asarray(queries, np.int64) <= limit)


def success_curve(success: np.ndarray, queries: np.ndarray, checkpoints) -> np.ndarray:
    """``(Q,)`` int64: how many attacks succeeded within each of the ``checkpoints`` queries
    (the curve of successes against queries of runs that stop at their first success)."""
    success = np.asarray(success, bool)
    queries = np.asarray(queries, np.int64)
    limits = np.asarray(checkpoints, np.int64).reshape(-1)
    return (success[None, :] & (queries[None, :] <= limits[:, None])).sum(axis=1).astype(np.int64)


def truncate_runs(
    success: np.ndarray, queries: np.ndarray, popsize, cap: int
) -> tuple[np.ndarray, np.ndarray]:
    """The runs as a cap of ``cap`` queries per attack would have ended them.

    A capped run makes ``cap // popsize`` whole generations (``limit`` queries): a success
    within ``limit`` queries is kept as it is, any other run fails after ``limit`` queries.
    ``popsize``: a number or ``(N,)``. Returns ``(success (N,) bool, queries (N,) int64)``.
    """
    success = np.asarray(success, bool)
    queries = np.asarray(queries, np.int64)
    popsize = np.broadcast_to(np.asarray(popsize, np.int64), queries.shape)
    if np.any(popsize < 1) or cap < 0:
        raise ValueError(f"popsize must be >= 1 and cap >= 0, got {popsize.min()} and {cap}")
    limit = (cap // popsize) * popsize
    kept = queries <= limit
    return success & kept, np.where(kept, queries, limit)


def replay_stall(
    success: np.ndarray,
    queries: np.ndarray,
    popsize,
    histories,
    stall: int,
    eps: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """The runs as the stall rule of ``stall`` generations would have ended them.

    The engine's rule (:meth:`onepixel_jax.objective.Objective.gives_up`): after generation
    ``g >= stall`` (generation 0 is the initial population) an attack is given up when its best
    fitness has not improved by more than ``eps`` since generation ``g - stall``. A success in
    the generation where the rule would fire still counts (the engine checks success first).

    Args:
      success, queries: ``(N,)`` of runs without the rule (or with a longer one).
      popsize: candidates per generation, a number or ``(N,)``.
      histories: per attack, the best fitness after each generation (lower is better): a
        ``(N, G)`` array or ``N`` sequences of any lengths; only the first
        ``queries // popsize`` values of each (the generations it ran) are read.
      stall: generations (``0``: no rule, the runs are returned as they are).

    Returns:
      ``(success (N,) bool, queries (N,) int64)``.
    """
    success = np.asarray(success, bool)
    queries = np.asarray(queries, np.int64)
    n = queries.shape[0]
    popsize = np.broadcast_to(np.asarray(popsize, np.int64), (n,))
    if isinstance(stall, bool) or not isinstance(stall, int | np.integer) or stall < 0:
        raise ValueError(f"stall must be an int >= 0, got {stall!r}")
    rounds = queries // popsize
    if stall == 0 or n == 0:
        return success.copy(), queries.copy()
    width = int(rounds.max())
    h = np.full((n, width), np.nan)
    for i, row in enumerate(histories):
        row = np.asarray(row, np.float64)[: rounds[i]]
        if row.shape[0] < rounds[i]:
            raise ValueError(
                f"attack {i}: {row.shape[0]} fitness values for {rounds[i]} generations"
            )
        h[i, : rounds[i]] = row
    if width <= stall:
        return success.copy(), queries.copy()
    gen = np.arange(stall, width)
    fires = (h[:, gen - stall] - h[:, gen] <= eps) & (gen[None, :] < rounds[:, None])
    any_fire = fires.any(axis=1)
    first = gen[np.argmax(fires, axis=1)]
    last = rounds - 1
    stopped = any_fire & ~(success & (first == last))
    out_success = success & ~stopped
    out_queries = np.where(stopped, (first + 1) * popsize, queries)
    return out_success, out_queries.astype(np.int64)
