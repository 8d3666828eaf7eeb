"""PyTorch modules as JAX functions: a small interpreter of ``torch.export`` graphs.

:func:`export` exports an eval-mode ``torch.nn.Module`` with ``torch.export`` (a dynamic batch
axis) and decomposes it to core ATen operators (``run_decompositions()``);
:func:`to_jax` walks the resulting FX graph with a table ``{ATen operator: JAX function}``
(:data:`OPS`) and returns a JAX-traceable function of the module's input. The weights
(parameters, buffers, lifted constants) are closed over as float32 JAX arrays, as a Flax
model's are.

The table covers what convolutional classifiers and ResNets are made of: convolutions (any
stride, padding, dilation, groups; 1-D to 3-D), ``addmm`` / ``mm`` / ``bmm`` / ``linear``,
batch norm in inference form, layer norm, max and average pooling (padding, ``ceil_mode``,
``count_include_pad``, ``divisor_override``), adaptive average pooling, means and sums over
axes, elementwise arithmetic with broadcasting, activations (ReLU, ReLU6 / hardtanh, clamp,
GELU, SiLU, sigmoid, tanh, ELU, leaky ReLU, hardswish, hardsigmoid, softplus), softmax and
log-softmax, and the layout operators (view / reshape, permute, expand, squeeze, unsqueeze,
cat, stack, slice, select, split, constant padding). Every rule emits standard ``lax``
primitives (``conv_general_dilated``, ``reduce_window_*``, ``dot_general``, elementwise
operations), so the converted function gets the engine's incremental evaluation like a
Flax model.

An operator outside the table raises :class:`UnsupportedOperator` naming it, before any
computation (:func:`unsupported` lists them); :func:`onepixel_jax.targets.from_torch` then
falls back to the host callback.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["OPS", "UnsupportedOperator", "decompose", "export", "op_name", "to_jax", "unsupported"]

# Values of ``end`` that mean "to the end" in ``aten.slice``.
_INT64_MAX = 2**63 - 1


class UnsupportedOperator(ValueError):
    """The exported graph has an operation the interpreter does not implement.

    ``op`` is the operator's name (``"aten.grid_sampler_2d.default"``); the message says it in
    one line.
    """

    def __init__(self, op: str, detail: str = "") -> None:
        self.op = op
        super().__init__(f"'{op}'{' ' + detail if detail else ''} is not in the ATen table")


class _Unavailable:
    """An output of a multi-output operator that the table does not compute (max-pool
    indices, batch-norm statistics); using it raises :class:`UnsupportedOperator`."""

    def __init__(self, op: str, what: str) -> None:
        self.op, self.what = op, what


# --------------------------------------------------------------------------------------
# Export


def export(module: Any, example: Any) -> Any:
    """``torch.export`` of ``module`` on ``example`` ``(B, ...)`` with a dynamic batch axis,
    decomposed to core ATen (an ``ExportedProgram``, see :func:`decompose`).

    Raises whatever ``torch.export`` raises for a module it cannot trace (data-dependent
    control flow, unsupported Python); :class:`UnsupportedOperator` if the batch axis came out
    static (a reshape with a literal batch size).
    """
    import torch

    dims = {0: torch.export.Dim.AUTO}
    with warnings.catch_warnings():  # torch's own deprecation notices, not the user's
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.export.export(module, (example,), dynamic_shapes=(dims,), strict=False)
    return decompose(program)


def decompose(program: Any) -> Any:
    """``program`` decomposed to core ATen (``run_decompositions()``), checked to have one
    user input whose batch axis is dynamic (:class:`UnsupportedOperator` otherwise)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = program.run_decompositions()
    x = _user_input(program)
    if not isinstance(x.meta["val"].shape[0], torch.SymInt):
        raise UnsupportedOperator(
            "batch axis",
            "fixed by the graph (a reshape with a literal batch size, or an export "
            "without a dynamic batch)",
        )
    return program


def _user_input(program: Any) -> Any:
    from torch.export.graph_signature import InputKind

    names = [
        s.arg.name for s in program.graph_signature.input_specs if s.kind == InputKind.USER_INPUT
    ]
    if len(names) != 1:
        raise UnsupportedOperator("inputs", f"({len(names)} user inputs; one image batch needed)")
    return next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == names[0])


# --------------------------------------------------------------------------------------
# Conversion


def op_name(target: Any) -> str:
    """``"aten.convolution.default"`` for an ATen overload, ``"operator.getitem"`` for a
    Python operator, else the target's repr."""
    schema = getattr(target, "_schema", None)
    if schema is not None:
        return f"{schema.name.replace('::', '.')}.{getattr(target, '_overloadname', 'default')}"
    if getattr(target, "__module__", None) in ("_operator", "operator"):
        return f"operator.{target.__name__}"
    return repr(target)


def _rule(target: Any) -> Callable | None:
    schema = getattr(target, "_schema", None)
    if schema is not None:
        ns, _, name = schema.name.partition("::")
        return OPS.get(name) if ns == "aten" else None
    if getattr(target, "__module__", None) in ("_operator", "operator"):
        return _PY_OPS.get(target.__name__)
    return None


def unsupported(program: Any) -> list[str]:
    """Names of the graph's operators that :data:`OPS` does not implement (in graph order,
    without repeats)."""
    seen: list[str] = []
    for node in program.graph.nodes:
        if node.op == "call_function" and _rule(node.target) is None:
            name = op_name(node.target)
            if name not in seen:
                seen.append(name)
        elif node.op in ("call_module", "call_method", "get_attr") and node.op not in seen:
            seen.append(f"FX {node.op} {node.target}")
    return seen


def _to_numpy(t: Any) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    if t.is_floating_point():
        return t.to(torch.float32).numpy()
    if t.dtype == torch.bool:
        return t.numpy()
    return t.to(torch.int32).numpy()


def to_jax(program: Any) -> Callable[[jax.Array], jax.Array]:
    """A JAX function computing ``program``'s one output from its one user input.

    ``program``: an ``ExportedProgram`` (from :func:`export`). The function takes the module's
    input as a float32 JAX array (any batch size) and returns its output; the weights are
    closed-over float32 JAX arrays (integer buffers as int32).

    Raises:
      UnsupportedOperator: the first operator not in :data:`OPS`.
    """
    from torch.export.graph_signature import InputKind

    missing = unsupported(program)
    if missing:
        raise UnsupportedOperator(missing[0])
    sig = program.graph_signature
    weights: dict[str, Any] = {}
    user = []
    for spec in sig.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            user.append(spec.arg.name)
            continue
        if spec.kind not in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            raise UnsupportedOperator(f"input kind {spec.kind.name}")
        source = program.state_dict if spec.target in program.state_dict else program.constants
        value = source[spec.target]
        if not hasattr(value, "detach"):
            raise UnsupportedOperator(f"constant {spec.target!r} of type {type(value).__name__}")
        weights[spec.arg.name] = jnp.asarray(_to_numpy(value))
    if len(user) != 1:
        raise UnsupportedOperator("inputs", f"({len(user)} user inputs; one image batch needed)")
    nodes = list(program.graph.nodes)
    input_name = user[0]

    def run(x: jax.Array) -> jax.Array:
        env: dict[str, Any] = {}

        def read(a: Any) -> Any:
            if hasattr(a, "op") and hasattr(a, "name") and hasattr(a, "users"):  # an fx.Node
                return env[a.name]
            if isinstance(a, list | tuple):
                return type(a)(read(v) for v in a)
            if isinstance(a, dict):
                return {k: read(v) for k, v in a.items()}
            return a

        for node in nodes:
            if node.op == "placeholder":
                env[node.name] = x if node.name == input_name else weights[node.name]
            elif node.op == "call_function":
                args, kwargs = read(node.args), read(node.kwargs)
                if node.target is not operator.getitem:
                    _check_available((args, kwargs))
                env[node.name] = _rule(node.target)(*args, **kwargs)
            elif node.op == "output":
                outs = read(node.args[0])
                outs = list(outs) if isinstance(outs, list | tuple) else [outs]
                if len(outs) != 1:
                    raise UnsupportedOperator("outputs", f"({len(outs)} outputs; one needed)")
                _check_available(outs)
                return outs[0]
        raise UnsupportedOperator("graph", "without an output")

    return run


def _check_available(values: Any) -> None:
    for v in jax.tree_util.tree_leaves(values, is_leaf=lambda v: isinstance(v, _Unavailable)):
        if isinstance(v, _Unavailable):
            raise UnsupportedOperator(v.op, f"with its {v.what} used")


# --------------------------------------------------------------------------------------
# The table: ATen operator (overload packet name) -> JAX rule

OPS: dict[str, Callable] = {}


def _op(*names: str) -> Callable:
    def register(fn: Callable) -> Callable:
        for n in names:
            OPS[n] = fn
        return fn

    return register


_DTYPES = {
    "float32": jnp.float32,
    "float64": jnp.float32,  # JAX runs without 64-bit types by default
    "float16": jnp.float16,
    "bfloat16": jnp.bfloat16,
    "int64": jnp.int32,
    "int32": jnp.int32,
    "int16": jnp.int16,
    "int8": jnp.int8,
    "uint8": jnp.uint8,
    "bool": jnp.bool_,
}


def _dtype(dtype: Any) -> Any:
    if dtype is None:
        return None
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise UnsupportedOperator(f"dtype {name}")
    return _DTYPES[name]


def _axis(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def _axes(dims: Any, ndim: int) -> tuple[int, ...]:
    if dims is None or (isinstance(dims, list | tuple) and not dims):
        return tuple(range(ndim))
    if isinstance(dims, int):
        dims = [dims]
    return tuple(sorted(_axis(d, ndim) for d in dims))


def _arr(x: Any) -> Any:
    return x if isinstance(x, jax.Array | np.ndarray) else jnp.asarray(x)


def _bcast(p: Any, ndim: int) -> Any:
    """A per-channel vector as an array broadcasting along axis 1 of a rank-``ndim`` value."""
    return jnp.reshape(p, (1, -1) + (1,) * (ndim - 2)) if ndim > 1 else p


# -- Python operators on sizes (symbolic batch arithmetic) ------------------------------

_PY_OPS: dict[str, Callable] = {
    "getitem": operator.getitem,
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "floordiv": operator.floordiv,
    "truediv": operator.truediv,
    "mod": operator.mod,
    "neg": operator.neg,
    "pow": operator.pow,
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


@_op("sym_size")
def _sym_size(x, dim=None):
    return x.shape[dim]


@_op("sym_numel")
def _sym_numel(x):
    return math.prod(x.shape)


@_op("_assert_scalar", "_assert_tensor_metadata", "sym_constrain_range_for_size", "_assert_async")
def _no_op(*args, **kwargs):
    return None


# -- convolution and dense -------------------------------------------------------------

_SPATIAL = {1: "H", 2: "HW", 3: "DHW"}


@_op("convolution")
def _convolution(x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
    nsp = w.ndim - 2
    if transposed:
        raise UnsupportedOperator("aten.convolution.default", "(transposed)")
    if nsp not in _SPATIAL:
        raise UnsupportedOperator("aten.convolution.default", f"({nsp} spatial axes)")
    sp = _SPATIAL[nsp]
    stride, padding, dilation = (_seq(v, nsp) for v in (stride, padding, dilation))
    # Channels-last inside, transposes at the edges: XLA's CPU backend ran the channels-first
    # convolutions of allconv-cifar10 inside the engine's loop far slower than the same ones
    # channels-last (an informal check, not a recorded benchmark), and it folds the
    # transposes away.
    perm = (0, *range(2, x.ndim), 1)
    inv = (0, x.ndim - 1, *range(1, x.ndim - 1))
    out = lax.conv_general_dilated(
        jnp.transpose(x, perm),
        jnp.transpose(w, (*range(2, w.ndim), 1, 0)),
        window_strides=stride,
        padding=[(p, p) for p in padding],
        rhs_dilation=dilation,
        dimension_numbers=("N" + sp + "C", sp + "IO", "N" + sp + "C"),
        feature_group_count=int(groups),
    )
    out = jnp.transpose(out, inv)
    return out if bias is None else out + _bcast(bias, out.ndim)


def _seq(v: Any, n: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(a) for a in v)
    return v * n if len(v) == 1 else v


@_op("addmm")
def _addmm(bias, a, b, *, beta=1, alpha=1):
    out = jnp.matmul(a, b)
    if alpha != 1:
        out = out * alpha
    return out + (bias if beta == 1 else bias * beta)


@_op("mm", "bmm", "matmul")
def _mm(a, b):
    return jnp.matmul(a, b)


@_op("linear")
def _linear(x, w, bias=None):
    out = jnp.matmul(x, jnp.swapaxes(w, -1, -2))
    return out if bias is None else out + bias


@_op("t")
def _t(x):
    return x.T


# -- normalisation ---------------------------------------------------------------------


@_op("_native_batch_norm_legit_no_training")
def _batch_norm(x, weight, bias, mean, var, momentum, eps):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` along axis 1 (inference)."""
    inv = 1.0 / np.sqrt(np.asarray(var, np.float32) + np.float32(eps))
    w = np.ones_like(inv) if weight is None else np.asarray(weight, np.float32)
    b = np.zeros_like(inv) if bias is None else np.asarray(bias, np.float32)
    scale = (w * inv).astype(np.float32)
    out = (x - _bcast(np.asarray(mean, np.float32), x.ndim)) * _bcast(scale, x.ndim)
    out = out + _bcast(b, x.ndim)
    name = "aten._native_batch_norm_legit_no_training"
    return (out, _Unavailable(name, "mean"), _Unavailable(name, "inverse std"))


@_op("native_layer_norm")
def _layer_norm(x, shape, weight, bias, eps):
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    rstd = lax.rsqrt(var + eps)
    out = (x - mean) * rstd
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return (out, mean, rstd)


# -- pooling ---------------------------------------------------------------------------


def _pool_geometry(n, k, s, p, d, ceil_mode):
    """Output size and the extra high padding ``ceil_mode`` adds, as PyTorch computes them."""
    span = n + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    extra = max(0, (out - 1) * s + d * (k - 1) + 1 - (n + 2 * p))
    return out, extra


def _pool_args(x, kernel, stride, padding, dilation=1):
    """The pooling's spatial axes (all after batch and channel) and its per-axis geometry."""
    nsp = x.ndim - 2
    k = _seq(kernel, nsp)
    s = _seq(stride, nsp) if stride not in (None, [], ()) else k
    return nsp, k, s, _seq(padding, nsp), _seq(dilation, nsp)


@_op("max_pool2d_with_indices", "max_pool2d", "max_pool3d_with_indices", "max_pool3d")
def _max_pool(x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    nsp, k, s, p, d = _pool_args(x, kernel_size, stride, padding, dilation)
    lead = x.ndim - nsp
    pads = []
    for i in range(nsp):
        _, extra = _pool_geometry(x.shape[lead + i], k[i], s[i], p[i], d[i], ceil_mode)
        pads.append((p[i], p[i] + extra))
    floating = jnp.issubdtype(x.dtype, jnp.floating)
    init = np.array(-np.inf if floating else jnp.iinfo(x.dtype).min, x.dtype)
    out = lax.reduce_window(
        x,
        init,
        lax.max,
        (1,) * lead + k,
        (1,) * lead + s,
        ((0, 0),) * lead + tuple(pads),
        window_dilation=(1,) * lead + d,
    )
    return (out, _Unavailable("aten.max_pool2d_with_indices", "indices"))


def _pool_counts(n, k, s, p, out, count_include_pad):
    """Per output position along one axis: the divisor of PyTorch's average pooling."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, n + p)
    size = end - start
    if count_include_pad:
        return size
    return np.minimum(end, n) - np.maximum(start, 0)


@_op("avg_pool2d", "avg_pool3d", "avg_pool1d")
def _avg_pool(
    x,
    kernel_size,
    stride=(),
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    nsp, k, s, p, _ = _pool_args(x, kernel_size, stride, padding)
    lead = x.ndim - nsp
    pads, counts = [], []
    for i in range(nsp):
        n = x.shape[lead + i]
        out, extra = _pool_geometry(n, k[i], s[i], p[i], 1, ceil_mode)
        pads.append((p[i], p[i] + extra))
        counts.append(_pool_counts(n, k[i], s[i], p[i], out, count_include_pad))
    total = lax.reduce_window(
        x,
        np.array(0, x.dtype),
        lax.add,
        (1,) * lead + k,
        (1,) * lead + s,
        ((0, 0),) * lead + tuple(pads),
    )
    if divisor_override:
        return total / np.float32(divisor_override)
    div = counts[0].astype(np.float32)
    for c in counts[1:]:
        div = np.multiply.outer(div, c.astype(np.float32))
    if np.all(div == div.flat[0]):
        return total / np.float32(div.flat[0])
    return total / div.reshape((1,) * lead + div.shape)


@_op("_adaptive_avg_pool2d", "adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_avg_pool1d")
def _adaptive_avg_pool(x, output_size):
    nsp = len(output_size)
    lead = x.ndim - nsp
    sizes = x.shape[lead:]
    if all(n % o == 0 for n, o in zip(sizes, output_size, strict=True)):
        k = tuple(n // o for n, o in zip(sizes, output_size, strict=True))
        if all(o == 1 for o in output_size):
            return jnp.mean(x, axis=tuple(range(lead, x.ndim)), keepdims=True)
        return _avg_pool(x, list(k), list(k))
    # General sizes: PyTorch's windows [floor(i n / o), ceil((i + 1) n / o)) as averaging
    # matrices, one per spatial axis.
    out = x
    for i, (n, o) in enumerate(zip(sizes, output_size, strict=True)):
        m = np.zeros((n, o), np.float32)
        for j in range(o):
            a, b = (j * n) // o, -((-(j + 1) * n) // o)
            m[a:b, j] = 1.0 / (b - a)
        out = jnp.moveaxis(jnp.tensordot(out, m, axes=([lead + i], [0])), -1, lead + i)
    return out


# -- reductions ------------------------------------------------------------------------


@_op("mean")
def _mean(x, dim=None, keepdim=False, *, dtype=None):
    out = jnp.mean(x, axis=_axes(dim, x.ndim), keepdims=keepdim)
    return out if dtype is None else out.astype(_dtype(dtype))


@_op("sum")
def _sum(x, dim=None, keepdim=False, *, dtype=None):
    out = jnp.sum(x, axis=_axes(dim, x.ndim), keepdims=keepdim)
    return out if dtype is None else out.astype(_dtype(dtype))


@_op("amax")
def _amax(x, dim=(), keepdim=False):
    return jnp.max(x, axis=_axes(dim, x.ndim), keepdims=keepdim)


@_op("amin")
def _amin(x, dim=(), keepdim=False):
    return jnp.min(x, axis=_axes(dim, x.ndim), keepdims=keepdim)


@_op("var")
def _var(x, dim=None, *, correction=1, keepdim=False):
    return jnp.var(
        x, axis=_axes(dim, x.ndim), ddof=1 if correction is None else correction, keepdims=keepdim
    )


@_op("_softmax", "softmax")
def _softmax(x, dim, half_to_float=False):
    return jax.nn.softmax(x, axis=dim)


@_op("_log_softmax", "log_softmax")
def _log_softmax(x, dim, half_to_float=False):
    return jax.nn.log_softmax(x, axis=dim)


# -- elementwise -----------------------------------------------------------------------


@_op("add")
def _add(a, b, *, alpha=1):
    return a + (b if alpha == 1 else b * alpha)


@_op("sub")
def _sub(a, b, *, alpha=1):
    return a - (b if alpha == 1 else b * alpha)


@_op("rsub")
def _rsub(a, b, *, alpha=1):
    return b - (a if alpha == 1 else a * alpha)


@_op("mul")
def _mul(a, b):
    return a * b


@_op("div")
def _div(a, b, *, rounding_mode=None):
    if rounding_mode is None:
        return jnp.true_divide(a, b)
    if rounding_mode == "floor":
        return jnp.floor_divide(a, b)
    return jnp.trunc(jnp.true_divide(a, b)).astype(jnp.result_type(a, b))


@_op("pow")
def _pow(a, b):
    if isinstance(b, int | float) and float(b).is_integer() and 0 <= b <= 8:
        return lax.integer_pow(_arr(a), int(b))
    return jnp.power(a, b)


def _unary(name: str, fn: Callable) -> None:
    OPS[name] = lambda x, *a, **k: fn(x)


for _name, _fn in {
    "relu": lambda x: jnp.maximum(x, jnp.zeros((), x.dtype)),
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "exp": jnp.exp,
    "log": jnp.log,
    "sqrt": jnp.sqrt,
    "rsqrt": lax.rsqrt,
    "abs": jnp.abs,
    "neg": jnp.negative,
    "reciprocal": lambda x: 1.0 / x,
    "erf": lax.erf,
    "sign": jnp.sign,
    "floor": jnp.floor,
    "ceil": jnp.ceil,
    "round": jnp.round,
    "logical_not": jnp.logical_not,
    "clone": lambda x: x,
    "alias": lambda x: x,
    "detach": lambda x: x,
    "lift_fresh_copy": lambda x: x,
    "contiguous": lambda x: x,
    "silu": lambda x: x * jax.nn.sigmoid(x),
    "hardsigmoid": lambda x: jnp.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "hardswish": lambda x: x * jnp.clip(x + 3.0, 0.0, 6.0) / 6.0,
}.items():
    _unary(_name, _fn)


@_op("gelu")
def _gelu(x, *, approximate="none"):
    return jax.nn.gelu(x, approximate=approximate == "tanh")


@_op("hardtanh")
def _hardtanh(x, min_val=-1.0, max_val=1.0):
    return jnp.clip(x, min_val, max_val)


@_op("clamp", "clip")
def _clamp(x, min=None, max=None):  # noqa: A002 - ATen's argument names
    if min is not None:
        x = jnp.maximum(x, min)
    if max is not None:
        x = jnp.minimum(x, max)
    return x


@_op("clamp_min")
def _clamp_min(x, v):
    return jnp.maximum(x, v)


@_op("clamp_max")
def _clamp_max(x, v):
    return jnp.minimum(x, v)


@_op("leaky_relu")
def _leaky_relu(x, negative_slope=0.01):
    return jnp.where(x > 0, x, x * negative_slope)


@_op("elu")
def _elu(x, alpha=1.0, scale=1.0, input_scale=1.0):
    neg = alpha * (jnp.exp(jnp.minimum(x, 0.0) * input_scale) - 1.0)
    return scale * jnp.where(x > 0, x, neg)


@_op("softplus")
def _softplus(x, beta=1.0, threshold=20.0):
    bx = x * beta
    return jnp.where(bx > threshold, x, jnp.log1p(jnp.exp(jnp.minimum(bx, threshold))) / beta)


@_op("maximum")
def _maximum(a, b):
    return jnp.maximum(a, b)


@_op("minimum")
def _minimum(a, b):
    return jnp.minimum(a, b)


@_op("where")
def _where(cond, a, b):
    return jnp.where(cond, a, b)


for _name, _fn in {
    "eq": jnp.equal,
    "ne": jnp.not_equal,
    "lt": jnp.less,
    "le": jnp.less_equal,
    "gt": jnp.greater,
    "ge": jnp.greater_equal,
    "logical_and": jnp.logical_and,
    "logical_or": jnp.logical_or,
}.items():
    OPS[_name] = _fn


# -- layout ----------------------------------------------------------------------------


@_op("view", "_unsafe_view", "reshape")
def _view(x, shape):
    return jnp.reshape(x, tuple(int(s) for s in shape))


@_op("permute")
def _permute(x, dims):
    return jnp.transpose(x, tuple(_axis(d, x.ndim) for d in dims))


@_op("transpose")
def _transpose(x, a, b):
    return jnp.swapaxes(x, a, b)


@_op("expand")
def _expand(x, sizes, *, implicit=False):
    lead = len(sizes) - x.ndim
    shape = tuple(x.shape[i - lead] if s == -1 else int(s) for i, s in enumerate(sizes))
    return jnp.broadcast_to(x, shape)


@_op("squeeze")
def _squeeze(x, dim=None):
    axes = _axes(dim, x.ndim)
    return jnp.squeeze(x, axis=tuple(a for a in axes if x.shape[a] == 1))


@_op("unsqueeze")
def _unsqueeze(x, dim):
    return jnp.expand_dims(x, _axis(dim, x.ndim + 1))


@_op("flatten")
def _flatten(x, start_dim=0, end_dim=-1):
    a, b = _axis(start_dim, x.ndim), _axis(end_dim, x.ndim)
    return jnp.reshape(x, (*x.shape[:a], -1, *x.shape[b + 1 :]))


@_op("cat", "concat")
def _cat(tensors, dim=0):
    tensors = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)]
    return jnp.concatenate(tensors, axis=_axis(dim, tensors[0].ndim))


@_op("stack")
def _stack(tensors, dim=0):
    return jnp.stack(tensors, axis=_axis(dim, tensors[0].ndim + 1))


@_op("slice")
def _slice(x, dim=0, start=None, end=None, step=1):
    ax = _axis(dim, x.ndim)
    n = x.shape[ax]
    start = 0 if start is None else start
    end = n if end is None or end >= _INT64_MAX else end
    idx = [slice(None)] * x.ndim
    idx[ax] = slice(start, end, step)
    return x[tuple(idx)]


@_op("select")
def _select(x, dim, index):
    return jnp.take(x, index, axis=_axis(dim, x.ndim))


@_op("split_with_sizes", "split")
def _split(x, sizes, dim=0):
    ax = _axis(dim, x.ndim)
    if isinstance(sizes, int):
        sizes = [sizes] * -(-x.shape[ax] // sizes)
    cuts = np.cumsum([int(s) for s in sizes])[:-1].tolist()
    return jnp.split(x, cuts, axis=ax)


@_op("constant_pad_nd")
def _pad(x, pad, value=0):
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return lax.pad(x, jnp.asarray(value, x.dtype), [(lo, hi, 0) for lo, hi in widths])


@_op("_to_copy", "to")
def _to_copy(x, *args, dtype=None, **kwargs):
    dt = _dtype(dtype) if dtype is not None else None
    return _arr(x) if dt is None else _arr(x).astype(dt)


# -- factories -------------------------------------------------------------------------


@_op("full")
def _full(size, value, *, dtype=None, **kwargs):
    return jnp.full(tuple(size), value, _dtype(dtype) or jnp.float32)


@_op("zeros")
def _zeros(size, *, dtype=None, **kwargs):
    return jnp.zeros(tuple(size), _dtype(dtype) or jnp.float32)


@_op("ones")
def _ones(size, *, dtype=None, **kwargs):
    return jnp.ones(tuple(size), _dtype(dtype) or jnp.float32)


@_op("full_like")
def _full_like(x, value, *, dtype=None, **kwargs):
    return jnp.full(x.shape, value, _dtype(dtype) or x.dtype)


@_op("zeros_like")
def _zeros_like(x, *, dtype=None, **kwargs):
    return jnp.zeros(x.shape, _dtype(dtype) or x.dtype)


@_op("ones_like")
def _ones_like(x, *, dtype=None, **kwargs):
    return jnp.ones(x.shape, _dtype(dtype) or x.dtype)


@_op("scalar_tensor")
def _scalar_tensor(value, *, dtype=None, **kwargs):
    return jnp.asarray(value, _dtype(dtype) or jnp.float32)


@_op("arange")
def _arange(start, end=None, step=1, *, dtype=None, **kwargs):
    out = np.arange(start, end, step) if end is not None else np.arange(start)
    return jnp.asarray(out, _dtype(dtype) or (jnp.int32 if out.dtype.kind == "i" else None))
