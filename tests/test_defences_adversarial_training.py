"""One-pixel adversarial fine-tuning on the committed digits CNN (tiny budgets)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import onepixel_jax as opj
from onepixel_jax.defences import adversarial_training as adv


def test_config_checks():
    with pytest.raises(ValueError):
        adv.AdversarialTrainingConfig(model="digits-cnn", epochs=0)
    with pytest.raises(ValueError):
        adv.AdversarialTrainingConfig(model="digits-cnn", attack_images=-1)
    with pytest.raises(ValueError):
        adv.AdversarialTrainingConfig(model="digits-cnn", attack=opj.AttackConfig(targeted=True))
    with pytest.raises(ValueError):
        adv.AdversarialTrainingConfig(model="digits-cnn", dead_pixel_rate=0.5, dead_pixels=0)


def test_fine_tune_writes_a_loadable_checkpoint_with_its_card(tmp_path):
    """The real engine at a tiny budget: the epoch record counts what the attack did."""
    config = adv.AdversarialTrainingConfig(
        model="digits-cnn",
        epochs=1,
        attack_images=6,
        adversarial_share=0.25,
        attack=opj.AttackConfig(pixels=1, strategy="random", popsize=8, max_iters=1),
        dead_pixel_rate=0.5,
        batch_size=32,
        train_limit=96,
        eval_limit=40,
    )
    card = adv.adversarial_fine_tune(config, tmp_path / "m", log=lambda _: None)
    records = [
        json.loads(line) for line in (tmp_path / "m" / "epochs.jsonl").read_text().splitlines()
    ]
    assert len(records) == 1
    rec = records[0]
    assert rec["attacked_images"] == 6 and rec["adversarial_examples"] == 24  # 0.25 x 96
    assert rec["attack_success"] * 6 == pytest.approx(round(rec["attack_success"] * 6), abs=1e-4)
    predict_fn, loaded = opj.models.load(tmp_path / "m")
    assert loaded.num_classes == 10 and card["status"] == "complete"
    assert card["defence"]["kind"] == "one-pixel adversarial training + dead-pixel augmentation"
    assert card["defence"]["base_model"] == "digits-cnn"
    x, y, _ = opj.data.load("digits", "test", limit=40)
    acc = float(np.mean(np.asarray(predict_fn(x.astype(np.float32))).argmax(1) == y))
    assert acc == pytest.approx(card["test_accuracy"], abs=1e-6)
    base, _ = opj.models.load("digits-cnn")
    assert not np.allclose(
        np.asarray(base(x[:8].astype(np.float32))), np.asarray(predict_fn(x[:8].astype(np.float32)))
    )


def test_each_epoch_attacks_the_current_network_and_trains_on_its_examples(tmp_path, monkeypatch):
    """With the attack and the training step observed: each epoch attacks its chosen
    training images with their true labels against the network as it is then, records the
    share the attack fooled, and trains on the clean images plus the returned images cycled
    to ``adversarial_share``, labelled with the attacked images' true labels."""
    x_train, y_train, _ = opj.data.load("digits", "train", limit=64)
    calls, fits = [], []

    def fake_attack(key, predict_fn, images, labels, config):
        calls.append((np.asarray(images).copy(), np.asarray(labels).copy(), predict_fn))
        marked = np.asarray(images).copy()
        marked[:, 0, 0, 0] = 200 + len(calls)  # which epoch made the example
        return marked, np.array([True, False, False])

    real_fit = adv.training.fit

    def spy_fit(state, images, labels, config, **kw):
        fits.append((np.asarray(images).copy(), np.asarray(labels).copy()))
        return real_fit(state, images, labels, config, **kw)

    monkeypatch.setattr(adv, "adversarial_examples", fake_attack)
    monkeypatch.setattr(adv.training, "fit", spy_fit)
    config = adv.AdversarialTrainingConfig(
        model="digits-cnn", epochs=2, attack_images=3, adversarial_share=0.125,
        batch_size=32, train_limit=64, eval_limit=20, learning_rate=0.05,
    )  # fmt: skip
    adv.adversarial_fine_tune(config, tmp_path / "m", log=lambda _: None)
    records = [
        json.loads(line) for line in (tmp_path / "m" / "epochs.jsonl").read_text().splitlines()
    ]
    assert [r["attack_success"] for r in records] == [pytest.approx(1 / 3, abs=1e-4)] * 2
    assert [r["adversarial_examples"] for r in records] == [8, 8]  # 0.125 x 64
    probe = x_train[:4].astype(np.float32)
    outputs = [np.asarray(fn(probe)) for _, _, fn in calls]
    base, _ = opj.models.load("digits-cnn")
    np.testing.assert_allclose(outputs[0], np.asarray(base(probe)), atol=1e-6)  # epoch 1: base
    assert not np.allclose(outputs[1], outputs[0])  # epoch 2: the network after epoch 1
    for epoch, ((images, labels, _), (xs, ys)) in enumerate(zip(calls, fits, strict=True), 1):
        # the attacked images are training images, with their true labels
        rows = [int(np.flatnonzero((x_train == im).all(axis=(1, 2, 3)))[0]) for im in images]
        np.testing.assert_array_equal(labels, y_train[rows])
        assert len(xs) == 64 + 8
        np.testing.assert_array_equal(xs[:64], x_train)
        np.testing.assert_array_equal(ys[:64], y_train)
        extra, extra_labels = xs[64:], ys[64:]
        assert np.all(extra[:, 0, 0, 0] == 200 + epoch)  # this epoch's examples, cycled
        np.testing.assert_array_equal(extra_labels, np.resize(labels, 8))
        np.testing.assert_array_equal(
            extra[:, 1:], np.resize(images, (8,) + images.shape[1:])[:, 1:]
        )
