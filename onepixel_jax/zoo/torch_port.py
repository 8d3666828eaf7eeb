"""PyTorch twins of the zoo's Flax networks, with the same weights.

:func:`torch_twin` builds a ``torch.nn.Module`` computing what a zoo module computes with
the given variables, layer for layer (kernels transposed from HWIO to OIHW, dense kernels
to ``(out, in)``, batch norm in eval mode with the running statistics). :func:`port` does it
for a committed checkpoint. The twin takes NCHW float images in [0, 1] (PyTorch's
convention, also torchattacks' and ART's), normalises inside as the Flax model does, and
returns logits. Used to test :func:`onepixel_jax.targets.from_torch` against the JAX model
and to benchmark PyTorch attack libraries on identical weights.

Architectures: ``allconv``, ``nin``, ``vgg16``, ``lenet``, ``digits-cnn``, ``resnet``
(with or without batch norm where the Flax module has the option). Needs torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from . import architectures as arch_lib

__all__ = ["max_prob_difference", "port", "torch_twin"]


class Normalise(nn.Module):
    """``(x * 255 - mean) / std`` per channel: [0, 1] inputs to the zoo's pixel units."""

    def __init__(self, mean, std) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x * 255.0 - self.mean) / self.std


class GlobalMean(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class FlattenNHWC(nn.Module):
    """Flatten in Flax's (NHWC) order."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


class BasicBlock(nn.Module):
    """The zoo's ResNet basic block: conv-BN-ReLU-conv-BN plus the shortcut, then ReLU."""

    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x):
        return torch.relu(self.shortcut(x) + self.body(x))


def _t(a: Any) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32))


def _conv(p: Mapping, stride: int = 1, padding: int = 0, groups: int = 1) -> nn.Conv2d:
    kernel = np.asarray(p["kernel"])  # (kh, kw, in / groups, out)
    conv = nn.Conv2d(
        kernel.shape[2] * groups,
        kernel.shape[3],
        kernel.shape[:2],
        stride=stride,
        padding=padding,
        groups=groups,
        bias="bias" in p,
    )
    conv.weight.data = _t(kernel.transpose(3, 2, 0, 1))
    if "bias" in p:
        conv.bias.data = _t(p["bias"])
    return conv


def _bn(p: Mapping, s: Mapping, dims: int = 2, eps: float = 1e-5) -> nn.Module:
    bn = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(np.asarray(p["scale"]).shape[0], eps)
    bn.weight.data, bn.bias.data = _t(p["scale"]), _t(p["bias"])
    bn.running_mean.data, bn.running_var.data = _t(s["mean"]), _t(s["var"])
    return bn


def _dense(p: Mapping) -> nn.Linear:
    kernel = np.asarray(p["kernel"])  # (in, out)
    lin = nn.Linear(kernel.shape[0], kernel.shape[1], bias="bias" in p)
    lin.weight.data = _t(kernel.T)
    if "bias" in p:
        lin.bias.data = _t(p["bias"])
    return lin


def _conv_bn_relu(params, stats, name, stride=1, padding=0) -> list[nn.Module]:
    p, s = params[name], stats.get(name, {})
    layers: list[nn.Module] = [_conv(p["Conv_0"], stride, padding)]
    if "BatchNorm_0" in p:
        layers.append(_bn(p["BatchNorm_0"], s["BatchNorm_0"]))
    return [*layers, nn.ReLU()]


def _blocks(params, stats, specs) -> list[nn.Module]:
    """``specs``: ``(stride, padding)`` per ``_ConvBNReLU`` in order, or a pooling layer."""
    layers: list[nn.Module] = []
    index = 0
    for spec in specs:
        if isinstance(spec, nn.Module):
            layers.append(spec)
            continue
        layers += _conv_bn_relu(params, stats, f"_ConvBNReLU_{index}", *spec)
        index += 1
    return layers


def torch_twin(module: Any, variables: Mapping[str, Any]) -> nn.Module:
    """The PyTorch twin (eval mode) of zoo module ``module`` with ``variables``
    (``{"params": ..., ["batch_stats": ...]}``): NCHW float32 in [0, 1] -> logits."""
    params = variables["params"]
    stats = variables.get("batch_stats", {})
    layers: list[nn.Module] = [Normalise(module.mean, module.std)]
    if isinstance(module, arch_lib.AllConv):
        specs = [(1, 1), (1, 1), (2, 1), (1, 1), (1, 1), (2, 1), (1, 0), (1, 0)]
        layers += _blocks(params, stats, specs) + [_conv(params["Conv_0"]), GlobalMean()]
    elif isinstance(module, arch_lib.NiN):
        specs = [(1, 2), (1, 0), (1, 0), nn.MaxPool2d(3, 2, padding=1), (1, 2), (1, 0)]
        specs += [(1, 0), nn.AvgPool2d(3, 2, padding=1), (1, 1), (1, 0)]
        layers += _blocks(params, stats, specs)
        layers += [_conv(params["Conv_0"]), nn.ReLU(), GlobalMean()]
    elif isinstance(module, arch_lib.VGG16):
        specs = [nn.MaxPool2d(2, 2) if v == "M" else (1, 1) for v in arch_lib._VGG16_CFG]
        layers += _blocks(params, stats, specs) + [FlattenNHWC(), _dense(params["Dense_0"])]
        if "BatchNorm_0" in params:
            layers.append(_bn(params["BatchNorm_0"], stats["BatchNorm_0"], dims=1))
        layers += [nn.ReLU(), _dense(params["Dense_1"])]
    elif isinstance(module, arch_lib.DigitsCNN):
        layers += _blocks(params, stats, [(1, 1), (1, 1), nn.MaxPool2d(2, 2)])
        layers += [FlattenNHWC(), _dense(params["Dense_0"]), nn.ReLU(), _dense(params["Dense_1"])]
    elif isinstance(module, arch_lib.LeNet):
        for i in range(2):
            layers.append(_conv(params[f"Conv_{i}"]))
            if f"BatchNorm_{i}" in params:
                layers.append(_bn(params[f"BatchNorm_{i}"], stats[f"BatchNorm_{i}"]))
            layers.append(nn.MaxPool2d(2, 2))
        layers += [FlattenNHWC(), _dense(params["Dense_0"]), nn.ReLU(), _dense(params["Dense_1"])]
    elif isinstance(module, arch_lib.ResNet):
        layers += _conv_bn_relu(params, stats, "_ConvBNReLU_0", 1, 1)
        index = 0
        for stage in range(3):
            for block in range(module.blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(_basic_block(params, stats, f"_BasicBlock_{index}", stride))
                index += 1
        layers += [GlobalMean(), _dense(params["Dense_0"])]
    else:
        raise ValueError(f"no PyTorch twin for {type(module).__name__}")
    return nn.Sequential(*layers).eval()


def _basic_block(params, stats, name, stride) -> BasicBlock:
    p, s = params[name], stats[name]
    body = nn.Sequential(
        _conv(p["Conv_0"], stride, 1),
        _bn(p["BatchNorm_0"], s["BatchNorm_0"]),
        nn.ReLU(),
        _conv(p["Conv_1"], 1, 1),
        _bn(p["BatchNorm_1"], s["BatchNorm_1"]),
    )
    shortcut: nn.Module = nn.Identity()
    if "Conv_2" in p:
        shortcut = nn.Sequential(
            _conv(p["Conv_2"], stride, 0), _bn(p["BatchNorm_2"], s["BatchNorm_2"])
        )
    return BasicBlock(body, shortcut)


def port(name: str) -> tuple[nn.Module, Any, Any]:
    """``(torch twin, JAX predict_fn, card)`` of a committed checkpoint or checkpoint folder."""
    from .checkpoints import load, load_variables

    predict_fn, card = load(name)
    variables, _ = load_variables(name)
    return torch_twin(predict_fn.module, variables), predict_fn, card


def max_prob_difference(module: nn.Module, predict_fn, images: np.ndarray) -> float:
    """Largest |p_torch - p_jax| over ``images`` ``(N, H, W[, C])`` in [0, 255]."""
    x = np.asarray(images, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    device = next(module.parameters()).device
    with torch.no_grad():
        logits = module(torch.from_numpy(x.transpose(0, 3, 1, 2) / 255.0).to(device))
        p_torch = torch.softmax(logits, dim=1).cpu().numpy()
    p_jax = np.asarray(predict_fn(x))
    return float(np.abs(p_torch - p_jax).max())
