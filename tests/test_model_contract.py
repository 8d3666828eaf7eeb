"""The model contract, checked once on two images: each broken rule is one line.

:func:`onepixel_jax.targets.contract.check_model` against a NumPy reference of what it must
accept and refuse; the host adapters through it (a fixed batch of 1 in ONNX, one class,
logits without metadata, an output of shape (B, K, 1)); a host model that raises in the middle
of a search, named with its error; and the command line refusing a zoo checkpoint whose
weights are NaN or whose card disagrees with its network.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import onepixel_jax as opj
from onepixel_jax.cli import main
from onepixel_jax.targets.contract import ModelContractError, check_model, example_batch
from onepixel_jax.targets.host import HostModelError, surface_host_errors

X = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 1)).astype(np.uint8)


def _softmax_fn(k: int = 10):
    w = jnp.asarray(np.random.default_rng(1).normal(size=(64, k)), jnp.float32)
    return lambda b: jax.nn.softmax(b.reshape(len(b), -1) @ w / 255.0, axis=-1)


def test_a_good_model_passes_and_returns_k():
    assert check_model(_softmax_fn(), X) == 10
    assert check_model(_softmax_fn(3), image_shape=(8, 8, 1), num_classes=3) == 3
    batch = example_batch(image_shape=(2, 2, 3), batch=3)
    assert batch.shape == (3, 2, 2, 3) and batch[0].max() == 0 and batch[1].min() == 255


@pytest.mark.parametrize(
    "fn, kwargs, needle",
    [
        (lambda b: jnp.full((len(b), 10), jnp.nan), {}, "NaN or infinite"),
        (lambda b: jnp.full((len(b), 10), jnp.inf), {}, "NaN or infinite"),
        (lambda b: jnp.ones((len(b), 1)), {}, "returns 1 class"),
        (lambda b: jnp.full((len(b), 10, 1), 0.1), {}, r"\(2, 10, 1\)"),
        (lambda b: jnp.full((1, 10), 0.1), {}, r"\(B, K\) = \(2, K\)"),
        (lambda b: jnp.full((len(b), 10), 3.0), {}, "logits"),
        (lambda b: jnp.tile(jnp.array([-0.5, 1.5] + [0.0] * 8), (len(b), 1)), {}, "range"),
        (_softmax_fn(), {"num_classes": 3}, "num_classes = 3"),
        (lambda b: b.reshape(len(b), 7), {}, "fails on a batch of 2 images"),
    ],
)
def test_each_broken_rule_is_one_line(fn, kwargs, needle):
    with pytest.raises(ModelContractError, match=needle) as info:
        check_model(fn, X, name="model 'm'", **kwargs)
    assert "\n" not in str(info.value) and str(info.value).startswith("model 'm'")


def test_host_adapters_keep_the_contract():
    with pytest.raises(ValueError, match="num_classes = 1"):
        opj.targets.from_numpy(lambda b: b, num_classes=1)
    one = opj.targets.from_numpy(lambda b: np.ones((len(b), 1), np.float32))
    with pytest.raises(ModelContractError, match="1 class"):
        one.check(X)
    logits = opj.targets.from_numpy(lambda b: np.full((len(b), 10), 3.0), output="logits")
    assert logits.check(X) == 10  # declared logits are fine
    with pytest.raises(ValueError, match="1 class") as info:  # through the engine's checks
        opj.attack(jax.random.key(0), one, X, np.array([0, 0, 0]), progress=False)
    assert "\n" not in str(info.value)


def _onnx(path: Path, batch, k: int = 10, softmax: bool = True) -> Path:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(64, k)).astype("f4"), "w")
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "w"], ["z" if softmax else "y"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["z"], ["y"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, k])],
        initializer=[w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_onnx_fixed_batch_one_class_and_logits(tmp_path):
    fixed = opj.targets.from_onnx(_onnx(tmp_path / "fixed.onnx", 1))
    with pytest.raises(ModelContractError, match="fixed batch size of 1"):
        fixed.check(X)
    with pytest.raises(ValueError, match="num_classes = 1"):
        opj.targets.from_onnx(_onnx(tmp_path / "k1.onnx", "N", k=1))
    logits = opj.targets.from_onnx(_onnx(tmp_path / "logits.onnx", "N", softmax=False))
    with pytest.raises(ModelContractError, match="not class probabilities.*logits"):
        logits.check(X)


@pytest.mark.parametrize("kind", ["fixed", "logits"])
def test_the_command_line_refuses_a_broken_onnx_model(tmp_path, capsys, kind):
    path = _onnx(tmp_path / "m.onnx", 1 if kind == "fixed" else "N", softmax=kind != "logits")
    argv = ["attack", "--model", str(path), "--dataset", "digits", "--n-images", "2",
            "--popsize", "8", "--max-iters", "1", "--quiet",
            "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("fixed batch" in err or "logits" in err), err
    assert not (tmp_path / "run").exists()


def test_a_host_model_raising_mid_search_is_named_with_its_error():
    calls = {"n": 0}

    def flaky(b):
        calls["n"] += 1
        if calls["n"] > 3:
            raise ConnectionError("the model server went away")
        return np.full((len(b), 10), 0.1, np.float32)

    target = opj.targets.from_numpy(flaky)
    cfg = opj.AttackConfig(popsize=8, max_iters=4)
    with pytest.raises(HostModelError) as info, surface_host_errors():
        opj.attack(jax.random.key(0), target, X[:2], np.array([0, 1]), cfg, progress=False)
    text = str(info.value)
    assert "'flaky'" in text and "ConnectionError: the model server went away" in text
    assert "\n" not in text and isinstance(info.value.__cause__, ConnectionError)


def _checkpoint(tmp_path: Path, edit) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(opj.models.models_dir() / "digits-cnn", dst)
    card = json.loads((dst / "card.json").read_text())
    edit(dst, card)
    (dst / "card.json").write_text(json.dumps(card))
    return dst


def _nan_weights(dst: Path, card: dict) -> None:
    from flax import serialization

    variables = serialization.msgpack_restore((dst / "params.msgpack").read_bytes())
    layer = next(iter(variables["params"].values()))
    layer["kernel"] = np.full_like(np.asarray(layer["kernel"]), np.nan)
    data = serialization.msgpack_serialize(variables)
    (dst / "params.msgpack").write_bytes(data)
    card["checkpoint_sha256"] = hashlib.sha256(data).hexdigest()


def _one_class(dst: Path, card: dict) -> None:
    card.update(num_classes=1, class_names=["x"])
    card["model_kwargs"].pop("num_classes", None)


def _three_classes(dst: Path, card: dict) -> None:
    card.update(num_classes=3, class_names=["a", "b", "c"])
    card["model_kwargs"].pop("num_classes", None)


@pytest.mark.parametrize(
    "edit, needle",
    [
        (_nan_weights, "NaN or infinite weights"),
        (_one_class, "'num_classes' is 1"),
        (_three_classes, "says 3, but the network it describes"),
    ],
)
def test_the_command_line_refuses_a_broken_checkpoint(tmp_path, capsys, edit, needle):
    ckpt = _checkpoint(tmp_path, edit)
    for argv in (
        ["attack", "--model", str(ckpt), "--dataset", "digits", "--n-images", "2",
         "--popsize", "8", "--max-iters", "1", "--quiet", "--out", str(tmp_path / "run")],
        ["fool", "--model", str(ckpt), "--generations", "1", "--popsize", "4",
         "--out", str(tmp_path / "fool")],
    ):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "fool").exists()
