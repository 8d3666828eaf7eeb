"""Export JAX models and the zoo's checkpoints to ONNX (with jax2onnx).

The exported model takes ``images``: float32 NHWC ``(B, H, W, C)`` pixels in [0, 255] with a
dynamic batch ``B``, and returns ``probs``: float32 ``(B, K)`` (the softmax is part of the
graph), exactly the ``predict_fn`` convention. Its metadata records that (``onepixel.layout``
= ``NHWC``, ``onepixel.scale`` = ``[0, 255]``, ``onepixel.output`` = ``probs``) and, for a zoo
checkpoint, the model card (``onepixel.card``), so :func:`onepixel_jax.targets.from_onnx` and
:func:`onepixel_jax.targets.load_target` open it with no arguments.

How: the model is traced to a jaxpr by JAX itself, then replayed for jax2onnx with each
spatial pooling (``reduce_window_max`` / ``reduce_window_sum`` over H and W, i.e. linen's
``max_pool`` / ``avg_pool``) written as an elementwise max / sum of strided slices. jax2onnx
0.17 lowers that pooling to a MaxPool over all four axes, which ONNX Runtime refuses
("Unsupported pooling size"), and its linen ``max_pool`` shim takes the window only as a
keyword while linen's own callers (and ours) pass it positionally. The slice form is exact for
max and reorders only the sum for average pooling. Every other primitive is jax2onnx's own
lowering.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np
from jax import lax

from .host import META_CARD, META_LAYOUT, META_OUTPUT, META_SCALE

INPUT_NAME = "images"
OUTPUT_NAME = "probs"
DEFAULT_OPSET = 17  # ONNX Runtime >= 1.17 runs it; jax2onnx's default (23) needs a newer one

# Card fields that describe training (history, data checksums) are not model metadata.
_CARD_SKIP = ("history", "data_sha256", "config", "machine")


def to_onnx(
    predict_fn: Callable[[jax.Array], jax.Array],
    input_shape: Sequence[int],
    *,
    model_name: str = "onepixel_model",
    metadata: dict[str, str] | None = None,
    opset: int = DEFAULT_OPSET,
) -> Any:
    """ONNX ``ModelProto`` of a JAX ``predict_fn`` for images of shape ``input_shape``.

    Args:
      predict_fn: JAX-traceable float32 ``(B, H, W, C)`` in [0, 255] -> ``(B, K)``.
      input_shape: ``(H, W, C)`` of one image.
      model_name: the graph's name.
      metadata: extra ``metadata_props`` (string keys and values).
      opset: ONNX opset.

    Returns:
      ``onnx.ModelProto`` with input ``images`` ``(B, H, W, C)`` float32 (``B`` dynamic),
      output ``probs`` ``(B, K)`` float32, and the layout/scale/output metadata.
    """
    jax2onnx, onnx = _import_exporter()
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (H, W, C) of positive sizes, got {input_shape!r}")
    (batch,) = jax.export.symbolic_shape("B")
    spec = jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
    closed = jax.make_jaxpr(predict_fn)(spec)
    if len(closed.jaxpr.outvars) != 1:
        raise ValueError(f"predict_fn must return one array, got {len(closed.jaxpr.outvars)}")

    def replay(x: jax.Array) -> jax.Array:
        return _eval_for_export(closed.jaxpr, closed.consts, x)[0]

    model = jax2onnx.to_onnx(
        replay,
        [spec],
        model_name=model_name,
        opset=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
    )
    props = {META_LAYOUT: "NHWC", META_SCALE: "[0.0, 255.0]", META_OUTPUT: "probs"}
    props.update(metadata or {})
    onnx.helper.set_model_props(model, {str(k): str(v) for k, v in props.items()})
    onnx.checker.check_model(model)
    return model


def export_checkpoint(name_or_path: str | Path, path: str | Path | None = None) -> Any:
    """Export a zoo checkpoint (name or folder, as :func:`onepixel_jax.models.load`) to ONNX.

    The card (without its training history) is stored in the metadata as JSON under
    ``onepixel.card``. With ``path``, the model is also written there.

    Returns:
      ``onnx.ModelProto`` (see :func:`to_onnx`).
    """
    from .. import models

    predict_fn, card = models.load(name_or_path)
    slim = {k: v for k, v in card.items() if k not in _CARD_SKIP}
    model = to_onnx(
        predict_fn,
        card["input_shape"],
        model_name=str(card.get("name", "onepixel_model")).replace("-", "_"),
        metadata={META_CARD: json.dumps(slim, sort_keys=True)},
    )
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(model.SerializeToString())
    return model


def max_abs_difference(model: Any, predict_fn: Callable, images: Any) -> float:
    """Largest ``|p_onnx - p_jax|`` over ``images`` (``(N, H, W, C)`` in [0, 255]).

    ``model``: an ``onnx.ModelProto``, serialized bytes or a file path; run by ONNX Runtime.
    """
    import onnxruntime as ort

    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif isinstance(model, str | Path):
        model = Path(model).read_bytes()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    x = np.asarray(images, np.float32)
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    want = np.asarray(jax.jit(predict_fn)(jnp.asarray(x)))
    return float(np.max(np.abs(got.astype(np.float64) - want)))


# --------------------------------------------------------------------------------------
# The jaxpr replay


def _eval_for_export(jaxpr: Any, consts: Sequence[Any], *args: Any) -> list[Any]:
    """Evaluate ``jaxpr`` primitive by primitive, inlining nested calls and rewriting pooling."""
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, jex.core.Literal) else env[v]

    for var, val in zip(jaxpr.constvars, consts, strict=True):
        env[var] = val
    for var, val in zip(jaxpr.invars, args, strict=True):
        env[var] = val
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        outvals = _apply(eqn, invals)
        if not eqn.primitive.multiple_results:
            outvals = [outvals]
        for var, val in zip(eqn.outvars, outvals, strict=True):
            env[var] = val
    return [read(v) for v in jaxpr.outvars]


def _apply(eqn: Any, invals: list[Any]) -> Any:
    name, params = eqn.primitive.name, eqn.params
    if name in ("pjit", "jit", "closed_call", "core_call"):
        inner = params.get("jaxpr") or params.get("call_jaxpr")
        inner = getattr(inner, "jaxpr", inner), getattr(inner, "consts", ())
        return _eval_for_export(inner[0], inner[1], *invals)
    if name in ("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"):
        inner = params.get("call_jaxpr") or params.get("fun_jaxpr")
        # Inference only: the custom derivative rule does not matter.
        return _eval_for_export(inner.jaxpr, inner.consts, *invals)
    if name in ("reduce_window_max", "reduce_window_sum") and _spatial_window(params):
        return _pool_by_slices(invals[0], params, jnp.maximum if "max" in name else jnp.add)
    bind_params = eqn.primitive.get_bind_params(params)
    if isinstance(bind_params, tuple):  # JAX < 0.7: (subfuns, params)
        subfuns, bind_params = bind_params
        return eqn.primitive.bind(*subfuns, *invals, **bind_params)
    return eqn.primitive.bind(*invals, **bind_params)


def _spatial_window(params: dict) -> bool:
    """A pooling window over interior axes only, no dilation, padding smaller than the window
    (linen's ``max_pool`` / ``avg_pool``)."""
    dims, padding = params["window_dimensions"], params["padding"]
    return (
        len(dims) >= 3
        and dims[0] == 1
        and dims[-1] == 1
        and params["window_strides"][0] == 1
        and params["window_strides"][-1] == 1
        and all(d == 1 for d in params["base_dilation"])
        and all(d == 1 for d in params["window_dilation"])
        and tuple(padding[0]) == (0, 0)
        and tuple(padding[-1]) == (0, 0)
        and all(max(p) < d for p, d in zip(padding, dims, strict=True))
    )


def _pool_by_slices(x: jax.Array, params: dict, combine: Callable) -> jax.Array:
    """``reduce_window`` as ``combine`` over the strided slices of each window offset.

    Padding is not materialised (jax2onnx 0.17 cannot lower ``pad`` with a symbolic batch):
    an index in the padding is replaced by the nearest edge index, which lies in the same
    window, so a max is unchanged; a sum multiplies those positions by 0 (zero padding).
    """
    dims, strides, padding = (
        params["window_dimensions"],
        params["window_strides"],
        params["padding"],
    )
    axes = [a for a in range(x.ndim) if (dims[a], strides[a], *padding[a]) != (1, 1, 0, 0)]
    sizes = {a: (x.shape[a] + sum(padding[a]) - dims[a]) // strides[a] + 1 for a in axes}
    result = None
    for offset in itertools.product(*(range(dims[a]) for a in axes)):
        part, mask = x, None
        for a, o in zip(axes, offset, strict=True):
            idx = np.arange(sizes[a]) * strides[a] + o - padding[a][0]
            part = _take_clamped(part, idx, a)
            valid = (idx >= 0) & (idx < x.shape[a])
            if not valid.all():
                shape = [1] * x.ndim
                shape[a] = len(idx)
                m = valid.astype(np.float32).reshape(shape)
                mask = m if mask is None else mask * m
        if mask is not None and combine is not jnp.maximum:
            part = part * jnp.asarray(mask, part.dtype)
        result = part if result is None else combine(result, part)
    return result


def _take_clamped(x: jax.Array, idx: np.ndarray, axis: int) -> jax.Array:
    """``x`` at the arithmetic progression ``idx`` along ``axis``, indices clamped to range."""
    n = x.shape[axis]
    valid = np.flatnonzero((idx >= 0) & (idx < n))
    first, last = int(idx[valid[0]]), int(idx[valid[-1]])
    step = int(idx[1] - idx[0]) if len(idx) > 1 else 1
    parts = [lax.slice_in_dim(x, 0, 1, axis=axis)] * int(valid[0])
    parts.append(lax.slice_in_dim(x, first, last + 1, step, axis=axis))
    parts += [lax.slice_in_dim(x, n - 1, n, axis=axis)] * int(len(idx) - 1 - valid[-1])
    return parts[0] if len(parts) == 1 else lax.concatenate(parts, axis)


def _import_exporter() -> tuple[Any, Any]:
    try:
        import jax2onnx
        import onnx
    except ImportError as err:
        raise ImportError(
            "ONNX export needs jax2onnx and onnx: pip install 'onepixel-jax[onnx]'"
        ) from err
    return jax2onnx, onnx
