"""Linear bounds over a pixel's colour box: the verifier's abstract domain over the jaxpr walker.

A one-pixel change of an image is a function of ``n`` input variables, the pixel's channel
values. Over a box of colours (centre ``c``, half-widths ``w``) they are written
``c + w * eps`` with ``eps`` in ``[-1, 1]^n``. A variable of the network then holds a
:class:`Lin`: two *linear forms* in ``eps`` per element, ``mid`` and ``rad``, arrays of shape
``(n + 1, *shape)`` (``f[:n]`` the coefficients, ``f[n]`` the constant), with

    mid(eps) - rad(eps) <= value(eps) <= mid(eps) + rad(eps)    for every eps in the box.

Affine operations keep the forms exact (a linear map ``W`` maps ``mid`` with ``W`` and ``rad``
with ``|W|``), so until the first nonlinearity the bounds are the exact linear functions of
the colour; a ReLU (``max`` with a constant) is relaxed per element by a line below and a
chord above (the symbolic intervals of ReluVal and Neurify; forward mode is cheap with three
input variables). Other monotone operations give constant intervals; operations that this
table does not cover raise :class:`Unsupported` naming them, since an abstract value has no
concrete stand-in (the walker's fallback would be unsound here).

Two walks over one graph (:mod:`~onepixel_jax.targets.interpret`):

- :func:`propagate`: every variable in full (the reference; small models);
- :func:`propagate_windowed`: the incremental evaluator's plan (:func:`windows.plan` with one
  pixel) gives each variable's receptive-field window; inside it the variable is a ``Lin``,
  outside it the clean activations are exact constants (the cached values of
  :func:`windows.prepare_one`). Where the plan stops windowing the variable is materialised
  (clean constants with the window written in) and the rest runs in full.

:func:`bounds_of` concretises a form's range over the box. Everything is pure and traceable:
the verifier ``vmap``s one box over many boxes and positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import windows
from .interpret import Domain, Eqn, Graph, apply, walk

__all__ = [
    "RULES",
    "Lin",
    "Unsupported",
    "bounds_of",
    "form_range",
    "input_lin",
    "lift",
    "propagate",
    "propagate_windowed",
    "rule",
]


class Unsupported(ValueError):
    """An operation on an input-dependent value that the bounds do not cover."""

    def __init__(self, primitive: str, detail: str = ""):
        self.primitive = primitive
        text = f"'{primitive}'" + (f" {detail}" if detail else "")
        super().__init__(text)


class Lin(NamedTuple):
    """Linear bounds of a variable over the box: ``mid`` and ``rad`` ``(n + 1, *shape)``
    float32 forms in ``eps`` (coefficients first, constant last); see the module docstring."""

    mid: jax.Array
    rad: jax.Array

    @property
    def n(self) -> int:
        return self.mid.shape[0] - 1

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mid.shape[1:])


# --------------------------------------------------------------------------------------
# Forms


def form_range(f: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(min, max)`` of the forms ``f`` ``(n + 1, *shape)`` over ``eps`` in ``[-1, 1]^n``."""
    spread = jnp.sum(jnp.abs(f[:-1]), axis=0)
    return f[-1] - spread, f[-1] + spread


def bounds_of(x: Lin) -> tuple[jax.Array, jax.Array]:
    """Constant bounds ``(lower, upper)`` of a :class:`Lin` over the box."""
    return form_range(x.mid - x.rad)[0], form_range(x.mid + x.rad)[1]


def lift(value: Any, n: int) -> Lin:
    """A constant as a :class:`Lin` with ``n`` input variables."""
    value = jnp.asarray(value, jnp.float32)
    zeros = jnp.zeros((n, *value.shape), jnp.float32)
    mid = jnp.concatenate([zeros, value[None]], axis=0)
    return Lin(mid, jnp.zeros_like(mid))


def _const_form(value: jax.Array, n: int) -> jax.Array:
    value = jnp.asarray(value, jnp.float32)
    return jnp.concatenate([jnp.zeros((n, *value.shape), jnp.float32), value[None]], axis=0)


def _with_const(f: jax.Array, add: jax.Array) -> jax.Array:
    """``f`` with ``add`` added to its constant term (broadcast over the element axes)."""
    add = jnp.asarray(add, f.dtype)
    shape = jnp.broadcast_shapes(f.shape[1:], add.shape)
    if tuple(shape) != tuple(f.shape[1:]):
        f = jnp.broadcast_to(f, (f.shape[0], *shape))
    return f.at[-1].add(add)


def _from_bounds(lo: jax.Array, hi: jax.Array, n: int) -> Lin:
    """Constant bounds ``[lo, hi]`` as a :class:`Lin`."""
    return Lin(_const_form((lo + hi) / 2, n), _const_form((hi - lo) / 2, n))


def _from_lower_upper(lower: jax.Array, upper: jax.Array) -> Lin:
    return Lin((lower + upper) / 2, (upper - lower) / 2)


def _align(x: Lin, ndim: int) -> Lin:
    """A rank-0 ``Lin`` broadcastable against rank-``ndim`` values (element axes last)."""
    extra = ndim - (x.mid.ndim - 1)
    if extra <= 0:
        return x
    shape = (x.mid.shape[0], *([1] * extra), *x.mid.shape[1:])
    return Lin(x.mid.reshape(shape), x.rad.reshape(shape))


def input_lin(centre: jax.Array, half: jax.Array, window_shape: Sequence[int]) -> Lin:
    """The input window of one pixel as a :class:`Lin`: ``window_shape`` is ``(1, 1, 1, C)``
    (or ``(1, 1, 1)`` for a model without a channel axis); channel ``i`` is ``centre[i] +
    half[i] * eps_i``."""
    c = centre.shape[0]
    coefs = jnp.diag(half.astype(jnp.float32))  # (n, C)
    mid = jnp.concatenate([coefs, centre.astype(jnp.float32)[None]], axis=0)
    mid = mid.reshape((c + 1, *window_shape))
    return Lin(mid, jnp.zeros_like(mid))


# --------------------------------------------------------------------------------------
# Rules: rule(eqn, args) -> list of outputs; args mix Lin and concrete arrays.


def _each(eqn: Eqn, form: jax.Array, args: list, side: int) -> list:
    """``eqn`` applied to every term of ``form`` at operand ``side`` (the others as given)."""

    def one(f):
        a = list(args)
        a[side] = f
        return apply(eqn, a)

    return jax.vmap(one)(form)


def _abstract_sides(args: list) -> list[int]:
    return [i for i, a in enumerate(args) if isinstance(a, Lin)]


def _single(eqn: Eqn, args: list) -> int:
    sides = _abstract_sides(args)
    if len(sides) != 1:
        raise Unsupported(eqn.name, "of several input-dependent operands")
    return sides[0]


def _structural(eqn: Eqn, args: list) -> list:
    """Layout and positive linear operations of one input-dependent operand (reshape,
    broadcast, transpose, slices, sums, sum pooling...): applied to every term of ``mid`` and
    ``rad`` alike."""
    side = _single(eqn, args)
    x = args[side]
    if any(isinstance(a, Lin) for a in args[side + 1 :]) or side != 0:
        raise Unsupported(eqn.name, "with an input-dependent operand other than the first")
    mids = _each(eqn, x.mid, args, side)
    rads = _each(eqn, x.rad, args, side)
    return [Lin(m, r) for m, r in zip(mids, rads, strict=True)]


def _convert(eqn: Eqn, args: list) -> list:
    if not jnp.issubdtype(eqn.params["new_dtype"], jnp.floating):
        raise Unsupported(eqn.name, f"of an input-dependent value to {eqn.params['new_dtype']}")
    x = args[0]
    return [Lin(x.mid.astype(jnp.float32), x.rad.astype(jnp.float32))]


def _identity(eqn: Eqn, args: list) -> list:
    return [args[0]]


def _signed_linear(eqn: Eqn, args: list) -> list:
    """``dot_general`` and ``conv_general_dilated`` with one constant operand ``W``: ``mid``
    maps with ``W``, ``rad`` with ``|W|``."""
    side = _single(eqn, args)
    x = args[side]
    absolute = [jnp.abs(a) if i != side else a for i, a in enumerate(args)]
    return [Lin(_each(eqn, x.mid, args, side)[0], _each(eqn, x.rad, absolute, side)[0])]


def _add(eqn: Eqn, args: list) -> list:
    a, b = args
    sign = -1.0 if eqn.name == "sub" else 1.0
    if isinstance(a, Lin) and isinstance(b, Lin):
        ndim = max(a.mid.ndim, b.mid.ndim) - 1
        a, b = _align(a, ndim), _align(b, ndim)
        return [Lin(a.mid + sign * b.mid, a.rad + b.rad)]
    if isinstance(a, Lin):
        a = _align(a, jnp.ndim(b))
        return [Lin(_with_const(a.mid, sign * jnp.asarray(b)), a.rad)]
    b = _align(b, jnp.ndim(a))
    mid = b.mid if sign > 0 else -b.mid
    return [Lin(_with_const(mid, a), b.rad)]


def _neg(eqn: Eqn, args: list) -> list:
    return [Lin(-args[0].mid, args[0].rad)]


def _mul(eqn: Eqn, args: list) -> list:
    a, b = args
    if isinstance(a, Lin) and isinstance(b, Lin):
        return [_product(a, b)]
    x, c = (a, b) if isinstance(a, Lin) else (b, a)
    c = jnp.asarray(c, jnp.float32)
    x = _align(x, c.ndim)
    return [Lin(x.mid * c, x.rad * jnp.abs(c))]


def _product(a: Lin, b: Lin) -> Lin:
    """``a * b`` of two input-dependent values: the constant interval of the products of the
    operands' bounds."""
    n = a.n
    la, ua = bounds_of(a)
    lb, ub = bounds_of(b)
    corners = jnp.stack([la * lb, la * ub, ua * lb, ua * ub])
    return _from_bounds(corners.min(axis=0), corners.max(axis=0), n)


def _div(eqn: Eqn, args: list) -> list:
    a, b = args
    if isinstance(b, Lin):
        raise Unsupported("div", "by an input-dependent value")
    c = jnp.asarray(b, jnp.float32)
    a = _align(a, c.ndim)
    return [Lin(a.mid / c, a.rad / jnp.abs(c))]


def _relu(x: Lin) -> Lin:
    """``max(x, 0)``: below, ``lam * L`` (``lam`` 0 or 1, whichever loses less of the lower
    form's range); above, the chord of ReLU over the upper form's range applied to it."""
    lower, upper = x.mid - x.rad, x.mid + x.rad
    l_lo, l_hi = form_range(lower)
    u_lo, u_hi = form_range(upper)
    lam = jnp.where(l_lo >= 0, 1.0, jnp.where(l_hi <= 0, 0.0, (l_hi > -l_lo).astype(jnp.float32)))
    straddle = (u_lo < 0) & (u_hi > 0)
    chord = u_hi / jnp.maximum(u_hi - u_lo, jnp.finfo(jnp.float32).tiny)
    slope = jnp.where(u_lo >= 0, 1.0, jnp.where(u_hi <= 0, 0.0, chord))
    offset = jnp.where(straddle, -slope * u_lo, 0.0)
    new_lower = lam * lower
    new_upper = _with_const(slope * upper, offset)
    return _from_lower_upper(new_lower, new_upper)


def _max_lin_const(x: Lin, c: jax.Array) -> Lin:
    """``max(x, c)`` for a constant ``c``: ``c + relu(x - c)``."""
    c = jnp.asarray(c, jnp.float32)
    x = _align(x, c.ndim)
    shifted = _relu(Lin(_with_const(x.mid, -c), x.rad))
    return Lin(_with_const(shifted.mid, c), shifted.rad)


def _absent(x: Lin) -> jax.Array:
    """Elements that are ``-inf`` throughout (padding of a max pooling)."""
    return form_range(x.mid + x.rad)[1] == -jnp.inf


def _max_lin_lin(a: Lin, b: Lin) -> Lin:
    """``max(a, b)``: below, the operand with the larger lower bound; above, the dominating
    operand's upper form where one dominates, else ``b + relu(a - b)`` relaxed."""
    la, ua = bounds_of(a)
    lb, ub = bounds_of(b)
    a_lower, b_lower = a.mid - a.rad, b.mid - b.rad
    a_upper, b_upper = a.mid + a.rad, b.mid + b.rad
    lower = jnp.where(la >= lb, a_lower, b_lower)
    diff = _relu(Lin(a.mid - b.mid, a.rad + b.rad))
    relaxed = b_upper + diff.mid + diff.rad
    upper = jnp.where(la >= ub, a_upper, jnp.where(lb >= ua, b_upper, relaxed))
    out = _from_lower_upper(lower, upper)
    a_gone, b_gone = _absent(a), _absent(b)
    mid = jnp.where(a_gone, b.mid, jnp.where(b_gone, a.mid, out.mid))
    rad = jnp.where(a_gone, b.rad, jnp.where(b_gone, a.rad, out.rad))
    return Lin(mid, rad)


def _neg_lin(x: Lin) -> Lin:
    return Lin(-x.mid, x.rad)


def _max(eqn: Eqn, args: list) -> list:
    a, b = args
    minimum = eqn.name == "min"
    if minimum:
        a = _neg_lin(a) if isinstance(a, Lin) else -jnp.asarray(a)
        b = _neg_lin(b) if isinstance(b, Lin) else -jnp.asarray(b)
    if isinstance(a, Lin) and isinstance(b, Lin):
        ndim = max(a.mid.ndim, b.mid.ndim) - 1
        out = _max_lin_lin(_align(a, ndim), _align(b, ndim))
    elif isinstance(a, Lin):
        out = _max_lin_const(a, b)
    else:
        out = _max_lin_const(b, a)
    return [_neg_lin(out) if minimum else out]


def _clamp(eqn: Eqn, args: list) -> list:
    lo, x, hi = args
    if isinstance(lo, Lin) or isinstance(hi, Lin):
        raise Unsupported("clamp", "with input-dependent limits")
    return [_neg_lin(_max_lin_const(_neg_lin(_max_lin_const(x, lo)), -jnp.asarray(hi)))]


def _window_taps(eqn: Eqn, x: Lin, fill: float) -> tuple[list, tuple[int, ...]]:
    """The operand of a ``reduce_window_*`` as one strided slice per window tap, padded with
    ``fill`` (a constant term; coefficients and radius pad with 0)."""
    p = eqn.params
    if any(v != 1 for v in p["base_dilation"]):
        raise Unsupported(eqn.name, "with base dilation")
    pads = [tuple(int(v) for v in q) for q in p["padding"]]
    if any(pads_ != (0, 0) for pads_ in pads):
        config = [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads]
        coefs = lax.pad(x.mid[:-1], jnp.float32(0), config)
        const = lax.pad(x.mid[-1:], jnp.float32(fill), config)
        x = Lin(jnp.concatenate([coefs, const]), lax.pad(x.rad, jnp.float32(0), config))
    dims, strides, wdil = p["window_dimensions"], p["window_strides"], p["window_dilation"]
    out_shape = tuple(
        (s - (d - 1) * dl - 1) // st + 1
        for s, d, st, dl in zip(x.shape, dims, strides, wdil, strict=True)
    )
    taps = []
    for tap in np.ndindex(*dims):
        start = [t * dl for t, dl in zip(tap, wdil, strict=True)]
        limit = [s + (o - 1) * st + 1 for s, o, st in zip(start, out_shape, strides, strict=True)]
        k = x.mid.shape[0]
        first, last, step = (0, *start), (k, *limit), (1, *strides)
        taps.append(Lin(lax.slice(x.mid, first, last, step), lax.slice(x.rad, first, last, step)))
    return taps, out_shape


def _reduce_window_max(eqn: Eqn, args: list) -> list:
    x = args[0]
    minimum = eqn.name == "reduce_window_min"
    if minimum:
        x = _neg_lin(x)
    taps, _ = _window_taps(eqn, x, -np.inf)
    acc = taps[0]
    for t in taps[1:]:
        acc = _max_lin_lin(acc, t)
    return [_neg_lin(acc) if minimum else acc]


def _reduce_window_sum(eqn: Eqn, args: list) -> list:
    taps, _ = _window_taps(eqn, args[0], 0.0)
    mid = sum(t.mid for t in taps[1:]) + taps[0].mid
    rad = sum(t.rad for t in taps[1:]) + taps[0].rad
    return [Lin(mid, rad)]


def _pad(eqn: Eqn, args: list) -> list:
    x, value = args
    if isinstance(value, Lin):
        raise Unsupported("pad", "with an input-dependent padding value")
    config = [(0, 0, 0)] + [tuple(int(v) for v in c) for c in eqn.params["padding_config"]]
    coefs = lax.pad(x.mid[:-1], jnp.float32(0), config)
    const = lax.pad(x.mid[-1:], jnp.asarray(value, jnp.float32), config)
    return [Lin(jnp.concatenate([coefs, const]), lax.pad(x.rad, jnp.float32(0), config))]


def _concatenate(eqn: Eqn, args: list) -> list:
    n = next(a for a in args if isinstance(a, Lin)).n
    lins = [a if isinstance(a, Lin) else lift(a, n) for a in args]
    dim = eqn.params["dimension"] + 1
    return [
        Lin(
            jnp.concatenate([a.mid for a in lins], axis=dim),
            jnp.concatenate([a.rad for a in lins], axis=dim),
        )
    ]


def _select_n(eqn: Eqn, args: list) -> list:
    pred, *cases = args
    if isinstance(pred, Lin):
        raise Unsupported("select_n", "with an input-dependent choice (a comparison)")
    n = next(a for a in cases if isinstance(a, Lin)).n
    lins = [a if isinstance(a, Lin) else lift(a, n) for a in cases]
    pred = jnp.asarray(pred)
    mid = jax.vmap(lambda *fs: lax.select_n(pred, *fs))(*[a.mid for a in lins])
    rad = jax.vmap(lambda *fs: lax.select_n(pred, *fs))(*[a.rad for a in lins])
    return [Lin(mid, rad)]


_INCREASING = {
    "exp": jnp.exp,
    "exp2": jnp.exp2,
    "log": jnp.log,
    "log1p": jnp.log1p,
    "expm1": jnp.expm1,
    "tanh": jnp.tanh,
    "logistic": jax.nn.sigmoid,
    "sqrt": jnp.sqrt,
    "cbrt": jnp.cbrt,
    "erf": jax.scipy.special.erf,
    "atan": jnp.arctan,
    "asinh": jnp.arcsinh,
    "sinh": jnp.sinh,
    "floor": jnp.floor,
    "ceil": jnp.ceil,
    "round": jnp.round,
}


def _monotone(eqn: Eqn, args: list) -> list:
    """A monotone elementwise function: the constant interval of its values at the bounds
    (NaN where the bounds leave its domain, which no decision accepts)."""
    x = args[0]
    lo, hi = bounds_of(x)
    if eqn.name == "rsqrt":
        f_lo, f_hi = lax.rsqrt(hi), lax.rsqrt(lo)
        f_lo, f_hi = jnp.where(lo > 0, f_lo, jnp.nan), jnp.where(lo > 0, f_hi, jnp.nan)
    else:
        fn = _INCREASING[eqn.name]
        f_lo, f_hi = fn(lo), fn(hi)
    return [_from_bounds(f_lo, f_hi, x.n)]


def _power(eqn: Eqn, args: list) -> list:
    x = args[0]
    y = 2 if eqn.name == "square" else int(eqn.params["y"])
    lo, hi = bounds_of(x)
    a, b = lo**y, hi**y
    if y % 2:
        return [_from_bounds(a, b, x.n) if y > 0 else _reject_negative_power(eqn)]
    if y < 0:
        _reject_negative_power(eqn)
    inside = (lo <= 0) & (hi >= 0)
    return [_from_bounds(jnp.where(inside, 0.0, jnp.minimum(a, b)), jnp.maximum(a, b), x.n)]


def _reject_negative_power(eqn: Eqn):
    raise Unsupported(eqn.name, "with a negative exponent")


def _abs(eqn: Eqn, args: list) -> list:
    x = args[0]
    lo, hi = bounds_of(x)
    pos = Lin(x.mid, x.rad)
    neg = _neg_lin(x)
    both = _from_bounds(jnp.zeros_like(lo), jnp.maximum(-lo, hi), x.n)
    mid = jnp.where(lo >= 0, pos.mid, jnp.where(hi <= 0, neg.mid, both.mid))
    rad = jnp.where(lo >= 0, pos.rad, jnp.where(hi <= 0, neg.rad, both.rad))
    return [Lin(mid, rad)]


def _reduce_extreme(eqn: Eqn, args: list) -> list:
    """``reduce_max`` / ``reduce_min``: the constant interval of the extremes of the bounds."""
    x = args[0]
    lo, hi = bounds_of(x)
    axes = tuple(eqn.params["axes"])
    fn = jnp.max if eqn.name == "reduce_max" else jnp.min
    return [_from_bounds(fn(lo, axis=axes), fn(hi, axis=axes), x.n)]


RULES: dict[str, Callable[[Eqn, list], list]] = {}
for _names, _fn in (
    (
        """reshape broadcast_in_dim transpose squeeze expand_dims rev slice reduce_sum cumsum
        dynamic_slice gather copy copy_p""",
        _structural,
    ),
    ("stop_gradient optimization_barrier", _identity),
    ("convert_element_type", _convert),
    ("dot_general conv_general_dilated", _signed_linear),
    ("add add_any sub", _add),
    ("neg", _neg),
    ("mul", _mul),
    ("div", _div),
    ("max min", _max),
    ("clamp", _clamp),
    ("reduce_window_max reduce_window_min", _reduce_window_max),
    ("reduce_window_sum", _reduce_window_sum),
    ("pad", _pad),
    ("concatenate", _concatenate),
    ("select_n", _select_n),
    (" ".join([*_INCREASING, "rsqrt"]), _monotone),
    ("integer_pow square", _power),
    ("abs", _abs),
    ("reduce_max reduce_min", _reduce_extreme),
):
    for _name in _names.split():
        RULES[_name] = _fn


def rule(eqn: Eqn, args: list) -> list:
    """The outputs of ``eqn`` on ``args`` (some :class:`Lin`, the others concrete).

    Raises:
      Unsupported: the primitive has no rule, or its rule does not cover these operands.
    """
    if not any(isinstance(a, Lin) for a in args):
        return apply(eqn, args)
    fn = RULES.get(eqn.name)
    if fn is None:
        raise Unsupported(eqn.name, "(no bound rule for this operation)")
    return fn(eqn, list(args))


# --------------------------------------------------------------------------------------
# Full walk


def _full_domain() -> Domain:
    return Domain(
        {None: lambda index, eqn, values: rule(eqn, values)},
        lambda v: isinstance(v, Lin),
        lambda var, value: value,  # only the outputs: every rule answers or raises
        lambda index, eqn, args: apply(eqn, args),
        lambda atom, value: value,
    )


def propagate(graph: Graph, inputs: Sequence[Any]) -> list:
    """Walk ``graph`` with :class:`Lin` inputs (and concrete ones), every variable in full;
    returns the outputs (``Lin`` where they depend on an abstract input).

    Raises:
      Unsupported: naming the first operation the bounds do not cover.
    """
    env_outs, _ = walk(graph, list(inputs), _shaped_domain(graph, _full_domain()))
    return env_outs


def _shaped_domain(graph: Graph, domain: Domain) -> Domain:
    """``domain`` whose rule results are broadcast to each output variable's shape."""

    def wrap(fn):
        def run(index, eqn, values):
            outs = fn(index, eqn, values)
            if outs is None:
                return None
            return [_to_shape(o, graph.shape(v)) for o, v in zip(outs, eqn.outs, strict=True)]

        return run

    rules = {k: wrap(fn) for k, fn in domain.rules.items()}
    return domain._replace(rules=rules)


def _to_shape(x, shape: tuple[int, ...]):
    if not isinstance(x, Lin) or x.shape == tuple(shape):
        return x
    k = x.mid.shape[0]
    return Lin(jnp.broadcast_to(x.mid, (k, *shape)), jnp.broadcast_to(x.rad, (k, *shape)))


# --------------------------------------------------------------------------------------
# Windowed walk


class WinLin(NamedTuple):
    """A windowed variable: its :class:`Lin` on the window (``mid``/``rad`` ``(n + 1,
    *window shape)``) whose first position along the (row, column) spatial axes is
    ``start`` ``(2,)`` int32; outside it the variable equals its clean value."""

    lin: Lin
    start: jax.Array


class _Reader:
    """The clean values of one image (:func:`windows.prepare_one`) and the pixel's position."""

    def __init__(self, plan: windows.Plan, cache: Sequence[jax.Array], position: jax.Array):
        self.plan, self.position = plan, position
        self.entries: dict[int, list] = {}
        for e, value in zip(plan.cache, cache, strict=True):
            self.entries.setdefault(e.var, []).append((e, value))

    def start(self, cone: windows.Cone) -> jax.Array:
        r, c = (jnp.asarray(s) for s in cone.starts)
        return jnp.stack([r[self.position[0]], c[self.position[1]]])

    def entry(self, var: int, pad_value: float | None):
        for e, value in self.entries[var]:
            if pad_value is None or e.pad_value == pad_value:
                return e, value
        raise KeyError((var, pad_value))  # pragma: no cover - the plan lists every need

    def read(self, var: int, origin, extents, pad_value=None) -> jax.Array:
        e, value = self.entry(var, pad_value)
        idx = [jnp.zeros((), jnp.int32)] * value.ndim
        sizes = list(value.shape)
        for t, ax in enumerate(e.axes):
            idx[ax] = origin[t] + e.pads_lo[t]
            sizes[ax] = extents[t]
        return lax.dynamic_slice(value, idx, sizes)

    def materialise(self, var: int, win: WinLin) -> Lin:
        e, value = self.entry(var, None)
        start = [0] * value.ndim
        for t, ax in enumerate(e.axes):
            start[ax] = e.pads_lo[t]
        full = lax.slice(value, start, [s + n for s, n in zip(start, e.shape, strict=True)])
        n = win.lin.n
        zero = jnp.zeros((), jnp.int32)
        idx = [zero] * (full.ndim + 1)
        for t, ax in enumerate(e.axes):
            idx[ax + 1] = win.start[t]
        mid = lax.dynamic_update_slice(_const_form(full, n), win.lin.mid, idx)
        rad = lax.dynamic_update_slice(jnp.zeros_like(mid), win.lin.rad, idx)
        return Lin(mid, rad)


def overlay(patch: jax.Array, origin: jax.Array, win: WinLin, axes: tuple[int, int]) -> Lin:
    """The clean ``patch`` (its first position at ``origin`` along the spatial ``axes``) as a
    :class:`Lin` with the window ``win`` written in where they overlap."""
    n = win.lin.n
    mid, rad = win.lin.mid, win.lin.rad
    inside = None
    offset = win.start - origin
    for t, ax in enumerate(axes):
        extent, size = patch.shape[ax], mid.shape[ax + 1]
        pos = jnp.arange(extent) - offset[t]
        take = jnp.clip(pos, 0, size - 1)
        mid = jnp.take(mid, take, axis=ax + 1, mode="clip")
        rad = jnp.take(rad, take, axis=ax + 1, mode="clip")
        shape = [1] * patch.ndim
        shape[ax] = extent
        ok = ((pos >= 0) & (pos < size)).reshape(shape)
        inside = ok if inside is None else inside & ok
    clean = _const_form(patch, n)
    return Lin(jnp.where(inside, mid, clean), jnp.where(inside, rad, 0.0))


def _window_args(rd: _Reader, eqn: Eqn, vals: list, step: windows.Step, out: windows.Cone):
    start = rd.start(out)
    size = out.size
    args = []
    for atom, v, kind in zip(eqn.ins, vals, step.info, strict=True):
        if kind == "window":
            args.append(v.lin)
        elif kind == "read":
            axes = rd.plan.cones[atom].axes
            args.append(overlay(rd.read(atom, start, size), start, v, axes))
        else:
            for t in (0, 1):
                if kind[t]:
                    v = lax.dynamic_slice_in_dim(v, start[t], size[t], out.axes[t])
            args.append(v)
    return start, args


def _run_aligned(rd: _Reader, eqn: Eqn, vals: list, step: windows.Step) -> list:
    out = step.outs[0]
    start, args = _window_args(rd, eqn, vals, step, out)
    outs = rule(eqn, args)
    return [WinLin(_to_shape(o, c.wshape), start) for o, c in zip(outs, step.outs, strict=True)]


def _run_window_op(rd: _Reader, eqn: Eqn, vals: list, step: windows.Step) -> list:
    out = step.outs[0]
    geometry, pad_value, in_sp = step.info
    start = rd.start(out)
    x, var = vals[0], eqn.ins[0]
    axes = rd.plan.cones[var].axes
    stride = jnp.asarray([g[0] for g in geometry], jnp.int32)
    pad_lo = jnp.asarray([g[1] for g in geometry], jnp.int32)
    extents = [g[2] for g in geometry]
    params = dict(eqn.params)
    if eqn.name == "conv_general_dilated":
        params["padding"] = ((0, 0),) * len(in_sp)
    else:
        params["padding"] = ((0, 0),) * len(params["padding"])
    origin = start * stride - pad_lo
    patch = overlay(rd.read(var, origin, extents, pad_value), origin, x, axes)
    res = rule(eqn._replace(params=params), [patch, *vals[1:]])[0]
    return [WinLin(res, start)]


def _run_layout(rd: _Reader, eqn: Eqn, vals: list, step: windows.Step) -> list:
    if isinstance(step.info, tuple) and step.info[0] == "shift":
        return _run_shift(rd, eqn, vals, step)
    side = step.info
    x = vals[side]
    run = eqn._replace(params=windows._window_params(eqn, step.outs))
    args = list(vals)
    args[side] = x.lin
    outs = rule(run, args)
    return [WinLin(o, x.start) for o in outs]


def _run_shift(rd: _Reader, eqn: Eqn, vals: list, step: windows.Step) -> list:
    out, shifts = step.outs[0], step.info[1]
    start = rd.start(out)
    x, var = vals[0], eqn.ins[0]
    axes, size = out.axes, out.size
    in_sizes = [rd.plan.cones[var].shape[ax] for ax in axes]
    shift = jnp.asarray(shifts, jnp.int32)
    run = windows.shift_on_window(eqn, axes, size)
    origin = start - shift
    patch = overlay(rd.read(var, origin, size, 0.0), origin, x, axes)
    if eqn.name == "pad":
        inside = None
        for t, ax in enumerate(axes):
            pos = origin[t] + jnp.arange(size[t])
            shape = [1] * len(patch.shape)
            shape[ax] = size[t]
            ok = ((pos >= 0) & (pos < in_sizes[t])).reshape(shape)
            inside = ok if inside is None else inside & ok
        value = jnp.broadcast_to(jnp.asarray(vals[1], jnp.float32), patch.shape)
        fill = _const_form(value, x.lin.n)
        patch = Lin(jnp.where(inside, patch.mid, fill), jnp.where(inside, patch.rad, 0.0))
    return [WinLin(rule(run, [patch, *vals[1:]])[0], start)]


_RUNNERS: dict[str, Callable] = {}
for _names, _fn in (
    (windows._ELEMENTWISE, _run_aligned),
    (windows.WINDOW_OPS, _run_window_op),
    (windows._LAYOUT, _run_layout),
):
    for _name in _names:
        _RUNNERS[_name] = _fn


def propagate_windowed(
    plan: windows.Plan,
    cache: Sequence[jax.Array],
    position: jax.Array,
    centre: jax.Array,
    half: jax.Array,
) -> list[Lin]:
    """The graph's outputs as full :class:`Lin` for one pixel at ``position`` ``(2,)`` int32
    whose colours are the box ``centre +- half`` (``(C,)`` each), on the image whose clean
    values are ``cache`` (:func:`windows.prepare_one` of ``plan``, a plan for one pixel).

    Raises:
      Unsupported: naming the first operation the bounds do not cover.
    """
    graph = plan.graph
    rd = _Reader(plan, cache, position)
    x = graph.inputs[0]
    cone = plan.cones[x]

    def run(index, eqn, vals):
        step = plan.steps.get(index)
        if step is None:
            return None
        return _RUNNERS[eqn.name](rd, eqn, vals, step)

    def apply_full(index, eqn, args):
        outs = rule(eqn, args)
        return [_to_shape(o, graph.shape(v)) for o, v in zip(outs, eqn.outs, strict=True)]

    domain = Domain(
        {name: run for name in _RUNNERS},
        lambda v: isinstance(v, WinLin),
        lambda var, w: rd.materialise(var, w),
        apply_full,
        lambda atom, value: value,
    )
    start = rd.start(cone)
    first = WinLin(input_lin(centre, half, cone.wshape), start)
    outs, _ = walk(graph, [first], domain)
    return outs
