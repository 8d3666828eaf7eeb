"""Host targets: attack models that are not written in JAX (NumPy, ONNX Runtime, PyTorch).

Each adapter returns a :class:`HostTarget`, a ``predict_fn`` that :func:`onepixel_jax.attack`
takes in place of a JAX model: inside the compiled loop it prepares the batch in JAX (pixel
scale, per-channel normalisation, layout, dtype) and hands it to the host model through
``jax.pure_callback``: one host call per generation carrying the whole ``(B, H, W, C)`` batch
of candidates, never one per image or candidate. Under ``vmap`` the batched axes are folded
into the host batch, so it is still one call.

Conventions: the attack's images are float32 ``(B, H, W, C)`` in pixel space [0, 255]. A host
model declares the ``layout`` it takes (``"NHWC"`` or ``"NCHW"``), the pixel ``scale`` it takes
(``255`` = [0, 255], ``1`` = [0, 1], or ``(lo, hi)``), optional per-channel ``mean`` / ``std``
applied after scaling (``(x - mean) / std``, as torchvision's ``Normalize``), and its ``output``:
``"probs"`` (rows of class probabilities, validated) or ``"logits"`` (converted with softmax in
JAX, as :func:`onepixel_jax.probs_from_logits` does).

The returned object is hashable by identity: pass the same object again to reuse the engine's
compilation.

The model contract (:func:`onepixel_jax.targets.contract.check_model`) is checked on a batch
of two images before a search starts (:func:`check_traceable`, :meth:`HostTarget.check`). A
host model that raises during the search stops it with :class:`HostModelError`, which names
the model and the original error (XLA reports it as an opaque runtime error;
:func:`surface_host_errors` and :func:`host_failure` turn that back into the model's error).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import first_line
from ..provenance import sha256_file

OUTPUTS = ("probs", "logits")
# Saved PyTorch models load_target opens: torch.export archives, state dicts (--torch-arch).
TORCH_SUFFIXES = (".pt2", ".pt", ".pth")
MODEL_FILE_SUFFIXES = (".onnx", *TORCH_SUFFIXES)  # model files (not zoo names or folders)
LAYOUTS = ("NHWC", "NCHW")
INPUT_DTYPES = ("float32", "uint8", "float16", "float64")

# Metadata keys that onepixel_jax.targets.export writes into exported models; from_onnx reads
# them when its own arguments are left at None.
META_LAYOUT = "onepixel.layout"
META_SCALE = "onepixel.scale"
META_OUTPUT = "onepixel.output"
META_CARD = "onepixel.card"

_ONNX_DTYPES = {
    "tensor(float)": "float32",
    "tensor(uint8)": "uint8",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
}

_HINT = (
    "wrap a NumPy, ONNX Runtime or PyTorch model with opj.targets.from_numpy(fn, ...), "
    "opj.targets.from_onnx(path_or_session, ...) or opj.targets.from_torch(module, ...)"
)

# JAX's errors for a function that needs concrete values: NumPy, ONNX Runtime or PyTorch code
# called on tracers.
_TRACER_ERRORS: tuple[type[BaseException], ...] = (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)


class HostModelError(RuntimeError):
    """A host model raised while the attack called it; the message names the model and the
    original error (``__cause__``)."""


_FAILURES = threading.local()  # the last HostModelError raised inside a callback, per thread
_LAST_FAILURE: list[HostModelError] = []  # the same, for callbacks run on XLA's own threads


def _record_failure(err: HostModelError) -> None:
    _FAILURES.error = err
    _LAST_FAILURE[:] = [err]


def host_failure(exc: BaseException) -> HostModelError | None:
    """The :class:`HostModelError` behind ``exc``: ``exc`` itself, or the one recorded when a
    host model raised inside the compiled search (which reaches the caller as an XLA runtime
    error mentioning it); None otherwise. The record is consumed."""
    if isinstance(exc, HostModelError):
        return exc
    recorded = getattr(_FAILURES, "error", None) or (_LAST_FAILURE[0] if _LAST_FAILURE else None)
    if recorded is None or type(exc).__name__ not in ("JaxRuntimeError", "XlaRuntimeError"):
        return None
    if HostModelError.__name__ not in str(exc) and str(recorded) not in str(exc):
        return None
    _FAILURES.error = None
    _LAST_FAILURE.clear()
    return recorded


@contextlib.contextmanager
def surface_host_errors() -> Iterator[None]:
    """Re-raise a host model's failure inside the block as its :class:`HostModelError`
    (one line naming the model and the original error) instead of XLA's runtime error."""
    _FAILURES.error = None
    _LAST_FAILURE.clear()
    try:
        yield
    except Exception as exc:
        failure = host_failure(exc)
        if failure is None or failure is exc:
            raise
        raise failure from failure.__cause__


class _QuietHostFailures(logging.Filter):
    """Drop JAX's logged traceback of a callback that raised HostModelError: the error is
    re-raised with one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, HostModelError)


logging.getLogger("jax._src.callback").addFilter(_QuietHostFailures())


class HostTarget:
    """A ``predict_fn`` that runs a host (non-JAX) model through ``jax.pure_callback``.

    Call it like a JAX model: float32 ``(B, H, W, C)`` (or ``(B, H, W)``) pixels in [0, 255] ->
    float32 probabilities ``(B, K)``. Build it with :func:`from_numpy`, :func:`from_onnx` or
    :func:`from_torch` rather than directly.

    Attributes:
      host_fn: the host model, NumPy ``(B, *model input)`` -> ``(B, K)`` array-like.
      output, layout, scale, mean, std, input_dtype: the conventions (module docstring).
      num_classes: ``K`` if known; otherwise found by one call on a zero image at trace time.
      model_input_shape: the shape the model declares for one input (``None`` entries for
        dynamic sizes), in its own layout; checked against the images at trace time.
      name: a short description used in error messages.
      metadata: the ONNX model's custom metadata (``from_onnx``), else empty.
    """

    def __init__(
        self,
        host_fn: Callable[[np.ndarray], Any],
        *,
        output: str = "probs",
        layout: str = "NHWC",
        scale: float | tuple[float, float] = 255.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_dtype: str = "float32",
        num_classes: int | None = None,
        model_input_shape: Sequence[int | None] | None = None,
        name: str = "host model",
    ) -> None:
        if not callable(host_fn):
            raise TypeError(f"host_fn must be callable, got {type(host_fn).__name__}")
        self.host_fn = host_fn
        self.output = _check_choice("output", output, OUTPUTS)
        self.layout = _check_choice("layout", layout, LAYOUTS)
        self.scale = _check_scale(scale)
        self.mean = _check_channels("mean", mean)
        self.std = _check_channels("std", std, positive=True)
        self.input_dtype = _check_choice("input_dtype", input_dtype, INPUT_DTYPES)
        no_norm = self.mean is None and self.std is None
        if self.input_dtype == "uint8" and (self.scale != (0.0, 255.0) or not no_norm):
            raise ValueError(
                "input_dtype 'uint8' takes pixels in [0, 255]: it needs scale=255 and no mean/std"
            )
        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
                raise TypeError(f"num_classes must be an int, got {num_classes!r}")
            if num_classes < 1:
                raise ValueError(f"num_classes must be >= 1, got {num_classes}")
            if num_classes < 2:
                raise ValueError(
                    f"{name} has num_classes = 1; an attack needs a classifier with at least "
                    "2 classes"
                )
            num_classes = int(num_classes)
        self.num_classes = num_classes
        self.model_input_shape = None if model_input_shape is None else tuple(model_input_shape)
        self.name = str(name)
        self.metadata: dict[str, str] = {}
        self._k_by_shape: dict[tuple[int, ...], int] = {}

    def __repr__(self) -> str:
        return (
            f"HostTarget({self.name}, output={self.output!r}, layout={self.layout!r}, "
            f"scale={self.scale}, input_dtype={self.input_dtype!r})"
        )

    # -- JAX side -------------------------------------------------------------------------

    def __call__(self, batch: jax.Array) -> jax.Array:
        """Probabilities ``(B, K)`` float32 of the host model on ``batch`` (pixels in [0, 255])."""
        batch = jnp.asarray(batch, jnp.float32)
        if batch.ndim == 3:
            batch = batch[..., None]
        if batch.ndim != 4:
            raise ValueError(
                f"batch must have shape (B, H, W, C) or (B, H, W), got shape {batch.shape}"
            )
        x = self.prepare(batch)
        self._check_model_shape(x.shape)
        k = self._classes(tuple(batch.shape[1:]))
        out_shape = jax.ShapeDtypeStruct((batch.shape[0], k), jnp.float32)
        out = jax.pure_callback(self._host_call, out_shape, x, vmap_method="broadcast_all")
        if self.output == "logits":
            out = jax.nn.softmax(out, axis=-1)
        return out

    def check(self, images: Any = None, image_shape: Sequence[int] | None = None) -> int:
        """Check the model contract on two of ``images`` (or synthetic images of
        ``image_shape``); returns ``K``. See :func:`onepixel_jax.targets.contract.check_model`."""
        from .contract import check_model

        return check_model(
            self, images, image_shape=image_shape, num_classes=self.num_classes, name=self.name
        )

    def prepare(self, batch: jax.Array) -> jax.Array:
        """The model's input from ``(B, H, W, C)`` float32 pixels in [0, 255] (JAX)."""
        x = batch
        lo, hi = self.scale
        if (lo, hi) != (0.0, 255.0):
            x = x * (hi - lo) / 255.0
            if lo:
                x = x + lo
        if self.mean is not None:
            x = x - jnp.asarray(self.mean, jnp.float32)
        if self.std is not None:
            x = x / jnp.asarray(self.std, jnp.float32)
        if self.layout == "NCHW":
            x = jnp.transpose(x, (0, 3, 1, 2))
        if self.input_dtype == "uint8":
            x = jnp.clip(jnp.round(x), 0, 255).astype(jnp.uint8)
        elif self.input_dtype == "float16":
            x = x.astype(jnp.float16)
        return x

    def _check_model_shape(self, shape: tuple[int, ...]) -> None:
        declared = self.model_input_shape
        if declared is None:
            return
        if declared and declared[0] is not None and declared[0] != shape[0]:
            raise ValueError(
                f"{self.name} has a fixed batch size of {declared[0]}, the attack calls it on "
                f"{shape[0]} images at once; export it with a dynamic batch axis"
            )
        got = tuple(shape[1:])
        ok = len(declared) == len(got) + 1 and all(
            d is None or d == g for d, g in zip(declared[1:], got, strict=True)
        )
        if not ok:
            other = "NHWC" if self.layout == "NCHW" else "NCHW"
            raise ValueError(
                f"{self.name} takes input of shape {_fmt_shape(declared)}, but the images give "
                f"{_fmt_shape((None, *got))} in layout {self.layout}; check the image size, or "
                f"pass layout={other!r}"
            )

    def _classes(self, image_shape: tuple[int, ...]) -> int:
        if self.num_classes is not None:
            return self.num_classes
        if image_shape not in self._k_by_shape:
            # Eager, also inside an outer trace (a host function may itself call JAX).
            with jax.ensure_compile_time_eval():
                probe = np.asarray(self.prepare(jnp.zeros((1, *image_shape), jnp.float32)))
                self._k_by_shape[image_shape] = self._host_call(probe).shape[-1]
        return self._k_by_shape[image_shape]

    # -- host side ------------------------------------------------------------------------

    def _host_call(self, x: Any) -> np.ndarray:
        """One host call on the whole batch; leading vmap axes are folded into it."""
        x = np.asarray(x)
        lead = x.shape[:-3]
        flat = x.reshape((-1, *x.shape[-3:]))
        if self.input_dtype == "float64":
            flat = flat.astype(np.float64)
        out = self.predict_numpy(flat, validate_probs=self.output == "probs", strict=False)
        return out.reshape((*lead, out.shape[-1]))

    def predict_numpy(
        self, x: np.ndarray, *, validate_probs: bool = True, strict: bool = True
    ) -> np.ndarray:
        """The host model's raw output ``(B, K)`` float32 on an already prepared batch.

        Validates the shape; with ``validate_probs``, that rows are probabilities (``strict``:
        NaN and infinite values are errors too; otherwise they pass to the engine, which
        treats NaN fitness as the worst).
        """
        try:
            out = self.host_fn(x)
        except Exception as err:
            failure = HostModelError(
                f"{self.name} raised {type(err).__name__}: {first_line(err)} (on a batch of "
                f"{x.shape[0]} inputs of shape {tuple(x.shape[1:])})"
            )
            failure.__cause__ = err
            _record_failure(failure)
            raise failure from err
        try:
            out = np.asarray(out, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{self.name} must return an array of shape (B, K), got {type(out).__name__}"
            ) from err
        b = x.shape[0]
        if out.ndim != 2 or out.shape[0] != b:
            raise ValueError(
                f"{self.name} must return shape (B, K) = ({b}, K) for a batch of {b} images, "
                f"got shape {out.shape}"
            )
        if out.shape[1] < 2:
            raise ValueError(
                f"{self.name} returned {out.shape[1]} class; an attack needs a classifier with "
                "at least 2 classes"
            )
        if self.num_classes is not None and out.shape[1] != self.num_classes:
            raise ValueError(
                f"{self.name} returned {out.shape[1]} classes, num_classes is {self.num_classes}"
            )
        if strict and not np.all(np.isfinite(out)):
            raise ValueError(f"{self.name} returned NaN or infinite values")
        if validate_probs:
            _check_probability_rows(out, self.name)
        return out


def _check_probability_rows(out: np.ndarray, name: str) -> None:
    finite = np.all(np.isfinite(out), axis=1)
    p = out[finite].astype(np.float64)
    if p.size and (p.min() < -1e-4 or p.max() > 1 + 1e-4 or np.abs(p.sum(1) - 1).max() > 1e-2):
        raise ValueError(
            f"{name} must return class probabilities (non-negative, rows summing to 1) with "
            "output='probs'; pass output='logits' if it returns logits"
        )


# --------------------------------------------------------------------------------------
# The three adapters


def from_numpy(
    fn: Callable[[np.ndarray], Any],
    *,
    output: str = "probs",
    input_dtype: str = "float32",
    layout: str = "NHWC",
    scale: float | tuple[float, float] = 255.0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_classes: int | None = None,
) -> HostTarget:
    """A target from a NumPy callable.

    Args:
      fn: ``fn(batch) -> (B, K)`` array-like. By default ``batch`` is float32 NHWC in
        [0, 255]; ``input_dtype="uint8"`` gives uint8 pixels (exact: candidates are integers).
      output: ``"probs"`` (validated) or ``"logits"`` (softmax applied).
      input_dtype: ``"float32"``, ``"uint8"``, ``"float16"`` or ``"float64"``.
      layout, scale, mean, std: what ``fn`` takes (module docstring); defaults: NHWC, [0, 255].
      num_classes: ``K``; ``None`` finds it with one call on a zero image.

    Returns:
      A :class:`HostTarget` to pass as ``predict_fn`` to :func:`onepixel_jax.attack`.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    name = getattr(fn, "__name__", type(fn).__name__)
    return HostTarget(
        fn,
        output=output,
        layout=layout,
        scale=scale,
        mean=mean,
        std=std,
        input_dtype=input_dtype,
        num_classes=num_classes,
        name=f"from_numpy target {name!r}",
    )


def from_onnx(
    path_or_session: str | os.PathLike | Any,
    *,
    layout: str | None = None,
    scale: float | tuple[float, float] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    output: str | None = None,
    input_name: str | None = None,
    output_name: str | None = None,
    providers: Sequence[str] | None = None,
) -> HostTarget:
    """A target from an ONNX model run by ONNX Runtime.

    Args:
      path_or_session: a ``.onnx`` file or an ``onnxruntime.InferenceSession``.
      layout: ``"NCHW"`` or ``"NHWC"``. ``None``: the value stored by
        :mod:`onepixel_jax.targets.export` in the model's metadata, else ``"NCHW"``.
      scale: the pixel range the model takes: ``1`` ([0, 1]), ``255`` or ``(lo, hi)``.
        ``None``: the exported metadata, else ``1`` (the common [0, 1] NCHW convention).
      mean, std: per-channel normalisation after scaling, if the model does not do it itself.
      output: ``"probs"`` or ``"logits"``; ``None``: the exported metadata, else ``"probs"``.
      input_name, output_name: which input / output to use when the model has several.
      providers: ONNX Runtime execution providers for a path (default: CPU).

    Returns:
      A :class:`HostTarget`; its input dtype and class count come from the model.
    """
    session, source = _onnx_session(path_or_session, providers)
    meta = _onnx_metadata(session)
    inputs = list(session.get_inputs())
    outputs = list(session.get_outputs())
    inp = _pick("input_name", input_name, inputs)
    out = _pick("output_name", output_name, outputs)
    dtype = _ONNX_DTYPES.get(inp.type)
    if dtype is None:
        raise TypeError(
            f"the ONNX model's input {inp.name!r} has type {inp.type}; supported: "
            f"{sorted(_ONNX_DTYPES)}"
        )
    declared = [d if isinstance(d, int) and d > 0 else None for d in (inp.shape or [])]
    if declared and len(declared) != 4:
        raise ValueError(
            f"the ONNX model's input {inp.name!r} has shape {inp.shape}; images need rank 4"
        )
    out_shape = list(out.shape or [])
    k = out_shape[-1] if len(out_shape) == 2 and isinstance(out_shape[-1], int) else None
    if layout is None:
        layout = meta.get(META_LAYOUT, "NCHW")
    if scale is None:
        scale = _scale_from_meta(meta.get(META_SCALE)) if META_SCALE in meta else 1.0
    if output is None:
        output = meta.get(META_OUTPUT, "probs")
    in_name, out_name = inp.name, out.name

    def run_session(x: np.ndarray) -> np.ndarray:
        return session.run([out_name], {in_name: x})[0]

    target = HostTarget(
        run_session,
        output=output,
        layout=layout,
        scale=scale,
        mean=mean,
        std=std,
        input_dtype=dtype,
        num_classes=k,
        model_input_shape=declared or None,
        name=f"ONNX model {source}",
    )
    target.metadata = meta
    return target


def from_torch(
    module: Any,
    *,
    mode: str = "auto",
    device: str = "cpu",
    layout: str = "NCHW",
    scale: float | tuple[float, float] = 1.0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    output: str = "probs",
    num_classes: int | None = None,
    reference: Any = None,
) -> Any:
    """A target from a PyTorch model (torch is imported only here).

    ``mode="auto"`` (default) and ``"jax"`` convert the module to a JAX function (a
    ``torch.export`` graph run by :mod:`onepixel_jax.targets.aten`) that runs inside the
    compiled loop, with ``jit``, the device planner and the incremental evaluation; the
    result is a :class:`~onepixel_jax.targets.pytorch.TorchTarget`. The module is exported
    and checked when the first batch of a given image shape reaches it (or now, given
    ``reference``). Where the graph has an operator the interpreter does not know, where
    ``torch.export`` fails or where the converted function's probabilities differ from the
    module's by more than 1e-4 on the check batch, ``"auto"`` runs the module through the
    host callback and warns once with the reason (``TorchFallbackWarning``); ``"jax"``
    raises it. ``mode="host"`` returns the :class:`HostTarget` (one ``jax.pure_callback``
    per generation, the module called under ``torch.inference_mode()`` on ``device``).

    Args:
      module: a ``torch.nn.Module`` in eval mode mapping a float32 batch to ``(B, K)``, or a
        ``torch.export.ExportedProgram`` with a dynamic batch axis.
      mode: ``"auto"``, ``"jax"`` or ``"host"``.
      device: where the host callback runs the module (``"cpu"``, ``"cuda"``, ...).
      layout, scale, mean, std: what the module takes; defaults: NCHW in [0, 1] (torchvision
        models also want ``mean`` / ``std``, e.g. ImageNet's, unless they normalise inside).
      output: ``"probs"`` or ``"logits"`` (most PyTorch classifiers return logits).
      num_classes: ``K``; ``None``: from the module's first output.
      reference: optional, a batch of inputs as the module takes them (its layout, scale and
        normalisation: a tensor from its data loader). Checked against the adapter's
        ``layout``, ``scale``, ``mean`` and ``std`` (its values must map into pixels [0,
        255]); the converted function is compared with the module on it. Without it, the
        check batch is two noise images.

    Raises:
      ValueError: a module in training mode; a module that fails on the check batch (the
        message names the layout to pass if the other one works), returns no ``(B, K)``
        scores, or logits with ``output='probs'``; a ``reference`` that does not fit the
        conventions.
    """
    try:
        import torch
    except ImportError as err:
        raise ImportError("from_torch needs PyTorch: pip install 'onepixel-jax[torch]'") from err
    mode = _check_choice("mode", mode, ("auto", "jax", "host"))
    program = isinstance(module, torch.export.ExportedProgram)
    if not isinstance(module, torch.nn.Module) and not program:
        raise TypeError(
            "module must be a torch.nn.Module or a torch.export.ExportedProgram, got "
            f"{type(module).__name__}"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}"
        ) from err
    label = "PyTorch exported program" if program else f"PyTorch module {type(module).__name__}"
    if program:
        runnable = module.module(check_guards=False)
    else:
        training = [name for name, m in module.named_modules() if m.training]
        if training:
            which = "is" if training[0] == "" else f"has submodule {training[0]!r}"
            raise ValueError(
                f"module: {label} {which} in training mode; call module.eval() first (batch "
                "norm and dropout compute otherwise in training)"
            )
        runnable = module

    def run_module(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x)
        if not x.flags.writeable:  # torch warns on read-only arrays (JAX's buffers)
            x = x.copy()
        with torch.inference_mode():
            t = torch.from_numpy(x).to(dev)
            return runnable(t).detach().float().cpu().numpy()

    host = HostTarget(
        run_module,
        output=output,
        layout=layout,
        scale=scale,
        mean=mean,
        std=std,
        input_dtype="float32",
        num_classes=num_classes,
        name=f"{label} on {dev}",
    )
    from .pytorch import TorchTarget, reference_pixels

    if mode == "host":
        if reference is not None:
            reference_pixels(host, reference)
        return host
    return TorchTarget(module, host, mode=mode, reference=reference)


# --------------------------------------------------------------------------------------
# Checks


def check_traceable(predict_fn: Callable, example_batch: Any) -> jax.ShapeDtypeStruct:
    """Check that ``predict_fn`` can run inside the compiled attack; return its output shape.

    JAX functions are traced abstractly (``jax.eval_shape``, no computation) on the shape of
    ``example_batch[:1]``. A :class:`HostTarget` is also called once, eagerly, on the first
    two images of ``example_batch``, so that a host model's bad output is reported as a plain
    ``ValueError`` before the loop starts.

    Args:
      predict_fn: the attack's ``predict_fn``.
      example_batch: a few images as the attack will pass them, float ``(B, H, W[, C])`` in
        [0, 255] (an array or a ``jax.ShapeDtypeStruct``).

    Raises:
      TypeError: ``predict_fn`` needs concrete values (NumPy, ONNX Runtime, PyTorch code): the
        message points to :func:`from_numpy`, :func:`from_onnx` and :func:`from_torch`.
    """
    shape = tuple(example_batch.shape)
    spec = jax.ShapeDtypeStruct((min(shape[0], 1), *shape[1:]), jnp.float32)
    try:
        out = jax.eval_shape(predict_fn, spec)
    except _TRACER_ERRORS as err:
        raise TypeError(
            f"predict_fn is not JAX-traceable (it needs concrete arrays): {_HINT}"
        ) from err
    except Exception as err:
        if "Tracer" not in str(err):
            raise
        raise TypeError(
            f"predict_fn is not JAX-traceable ({type(err).__name__}: {first_line(err)}): {_HINT}"
        ) from err
    if isinstance(predict_fn, HostTarget) and not isinstance(example_batch, jax.ShapeDtypeStruct):
        predict_fn.check(np.asarray(example_batch)[:2])
    return out


# --------------------------------------------------------------------------------------
# One entry point for a model given by name: a zoo checkpoint, an .onnx file, a PyTorch file


def load_target(spec: str | os.PathLike, torch_arch: str | None = None) -> tuple[Callable, dict]:
    """``(predict_fn, card)`` for a zoo checkpoint name / folder, an ``.onnx`` file or a saved
    PyTorch model.

    An ``.onnx`` file is opened with :func:`from_onnx` (layout, scale and output from the
    metadata that :mod:`onepixel_jax.targets.export` writes; otherwise NCHW, [0, 1], probs).
    Its card is the zoo card stored in the metadata (when exported from the zoo) or a minimal
    one, with ``format = "onnx"``, ``source`` (the path), ``sha256`` (of the file),
    ``input_shape`` ``(H, W, C)`` and ``num_classes`` where the model declares them.

    A ``.pt2`` file (``torch.export.save``), or with ``torch_arch``
    (``"package.module:Class"``) a state dict, is opened with
    :func:`onepixel_jax.targets.pytorch.read_file` (never unpickled; ``format``
    ``"torch-export"`` or ``"torch-state-dict"``).

    Raises:
      ValueError: an ``.onnx`` path that does not exist or is not an ONNX model, a PyTorch
        file that cannot be loaded safely, or an unknown checkpoint name (from
        :func:`onepixel_jax.models.load`).
    """
    if not isinstance(spec, str | os.PathLike):
        raise TypeError(f"spec must be a str or path, got {type(spec).__name__}")
    path = Path(spec)
    suffix = path.suffix.lower()
    if torch_arch is not None or suffix in TORCH_SUFFIXES:
        if torch_arch is None and suffix != ".pt2":
            raise ValueError(
                f"model {str(path)!r} is a state dict: give its architecture with --torch-arch "
                "package.module:Class (or save the model with torch.export.save as .pt2)"
            )
        try:
            import torch  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "a PyTorch model needs torch: pip install 'onepixel-jax[torch]'"
            ) from err
        from .pytorch import read_file, settle

        source, keywords, card = read_file(path, torch_arch)
        detect = keywords["output"] is None
        if detect:
            keywords["output"] = "logits"
        target = from_torch(source, **keywords)
        return target, settle(target, card, detect)
    if suffix != ".onnx":
        from .. import models

        return models.load(spec)
    target = from_onnx(path)
    card = _onnx_card(path, target)
    return target, card


def _onnx_card(path: Path, target: HostTarget) -> dict:
    card: dict[str, Any] = {}
    if META_CARD in target.metadata:
        try:
            card = dict(json.loads(target.metadata[META_CARD]))
        except (ValueError, TypeError):
            card = {}
    card.setdefault("name", path.stem)
    card["format"] = "onnx"
    card["source"] = str(path)
    card["sha256"] = sha256_file(path)
    shape = target.model_input_shape
    if shape is not None and "input_shape" not in card:
        hwc = shape[1:] if target.layout == "NHWC" else (shape[2], shape[3], shape[1])
        if all(d is not None for d in hwc):
            card["input_shape"] = [int(d) for d in hwc]
    if target.num_classes is not None:
        card.setdefault("num_classes", target.num_classes)
    card["layout"], card["scale"], card["output"] = target.layout, list(target.scale), target.output
    return card


# --------------------------------------------------------------------------------------
# Helpers


def _onnx_session(path_or_session: Any, providers: Sequence[str] | None) -> tuple[Any, str]:
    if isinstance(path_or_session, str | os.PathLike):
        path = Path(path_or_session)
        if not path.is_file():
            raise ValueError(f"path_or_session: no such file {str(path)!r}")
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError(
                "from_onnx needs ONNX Runtime: pip install 'onepixel-jax[onnx]'"
            ) from err
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no shape-merge warnings on every load
        try:
            session = ort.InferenceSession(
                str(path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as err:  # ORT raises its own pybind types (InvalidProtobuf, Fail, ...)
            raise ValueError(
                f"path_or_session: {str(path)!r} is not an ONNX model ONNX Runtime can load: "
                f"{first_line(err)}"
            ) from None
        return session, repr(str(path))
    if all(hasattr(path_or_session, a) for a in ("run", "get_inputs", "get_outputs")):
        return path_or_session, type(path_or_session).__name__
    raise TypeError(
        "path_or_session must be a path to an .onnx file or an onnxruntime.InferenceSession, "
        f"got {type(path_or_session).__name__}"
    )


def _onnx_metadata(session: Any) -> dict[str, str]:
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except Exception:  # a session-like object without metadata
        return {}


def _pick(arg: str, name: str | None, items: list) -> Any:
    names = [i.name for i in items]
    if name is None:
        if len(items) != 1:
            raise ValueError(f"the ONNX model has {len(items)} of these: {names}; pass {arg}")
        return items[0]
    if name not in names:
        raise ValueError(f"{arg} must be one of {names}, got {name!r}")
    return items[names.index(name)]


def _scale_from_meta(value: str | None) -> tuple[float, float]:
    try:
        lo, hi = json.loads(value or "")
        return float(lo), float(hi)
    except (ValueError, TypeError):
        raise ValueError(
            f"the ONNX model's {META_SCALE} metadata is not [lo, hi]: {value!r}"
        ) from None


def _check_choice(arg: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{arg} must be one of {list(choices)}, got {value!r}")
    return value


def _check_scale(scale: Any) -> tuple[float, float]:
    if isinstance(scale, int | float | np.integer | np.floating) and not isinstance(scale, bool):
        lo, hi = 0.0, float(scale)
    elif isinstance(scale, Sequence) and not isinstance(scale, str) and len(scale) == 2:
        try:
            lo, hi = float(scale[0]), float(scale[1])
        except (TypeError, ValueError):
            lo, hi = float("nan"), float("nan")
    else:
        raise ValueError(
            f"scale must be a number such as 255 or 1, or a pair (lo, hi), got {scale!r}"
        )
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"scale must give a finite pixel range with lo < hi, got {scale!r}")
    return lo, hi


def _check_channels(arg: str, values: Any, positive: bool = False) -> tuple[float, ...] | None:
    if values is None:
        return None
    try:
        out = tuple(float(v) for v in np.atleast_1d(np.asarray(values, dtype=np.float64)))
    except (TypeError, ValueError):
        raise ValueError(
            f"{arg} must be a sequence of per-channel numbers, got {values!r}"
        ) from None
    if not out or not all(np.isfinite(out)) or (positive and min(out) <= 0):
        need = "positive finite" if positive else "finite"
        raise ValueError(f"{arg} must be {need} per-channel numbers, got {values!r}")
    return out


def _fmt_shape(shape: Sequence[int | None]) -> str:
    return (
        "("
        + ", ".join("B" if i == 0 else ("?" if d is None else str(d)) for i, d in enumerate(shape))
        + ")"
    )
