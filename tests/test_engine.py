"""End-to-end tests of the compiled attack on small hand-made models with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import onepixel_jax as opj
from onepixel_jax import engine

H = W = 12


def bump(center, sigma=1.5):
    r, c = np.mgrid[0:H, 0:W]
    return jnp.asarray(np.exp(-((r - center[0]) ** 2 + (c - center[1]) ** 2) / (2 * sigma**2)))


BUMP_A, BUMP_B = bump((3, 8)), bump((9, 2))


def region_response(batch, weights, plus, minus):
    """Max over pixels of weight * (channel plus - channel minus) / 255, in [-1, 1]."""
    diff = (batch[..., plus] - batch[..., minus]) / 255.0
    return jnp.max(weights[None] * diff, axis=(1, 2))


def red_needle_model(batch):
    """Class 1 iff some pixel near (3, 8) has red far above green; class 2 for blue near (9, 2)."""
    a = region_response(batch, BUMP_A, 0, 1)
    b = region_response(batch, BUMP_B, 2, 0)
    logits = jnp.stack([jnp.full_like(a, 6.0), 10.0 * a, 10.0 * b], axis=-1)
    return jax.nn.softmax(logits, axis=-1)


BANDS = [jnp.asarray((np.arange(W) // 4 == k)[None, :].repeat(H, 0), jnp.float32) for k in range(3)]


def three_band_model(batch):
    """Class 1 needs a red pixel in each of three vertical bands at once (d = 1 cannot)."""
    total = sum(region_response(batch, band, 0, 1) for band in BANDS)
    logits = jnp.stack([jnp.full_like(total, 2.4), total], axis=-1)
    return jax.nn.softmax(logits, axis=-1)


def grey_images(n, value=120):
    return np.full((n, H, W, 3), value, np.uint8)


def changed_pixels(a, b):
    return np.any(np.asarray(a) != np.asarray(b), axis=-1) if a.ndim == 4 else a != b


def check_result(res, images, predict, cfg, targets=None):
    n = len(images)
    assert res.adversarial.shape == images.shape and res.adversarial.dtype == images.dtype
    assert res.pixels.shape == (n, cfg.pixels, 2 + (images.shape[-1] if images.ndim == 4 else 1))
    assert res.fitness_history.shape == (n, cfg.max_iters + 1)
    assert np.all(np.diff(res.fitness_history, axis=1) <= 1e-7), "best fitness never gets worse"
    assert np.all(changed_pixels(res.adversarial, images).sum(axis=(1, 2)) <= cfg.pixels)
    probs = np.asarray(predict(jnp.asarray(res.adversarial, jnp.float32)))
    np.testing.assert_allclose(res.probs, probs, atol=1e-5)
    pred = probs.argmax(1)
    expected = pred == targets if targets is not None else pred != res.labels
    np.testing.assert_array_equal(res.success, expected)
    assert np.all(res.queries >= cfg.popsize) and np.all(res.queries <= cfg.budget)
    assert np.all(res.queries % cfg.popsize == 0)


def test_untargeted_finds_the_red_pixel_near_known_location():
    images = grey_images(4)
    labels = np.zeros(4, np.int32)
    cfg = opj.AttackConfig(pixels=1, popsize=60, max_iters=40)
    res = opj.attack(jax.random.key(0), red_needle_model, images, labels, cfg)
    check_result(res, images, red_needle_model, cfg)
    assert res.success.all()
    np.testing.assert_array_equal(res.queries, cfg.budget)  # no early stop: full budget
    row, col, r, g, b = res.pixels[:, 0].T
    # every successful pixel sits on one of the two sensitive regions, with that region's colour
    near_a = np.hypot(row - 3, col - 8) <= 3.0
    near_b = np.hypot(row - 9, col - 2) <= 3.0
    assert np.all(near_a | near_b), res.pixels[:, 0]
    assert np.all(np.where(near_a, r - g, b - r) > 100), res.pixels[:, 0]


def test_targeted_reaches_the_target_class_and_early_stop_saves_queries():
    images = grey_images(3)
    labels = np.zeros(3, np.int32)
    targets = np.full(3, 2, np.int32)
    full = opj.AttackConfig(pixels=1, popsize=60, max_iters=40, targeted=True)
    res = opj.attack(jax.random.key(1), red_needle_model, images, labels, full, targets=targets)
    check_result(res, images, red_needle_model, full, targets)
    assert res.success.all()
    row, col, r, g, b = res.pixels[:, 0].T
    assert np.all(np.hypot(row - 9, col - 2) <= 2.0) and np.all(b - r > 150)

    early = opj.AttackConfig(
        pixels=1, popsize=60, max_iters=40, targeted=True, early_stop="success"
    )
    res2 = opj.attack(jax.random.key(1), red_needle_model, images, labels, early, targets=targets)
    check_result(res2, images, red_needle_model, early, targets)
    assert res2.success.all()
    assert np.all(res2.queries < res.queries)


@pytest.mark.parametrize("rule", ["threshold", "target_over_true"])
def test_paper_stopping_rules(rule):
    images = grey_images(2)
    labels, targets = np.zeros(2, np.int32), np.full(2, 1, np.int32)
    cfg = opj.AttackConfig(popsize=40, max_iters=40, targeted=True, early_stop=rule)
    res = opj.attack(jax.random.key(2), red_needle_model, images, labels, cfg, targets=targets)
    check_result(res, images, red_needle_model, cfg, targets)
    p_t = res.probs[:, 1]
    if rule == "threshold":
        assert np.all(p_t > 0.9)
    else:
        assert np.all(p_t > res.probs[:, 0])
    assert np.all(res.queries < cfg.budget)


def test_three_pixels_needed():
    images = grey_images(6)
    labels = np.zeros(6, np.int32)
    one = opj.AttackConfig(pixels=1, popsize=60, max_iters=30)
    res1 = opj.attack(jax.random.key(3), three_band_model, images, labels, one)
    assert not res1.success.any()  # one pixel reaches one band: total <= 1 < 2.4
    three = opj.AttackConfig(pixels=3, popsize=60, max_iters=60, early_stop="success")
    res3 = opj.attack(jax.random.key(3), three_band_model, images, labels, three)
    check_result(res3, images, three_band_model, three)
    assert res3.success.sum() >= 4  # DE without crossover can stall with two pixels in a band
    for pix in res3.pixels[res3.success]:
        assert sorted(pix[:, 1] // 4) == [0, 1, 2]  # one pixel per band
        assert np.all(pix[:, 2] - pix[:, 3] > 150)  # red far above green


def test_same_key_same_result_and_independent_of_batch_size():
    images = np.random.default_rng(0).integers(0, 256, (5, H, W, 3)).astype(np.uint8)
    labels = np.zeros(5, np.int32)
    cfg = opj.AttackConfig(popsize=16, max_iters=6, early_stop="success")
    a = opj.attack(jax.random.key(9), red_needle_model, images, labels, cfg)
    b = opj.attack(jax.random.key(9), red_needle_model, images, labels, cfg)
    c = opj.attack(
        jax.random.key(9),
        red_needle_model,
        images,
        labels,
        opj.AttackConfig(popsize=16, max_iters=6, early_stop="success", batch_size=2),
    )
    d = opj.attack(jax.random.key(10), red_needle_model, images, labels, cfg)
    for other in (b, c):
        np.testing.assert_array_equal(a.pixels, other.pixels)
        np.testing.assert_array_equal(a.queries, other.queries)
        np.testing.assert_array_equal(a.fitness_history, other.fitness_history)
    assert not np.array_equal(a.pixels, d.pixels)


def test_jit_and_no_jit_agree():
    images = grey_images(1, 90)
    labels = np.zeros(1, np.int32)
    cfg = opj.AttackConfig(popsize=4, max_iters=1, crossover=0.5)
    jitted = opj.attack(jax.random.key(4), red_needle_model, images, labels, cfg)
    with jax.disable_jit():
        eager = opj.attack(jax.random.key(4), red_needle_model, images, labels, cfg)
    np.testing.assert_array_equal(jitted.pixels, eager.pixels)
    np.testing.assert_allclose(jitted.fitness_history, eager.fitness_history, atol=1e-6)


def test_no_recompile_for_new_F_or_new_images_of_same_shape():
    rng = np.random.default_rng(5)
    labels = np.zeros(3, np.int32)
    cfg = opj.AttackConfig(popsize=8, max_iters=2)
    opj.attack(jax.random.key(0), red_needle_model, grey_images(3), labels, cfg)
    before = engine.advance._cache_size()
    other = rng.integers(0, 256, (3, H, W, 3)).astype(np.uint8)
    opj.attack(jax.random.key(1), red_needle_model, other, labels, cfg)
    opj.attack(
        jax.random.key(1),
        red_needle_model,
        other,
        labels,
        opj.AttackConfig(popsize=8, max_iters=2, F=0.9),
    )
    assert engine.advance._cache_size() == before
    opj.attack(
        jax.random.key(1),
        red_needle_model,
        other,
        labels,
        opj.AttackConfig(popsize=12, max_iters=2),
    )
    assert engine.advance._cache_size() == before + 1  # a new population size does recompile


def test_random_search_same_type_and_budget():
    images = grey_images(3)
    labels = np.zeros(3, np.int32)
    cfg = opj.AttackConfig(popsize=20, max_iters=5)
    res = opj.random_search(jax.random.key(0), red_needle_model, images, labels, cfg)
    assert isinstance(res, opj.AttackResult)
    check_result(res, images, red_needle_model, cfg)
    np.testing.assert_array_equal(res.queries, cfg.budget)
    early = opj.AttackConfig(popsize=20, max_iters=30, early_stop="success")
    res2 = opj.random_search(jax.random.key(0), red_needle_model, images, labels, early)
    check_result(res2, images, red_needle_model, early)
    assert np.all(res2.queries[res2.success] < early.budget)


def test_greyscale_and_float_inputs_keep_their_layout():
    def grey_model(batch):  # (B, H, W) greyscale: class 1 if a bright pixel near (3, 8)
        a = jnp.max(BUMP_A[None] * batch / 255.0, axis=(1, 2))
        return jax.nn.softmax(jnp.stack([jnp.full_like(a, 5.0), 10.0 * a], -1), -1)

    images = np.full((2, H, W), 10.0, np.float32)
    cfg = opj.AttackConfig(popsize=40, max_iters=20, early_stop="success")
    res = opj.attack(jax.random.key(0), grey_model, images, np.zeros(2, int), cfg)
    assert res.adversarial.shape == images.shape and res.adversarial.dtype == np.float32
    assert res.pixels.shape == (2, 1, 3)
    assert res.success.all()
    assert np.all((res.adversarial != images).sum(axis=(1, 2)) == 1)


def test_probs_from_logits_wraps_logits():
    def logits_fn(batch):
        return jnp.stack([batch.mean(axis=(1, 2, 3)) / 255.0, jnp.zeros(batch.shape[0])], -1)

    predict = opj.probs_from_logits(logits_fn)
    out = np.asarray(predict(jnp.ones((3, 4, 4, 3))))
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out[:, 0], 1 / (1 + np.exp(-1 / 255.0)), rtol=1e-5)


LABELS2 = np.zeros(2, np.int32)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(images=np.zeros((H, W), np.uint8)), ValueError, "images must have shape"),
        (dict(images=np.zeros((2, H, W, 3), np.int64)), TypeError, "images must be uint8"),
        (dict(images=np.full((2, H, W, 3), 300.0, np.float32)), ValueError, r"\[0, 255\]"),
        (dict(images=np.full((2, H, W, 3), np.nan, np.float32)), ValueError, "NaN"),
        (dict(labels=np.zeros(3, np.int32)), ValueError, "labels must have shape"),
        (dict(labels=np.array([0, 3])), ValueError, "labels must be < K = 3"),
        (dict(labels=np.array([0.0, 1.0])), TypeError, "labels must be integers"),
        (dict(targets=np.array([1, 1])), ValueError, "cfg.targeted is False"),
        (dict(cfg=opj.AttackConfig(popsize=8, targeted=True)), ValueError, "targets are required"),
        (
            dict(cfg=opj.AttackConfig(popsize=8, targeted=True), targets=np.array([0, 1])),
            ValueError,
            "targets must differ from labels",
        ),
        (
            dict(cfg=opj.AttackConfig(popsize=8, targeted=True), targets=np.array([5, 1])),
            ValueError,
            "targets must be < K",
        ),
        (dict(predict_fn=lambda b: b[:, 0, 0, :2]), ValueError, "probabilities"),
        (dict(predict_fn=lambda b: jnp.ones((1, 3)) / 3), ValueError, r"shape \(B, K\)"),
        (dict(key=0), TypeError, "key must be a JAX PRNG key"),
        (dict(cfg="paper"), TypeError, "cfg must be an AttackConfig"),
    ],
)
def test_bad_input_gets_a_clear_error(kwargs, exc, match):
    call = dict(
        key=jax.random.key(0),
        predict_fn=red_needle_model,
        images=grey_images(2),
        labels=LABELS2,
        cfg=opj.AttackConfig(popsize=8, max_iters=1),
        targets=None,
    )
    call.update(kwargs)
    with pytest.raises(exc, match=match):
        opj.attack(**call)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pixels=0), "pixels must be >= 1"),
        (dict(popsize=3), "popsize must be >= 4"),
        (dict(max_iters=-1), "max_iters"),
        (dict(F=0.0), "F must be"),
        (dict(crossover=1.5), "crossover"),
        (dict(strategy="best2"), "strategy"),
        (dict(mutation="rand9"), "mutation"),
        (dict(sampler="gauss"), "sampler"),
        (dict(objective="cw"), "objective"),
        (dict(early_stop="always"), "early_stop"),
        (dict(threshold=1.0), "threshold"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_bad_config_gets_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        opj.AttackConfig(**kwargs)
    with pytest.raises(TypeError, match="pixels must be an int"):
        opj.AttackConfig(pixels=1.5)


def test_compaction_spends_no_model_call_on_finished_images_and_changes_nothing():
    """Early stopping on, several slots, call groups of one slot: every evaluation carried by
    a model call is useful, and the records equal those without compaction."""
    rng = np.random.default_rng(11)
    images = rng.integers(90, 140, (7, H, W, 3)).astype(np.uint8)
    labels = np.zeros(7, np.int32)
    base = dict(popsize=12, max_iters=15, early_stop="success", batch_size=4, call_size=12)
    off = opj.AttackConfig(**base, compact=False)  # same call shape, every group every time
    on = opj.AttackConfig(**base)
    a = opj.attack(jax.random.key(3), red_needle_model, images, labels, off, progress=False)
    b = opj.attack(jax.random.key(3), red_needle_model, images, labels, on, progress=False)
    for f in ("pixels", "success", "queries", "fitness_history", "probs"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert len(set(a.queries.tolist())) > 1, "images must stop at different generations"
    assert b.model_evaluations == b.queries.sum()
    assert a.model_evaluations > a.queries.sum()  # without compaction slots idle in calls


def test_count_attacks_only_the_first_images_and_spends_nothing_on_the_padding():
    """``count=k``: rows below ``k`` equal the attack of all rows; the padding rows cost no
    model call and come back clean, pixels -1, zero queries, not successful."""
    rng = np.random.default_rng(12)
    images = rng.integers(90, 140, (7, H, W, 3)).astype(np.uint8)
    labels = np.zeros(7, np.int32)
    cfg = opj.AttackConfig(popsize=12, max_iters=15, early_stop="success", batch_size=4,
                           call_size=12)  # fmt: skip
    full = opj.attack(jax.random.key(5), red_needle_model, images, labels, cfg, progress=False)
    part = opj.attack(
        jax.random.key(5), red_needle_model, images, labels, cfg, progress=False, count=4
    )
    for f in ("pixels", "success", "queries", "fitness_history", "probs", "adversarial"):
        np.testing.assert_array_equal(getattr(part, f)[:4], getattr(full, f)[:4])
    assert part.model_evaluations == part.queries[:4].sum() < full.model_evaluations
    assert (part.queries[4:] == 0).all() and (part.pixels[4:] == -1).all()
    assert not part.success[4:].any()
    np.testing.assert_array_equal(part.adversarial[4:], images[4:])
    np.testing.assert_array_equal(part.probs[4:], part.original_probs[4:])
    with pytest.raises(ValueError, match=r"count must be an int in \[0, N = 7\]"):
        opj.attack(jax.random.key(5), red_needle_model, images, labels, cfg, count=8)


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_results_do_not_depend_on_batch_size_at_a_fixed_call_size(batch_size):
    """Every model call carries one slot (call_size = popsize), so only the number of calls
    per generation changes with batch_size: every field is bit-identical."""
    rng = np.random.default_rng(12)
    images = rng.integers(90, 140, (7, H, W, 3)).astype(np.uint8)
    labels = np.zeros(7, np.int32)
    base = dict(popsize=12, max_iters=10, early_stop="success", call_size=12)
    ref = opj.attack(
        jax.random.key(4),
        red_needle_model,
        images,
        labels,
        opj.AttackConfig(**base),
        progress=False,
    )
    other = opj.AttackConfig(**base, batch_size=batch_size)
    res = opj.attack(jax.random.key(4), red_needle_model, images, labels, other, progress=False)
    for f in ("pixels", "success", "queries", "fitness_history", "probs", "adversarial"):
        np.testing.assert_array_equal(getattr(ref, f), getattr(res, f))


def test_progress_reports_between_segments_and_is_silent_when_asked(capsys):
    """Progress comes between segments of generations (one generation at first, growing to
    about a second): counts never go back, and the last report has every image and every
    evaluation; ``progress=False`` prints nothing."""
    images = grey_images(3)
    labels = np.zeros(3, np.int32)
    cfg = opj.AttackConfig(popsize=8, max_iters=5, batch_size=2)
    seen = []
    res = opj.attack(jax.random.key(0), red_needle_model, images, labels, cfg, progress=seen.append)
    assert len(seen) >= 2
    assert seen[0]["evaluations"] == 2 * cfg.popsize  # the first segment: one generation
    assert seen[-1]["images_done"] == 3 and seen[-1]["evaluations"] == 3 * cfg.budget
    for key in ("images_done", "evaluations"):
        assert [s[key] for s in seen] == sorted(s[key] for s in seen)
    assert res.compile_seconds is not None and res.compile_seconds >= 0
    opj.attack(jax.random.key(0), red_needle_model, images, labels, cfg, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_lines_are_plain_when_stderr_is_not_a_terminal():
    import io

    from onepixel_jax.progress import ProgressReporter, duration

    log = io.StringIO()  # not a terminal: whole lines, at most every plain_interval
    rep = ProgressReporter(10, 100, stream=log, plain_interval=3600)
    for done in range(11):
        rep.update(done, done * 100, 50)
    rep.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2  # the first and the last update
    assert lines[-1].startswith("[attack] 10/10 images")
    assert duration(float("inf")) == "?" and duration(2.4e17) == "?" and duration(75) == "1m15s"


def test_plan_slots_defaults_and_explicit_sizes():
    from onepixel_jax.planner import Schedule, plan_slots

    assert plan_slots(400, 100, (32, 32, 3)) == (1, 1)  # CPU: one call of 400 candidates
    explicit = Schedule(batch_size=10, call_size=800)
    assert plan_slots(400, 100, (32, 32, 3), explicit) == (10, 2)
    assert plan_slots(400, 3, (32, 32, 3), explicit) == (4, 2)  # 3 images: 2 groups of 2 slots
    assert plan_slots(20, 6, (8, 8, 1)) == (6, 6)


def test_a_numpy_predict_fn_gets_one_line_pointing_to_the_adapters():
    def numpy_model(batch):
        return np.full((len(np.asarray(batch)), 3), 1 / 3)

    with pytest.raises(TypeError, match=r"not JAX-traceable.*opj\.targets\.from_numpy"):
        opj.attack(jax.random.key(0), numpy_model, grey_images(2), LABELS2, opj.AttackConfig())


def test_warns_when_most_images_are_already_misclassified():
    images01 = grey_images(4).astype(np.float32) / 255.0  # the wrong pixel scale
    # the warning comes before the loop; the settings (and the image count) of
    # test_untargeted_finds_the_red_pixel_near_known_location reuse its compiled loop
    cfg = opj.AttackConfig(pixels=1, popsize=60, max_iters=40)
    with pytest.warns(UserWarning, match=r"100% of the 4 images.*\[0, 1\]"):
        opj.attack(jax.random.key(0), red_needle_model, images01, np.ones(4, int), cfg)


# --------------------------------------------------------------------------------------
# The seams: a strategy defined here, the returned-candidate rule, DE against NumPy


def _scripted_strategy(script):
    """A strategy that proposes fixed candidates: generation g asks ``script[g]`` (P, D)."""
    from onepixel_jax.types import Strategy

    table = jnp.asarray(script, jnp.float32)

    def initial(key, params):
        return table[0]

    def init(key, genes, fitness, params):
        return jnp.int32(1)

    def ask(key, state, params):
        return table[jnp.minimum(state, len(script) - 1)], state + 1

    def tell(key, genes, fitness, state, params):
        return state

    return Strategy(initial, init, ask, tell, ())


def test_a_strategy_defined_here_runs_after_one_registry_line(monkeypatch):
    """Adding a strategy is its functions, one spec and one registry line; the returned
    candidate is the best successful one, else the one of lowest fitness."""
    from onepixel_jax import search
    from onepixel_jax.search.base import StrategySpec

    def three_class(batch):  # classes 1 and 2 grow with red and green at pixel (0, 0)
        r, g = batch[:, 0, 0, 0] / 255.0, batch[:, 0, 0, 1] / 255.0
        return jax.nn.softmax(jnp.stack([jnp.full_like(r, 2.0), 2.1 * r, 2.1 * g], -1), -1)

    # red alone flips the label barely (p_true 0.45); red and green together spread the mass
    # so that p_true drops lower (0.34) while class 0 keeps the argmax (checked below)
    fooling = [0.0, 0.0, 255.0, 0.0, 0.0]
    lower_fit_no_success = [0.0, 0.0, 237.0, 237.0, 0.0]
    probs = np.asarray(
        three_class(
            jnp.asarray(
                [
                    opj.perturb.apply_pixels_np(np.zeros((2, 2, 3)), [fooling]),
                    opj.perturb.apply_pixels_np(np.zeros((2, 2, 3)), [lower_fit_no_success]),
                ],
                jnp.float32,
            )
        )
    )
    assert probs[0].argmax() != 0 and probs[1].argmax() == 0  # success / not
    assert probs[1, 0] < probs[0, 0]  # the failure has the lower fitness p_true
    script = [[fooling] * 4, [lower_fit_no_success] * 4]
    spec = StrategySpec("scripted", lambda space: _scripted_strategy(script), "fixed candidates")
    monkeypatch.setitem(search._REGISTRY, spec.name, spec)  # the one registry line (undone after)
    images = np.zeros((1, 2, 2, 3), np.uint8)
    cfg = opj.AttackConfig(strategy="scripted", popsize=4, max_iters=1)
    res = opj.attack(jax.random.key(0), three_class, images, np.zeros(1, int), cfg, progress=False)
    np.testing.assert_array_equal(res.pixels[0, 0], fooling)  # success first, despite fitness
    assert res.success[0]
    np.testing.assert_allclose(res.fitness_history[0], [probs[0, 0], probs[1, 0]], rtol=1e-5)
    # without any success the candidate of lowest fitness is returned
    quiet = [[[0.0, 0.0, 100.0, 0.0, 0.0]] * 4, [lower_fit_no_success] * 4]
    spec2 = StrategySpec("scripted", lambda space: _scripted_strategy(quiet), "fixed candidates")
    monkeypatch.setitem(search._REGISTRY, spec2.name, spec2)
    res = opj.attack(jax.random.key(0), three_class, images, np.zeros(1, int), cfg, progress=False)
    np.testing.assert_array_equal(res.pixels[0, 0], lower_fit_no_success)
    assert not res.success[0]


def _np_de(key, image, label, model, popsize, generations, h, w, c, strict=False, redraw=False):
    """DE/rand/1 in NumPy (mutation, clipping or redrawing, selection with ties or strict),
    drawing its random numbers with the engine's keys: the initial population, the index
    draws and the redrawn values come from JAX."""
    from onepixel_jax.search import de
    from onepixel_jax.search.base import SearchSpace

    space = SearchSpace(1, h, w, c, popsize)
    lo, hi = (np.asarray(b) for b in space.bounds())

    def decode(g):
        t = np.round(g).astype(np.int64)
        return [min(max(t[0], 0), h - 1), min(max(t[1], 0), w - 1), *np.clip(t[2:], 0, 255)]

    def fitness(genes):
        batch = np.stack([opj.perturb.apply_pixels_np(image, [decode(g)]) for g in genes])
        return np.asarray(model(jnp.asarray(batch, jnp.float32)))[:, label].astype(np.float32)

    k0 = jax.random.fold_in(key, 0)
    pop = np.asarray(space.sample(jax.random.split(k0)[0]))
    fit = fitness(pop)
    best = [fit.min()]
    for g in range(1, generations + 1):
        k_ask = jax.random.split(jax.random.fold_in(key, g))[1]
        k_idx = jax.random.split(k_ask)[0]
        idx = np.asarray(de.sample_indices(k_idx, popsize, 3))
        kids = pop[idx[:, 0]] + np.float32(0.5) * (pop[idx[:, 1]] - pop[idx[:, 2]])
        if redraw:
            k_red = jax.random.fold_in(k_ask, 2)
            fresh = np.asarray(jax.random.uniform(k_red, kids.shape, minval=lo, maxval=hi))
            kids = np.where((kids < lo) | (kids > hi), fresh, kids)
        else:
            kids = np.clip(kids, lo, hi)
        kfit = fitness(kids)
        win = kfit < fit if strict else kfit <= fit
        pop, fit = np.where(win[:, None], kids, pop), np.where(win, kfit, fit)
        best.append(min(best[-1], fit.min()))
    return np.asarray(best, np.float32), pop[np.argmin(fit)]


@pytest.mark.parametrize("strategy", ["de", "paper"])
def test_de_through_the_engine_matches_a_numpy_de_with_the_same_keys(strategy):
    """``de``: ties and clipping; ``paper``: strict selection and redrawn mutants."""
    images = grey_images(2)
    labels = np.zeros(2, np.int32)
    cfg = opj.AttackConfig(strategy=strategy, popsize=12, max_iters=6)
    key = jax.random.key(11)
    res = opj.attack(key, red_needle_model, images, labels, cfg, progress=False)
    paper = strategy == "paper"
    for i in range(2):
        hist, _ = _np_de(
            jax.random.fold_in(key, i), images[i].astype(np.float32), 0, red_needle_model,
            12, 6, H, W, 3, strict=paper, redraw=paper,
        )  # fmt: skip
        np.testing.assert_allclose(res.fitness_history[i], hist, rtol=1e-5, atol=1e-7)


def test_planner_accelerator_branch(monkeypatch):
    """Off the CPU: calls of about 2**26 / 4 input values, slots for about 2**26 (the plan of
    the H200 measurements: 20 CIFAR-10 images at popsize 400 in 26 slots, calls of 5,200)."""
    from onepixel_jax import planner

    monkeypatch.setattr(planner, "on_cpu", lambda: False)
    cifar, mnist = (32, 32, 3), (28, 28, 1)
    # 2**26 // (4 * 400 * 3072) = 13 slots per call; 2**26 // (400 * 3072) = 54 slots, whole calls
    assert planner.plan_slots(400, 1000, cifar) == (65, 13)
    assert planner.plan_slots(400, 20, cifar) == (26, 13)  # 20 images: two calls of 13
    assert planner.plan_slots(400, 5, cifar) == (5, 5)  # never more slots than images
    assert planner.plan_slots(400, 1000, mnist) == (265, 53)  # 53 per call, 213 -> 5 calls
    explicit = planner.Schedule(batch_size=30, call_size=4000)
    assert planner.plan_slots(400, 1000, cifar, explicit) == (30, 10)
    assert planner.chunk_images(400, cifar) == 4 * 65  # the sweep fills the slots 4 times
    monkeypatch.setattr(planner, "on_cpu", lambda: True)
    assert planner.plan_slots(400, 1000, cifar) == (1, 1)  # the CPU: one image per call
    assert planner.chunk_images(400, cifar) == planner.MIN_CHUNK


def test_partly_busy_call_groups_shrink_and_results_do_not_change():
    """An accelerator-shaped plan on the CPU (26 slots in calls of 13): once the queue is
    empty, the partly busy group is evaluated in small calls over its busy slots, so at least
    90 % of the evaluations carried are useful on 20 images (55 % with whole-group calls), and
    the results equal those of the CPU's own plan bit for bit."""
    predict_fn, _ = opj.models.load("digits-cnn")
    x, y, _ = opj.data.load("digits", "test", limit=20)
    base = dict(strategy="paper", early_stop="success", popsize=100, max_iters=50)
    shaped = opj.AttackConfig(**base, call_size=1300, batch_size=26)
    res = opj.attack(jax.random.key(0), predict_fn, x, y, shaped, progress=False)
    assert res.queries.sum() / res.model_evaluations >= 0.90
    plain = opj.attack(
        jax.random.key(0), predict_fn, x, y, opj.AttackConfig(**base), progress=False
    )
    np.testing.assert_array_equal(res.pixels, plain.pixels)
    np.testing.assert_array_equal(res.queries, plain.queries)
    np.testing.assert_array_equal(res.probs, plain.probs)


def test_plans_fit_the_device_memory_caches_included(monkeypatch):
    """On an accelerator the plan is cut to fit the device's memory: the slots' caches (the
    incremental evaluation's clean activations) and one call's candidates and activations."""
    from onepixel_jax import planner, runner

    slots, call_slots = planner.fit_to_memory(64, 16, 100, 10**6, 10**4, memory=None)
    assert (slots, call_slots) == (64, 16)  # no memory figure: unchanged
    # 64 slots of 1 MB plus calls of 16 x 100 candidates of 10 kB = 80 MB; fit into 50 MB
    slots, call_slots = planner.fit_to_memory(64, 16, 100, 10**6, 10**4, memory=50 * 10**6)
    assert slots * 10**6 + call_slots * 100 * 10**4 <= planner.MEMORY_SHARE * 50 * 10**6
    assert slots % call_slots == 0 and slots >= call_slots >= 1
    with pytest.raises(MemoryError, match="lower popsize"):
        planner.fit_to_memory(4, 4, 10**6, 10**6, 10**6, memory=10**6)
    # the runner measures the bytes: a zoo network's incremental cache per slot, and XLA's
    # temporaries of the forward pass per candidate
    predict_fn, _ = opj.models.load("allconv-cifar10")
    cfg = opj.AttackConfig(pixels=1, incremental=True)
    target = opj.targets.resolve(predict_fn, True, 1, True, (32, 32, 3))
    per_slot, per_candidate = runner._plan_bytes(target, predict_fn, (32, 32, 3), cfg.method())
    cache = opj.targets.incremental.cache_bytes(predict_fn, (32, 32, 3), 1, channel_axis=True)
    assert per_slot >= cache > 100_000  # the clean activations are counted
    assert per_candidate > 32 * 32 * 3 * 4
    # and the attack runs with the cut plan (a device of 40 MB, monkeypatched)
    monkeypatch.setattr(planner, "device_memory", lambda: 40 * 2**20)
    x, y, _ = opj.data.load("digits", "test", limit=3)
    digits, _ = opj.models.load("digits-cnn")
    small = opj.AttackConfig(popsize=20, max_iters=2, batch_size=3, call_size=60)
    res = opj.attack(jax.random.key(0), digits, x, y, small, progress=False)
    assert res.success.shape == (3,)
