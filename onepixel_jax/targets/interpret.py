"""A flat jaxpr and one forward walker over it, with pluggable abstract domains.

:func:`trace` turns a JAX-traceable function into a :class:`Graph`: the jaxpr of
``jax.make_jaxpr`` with nested ``jit``, ``closed_call``, ``custom_jvp_call``,
``custom_vjp_call`` and ``checkpoint`` sub-jaxprs inlined, so that every equation is a plain
primitive. Variables are integers; literals are :class:`Lit`.

:func:`walk` runs a graph forward with a :class:`Domain`: a value is either *concrete* (whatever
the domain's ``apply`` computes on) or *abstract* (the domain's own representation, recognised
by ``is_abstract``). An equation with an abstract input goes to the domain's rule for its
primitive (a small ``{primitive name: rule}`` table); a rule returns the outputs, or ``None``
when it cannot handle the equation, and then the walker turns the abstract inputs into
concrete ones (``concretise``, once per variable) and applies the equation concretely. So an
unknown primitive ends the abstract region and the rest runs concretely: never wrong, at
worst the plain forward.

The incremental evaluator (:mod:`onepixel_jax.targets.windows`) uses it twice, with a static
domain that plans the windows and a traced one that computes them; a verifier propagating
interval bounds over a pixel's colour box would be another domain over the same walk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
from jax.extend import core as jcore

__all__ = ["Domain", "Eqn", "Graph", "Lit", "apply", "concrete_domain", "prune", "trace", "walk"]


class Lit(NamedTuple):
    """A literal operand (a Python or NumPy scalar, or a small constant)."""

    value: Any


Atom = int | Lit  # a variable's id or a literal


class Eqn(NamedTuple):
    """One primitive application: ``outs = prim.bind(*ins, **params)``."""

    prim: Any  # jax.extend.core.Primitive
    params: dict
    ins: tuple[Atom, ...]
    outs: tuple[int, ...]

    @property
    def name(self) -> str:
        return self.prim.name


class Graph(NamedTuple):
    """A flat jaxpr: ``inputs`` and ``outputs`` (atoms), ``consts`` (variable -> array, the
    closed-over values), ``eqns`` in order, and the abstract value (shape, dtype) of every
    variable in ``avals``."""

    inputs: tuple[int, ...]
    outputs: tuple[Atom, ...]
    consts: dict[int, Any]
    eqns: tuple[Eqn, ...]
    avals: dict[int, Any]

    def shape(self, atom: Atom) -> tuple[int, ...]:
        if isinstance(atom, Lit):
            return tuple(getattr(atom.value, "shape", ()))
        return tuple(self.avals[atom].shape)

    def dtype(self, atom: Atom):
        if isinstance(atom, Lit):
            return jax.numpy.result_type(atom.value)
        return self.avals[atom].dtype


def prune(graph: Graph, outputs: Sequence[Atom]) -> Graph:
    """``graph`` computing only ``outputs`` (the equations none of them needs dropped)."""
    need = {v for v in outputs if isinstance(v, int)}
    keep = []
    for i in range(len(graph.eqns) - 1, -1, -1):
        e = graph.eqns[i]
        if any(v in need for v in e.outs):
            keep.append(i)
            need.update(a for a in e.ins if isinstance(a, int))
    eqns = tuple(graph.eqns[i] for i in sorted(keep))
    consts = {v: c for v, c in graph.consts.items() if v in need}
    return Graph(graph.inputs, tuple(outputs), consts, eqns, graph.avals)


# Primitives whose sub-jaxpr is inlined, and the parameter that holds it.
_INLINE = {
    "jit": "jaxpr",
    "pjit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
    "remat2": "jaxpr",
    "checkpoint": "jaxpr",
}


class _Builder:
    def __init__(self):
        self.eqns: list[Eqn] = []
        self.avals: dict[int, Any] = {}
        self.consts: dict[int, Any] = {}

    def new(self, aval) -> int:
        var = len(self.avals)
        self.avals[var] = aval
        return var

    def flatten(self, jaxpr, consts: Sequence[Any], ins: Sequence[Atom]) -> list[Atom]:
        env: dict[Any, Atom] = {}
        for v, c in zip(jaxpr.constvars, consts, strict=True):
            env[v] = self.new(v.aval)
            self.consts[env[v]] = c
        for v, a in zip(jaxpr.invars, ins, strict=True):
            env[v] = a

        def read(x) -> Atom:
            return Lit(x.val) if isinstance(x, jcore.Literal) else env[x]

        for eqn in jaxpr.eqns:
            args = [read(x) for x in eqn.invars]
            key = _INLINE.get(eqn.primitive.name)
            sub = eqn.params.get(key) if key else None
            if sub is not None:
                if isinstance(sub, jcore.ClosedJaxpr):
                    outs = self.flatten(sub.jaxpr, sub.consts, args)
                else:
                    outs = self.flatten(sub, (), args)
            else:
                outs = [self.new(v.aval) for v in eqn.outvars]
                self.eqns.append(Eqn(eqn.primitive, dict(eqn.params), tuple(args), tuple(outs)))
            for v, o in zip(eqn.outvars, outs, strict=True):
                if not isinstance(v, jcore.DropVar):
                    env[v] = o
        return [read(x) for x in jaxpr.outvars]


def trace(fn: Callable, *args: Any) -> Graph:
    """The flat :class:`Graph` of ``fn`` at ``args`` (arrays or ``jax.ShapeDtypeStruct``)."""
    closed = jax.make_jaxpr(fn)(*args)
    b = _Builder()
    ins = [b.new(v.aval) for v in closed.jaxpr.invars]
    outs = b.flatten(closed.jaxpr, closed.consts, ins)
    return Graph(tuple(ins), tuple(outs), b.consts, tuple(b.eqns), b.avals)


def apply(eqn: Eqn, args: Sequence[Any]) -> list:
    """``eqn`` on concrete (or traced) operands: the list of its outputs."""
    out = eqn.prim.bind(*args, **eqn.params)
    return list(out) if eqn.prim.multiple_results else [out]


class Domain(NamedTuple):
    """An abstract domain for :func:`walk`.

    Attributes:
      rules: ``{primitive name: rule}``; ``rule(index, eqn, values) -> outputs | None``, called
        when some input of equation ``index`` is abstract (``values``: one per operand,
        abstract or concrete). The rule under the key ``None``, if any, serves the primitives
        without their own.
      is_abstract: whether a value belongs to the domain.
      concretise: ``concretise(var, value) -> concrete`` for an abstract value that a concrete
        operation needs (called once per variable).
      apply: ``apply(index, eqn, concrete values) -> outputs`` for concrete operands.
      lift: ``lift(atom, value) -> value`` for a graph constant or literal.
    """

    rules: dict[str | None, Callable]
    is_abstract: Callable[[Any], bool]
    concretise: Callable[[int, Any], Any]
    apply: Callable[[int, Eqn, list], list]
    lift: Callable[[Atom, Any], Any]


def walk(graph: Graph, inputs: Sequence[Any], domain: Domain, keep: Sequence[int] = ()):
    """Run ``graph`` forward on ``inputs`` in ``domain``.

    Returns ``(outputs, kept)``: the graph's outputs, concretised, and ``{var: value}`` for the
    variables in ``keep`` (as they are, abstract or concrete).
    """
    env: dict[int, Any] = {v: domain.lift(v, c) for v, c in graph.consts.items()}
    env.update(zip(graph.inputs, inputs, strict=True))
    concrete: dict[int, Any] = {}

    def read(atom: Atom):
        return domain.lift(atom, atom.value) if isinstance(atom, Lit) else env[atom]

    def read_concrete(atom: Atom):
        value = read(atom)
        if not domain.is_abstract(value):
            return value
        if atom not in concrete:
            concrete[atom] = domain.concretise(atom, value)
        return concrete[atom]

    for index, eqn in enumerate(graph.eqns):
        values = [read(a) for a in eqn.ins]
        outs = None
        if any(domain.is_abstract(v) for v in values):
            rule = domain.rules.get(eqn.name, domain.rules.get(None))
            outs = None if rule is None else rule(index, eqn, values)
        if outs is None:
            outs = domain.apply(index, eqn, [read_concrete(a) for a in eqn.ins])
        env.update(zip(eqn.outs, outs, strict=True))
    outputs = [read_concrete(a) for a in graph.outputs]
    return outputs, {v: env[v] for v in keep}


def _concrete_apply(index: int, eqn: Eqn, args: list) -> list:
    return apply(eqn, args)


def concrete_domain() -> Domain:
    """The plain evaluation: no abstract values, every equation applied."""
    return Domain({}, lambda v: False, lambda v, x: x, _concrete_apply, lambda a, x: x)
