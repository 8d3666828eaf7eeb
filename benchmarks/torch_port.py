"""An exact PyTorch port of the zoo's committed CIFAR-10 / digits networks, for benchmarks
against PyTorch attack libraries on identical weights.

``port(name) -> (torch.nn.Module, predict_fn, card)``: the module takes NCHW float images in
[0, 1] (the convention of torchattacks and ART) and returns logits; it normalises inside as
the JAX model does. Weights are copied from the checksummed msgpack checkpoint;
:func:`max_prob_difference` checks the port against the JAX model.

Needs the ``peers`` extra (torch); nothing in the package imports this file.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import onepixel_jax as opj
from onepixel_jax.zoo import checkpoints


class Normalise(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):  # x in [0, 1]; the JAX models normalise pixel units
        return (x * 255.0 - self.mean) / self.std


class GlobalMean(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class FlattenNHWC(nn.Module):
    """Flatten in the JAX (NHWC) order."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def _conv_block(params, stats, in_ch, spec):
    """One ``_ConvBNReLU``: conv (bias unless BN), BN (eval), ReLU, from flax params."""
    kernel = np.asarray(params["Conv_0"]["kernel"])  # (kh, kw, in, out)
    out_ch = kernel.shape[-1]
    has_bias = "bias" in params["Conv_0"]
    conv = nn.Conv2d(
        in_ch,
        out_ch,
        kernel.shape[0],
        stride=spec["stride"],
        padding=spec["padding"],
        bias=has_bias,
    )
    conv.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
    if has_bias:
        conv.bias.data = torch.from_numpy(np.asarray(params["Conv_0"]["bias"]).copy())
    layers = [conv]
    if "BatchNorm_0" in params:
        bn = nn.BatchNorm2d(out_ch, eps=1e-5)
        bn.weight.data = torch.from_numpy(np.asarray(params["BatchNorm_0"]["scale"]).copy())
        bn.bias.data = torch.from_numpy(np.asarray(params["BatchNorm_0"]["bias"]).copy())
        bn.running_mean.data = torch.from_numpy(np.asarray(stats["BatchNorm_0"]["mean"]).copy())
        bn.running_var.data = torch.from_numpy(np.asarray(stats["BatchNorm_0"]["var"]).copy())
        layers.append(bn)
    layers.append(nn.ReLU())
    return layers, out_ch


def _plain_conv(p, in_ch, padding=0):
    kernel = np.asarray(p["kernel"])
    conv = nn.Conv2d(in_ch, kernel.shape[-1], kernel.shape[0], padding=padding)
    conv.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
    conv.bias.data = torch.from_numpy(np.asarray(p["bias"]).copy())
    return conv, kernel.shape[-1]


def _dense(p):
    kernel = np.asarray(p["kernel"])  # (in, out)
    has_bias = "bias" in p
    lin = nn.Linear(kernel.shape[0], kernel.shape[1], bias=has_bias)
    lin.weight.data = torch.from_numpy(kernel.T.copy())
    if has_bias:
        lin.bias.data = torch.from_numpy(np.asarray(p["bias"]).copy())
    return lin


def _blocks(params, stats, specs, in_ch):
    layers = []
    for spec in specs:
        if spec == "max2":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        if spec == "max3":
            layers.append(nn.MaxPool2d(3, 2, padding=1))
            continue
        if spec == "avg3":
            layers.append(nn.AvgPool2d(3, 2, padding=1, count_include_pad=True))
            continue
        name = f"_ConvBNReLU_{spec['index']}"
        block, in_ch = _conv_block(params[name], stats.get(name, {}), in_ch, spec)
        layers += block
    return layers, in_ch


def _c(index, stride=1, padding=1):
    return {"index": index, "stride": stride, "padding": padding}


def build_torch(card, variables) -> nn.Module:
    arch = card["architecture"]
    params = variables["params"]
    stats = variables.get("batch_stats", {})
    kw = card.get("model_kwargs", {})
    mean = (
        kw.get("mean")
        or {
            "allconv": opj.models.architectures.CIFAR10_MEAN,
            "nin": opj.models.architectures.CIFAR10_MEAN,
            "vgg16": opj.models.architectures.CIFAR10_MEAN,
            "digits-cnn": opj.models.architectures.DIGITS_MEAN,
        }[arch]
    )
    std = (
        kw.get("std")
        or {
            "allconv": opj.models.architectures.CIFAR10_STD,
            "nin": opj.models.architectures.CIFAR10_STD,
            "vgg16": opj.models.architectures.CIFAR10_STD,
            "digits-cnn": opj.models.architectures.DIGITS_STD,
        }[arch]
    )
    layers: list[nn.Module] = [Normalise(mean, std)]
    if arch == "allconv":
        specs = [_c(0), _c(1), _c(2, 2), _c(3), _c(4), _c(5, 2), _c(6, 1, 0), _c(7, 1, 0)]
        body, ch = _blocks(params, stats, specs, 3)
        conv, _ = _plain_conv(params["Conv_0"], ch)
        layers += body + [conv, GlobalMean()]
    elif arch == "nin":
        specs = [_c(0, 1, 2), _c(1, 1, 0), _c(2, 1, 0), "max3", _c(3, 1, 2), _c(4, 1, 0)]
        specs += [_c(5, 1, 0), "avg3", _c(6, 1, 1), _c(7, 1, 0)]
        body, ch = _blocks(params, stats, specs, 3)
        conv, _ = _plain_conv(params["Conv_0"], ch)
        layers += body + [conv, nn.ReLU(), GlobalMean()]
    elif arch == "vgg16":
        specs, i = [], 0
        for item in opj.models.architectures._VGG16_CFG:
            if item == "M":
                specs.append("max2")
            else:
                specs.append(_c(i))
                i += 1
        body, ch = _blocks(params, stats, specs, 3)
        layers += body + [FlattenNHWC(), _dense(params["Dense_0"])]
        if "BatchNorm_0" in params:
            bn = nn.BatchNorm1d(params["BatchNorm_0"]["scale"].shape[0], eps=1e-5)
            bn.weight.data = torch.from_numpy(np.asarray(params["BatchNorm_0"]["scale"]).copy())
            bn.bias.data = torch.from_numpy(np.asarray(params["BatchNorm_0"]["bias"]).copy())
            bn.running_mean.data = torch.from_numpy(np.asarray(stats["BatchNorm_0"]["mean"]).copy())
            bn.running_var.data = torch.from_numpy(np.asarray(stats["BatchNorm_0"]["var"]).copy())
            layers.append(bn)
        layers += [nn.ReLU(), _dense(params["Dense_1"])]
    elif arch == "digits-cnn":
        body, ch = _blocks(params, stats, [_c(0), _c(1), "max2"], 1)
        layers += body + [FlattenNHWC(), _dense(params["Dense_0"]), nn.ReLU()]
        layers.append(_dense(params["Dense_1"]))
    else:
        raise ValueError(f"no PyTorch port for architecture {arch!r}")
    return nn.Sequential(*layers).eval()


def port(name: str):
    """``(torch module, JAX predict_fn, card)`` for a committed checkpoint."""
    predict_fn, card = opj.models.load(name)
    variables = checkpoints.load_variables(name)
    if isinstance(variables, tuple):
        variables = variables[0]
    return build_torch(card, variables), predict_fn, card


def max_prob_difference(module: nn.Module, predict_fn, images_uint8: np.ndarray) -> float:
    """Largest |p_torch - p_jax| over ``images`` (N, H, W, C) uint8."""
    x = np.asarray(images_uint8, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    device = next(module.parameters()).device
    with torch.no_grad():
        logits = module(torch.from_numpy(x.transpose(0, 3, 1, 2) / 255.0).to(device))
        p_torch = torch.softmax(logits, dim=1).cpu().numpy()
    p_jax = np.asarray(predict_fn(x))
    return float(np.abs(p_torch - p_jax).max())
