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
    assert rec["attacked_images"] == 6 and rec["adversarial_examples"] == 24
    assert 0.0 <= rec["attack_success"] <= 1.0 and rec["attack_seconds"] >= 0
    predict_fn, loaded = opj.models.load(tmp_path / "m")
    assert loaded.num_classes == 10 and card["status"] == "complete"
    assert card["defence"]["kind"] == "one-pixel adversarial training + dead-pixel augmentation"
    assert card["defence"]["base_model"] == "digits-cnn"
    x, y, _ = opj.data.load("digits", "test", limit=40)
    acc = float(np.mean(np.asarray(predict_fn(x.astype(np.float32))).argmax(1) == y))
    assert acc == pytest.approx(card["test_accuracy"], abs=1e-6)
