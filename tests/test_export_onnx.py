"""ONNX export (onepixel_jax.targets.export): one committed checkpoint of each architecture
matches JAX within 1e-5.

Checkpoints of one architecture (``lenet-mnist`` and its defended variants, ``allconv-cifar10``
and its fooling-class round) export the same graph up to their weights and, for the
fooling-class ones, an eleventh output; so each architecture is exported once, from its first
checkpoint by name. ``test_checkpoints.py`` loads and checksums every checkpoint.
"""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

import onepixel_jax as opj
from onepixel_jax.targets import export
from onepixel_jax.targets.host import META_CARD, from_onnx


def _first_of_each_architecture() -> dict[str, str]:
    """``{architecture: first checkpoint name}`` over the committed checkpoints."""
    firsts: dict[str, str] = {}
    for name in opj.models.list_models():  # sorted by name
        card = json.loads((opj.models.models_dir() / name / opj.models.CARD_FILE).read_text())
        firsts.setdefault(card["architecture"], name)
    return firsts


ARCHITECTURES = _first_of_each_architecture()
CHECKPOINTS = sorted(ARCHITECTURES.values())


def _images(card, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random images plus a black and a white one (pooling edges, saturated inputs)."""
    shape = tuple(card["input_shape"])
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, *shape)).astype(np.float32)
    return np.concatenate([x, np.zeros((1, *shape), np.float32), np.full((1, *shape), 255.0)])


def test_each_architecture_is_exported_from_its_base_checkpoint():
    assert {"digits-cnn", "lenet-mnist", "allconv-cifar10", "nin-cifar10", "vgg16-cifar10"} <= set(
        CHECKPOINTS
    )


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_export_matches_jax_within_1e_5(name, tmp_path):
    path = tmp_path / f"{name}.onnx"
    model = export.export_checkpoint(name, path)
    predict_fn, card = opj.models.load(name)
    assert path.is_file() and path.read_bytes() == model.SerializeToString()
    diff = export.max_abs_difference(path, predict_fn, _images(card, 5))
    assert diff <= 1e-5, f"{name}: ONNX and JAX differ by {diff:.3g}"

    graph = model.graph
    assert [i.name for i in graph.input] == ["images"]
    assert [o.name for o in graph.output] == ["probs"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == list(card["input_shape"])
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["onepixel.layout"] == "NHWC" and meta["onepixel.output"] == "probs"
    assert f'"name": "{name}"' in meta[META_CARD]


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory):
    """``digits-cnn`` exported once for the tests that read it back (read-only)."""
    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    export.export_checkpoint("digits-cnn", str(path))
    return path


def test_dynamic_batch_and_the_adapter_defaults(digits_onnx):
    path = digits_onnx
    predict_fn, card = opj.models.load("digits-cnn")
    target = from_onnx(path)  # no arguments: NHWC, [0, 255], probs from the metadata
    assert (target.layout, target.scale, target.output) == ("NHWC", (0.0, 255.0), "probs")
    assert target.num_classes == 10 and target.model_input_shape == (None, 8, 8, 1)
    for n in (1, 7):
        x = _images(card, n, seed=n)
        np.testing.assert_allclose(jax.jit(target)(x), predict_fn(x), atol=1e-5, rtol=0)


def test_to_onnx_of_a_plain_jax_function_with_pooling():
    """Max and average pooling with padding (as NiN's) go through the slice rewrite."""

    def predict_fn(x):
        y = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        y = nn.avg_pool(y, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        y = nn.max_pool(y - 100.0, (2, 2), strides=(2, 2))
        return jax.nn.softmax(y.reshape(y.shape[0], -1), axis=-1)

    model = export.to_onnx(predict_fn, (9, 9, 2), metadata={"extra": "1"})
    onnx.checker.check_model(model)
    assert {p.key: p.value for p in model.metadata_props}["extra"] == "1"
    x = np.random.default_rng(0).uniform(0, 255, (3, 9, 9, 2)).astype(np.float32)
    assert export.max_abs_difference(model, predict_fn, x) <= 1e-6


def test_pool_rewrite_is_exact_for_max_and_matches_sum():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 7, 6, 3)), jnp.float32)
    for pad in ((0, 0), (1, 1), (0, 1), (2, 1)):
        padding = ((0, 0), pad, pad, (0, 0))
        params = {
            "window_dimensions": (1, 3, 3, 1),
            "window_strides": (1, 2, 2, 1),
            "padding": padding,
            "base_dilation": (1, 1, 1, 1),
            "window_dilation": (1, 1, 1, 1),
        }
        assert export._spatial_window(params)
        got = export._pool_by_slices(x, params, jnp.maximum)
        want = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), padding)
        np.testing.assert_array_equal(got, want)
        got = export._pool_by_slices(x, params, jnp.add)
        want = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 2, 2, 1), padding)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape must be"):
        export.to_onnx(lambda x: x, (8, 8))


def test_cli_attack_takes_an_onnx_file(tmp_path, digits_onnx):
    """``onepixel attack --model x.onnx`` runs the sweep on the ONNX Runtime target and gives
    the same records as the zoo model for the same seed (up to float rounding of probs)."""
    from onepixel_jax.cli import main

    path = digits_onnx
    common = ["--dataset", "digits", "--n-images", "3", "--popsize", "8", "--max-iters", "2"]
    common += ["--quiet", "--no-report"]
    assert main(["attack", "--model", str(path), *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["attack", "--model", "digits-cnn", *common, "--out", str(tmp_path / "b")]) == 0
    read = lambda d: [json.loads(x) for x in (tmp_path / d / "results.jsonl").read_text().split()]  # noqa: E731
    a, b = read("a"), read("b")
    assert len(a) == len(b) == 3
    for ra, rb in zip(a, b, strict=True):
        assert (ra["pixels"], ra["success"], ra["queries"]) == (
            rb["pixels"],
            rb["success"],
            rb["queries"],
        )
        np.testing.assert_allclose(ra["probs"], rb["probs"], atol=1e-5)
