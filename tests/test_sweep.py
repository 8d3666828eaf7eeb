"""End-to-end tests of ``onepixel attack`` on a tiny linear model and a tiny dataset."""

from __future__ import annotations

import argparse
import json
import shlex

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import onepixel_jax as opj
from onepixel_jax import report, sweep

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
CARD = {"name": "tiny", "sha256": "0" * 64, "architecture": "linear"}


@pytest.fixture
def tiny(monkeypatch):
    """Serve the tiny model and dataset to the sweep instead of the real registries."""
    calls = {"engine": 0}

    def load_model(name):
        if name == "tiny-8x8":  # a card for another input size
            return tiny_predict, dict(CARD, input_shape=[8, 8, 1])
        if name != "tiny":
            raise sweep.UsageError(f"unknown model {name!r} (available: tiny)")
        return tiny_predict, dict(CARD, input_shape=[H, W, C])

    def load_dataset(name, split, data_dir):
        if name != "toy":
            raise sweep.UsageError(f"unknown dataset {name!r}")
        return IMAGES, LABELS, ["zero", "one", "two"]

    for name in ("attack", "random_search"):
        real = getattr(opj, name)

        def counted(*a, _real=real, **kw):
            calls["engine"] += 1
            return _real(*a, **kw)

        monkeypatch.setattr(opj, name, counted)
    monkeypatch.setattr(sweep, "load_model", load_model)
    monkeypatch.setattr(sweep, "load_dataset", load_dataset)
    return calls


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="onepixel")
    sub = parser.add_subparsers()
    sweep.register_cli(sub)
    report.register_cli(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def base_args(out, *extra):
    return [
        "attack", "--model", "tiny", "--dataset", "toy", "--n-images", "5",
        "--popsize", "8", "--max-iters", "3", "--chunk-size", "2", "--quiet",
        "--out", str(out), *extra,
    ]  # fmt: skip


def records_without_timing(path):
    recs = sweep.read_records(path)
    for r in recs:
        r.pop("seconds")
    return recs


def test_untargeted_sweep_records_rebuild_adversarials_and_report(tiny, tmp_path):
    out = tmp_path / "run"
    assert run(base_args(out, "--baseline", "random", "--early-stop", "none")) == 0
    info = json.loads((out / "run.json").read_text())
    # The two misclassified images (1 and 4) are skipped by default.
    assert info["indices"] == [0, 2, 3, 5, 6]
    assert info["model_sha256"] == CARD["sha256"]
    assert info["config"]["popsize"] == 8 and info["seed"] == 0
    assert info["versions"]["jax"] == jax.__version__
    # The recorded command parses back to the same configuration.
    parser = argparse.ArgumentParser()
    sweep.add_arguments(parser)
    replay = parser.parse_args(shlex.split(info["command"])[2:])
    assert sweep.config_from_args(replay) == info["config"] and replay.out == str(out)

    recs = sweep.read_records(out / "results.jsonl")
    keys = [sweep.record_key(r) for r in recs]
    assert len(keys) == len(set(keys)) == 10  # 5 images x (DE, random)
    assert {r["method"] for r in recs} == {"de", "random"}
    for r in recs:
        assert r["queries"] == 8 * 4  # no early stop: the full budget
        assert len(r["fitness"]) == 4
        assert all(a >= b - 1e-6 for a, b in zip(r["fitness"], r["fitness"][1:], strict=False))
        # The record alone rebuilds the adversarial image and its prediction.
        adv = report.rebuild_adversarial(IMAGES[r["index"]], r["pixels"])
        assert int((adv != IMAGES[r["index"]]).any(axis=-1).sum()) <= 1
        probs = np.asarray(tiny_predict(jnp.asarray(adv[None], jnp.float32)))[0]
        np.testing.assert_allclose(probs, r["probs"], atol=1e-5)
        assert r["success"] == (int(probs.argmax()) != r["label"])
        before = np.asarray(r["original_values"], float)
        after = np.asarray(r["pixels"], float)[:, 2:]
        assert r["distortion"] == pytest.approx(np.abs(after - before).mean())

    summary = json.loads((out / "summary.json").read_text())
    de = summary["methods"]["de"]
    n_success = sum(r["success"] for r in recs if r["method"] == "de")
    assert de["success"]["successes"] == n_success and de["success"]["trials"] == 5
    assert summary["de_vs_random"]["trials"] == 5
    text = (out / "report.md").read_text()
    for fig in ("class_pairs.png", "per_class.png", "fitness.png"):
        assert (out / fig).stat().st_size > 1000 and f"({fig})" in text
    assert "target_counts.png" not in text  # only for targeted modes


def test_all_targets_resume_after_kill_matches_uninterrupted_run(tiny, tmp_path, monkeypatch):
    args = ["--mode", "all-targets", "--n-images", "3", "--early-stop", "success"]
    ref = tmp_path / "ref"
    assert run(base_args(ref, *args, "--no-report")) == 0
    expected = records_without_timing(ref / "results.jsonl")
    assert len(expected) == 3 * (K - 1)
    for r in expected:
        assert r["target"] != r["label"] and r["queries"] % 8 == 0

    # Second run: the process "dies" during the second engine call.
    out = tmp_path / "killed"
    real = opj.attack
    state = {"calls": 0}

    def dying(*a, **kw):
        state["calls"] += 1
        if state["calls"] == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(opj, "attack", dying)
    assert run(base_args(out, *args, "--no-report")) == 130
    partial = sweep.read_records(out / "results.jsonl")
    assert len(partial) == 2 * (K - 1)  # the first chunk (2 images) survived
    with open(out / "results.jsonl", "a") as fh:  # and a torn half record after it
        fh.write('{"method": "de", "index": 5, "lab')
    monkeypatch.setattr(opj, "attack", real)

    # Resume with another engine batch size: same records, none lost, none duplicated.
    assert run(base_args(out, *args, "--batch-size", "3")) == 0
    got = records_without_timing(out / "results.jsonl")
    assert sorted(map(sweep.record_key, got)) == sorted(map(sweep.record_key, expected))
    assert sorted(got, key=sweep.record_key) == sorted(expected, key=sweep.record_key)
    summary = json.loads((out / "summary.json").read_text())
    de = summary["methods"]["de"]
    assert sum(de["target_histogram"]) == 3
    assert de["targets_per_image"] == pytest.approx(sum(r["success"] for r in got) / 3)

    # A finished run resumes as a no-op (no engine call).
    calls = tiny["engine"]
    assert run(base_args(out, *args, "--no-report")) == 0
    assert tiny["engine"] == calls


def test_changed_configuration_is_refused(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(base_args(out, "--n-images", "2", "--early-stop", "none", "--no-report")) == 0
    before = (out / "results.jsonl").read_bytes()
    capsys.readouterr()
    assert run(base_args(out, "--n-images", "2", "--early-stop", "none", "--popsize", "10")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different configuration" in err and "popsize" in err
    assert (out / "results.jsonl").read_bytes() == before


def test_growing_n_images_extends_the_run_like_a_single_larger_run(tiny, tmp_path, capsys):
    args = ["--mode", "targeted", "--early-stop", "success", "--no-report"]
    ref = tmp_path / "ref"
    assert run(base_args(ref, *args)) == 0  # 5 images in one go
    out = tmp_path / "grown"
    assert run(base_args(out, *args, "--n-images", "3")) == 0
    first = records_without_timing(out / "results.jsonl")
    assert len(first) == 3
    calls = tiny["engine"]
    assert run(base_args(out, *args)) == 0  # --n-images 5: only the 2 new images are attacked
    # chunks of 2: [2, 3] is repeated (image 2 is done, its record is kept) and [4] is new
    assert tiny["engine"] == calls + 2
    got = records_without_timing(out / "results.jsonl")
    assert got[:3] == first  # earlier records untouched
    expected = records_without_timing(ref / "results.jsonl")
    assert sorted(got, key=sweep.record_key) == sorted(expected, key=sweep.record_key)
    info, ref_info = (json.loads((d / "run.json").read_text()) for d in (out, ref))
    assert info["indices"] == ref_info["indices"] and info["config"] == ref_info["config"]
    assert info["grown"][0]["from"] == 3 and info["grown"][0]["to"] == 5
    assert "--n-images 5" in info["command"]
    with np.load(out / "images.npz") as saved:
        assert saved["indices"].tolist() == info["indices"]

    # Shrinking is refused with one line, and nothing changes.
    before = (out / "results.jsonl").read_bytes()
    capsys.readouterr()
    assert run(base_args(out, *args, "--n-images", "4")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "can grow, not shrink" in err
    assert (out / "results.jsonl").read_bytes() == before


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "nope"], "unknown model"),
        (["--dataset", "nope"], "unknown dataset"),
        (["--n-images", "13"], "larger than"),
        (["--pixels", "0"], "--pixels must be at least 1"),
        (["--pixels", "17"], "exceeds"),
        (["--data-dir", "/nonexistent/data"], "data directory not found"),
        (["--threshold", "0.5"], "--threshold only applies"),
        (["--n-images", "11"], "classified correctly"),
        (["--model", "tiny-8x8"], "takes 8x8x1 images, toy has 4x4x3"),
    ],
)
def test_usage_errors_exit_2_before_any_work(tiny, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert run(base_args(out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert tiny["engine"] == 0 and not (out / "results.jsonl").exists()


def test_unwritable_out_is_refused(tiny, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run(base_args(blocker / "run")) == 2
    assert "not writable" in capsys.readouterr().err
    assert tiny["engine"] == 0


def test_error_messages_fit_one_line():
    err = FileNotFoundError(
        "dataset 'x' not found; looked in:\n  - /a/x\n  - /b/x\nPut files there."
    )
    assert sweep._one_line(err) == "dataset 'x' not found; looked in: /a/x"
    assert sweep._one_line(ValueError("bad\nmore")) == "bad"
    assert sweep._one_line(KeyError()) == "KeyError"


def test_read_records_repairs_torn_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    good = [{"method": "de", "index": i, "target": None} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in good) + '{"method": "de", "ind')
    assert sweep.read_records(path) == good
    assert sweep.read_records(path, repair=True) == good
    assert path.read_text().endswith("}\n") and len(path.read_text().splitlines()) == 3
    # A complete last record without its newline is dropped too (it may be cut mid-number).
    path.write_text(path.read_text() + json.dumps({"method": "de", "index": 9, "target": 1}))
    assert sweep.read_records(path, repair=True) == good
    path.write_text('{"broken\n' + json.dumps(good[0]) + "\n")
    with pytest.raises(ValueError):
        sweep.read_records(path)


def test_auto_batch_size_bounds_values_per_call():
    assert sweep.auto_batch_size(400, (32, 32, 3)) == 3
    assert sweep.auto_batch_size(400, (8, 8, 1)) == 163
    assert sweep.auto_batch_size(400, (227, 227, 3)) == 1


def test_targets_for_modes():
    assert sweep.targets_for("untargeted", 2, 10, 0, 5) == [None]
    assert sweep.targets_for("all-targets", 2, 4, 0, 5) == [0, 1, 3]
    picks = {sweep.targets_for("targeted", 2, 10, 0, i)[0] for i in range(200)}
    assert 2 not in picks and picks == set(range(10)) - {2}
    assert sweep.targets_for("targeted", 2, 10, 0, 7) == sweep.targets_for("targeted", 2, 10, 0, 7)
