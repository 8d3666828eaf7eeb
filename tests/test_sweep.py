"""End-to-end tests of the sweep library (:func:`run_sweep`) on a tiny linear model and dataset.

The model, the data and the engine are injected (``predict_fn``, ``images``, ``attack_fn``);
nothing in the package is patched.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import onepixel_jax as opj
from onepixel_jax.cli import attack as cli_attack
from onepixel_jax.errors import UsageError
from onepixel_jax.experiments import inputs, plots, run_folder
from onepixel_jax.experiments.report import write_report
from onepixel_jax.experiments.selection import targets_for
from onepixel_jax.experiments.sweep import (
    SettingError,
    SweepConfig,
    command_line,
    run_sweep,
)

H = W = 4
C = 3
K = 3
N_SPLIT = 12

_rng = np.random.default_rng(1234)
_WEIGHTS = jnp.asarray(_rng.normal(size=(H * W * C, K)) * 3.0, jnp.float32)
IMAGES = _rng.integers(0, 256, size=(N_SPLIT, H, W, C), dtype=np.uint8)


def tiny_predict(batch):
    """A fixed linear softmax classifier on [0, 255] pixels: (B, H, W, C) -> (B, K)."""
    x = batch.reshape(batch.shape[0], -1) / 255.0 - 0.5
    return jax.nn.softmax(x @ _WEIGHTS, axis=-1)


CLEAN_PRED = np.asarray(tiny_predict(jnp.asarray(IMAGES, jnp.float32))).argmax(1)
LABELS = CLEAN_PRED.copy()
LABELS[[1, 4]] = (LABELS[[1, 4]] + 1) % K  # two images the model gets wrong
CARD = {"name": "tiny", "sha256": "0" * 64, "architecture": "linear", "input_shape": [H, W, C]}


class CountingEngine:
    """``opj.attack`` with a call counter; ``die_at`` raises KeyboardInterrupt on that call."""

    def __init__(self, die_at: int | None = None):
        self.calls = 0
        self.die_at = die_at
        self.strategies: list[str] = []

    def __call__(self, *args, **kwargs):
        self.calls += 1
        self.strategies.append(args[4].strategy)
        if self.calls == self.die_at:
            raise KeyboardInterrupt
        return opj.attack(*args, **kwargs)


def config(**overrides) -> SweepConfig:
    base = dict(model="tiny", dataset="toy", n_images=5, popsize=8, max_iters=3, chunk_size=2)
    return SweepConfig(**{**base, **overrides})


def sweep(out, cfg: SweepConfig, engine=None, card=CARD, **kwargs):
    return run_sweep(
        cfg,
        out,
        tiny_predict,
        IMAGES,
        LABELS,
        card=card,
        class_names=["zero", "one", "two"],
        attack_fn=engine or CountingEngine(),
        **kwargs,
    )


def records_without_timing(out):
    recs = run_folder.read_records(out)
    for r in recs:
        r.pop("seconds")
    return recs


class PaddingAwareEngine(CountingEngine):
    """A counting engine that takes ``count`` (passes it on when ``use_count``), runs each
    slot in its own model call (``call_size`` = popsize, so idle slots cost nothing) and sums
    the model evaluations it spends."""

    def __init__(self, use_count: bool = True):
        super().__init__()
        self.use_count = use_count
        self.counts: list = []
        self.evaluations = 0

    def __call__(self, key, predict_fn, images, labels, cfg, targets=None, progress=False,
                 count=None):  # fmt: skip
        self.counts.append(count)
        cfg = dataclasses.replace(cfg, call_size=cfg.popsize)
        res = super().__call__(
            key, predict_fn, images, labels, cfg, targets=targets, progress=progress,
            count=count if self.use_count else None,
        )  # fmt: skip
        self.evaluations += res.model_evaluations
        return res


def test_padding_of_the_last_chunk_costs_no_model_call_and_changes_no_record(tmp_path):
    """5 images in chunks of 2: the last chunk holds 1 image and 1 padding row. An engine
    taking ``count`` attacks only the image: every evaluation it spends is one a record
    counts, and the records equal those of the same engine attacking the padding copy too."""
    cfg = config(early_stop="success", max_iters=6)
    aware, copies = PaddingAwareEngine(), PaddingAwareEngine(use_count=False)
    sweep(tmp_path / "aware", cfg, engine=aware)
    sweep(tmp_path / "copies", cfg, engine=copies)
    assert aware.counts[-1] == 1 and aware.counts[:-1] == [None] * (len(aware.counts) - 1)
    assert records_without_timing(tmp_path / "aware") == records_without_timing(tmp_path / "copies")
    recs = run_folder.read_records(tmp_path / "aware")
    assert aware.evaluations == sum(r["queries"] for r in recs) < copies.evaluations


def test_untargeted_sweep_records_rebuild_adversarials_and_report(tmp_path):
    out = tmp_path / "run"
    engine = CountingEngine()
    cfg = config(methods=("de", "random"), early_stop=None)
    outcome = sweep(out, cfg, engine)
    assert outcome.attacks_run == 10 and outcome.attacks_reused == 0
    # 3 chunks (2 + 2 + 1 images), each one call per method, in the methods' order
    assert engine.strategies == ["de", "random"] * 3
    info = json.loads((out / "run.json").read_text())
    # The two misclassified images (1 and 4) are skipped by default.
    assert info["indices"] == [0, 2, 3, 5, 6]
    assert info["model_sha256"] == CARD["sha256"]
    assert info["config"]["popsize"] == 8 and info["seed"] == 0
    assert info["config"]["methods"] == ["de", "random"]
    assert info["versions"]["jax"] == jax.__version__
    assert info["machine"]["cpu_count"] and info["created"]
    # The recorded command parses back to the same configuration.
    parser = argparse.ArgumentParser()
    cli_attack.add_arguments(parser)
    replay = parser.parse_args(shlex.split(info["command"])[2:])
    assert cli_attack.config_from_args(replay) == cfg == SweepConfig.from_json(info["config"])
    assert replay.out == str(out)

    recs = run_folder.read_records(out)
    keys = [run_folder.record_key(r) for r in recs]
    assert len(keys) == len(set(keys)) == 10  # 5 images x (DE, random)
    assert {r["method"] for r in recs} == {"de", "random"}
    for r in recs:
        assert r["queries"] == 8 * 4  # no early stop: the full budget
        assert len(r["fitness"]) == 4
        assert all(a >= b - 1e-6 for a, b in zip(r["fitness"], r["fitness"][1:], strict=False))
        # The record alone rebuilds the adversarial image and its prediction.
        adv = plots.rebuild_adversarial(IMAGES[r["index"]], r["pixels"])
        assert int((adv != IMAGES[r["index"]]).any(axis=-1).sum()) <= 1
        probs = np.asarray(tiny_predict(jnp.asarray(adv[None], jnp.float32)))[0]
        np.testing.assert_allclose(probs, r["probs"], atol=1e-5)
        assert r["success"] == (int(probs.argmax()) != r["label"])
        before = np.asarray(r["original_values"], float)
        after = np.asarray(r["pixels"], float)[:, 2:]
        assert r["distortion"] == pytest.approx(np.abs(after - before).mean())

    write_report(out)
    summary = json.loads((out / "summary.json").read_text())
    de = summary["methods"]["de"]
    n_success = sum(r["success"] for r in recs if r["method"] == "de")
    assert de["success"]["successes"] == n_success and de["success"]["trials"] == 5
    (cmp,) = summary["comparisons"]
    assert (cmp["a"], cmp["b"], cmp["trials"]) == ("de", "random", 5)
    text = (out / "report.md").read_text()
    for fig in ("class_pairs.png", "per_class.png", "fitness.png"):
        assert (out / fig).stat().st_size > 1000 and f"({fig})" in text
    assert "target_counts.png" not in text  # only for targeted modes


def test_method_order_sets_the_per_method_key(tmp_path):
    """Method m of a chunk uses fold_in(chunk key, m): random first gives random the DE keys."""
    a = tmp_path / "a"
    sweep(a, config(methods=("de", "random"), early_stop=None, n_images=2))
    b = tmp_path / "b"
    sweep(b, config(methods=("random", "de"), early_stop=None, n_images=2))
    ra = {run_folder.record_key(r): r for r in records_without_timing(a)}
    rb = {run_folder.record_key(r): r for r in records_without_timing(b)}
    only_de = tmp_path / "c"
    sweep(only_de, config(methods=("de",), early_stop=None, n_images=2))
    rc = {run_folder.record_key(r): r for r in records_without_timing(only_de)}
    assert {k: v for k, v in ra.items() if k[0] == "de"} == rc  # adding a baseline changes no DE
    assert ra != rb and set(ra) == set(rb)


def test_all_targets_resume_after_kill_matches_uninterrupted_run(tmp_path):
    cfg = config(mode="all-targets", n_images=3, early_stop="success")
    ref = tmp_path / "ref"
    sweep(ref, cfg)
    expected = records_without_timing(ref)
    assert len(expected) == 3 * (K - 1)
    for r in expected:
        assert r["target"] != r["label"] and r["queries"] % 8 == 0

    # Second run: the process "dies" during the second engine call.
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        sweep(out, cfg, CountingEngine(die_at=2))
    partial = run_folder.read_records(out)
    assert len(partial) == 2 * (K - 1)  # the first chunk (2 images) survived
    with open(out / "results.jsonl", "a") as fh:  # and a torn half record after it
        fh.write('{"method": "de", "index": 5, "lab')

    # Resume with another engine batch size: same records, none lost, none duplicated.
    outcome = sweep(out, cfg, batch_size=3)
    assert outcome.attacks_reused == 2 * (K - 1) and outcome.attacks_run == K - 1
    got = records_without_timing(out)
    key = run_folder.record_key
    assert sorted(map(key, got)) == sorted(map(key, expected))
    assert sorted(got, key=key) == sorted(expected, key=key)
    summary = write_report(out)
    de = summary["methods"]["de"]
    assert sum(de["target_histogram"]) == 3
    assert de["targets_per_image"] == pytest.approx(sum(r["success"] for r in got) / 3)

    # A finished run resumes as a no-op (no engine call) and says so.
    engine = CountingEngine()
    outcome = sweep(out, cfg, engine)
    assert engine.calls == 0 and outcome.reused_finished_run


def test_progress_reports_every_chunk(tmp_path):
    seen = []
    sweep(tmp_path / "run", config(n_images=3, chunk_size=1), progress=seen.append)
    ends = [(p.images_done, p.step) for p in seen if p.step or not p.partial]
    assert ends == [(0, 0), (1, 1), (2, 1), (3, 1)]
    assert all(p.images_total == 3 for p in seen) and seen[-1].queries > 0
    # within a chunk, per generation: the fraction of the chunk's budget spent
    within = [p for p in seen if p.partial]
    assert len(within) >= 3 and all(0 < p.partial <= 1 and p.chunk_images == 1 for p in within)


def test_changed_configuration_is_refused(tmp_path):
    out = tmp_path / "run"
    sweep(out, config(n_images=2, early_stop=None))
    before = (out / "results.jsonl").read_bytes()
    with pytest.raises(UsageError, match="different configuration.*popsize"):
        sweep(out, config(n_images=2, early_stop=None, popsize=10))
    with pytest.raises(UsageError, match="model checksum"):
        sweep(out, config(n_images=2, early_stop=None), card=dict(CARD, sha256="1" * 64))
    with pytest.raises(UsageError, match="methods"):
        sweep(out, config(n_images=2, early_stop=None, methods=("de", "random")))
    assert (out / "results.jsonl").read_bytes() == before


def test_old_run_json_with_baseline_resumes(tmp_path):
    """Runs written before configs named their methods (``baseline``) still resume."""
    out = tmp_path / "run"
    cfg = config(n_images=2, early_stop=None, methods=("de", "random"))
    sweep(out, cfg)
    info = json.loads((out / "run.json").read_text())
    old = dict(info["config"], baseline="random")
    del old["methods"]
    (out / "run.json").write_text(json.dumps(dict(info, config=old)))
    engine = CountingEngine()
    assert sweep(out, cfg, engine).reused_finished_run and engine.calls == 0


def test_growing_n_images_extends_the_run_like_a_single_larger_run(tmp_path):
    cfg = config(mode="targeted", early_stop="success")
    ref = tmp_path / "ref"
    sweep(ref, cfg)  # 5 images in one go
    out = tmp_path / "grown"
    sweep(out, config(mode="targeted", early_stop="success", n_images=3))
    first = records_without_timing(out)
    assert len(first) == 3
    engine = CountingEngine()
    assert sweep(out, cfg, engine).grown  # only the 2 new images are attacked
    # chunks of 2: [2, 3] is repeated (image 2 is done, its record is kept) and [4] is new
    assert engine.calls == 2
    got = records_without_timing(out)
    assert got[:3] == first  # earlier records untouched
    expected = records_without_timing(ref)
    key = run_folder.record_key
    assert sorted(got, key=key) == sorted(expected, key=key)
    info, ref_info = (json.loads((d / "run.json").read_text()) for d in (out, ref))
    assert info["indices"] == ref_info["indices"] and info["config"] == ref_info["config"]
    assert info["grown"][0]["from"] == 3 and info["grown"][0]["to"] == 5
    assert "--n-images 5" in info["command"]
    with np.load(out / "images.npz") as saved:
        assert saved["indices"].tolist() == info["indices"]

    # Shrinking is refused, and nothing changes.
    before = (out / "results.jsonl").read_bytes()
    with pytest.raises(UsageError, match="can grow, not shrink"):
        sweep(out, config(mode="targeted", early_stop="success", n_images=4))
    assert (out / "results.jsonl").read_bytes() == before


@pytest.mark.parametrize(
    "overrides, card, message",
    [
        ({"n_images": 13}, CARD, "larger than"),
        ({"pixels": 17}, CARD, "exceeds"),
        ({"n_images": 11}, CARD, "classified correctly"),
        ({}, dict(CARD, input_shape=[8, 8, 1]), "takes 8x8x1 images, toy has 4x4x3"),
    ],
)
def test_impossible_inputs_are_refused_before_any_work(tmp_path, overrides, card, message):
    out = tmp_path / "run"
    engine = CountingEngine()
    with pytest.raises(UsageError, match=message):
        sweep(out, config(**overrides), engine, card=card)
    assert engine.calls == 0 and not (out / "results.jsonl").exists()


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"pixels": 0}, "pixels"),
        ({"popsize": 3}, "popsize"),
        ({"max_iters": -1}, "max_iters"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"n_images": 2.5}, "n_images"),
        ({"seed": 2**32}, "seed"),
        ({"seed": -1}, "seed"),
        ({"mode": "sideways"}, "mode"),
        ({"early_stop": "never"}, "early_stop"),
        ({"threshold": 0.5}, "threshold"),  # only with early_stop="threshold"
        ({"early_stop": "threshold", "threshold": 1.5}, "threshold"),
        ({"methods": ()}, "methods"),
        ({"methods": ("de", "de")}, "methods"),
        ({"methods": ("annealing",)}, "methods"),
        ({"model": ""}, "model"),
    ],
)
def test_sweep_config_names_the_bad_field(overrides, field):
    with pytest.raises(SettingError) as info:
        config(**overrides)
    assert info.value.field == field and str(info.value).startswith(field)
    assert isinstance(info.value, ValueError)


def test_run_sweep_rejects_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="SweepConfig"):
        run_sweep({"model": "tiny"}, tmp_path, tiny_predict, IMAGES, LABELS)
    with pytest.raises(SettingError, match="batch_size"):
        sweep(tmp_path / "r", config(), batch_size=0)
    with pytest.raises(UsageError, match="images must be"):
        run_sweep(config(), tmp_path / "r", tiny_predict, IMAGES[:, 0, 0], LABELS)


def test_command_line_round_trips_every_field(tmp_path):
    cfg = config(
        mode="targeted", early_stop="threshold", threshold=0.3, methods=("random", "de"),
        include_misclassified=True, seed=2**32 - 1,
    )  # fmt: skip
    line = command_line(cfg, tmp_path / "x y", data_dir="/d")
    parser = argparse.ArgumentParser()
    cli_attack.add_arguments(parser)
    args = parser.parse_args(shlex.split(line)[2:])
    assert cli_attack.config_from_args(args) == cfg and args.data_dir == "/d"


def test_error_messages_fit_one_line():
    err = FileNotFoundError(
        "dataset 'x' not found; looked in:\n  - /a/x\n  - /b/x\nPut files there."
    )
    assert inputs.one_line(err) == "dataset 'x' not found; looked in: /a/x"
    assert inputs.one_line(ValueError("bad\nmore")) == "bad"
    assert inputs.one_line(KeyError()) == "KeyError"


def test_chunk_size_comes_from_the_device_and_is_kept_on_resume(tmp_path, monkeypatch):
    from onepixel_jax import planner

    # CPU: one slot of 400 candidates per call, so a chunk is the minimum of 16 images
    assert planner.chunk_images(400, (32, 32, 3)) == planner.MIN_CHUNK
    # an accelerator-sized plan (monkeypatched): four waves of its slots per chunk
    monkeypatch.setattr(planner, "on_cpu", lambda: False)
    slots, call_slots = planner.plan_slots(400, 10**6, (32, 32, 3))
    assert call_slots == planner.ACCELERATOR_CALL_VALUES // (4 * 400 * 32 * 32 * 3)
    assert slots >= planner.ACCELERATOR_CALL_VALUES // (400 * 32 * 32 * 3)
    assert planner.chunk_images(400, (32, 32, 3)) == planner.CHUNK_WAVES * slots
    assert planner.chunk_images(400, (32, 32, 3), 9) == planner.CHUNK_WAVES * slots // 9
    monkeypatch.undo()
    cfg = config(n_images=3, chunk_size=None)
    sweep(tmp_path / "run", cfg)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    want = planner.chunk_images(8, IMAGES.shape[1:])  # resolved on this device, recorded
    assert info["config"]["chunk_size"] == want >= planner.MIN_CHUNK
    # a resume with chunk_size None adopts the recorded one, even where the device differs
    monkeypatch.setattr(planner, "chunk_images", lambda *a, **k: 999)
    outcome = sweep(tmp_path / "run", config(n_images=4, chunk_size=None))
    assert outcome.info["config"]["chunk_size"] == want


def test_targets_for_modes():
    assert targets_for("untargeted", 2, 10, 0, 5) == [None]
    assert targets_for("all-targets", 2, 4, 0, 5) == [0, 1, 3]
    picks = {targets_for("targeted", 2, 10, 0, i)[0] for i in range(200)}
    assert 2 not in picks and picks == set(range(10)) - {2}
    assert targets_for("targeted", 2, 10, 0, 7) == targets_for("targeted", 2, 10, 0, 7)
    with pytest.raises(ValueError, match="mode"):
        targets_for("sideways", 2, 10, 0, 7)


def test_progress_off_a_terminal_is_plain_lines_first_throttled_and_last():
    import io

    from onepixel_jax.experiments.sweep import SweepProgress

    clock = iter([0.0, 1.0, 2.0, 40.0, 41.0, 42.0]).__next__
    stream = io.StringIO()  # not a terminal
    bar = cli_attack.ProgressBar(quiet=False, stream=stream, plain_interval=30.0, clock=clock)

    def report(done, partial, seconds):
        bar(SweepProgress(done, 10, done // 2, 1000 * done, seconds, 0, 4, partial))

    report(0, 0.5, 1.0)  # t = 1: the first report is written
    report(0, 0.9, 2.0)  # t = 2: within 30 s, dropped
    report(4, 0.0, 40.0)  # t = 40: 30 s after the last line
    report(8, 0.0, 41.0)  # t = 41: dropped
    report(10, 0.0, 42.0)  # t = 42: the last report is always written
    bar.close()
    text = stream.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and len(lines) == 3, text
    assert lines[0].startswith("[sweep] 2.0/10 images") and "ETA ?" not in lines[1]
    assert lines[1].startswith("[sweep] 4.0/10 images  fooled 2/4  100/s")
    assert lines[2].startswith("[sweep] 10.0/10 images") and lines[2].endswith("ETA 0s")
    quiet = io.StringIO()
    cli_attack.ProgressBar(quiet=True, stream=quiet)(SweepProgress(1, 10, 0, 10, 1.0, 1))
    assert quiet.getvalue() == ""
