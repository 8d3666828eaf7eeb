"""Target networks of the one-pixel paper as Flax linen modules.

Every module takes float pixels in ``[0, 255]`` of shape ``(B, H, W, C)`` and normalises them
inside (``(x - mean) / std`` with ``mean`` and ``std`` in pixel units), so an attack can work
directly in pixel space. Every module returns logits ``(B, K)``;
:func:`onepixel_jax.zoo.checkpoints.load` wraps a trained checkpoint into
``predict_fn(batch) -> probs`` (softmax), the function ``opj.attack`` expects.

``width`` scales the number of channels / hidden units of every layer except the classifier
output (rounded, at least 1; a multiple of the group count for grouped convolutions). At
``width=1`` the definitions are those of the papers (parameter counts are tested).

Batch norm: ``batch_norm=True`` puts a BatchNorm after every hidden convolution (and after
VGG16's hidden dense layer); such convolutions carry no bias. ``train=False`` (the default,
used by attacks) runs BatchNorm on its running averages and disables dropout.

The one-pixel paper's Section V changes two networks "for better implementation": NiN without
its second average pooling (``NiN(second_pool=False)``) and AllConv without batch
normalisation on its first layer (``AllConv(first_batch_norm=False)``). Both fields default to
the original networks, so every existing checkpoint loads unchanged; the architectures
``nin-section5`` and ``allconv-section5`` (:data:`ARCHITECTURES`) are the Section V variants
by name, for ``onepixel train --model``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ARCHITECTURES",
    "AllConv",
    "AllConvSectionV",
    "AlexNet",
    "Architecture",
    "DigitsCNN",
    "LeNet",
    "NiN",
    "NiNSectionV",
    "ResNet",
    "VGG16",
    "create",
    "init_variables",
    "local_response_norm",
    "normalise",
    "param_count",
    "scaled",
]

# Per-channel statistics in pixel units (0-255) of the training sets.
CIFAR10_MEAN = (125.307, 122.950, 113.865)
CIFAR10_STD = (62.993, 62.089, 66.705)
MNIST_MEAN = (33.3184,)  # 0.1306605 * 255
MNIST_STD = (78.5675,)  # 0.3081078 * 255
# BVLC AlexNet subtracts the ImageNet mean image and does not rescale; the per-channel mean
# (R, G, B) of that image is used here.
IMAGENET_MEAN = (122.68, 116.67, 104.01)
IMAGENET_STD = (1.0, 1.0, 1.0)
DIGITS_MEAN = (0.0,)
DIGITS_STD = (255.0,)


def scaled(channels: int, width: float, multiple: int = 1) -> int:
    """Number of channels of a layer at ``width``: ``round(channels * width)``, at least
    ``multiple``, rounded to a multiple of ``multiple``."""
    n = int(round(channels * width / multiple)) * multiple
    return max(multiple, n)


def normalise(x: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """``(x - mean) / std`` per channel, in float32; ``mean`` and ``std`` in pixel units."""
    x = jnp.asarray(x, jnp.float32)
    mean_a = jnp.asarray(mean, jnp.float32)
    std_a = jnp.asarray(std, jnp.float32)
    return (x - mean_a) / std_a


class _ConvBNReLU(nn.Module):
    """Conv (bias unless batch-normed), optional BatchNorm, ReLU."""

    features: int
    kernel: int
    stride: int = 1
    padding: Any = "SAME"
    batch_norm: bool = False
    groups: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        pad = self.padding
        if isinstance(pad, int):
            pad = ((pad, pad), (pad, pad))
        x = nn.Conv(
            self.features,
            (self.kernel, self.kernel),
            strides=(self.stride, self.stride),
            padding=pad,
            use_bias=not self.batch_norm,
            feature_group_count=self.groups,
        )(x)
        if self.batch_norm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
        return nn.relu(x)


class AllConv(nn.Module):
    """All-CNN-C (Springenberg et al. 2015) for 32x32x3 inputs.

    conv3x3 96, 96, 96/stride 2, 192, 192, 192/stride 2, conv3x3 192 valid, conv1x1 192,
    conv1x1 ``num_classes``, global average pool. Dropout ``dropout`` after each stride-2 layer
    (the paper also drops 20 % of the input; ``input_dropout``). ``first_batch_norm=False``
    (with ``batch_norm``): the first convolution has a bias and no BatchNorm (the one-pixel
    paper's Section V network).
    """

    num_classes: int = 10
    width: float = 1.0
    batch_norm: bool = False
    dropout: float = 0.5
    input_dropout: float = 0.2
    mean: tuple[float, ...] = CIFAR10_MEAN
    std: tuple[float, ...] = CIFAR10_STD
    first_batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = normalise(x, self.mean, self.std)
        c1, c2 = scaled(96, self.width), scaled(192, self.width)
        bn = self.batch_norm
        x = nn.Dropout(self.input_dropout, deterministic=not train)(x)
        x = _ConvBNReLU(c1, 3, padding=1, batch_norm=bn and self.first_batch_norm)(x, train)
        x = _ConvBNReLU(c1, 3, padding=1, batch_norm=bn)(x, train)
        x = _ConvBNReLU(c1, 3, stride=2, padding=1, batch_norm=bn)(x, train)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = _ConvBNReLU(c2, 3, padding=1, batch_norm=bn)(x, train)
        x = _ConvBNReLU(c2, 3, padding=1, batch_norm=bn)(x, train)
        x = _ConvBNReLU(c2, 3, stride=2, padding=1, batch_norm=bn)(x, train)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = _ConvBNReLU(c2, 3, padding="VALID", batch_norm=bn)(x, train)
        x = _ConvBNReLU(c2, 1, padding="VALID", batch_norm=bn)(x, train)
        x = nn.Conv(self.num_classes, (1, 1), padding="VALID")(x)
        return jnp.mean(x, axis=(1, 2))


class NiN(nn.Module):
    """Network in Network (Lin et al. 2014), CIFAR-10 variant, for 32x32x3 inputs.

    mlpconv 192-160-96 (conv5x5, 1x1, 1x1), max-pool 3/2, dropout; mlpconv 192-192-192,
    avg-pool 3/2, dropout; mlpconv 192-192-``num_classes`` (conv3x3, 1x1, 1x1), global average
    pool. The last 1x1 convolution is followed by ReLU as in the original network.
    ``second_pool=False``: no average pooling after the second mlpconv (the one-pixel paper's
    Section V network; the third mlpconv then works on 16x16 maps, the parameters are the same).
    """

    num_classes: int = 10
    width: float = 1.0
    batch_norm: bool = False
    dropout: float = 0.5
    mean: tuple[float, ...] = CIFAR10_MEAN
    std: tuple[float, ...] = CIFAR10_STD
    second_pool: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = normalise(x, self.mean, self.std)
        w, bn = self.width, self.batch_norm
        x = _ConvBNReLU(scaled(192, w), 5, padding=2, batch_norm=bn)(x, train)
        x = _ConvBNReLU(scaled(160, w), 1, padding=0, batch_norm=bn)(x, train)
        x = _ConvBNReLU(scaled(96, w), 1, padding=0, batch_norm=bn)(x, train)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = _ConvBNReLU(scaled(192, w), 5, padding=2, batch_norm=bn)(x, train)
        x = _ConvBNReLU(scaled(192, w), 1, padding=0, batch_norm=bn)(x, train)
        x = _ConvBNReLU(scaled(192, w), 1, padding=0, batch_norm=bn)(x, train)
        if self.second_pool:
            x = nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = _ConvBNReLU(scaled(192, w), 3, padding=1, batch_norm=bn)(x, train)
        x = _ConvBNReLU(scaled(192, w), 1, padding=0, batch_norm=bn)(x, train)
        x = nn.relu(nn.Conv(self.num_classes, (1, 1), padding="VALID")(x))
        return jnp.mean(x, axis=(1, 2))


class AllConvSectionV(AllConv):
    """AllConv as in the one-pixel paper's Section V: batch norm after every hidden
    convolution except the first (``batch_norm=True``, ``first_batch_norm=False``)."""

    batch_norm: bool = True
    first_batch_norm: bool = False


class NiNSectionV(NiN):
    """NiN as in the one-pixel paper's Section V: without the second average pooling."""

    second_pool: bool = False


_VGG16_CFG = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)


class VGG16(nn.Module):
    """VGG16 (Simonyan & Zisserman 2015) with the usual 32x32 head.

    13 conv3x3 layers 64-64-M-128-128-M-256x3-M-512x3-M-512x3-M (max-pool 2/2), then
    flatten (1x1x512), dense 512, [BatchNorm], ReLU, dropout, dense ``num_classes``.
    """

    num_classes: int = 10
    width: float = 1.0
    batch_norm: bool = True
    dropout: float = 0.5
    mean: tuple[float, ...] = CIFAR10_MEAN
    std: tuple[float, ...] = CIFAR10_STD

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = normalise(x, self.mean, self.std)
        for item in _VGG16_CFG:
            if item == "M":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            else:
                x = _ConvBNReLU(scaled(item, self.width), 3, padding=1, batch_norm=self.batch_norm)(
                    x, train
                )
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(scaled(512, self.width), use_bias=not self.batch_norm)(x)
        if self.batch_norm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
        x = nn.relu(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


class LeNet(nn.Module):
    """Caffe's MNIST LeNet for 28x28x1 inputs: conv5x5 20, max-pool 2/2, conv5x5 50,
    max-pool 2/2, dense 500, ReLU, dense ``num_classes`` (no nonlinearity after the convs)."""

    num_classes: int = 10
    width: float = 1.0
    batch_norm: bool = False
    mean: tuple[float, ...] = MNIST_MEAN
    std: tuple[float, ...] = MNIST_STD

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = normalise(x, self.mean, self.std)
        for features in (20, 50):
            x = nn.Conv(
                scaled(features, self.width),
                (5, 5),
                padding="VALID",
                use_bias=not self.batch_norm,
            )(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(scaled(500, self.width))(x))
        return nn.Dense(self.num_classes)(x)


def local_response_norm(
    x: jax.Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> jax.Array:
    """Caffe's across-channel LRN: ``x / (k + alpha / size * sum_window x^2) ** beta``."""
    sq = jnp.square(x)
    half = size // 2
    padded = jnp.pad(sq, [(0, 0)] * (x.ndim - 1) + [(half, half)])
    window = sum(padded[..., i : i + x.shape[-1]] for i in range(size))
    return x / jnp.power(k + alpha / size * window, beta)


class AlexNet(nn.Module):
    """BVLC AlexNet (Caffe reference model) for 227x227x3 inputs.

    conv11x11/4 96, LRN, max-pool 3/2; conv5x5 256 (2 groups), LRN, max-pool 3/2;
    conv3x3 384; conv3x3 384 (2 groups); conv3x3 256 (2 groups); max-pool 3/2;
    dense 4096, dropout, dense 4096, dropout, dense ``num_classes``.
    """

    num_classes: int = 1000
    width: float = 1.0
    batch_norm: bool = False
    dropout: float = 0.5
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = normalise(x, self.mean, self.std)
        w, bn = self.width, self.batch_norm

        def pool(y: jax.Array) -> jax.Array:
            return nn.max_pool(y, (3, 3), strides=(2, 2))

        x = _ConvBNReLU(scaled(96, w, 2), 11, stride=4, padding="VALID", batch_norm=bn)(x, train)
        x = pool(local_response_norm(x))
        x = _ConvBNReLU(scaled(256, w, 2), 5, padding=2, batch_norm=bn, groups=2)(x, train)
        x = pool(local_response_norm(x))
        x = _ConvBNReLU(scaled(384, w, 2), 3, padding=1, batch_norm=bn)(x, train)
        x = _ConvBNReLU(scaled(384, w, 2), 3, padding=1, batch_norm=bn, groups=2)(x, train)
        x = _ConvBNReLU(scaled(256, w, 2), 3, padding=1, batch_norm=bn, groups=2)(x, train)
        x = pool(x)
        x = x.reshape((x.shape[0], -1))
        for _ in range(2):
            x = nn.relu(nn.Dense(scaled(4096, w))(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


class DigitsCNN(nn.Module):
    """Small CNN for scikit-learn's 8x8x1 digits: conv3x3 16, conv3x3 32, max-pool 2/2,
    dense 64, ReLU, dense ``num_classes``."""

    num_classes: int = 10
    width: float = 1.0
    batch_norm: bool = False
    mean: tuple[float, ...] = DIGITS_MEAN
    std: tuple[float, ...] = DIGITS_STD

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = normalise(x, self.mean, self.std)
        x = _ConvBNReLU(scaled(16, self.width), 3, padding=1, batch_norm=self.batch_norm)(x, train)
        x = _ConvBNReLU(scaled(32, self.width), 3, padding=1, batch_norm=self.batch_norm)(x, train)
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(scaled(64, self.width))(x))
        return nn.Dense(self.num_classes)(x)


class _BasicBlock(nn.Module):
    """ResNet basic block: conv3x3 (stride) - BN - ReLU - conv3x3 - BN, plus the shortcut
    (identity, or a 1x1 convolution with BN where the shape changes), then ReLU."""

    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)  # noqa: E731
        s = (self.stride, self.stride)
        y = nn.Conv(self.features, (3, 3), strides=s, padding=((1, 1), (1, 1)), use_bias=False)(x)
        y = nn.relu(bn()(y))
        y = nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)), use_bias=False)(y)
        y = bn()(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), strides=s, padding="VALID", use_bias=False)(x)
            x = bn()(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    """CIFAR-10 ResNet of He et al. (2016, Section 4.2): conv3x3 16, BN, ReLU, three stages of
    ``blocks`` basic blocks with 16, 32, 64 channels (the first block of stages 2 and 3 has
    stride 2 and a 1x1 projection shortcut), global average pool, dense ``num_classes``.
    ``blocks=3`` is ResNet-20 (``6 * blocks + 2`` layers). Always batch-normed."""

    num_classes: int = 10
    width: float = 1.0
    blocks: int = 3
    mean: tuple[float, ...] = CIFAR10_MEAN
    std: tuple[float, ...] = CIFAR10_STD

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = normalise(x, self.mean, self.std)
        x = _ConvBNReLU(scaled(16, self.width), 3, padding=1, batch_norm=True)(x, train)
        for stage, channels in enumerate((16, 32, 64)):
            for block in range(self.blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                x = _BasicBlock(scaled(channels, self.width), stride)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A registered architecture: its module class and input shape ``(H, W, C)``."""

    module: type[nn.Module]
    input_shape: tuple[int, int, int]
    num_classes: int


ARCHITECTURES: dict[str, Architecture] = {
    "allconv": Architecture(AllConv, (32, 32, 3), 10),
    "nin": Architecture(NiN, (32, 32, 3), 10),
    "vgg16": Architecture(VGG16, (32, 32, 3), 10),
    "lenet": Architecture(LeNet, (28, 28, 1), 10),
    "alexnet": Architecture(AlexNet, (227, 227, 3), 1000),
    "digits-cnn": Architecture(DigitsCNN, (8, 8, 1), 10),
    "resnet": Architecture(ResNet, (32, 32, 3), 10),
    "allconv-section5": Architecture(AllConvSectionV, (32, 32, 3), 10),
    "nin-section5": Architecture(NiNSectionV, (32, 32, 3), 10),
}


def create(arch: str, **kwargs: Any) -> nn.Module:
    """Module of architecture ``arch`` (a key of :data:`ARCHITECTURES`) with field overrides,
    e.g. ``create("allconv", width=0.25, batch_norm=True)``."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {arch!r}")
    cls = ARCHITECTURES[arch].module
    fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {unknown}; fields: {sorted(fields)}")
    if "width" in kwargs and not float(kwargs["width"]) > 0:
        raise ValueError(f"width must be > 0, got {kwargs['width']!r}")
    return cls(**kwargs)


def init_variables(model: nn.Module, input_shape: Sequence[int], key: jax.Array) -> dict:
    """Initial variables (``params`` and, with BatchNorm, ``batch_stats``) for one input."""
    x = jnp.zeros((1, *input_shape), jnp.float32)
    init = jax.jit(lambda k: model.init({"params": k, "dropout": k}, x, train=False))
    return dict(init(key))


def param_count(tree: Any) -> int:
    """Total number of scalars in a pytree of arrays (or of ``jax.ShapeDtypeStruct``)."""
    return int(sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree)))
