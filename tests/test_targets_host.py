"""Host targets (onepixel_jax.targets.host): NumPy, ONNX Runtime and PyTorch models.

The central test runs the same attack (same key, same weights) through the JAX model, a NumPy
reimplementation of it, its ONNX export and, where torch is installed, a PyTorch copy: success,
pixels and queries must be equal and probabilities within 1e-5.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization
from numpy.lib.stride_tricks import sliding_window_view

import onepixel_jax as opj
from onepixel_jax.targets.host import (
    HostTarget,
    check_traceable,
    from_numpy,
    from_onnx,
    from_torch,
    load_target,
)

MODEL = "digits-cnn"
CHECKPOINT = opj.models.models_dir() / MODEL / "params.msgpack"
CFG = opj.AttackConfig(popsize=20, max_iters=5)
HAVE_TORCH = importlib.util.find_spec("torch") is not None


# --------------------------------------------------------------------------------------
# An independent NumPy implementation of the committed digits-cnn checkpoint


def _digits_params() -> dict:
    tree = serialization.msgpack_restore(CHECKPOINT.read_bytes())["params"]
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), tree)


def _conv3x3_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = sliding_window_view(xp, (3, 3), axis=(1, 2))  # (B, H, W, Ci, 3, 3)
    return np.einsum("bhwcij,ijco->bhwo", windows, kernel) + bias


def numpy_digits_cnn(params: dict):
    """DigitsCNN in NumPy: uint8 NHWC (B, 8, 8, 1) -> probabilities (B, 10) float32."""

    def predict(batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.uint8, batch.dtype  # the adapter is asked for uint8 below
        x = batch.astype(np.float32) / 255.0  # the architecture's digits normalisation
        for layer in ("_ConvBNReLU_0", "_ConvBNReLU_1"):
            conv = params[layer]["Conv_0"]
            x = np.maximum(_conv3x3_same(x, conv["kernel"], conv["bias"]), 0.0)
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4)).reshape(b, -1)
        x = np.maximum(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"], 0.0)
        logits = x @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    return predict


def torch_digits_cnn(params: dict):
    """The same network as a PyTorch module: float32 NCHW in [0, 255] -> logits."""
    import torch

    class DigitsCNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
            self.fc1 = torch.nn.Linear(512, 64)
            self.fc2 = torch.nn.Linear(64, 10)

        def forward(self, x):
            x = x / 255.0
            x = torch.relu(self.conv1(x))
            x = torch.relu(self.conv2(x))
            x = torch.nn.functional.max_pool2d(x, 2)
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # flax flattens NHWC
            return self.fc2(torch.relu(self.fc1(x)))

    module = DigitsCNN()
    with torch.no_grad():
        for conv, layer in ((module.conv1, "_ConvBNReLU_0"), (module.conv2, "_ConvBNReLU_1")):
            k = params[layer]["Conv_0"]
            conv.weight.copy_(torch.from_numpy(k["kernel"].transpose(3, 2, 0, 1).copy()))
            conv.bias.copy_(torch.from_numpy(k["bias"]))
        for fc, layer in ((module.fc1, "Dense_0"), (module.fc2, "Dense_1")):
            fc.weight.copy_(torch.from_numpy(params[layer]["kernel"].T.copy()))
            fc.bias.copy_(torch.from_numpy(params[layer]["bias"]))
    return module


# --------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def digits():
    images, labels, _ = opj.data.load("digits", "test", limit=4)
    return images, labels


@pytest.fixture(scope="module")
def jax_model():
    predict_fn, _ = opj.models.load(MODEL)
    return predict_fn


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    from onepixel_jax.targets.export import export_checkpoint

    path = tmp_path_factory.mktemp("onnx") / f"{MODEL}.onnx"
    export_checkpoint(MODEL, path)
    return path


@pytest.fixture(scope="module")
def jax_result(jax_model, digits):
    return opj.attack(jax.random.key(0), jax_model, *digits, CFG)


def _target(kind: str, onnx_path: Path):
    if kind == "numpy":
        return from_numpy(numpy_digits_cnn(_digits_params()), input_dtype="uint8")
    if kind == "onnx":
        return from_onnx(onnx_path)  # layout, scale and output from the export's metadata
    if kind == "torch":
        if not HAVE_TORCH:
            pytest.skip("torch is not installed: the PyTorch adapter was NOT exercised")
        return from_torch(  # the host callback (tests/test_targets_torch.py: the JAX path)
            torch_digits_cnn(_digits_params()).eval(),
            layout="NCHW",
            scale=255,
            output="logits",
            mode="host",
        )
    raise AssertionError(kind)


# --------------------------------------------------------------------------------------
# The same attack through every kind of model


@pytest.mark.parametrize("kind", ["numpy", "onnx", "torch"])
def test_same_attack_as_the_jax_model(kind, onnx_path, digits, jax_result):
    target = _target(kind, onnx_path)
    assert isinstance(target, HostTarget)
    res = opj.attack(jax.random.key(0), target, *digits, CFG)
    ref = jax_result
    # A meaningful comparison: the fixed set has both fooled and unfooled images.
    assert 0 < ref.success.sum() < len(ref.success)
    np.testing.assert_array_equal(res.success, ref.success)
    np.testing.assert_array_equal(res.pixels, ref.pixels)
    np.testing.assert_array_equal(res.queries, ref.queries)
    np.testing.assert_array_equal(res.adversarial, ref.adversarial)
    np.testing.assert_allclose(res.original_probs, ref.original_probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(res.probs, ref.probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(res.fitness_history, ref.fitness_history, atol=1e-5, rtol=0)


def test_adapters_are_exported_by_the_targets_package():
    assert opj.targets.from_numpy is from_numpy
    assert opj.targets.from_onnx is from_onnx
    assert opj.targets.from_torch is from_torch
    assert opj.targets.HostTarget is HostTarget


@pytest.mark.parametrize("strategy", opj.search.names())
def test_every_strategy_runs_on_a_host_target(strategy, jax_model, digits):
    # The target is only the engine's predict_fn; equality with the JAX model is shown above
    # for the paper's DE. Here: each registered strategy runs, and its reported probabilities
    # are the model's on the adversarial images it returns.
    model = jax.jit(jax_model)
    target = from_numpy(lambda b: np.asarray(model(b)), num_classes=10)
    cfg = opj.AttackConfig(popsize=8, max_iters=2, strategy=strategy, targeted=True)
    images, labels = digits[0][:2], digits[1][:2]
    res = opj.attack(jax.random.key(3), target, images, labels, cfg, targets=(labels + 1) % 10)
    want = model(res.adversarial.astype(np.float32))
    np.testing.assert_allclose(res.probs, want, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(res.success, res.probs.argmax(1) == (labels + 1) % 10)


def test_one_host_call_per_generation_and_the_compilation_is_reused(jax_model, digits):
    model = jax.jit(jax_model)
    sizes, traces = [], []

    def host(batch):
        sizes.append(batch.shape[0])
        return np.asarray(model(batch))

    class Counting(HostTarget):
        def __call__(self, batch):
            traces.append(batch.shape)
            return super().__call__(batch)

    target = Counting(host, num_classes=10)
    cfg = opj.AttackConfig(popsize=8, max_iters=3, batch_size=2)
    images, labels = digits[0][:2], digits[1][:2]
    opj.attack(jax.random.key(1), target, images, labels, cfg)
    # generations 0..3 of both images as one batch each; the other calls are the engine's
    # predictions of the clean and final images (at most 2 images each)
    assert sizes.count(2 * 8) == cfg.max_iters + 1
    assert all(s == 2 * 8 or s <= 2 for s in sizes), sizes
    # the same object again: no new trace (the engine's compile cache is keyed on it)
    first = len(traces)
    opj.attack(jax.random.key(2), target, images, labels, cfg)
    assert first > 0 and len(traces) == first


# --------------------------------------------------------------------------------------
# Conventions: layout, scale, normalisation, dtype, logits, vmap


def test_layout_scale_mean_std_and_dtype_reach_the_host_model():
    seen = {}

    def host(batch):
        seen["x"] = batch
        return np.full((batch.shape[0], 3), 1 / 3, np.float32)

    x = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3) % 256
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    target = from_numpy(host, layout="NCHW", scale=1, mean=mean, std=std)
    jax.jit(target)(x)
    want = ((x / 255.0 - np.asarray(mean)) / np.asarray(std)).transpose(0, 3, 1, 2)
    assert seen["x"].shape == (2, 3, 4, 5) and seen["x"].dtype == np.float32
    np.testing.assert_allclose(seen["x"], want, rtol=1e-6, atol=1e-6)

    jax.jit(from_numpy(host, scale=(-1, 1)))(x)
    np.testing.assert_allclose(seen["x"], x / 255.0 * 2 - 1, rtol=1e-6, atol=1e-6)

    jax.jit(from_numpy(host, input_dtype="uint8"))(x)
    assert seen["x"].dtype == np.uint8
    np.testing.assert_array_equal(seen["x"], x.astype(np.uint8))

    jax.jit(from_numpy(host, input_dtype="float64"))(x)
    assert seen["x"].dtype == np.float64


def test_logits_are_converted_with_softmax():
    logits = np.array([[1.0, 2.0, -3.0], [0.0, 0.0, 5.0]], np.float32)
    target = from_numpy(lambda b: logits[: b.shape[0]], output="logits")
    got = jax.jit(target)(np.zeros((2, 2, 2, 1), np.float32))
    np.testing.assert_allclose(got, jax.nn.softmax(logits, axis=-1), rtol=1e-6)


def test_greyscale_images_without_a_channel_axis():
    seen = {}

    def host(batch):
        seen["shape"] = batch.shape
        return np.full((batch.shape[0], 2), 0.5, np.float32)

    out = jax.jit(from_numpy(host))(np.zeros((3, 4, 4), np.float32))
    assert out.shape == (3, 2) and seen["shape"] == (3, 4, 4, 1)


def test_vmap_folds_into_one_host_call():
    sizes = []

    def host(batch):
        sizes.append(batch.shape)
        return np.stack(
            [batch.mean(axis=(1, 2, 3)) / 255.0, 1 - batch.mean(axis=(1, 2, 3)) / 255.0], 1
        )

    target = from_numpy(host, num_classes=2)
    x = np.random.default_rng(0).integers(0, 256, (3, 5, 4, 4, 1)).astype(np.float32)
    got = jax.jit(jax.vmap(target))(x)
    assert sizes == [(15, 4, 4, 1)]
    want = np.stack([target(xi) for xi in x])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_check_traceable_accepts_jax_models_and_reports_their_output(jax_model, digits):
    out = check_traceable(jax_model, digits[0].astype(np.float32))
    assert out.shape == (1, 10) and out.dtype == jnp.float32
    spec = jax.ShapeDtypeStruct((4, 8, 8, 1), jnp.float32)
    assert check_traceable(jax_model, spec).shape == (1, 10)


def test_check_traceable_points_numpy_models_to_the_adapters(jax_model, digits):
    model = jax.jit(jax_model)

    def numpy_model(batch):
        return np.asarray(model(np.asarray(batch)))

    with pytest.raises(TypeError, match=r"not JAX-traceable.*opj\.targets\.from_numpy"):
        check_traceable(numpy_model, digits[0].astype(np.float32))
    # wrapped, the same function passes
    check_traceable(from_numpy(numpy_model), digits[0].astype(np.float32))


def test_check_traceable_runs_a_host_model_once_and_reports_bad_output(digits):
    x = digits[0].astype(np.float32)
    with pytest.raises(ValueError, match="output='logits'"):
        check_traceable(from_numpy(lambda b: np.ones((len(b), 10), np.float32) * 3), x)
    with pytest.raises(ValueError, match=r"shape \(B, K\) = \(2, K\).*got shape \(2, 10, 1\)"):
        check_traceable(from_numpy(lambda b: np.ones((len(b), 10, 1)), num_classes=10), x)
    with pytest.raises(ValueError, match="NaN"):
        check_traceable(from_numpy(lambda b: np.full((len(b), 10), np.nan), num_classes=10), x)


def test_bad_output_inside_the_attack_is_a_value_error(digits):
    target = from_numpy(lambda b: np.full((len(b), 10), 0.3, np.float32))
    with pytest.raises(ValueError, match="class probabilities"):
        opj.attack(jax.random.key(0), target, *digits, CFG)


# --------------------------------------------------------------------------------------
# Argument errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"output": "softmax"}, "output must be one of"),
        ({"layout": "HWC"}, "layout must be one of"),
        ({"scale": 0}, "scale must give a finite pixel range"),
        ({"scale": (1, 0)}, "scale must give a finite pixel range"),
        ({"scale": "255"}, "scale must be a number"),
        ({"input_dtype": "int32"}, "input_dtype must be one of"),
        ({"input_dtype": "uint8", "scale": 1}, "input_dtype 'uint8'"),
        ({"std": (1.0, 0.0, 1.0)}, "std must be positive"),
        ({"mean": "abc"}, "mean must be a sequence"),
        ({"num_classes": 0}, "num_classes must be >= 1"),
    ],
)
def test_bad_arguments_are_value_errors_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        from_numpy(lambda b: b, **kwargs)


def test_bad_types_are_type_errors():
    with pytest.raises(TypeError, match="fn must be callable"):
        from_numpy(np.zeros(3))
    with pytest.raises(TypeError, match="path_or_session must be"):
        from_onnx(42)
    with pytest.raises(TypeError, match="num_classes must be an int"):
        from_numpy(lambda b: b, num_classes=2.5)


def test_from_onnx_path_errors(tmp_path):
    with pytest.raises(ValueError, match="path_or_session: no such file"):
        from_onnx(tmp_path / "missing.onnx")
    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("not a model")
    with pytest.raises(ValueError, match="is not an ONNX model"):
        from_onnx(not_onnx)


def test_from_onnx_layout_mismatch_names_the_fix(onnx_path):
    target = from_onnx(onnx_path, layout="NCHW")
    with pytest.raises(ValueError, match="pass layout='NHWC'"):
        jax.eval_shape(target, jax.ShapeDtypeStruct((2, 8, 8, 1), jnp.float32))


def _flatten_softmax_onnx(path: Path, batch: int | str) -> Path:
    """A hand-made ONNX model: softmax(flatten(x)) for x of shape (batch, 3, 2, 2)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["f"], axis=1),
            helper.make_node("Softmax", ["f"], ["p"], axis=-1),
        ],
        "flatten_softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 2, 2])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [batch, 12])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def test_from_onnx_common_nchw_unit_scale_convention(tmp_path):
    target = from_onnx(_flatten_softmax_onnx(tmp_path / "m.onnx", "N"))
    assert (target.layout, target.scale, target.num_classes) == ("NCHW", (0.0, 1.0), 12)
    x = np.random.default_rng(0).integers(0, 256, (5, 2, 2, 3)).astype(np.float32)
    want = jax.nn.softmax((x / 255.0).transpose(0, 3, 1, 2).reshape(5, -1), axis=-1)
    np.testing.assert_allclose(jax.jit(target)(x), want, rtol=1e-5, atol=1e-7)


def test_from_onnx_fixed_batch_is_reported(tmp_path):
    target = from_onnx(_flatten_softmax_onnx(tmp_path / "m1.onnx", 1))
    with pytest.raises(ValueError, match="fixed batch size of 1"):
        jax.eval_shape(target, jax.ShapeDtypeStruct((4, 2, 2, 3), jnp.float32))


def test_from_torch_without_torch_is_an_import_error_naming_the_extra():
    if HAVE_TORCH:
        pytest.skip("torch is installed: the missing-torch message is not reachable")
    with pytest.raises(ImportError, match=r"onepixel-jax\[torch\]"):
        from_torch(object())


# --------------------------------------------------------------------------------------
# load_target: what the CLI calls for --model


def test_load_target_zoo_name_and_onnx_file(onnx_path, jax_model, digits):
    predict_fn, card = load_target(MODEL)
    assert card["name"] == MODEL
    target, onnx_card = load_target(onnx_path)
    assert isinstance(target, HostTarget)
    assert onnx_card["format"] == "onnx" and onnx_card["source"] == str(onnx_path)
    assert onnx_card["input_shape"] == [8, 8, 1] and onnx_card["num_classes"] == 10
    assert onnx_card["name"] == MODEL and len(onnx_card["sha256"]) == 64
    assert (onnx_card["layout"], onnx_card["scale"], onnx_card["output"]) == (
        "NHWC",
        [0.0, 255.0],
        "probs",
    )
    x = digits[0].astype(np.float32)
    np.testing.assert_allclose(jax.jit(target)(x), jax_model(x), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="no such file"):
        load_target(onnx_path.with_name("absent.onnx"))
