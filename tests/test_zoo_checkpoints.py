"""Tests of opj.zoo.checkpoints: loading with checksums, the typed model card, saving."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from onepixel_jax import models


def _write_checkpoint(zoo_init, directory, arch="digits-cnn", width=0.25):
    """A randomly initialised checkpoint (the variables are computed once per session: see
    ``zoo_init`` in conftest.py) with its card, written to ``directory``."""
    model, variables = zoo_init(arch, width=width)
    shape = models.ARCHITECTURES[arch].input_shape
    digest = models.save_checkpoint(directory / models.CHECKPOINT_FILE, variables)
    card = {
        "name": directory.name,
        "architecture": arch,
        "model_kwargs": {"width": width, "num_classes": 10},
        "input_shape": list(shape),
        "checkpoint_sha256": digest,
    }
    (directory / models.CARD_FILE).write_text(json.dumps(card))
    return model, variables


def test_load_returns_probabilities_matching_the_module(zoo_init, tmp_path):
    model, variables = _write_checkpoint(zoo_init, tmp_path)
    predict_fn, card = models.load(tmp_path)
    assert card["architecture"] == "digits-cnn"
    x = jax.random.uniform(jax.random.PRNGKey(3), (4, 8, 8, 1), minval=0, maxval=255)
    probs = jax.jit(predict_fn)(x)
    assert probs.shape == (4, 10)
    np.testing.assert_allclose(np.sum(probs, axis=1), 1.0, rtol=1e-5)
    expected = jax.nn.softmax(jax.jit(model.apply)(variables, x))
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="batch"):
        predict_fn(jnp.zeros((2, 9, 9, 1)))


def test_load_checks_sha256(zoo_init, tmp_path):
    _write_checkpoint(zoo_init, tmp_path)
    path = tmp_path / models.CHECKPOINT_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert (
        hashlib.sha256(bytes(data)).hexdigest()
        != json.loads((tmp_path / models.CARD_FILE).read_text())["checkpoint_sha256"]
    )
    with pytest.raises(ValueError, match="SHA-256"):
        models.load(tmp_path)


def test_load_rejects_checkpoint_of_another_architecture(zoo_init, tmp_path):
    _write_checkpoint(zoo_init, tmp_path, width=0.25)
    card = json.loads((tmp_path / models.CARD_FILE).read_text())
    card["model_kwargs"]["width"] = 0.5
    (tmp_path / models.CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ValueError, match="does not match"):
        models.load(tmp_path)


def test_unknown_name_lists_known_checkpoints():
    with pytest.raises(ValueError, match="known checkpoints") as info:
        models.load("no-such-model")
    for name in models.list_models():
        assert name in str(info.value)
    with pytest.raises(TypeError, match="name_or_path"):
        models.load(3)


# ---------------------------------------------------------------------------------------------
# The typed model card


def test_card_is_typed_and_reads_as_its_json(zoo_init, tmp_path):
    _write_checkpoint(zoo_init, tmp_path)
    _, card = models.load(tmp_path)
    assert isinstance(card, models.ModelCard)
    assert card.architecture == "digits-cnn" and card.input_shape == (8, 8, 1)
    assert card.num_classes == 10 and card.class_names == tuple(str(k) for k in range(10))
    assert card.name == tmp_path.name and card.path == tmp_path / models.CARD_FILE
    raw = json.loads((tmp_path / models.CARD_FILE).read_text())
    assert card.to_dict() == raw and dict(card) == raw
    assert card["input_shape"] == [8, 8, 1] and card.get("test_accuracy") is None
    assert "architecture" in card and "history" not in card
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.name = "other"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"architecture": None}, "lacks the field 'architecture'"),
        ({"architecture": "resnet50"}, "'architecture' must be one of"),
        ({"input_shape": None}, "lacks the field 'input_shape'"),
        ({"input_shape": [8, 8]}, "'input_shape' must be [H, W, C]"),
        ({"checkpoint_sha256": None}, "lacks the field 'checkpoint_sha256'"),
        ({"checkpoint_sha256": "abc"}, "'checkpoint_sha256' must be a hex SHA-256"),
        ({"model_kwargs": [1]}, "'model_kwargs' must be a JSON object"),
        ({"num_classes": 0}, "'num_classes' must be an integer >= 1"),
        ({"class_names": ["a", "b"]}, "'class_names' must be a list of 10 strings"),
        ({"test_accuracy": "high"}, "'test_accuracy' must be a number"),
        ({"model_kwargs": {"depth": 3}}, "'model_kwargs' does not fit"),
    ],
)
def test_bad_card_names_the_file_and_the_field(zoo_init, tmp_path, change, needle):
    _write_checkpoint(zoo_init, tmp_path)
    path = tmp_path / models.CARD_FILE
    card = json.loads(path.read_text())
    for key, value in change.items():
        if value is None:
            del card[key]
        else:
            card[key] = value
    path.write_text(json.dumps(card))
    with pytest.raises(models.CardError) as info:
        models.load(tmp_path)
    message = str(info.value)
    assert needle in message and str(path) in message and "\n" not in message


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", ""])
def test_card_that_is_not_a_json_object(zoo_init, tmp_path, text):
    _write_checkpoint(zoo_init, tmp_path)
    (tmp_path / models.CARD_FILE).write_text(text)
    with pytest.raises(models.CardError, match="model card .*card.json"):
        models.load(tmp_path)


def test_load_variables_keeps_batch_stats(zoo_init, tmp_path):
    _, variables = zoo_init("digits-cnn", width=0.25, batch_norm=True)
    digest = models.save_checkpoint(tmp_path / models.CHECKPOINT_FILE, variables)
    card = {
        "architecture": "digits-cnn",
        "model_kwargs": {"width": 0.25, "batch_norm": True},
        "input_shape": [8, 8, 1],
        "checkpoint_sha256": digest,
    }
    (tmp_path / models.CARD_FILE).write_text(json.dumps(card))
    loaded, parsed = models.load_variables(tmp_path)
    assert set(loaded) == {"params", "batch_stats"}
    chex_equal = jax.tree_util.tree_map(np.array_equal, loaded, dict(variables))
    assert all(jax.tree_util.tree_leaves(chex_equal))
    assert models.sha256_file(tmp_path / models.CHECKPOINT_FILE) == parsed.checkpoint_sha256
