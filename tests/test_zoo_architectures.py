"""Tests of opj.zoo.architectures: exact parameter counts, output shapes, normalisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from onepixel_jax.zoo import architectures as models

KEY = jax.random.PRNGKey(0)


# ---------------------------------------------------------------------------------------------
# Parameter counts from the layer formulas (independent of the Flax definitions)


def conv(k: int, cin: int, cout: int, *, bn: bool = False, groups: int = 1) -> int:
    """Parameters of a k x k convolution: weights, then a bias or BatchNorm scale + offset."""
    weights = k * k * (cin // groups) * cout
    return weights + (2 * cout if bn else cout)


def dense(nin: int, nout: int, *, bn: bool = False) -> int:
    return nin * nout + (2 * nout if bn else nout)


def allconv_count(bn: bool) -> int:
    return (
        conv(3, 3, 96, bn=bn)
        + conv(3, 96, 96, bn=bn)
        + conv(3, 96, 96, bn=bn)
        + conv(3, 96, 192, bn=bn)
        + conv(3, 192, 192, bn=bn)
        + conv(3, 192, 192, bn=bn)
        + conv(3, 192, 192, bn=bn)
        + conv(1, 192, 192, bn=bn)
        + conv(1, 192, 10)
    )


def nin_count(bn: bool) -> int:
    return (
        conv(5, 3, 192, bn=bn)
        + conv(1, 192, 160, bn=bn)
        + conv(1, 160, 96, bn=bn)
        + conv(5, 96, 192, bn=bn)
        + conv(1, 192, 192, bn=bn)
        + conv(1, 192, 192, bn=bn)
        + conv(3, 192, 192, bn=bn)
        + conv(1, 192, 192, bn=bn)
        + conv(1, 192, 10)
    )


def vgg16_count(bn: bool) -> int:
    chans = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    total, cin = 0, 3
    for c in chans:
        total += conv(3, cin, c, bn=bn)
        cin = c
    # 32x32 input, five 2x2 pools -> 1x1x512
    return total + dense(512, 512, bn=bn) + dense(512, 10)


def lenet_count() -> int:
    # 28 -> conv5 -> 24 -> pool -> 12 -> conv5 -> 8 -> pool -> 4; 4 * 4 * 50 = 800
    return conv(5, 1, 20) + conv(5, 20, 50) + dense(800, 500) + dense(500, 10)


def alexnet_count() -> int:
    # 227 -> conv11/4 -> 55 -> pool -> 27 -> pool -> 13 -> pool -> 6; 6 * 6 * 256 = 9216
    return (
        conv(11, 3, 96)
        + conv(5, 96, 256, groups=2)
        + conv(3, 256, 384)
        + conv(3, 384, 384, groups=2)
        + conv(3, 384, 256, groups=2)
        + dense(9216, 4096)
        + dense(4096, 4096)
        + dense(4096, 1000)
    )


def digits_count() -> int:
    return conv(3, 1, 16) + conv(3, 16, 32) + dense(4 * 4 * 32, 64) + dense(64, 10)


def resnet_count(blocks: int = 3) -> int:
    """CIFAR ResNet (6 * blocks + 2 layers): stem, basic blocks, 1x1 projections, dense."""
    total = conv(3, 3, 16, bn=True)
    cin = 16
    for stage, c in enumerate((16, 32, 64)):
        for block in range(blocks):
            total += conv(3, cin, c, bn=True)  # no bias: BN scale + offset
            total += conv(3, c, c, bn=True)
            if stage > 0 and block == 0:
                total += conv(1, cin, c, bn=True)  # projection shortcut
            cin = c
    return total + dense(64, 10)


def abstract_variables(arch: str, **kwargs) -> dict:
    model = models.create(arch, **kwargs)
    shape = models.ARCHITECTURES[arch].input_shape
    return jax.eval_shape(lambda: models.init_variables(model, shape, KEY))


@pytest.mark.parametrize(
    "arch, bn, expected",
    [
        ("allconv", False, allconv_count(False)),
        ("allconv", True, allconv_count(True)),
        ("nin", False, nin_count(False)),
        ("nin", True, nin_count(True)),
        ("vgg16", True, vgg16_count(True)),
        ("vgg16", False, vgg16_count(False)),
        ("lenet", False, lenet_count()),
        ("alexnet", False, alexnet_count()),
        ("digits-cnn", False, digits_count()),
        ("resnet", True, resnet_count()),
    ],
)
def test_parameter_count_at_width_1(arch, bn, expected):
    kwargs = {} if arch == "resnet" else {"batch_norm": bn}  # the ResNet is always batch-normed
    variables = abstract_variables(arch, **kwargs)
    assert models.param_count(variables["params"]) == expected
    assert ("batch_stats" in variables) == bn


def test_known_full_width_totals():
    # published sizes: All-CNN-C about 1.37 M, BVLC AlexNet 60,965,224, Caffe LeNet 431,080
    assert allconv_count(False) == 1_369_738
    assert alexnet_count() == 60_965_224
    assert lenet_count() == 431_080
    # ResNet-20 with 1x1 projection shortcuts (He et al.'s option B): 0.27 M
    assert resnet_count() == 272_474


def test_width_scales_channels_but_not_classes():
    variables = abstract_variables("allconv", width=0.5)
    params = variables["params"]
    assert params["_ConvBNReLU_0"]["Conv_0"]["kernel"].shape == (3, 3, 3, 48)
    assert params["_ConvBNReLU_7"]["Conv_0"]["kernel"].shape == (1, 1, 96, 96)
    assert params["Conv_0"]["kernel"].shape == (1, 1, 96, 10)
    alex = abstract_variables("alexnet", width=0.3)["params"]
    # grouped convolutions keep an even channel count
    assert all(
        leaf.shape[-1] % 2 == 0
        for path, leaf in jax.tree_util.tree_leaves_with_path(alex)
        if path[-1].key == "kernel" and leaf.ndim == 4
    )


@pytest.mark.parametrize(
    "arch, width",
    [("allconv", 0.125), ("nin", 0.125), ("lenet", 0.25), ("digits-cnn", 0.5)],
)
def test_output_shape_in_inference_mode(arch, width):
    model = models.create(arch, width=width, batch_norm=True)
    shape = models.ARCHITECTURES[arch].input_shape
    variables = models.init_variables(model, shape, KEY)
    x = jax.random.uniform(jax.random.PRNGKey(1), (3, *shape), minval=0, maxval=255)
    apply = jax.jit(model.apply)
    logits = apply(variables, x)
    assert logits.shape == (3, 10)
    assert logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))
    # inference mode: an image's logits do not depend on the rest of the batch
    other = x.at[1:].set(255.0 - x[1:])
    np.testing.assert_allclose(apply(variables, other)[0], logits[0], rtol=1e-4, atol=1e-4)


def test_jit_matches_eager(zoo_init):
    model, variables = zoo_init("digits-cnn", width=0.25, batch_norm=True)
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 8, 8, 1), minval=0, maxval=255)
    np.testing.assert_allclose(
        model.apply(variables, x), jax.jit(model.apply)(variables, x), rtol=1e-5, atol=1e-5
    )


def test_resnet_output_shape_and_residual_stages():
    model = models.create("resnet", blocks=1, width=0.5)
    variables = models.init_variables(model, (32, 32, 3), KEY)
    blocks = [k for k in variables["params"] if k.startswith("_BasicBlock")]
    assert len(blocks) == 3  # one block per stage
    # stages 2 and 3 change shape: a 1x1 projection each; stage 1 keeps the identity
    assert "Conv_2" not in variables["params"]["_BasicBlock_0"]
    assert variables["params"]["_BasicBlock_1"]["Conv_2"]["kernel"].shape == (1, 1, 8, 16)
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 3), minval=0, maxval=255)
    logits = jax.jit(model.apply)(variables, x)
    assert logits.shape == (2, 10) and np.all(np.isfinite(logits))


def test_vgg16_output_shape():
    model = models.create("vgg16", width=0.25)
    out = jax.eval_shape(
        lambda: model.apply(
            models.init_variables(model, (32, 32, 3), KEY), jnp.zeros((5, 32, 32, 3))
        )
    )
    assert out.shape == (5, 10)


def test_alexnet_output_shape():
    model = models.create("alexnet")
    out = jax.eval_shape(
        lambda: model.apply(
            models.init_variables(model, (227, 227, 3), KEY), jnp.zeros((2, 227, 227, 3))
        )
    )
    assert out.shape == (2, 1000)
    # a narrow AlexNet runs (LRN, grouped convolutions)
    small = models.create("alexnet", width=1 / 16, num_classes=7)
    variables = models.init_variables(small, (227, 227, 3), KEY)
    logits = jax.jit(small.apply)(variables, jnp.full((1, 227, 227, 3), 128.0))
    assert logits.shape == (1, 7)
    assert np.all(np.isfinite(logits))


def test_normalisation_happens_inside():
    shape = (32, 32, 3)
    model = models.create("allconv", width=0.125)
    variables = models.init_variables(model, shape, KEY)
    plain = models.create("allconv", width=0.125, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    x = jax.random.uniform(jax.random.PRNGKey(2), (2, *shape), minval=0, maxval=255)
    mean = np.array(models.CIFAR10_MEAN, np.float32)
    std = np.array(models.CIFAR10_STD, np.float32)
    np.testing.assert_allclose(
        jax.jit(model.apply)(variables, x),
        jax.jit(plain.apply)(variables, (x - mean) / std),
        rtol=1e-4,
        atol=1e-5,
    )


def test_local_response_norm_matches_numpy():
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 7)).astype(np.float32) * 30
    got = np.asarray(models.local_response_norm(jnp.asarray(x)))
    expected = np.empty_like(x)
    for c in range(7):
        lo, hi = max(0, c - 2), min(7, c + 3)
        s = np.sum(x[..., lo:hi] ** 2, axis=-1)
        expected[..., c] = x[..., c] / (1 + 1e-4 / 5 * s) ** 0.75
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_create_rejects_bad_arguments():
    with pytest.raises(ValueError, match="allconv"):
        models.create("resnet50")
    with pytest.raises(TypeError, match="depth"):
        models.create("lenet", depth=3)
    with pytest.raises(ValueError, match="width"):
        models.create("lenet", width=0)
