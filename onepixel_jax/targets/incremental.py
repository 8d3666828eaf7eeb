"""Exact incremental evaluation of few-pixel candidates on the zoo's sequential conv nets.

A candidate changes ``d`` pixels of an image whose clean activations are computed once per
image (:func:`incremental_target`'s ``prepare``). Per candidate, each layer recomputes only a
fixed-size output window around each changed pixel's receptive-field cone, from the cached
input activations with the previous layer's windows written in. Probabilities equal the full
forward up to float rounding (tested within 1e-5).

The network is read into a small layer program (:class:`Network`): *stages*, each one spatial
operation (convolution of any kernel, stride, padding and group count; max or average
pooling) followed by pointwise operations (bias, batch norm in inference mode, ReLU, local
response norm), then a *head* run in full on the last map (global average pool or flatten,
dense layers, softmax). :func:`from_flax` builds it from a zoo module and its variables.

How ``d`` tuples stay exact: every tuple keeps its own window per layer (static size, clamped
inside the map). Window ``j`` of layer ``l + 1`` is computed from the cached input of that
layer with *all* ``d`` windows of layer ``l`` written in, so each window holds the activations
of the whole perturbation; overlapping cones are recomputed, never combined by hand. Repeated
coordinates take the last tuple's value, as :func:`onepixel_jax.perturb.apply_pixels` does.
From the first layer where ``d`` windows cost at least ``max_fraction`` of the full layer (a
static multiply-add comparison, :func:`plan`), the map is materialised and the rest runs in
full; the last map is always materialised for the head.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..types import Target
from . import cones

__all__ = [
    "Network",
    "StagePlan",
    "for_predict_fn",
    "forward",
    "from_flax",
    "from_zoo",
    "default_chunks",
    "incremental_target",
    "macs",
    "pays_off",
    "plan",
    "select",
    "supports",
]

DEFAULT_MAX_FRACTION = 0.5
_DN = ("NHWC", "HWIO", "NHWC")


# --------------------------------------------------------------------------------------
# Layer program


class Conv(NamedTuple):
    kernel: jax.Array  # (kh, kw, C_in / groups, C_out)
    bias: jax.Array | None  # (C_out,)
    stride: int
    padding: tuple[int, int, int, int]  # top, bottom, left, right
    groups: int


class Pool(NamedTuple):
    kind: str  # "max" or "avg" (average counts padding, as flax's avg_pool)
    window: int
    stride: int
    padding: tuple[int, int, int, int]


class Stage(NamedTuple):
    """One spatial operation (``None`` for the input stage) and the pointwise ops after it."""

    spatial: Conv | Pool | None
    pointwise: tuple[Callable[[jax.Array], jax.Array], ...]
    name: str


class Network(NamedTuple):
    """A sequential conv net as a layer program. ``stages[0]`` is the input stage (no
    spatial operation; normalisation); ``head`` maps the last ``(B, H, W, C)`` map to logits."""

    input_shape: tuple[int, int, int]
    stages: tuple[Stage, ...]
    head: tuple[Callable[[jax.Array], jax.Array], ...]
    head_macs: int


def _pad_value(op: Conv | Pool) -> float:
    return -jnp.inf if isinstance(op, Pool) and op.kind == "max" else 0.0


def _pad(op: Conv | Pool, x: jax.Array) -> jax.Array:
    """Pad the two spatial axes of ``(..., H, W, C)`` as ``op`` does."""
    t, b, left, r = op.padding
    if not (t or b or left or r):
        return x
    widths = [(0, 0)] * (x.ndim - 3) + [(t, b), (left, r), (0, 0)]
    return jnp.pad(x, widths, constant_values=_pad_value(op))


def _apply_valid(op: Conv | Pool, x: jax.Array) -> jax.Array:
    """``op`` without padding on an already padded ``(B, H, W, C)`` batch."""
    if isinstance(op, Conv):
        y = jax.lax.conv_general_dilated(
            x,
            op.kernel,
            (op.stride, op.stride),
            "VALID",
            dimension_numbers=_DN,
            feature_group_count=op.groups,
        )
        return y if op.bias is None else y + op.bias
    dims, strides = (1, op.window, op.window, 1), (1, op.stride, op.stride, 1)
    if op.kind == "max":
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, strides, "VALID")
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, "VALID") / (op.window**2)


def _pointwise(stage: Stage, x: jax.Array) -> jax.Array:
    for fn in stage.pointwise:
        x = fn(x)
    return x


def _kernel_hw(op: Conv | Pool) -> tuple[int, int]:
    if isinstance(op, Conv):
        return int(op.kernel.shape[0]), int(op.kernel.shape[1])
    return op.window, op.window


def forward(net: Network, images: jax.Array, *, keep: bool = False):
    """Full forward of ``images`` ``(B, H, W, C)`` in pixel space to logits ``(B, K)``.

    With ``keep``, also returns the cache: the padded input of every stage ``l >= 1`` and the
    last map (each with the leading batch axis).
    """
    x = _pointwise(net.stages[0], jnp.asarray(images, jnp.float32))
    padded = []
    for stage in net.stages[1:]:
        xp = _pad(stage.spatial, x)
        padded.append(xp)
        x = _pointwise(stage, _apply_valid(stage.spatial, xp))
    logits = _run_head(net, x)
    return (logits, (tuple(padded), x)) if keep else logits


def _run_head(net: Network, x: jax.Array) -> jax.Array:
    for fn in net.head:
        x = fn(x)
    return x


# --------------------------------------------------------------------------------------
# Pointwise and head operations


def _normalise(mean, std):
    mean_a, std_a = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
    return lambda x: (x - mean_a) / std_a


def _batch_norm(stats: Mapping, params: Mapping, eps: float):
    mean, var = stats["mean"], stats["var"]
    scale, bias = params["scale"], params["bias"]

    def bn(x):  # flax.linen.BatchNorm in inference mode, same order of operations
        return (x - mean) * (jax.lax.rsqrt(var + eps) * scale) + bias

    return bn


def _relu(x):
    return jax.nn.relu(x)


def _lrn(size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    from ..zoo.architectures import local_response_norm

    return functools.partial(local_response_norm, size=size, alpha=alpha, beta=beta, k=k)


def _dense(params: Mapping):
    kernel, bias = params["kernel"], params.get("bias")
    return lambda x: x @ kernel if bias is None else x @ kernel + bias


def _global_mean(x):
    return jnp.mean(x, axis=(-3, -2))


def _flatten(x):
    return x.reshape(x.shape[:-3] + (-1,))


# --------------------------------------------------------------------------------------
# Zoo modules -> layer programs
#
# Each program lists the module's operations in call order; parametric ones name their
# variables (flax's automatic names). Kernel sizes and group counts are read from the
# variables. Tests compare forward() of every program with the module's own apply.


def _block(path: str, stride: int, pad: int, bn: bool, relu: bool = True) -> list:
    ops: list = [("conv", f"{path}/Conv_0" if path else "Conv_0", stride, pad)]
    if bn:
        ops.append(("bn", f"{path}/BatchNorm_0"))
    return ops + ([("relu",)] if relu else [])


def _program_allconv(m) -> list:
    ops: list = [("normalise",)]
    layout = [(1, 1), (1, 1), (2, 1), (1, 1), (1, 1), (2, 1), (1, 0), (1, 0)]
    for i, (s, p) in enumerate(layout):
        ops += _block(f"_ConvBNReLU_{i}", s, p, m.batch_norm)
    return ops + [("conv", "Conv_0", 1, 0), ("gap",)]


def _program_nin(m) -> list:
    ops: list = [("normalise",)]
    layout = [(5, 2), (1, 0), (1, 0), "max", (5, 2), (1, 0), (1, 0), "avg", (3, 1), (1, 0)]
    i = 0
    for item in layout:
        if isinstance(item, str):
            ops.append(("pool", item, 3, 2, 1))
        else:
            ops += _block(f"_ConvBNReLU_{i}", 1, item[1], m.batch_norm)
            i += 1
    return ops + [("conv", "Conv_0", 1, 0), ("relu",), ("gap",)]


def _program_vgg16(m) -> list:
    from ..zoo.architectures import _VGG16_CFG

    ops: list = [("normalise",)]
    i = 0
    for item in _VGG16_CFG:
        if item == "M":
            ops.append(("pool", "max", 2, 2, 0))
        else:
            ops += _block(f"_ConvBNReLU_{i}", 1, 1, m.batch_norm)
            i += 1
    ops += [("flatten",), ("dense", "Dense_0")]
    ops += [("bn", "BatchNorm_0")] if m.batch_norm else []
    return ops + [("relu",), ("dense", "Dense_1")]


def _program_lenet(m) -> list:
    ops: list = [("normalise",)]
    for i in range(2):
        ops.append(("conv", f"Conv_{i}", 1, 0))
        ops += [("bn", f"BatchNorm_{i}")] if m.batch_norm else []
        ops.append(("pool", "max", 2, 2, 0))
    return ops + [("flatten",), ("dense", "Dense_0"), ("relu",), ("dense", "Dense_1")]


def _program_alexnet(m) -> list:
    ops: list = [("normalise",)]
    ops += _block("_ConvBNReLU_0", 4, 0, m.batch_norm) + [("lrn",), ("pool", "max", 3, 2, 0)]
    ops += _block("_ConvBNReLU_1", 1, 2, m.batch_norm) + [("lrn",), ("pool", "max", 3, 2, 0)]
    for i in (2, 3, 4):
        ops += _block(f"_ConvBNReLU_{i}", 1, 1, m.batch_norm)
    ops += [("pool", "max", 3, 2, 0), ("flatten",)]
    for i in (0, 1):
        ops += [("dense", f"Dense_{i}"), ("relu",)]
    return ops + [("dense", "Dense_2")]


def _program_digits(m) -> list:
    ops: list = [("normalise",)]
    for i in (0, 1):
        ops += _block(f"_ConvBNReLU_{i}", 1, 1, m.batch_norm)
    ops += [("pool", "max", 2, 2, 0), ("flatten",)]
    return ops + [("dense", "Dense_0"), ("relu",), ("dense", "Dense_1")]


def _programs() -> dict:
    from ..zoo import architectures as arch

    return {
        arch.AllConv: _program_allconv,
        arch.NiN: _program_nin,
        arch.VGG16: _program_vgg16,
        arch.LeNet: _program_lenet,
        arch.AlexNet: _program_alexnet,
        arch.DigitsCNN: _program_digits,
    }


def supports(module: Any) -> bool:
    """Whether :func:`from_flax` can read ``module`` (a zoo architecture)."""
    return type(module) in _programs()


def _get(tree: Mapping, path: str) -> Mapping:
    for part in path.split("/"):
        tree = tree[part]
    return tree


def from_flax(module: Any, variables: Mapping, input_shape: Sequence[int] | None = None) -> Network:
    """The layer program of a zoo module (AllConv, NiN, VGG16, LeNet, AlexNet, DigitsCNN; any
    width, with or without batch norm) with its variables, for inference."""
    programs = _programs()
    if type(module) not in programs:
        raise TypeError(f"no layer program for {type(module).__name__}; zoo architectures only")
    if input_shape is None:
        from ..zoo.architectures import ARCHITECTURES

        arch = next(a for a in ARCHITECTURES.values() if a.module is type(module))
        input_shape = arch.input_shape
    params, stats = variables["params"], variables.get("batch_stats", {})
    h, w, c = (int(v) for v in input_shape)
    stages: list[Stage] = [Stage(None, (_normalise(module.mean, module.std),), "input")]
    head: list = []
    head_macs, in_head = 0, False
    channels = c
    for op in programs[type(module)](module):
        kind = op[0]
        if kind == "conv":
            p = _get(params, op[1])
            kernel = jnp.asarray(p["kernel"], jnp.float32)
            groups = channels // int(kernel.shape[2])
            pad = (op[3],) * 4
            stage = Conv(kernel, p.get("bias"), op[2], pad, groups)
            stages.append(Stage(stage, (), op[1].removesuffix("/Conv_0")))
            channels = int(kernel.shape[3])
        elif kind == "pool":
            stage = Pool(op[1], op[2], op[3], (op[4],) * 4)
            stages.append(Stage(stage, (), f"{op[1]}pool{op[2]}/{op[3]}"))
        elif kind in ("bn", "relu", "lrn"):
            if kind == "bn":
                fn = _batch_norm(_get(stats, op[1]), _get(params, op[1]), 1e-5)
            else:
                fn = _relu if kind == "relu" else _lrn()
            if in_head:
                head.append(fn)
            else:
                last = stages[-1]
                stages[-1] = last._replace(pointwise=last.pointwise + (fn,))
        elif kind == "normalise":
            continue
        elif kind in ("gap", "flatten"):
            in_head = True
            head.append(_global_mean if kind == "gap" else _flatten)
        elif kind == "dense":
            p = _get(params, op[1])
            head.append(_dense(p))
            head_macs += int(np.prod(p["kernel"].shape))
        else:  # pragma: no cover - programs are fixed above
            raise ValueError(f"unknown op {kind!r}")
    return Network((h, w, c), tuple(stages), tuple(head), head_macs)


# --------------------------------------------------------------------------------------
# Static plan: window sizes, multiply-adds, where the full forward takes over


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """One stage for ``d`` tuples. ``window`` is the static output window per tuple;
    ``incremental`` says whether this stage runs on windows (else on the full map)."""

    name: str
    kind: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    window: tuple[int, int]
    full_macs: int  # multiply-adds of the full layer (pooling: window reads)
    window_macs: int  # multiply-adds of d windows
    incremental: bool


def plan(net: Network, d: int, max_fraction: float = DEFAULT_MAX_FRACTION) -> list[StagePlan]:
    """Static plan of every spatial stage for ``d`` tuples: a stage runs on ``d`` windows
    while they cost less than ``max_fraction`` of the full layer's multiply-adds; from the
    first stage where they do not, it and all later stages run in full."""
    h, w, c = net.input_shape
    n, m = 1, 1
    out: list[StagePlan] = []
    full_mode = False
    for stage in net.stages[1:]:
        op = stage.spatial
        kh, kw = _kernel_hw(op)
        ho = cones.out_size(h, kh, op.stride, op.padding[0], op.padding[1])
        wo = cones.out_size(w, kw, op.stride, op.padding[2], op.padding[3])
        n = cones.window_size(n, kh, op.stride, ho)
        m = cones.window_size(m, kw, op.stride, wo)
        if isinstance(op, Conv):
            co, groups = int(op.kernel.shape[3]), op.groups
            full = cones.conv_macs(ho * wo, kh, kw, c, co, groups)
            win = d * cones.conv_macs(n * m, kh, kw, c, co, groups)
            kind = f"conv{kh}x{kw}/{op.stride}" + (f" g{groups}" if groups > 1 else "")
        else:
            co = c
            full, win = ho * wo * kh * kw * c, d * n * m * kh * kw * c
            kind = f"{op.kind}pool{kh}/{op.stride}"
        full_mode = full_mode or win >= max_fraction * full
        out.append(
            StagePlan(stage.name, kind, (h, w, c), (ho, wo, co), (n, m), full, win, not full_mode)
        )
        h, w, c = ho, wo, co
    return out


def macs(net: Network, d: int, max_fraction: float = DEFAULT_MAX_FRACTION) -> tuple[int, int]:
    """Multiply-adds per candidate ``(full forward, incremental)`` of the convolutions and
    dense layers (pooling and pointwise work not counted)."""
    full = inc = net.head_macs
    for p in plan(net, d, max_fraction):
        if "pool" in p.kind:
            continue
        full += p.full_macs
        inc += p.window_macs if p.incremental else p.full_macs
    return full, inc


# --------------------------------------------------------------------------------------
# The incremental evaluation of one candidate


class _Windows(NamedTuple):
    values: jax.Array  # (d, n, m, C): activations of the perturbed image on each window
    start: jax.Array  # (d, 2) int32: window origin in the (unpadded) map
    lo: jax.Array  # (d, 2) int32: first changed row / column (reached range)
    hi: jax.Array  # (d, 2) int32: last changed row / column


def _overlay(base: jax.Array, win: jax.Array, offset: jax.Array) -> jax.Array:
    """``base`` (a, b, C) with ``win`` (n, m, C) written in at ``offset`` (2,) int32, which may
    lie partly or wholly outside ``base`` (only the overlap is written)."""
    a, b, ch = base.shape
    n, m, _ = win.shape
    padded = jnp.pad(win, ((a, a), (b, b), (0, 0)))
    r0 = jnp.clip(a - offset[0], 0, n + a)
    c0 = jnp.clip(b - offset[1], 0, m + b)
    part = jax.lax.dynamic_slice(padded, (r0, c0, 0), (a, b, ch))
    rows = jnp.arange(a) - offset[0]
    cols = jnp.arange(b) - offset[1]
    inside = ((rows >= 0) & (rows < n))[:, None, None] & ((cols >= 0) & (cols < m))[None, :, None]
    return jnp.where(inside, part, base)


def _advance(stage: Stage, sp: StagePlan, cached: jax.Array, prev: _Windows) -> _Windows:
    """Windows of ``stage`` from the previous stage's windows; ``cached`` is the stage's
    padded clean input ``(H + pads, W + pads, C)``."""
    op = stage.spatial
    kh, kw = _kernel_hw(op)
    s = op.stride
    pad_lo = jnp.array([op.padding[0], op.padding[2]], jnp.int32)
    ho, wo = sp.out_shape[:2]
    n, m = sp.window
    extent = (cones.input_extent(n, kh, s), cones.input_extent(m, kw, s), cached.shape[-1])

    def one(lo, hi):
        r_lo, r_hi = cones.reach(lo[0], hi[0], kh, s, op.padding[0], ho)
        c_lo, c_hi = cones.reach(lo[1], hi[1], kw, s, op.padding[2], wo)
        start = jnp.stack([cones.window_start(r_lo, n, ho), cones.window_start(c_lo, m, wo)])
        base = jax.lax.dynamic_slice(cached, (start[0] * s, start[1] * s, 0), extent)
        for k in range(prev.values.shape[0]):
            base = _overlay(base, prev.values[k], prev.start[k] + pad_lo - start * s)
        y = _pointwise(stage, _apply_valid(op, base[None]))[0]
        return y, start, jnp.stack([r_lo, c_lo]), jnp.stack([r_hi, c_hi])

    return _Windows(*jax.vmap(one)(prev.lo, prev.hi))


def _write(full: jax.Array, win: _Windows, pad: tuple[int, int]) -> jax.Array:
    """``full`` with every window written in, in order (the windows lie inside the map)."""
    for k in range(win.values.shape[0]):
        origin = (win.start[k, 0] + pad[0], win.start[k, 1] + pad[1], 0)
        full = jax.lax.dynamic_update_slice(full, win.values[k], origin)
    return full


def _candidate(net: Network, plans: list[StagePlan], cache, pixels: jax.Array) -> jax.Array:
    """Logits ``(K,)`` of one candidate ``pixels`` ``(d, 2 + C)`` on one image's cache."""
    padded, last = cache
    d = pixels.shape[0]
    rows, cols = pixels[:, 0], pixels[:, 1]
    same = (rows[:, None] == rows[None, :]) & (cols[:, None] == cols[None, :])
    winner = jnp.max(jnp.where(same, jnp.arange(d)[None, :], -1), axis=1)  # last tuple wins
    vals = pixels[winner, 2:].astype(jnp.float32)
    coords = jnp.stack([rows, cols], axis=1).astype(jnp.int32)
    win = _Windows(_pointwise(net.stages[0], vals)[:, None, None, :], coords, coords, coords)
    for i, (stage, sp) in enumerate(zip(net.stages[1:], plans, strict=True)):
        if not sp.incremental:  # materialise this stage's padded input; the rest in full
            x = _write(padded[i], win, (stage.spatial.padding[0], stage.spatial.padding[2]))
            x = _pointwise(stage, _apply_valid(stage.spatial, x[None]))
            for later in net.stages[i + 2 :]:
                x = _pointwise(later, _apply_valid(later.spatial, _pad(later.spatial, x)))
            return _run_head(net, x)[0]
        win = _advance(stage, sp, padded[i], win)
    return _run_head(net, _write(last, win, (0, 0))[None])[0]


# --------------------------------------------------------------------------------------
# The Target


MAX_CHUNKS = 8


def default_chunks() -> int:
    """Independent candidate chunks per call: one per usable CPU core on the CPU backend
    (at most :data:`MAX_CHUNKS`), one elsewhere.

    The windowed path is a chain of small gathers, convolutions and overlays per candidate;
    XLA's CPU runtime runs such a chain on one thread at a time but runs independent chains
    side by side, so splitting the candidates into one chain per core uses the cores the full
    forward's large convolutions use (benchmarks/RESULTS.md: 2.4x on AllConv at d = 1 on two
    cores). On GPU and TPU every operation is already parallel and one chain is best.
    """
    if jax.default_backend() != "cpu":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_CHUNKS, cores))


def incremental_target(
    net: Network, max_fraction: float = DEFAULT_MAX_FRACTION, chunks: int | None = None
) -> Target:
    """The incremental :class:`~onepixel_jax.types.Target` of ``net`` (softmax outputs).

    ``prepare(images (S, H, W, C))`` caches the clean activations (every stage's padded
    input and the last map, leading axis ``S``); ``evaluate(cache, images, pixels (S, P, d,
    2 + C))`` returns probabilities ``(S, P, K)``. The plan depends on ``d`` (static).
    ``chunks`` splits the ``P`` candidates of a call into that many independent chains
    (``None``: :func:`default_chunks`, read when the call is traced); the results do not
    depend on it.
    """
    if chunks is not None and (not isinstance(chunks, int) or chunks < 1):
        raise ValueError(f"chunks must be a positive int or None, got {chunks!r}")

    def prepare(images):
        return forward(net, images, keep=True)[1]

    def evaluate(cache, images, pixels):
        plans = plan(net, pixels.shape[2], max_fraction)
        one = functools.partial(_candidate, net, plans)
        per_slot = jax.vmap(one, in_axes=(None, 0))
        pixels = pixels.astype(jnp.int32)
        k = min(default_chunks() if chunks is None else chunks, pixels.shape[1])
        parts = [jax.vmap(per_slot)(cache, p) for p in jnp.array_split(pixels, k, axis=1)]
        logits = parts[0] if k == 1 else jnp.concatenate(parts, axis=1)
        return jax.nn.softmax(logits, axis=-1)

    return Target(prepare=prepare, evaluate=evaluate)


@functools.lru_cache(maxsize=16)
def from_zoo(name: str, max_fraction: float = DEFAULT_MAX_FRACTION) -> Target:
    """The incremental target of a committed checkpoint (``"allconv-cifar10"``...) or a
    checkpoint directory; cached, so the engine reuses its compilation."""
    from ..zoo.checkpoints import load_variables, model_from_card

    variables, card = load_variables(name)
    net = from_flax(model_from_card(card), variables, card.input_shape)
    return incremental_target(net, max_fraction)


@functools.lru_cache(maxsize=16)
def for_predict_fn(predict_fn: Callable) -> Target | None:
    """The incremental target of a zoo ``predict_fn`` (from :func:`onepixel_jax.models.load`
    or ``make_predict_fn``, which carry ``module``, ``variables`` and ``input_shape``), or
    ``None`` for any other function. Cached per function object."""
    net = _network_of(predict_fn)
    return None if net is None else incremental_target(net)


@functools.lru_cache(maxsize=16)
def _network_of(predict_fn: Callable) -> Network | None:
    module = getattr(predict_fn, "module", None)
    variables = getattr(predict_fn, "variables", None)
    if module is None or variables is None or not supports(module):
        return None
    return from_flax(module, variables, getattr(predict_fn, "input_shape", None))


# Below this many multiply-adds per candidate the windows' bookkeeping (slices, overlays,
# writes) eats the arithmetic saved (digits-cnn, 0.34 M: 0.6x to 1.2x the full forward's
# speed; benchmarks/RESULTS.md); from there on the saving has to be at least 10 %.
AUTO_MIN_FULL_MACS = 1_000_000
AUTO_MAX_RATIO = 0.9


def pays_off(net: Network, d: int) -> bool:
    """Whether the automatic choice uses the incremental path for ``d`` tuples."""
    full, inc = macs(net, d)
    return full >= AUTO_MIN_FULL_MACS and inc <= AUTO_MAX_RATIO * full


def select(predict_fn: Callable, pixels: int, incremental: bool | None) -> Target | None:
    """The engine's choice for a ``predict_fn``: the incremental target, or ``None`` for the
    full forward. ``incremental=None`` (auto) uses it for zoo networks where :func:`pays_off`;
    ``True`` wherever the network is a zoo network (an error otherwise); ``False`` never."""
    if incremental is False:
        return None
    net = _network_of(predict_fn)
    if net is None:
        if incremental:
            raise ValueError(
                "incremental=True needs a zoo model's predict_fn (opj.models.load); "
                "other functions run the full forward"
            )
        return None
    if incremental is None and not pays_off(net, pixels):
        return None
    return for_predict_fn(predict_fn)
