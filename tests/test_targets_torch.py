"""PyTorch models inside the compiled loop (onepixel_jax.targets.aten, .pytorch, from_torch).

The central tests run the same attack (same key, same weights) through a zoo network written
in Flax and through its PyTorch twin converted by the torch.export interpreter: successes,
pixels and queries equal, probabilities and fitness histories within 1e-5. The twins are
built from the Flax definitions (onepixel_jax.zoo.torch_port): the committed digits-cnn,
a residual network with batch norm, and a batch-normed CNN whose statistics are not trivial.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import warnings
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
from torch import nn  # noqa: E402

import onepixel_jax as opj  # noqa: E402
from onepixel_jax.cli import main  # noqa: E402
from onepixel_jax.targets import aten, incremental  # noqa: E402
from onepixel_jax.targets.host import HostTarget, from_torch, load_target  # noqa: E402
from onepixel_jax.targets.pytorch import TorchFallbackWarning, TorchTarget  # noqa: E402
from onepixel_jax.zoo.checkpoints import make_predict_fn  # noqa: E402
from onepixel_jax.zoo.torch_port import port, torch_twin  # noqa: E402

CFG = opj.AttackConfig(popsize=20, max_iters=5, incremental=False)


# --------------------------------------------------------------------------------------
# Networks: a Flax zoo module with weights, and its PyTorch twin


def _random_stats(variables: dict, seed: int) -> dict:
    """Batch-norm scales, biases and running statistics drawn away from the identity."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "BatchNorm" not in name:
            return leaf
        shape = np.shape(leaf)
        if name.endswith("['var']"):
            return jnp.asarray(rng.uniform(0.3, 3.0, shape), jnp.float32)
        if name.endswith("['scale']"):
            return jnp.asarray(rng.uniform(0.5, 1.5, shape), jnp.float32)
        return jnp.asarray(rng.normal(0.0, 0.5, shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, variables)


@pytest.fixture(scope="module")
def digits():
    images, labels, _ = opj.data.load("digits", "test", limit=4)
    return images, labels


def _network(kind: str, zoo_init, digits):
    """``(jax predict_fn, torch twin, images, labels)``."""
    if kind == "digits-cnn":
        module, predict_fn, _ = port("digits-cnn")
        return predict_fn, module, *digits
    if kind == "digits-cnn-bn":
        flax_module, variables = zoo_init("digits-cnn", batch_norm=True, width=0.5)
        shape = (8, 8, 1)
        images = digits[0]
    else:  # a residual network: the zoo's ResNet family, one block per stage
        flax_module, variables = zoo_init("resnet", shape=(8, 8, 3), width=0.25, blocks=1)
        shape = (8, 8, 3)
        images = np.random.default_rng(1).integers(0, 256, (4, *shape)).astype(np.uint8)
    variables = _random_stats(variables, seed=2)
    predict_fn = make_predict_fn(flax_module, variables, shape)
    labels = np.asarray(predict_fn(images.astype(np.float32)).argmax(1), np.int32)
    return predict_fn, torch_twin(flax_module, variables), images, labels


NETWORKS = ["digits-cnn", "digits-cnn-bn", "resnet"]
_RUNS: dict = {}


def _twin_run(kind: str, zoo_init, digits):
    """``(flax predict_fn, torch target, images, labels, torch result)`` of CFG (full forward
    on both sides), computed once per network."""
    if kind not in _RUNS:
        predict_fn, module, images, labels = _network(kind, zoo_init, digits)
        target = from_torch(module, output="logits")
        res = opj.attack(jax.random.key(0), target, images, labels, CFG)
        _RUNS[kind] = (predict_fn, target, images, labels, res)
    return _RUNS[kind]


@pytest.mark.parametrize("kind", NETWORKS)
def test_twin_in_the_loop_gives_the_flax_models_attack(kind, zoo_init, digits):
    predict_fn, target, images, labels, res = _twin_run(kind, zoo_init, digits)
    assert isinstance(target, TorchTarget) and target.path(images.shape[1:]) == "jax"
    ref = opj.attack(jax.random.key(0), predict_fn, images, labels, CFG)
    # The search moved: some candidate changed the probabilities.
    assert np.abs(ref.probs - ref.original_probs).max() > 1e-3
    if kind == "digits-cnn":  # the committed network: some images fooled, some not
        assert 0 < ref.success.sum() < len(ref.success)
    np.testing.assert_array_equal(res.success, ref.success)
    np.testing.assert_array_equal(res.pixels, ref.pixels)
    np.testing.assert_array_equal(res.queries, ref.queries)
    np.testing.assert_allclose(res.original_probs, ref.original_probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(res.probs, ref.probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(res.fitness_history, ref.fitness_history, atol=1e-5, rtol=0)


def test_converted_jaxpr_is_standard_and_incremental_equals_full(zoo_init, digits):
    _, target, images, labels, full = _twin_run("resnet", zoo_init, digits)
    jaxpr = jax.make_jaxpr(target)(jnp.zeros((1, 8, 8, 3), jnp.float32))
    prims = {e.primitive.name for e in jaxpr.jaxpr.eqns}
    assert "pure_callback" not in prims and "conv_general_dilated" in prims
    assert incremental.blocker(target, (8, 8, 3), 1) is None
    full_macs, window_macs = incremental.macs(target, (8, 8, 3), 1)
    assert window_macs < full_macs
    inc_cfg = dataclasses.replace(CFG, incremental=True)
    inc = opj.attack(jax.random.key(0), target, images, labels, inc_cfg)
    np.testing.assert_array_equal(inc.success, full.success)
    np.testing.assert_array_equal(inc.pixels, full.pixels)
    np.testing.assert_allclose(inc.probs, full.probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(inc.fitness_history, full.fitness_history, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------
# The ATen table against PyTorch itself


class _ManyOps(nn.Module):
    """Operators beyond the zoo's: grouped dilated 'same' convolutions, ceil-mode pooling,
    count_include_pad=False, adaptive pooling to 3x3, layer norm, BatchNorm1d, concatenation,
    slicing, and most activations."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding="same", groups=2, dilation=2)
        self.ln = nn.LayerNorm(8)
        self.bn1 = nn.BatchNorm1d(8)
        self.fc = nn.Linear(8, 5)
        self.register_buffer("shift", torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), False)
        for bn in (self.bn, self.bn1):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-1, 1)

    def forward(self, x):
        f = nn.functional
        y = f.relu6(self.bn(self.c(x - self.shift)))
        y = y + f.hardswish(self.c2(y)) + f.silu(y) + f.leaky_relu(y, 0.1) + f.elu(y)
        y = y + f.gelu(y) + f.gelu(y, approximate="tanh") + torch.sigmoid(y) * torch.tanh(y)
        y = f.max_pool2d(y, 3, 2, 1, ceil_mode=True)
        y = f.avg_pool2d(y, 3, 2, 1, ceil_mode=True, count_include_pad=False) + f.avg_pool2d(
            y, 3, 2, 1, ceil_mode=True
        )
        y = f.adaptive_avg_pool2d(y, (3, 3)).sum((2, 3), keepdim=True) + f.adaptive_avg_pool2d(y, 1)
        y = torch.flatten(y, 1)
        y = self.bn1(y) + self.ln(y)
        y = torch.cat([y, y[:, :2]], 1)[:, :8].clamp(-3, 3)
        return f.softmax(self.fc(y), dim=1)


@pytest.mark.parametrize("jit", [False, True])
def test_aten_table_matches_torch_on_many_operators(jit):
    module = _ManyOps().eval()
    x = torch.rand(5, 3, 17, 15)
    fn = aten.to_jax(aten.export(module, x[:2]))
    fn = jax.jit(fn) if jit else fn
    with torch.no_grad():
        want = module(x).numpy()
    got = np.asarray(fn(jnp.asarray(x.numpy())))  # another batch size than exported
    assert got.shape == (5, 5)
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)


_F = nn.functional
POOLS = {
    "max-ceil": lambda t: _F.max_pool2d(t, 3, 2, 1, ceil_mode=True),
    "max-dilated": lambda t: _F.max_pool2d(t, 2, 2, 0, dilation=2),
    "avg-ceil": lambda t: _F.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=True),
    "avg-no-pad-count": lambda t: _F.avg_pool2d(t, 4, 3, 2, True, count_include_pad=False),
    "avg-divisor": lambda t: _F.avg_pool2d(t, 3, 1, 1, divisor_override=2),
    "adaptive-4x3": lambda t: _F.adaptive_avg_pool2d(t, (4, 3)),
    # Asymmetric kernels, strides and padding per axis.
    "max-asymmetric": lambda t: _F.max_pool2d(t, (2, 3), (1, 2), (1, 0)),
    "avg-asymmetric": lambda t: _F.avg_pool2d(t, (3, 1), (2, 1), (1, 0), True, False),
    # One-element lists: the graph keeps them as given, the geometry is the input's.
    "max-list-of-one": lambda t: _F.max_pool2d(t, [3], [2], [1]),
    "avg-list-of-one": lambda t: _F.avg_pool2d(t, [3], [2], [1]),
    # 1-D pooling (exported as 2-D pooling over a unit axis) and 3-D pooling.
    "max-1d": lambda t: _F.max_pool1d(t.flatten(2), 3, 2, 1),
    "avg-1d": lambda t: _F.avg_pool1d(t.flatten(2), 4, 3, 1, ceil_mode=True),
    "adaptive-1d": lambda t: _F.adaptive_avg_pool1d(t.flatten(2), 7),
    "max-3d": lambda t: _F.max_pool3d(t[:, None], [2], [1], [1]),
    "avg-3d": lambda t: _F.avg_pool3d(t[:, None], [2], [1], [1]),
    "avg-3d-asymmetric": lambda t: _F.avg_pool3d(t[:, None], 2, (1, 2, 3), 1, False, False),
    "adaptive-3d": lambda t: _F.adaptive_avg_pool3d(t[:, None], (2, 3, 3)),
}


def test_pooling_geometry_matches_torch():
    """All cases in one exported graph (one export, not one per case), compared case by case."""

    class Pools(nn.Module):
        def forward(self, t):
            return torch.cat([op(t).flatten(1) for op in POOLS.values()], 1)

    x = torch.rand(2, 3, 9, 10)
    fn = aten.to_jax(aten.export(Pools().eval(), x))
    with torch.no_grad():
        want = [op(x).flatten(1).numpy() for op in POOLS.values()]
    got = np.asarray(fn(jnp.asarray(x.numpy())))
    assert got.shape == (2, sum(w.shape[1] for w in want))
    parts = np.split(got, np.cumsum([w.shape[1] for w in want])[:-1], axis=1)
    for name, g, w in zip(POOLS, parts, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-6, rtol=0, err_msg=name)


# --------------------------------------------------------------------------------------
# Fallback to the host callback


class _Net(nn.Module):
    """A small classifier; ``extra='cumsum'`` adds an operator outside the ATen table."""

    def __init__(self, extra: str = "", classes: int = 10) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, classes)
        self.extra = extra

    def forward(self, x):
        y = self.conv(x)
        if self.extra == "cumsum":
            y = y.cumsum(1)
        out = self.fc(y.mean((2, 3)))
        return out[:, :, None] if self.extra == "3d" else out


IMAGES = np.random.default_rng(0).integers(0, 256, (3, 12, 12, 3)).astype(np.uint8)


def test_unsupported_operator_falls_back_to_the_host_with_its_reason():
    module = _Net("cumsum").eval()
    target = from_torch(module, output="logits")
    with pytest.warns(TorchFallbackWarning, match=r"'aten\.cumsum\.default'") as record:
        probs = np.asarray(target(IMAGES.astype(np.float32)))
    assert len([w for w in record if w.category is TorchFallbackWarning]) == 1
    assert "\n" not in str(record[0].message)
    assert target.path((12, 12, 3)) == "host"
    assert "aten.cumsum" in target.fallback_reason((12, 12, 3))
    with torch.no_grad():
        logits = module(torch.from_numpy(IMAGES.transpose(0, 3, 1, 2) / 255.0).float())
    np.testing.assert_allclose(probs, torch.softmax(logits, 1).numpy(), atol=1e-6)
    jaxpr = jax.make_jaxpr(target)(jnp.zeros((1, 12, 12, 3)))
    assert "pure_callback" in {e.primitive.name for e in jaxpr.jaxpr.eqns}
    # The attack runs on the fallback; its probabilities are the module's.
    res = opj.attack(jax.random.key(0), target, IMAGES, np.zeros(3, np.int32), CFG)
    host = from_torch(module, output="logits", mode="host")
    assert isinstance(host, HostTarget)
    np.testing.assert_allclose(res.probs, host(res.adversarial.astype(np.float32)), atol=1e-6)


def test_mode_jax_raises_the_reason_and_host_skips_the_conversion():
    with pytest.raises(ValueError, match=r"mode='jax'.*'aten\.cumsum\.default'"):
        from_torch(_Net("cumsum").eval(), output="logits", mode="jax")(IMAGES.astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TorchFallbackWarning)
        jaxpr = jax.make_jaxpr(from_torch(_Net().eval(), output="logits", mode="jax"))(
            jnp.zeros((2, 12, 12, 3))
        )
    assert "pure_callback" not in {e.primitive.name for e in jaxpr.jaxpr.eqns}
    with pytest.raises(ValueError, match="mode must be one of"):
        from_torch(_Net().eval(), mode="fast")


def test_an_output_that_does_not_follow_the_batch_is_named():
    class FixedBatch(_Net):
        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3))).reshape(2, -1)

    with pytest.raises(ValueError, match=r"on a batch of 3 inputs .* returns shape \(2, 15\)"):
        from_torch(FixedBatch().eval(), output="logits").path((12, 12, 3))


# --------------------------------------------------------------------------------------
# Bad input: one clear line each


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_training_mode_is_refused():
    module = _Net()  # nn.Module starts in training mode
    with pytest.raises(ValueError, match=r"training mode; call module\.eval\(\)") as err:
        from_torch(module)
    _one_line(err)
    module.eval()
    module.conv.train()
    with pytest.raises(ValueError, match="submodule 'conv' in training mode"):
        from_torch(module, mode="host")


@pytest.mark.parametrize(
    ("module", "kwargs", "match"),
    [
        (
            _Net("3d"),
            {"output": "logits"},
            r"must return class scores of shape \(B, K\).*\(3, 10, 1\)",
        ),
        (_Net(classes=1), {"output": "logits"}, "returns 1 class"),
        (_Net(), {"output": "logits", "num_classes": 7}, "returns 10 classes, num_classes is 7"),
        (_Net(), {}, "pass output='logits'"),
        (
            _Net(),
            {"layout": "NHWC", "output": "logits"},
            "runs in layout 'NCHW': pass layout='NCHW'",
        ),
    ],
    ids=["3-axes", "one-class", "num-classes", "logits-as-probs", "layout"],
)
def test_bad_module_output_or_layout_is_one_line(module, kwargs, match):
    target = from_torch(module.eval(), **kwargs)
    with pytest.raises(ValueError, match=match) as err:
        opj.attack(jax.random.key(0), target, IMAGES, np.zeros(3, np.int32), CFG)
    _one_line(err)


def test_nchw_nhwc_mix_up_on_32x32x3_images_names_the_layout():
    class FirstConv3(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    images = np.zeros((2, 32, 32, 3), np.float32)
    with pytest.raises(ValueError, match="pass layout='NCHW'") as err:
        from_torch(FirstConv3().eval(), layout="NHWC", output="logits")(images)
    assert "to have 3 channels, but got 32 channels" in _one_line(err)


@pytest.mark.parametrize(
    ("kwargs", "reference", "match"),
    [
        ({"scale": 255}, "unit", r"pixels in \[.*\], under 2 % of \[0, 255\].*scale=1"),
        ({"scale": 1}, "pixels", r"outside \[0, 255\].*scale=255"),
        ({"scale": 1}, "normalised", r"outside \[0, 255\]; pass the scale \(and mean / std\)"),
        ({"layout": "NHWC"}, "unit", "it looks like NCHW: pass layout='NCHW'"),
    ],
    ids=["unit-as-255", "255-as-unit", "normalised-without-mean-std", "layout"],
)
def test_reference_batch_catches_a_wrong_scale_or_layout(kwargs, reference, match):
    unit = torch.rand(4, 3, 12, 12)
    ref = {"unit": unit, "pixels": unit * 255, "normalised": (unit - 0.5) / 0.05}[reference]
    with pytest.raises(ValueError, match=match) as err:
        from_torch(_Net().eval(), output="logits", reference=ref, **kwargs)
    _one_line(err)


def test_reference_batch_converts_now_and_checks_the_images():
    unit = torch.rand(4, 3, 12, 12)
    target = from_torch(
        _Net().eval(), output="logits", reference=(unit - 0.5) / 0.25, mean=0.5, std=0.25
    )
    assert target.input_shape == (12, 12, 3) and target.path((12, 12, 3)) == "jax"
    with pytest.raises(ValueError, match="reference batch gives 12x12x3 images"):
        target(np.zeros((2, 10, 10, 3), np.float32))


# --------------------------------------------------------------------------------------
# Saved models: .pt2 archives, state dicts, and what is refused


def _save_archive(module, path, shape=(3, 8, 8), meta=None, dynamic=True):
    example = torch.rand(2, *shape)
    dims = ({0: torch.export.Dim.AUTO},) if dynamic else None
    program = torch.export.export(module, (example,), dynamic_shapes=dims)
    extra = {"onepixel.json": json.dumps(meta)} if meta is not None else None
    torch.export.save(program, str(path), extra_files=extra)
    return path


def test_pt2_archive_through_load_target_equals_the_module(tmp_path, digits):
    module, predict_fn, _ = port("digits-cnn")
    path = _save_archive(module, tmp_path / "digits.pt2", (1, 8, 8))
    target, card = load_target(path)
    assert isinstance(target, TorchTarget) and target.path((8, 8, 1)) == "jax"
    assert card["format"] == "torch-export" and len(card["sha256"]) == 64
    assert card["input_shape"] == [8, 8, 1] and card["num_classes"] == 10
    assert (target.output, card["layout"], card["scale"]) == ("logits", "NCHW", [0.0, 1.0])
    x = digits[0].astype(np.float32)
    np.testing.assert_allclose(target(x), predict_fn(x), atol=1e-5, rtol=0)


def test_pt2_metadata_and_state_dict_with_architecture(tmp_path, monkeypatch):
    module = _Net().eval()
    path = _save_archive(module, tmp_path / "m.pt2", (3, 12, 12), meta={"scale": 255})
    target, card = load_target(path)
    assert card["scale"] == [0.0, 255.0] and card["input_shape"] == [12, 12, 3]
    (tmp_path / "mynets.py").write_text(
        "import torch\n\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = torch.nn.Conv2d(3, 4, 3)\n"
        "        self.fc = torch.nn.Linear(4, 10)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(self.conv(x).mean((2, 3)))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.save(module.state_dict(), tmp_path / "weights.pt")
    loaded, card = load_target(tmp_path / "weights.pt", torch_arch="mynets:Net")
    assert card["format"] == "torch-state-dict" and card["torch_arch"] == "mynets:Net"
    x = IMAGES.astype(np.float32)
    want = from_torch(module, output="logits", mode="host")(x)
    np.testing.assert_allclose(loaded(x), want, atol=1e-6)
    assert loaded.path((12, 12, 3)) == "jax"
    with pytest.raises(ValueError, match="does not fit --torch-arch mynets:Net"):
        torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "bad.pt")
        load_target(tmp_path / "bad.pt", torch_arch="mynets:Net")
    with pytest.raises(ValueError, match="give its architecture with --torch-arch"):
        load_target(tmp_path / "weights.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def _torch_save_zip(path):
    torch.save(_Net().eval(), path)  # a whole pickled module, as torch.save writes it
    return path


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p.write_bytes(pickle.dumps(_Evil())) and p, "is a pickle, not a torch.export"),
        (_torch_save_zip, "is a torch.save pickle, not a torch.export archive; refused"),
        (lambda p: p.write_text("hello") and p, "is not a model"),
    ],
    ids=["pickle", "torch-save", "text"],
)
def test_files_that_are_not_export_archives_are_refused(tmp_path, capsys, make, match):
    path = tmp_path / "model.pt2"
    make(path)
    with pytest.raises(ValueError, match=match) as err:
        load_target(path)
    _one_line(err)
    code = main(
        ["attack", "--model", str(path), "--dataset", "digits", "--out", str(tmp_path / "r")]
    )
    out = capsys.readouterr()
    assert code == 2 and "unpickled!" not in out.out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "cannot load model" in lines[0] and match.split(",")[0] in lines[0]
    assert not (tmp_path / "r").exists()


def _rewrite_program(path, change):
    """The archive at ``path`` with its program JSON changed by ``change(dict)``."""
    data = path.read_bytes()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            content = src.read(info.filename)
            if info.filename.endswith("models/model.json"):
                program = json.loads(content)
                change(program)
                content = json.dumps(program).encode()
            dst.writestr(info, content)
    path.write_bytes(out.getvalue())
    return path


def _set_first_target(program, target):
    program["graph_module"]["graph"]["nodes"][0]["target"] = target


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda p: _set_first_target(p, "torch.os.system"), "calls 'torch.os.system'"),
        (lambda p: p.update(guards_code=["__import__('os')"]), "holds guard code"),
        (
            lambda p: p["range_constraints"].update({"__import__('os').getcwd()": {}}),
            "not plain arithmetic",
        ),
    ],
    ids=["target", "guards", "expression"],
)
def test_archives_with_code_are_refused(tmp_path, change, match):
    path = _rewrite_program(_save_archive(_Net().eval(), tmp_path / "m.pt2", (3, 12, 12)), change)
    with pytest.raises(ValueError, match=f"archive is refused: .*{match}"):
        load_target(path)


def test_a_static_batch_archive_is_named(tmp_path):
    path = _save_archive(_Net().eval(), tmp_path / "m.pt2", (3, 12, 12), dynamic=False)
    with pytest.raises(ValueError, match="to be equal to 2, but got 3.*dynamic_shapes") as err:
        load_target(path)
    _one_line(err)


def test_cli_attack_on_a_pt2_archive(tmp_path, capsys):
    module, _, _ = port("digits-cnn")
    path = _save_archive(module, tmp_path / "digits.pt2", (1, 8, 8))
    common = ["--dataset", "digits", "--n-images", "2", "--popsize", "8", "--max-iters", "1"]
    common += ["--quiet", "--no-report"]
    assert main(["attack", "--model", str(path), *common, "--out", str(tmp_path / "run")]) == 0
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"]["model"] == str(path)
    missing = str(tmp_path / "nothing.pt")
    code = main(["attack", "--model", missing, *common, "--out", str(tmp_path / "x")])
    assert code == 2 and "does not exist" in capsys.readouterr().err
