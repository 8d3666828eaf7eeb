"""Per-tuple windows: the abstract domain of exact incremental evaluation.

A candidate changes ``d`` pixels of an image whose clean activations are cached. Along the
walk of the model's graph (:mod:`onepixel_jax.targets.interpret`) a *windowed* variable holds,
per tuple ``j``, the variable's values (for the whole candidate) on a fixed-size window of its
two spatial axes that contains the cone of pixel ``j`` (:mod:`onepixel_jax.targets.cones`);
outside the union of the ``d`` windows the variable equals its clean value. Every window holds
exact values over its whole area, so:

- an elementwise operation of windowed operands computes, per tuple, on the union of the
  operands' cones: an operand whose window is that region is used as it is, another one is
  read there as its clean cache with all ``d`` of its windows written in (residual additions,
  concatenations, overlapping cones);
- a convolution or pooling computes the output window of tuple ``j`` from its input patch:
  the cached clean input (padded as the operation pads) with all ``d`` input windows written
  in, then the operation without padding;
- operations on non-spatial axes only (transposes, reshapes that keep the spatial axes,
  channel pads, slices, reductions, ``dot_general`` over channels) run on each window;
- a constant pad or a stride-1 crop of the spatial axes shifts the cones.

Anything else *materialises* the variable (clean cache plus the windows written in, in
order) and runs concretely from there. Two passes share the rules: :func:`plan` walks the
graph with static :class:`Cone` values (NumPy tables, window sizes, multiply-adds, which
clean values to cache, where windows stop paying) and :func:`evaluate_one` walks it with
traced windows (:class:`Win`) for one candidate.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import cones
from .interpret import Domain, Eqn, Graph, Lit, apply, concrete_domain, walk

__all__ = [
    "WINDOW_OPS",
    "Cone",
    "OpPlan",
    "Plan",
    "cache_bytes",
    "evaluate_one",
    "plan",
    "prepare_one",
    "shift_on_window",
]


# --------------------------------------------------------------------------------------
# Values


@dataclasses.dataclass(frozen=True, eq=False)
class Cone:
    """Plan-time value of a windowed variable.

    Attributes:
      shape: the variable's full shape (batch axis of size 1 included).
      axes: positions of its row-derived and column-derived spatial axes.
      tables: per spatial axis (rows, then columns) the cone table ``(lo, hi)`` over the
        input's rows (columns), int64 arrays of length ``H`` (``W``).
    """

    shape: tuple[int, ...]
    axes: tuple[int, int]
    tables: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

    @functools.cached_property
    def _windows(self):
        return tuple(
            cones.window(lo, hi, self.shape[ax])
            for (lo, hi), ax in zip(self.tables, self.axes, strict=True)
        )

    @property
    def size(self) -> tuple[int, int]:
        """Static window size along the two spatial axes."""
        return self._windows[0][0], self._windows[1][0]

    @property
    def starts(self) -> tuple[np.ndarray, np.ndarray]:
        """Window start per input row and per input column (int32 tables)."""
        return self._windows[0][1], self._windows[1][1]

    @property
    def wshape(self) -> tuple[int, ...]:
        """Shape of one window."""
        s = list(self.shape)
        for ax, n in zip(self.axes, self.size, strict=True):
            s[ax] = n
        return tuple(s)

    @functools.cached_property
    def region_key(self) -> tuple:
        """Equal for cones whose windows coincide for every pixel."""
        return (self.axes, self.size, self.starts[0].tobytes(), self.starts[1].tobytes())

    def same_region(self, other: Cone) -> bool:
        return self.region_key == other.region_key

    def moved(self, shape: Sequence[int], axes: Sequence[int]) -> Cone:
        """The same cones on a variable of another layout."""
        return Cone(tuple(int(v) for v in shape), (int(axes[0]), int(axes[1])), self.tables)


class Const(NamedTuple):
    """Plan-time value of an input-independent variable (weights, statistics, literals)."""

    shape: tuple[int, ...]
    value: Any = None  # the literal, when known


class Full(NamedTuple):
    """Plan-time value of a materialised variable (computed in full per candidate)."""

    shape: tuple[int, ...]


class Win(NamedTuple):
    """Run-time value of a windowed variable for one candidate: ``values`` ``(d, *wshape)``,
    window ``starts`` ``(d, 2)`` int32 along the (row, column) spatial axes."""

    values: jax.Array
    starts: jax.Array


class Step(NamedTuple):
    """A planned windowed equation: output cones, the cost of ``d`` windows and of the full
    operation (multiply-adds when ``macs``, else elements read or written), clean values it
    reads (``(var, pad value or None, pads_lo, pads_hi)``) and static data for its run rule."""

    outs: tuple[Cone, ...]
    window_cost: int
    full_cost: int
    macs: bool
    needs: tuple = ()
    info: Any = None


class OpPlan(NamedTuple):
    """One equation of the plan, for introspection: ``window`` is the per-tuple output
    window (``None`` when it runs in full), costs as in :class:`Step` (``window_cost`` is the
    full cost where the operation runs in full), ``reason`` why not windowed."""

    index: int
    primitive: str
    out_shape: tuple[int, ...]
    window: tuple[int, int] | None
    full_cost: int
    window_cost: int
    macs: bool
    windowed: bool
    reason: str | None


class CacheEntry(NamedTuple):
    """A clean variable kept per image: padded by ``pads_lo`` / ``pads_hi`` along its
    (row, column) spatial ``axes`` with ``pad_value``."""

    var: int
    axes: tuple[int, int]
    pad_value: float
    pads_lo: tuple[int, int]
    pads_hi: tuple[int, int]
    shape: tuple[int, ...]  # unpadded
    dtype: Any


class Plan(NamedTuple):
    """The static plan of a graph for ``pixels`` tuples (see :func:`plan`)."""

    graph: Graph
    pixels: int
    steps: dict[int, Step]
    cones: dict[int, Cone]
    cache: tuple[CacheEntry, ...]
    ops: tuple[OpPlan, ...]
    full_macs: int
    incremental_macs: int
    declines: tuple[tuple[int, str], ...]  # (eqn index, reason): where windows end


# --------------------------------------------------------------------------------------
# Plan-time rules. Each returns a Step, or a one-line reason why the equation cannot run on
# windows ("'<primitive>' <what>").


def _prod(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _reason_full(eqn: Eqn) -> str:
    return f"'{eqn.name}' with an operand that is already materialised"


def _const_slices(c: Const, out_shape, axes) -> tuple[bool, bool] | str:
    """Which spatial axes of a constant operand must be sliced at the window (full extent);
    a reason string when the constant does not broadcast against the output."""
    if len(c.shape) == 0:
        return (False, False)
    if len(c.shape) != len(out_shape):
        return "a constant of another rank"
    out = []
    for ax in axes:
        if c.shape[ax] == 1:
            out.append(False)
        elif c.shape[ax] == out_shape[ax]:
            out.append(out_shape[ax] > 1)
        else:
            return "a constant that does not cover the spatial axes"
    return (out[0], out[1])


def _plan_aligned(ctx: _Planner, eqn: Eqn, vals: list) -> Step | str:
    """Elementwise operations, ``select_n``, ``clamp``, ``concatenate``: operands aligned on the
    output's spatial axes; the output's cones are the union of the windowed operands'."""
    out_shape = ctx.graph.shape(eqn.outs[0])
    windowed = [v for v in vals if isinstance(v, Cone)]
    axes = windowed[0].axes
    if eqn.name == "concatenate" and eqn.params["dimension"] in axes:
        return "'concatenate' along a spatial axis"
    info = []
    for v in vals:
        if isinstance(v, Full):
            return _reason_full(eqn)
        if isinstance(v, Cone):
            if v.axes != axes or len(v.shape) != len(out_shape):
                return f"'{eqn.name}' of windowed operands with different layouts"
            if any(v.shape[ax] != out_shape[ax] for ax in axes):
                return f"'{eqn.name}' broadcasting a windowed operand over spatial axes"
            info.append("window")
        else:
            sl = _const_slices(v, out_shape, axes)
            if isinstance(sl, str):
                return f"'{eqn.name}' with {sl}"
            info.append(sl)
    tables = windowed[0].tables
    for v in windowed[1:]:
        tables = tuple(cones.union(a, b) for a, b in zip(tables, v.tables, strict=True))
    out = Cone(tuple(out_shape), axes, tables)
    needs = []
    for i, v in enumerate(vals):
        if isinstance(v, Cone) and not v.same_region(out):
            info[i] = "read"
            needs.append((eqn.ins[i], None, (0, 0), (0, 0)))
    cost = ctx.pixels * _prod(out.wshape)
    return Step((out,), cost, _prod(out_shape), False, tuple(needs), tuple(info))


def _pool_pad_value(eqn: Eqn, dtype) -> float | None:
    if eqn.name == "reduce_window_sum":
        return 0.0
    if eqn.name in ("reduce_window_max", "reduce_window_min"):
        sign = -1 if eqn.name == "reduce_window_max" else 1
        if jnp.issubdtype(dtype, jnp.floating):
            return sign * math.inf
        info = jnp.iinfo(dtype)
        return float(info.min if sign < 0 else info.max)
    return None


def _plan_window_op(ctx: _Planner, eqn: Eqn, vals: list) -> Step | str:
    """Convolutions and poolings over the two spatial axes."""
    x = vals[0]
    name = eqn.name
    if not isinstance(x, Cone):
        return f"'{name}' with a kernel computed from the input"
    if any(isinstance(v, Full) for v in vals[1:]):
        return _reason_full(eqn)
    if any(isinstance(v, Cone) for v in vals[1:]):
        return f"'{name}' with a kernel computed from the input"
    p = eqn.params
    out_shape = ctx.graph.shape(eqn.outs[0])
    if name == "conv_general_dilated":
        lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
        if any(v != 1 for v in p["lhs_dilation"]):
            return "'conv_general_dilated' with input dilation (a transposed convolution)"
        if p["batch_group_count"] != 1:
            return "'conv_general_dilated' with batch groups"
        in_sp, out_sp = tuple(lhs_spec[2:]), tuple(out_spec[2:])
        kernel = tuple(vals[1].shape[a] for a in rhs_spec[2:])
        strides, dil, pads = p["window_strides"], p["rhs_dilation"], p["padding"]
        per_out = _prod(vals[1].shape) // vals[1].shape[rhs_spec[0]]
        pad_value, macs = 0.0, True
    else:
        if name == "reduce_window":
            if len(vals) != 2 or not isinstance(eqn.ins[1], Lit):
                return "'reduce_window' with several operands or a computed initial value"
            pad_value = float(np.asarray(eqn.ins[1].value))
        else:
            pad_value = _pool_pad_value(eqn, ctx.graph.dtype(eqn.ins[0]))
        dims, wstr = p["window_dimensions"], p["window_strides"]
        pads, bdil, wdil = p["padding"], p["base_dilation"], p["window_dilation"]
        if any(v != 1 for v in bdil):
            return f"'{name}' with base dilation"
        for a in range(len(dims)):
            if a not in x.axes and (dims[a] != 1 or wstr[a] != 1 or tuple(pads[a]) != (0, 0)):
                return f"'{name}' over other axes than the spatial ones"
        in_sp = out_sp = tuple(sorted(x.axes))
        kernel = tuple(dims[a] for a in in_sp)
        strides = tuple(wstr[a] for a in in_sp)
        dil = tuple(wdil[a] for a in in_sp)
        pads = tuple(tuple(pads[a]) for a in in_sp)
        per_out = _prod(kernel)
        macs = False
    if len(in_sp) != 2 or set(in_sp) != set(x.axes):
        return f"'{name}' over other axes than the spatial ones"
    out_axes, tables, geometry = [0, 0], [None, None], [None, None]
    pads_lo, pads_hi = [0, 0], [0, 0]
    for i, ax in enumerate(in_sp):
        t = x.axes.index(ax)
        k, s, dl = int(kernel[i]), int(strides[i]), int(dil[i])
        plo, _ = (int(v) for v in pads[i])
        n_in, n_out = x.shape[ax], out_shape[out_sp[i]]
        lo, hi = x.tables[t]
        tables[t] = cones.reach(lo, hi, n_in, k, s, plo, dl, n_out)
        out_axes[t] = out_sp[i]
        geometry[t] = (s, plo, (k - 1) * dl + 1)
        pads_lo[t] = max(0, plo)
        pads_hi[t] = max(0, (n_out - 1) * s - plo + (k - 1) * dl - (n_in - 1))
    out = Cone(tuple(out_shape), tuple(out_axes), tuple(tables))
    n, m = out.size
    geometry = tuple(
        (s, plo, (size - 1) * s + ext) for (s, plo, ext), size in zip(geometry, (n, m), strict=True)
    )
    per_position = _prod(out_shape) // (out_shape[out.axes[0]] * out_shape[out.axes[1]])
    full = _prod(out_shape) * per_out
    win = ctx.pixels * n * m * per_position * per_out
    need = (eqn.ins[0], pad_value, tuple(pads_lo), tuple(pads_hi))
    return Step((out,), win, full, macs, (need,), (geometry, pad_value, tuple(in_sp)))


def _reshape_axes(shape_in, shape_out, axes) -> tuple[int, int] | None:
    """Output positions of the spatial ``axes`` under a row-major reshape that keeps them
    (only groups of other axes split or merge), or ``None``."""
    a0, a1 = sorted(axes)
    groups_in = (_prod(shape_in[:a0]), _prod(shape_in[a0 + 1 : a1]), _prod(shape_in[a1 + 1 :]))
    for q0 in range(len(shape_out)):
        if shape_out[q0] != shape_in[a0] or _prod(shape_out[:q0]) != groups_in[0]:
            continue
        for q1 in range(q0 + 1, len(shape_out)):
            if (
                shape_out[q1] == shape_in[a1]
                and _prod(shape_out[q0 + 1 : q1]) == groups_in[1]
                and _prod(shape_out[q1 + 1 :]) == groups_in[2]
            ):
                return (q0, q1) if axes[0] == a0 else (q1, q0)
    return None


def _shift(axis: int, removed: Sequence[int]) -> int:
    return axis - sum(1 for r in removed if r < axis)


def _layout_axes(eqn: Eqn, x: Cone, out_shape) -> tuple[int, int] | str:
    """Output positions of the spatial axes of a single-operand layout or channel operation,
    or the reason why it touches the spatial axes."""
    p, name, axes = eqn.params, eqn.name, x.axes
    if name == "transpose":
        perm = list(p["permutation"])
        return perm.index(axes[0]), perm.index(axes[1])
    if name == "broadcast_in_dim":
        bd = p["broadcast_dimensions"]
        new = (int(bd[axes[0]]), int(bd[axes[1]]))
        if any(p["shape"][q] != x.shape[a] for q, a in zip(new, axes, strict=True)):
            return "'broadcast_in_dim' over spatial axes"
        return new
    if name == "reshape":
        if p.get("dimensions") is not None:
            return "'reshape' with a permutation"
        new = _reshape_axes(x.shape, out_shape, axes)
        return "'reshape' merging the spatial axes" if new is None else new
    if name == "squeeze":
        dims = [d % len(x.shape) for d in p["dimensions"]]
        if any(a in dims for a in axes):
            return "'squeeze' of a spatial axis"
        return _shift(axes[0], dims), _shift(axes[1], dims)
    if name in _REDUCTIONS:
        red = [int(a) for a in p["axes"]]
        if any(a in red for a in axes):
            return f"'{name}' over spatial axes"
        return _shift(axes[0], red), _shift(axes[1], red)
    if name in _CUMULATIVE:
        return f"'{name}' along a spatial axis" if p["axis"] in axes else axes
    if name == "rev":
        return "'rev' of a spatial axis" if any(a in p["dimensions"] for a in axes) else axes
    if name == "split":
        return "'split' along a spatial axis" if p["axis"] in axes else axes
    if name == "pad":
        if any(tuple(p["padding_config"][a]) != (0, 0, 0) for a in axes):
            return "'pad' of spatial axes"
        return axes
    if name == "slice":
        strides = p["strides"] or (1,) * len(x.shape)
        for a in axes:
            if (p["start_indices"][a], p["limit_indices"][a], strides[a]) != (0, x.shape[a], 1):
                return "'slice' of spatial axes"
        return axes
    return f"unknown primitive '{name}'"  # pragma: no cover - table and rules agree


def _dot_axes(eqn: Eqn, vals: list) -> tuple[int, tuple[int, int], int] | str:
    """``(windowed operand, output spatial axes, contraction size)`` of a ``dot_general``
    whose windowed operand keeps its spatial axes free."""
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = vals
    if isinstance(lhs, Cone) == isinstance(rhs, Cone):
        return "'dot_general' of two windowed operands"
    side = 0 if isinstance(lhs, Cone) else 1
    x, other = (lhs, rhs) if side == 0 else (rhs, lhs)
    if isinstance(other, Full):
        return _reason_full(eqn)
    contract, batch = (lc, lb) if side == 0 else (rc, rb)
    if any(a in contract or a in batch for a in x.axes):
        return "'dot_general' over spatial axes"
    free = [a for a in range(len(x.shape)) if a not in contract and a not in batch]
    offset = len(lb)
    if side == 1:
        offset += len(lhs.shape) - len(lc) - len(lb)
    new = (offset + free.index(x.axes[0]), offset + free.index(x.axes[1]))
    return side, new, _prod([x.shape[a] for a in contract])


def _shifts(eqn: Eqn, x: Cone) -> tuple[int, int] | str | None:
    """For ``pad`` or ``slice`` that changes the spatial axes: the shift of each (output
    position = input position + shift), or why it cannot run on windows; ``None`` when the
    spatial axes are untouched."""
    p = eqn.params
    shifts = []
    for ax in x.axes:
        if eqn.name == "pad":
            lo, hi, interior = (int(v) for v in p["padding_config"][ax])
            if interior:
                return "'pad' with interior padding of a spatial axis"
            shifts.append((lo, (lo, hi)))
        else:
            start, limit = int(p["start_indices"][ax]), int(p["limit_indices"][ax])
            if (p["strides"] or (1,) * len(x.shape))[ax] != 1:
                return "'slice' with strides along a spatial axis"
            shifts.append((-start, (-start, limit - x.shape[ax])))
    if all(pads == (0, 0) for _, pads in shifts):
        return None
    return tuple(s for s, _ in shifts)


def _plan_shift(ctx: _Planner, eqn: Eqn, x: Cone) -> Step | str:
    """``pad`` (constant) and ``slice`` (stride 1) of the spatial axes: the cones move by the
    padding or the crop; a window is read from the clean input with the input's windows
    written in, and the positions outside the input take the padding value."""
    shifts = _shifts(eqn, x)
    if isinstance(shifts, str):
        return shifts
    out_shape = ctx.graph.shape(eqn.outs[0])
    tables, pads_lo, pads_hi = [], [], []
    for (lo, hi), ax, shift in zip(x.tables, x.axes, shifts, strict=True):
        n_out = out_shape[ax]
        new_lo, new_hi = np.maximum(lo + shift, 0), np.minimum(hi + shift, n_out - 1)
        empty = (lo > hi) | (new_lo > new_hi)
        tables.append((np.where(empty, 0, new_lo), np.where(empty, -1, new_hi)))
        pads_lo.append(max(shift, 0))
        pads_hi.append(max(n_out - shift - x.shape[ax], 0))
    out = Cone(tuple(out_shape), x.axes, tuple(tables))
    need = (eqn.ins[0], 0.0, tuple(pads_lo), tuple(pads_hi))
    cost = ctx.pixels * _prod(out.wshape)
    return Step((out,), cost, _prod(out_shape), False, (need,), ("shift", shifts))


def _plan_layout(ctx: _Planner, eqn: Eqn, vals: list) -> Step | str:
    """Operations on non-spatial axes (one windowed operand; the others constant)."""
    if eqn.name == "dot_general":
        res = _dot_axes(eqn, vals)
        if isinstance(res, str):
            return res
        side, new, contraction = res
        x = vals[side]
    else:
        x, side = vals[0], 0
        if not isinstance(x, Cone):
            return f"'{eqn.name}' with a windowed operand other than the first"
        if any(isinstance(v, Full) for v in vals[1:]):
            return _reason_full(eqn)
        if any(isinstance(v, Cone) for v in vals[1:]):
            return f"'{eqn.name}' of several windowed operands"
        if eqn.name in ("pad", "slice") and _shifts(eqn, x) is not None:
            return _plan_shift(ctx, eqn, x)
        contraction = 1
    outs = []
    for out in eqn.outs:
        out_shape = ctx.graph.shape(out)
        if eqn.name != "dot_general":
            new = _layout_axes(eqn, x, out_shape)
            if isinstance(new, str):
                return new
        outs.append(x.moved(out_shape, new))
    wins = sum(_prod(o.wshape) for o in outs) * contraction
    full = sum(_prod(o.shape) for o in outs) * contraction
    if eqn.name in _REDUCTIONS:
        wins, full = _prod(x.wshape), _prod(x.shape)
    return Step(tuple(outs), ctx.pixels * wins, full, eqn.name == "dot_general", (), side)


_ELEMENTWISE = frozenset(
    """abs acos acosh add add_any and asin asinh atan atan2 atanh cbrt ceil clz convert_element_type
    copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt igamma imag
    integer_pow is_finite le lgamma log log1p logistic lt max min mul ne neg nextafter not or pow
    real reduce_precision rem round rsqrt select_n shift_left shift_right_arithmetic
    shift_right_logical sign sin sinh sqrt square stop_gradient sub tan tanh xor clamp
    concatenate""".split()
)
_REDUCTIONS = frozenset(
    """reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor argmax
    argmin""".split()
)
_CUMULATIVE = frozenset("cumsum cumprod cummax cummin cumlogsumexp".split())
_LAYOUT = (
    frozenset("transpose broadcast_in_dim reshape squeeze rev split pad slice dot_general".split())
    | _REDUCTIONS
    | _CUMULATIVE
)
WINDOW_OPS = frozenset(
    """conv_general_dilated reduce_window_sum reduce_window_max reduce_window_min
    reduce_window""".split()
)


# --------------------------------------------------------------------------------------
# The plan


class _Planner:
    def __init__(self, graph: Graph, pixels: int, max_fraction: float):
        self.graph, self.pixels, self.max_fraction = graph, pixels, max_fraction
        self.steps: dict[int, Step] = {}
        self.cones: dict[int, Cone] = {}
        self.needs: list = []
        self.ops: list[OpPlan] = []
        self.declines: list[tuple[int, str]] = []
        self.reasons: dict[int, str] = {}
        self.full_macs = 0
        self.window_macs = 0

    def rule(self, index: int, eqn: Eqn, vals: list):
        fn = _PLAN_RULES.get(eqn.name)
        step = f"unknown primitive '{eqn.name}'" if fn is None else fn(self, eqn, vals)
        if isinstance(step, str):
            self.declines.append((index, step))
            self.reasons[index] = step
            return None
        if step.window_cost >= self.max_fraction * step.full_cost:
            self.declines.append((index, "cost"))
            self.reasons[index] = "d windows cost at least max_fraction of the operation"
            return None
        self.ops.append(
            OpPlan(
                index,
                eqn.name,
                self.graph.shape(eqn.outs[0]),
                step.outs[0].size,
                step.full_cost,
                step.window_cost,
                step.macs,
                True,
                None,
            )
        )
        if step.macs:
            self.full_macs += step.full_cost
            self.window_macs += step.window_cost
        self.steps[index] = step
        self.needs.extend(step.needs)
        for var, cone in zip(eqn.outs, step.outs, strict=True):
            self.cones[var] = cone
        return list(step.outs)

    def apply(self, index: int, eqn: Eqn, vals: list) -> list:
        outs = [self.graph.shape(v) for v in eqn.outs]
        if all(isinstance(v, Const) for v in vals):
            return [Const(s) for s in outs]
        macs = _full_macs(self.graph, eqn)
        self.full_macs += macs
        self.window_macs += macs
        cost = macs or sum(_prod(s) for s in outs)
        reason = self.reasons.pop(index, "an operand in full")
        self.ops.append(
            OpPlan(index, eqn.name, outs[0], None, cost, cost, bool(macs), False, reason)
        )
        return [Full(s) for s in outs]

    def concretise(self, var: int, value: Cone) -> Full:
        self.needs.append((var, None, (0, 0), (0, 0)))
        return Full(value.shape)

    def lift(self, atom, value) -> Const:
        if isinstance(atom, Lit):
            return Const(tuple(np.shape(value)), value)
        return Const(self.graph.shape(atom))


def _full_macs(graph: Graph, eqn: Eqn) -> int:
    if eqn.name == "conv_general_dilated":
        rhs = graph.shape(eqn.ins[1])
        out_feature = eqn.params["dimension_numbers"][1][0]
        return _prod(graph.shape(eqn.outs[0])) * (_prod(rhs) // rhs[out_feature])
    if eqn.name == "dot_general":
        (lc, _), _ = eqn.params["dimension_numbers"]
        lhs = graph.shape(eqn.ins[0])
        return _prod(graph.shape(eqn.outs[0])) * _prod([lhs[a] for a in lc])
    return 0


def _input_cone(shape: Sequence[int]) -> Cone:
    if len(shape) not in (3, 4) or shape[0] != 1:
        raise ValueError(f"the traced input must be (1, H, W[, C]), got {tuple(shape)}")
    return Cone(tuple(shape), (1, 2), (cones.identity(shape[1]), cones.identity(shape[2])))


def plan(graph: Graph, pixels: int, max_fraction: float = 0.5) -> Plan:
    """The static plan of ``graph`` (traced at batch size 1 on ``(1, H, W[, C])``) for
    ``pixels`` tuples: which equations run on windows (those whose ``d`` windows cost less than
    ``max_fraction`` of the full operation, among those the rules can window), their window
    sizes, the clean values to cache per image, and the multiply-adds of convolutions and
    ``dot_general`` per candidate in full and incrementally."""
    if not isinstance(pixels, int) or pixels < 1:
        raise ValueError(f"pixels must be a positive int, got {pixels!r}")
    ctx = _Planner(graph, pixels, max_fraction)
    rules = {None: ctx.rule}  # every primitive: a rule, or the reason why there is none
    domain = Domain(rules, lambda v: isinstance(v, Cone), ctx.concretise, ctx.apply, ctx.lift)
    x = graph.inputs[0]
    ctx.cones[x] = _input_cone(graph.shape(x))
    walk(graph, [ctx.cones[x]], domain)
    return Plan(
        graph,
        pixels,
        ctx.steps,
        ctx.cones,
        _cache_entries(graph, ctx.cones, ctx.needs),
        tuple(sorted(ctx.ops, key=lambda op: op.index)),
        ctx.full_macs,
        ctx.window_macs,
        tuple(ctx.declines),
    )


def _cache_entries(graph: Graph, cone_of: dict, needs: list) -> tuple[CacheEntry, ...]:
    padded: dict[tuple[int, float], list] = {}
    for var, value, lo, hi in needs:
        if value is None:
            continue
        cur = padded.setdefault((var, value), [[0, 0], [0, 0]])
        cur[0] = [max(a, b) for a, b in zip(cur[0], lo, strict=True)]
        cur[1] = [max(a, b) for a, b in zip(cur[1], hi, strict=True)]
    for var, value, _, _ in needs:
        if value is None and not any(k[0] == var for k in padded):
            padded[(var, 0.0)] = [[0, 0], [0, 0]]
    return tuple(
        CacheEntry(
            var,
            cone_of[var].axes,
            value,
            tuple(lo),
            tuple(hi),
            graph.shape(var),
            graph.dtype(var),
        )
        for (var, value), (lo, hi) in sorted(padded.items(), key=lambda kv: kv[0][0])
    )


def cache_bytes(p: Plan) -> int:
    """Bytes of clean values :func:`prepare_one` keeps per image for plan ``p``."""
    total = 0
    for e in p.cache:
        shape = list(e.shape)
        for t, ax in enumerate(e.axes):
            shape[ax] += e.pads_lo[t] + e.pads_hi[t]
        total += _prod(shape) * jnp.dtype(e.dtype).itemsize
    return total


# --------------------------------------------------------------------------------------
# Run time


def _pad_entry(e: CacheEntry, value: jax.Array) -> jax.Array:
    widths = [(0, 0)] * value.ndim
    for t, ax in enumerate(e.axes):
        widths[ax] = (e.pads_lo[t], e.pads_hi[t])
    if all(w == (0, 0) for w in widths):
        return value
    return jnp.pad(value, widths, constant_values=jnp.asarray(e.pad_value, value.dtype))


def prepare_one(p: Plan, image: jax.Array) -> tuple[jax.Array, ...]:
    """The clean values of plan ``p`` for one input ``(1, H, W[, C])`` (padded as planned),
    in the order of ``p.cache``."""
    keep = [e.var for e in p.cache]
    _, kept = walk(p.graph, [image], concrete_domain(), keep)
    return tuple(_pad_entry(e, kept[e.var]) for e in p.cache)


def overlay(patch: jax.Array, origin: jax.Array, win: Win, axes: tuple[int, int]) -> jax.Array:
    """``patch`` (spatial ``axes``, its first position at ``origin`` (2,) int32 in the
    variable's coordinates) with the ``d`` windows of ``win`` written in, in order; windows
    may lie partly or wholly outside the patch (only the overlap is written).

    Each window is gathered onto the patch's positions (indices clipped into the window) and
    selected where it covers them: no buffer larger than the patch, which matters on XLA's CPU
    backend, where a padded window fuses with the operations that produce it."""
    extents = [patch.shape[ax] for ax in axes]
    sizes = [win.values.shape[1 + ax] for ax in axes]
    for k in range(win.values.shape[0]):
        offset = win.starts[k] - origin
        placed = win.values[k].astype(patch.dtype)
        inside = None
        for t, ax in enumerate(axes):
            pos = jnp.arange(extents[t]) - offset[t]
            placed = jnp.take(placed, jnp.clip(pos, 0, sizes[t] - 1), axis=ax, mode="clip")
            shape = [1] * patch.ndim
            shape[ax] = extents[t]
            ok = ((pos >= 0) & (pos < sizes[t])).reshape(shape)
            inside = ok if inside is None else inside & ok
        patch = jnp.where(inside, placed, patch)
    return patch


class _Runner:
    """Run-time state of one candidate: the plan, one image's cache and the tuples."""

    def __init__(self, p: Plan, cache: Sequence[jax.Array], rows: jax.Array, cols: jax.Array):
        self.plan, self.rows, self.cols = p, rows, cols
        self.entries = {}
        for e, value in zip(p.cache, cache, strict=True):
            self.entries.setdefault(e.var, []).append((e, value))
        self._starts: dict[tuple, jax.Array] = {}

    def starts(self, cone: Cone) -> jax.Array:
        """``(d, 2)`` int32 window starts of ``cone`` for this candidate's tuples."""
        key = cone.region_key[1:]
        if key not in self._starts:
            r, c = (jnp.asarray(s) for s in cone.starts)
            self._starts[key] = jnp.stack([r[self.rows], c[self.cols]], axis=1)
        return self._starts[key]

    def entry(self, var: int, pad_value: float | None):
        for e, value in self.entries[var]:
            if pad_value is None or e.pad_value == pad_value:
                return e, value
        raise KeyError((var, pad_value))  # pragma: no cover - the plan lists every need

    def read(self, var, origin, extents, pad_value=None) -> jax.Array:
        """The clean ``var`` on ``extents`` positions from ``origin`` (2,) along its spatial
        axes (padding included where planned)."""
        e, value = self.entry(var, pad_value)
        idx = [jnp.zeros((), jnp.int32)] * value.ndim
        sizes = list(value.shape)
        for t, ax in enumerate(e.axes):
            idx[ax] = origin[t] + e.pads_lo[t]
            sizes[ax] = extents[t]
        return lax.dynamic_slice(value, idx, sizes)

    def region(self, var: int, win: Win, origin, extents) -> jax.Array:
        """``var`` for this candidate on a region: clean values with all windows written in."""
        axes = self.plan.cones[var].axes
        return overlay(self.read(var, origin, extents), origin, win, axes)

    def materialise(self, var: int, win: Win) -> jax.Array:
        e, value = self.entry(var, None)
        start = [0] * value.ndim
        for t, ax in enumerate(e.axes):
            start[ax] = e.pads_lo[t]
        full = lax.slice(value, start, [s + n for s, n in zip(start, e.shape, strict=True)])
        zero = jnp.zeros((), jnp.int32)
        for k in range(win.values.shape[0]):
            idx = [zero] * full.ndim
            for t, ax in enumerate(e.axes):
                idx[ax] = win.starts[k, t]
            full = lax.dynamic_update_slice(full, win.values[k].astype(full.dtype), idx)
        return full


def _run_aligned(rt: _Runner, eqn: Eqn, vals: list, step: Step) -> list:
    out = step.outs[0]
    starts = rt.starts(out)
    size = out.size
    same = [v.values for v, kind in zip(vals, step.info, strict=True) if kind == "window"]

    def one(start, windows):
        windows = iter(windows)
        args = []
        for atom, v, kind in zip(eqn.ins, vals, step.info, strict=True):
            if kind == "window":
                args.append(next(windows))
            elif kind == "read":
                args.append(rt.region(atom, v, start, size))
            else:
                for t in (0, 1):
                    if kind[t]:
                        v = lax.dynamic_slice_in_dim(v, start[t], size[t], out.axes[t])
                args.append(v)
        return apply(eqn, args)

    outs = jax.vmap(one)(starts, same)
    return [Win(o, starts) for o in outs]


def _run_window_op(rt: _Runner, eqn: Eqn, vals: list, step: Step) -> list:
    out = step.outs[0]
    geometry, pad_value, in_sp = step.info
    starts = rt.starts(out)
    x, var = vals[0], eqn.ins[0]
    axes = rt.plan.cones[var].axes
    stride = jnp.asarray([g[0] for g in geometry], jnp.int32)
    pad_lo = jnp.asarray([g[1] for g in geometry], jnp.int32)
    extents = [g[2] for g in geometry]
    params = dict(eqn.params)
    if eqn.name == "conv_general_dilated":
        params["padding"] = ((0, 0),) * len(in_sp)
    else:
        params["padding"] = ((0, 0),) * len(params["padding"])
    run = eqn._replace(params=params)

    def one(start):
        origin = start * stride - pad_lo
        patch = overlay(rt.read(var, origin, extents, pad_value), origin, x, axes)
        return apply(run, [patch, *vals[1:]])[0]

    return [Win(jax.vmap(one)(starts), starts)]


def _window_params(eqn: Eqn, outs: Sequence[Cone]) -> dict:
    p = dict(eqn.params)
    if eqn.name == "broadcast_in_dim":
        p["shape"] = outs[0].wshape
    elif eqn.name == "reshape":
        p["new_sizes"] = outs[0].wshape
    elif eqn.name == "slice":
        limit = list(p["limit_indices"])
        for ax, n in zip(outs[0].axes, outs[0].size, strict=True):
            limit[ax] = n
        p["limit_indices"] = tuple(limit)
    return p


def shift_on_window(eqn: Eqn, axes, size) -> Eqn:
    """A pad or slice ``eqn`` as it runs on a window: its spatial ``axes`` cover the window
    (``size``) as they are, the other axes keep the operation's own padding or bounds."""
    params = dict(eqn.params)
    if eqn.name == "pad":
        params["padding_config"] = tuple(
            (0, 0, 0) if a in axes else tuple(c) for a, c in enumerate(params["padding_config"])
        )
    else:
        limit = list(params["limit_indices"])
        start = list(params["start_indices"])
        for ax, n in zip(axes, size, strict=True):
            start[ax], limit[ax] = 0, n
        params["start_indices"], params["limit_indices"] = tuple(start), tuple(limit)
    return eqn._replace(params=params)


def _run_shift(rt: _Runner, eqn: Eqn, vals: list, step: Step) -> list:
    out, shifts = step.outs[0], step.info[1]
    starts = rt.starts(out)
    x, var = vals[0], eqn.ins[0]
    axes, size = out.axes, out.size
    in_sizes = [rt.plan.cones[var].shape[ax] for ax in axes]
    shift = jnp.asarray(shifts, jnp.int32)
    run = shift_on_window(eqn, axes, size)

    def one(start):
        origin = start - shift
        patch = overlay(rt.read(var, origin, size, 0.0), origin, x, axes)
        if eqn.name == "pad":
            inside = None
            for t, ax in enumerate(axes):
                pos = origin[t] + jnp.arange(size[t])
                shape = [1] * patch.ndim
                shape[ax] = size[t]
                ok = ((pos >= 0) & (pos < in_sizes[t])).reshape(shape)
                inside = ok if inside is None else inside & ok
            patch = jnp.where(inside, patch, jnp.asarray(vals[1], patch.dtype))
        return apply(run, [patch, *vals[1:]])[0]

    return [Win(jax.vmap(one)(starts), starts)]


def _run_layout(rt: _Runner, eqn: Eqn, vals: list, step: Step) -> list:
    if isinstance(step.info, tuple) and step.info[0] == "shift":
        return _run_shift(rt, eqn, vals, step)
    side = step.info
    x = vals[side]
    run = eqn._replace(params=_window_params(eqn, step.outs))

    def one(w):
        args = list(vals)
        args[side] = w
        return apply(run, args)

    outs = jax.vmap(one)(x.values)
    return [Win(o, x.starts) for o in outs]


_PLAN_RULES: dict[str, Callable] = {}
_RUN_RULES: dict[str, Callable] = {}
for _names, _plan_fn, _run_fn in (
    (_ELEMENTWISE, _plan_aligned, _run_aligned),
    (WINDOW_OPS, _plan_window_op, _run_window_op),
    (_LAYOUT, _plan_layout, _run_layout),
):
    for _name in _names:
        _PLAN_RULES[_name] = _plan_fn
        _RUN_RULES[_name] = _run_fn


def _apply_full(eqn: Eqn, args: list) -> list:
    """``eqn`` on full values. A padded convolution whose kernel is larger than its input map
    pads the input first: XLA's CPU backend rewrites such a convolution (VGG16's 2x2 layers)
    into a form several times slower than the same convolution on a padded input."""
    if eqn.name != "conv_general_dilated" or not any(lo or hi for lo, hi in eqn.params["padding"]):
        return apply(eqn, args)
    lhs_spec, rhs_spec, _ = eqn.params["dimension_numbers"]
    dil = eqn.params["rhs_dilation"]
    small = any(
        args[0].shape[a] < (args[1].shape[k] - 1) * dl + 1
        for a, k, dl in zip(lhs_spec[2:], rhs_spec[2:], dil, strict=True)
    )
    if not small:
        return apply(eqn, args)
    config = [(0, 0, 0)] * args[0].ndim
    for ax, (lo, hi) in zip(lhs_spec[2:], eqn.params["padding"], strict=True):
        config[ax] = (lo, hi, 0)
    padded = lax.pad(args[0], jnp.zeros((), args[0].dtype), config)
    params = dict(eqn.params, padding=((0, 0),) * len(lhs_spec[2:]))
    return apply(eqn._replace(params=params), [padded, *args[1:]])


def evaluate_one(p: Plan, cache: Sequence[jax.Array], pixels: jax.Array) -> jax.Array:
    """The graph's outputs for one candidate: ``pixels`` ``(d, 2 + C)`` int32 tuples ``(row,
    col, values...)`` (repeated coordinates: the last tuple wins) on the image whose clean
    values are ``cache`` (:func:`prepare_one`). Returns the first output without its batch
    axis."""
    graph = p.graph
    x = graph.inputs[0]
    d = pixels.shape[0]
    rows, cols = pixels[:, 0], pixels[:, 1]
    same = (rows[:, None] == rows[None, :]) & (cols[:, None] == cols[None, :])
    winner = jnp.max(jnp.where(same, jnp.arange(d)[None, :], -1), axis=1)
    cone = p.cones[x]
    values = pixels[winner, 2:].astype(graph.dtype(x)).reshape((d, *cone.wshape))
    rt = _Runner(p, cache, rows, cols)

    def rule(index, eqn, vals):
        step = p.steps.get(index)
        return None if step is None else _RUN_RULES[eqn.name](rt, eqn, vals, step)

    domain = Domain(
        {name: rule for name in _RUN_RULES},
        lambda v: isinstance(v, Win),
        lambda var, w: rt.materialise(var, w),
        lambda index, eqn, args: _apply_full(eqn, args),
        lambda atom, value: value,
    )
    outs, _ = walk(graph, [Win(values, rt.starts(cone))], domain)
    return outs[0][0]
