"""Exact one-pixel verification: which images no single pixel of any colour can flip.

For an image, its label ``y`` and a model, :func:`verify` decides whether some position
``(row, col)`` and some colour ``v`` in ``[0, 255]^C`` written there changes the model's
argmax (untargeted), or makes class ``t`` the argmax (targeted). Per image the answer is

- ``"vulnerable"``: an integer colour at one position does it; the counterexample
  ``(row, col, v_0..v_{C-1})`` was checked with the plain forward pass of ``predict_fn``;
- ``"robust"``: no colour at any position does it (see *What robust means* below);
- ``"unknown"``: a budget (boxes or seconds) ran out first; never reported as robust;
- ``"misclassified"``: the clean image is not classified as its label (nothing to verify).

**Method.** Per position, the colour cube is a box of ``C`` input variables. Bounds over a
box are propagated through the model's jaxpr with linear forms in the colour
(:mod:`onepixel_jax.targets.bounds`): exact through affine layers, relaxed at each ReLU, with
the clean activations outside the pixel's receptive-field cone as exact constants (the
incremental evaluator's windows). The model's trailing softmax is dropped (it keeps the order
of the classes), and the affine layers after the last nonlinearity are folded into the
margins ``z_y - z_j`` exactly (their Jacobian), so no looseness is added there. A box is
*decided* when the lower bound of every margin exceeds the floating-point margin; otherwise
its best concrete colour (the corner minimising the worst margin's lower form) is tried as a
counterexample, and the box is split in two along the colour axis that weighs most in that
form. Boxes of all positions share one best-first queue (lowest bound first) and are
evaluated in batches; the first counterexample ends the image.

**What robust means.** ``over="grid"`` (the default, what an attack can reach): no integer
colour flips the label. Boxes are integer ranges; a box is decided by bounds over the real
box that contains it, or, once it holds at most ``leaf_points`` integer colours, by
evaluating each of them with the model. ``over="reals"``: no real colour in ``[0, 255]^C``
flips it; only bounds decide, boxes are split at their midpoint, and a box narrower than
``min_width`` that is still undecided makes the answer ``"unknown"``. Robustness over the
reals implies robustness over the grid.

**Floating point.** Bounds are computed in float32, and the model's own forward pass rounds
too. A margin is accepted only when its lower bound exceeds ``atol + rtol * M``, where ``M``
bounds the largest logit magnitude over the box (defaults ``atol = rtol = 1e-4``, about 1,700
times float32's unit roundoff relative to the largest logit). The margin is an allowance for
rounding, not a proven bound on it (no directed rounding). Counterexamples need no margin:
they are checked with the plain forward pass on the patched image. Colours evaluated
concretely (corners, probes, the integer colours of small boxes) run on the incremental
evaluator's windows, which can differ from the plain forward pass by rounding (about 5e-7 in
a probability on a CPU); a colour whose margin there is at most :data:`NEAR_TIE` (``1e-4``) is
evaluated again with the plain forward pass, and that decides.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .errors import UsageError
from .perturb import apply_pixels
from .targets import bounds, interpret, windows
from .targets.interpret import Graph, Lit, apply

__all__ = [
    "OVER",
    "STATUSES",
    "ImageVerification",
    "PreparedModel",
    "Verification",
    "VerifyConfig",
    "prepare_model",
    "verify",
    "verify_image",
]

STATUSES = ("robust", "vulnerable", "unknown", "misclassified")
# Concrete evaluations run on the incremental evaluator's windows; a colour whose margin there
# (probability of the label minus the best other's, or the best other's minus the target's) is
# at most this is evaluated again with the plain forward pass, which decides.
NEAR_TIE = 1e-4
OVER = ("grid", "reals")


# --------------------------------------------------------------------------------------
# Configuration and results


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
    """Settings of :func:`verify`.

    Attributes:
      over: ``"grid"`` (integer colours, the default) or ``"reals"`` (see the module).
      max_boxes: colour boxes bounded per image before the answer is ``"unknown"``.
      time_limit: seconds per image before the answer is ``"unknown"`` (``None``: none).
      batch_size: boxes bounded per call (static; one compilation per model).
      leaf_points: grid: a box with at most this many integer colours is decided by
        evaluating them all.
      min_width: reals: the narrowest box side split further.
      atol, rtol: the floating-point margin (module docstring).
      probe: ``"corners"``: before any bound, evaluate the ``2^C`` corners of the colour cube
        at every position (a counterexample ends the image; the positions are then bounded
        in the order of their lowest corner margin); ``"none"``: bounds only.
      max_fraction: the incremental plan's threshold (:func:`windows.plan`): a variable is
        kept on windows while its windows cost less than this share of the full operation.
    """

    over: str = "grid"
    max_boxes: int = 200_000
    time_limit: float | None = None
    batch_size: int = 64
    leaf_points: int = 8
    min_width: float = 1.0 / 64
    atol: float = 1e-4
    rtol: float = 1e-4
    probe: str = "corners"
    max_fraction: float = 0.5

    def __post_init__(self):
        if self.over not in OVER:
            raise ValueError(f"over must be one of {', '.join(OVER)}, got {self.over!r}")
        for name in ("max_boxes", "batch_size", "leaf_points"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.time_limit is not None and not (
            isinstance(self.time_limit, int | float) and self.time_limit > 0
        ):
            raise ValueError(f"time_limit must be None or a number > 0, got {self.time_limit!r}")
        for name in ("min_width", "atol", "rtol", "max_fraction"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or isinstance(v, bool) or not v >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        if self.probe not in ("corners", "none"):
            raise ValueError(f"probe must be 'corners' or 'none', got {self.probe!r}")


class ImageVerification(NamedTuple):
    """The answer for one image (see the module docstring for ``status``).

    ``counterexample``: ``(1, 2 + C)`` int32 ``(row, col, v...)`` for a vulnerable image, else
    ``None``; ``predicted``: the class the model gives the counterexample (vulnerable) or the
    clean image; ``probs``: the probabilities behind ``predicted``; ``seconds``: wall time;
    ``positions``: positions whose colour cube was bounded or probed; ``proven``: positions
    whose whole colour cube was decided (no colour there flips the label); ``boxes``: colour
    boxes bounded; ``evaluations``: concrete forward evaluations (probes, corners, leaf
    colours); ``lowest_bound``: the lowest margin lower bound left undecided (``None`` when
    none).
    """

    status: str
    counterexample: np.ndarray | None
    predicted: int
    probs: np.ndarray
    seconds: float
    positions: int
    proven: int
    boxes: int
    evaluations: int
    lowest_bound: float | None


class Verification(NamedTuple):
    """:func:`verify`'s answers for ``N`` images, as arrays.

    Attributes:
      status: ``(N,)`` str, one of :data:`STATUSES`.
      counterexample: ``(N, 1, 2 + C)`` int32 like ``AttackResult.pixels``; rows of images
        that are not vulnerable are ``-1``.
      predicted: ``(N,)`` int32; ``probs``: ``(N, K)`` float32 (see :class:`ImageVerification`).
      seconds, positions, proven, boxes, evaluations: ``(N,)`` per image.
      images: the per-image :class:`ImageVerification` answers.
      config: the :class:`VerifyConfig` used.
    """

    status: np.ndarray
    counterexample: np.ndarray
    predicted: np.ndarray
    probs: np.ndarray
    seconds: np.ndarray
    positions: np.ndarray
    proven: np.ndarray
    boxes: np.ndarray
    evaluations: np.ndarray
    images: tuple[ImageVerification, ...]
    config: VerifyConfig


# --------------------------------------------------------------------------------------
# The model as the verifier sees it


_PASS = frozenset("broadcast_in_dim reshape expand_dims squeeze stop_gradient copy copy_p".split())
_STRUCT = frozenset(
    """reshape broadcast_in_dim transpose squeeze expand_dims reduce_sum rev slice copy copy_p
    neg reduce_window_sum""".split()
)


def _producers(graph: Graph) -> dict[int, int]:
    return {v: i for i, e in enumerate(graph.eqns) for v in e.outs}


def _dependent(graph: Graph) -> set[int]:
    """Variables that depend on the graph's (first) input."""
    dep = {graph.inputs[0]}
    for e in graph.eqns:
        if any(isinstance(a, int) and a in dep for a in e.ins):
            dep.update(e.outs)
    return dep


def _is_minus_inf(atom) -> bool:
    return isinstance(atom, Lit) and np.all(np.asarray(atom.value) == -np.inf)


def _softmax_input(graph: Graph) -> int | None:
    """The variable ``x`` when the graph's output is ``softmax(x)`` over the last axis of a
    ``(1, K)`` ``x`` (the pattern of ``jax.nn.softmax``), else ``None``."""
    prod = _producers(graph)
    eqns = graph.eqns

    def eqn_of(v):
        return eqns[prod[v]] if isinstance(v, int) and v in prod else None

    def through(v):
        e = eqn_of(v)
        while e is not None:
            if e.name in _PASS:
                v = e.ins[0]
            elif e.name == "max" and any(_is_minus_inf(a) for a in e.ins):  # where=None max
                v = next(a for a in e.ins if not _is_minus_inf(a))
            else:
                break
            e = eqn_of(v)
        return v

    out = graph.outputs[0]
    div = eqn_of(out)
    if div is None or div.name != "div":
        return None
    num, den = div.ins
    exp = eqn_of(through(num))
    if exp is None or exp.name != "exp":
        return None
    sub = eqn_of(exp.ins[0])
    if sub is None or sub.name != "sub":
        return None
    x, m = sub.ins
    red_max, red_sum = eqn_of(through(m)), eqn_of(through(den))
    if red_max is None or red_max.name != "reduce_max" or through(red_max.ins[0]) != x:
        return None
    if red_sum is None or red_sum.name != "reduce_sum" or through(red_sum.ins[0]) != exp.outs[0]:
        return None
    shape = graph.shape(x)
    last = len(shape) - 1
    if len(shape) != 2 or shape[0] != 1:
        return None
    if tuple(red_max.params["axes"]) != (last,) or tuple(red_sum.params["axes"]) != (last,):
        return None
    return x


def _is_linear(eqn: interpret.Eqn, dep: set[int]) -> bool:
    """Whether ``eqn`` is affine in its input-dependent operands (others constant)."""
    d = [isinstance(a, int) and a in dep for a in eqn.ins]
    name = eqn.name
    if name in ("add", "add_any", "sub", "concatenate"):
        return True
    if name == "convert_element_type":
        return d[0] and jnp.issubdtype(eqn.params["new_dtype"], jnp.floating)
    if name in _STRUCT:
        return d[0] and not any(d[1:])
    if name in ("mul", "dot_general", "conv_general_dilated"):
        return sum(d) == 1
    if name in ("div", "pad"):
        return d[0] and not d[1]
    if name == "select_n":
        return not d[0]
    return False


def _linear_tail(graph: Graph, out: int, dep: set[int], limit: int = 8):
    """``(cuts, tail)``: variables ``cuts`` and equation indices ``tail`` such that ``out`` is
    an affine function of the ``cuts`` computed by the ``tail`` equations (and constants), the
    cuts being produced by nonlinear operations (or the input)."""
    prod = _producers(graph)
    frontier, tail = {out}, set()
    while True:
        inner = [v for v in frontier if v in prod]
        if not inner:
            break
        v = max(inner, key=lambda u: prod[u])
        e = graph.eqns[prod[v]]
        if not _is_linear(e, dep):
            break
        new = {a for a in e.ins if isinstance(a, int) and a in dep}
        if len((frontier - {v}) | new) > limit:
            break
        frontier = (frontier - {v}) | new
        tail.add(prod[v])
        # every output of a multi-output linear equation must be accounted for
        if len(e.outs) != 1:
            return (out,), set()
    return tuple(sorted(frontier)), tail


def _tail_fn(graph: Graph, cuts: Sequence[int], tail: set[int], out: int, dep: set[int]):
    """The affine map from the cut variables to ``out`` as a function of arrays."""

    def fn(*values):
        env: dict[int, Any] = dict(graph.consts)
        env.update(zip(cuts, values, strict=True))

        def read(a):
            return a.value if isinstance(a, Lit) else env[a]

        for i, e in enumerate(graph.eqns):
            independent = not any(isinstance(a, int) and a in dep for a in e.ins)
            if i in tail or independent:
                env.update(zip(e.outs, apply(e, [read(a) for a in e.ins]), strict=True))
        return env[out]

    return fn


class PreparedModel(NamedTuple):
    """A JAX ``predict_fn`` prepared for verification at one image shape.

    Attributes:
      graph: the model's graph up to the ``cuts`` (the last nonlinear values).
      cuts: variables whose bounds the walk computes.
      jacobian: per cut ``(K, *shape)`` float32: the logits' (or the outputs') affine
        dependence on it; ``offset``: ``(K,)`` the logits at zero cuts.
      plan: the one-pixel window plan of ``graph`` (:func:`windows.plan`).
      logits: whether a trailing softmax was dropped (margins are logit differences).
      channel_axis: whether the model takes ``(B, H, W, C)`` (else ``(B, H, W)``).
      image_shape: ``(H, W, C)``; ``num_classes``: ``K``.
      full_graph: the whole traced graph (for the affine-tail check).
    """

    graph: Graph
    cuts: tuple[int, ...]
    jacobian: tuple[np.ndarray, ...]
    offset: np.ndarray
    plan: windows.Plan
    logits: bool
    channel_axis: bool
    image_shape: tuple[int, int, int]
    num_classes: int
    tail_fn: Callable
    logits_var: int


def _tail_jacobian(tail_fn: Callable, shapes) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Per cut the ``(K, size)`` Jacobian of the affine tail, and its value at zero ``(K,)``."""
    zeros = [jnp.zeros(s, jnp.float32) for s in shapes]
    one = lambda *vs: tail_fn(*vs)[0]  # noqa: E731
    jac = jax.jacrev(one, argnums=tuple(range(len(zeros))))(*zeros)
    offset = np.asarray(one(*zeros), np.float32)
    k = offset.shape[0]
    return tuple(np.asarray(j, np.float32).reshape(k, -1) for j in jac), offset


def _tail_is_affine(graph: Graph, cuts, logits_var: int, jac, offset) -> bool:
    """Check on a random input that the logits equal the tail's affine map of the cuts."""
    x = jax.random.uniform(jax.random.PRNGKey(0), graph.shape(graph.inputs[0]), maxval=255.0)
    _, kept = interpret.walk(graph, [x], interpret.concrete_domain(), [*cuts, logits_var])
    want = np.asarray(kept[logits_var], np.float64).reshape(-1)
    got = offset.astype(np.float64) + sum(
        j.astype(np.float64) @ np.asarray(kept[v], np.float64).reshape(-1)
        for v, j in zip(cuts, jac, strict=True)
    )
    scale = 1.0 + np.abs(want).max()
    return bool(np.all(np.abs(got - want) <= 1e-3 * scale))


def _refuse_host(predict_fn: Callable) -> None:
    if callable(getattr(predict_fn, "host_fn", None)):
        name = getattr(predict_fn, "name", None) or type(predict_fn).__name__
        raise UsageError(
            f"verify needs a JAX model, and {name} is a host model (NumPy, ONNX Runtime or "
            "PyTorch run through a callback): its operations cannot be bounded; load a "
            "PyTorch model with from_torch(mode='jax') or use a JAX predict_fn"
        )


def prepare_model(
    predict_fn: Callable,
    image_shape: Sequence[int],
    channel_axis: bool = True,
    max_fraction: float = 0.5,
) -> PreparedModel:
    """Trace ``predict_fn`` on one ``(H, W, C)`` image and prepare its bounds.

    Raises:
      UsageError: a host model, or a model with an operation the bounds do not cover (one
        line naming it).
    """
    _refuse_host(predict_fn)
    h, w, c = (int(v) for v in image_shape)
    shape = (1, h, w, c) if channel_axis else (1, h, w)
    graph = interpret.trace(predict_fn, jax.ShapeDtypeStruct(shape, jnp.float32))
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UsageError("predict_fn must map one (B, H, W[, C]) batch to one (B, K) array")
    out = graph.outputs[0]
    if isinstance(out, Lit) or len(graph.shape(out)) != 2 or graph.shape(out)[0] != 1:
        raise UsageError(
            f"predict_fn must return (B, K) class scores; at batch size 1 it returns "
            f"{graph.shape(out)}"
        )
    k = graph.shape(out)[1]
    dep = _dependent(graph)
    if out not in dep:
        raise UsageError("predict_fn's output does not depend on its input")
    x = _softmax_input(graph)
    logits_var = out if x is None else x
    cuts, tail = _linear_tail(graph, logits_var, dep)
    tail_fn = _tail_fn(graph, cuts, tail, logits_var, dep)
    jac, offset = _tail_jacobian(tail_fn, [graph.shape(v) for v in cuts])
    if not _tail_is_affine(graph, cuts, logits_var, jac, offset):
        cuts, tail = (logits_var,), set()  # the identity tail: always sound
        tail_fn = _tail_fn(graph, cuts, tail, logits_var, dep)
        jac, offset = _tail_jacobian(tail_fn, [graph.shape(logits_var)])
    pruned = interpret.prune(graph, cuts)
    plan = windows.plan(pruned, 1, max_fraction)
    prepared = PreparedModel(
        pruned,
        tuple(cuts),
        jac,
        offset,
        plan,
        x is not None,
        channel_axis,
        (h, w, c),
        int(k),
        tail_fn,
        logits_var,
    )
    _check_supported(prepared)
    return prepared


def _check_supported(model: PreparedModel) -> None:
    """Trace the bounds of one box (nothing is computed) so that an operation the bounds do
    not cover is named before any image is verified."""
    c = model.image_shape[2]
    cache = jax.eval_shape(
        lambda img: windows.prepare_one(model.plan, img),
        jax.ShapeDtypeStruct(model.graph.avals[model.graph.inputs[0]].shape, jnp.float32),
    )
    try:
        jax.eval_shape(
            lambda ca: bounds.propagate_windowed(
                model.plan, ca, jnp.zeros(2, jnp.int32), jnp.zeros(c), jnp.ones(c)
            ),
            cache,
        )
    except bounds.Unsupported as exc:
        raise UsageError(
            f"cannot verify this model: its operation {exc} on a value that depends on the "
            "pixel is not covered by the bounds (covered: affine layers, ReLU/max/min, max and "
            "sum pooling, monotone elementwise functions)"
        ) from None


# --------------------------------------------------------------------------------------
# Bounds of boxes


def _box_bounds(model: PreparedModel) -> Callable:
    """``fn(cache, positions (B, 2), lo (B, C), hi (B, C), rows (R, S) per cut, row_offset
    (R,)) -> (lower (B, R), upper (B, R), lower forms (B, R, C))``: per box the bounds of the
    rows' linear combinations of the logits and the lower forms' coefficients. Jitted."""
    plan = model.plan

    def one(cache, position, lo, hi, rows, row_offset):
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        outs = bounds.propagate_windowed(plan, cache, position, centre, half)
        mid = rad = None
        for out, r in zip(outs, rows, strict=True):
            o_mid = out.mid.reshape(out.mid.shape[0], -1)
            o_rad = out.rad.reshape(out.rad.shape[0], -1)
            m = jnp.einsum("rs,ns->rn", r, o_mid, precision="highest")
            d = jnp.einsum("rs,ns->rn", jnp.abs(r), o_rad, precision="highest")
            mid, rad = (m, d) if mid is None else (mid + m, rad + d)
        mid = mid.at[:, -1].add(row_offset)
        lower, upper = mid - rad, mid + rad
        lo_b = lower[:, -1] - jnp.sum(jnp.abs(lower[:, :-1]), axis=1)
        hi_b = upper[:, -1] + jnp.sum(jnp.abs(upper[:, :-1]), axis=1)
        return lo_b, hi_b, lower[:, :-1]

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, None, None)))


def spec_rows(num_classes: int, label: int, target: int | None) -> np.ndarray:
    """``(K - 1, K)`` float32 margin rows: untargeted ``e_y - e_j`` for ``j != y`` (all must
    stay positive); targeted ``e_j - e_t`` for ``j != t`` (one positive one suffices)."""
    k = num_classes
    eye = np.eye(k, dtype=np.float32)
    if target is None:
        return np.stack([eye[label] - eye[j] for j in range(k) if j != label])
    return np.stack([eye[j] - eye[target] for j in range(k) if j != target])


# --------------------------------------------------------------------------------------
# The search over one image


class _Box(NamedTuple):
    row: int
    col: int
    lo: np.ndarray  # (C,) float64
    hi: np.ndarray


class _Engine:
    """The compiled pieces for one model: clean values, box bounds, concrete evaluation."""

    def __init__(self, predict_fn: Callable, model: PreparedModel):
        from .targets import resolve

        self.predict_fn, self.model = predict_fn, model
        h, w, c = model.image_shape
        self.prepare = jax.jit(lambda img: windows.prepare_one(model.plan, img))
        self.box_bounds = _box_bounds(model)
        self.target = resolve(predict_fn, model.channel_axis, 1, None, (h, w, c))
        self.target_prepare = jax.jit(self.target.prepare)
        self.target_eval = jax.jit(self.target.evaluate)
        ch = model.channel_axis

        def forward(img, pix):
            x = apply_pixels(img, pix)[None]
            return predict_fn(x if ch else x[..., 0])[0]

        self.forward = jax.jit(forward)

    def model_input(self, image: np.ndarray) -> jax.Array:
        x = jnp.asarray(image, jnp.float32)[None]
        return x if self.model.channel_axis else x[..., 0]


@functools.lru_cache(maxsize=8)
def _engine(predict_fn: Callable, image_shape: tuple, channel_axis: bool, max_fraction: float):
    """The engine of a model at one image shape, kept for the next call (compilations)."""
    model = prepare_model(predict_fn, image_shape, channel_axis, max_fraction)
    return _Engine(predict_fn, model)


def _integer(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.int64)


def verify_image(
    engine: _Engine,
    cfg: VerifyConfig,
    image: np.ndarray,
    label: int,
    target: int | None = None,
    hints: np.ndarray | None = None,
) -> ImageVerification:
    """Verify one ``(H, W, C)`` float32 image (see :func:`verify`)."""
    model = engine.model
    t0 = time.perf_counter()
    h, w, c = model.image_shape
    k = model.num_classes
    image = np.asarray(image, np.float32)
    img_j = jnp.asarray(image)
    clean_probs = np.asarray(engine.predict_fn(engine.model_input(image)))[0]
    clean_pred = int(np.argmax(clean_probs))
    counts = {"boxes": 0, "evaluations": 0}
    touched: set[tuple[int, int]] = set()
    open_boxes = np.zeros((h, w), np.int64)  # undecided boxes per position

    def answer(status, cx=None, pred=clean_pred, probs=clean_probs, lowest=None):
        # before the bounds start, no position is proven (open_boxes is still empty)
        proven = int(np.sum(open_boxes == 0)) if open_boxes.any() or status == "robust" else 0
        return ImageVerification(
            status,
            cx,
            int(pred),
            np.asarray(probs, np.float32),
            time.perf_counter() - t0,
            len(touched),
            proven,
            counts["boxes"],
            counts["evaluations"],
            lowest,
        )

    if clean_pred != label:
        return answer("misclassified")

    def flips(pred: np.ndarray) -> np.ndarray:
        return pred != label if target is None else pred == target

    t_cache = engine.target_prepare(img_j[None])
    sizes = (cfg.batch_size, 4 * cfg.batch_size)

    def evaluate(pixels: np.ndarray):
        """Concrete evaluation of ``(P, 2 + C)`` pixels; returns a confirmed counterexample
        ``(pixel, probs)`` or None, and the per-pixel margins (the probability of the label
        minus the best other's, or the best other's minus the target's: positive means not
        flipped)."""
        margins = np.empty(len(pixels), np.float64)
        probe_size = sizes[0] if len(pixels) <= sizes[0] else sizes[1]
        for s in range(0, len(pixels), probe_size):
            chunk = pixels[s : s + probe_size]
            pad = np.concatenate([chunk, np.repeat(chunk[-1:], probe_size - len(chunk), 0)])
            probs = np.asarray(
                engine.target_eval(t_cache, img_j[None], jnp.asarray(pad[None, :, None], jnp.int32))
            )[0, : len(chunk)]
            counts["evaluations"] += len(chunk)
            pred = probs.argmax(axis=1)
            if target is None:
                other = np.where(np.arange(k) == label, -np.inf, probs).max(axis=1)
                m = probs[:, label] - other
            else:
                other = np.where(np.arange(k) == target, -np.inf, probs).max(axis=1)
                m = other - probs[:, target]
            margins[s : s + len(chunk)] = m
            # A flip, or a near tie (the windowed evaluation may differ from the plain
            # forward pass by rounding), is decided by the plain forward pass.
            for i in np.flatnonzero(flips(pred) | (m <= NEAR_TIE)):
                px = chunk[i : i + 1].astype(np.int32)
                p = np.asarray(engine.forward(img_j, jnp.asarray(px)))
                if flips(np.array([p.argmax()]))[0]:
                    return (px, p), margins[:s]
        return None, margins

    def vulnerable(found):
        px, p = found
        touched.add((int(px[0, 0]), int(px[0, 1])))
        return answer("vulnerable", px, int(np.argmax(p)), p)

    # Hints (e.g. an attack's best pixels) and the corner probe.
    order = np.arange(h * w)
    if hints is not None and len(hints):
        found, _ = evaluate(np.asarray(hints, np.int64).reshape(-1, 2 + c))
        if found is not None:
            return vulnerable(found)
    if cfg.probe == "corners":
        corners = np.array(np.meshgrid(*[[0, 255]] * c, indexing="ij")).reshape(c, -1).T
        pos = np.stack(np.divmod(np.arange(h * w), w), axis=1)
        pix = np.concatenate(
            [np.repeat(pos, len(corners), 0), np.tile(corners, (h * w, 1))], axis=1
        )
        found, margins = evaluate(pix)
        touched.update((int(r), int(col)) for r, col in pos)
        if found is not None:
            return vulnerable(found)
        order = np.argsort(margins.reshape(h * w, -1).min(axis=1), kind="stable")

    spec = spec_rows(k, label, target)
    rows_np = np.concatenate([spec, np.eye(k, dtype=np.float32)])  # margins, then logits
    rows = tuple(jnp.asarray(rows_np @ j) for j in model.jacobian)
    row_offset = jnp.asarray(rows_np @ model.offset)
    n_spec = len(spec)
    cache = engine.prepare(engine.model_input(image))

    grid = cfg.over == "grid"
    queue: list = []
    tick = 0
    for p in order:
        r, col = divmod(int(p), w)
        box = _Box(r, col, np.zeros(c), np.full(c, 255.0))
        heapq.heappush(queue, (-np.inf, tick, box))
        open_boxes[r, col] += 1
        tick += 1
    undecided_leaf = False
    lowest = None
    b = cfg.batch_size

    while queue:
        if counts["boxes"] >= cfg.max_boxes or (
            cfg.time_limit is not None and time.perf_counter() - t0 > cfg.time_limit
        ):
            lowest = float(queue[0][0]) if np.isfinite(queue[0][0]) else None
            return answer("unknown", lowest=lowest)
        batch = [heapq.heappop(queue)[2] for _ in range(min(b, len(queue)))]
        n = len(batch)
        padded = batch + [batch[-1]] * (b - n)
        positions = jnp.asarray([[x.row, x.col] for x in padded], jnp.int32)
        lo = jnp.asarray(np.stack([x.lo for x in padded]), jnp.float32)
        hi = jnp.asarray(np.stack([x.hi for x in padded]), jnp.float32)
        lb, ub, forms = (
            np.asarray(a)[:n] for a in engine.box_bounds(cache, positions, lo, hi, rows, row_offset)
        )
        counts["boxes"] += n
        touched.update((x.row, x.col) for x in batch)
        scale = np.maximum(np.abs(lb[:, n_spec:]), np.abs(ub[:, n_spec:])).max(axis=1)
        eps = cfg.atol + cfg.rtol * scale
        margin = lb[:, :n_spec]
        if target is None:
            worst = margin.argmin(axis=1)
            score = margin.min(axis=1)
        else:
            worst = margin.argmax(axis=1)
            score = margin.max(axis=1)
        decided = score > eps
        score = np.where(np.isnan(score), -np.inf, score)
        for i in np.flatnonzero(decided):
            open_boxes[batch[i].row, batch[i].col] -= 1
        open_idx = np.flatnonzero(~decided)
        if not len(open_idx):
            continue
        # The best concrete colour of every open box: the corner minimising the worst margin's
        # lower form.
        probes = []
        for i in open_idx:
            x = batch[i]
            coef = forms[i, worst[i]]
            vertex = np.where(coef > 0, x.lo, x.hi)
            probes.append([x.row, x.col, *_integer(vertex)])
        found, _ = evaluate(np.asarray(probes, np.int64))
        if found is not None:
            return vulnerable(found)
        leaves = []
        for i in open_idx:
            x = batch[i]
            width = x.hi - x.lo
            if grid and np.prod(width + 1) <= cfg.leaf_points:
                leaves.append(x)
                continue
            if not grid and width.max() < cfg.min_width:
                undecided_leaf = True
                lowest = float(score[i]) if lowest is None else min(lowest, float(score[i]))
                continue
            weight = np.abs(forms[i, worst[i]])
            splittable = width > (0 if grid else cfg.min_width / 2)
            weight = np.where(splittable, weight + 1e-9 * width, -1.0)
            d = int(np.argmax(weight))
            if grid:
                m = np.floor((x.lo[d] + x.hi[d]) / 2)
                left_hi, right_lo = m, m + 1
            else:
                left_hi = right_lo = (x.lo[d] + x.hi[d]) / 2
            a_hi, b_lo = x.hi.copy(), x.lo.copy()
            a_hi[d], b_lo[d] = left_hi, right_lo
            for child in (_Box(x.row, x.col, x.lo, a_hi), _Box(x.row, x.col, b_lo, x.hi)):
                heapq.heappush(queue, (float(score[i]), tick, child))
                tick += 1
            open_boxes[x.row, x.col] += 1  # two children for one box
        if leaves:
            pts = []
            for x in leaves:
                axes = [np.arange(int(a), int(z) + 1) for a, z in zip(x.lo, x.hi, strict=True)]
                colours = np.array(np.meshgrid(*axes, indexing="ij")).reshape(c, -1).T
                pts.append(np.concatenate([np.tile([x.row, x.col], (len(colours), 1)), colours], 1))
            found, _ = evaluate(np.concatenate(pts))
            if found is not None:
                return vulnerable(found)
            for x in leaves:
                open_boxes[x.row, x.col] -= 1
    if undecided_leaf:
        return answer("unknown", lowest=lowest)
    return answer("robust")


# --------------------------------------------------------------------------------------
# The API


def _check_inputs(images, labels, targets, num_classes_hint=None):
    x = np.asarray(images)
    if x.ndim == 3:
        x, channel_axis = x[..., None], False
    elif x.ndim == 4:
        channel_axis = True
    else:
        raise ValueError(f"images must have shape (N, H, W, C) or (N, H, W), got {x.shape}")
    if len(x) == 0:
        raise ValueError("images is empty")
    if not np.issubdtype(x.dtype, np.number) or x.min() < 0 or x.max() > 255:
        raise ValueError("images must hold pixel values in [0, 255]")
    y = np.asarray(labels)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {y.dtype}")
    if y.shape != (len(x),):
        raise ValueError(
            f"labels must hold one class per image: images {x.shape} holds {len(x)} images, "
            f"labels has shape {y.shape}"
        )
    t = None
    if targets is not None:
        t = np.asarray(targets)
        if t.shape != (len(x),) or not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"targets must be ({len(x)},) integers, got {t.dtype} {t.shape}")
        if np.any(t == y):
            i = int(np.flatnonzero(t == y)[0])
            raise ValueError(f"targets must differ from labels (image {i}: both {int(y[i])})")
    return x.astype(np.float32), y.astype(np.int64), t, channel_axis


def verify(
    predict_fn: Callable,
    images: Any,
    labels: Any,
    *,
    targets: Any = None,
    config: VerifyConfig | None = None,
    hints: Any = None,
    progress: Callable[[int, ImageVerification], None] | None = None,
    **settings: Any,
) -> Verification:
    """Decide, per image, whether any single pixel of any colour changes the model's label.

    Args:
      predict_fn: a JAX model, float32 ``(B, H, W, C)`` pixels in ``[0, 255]`` to ``(B, K)``
        probabilities (a trailing softmax is dropped: margins are logit differences) or
        class scores. A host model (:class:`~onepixel_jax.targets.HostTarget`) is refused.
      images: ``(N, H, W, C)`` (or ``(N, H, W)`` for a model without a channel axis) pixel
        values in ``[0, 255]``.
      labels: ``(N,)`` int; untargeted, the question is whether the argmax can leave it.
      targets: ``(N,)`` int or None; targeted, whether class ``targets[i]`` can become the
        argmax.
      config: a :class:`VerifyConfig`; or its fields as keywords (``settings``).
      hints: ``(N, m, 2 + C)`` int pixel tuples tried first (e.g. ``AttackResult.pixels``).
      progress: called with ``(i, answer)`` after each image.

    Returns:
      A :class:`Verification` (statuses, counterexamples ``(N, 1, 2 + C)``, times, counts).

    Raises:
      ValueError: a bad argument (one line naming it); UsageError: a host model or an
      operation the bounds do not cover (one line naming it).
    """
    if config is None:
        config = VerifyConfig(**settings)
    elif settings:
        config = dataclasses.replace(config, **settings)
    _refuse_host(predict_fn)
    x, y, t, channel_axis = _check_inputs(images, labels, targets)
    n, h, w, c = x.shape
    if hints is not None:
        hints = np.asarray(hints)
        if hints.ndim != 3 or hints.shape[0] != n or hints.shape[2] != 2 + c:
            raise ValueError(f"hints must have shape ({n}, m, {2 + c}), got {hints.shape}")
    engine = _engine(predict_fn, (h, w, c), channel_axis, float(config.max_fraction))
    model = engine.model
    if np.any(y >= model.num_classes) or np.any(y < 0):
        raise ValueError(f"labels must be class indices in [0, {model.num_classes})")
    if t is not None and (np.any(t >= model.num_classes) or np.any(t < 0)):
        raise ValueError(f"targets must be class indices in [0, {model.num_classes})")
    answers = []
    for i in range(n):
        a = verify_image(
            engine,
            config,
            x[i],
            int(y[i]),
            None if t is None else int(t[i]),
            None if hints is None else hints[i],
        )
        answers.append(a)
        if progress is not None:
            progress(i, a)
    cx = np.full((n, 1, 2 + c), -1, np.int32)
    for i, a in enumerate(answers):
        if a.counterexample is not None:
            cx[i] = a.counterexample
    return Verification(
        np.array([a.status for a in answers]),
        cx,
        np.array([a.predicted for a in answers], np.int32),
        np.stack([a.probs for a in answers]),
        np.array([a.seconds for a in answers]),
        np.array([a.positions for a in answers]),
        np.array([a.proven for a in answers]),
        np.array([a.boxes for a in answers]),
        np.array([a.evaluations for a in answers]),
        tuple(answers),
        config,
    )
