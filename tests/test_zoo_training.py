"""Tests of opj.zoo.training: augmentation, schedule, the steps, config checks, a tiny run."""

from __future__ import annotations

import argparse
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from onepixel_jax import data, models
from onepixel_jax.cli import train as cli_train
from onepixel_jax.zoo import training as train


def _is_crop_or_flipped_crop(out: np.ndarray, img: np.ndarray, pad: int) -> bool:
    h, w, _ = img.shape
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[dy : dy + h, dx : dx + w]
            if np.array_equal(out, crop) or np.array_equal(out, crop[:, ::-1]):
                return True
    return False


def test_augment_batch_is_a_padded_crop_with_optional_flip():
    images = np.random.default_rng(0).integers(1, 256, (16, 8, 8, 3)).astype(np.float32)
    out = np.asarray(jax.jit(train.augment_batch)(jax.random.PRNGKey(0), jnp.asarray(images)))
    assert out.shape == images.shape and out.dtype == np.float32
    assert all(_is_crop_or_flipped_crop(out[i], images[i], 4) for i in range(16))
    # it does change images, and differently per image
    changed = [not np.array_equal(out[i], images[i]) for i in range(16)]
    assert sum(changed) >= 8


def test_learning_rate_schedule():
    cfg = train.TrainConfig(model="digits-cnn", dataset="digits", learning_rate=0.2)
    assert train.learning_rate_at(cfg, 0, 0.0, 10) == pytest.approx(0.02)
    assert train.learning_rate_at(cfg, 9, 0.0, 10) == pytest.approx(0.2)
    assert train.learning_rate_at(cfg, 50, 0.5, 10) == pytest.approx(0.1)
    assert train.learning_rate_at(cfg, 99, 1.0, 10) == pytest.approx(0.0, abs=1e-12)
    assert train.learning_rate_at(cfg, 99, 2.0, 10) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"model": "resnet50"}, "model"),
        ({"dataset": "svhn"}, "dataset"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"width": 0}, "width"),
        ({"optimizer": "lion"}, "optimizer"),
        ({"time_budget": -1.0}, "time_budget"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train.TrainConfig(**kwargs)


@pytest.fixture(scope="module")
def bn_state(zoo_init):
    """A batch-norm DigitsCNN train state and its module, built once for the module: the
    optimizer is a static part of the compiled steps, so sharing one state lets the step
    tests share their compilations (states are immutable; each test replaces what it
    changes)."""
    cfg = train.TrainConfig(model="digits-cnn", dataset="digits", width=0.25, batch_norm=True)
    model, variables = zoo_init("digits-cnn", width=0.25, batch_norm=True)
    return train.create_train_state(model, variables, cfg, jax.random.PRNGKey(1)), model


def _batch(n: int = 16, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (n, 8, 8, 1)).astype(np.uint8),
        "label": rng.integers(0, 10, n).astype(np.int32),
    }


def test_train_step_updates_params_and_batch_stats_same_under_jit(bn_state):
    state, _ = bn_state
    state = state.replace(learning_rate=jnp.float32(0.1))
    batch = _batch()
    eager, metrics = train.train_step(state, batch)
    jitted, jit_metrics = train.jit_train_step(state, batch)
    assert int(eager.step) == 1
    leaves = zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted), strict=True)
    for a, b in leaves:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["loss"], jit_metrics["loss"], rtol=1e-5)
    changed = jax.tree_util.tree_map(
        lambda x, y: not np.allclose(x, y), state.batch_stats, eager.batch_stats
    )
    assert all(jax.tree_util.tree_leaves(changed))  # every running mean/var moved
    assert not np.allclose(state.params["Dense_1"]["kernel"], eager.params["Dense_1"]["kernel"])
    # a zero learning rate moves no parameter but still updates the statistics
    frozen, _ = train.jit_train_step(state.replace(learning_rate=jnp.float32(0.0)), batch)
    np.testing.assert_array_equal(
        frozen.params["Dense_1"]["kernel"], state.params["Dense_1"]["kernel"]
    )


def test_eval_step_matches_the_module_and_honours_the_mask(bn_state):
    state, model = bn_state
    batch = _batch(8, seed=2)
    logits = model.apply(state.variables(), jnp.asarray(batch["image"], jnp.float32))
    want = np.argmax(np.asarray(logits), -1)
    out = train.jit_eval_step(state, batch)
    np.testing.assert_array_equal(out["predictions"], want)
    assert int(out["correct"]) == int(np.sum(want == batch["label"]))
    mask = np.arange(8) < 3
    masked = train.jit_eval_step(state, {**batch, "mask": mask})
    assert int(masked["correct"]) == int(np.sum((want == batch["label"])[:3]))
    acc = train.evaluate(state, batch["image"], batch["label"], batch_size=3)
    assert acc == pytest.approx(np.mean(want == batch["label"]))


def test_steps_compile_once_for_many_steps(bn_state):
    state, _ = bn_state
    batch = _batch()
    state, _ = train.jit_train_step(state, batch)  # compile
    before = train.jit_train_step._cache_size()
    for lr in (0.1, 0.05, 0.0):
        state, _ = train.jit_train_step(state.replace(learning_rate=jnp.float32(lr)), batch)
    assert train.jit_train_step._cache_size() == before


def test_tiny_run_writes_a_loadable_checkpoint_and_card(tmp_path):
    cfg = train.TrainConfig(
        model="digits-cnn",
        dataset="digits",
        width=0.5,
        epochs=3,
        batch_size=32,
        learning_rate=0.1,
        train_limit=256,
        eval_limit=64,
        seed=3,
        command="test",
    )
    lines = []
    card = train.train_and_evaluate(cfg, tmp_path / "tiny", log=lines.append)
    assert sum(line.startswith("epoch") for line in lines) == 3
    assert card["status"] == "complete" and card["steps_done"] == 3 * (256 // 32)
    assert card["history"][-1]["loss"] < card["history"][0]["loss"]
    assert card == json.loads((tmp_path / "tiny" / "card.json").read_text())
    predict_fn, loaded = models.load(tmp_path / "tiny")
    assert loaded["parameter_count"] == models.param_count(
        jax.eval_shape(
            lambda: models.init_variables(
                models.create("digits-cnn", width=0.5), (8, 8, 1), jax.random.PRNGKey(0)
            )
        )["params"]
    )
    assert loaded["checkpoint_sha256"] == models.sha256_file(tmp_path / "tiny" / "params.msgpack")
    # the card's accuracy is the checkpoint's accuracy on the evaluated images
    x, y, _ = data.load("digits", "test", limit=64)
    acc = np.mean(np.argmax(np.asarray(predict_fn(x.astype(np.float32))), -1) == y)
    assert acc == pytest.approx(card["test_accuracy"], abs=1e-4)
    assert card["test_accuracy"] > 0.4  # 3 tiny epochs already beat chance (0.1) clearly
    assert card["spot_check"]["images"] == 300


def test_resume_continues_exactly_where_the_run_stopped(tmp_path):
    cfg = train.TrainConfig(
        model="digits-cnn", dataset="digits", width=0.25, epochs=3, batch_size=64,
        train_limit=256, eval_limit=32, seed=5,
    )  # fmt: skip
    whole = train.train_and_evaluate(cfg, tmp_path / "whole", log=lambda _: None)

    class Killed(Exception):
        pass

    def log(line):
        if line.startswith("epoch   2/"):  # after epoch 1 was saved, before epoch 2 is
            raise Killed

    with pytest.raises(Killed):
        train.train_and_evaluate(cfg, tmp_path / "cut", log=log)
    card = json.loads((tmp_path / "cut" / "card.json").read_text())
    assert card["status"] == "epoch 1/3" and (tmp_path / "cut" / train.TRAIN_STATE_FILE).exists()
    other = dataclasses.replace(cfg, learning_rate=0.5)
    with pytest.raises(ValueError, match="learning_rate"):
        train.train_and_evaluate(other, tmp_path / "cut", resume=True)
    resumed = train.train_and_evaluate(cfg, tmp_path / "cut", resume=True, log=lambda _: None)
    assert resumed["status"] == "complete" and len(resumed["history"]) == 3
    assert resumed["checkpoint_sha256"] == whole["checkpoint_sha256"]  # bit for bit
    assert not (tmp_path / "cut" / train.TRAIN_STATE_FILE).exists()
    with pytest.raises(ValueError, match="finished run"):
        train.train_and_evaluate(cfg, tmp_path / "cut", resume=True)


def test_time_budget_stops_training(tmp_path):
    cfg = train.TrainConfig(
        model="digits-cnn",
        dataset="digits",
        width=0.25,
        epochs=1000,
        batch_size=64,
        train_limit=128,
        eval_limit=16,
        time_budget=0.5,
    )
    card = train.train_and_evaluate(cfg, tmp_path / "tb", log=lambda _: None)
    assert card["stopped_by_time_budget"] is True
    assert card["status"] == "complete"
    assert card["epochs_done"] < 1000


def test_cli_train_subcommand(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="onepixel")
    cli_train.register_cli(parser.add_subparsers())
    out = tmp_path / "cli"
    args = parser.parse_args(
        ["train", "--model", "digits-cnn", "--dataset", "digits", "--width", "0.25"]
        + ["--epochs", "1", "--train-limit", "64", "--eval-limit", "16", "--out", str(out)]
    )
    assert args.func(args) == 0
    assert "epoch   1/1" in capsys.readouterr().out
    assert json.loads((out / "card.json").read_text())["model_kwargs"]["width"] == 0.25
    bad = parser.parse_args(["train", "--model", "lenet", "--dataset", "digits", "--out", str(out)])
    assert bad.func(bad) != 0
    assert "takes (28, 28, 1) inputs" in capsys.readouterr().err
