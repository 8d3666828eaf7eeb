"""PyTorch models inside the compiled attack: :class:`TorchTarget`, the checks of its input
conventions, and safe loading of saved models for the command line.

:func:`onepixel_jax.targets.from_torch` returns a :class:`TorchTarget` (modes ``"auto"`` and
``"jax"``): for each image shape it meets, it exports the module with ``torch.export`` and
converts the graph to a JAX function (:mod:`onepixel_jax.targets.aten`), which then runs
inside the compiled loop (``jit``, the device planner, the incremental evaluation). Before
that, the module itself runs once on a check batch (a ``reference`` batch of the user's, or
seeded noise images): a wrong layout, output size or output kind is one ``ValueError``, and
the converted function must give the module's probabilities on that batch. Where the graph
has an operator the interpreter does not know, where ``torch.export`` fails, or where the
results differ, ``"auto"`` falls back to the host callback (:class:`~.host.HostTarget`) with
one :class:`TorchFallbackWarning` naming the reason; ``"jax"`` raises it instead.

Saved models (:func:`read_file`): a ``torch.export`` archive (``.pt2``, read without
unpickling anything: only plain tensors, ATen operators and size expressions are accepted),
or a state dict read with ``torch.load(..., weights_only=True)`` into an architecture named
by import path (``package.module:Class``).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import io
import json
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import first_line
from ..provenance import sha256_file
from . import aten

__all__ = [
    "CHECK_TOLERANCE",
    "META_FILE",
    "TorchFallbackWarning",
    "TorchTarget",
    "load_archive",
    "load_state_dict_module",
    "read_file",
    "reference_pixels",
    "settle",
]

# Largest |p_jax - p_torch| on the check batch for the converted function to be used.
CHECK_TOLERANCE = 1e-4
# The extra file of a .pt2 archive that holds the conventions (layout, scale, mean, std,
# output) as JSON, like the onepixel.* metadata of an ONNX file.
META_FILE = "onepixel.json"


class TorchFallbackWarning(UserWarning):
    """``from_torch(mode="auto")`` runs a module through the host callback; the message says
    why in one line."""


@dataclasses.dataclass(frozen=True)
class _Conversion:
    fn: Callable | None  # the module's input -> its output, in JAX; None: host callback
    reason: str | None  # why not, for fn None


class TorchTarget:
    """A ``predict_fn`` of a PyTorch module: float32 ``(B, H, W, C)`` (or ``(B, H, W)``) pixels
    in [0, 255] -> float32 probabilities ``(B, K)``; JAX-traceable.

    Build it with :func:`onepixel_jax.targets.from_torch`. Hashable by identity: pass the same
    object again to reuse the engine's compilation.

    Attributes:
      module: the ``torch.nn.Module`` (or ``ExportedProgram``).
      host: the :class:`~onepixel_jax.targets.host.HostTarget` of the module: its conventions
        (``layout``, ``scale``, ``mean``, ``std``, ``output``) and the fallback.
      mode: ``"auto"`` or ``"jax"``.
      name, output, num_classes: as the host target's.
      input_shape: ``(H, W, C)`` when known (from ``reference`` or a saved archive).
    """

    def __init__(
        self,
        module: Any,
        host: Any,
        *,
        mode: str = "auto",
        reference: Any = None,
    ) -> None:
        if mode not in ("auto", "jax"):
            raise ValueError(f"mode must be 'auto' or 'jax' for a TorchTarget, got {mode!r}")
        self.module = module
        self.host = host
        self.mode = mode
        self.name = host.name
        self._run = host.host_fn  # the module on a prepared NumPy batch
        self._detect_output = False  # set by settle(): read the output kind off the module
        self._conversions: dict[tuple[int, ...], _Conversion] = {}
        self._reference: tuple[tuple[int, ...], np.ndarray, np.ndarray] | None = None
        if reference is not None:
            shape, pixels, ref = reference_pixels(host, reference)
            self._reference = (shape, pixels, ref)
            self.input_shape = shape
            self.convert(shape)

    @property
    def output(self) -> str:
        return self.host.output

    @property
    def num_classes(self) -> int | None:
        return self.host.num_classes

    def __repr__(self) -> str:
        return f"TorchTarget({self.name}, mode={self.mode!r}, layout={self.host.layout!r})"

    def __call__(self, batch: jax.Array) -> jax.Array:
        """Probabilities ``(B, K)`` float32 of the module on ``batch`` (pixels in [0, 255])."""
        batch = jnp.asarray(batch, jnp.float32)
        if batch.ndim == 3:
            batch = batch[..., None]
        if batch.ndim != 4:
            raise ValueError(
                f"batch must have shape (B, H, W, C) or (B, H, W), got shape {batch.shape}"
            )
        conversion = self.convert(tuple(batch.shape[1:]))
        if conversion.fn is None:
            return self.host(batch)
        out = conversion.fn(self.host.prepare(batch))
        return jax.nn.softmax(out, axis=-1) if self.output == "logits" else out

    def path(self, image_shape: Sequence[int]) -> str:
        """``"jax"`` (the converted graph) or ``"host"`` (the callback) for ``(H, W, C)``
        images; converts on first use."""
        return "host" if self.convert(image_shape).fn is None else "jax"

    def fallback_reason(self, image_shape: Sequence[int]) -> str | None:
        """Why ``(H, W, C)`` images run through the host callback; None when they do not."""
        return self.convert(image_shape).reason

    def convert(self, image_shape: Sequence[int]) -> _Conversion:
        """Check the module on ``(H, W, C)`` images and convert it (cached per shape).

        Raises:
          ValueError: the module fails on the check batch (the message names the layout to
            pass when the other one works), returns no ``(B, K)`` scores, returns logits
            with ``output='probs'``; with mode ``"jax"``, any reason to fall back.
        """
        shape = tuple(int(v) for v in image_shape)
        if len(shape) == 2:
            shape = (*shape, 1)
        if shape in self._conversions:
            return self._conversions[shape]
        with jax.ensure_compile_time_eval():
            conversion = self._convert(shape)
        self._conversions[shape] = conversion
        if conversion.fn is None:
            warnings.warn(
                f"from_torch: {self.name} runs through the host callback on "
                f"{'x'.join(map(str, shape))} images: {conversion.reason}",
                TorchFallbackWarning,
                stacklevel=3,
            )
        return conversion

    # -- the checks and the conversion ------------------------------------------------------

    def _check_batch(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``(pixels (n, H, W, C), the module's input for them)``: the reference batch when
        its shape matches, else three seeded noise images (an odd size, so that an output
        that does not follow the batch shows)."""
        if self._reference is not None:
            ref_shape, pixels, ref = self._reference
            if ref_shape == shape:
                return pixels, ref
            hwc = "x".join(map(str, shape))
            raise ValueError(
                f"the images are {hwc}, but the reference batch gives "
                f"{'x'.join(map(str, ref_shape))} images in layout {self.host.layout!r}; "
                "check the layout and the image size"
            )
        pixels = np.random.default_rng(0).integers(0, 256, (3, *shape)).astype(np.float32)
        return pixels, np.asarray(self.host.prepare(jnp.asarray(pixels)))

    def _run_checked(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        try:
            out = self._run(x)
        except Exception as err:
            raise ValueError(self._failure_message(err, x, shape)) from None
        out = np.asarray(out, np.float32)
        n = x.shape[0]
        if out.ndim != 2 or out.shape[0] != n:
            raise ValueError(
                f"{self.name} must return class scores of shape (B, K); on a batch of {n} "
                f"inputs of shape {tuple(x.shape[1:])} it returns shape {tuple(out.shape)}"
            )
        if out.shape[1] < 2:
            raise ValueError(
                f"{self.name} returns {out.shape[1]} class; an attack needs a classifier with "
                "at least 2 classes"
            )
        k = self.host.num_classes
        if k is not None and out.shape[1] != k:
            raise ValueError(f"{self.name} returns {out.shape[1]} classes, num_classes is {k}")
        if not np.all(np.isfinite(out)):
            raise ValueError(f"{self.name} returns NaN or infinite values on the check batch")
        if self._detect_output:
            self.host.output = "probs" if _are_probabilities(out) else "logits"
            self._detect_output = False
        if self.output == "probs":
            _check_probabilities(out, self.name)
        return out

    def _failure_message(self, err: BaseException, x: np.ndarray, shape) -> str:
        layout = self.host.layout
        other = "NHWC" if layout == "NCHW" else "NCHW"
        axes = (0, 3, 1, 2) if other == "NCHW" else (0, 2, 3, 1)
        given = f"{_fmt(x.shape)} (layout {layout!r}, from {'x'.join(map(str, shape))} images)"
        try:
            self._run(np.ascontiguousarray(x.transpose(axes)))
        except Exception:
            return f"{self.name} fails on input {given}: {first_line(err)}"
        return (
            f"{self.name} fails on input {given} but runs in layout {other!r}: pass "
            f"layout={other!r} ({first_line(err)})"
        )

    def _convert(self, shape: tuple[int, ...]) -> _Conversion:
        pixels, x = self._check_batch(shape)
        expected = self._run_checked(x, shape)
        try:
            program = self._export(x)
            fn = aten.to_jax(program)
            # One compilation for the check (op by op, a first call compiles each operation).
            got = np.asarray(jax.jit(fn)(self.host.prepare(jnp.asarray(pixels))))
        except aten.UnsupportedOperator as err:
            reason = str(err)
        except Exception as err:  # torch.export's own errors are of many types
            reason = f"torch.export failed ({type(err).__name__}: {first_line(err)})"
        else:
            diff = _prob_difference(got, expected, self.output)
            if diff <= CHECK_TOLERANCE:
                return _Conversion(fn, None)
            reason = (
                f"the converted graph's probabilities differ from the module's by {diff:.2g} "
                f"(> {CHECK_TOLERANCE:g}) on the check batch"
            )
        if self.mode == "jax":
            raise ValueError(
                f"from_torch(mode='jax'): {self.name} cannot run as a JAX function: {reason}; "
                "use mode='auto' or mode='host'"
            )
        return _Conversion(None, reason)

    def _export(self, x: np.ndarray) -> Any:
        import torch

        if isinstance(self.module, torch.export.ExportedProgram):
            return aten.decompose(self.module)
        device = _module_device(self.module)
        x = np.asarray(x)
        if len(x) < 2:  # a batch of one would fix the batch axis at 1
            x = np.concatenate([x, x])
        return aten.export(self.module, torch.tensor(x, device=device))


def _check_probabilities(out: np.ndarray, name: str) -> None:
    """The check of :class:`~onepixel_jax.targets.host.HostTarget` for ``output='probs'``."""
    p = out.astype(np.float64)
    if p.min() < -1e-4 or p.max() > 1 + 1e-4 or np.abs(p.sum(1) - 1).max() > 1e-2:
        raise ValueError(
            f"{name} must return class probabilities (non-negative, rows summing to 1) with "
            "output='probs'; pass output='logits' if it returns logits"
        )


def _fmt(shape: Sequence[int]) -> str:
    return "(B, " + ", ".join(str(s) for s in shape[1:]) + ")"


def _are_probabilities(out: np.ndarray) -> bool:
    return bool(out.min() >= -1e-6 and np.abs(out.sum(1) - 1.0).max() <= 1e-3)


def _prob_difference(got: np.ndarray, expected: np.ndarray, output: str) -> float:
    if got.shape != expected.shape:
        return float("inf")
    if output == "logits":
        got = np.asarray(jax.nn.softmax(got, axis=-1))
        expected = np.asarray(jax.nn.softmax(expected, axis=-1))
    return float(np.max(np.abs(got.astype(np.float64) - expected)))


def _module_device(module: Any) -> Any:
    import torch

    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


# --------------------------------------------------------------------------------------
# The reference batch


def reference_pixels(host: Any, reference: Any) -> tuple[tuple, np.ndarray, np.ndarray]:
    """``((H, W, C), pixels (n, H, W, C) in [0, 255], reference (n, ...) float32)`` of a
    batch given in the module's own convention (its layout, scale and normalisation), at
    most 8 of its inputs.

    Raises:
      ValueError: ``reference`` is not a batch of images, looks like the other layout, or its
        values do not map into [0, 255] with the adapter's ``scale``, ``mean`` and ``std``
        (one line naming them).
    """
    if hasattr(reference, "detach"):
        reference = reference.detach().cpu().float().numpy()
    try:
        ref = np.asarray(reference, np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"reference must be a batch of the module's inputs, got {type(reference).__name__}"
        ) from err
    if ref.ndim != 4 or ref.shape[0] < 1 or min(ref.shape) < 1:
        raise ValueError(
            f"reference must be a batch (N, C, H, W) or (N, H, W, C) of the module's inputs, "
            f"got shape {ref.shape}"
        )
    if not np.all(np.isfinite(ref)):
        raise ValueError("reference holds NaN or infinite values")
    ref = ref[:8]
    layout = host.layout
    other = "NHWC" if layout == "NCHW" else "NCHW"
    x = ref.transpose(0, 2, 3, 1) if layout == "NCHW" else ref
    channels = x.shape[3]
    other_channels = ref.shape[3] if layout == "NCHW" else ref.shape[1]
    if channels > 4 and other_channels <= 4:
        raise ValueError(
            f"reference has shape {ref.shape}: in layout {layout!r} that is "
            f"{x.shape[1]}x{x.shape[2]} images with {channels} channels; it looks like "
            f"{other}: pass layout={other!r}"
        )
    x = x.astype(np.float64)
    if host.std is not None:
        x = x * np.asarray(host.std)
    if host.mean is not None:
        x = x + np.asarray(host.mean)
    lo, hi = host.scale
    pixels = (x - lo) * (255.0 / (hi - lo))
    pmin, pmax = float(pixels.min()), float(pixels.max())
    given = f"scale={_num(hi) if lo == 0 else (lo, hi)}, mean={host.mean}, std={host.std}"
    if pmin < -1.0 or pmax > 256.0:
        raise ValueError(
            f"reference: with {given} its values map to pixels in [{pmin:.4g}, {pmax:.4g}], "
            "outside [0, 255]; pass the scale (and mean / std) of the module's inputs, e.g. "
            "scale=255 for inputs in [0, 255]"
        )
    if pmax - pmin < 0.02 * 255.0 and pmax > pmin:
        raise ValueError(
            f"reference: with {given} its values map to pixels in [{pmin:.4g}, {pmax:.4g}], "
            "under 2 % of [0, 255]; pass the scale of the module's inputs, e.g. scale=1 for "
            "inputs in [0, 1]"
        )
    pixels = np.clip(pixels, 0.0, 255.0).astype(np.float32)
    return tuple(int(v) for v in pixels.shape[1:]), pixels, ref


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else v


# --------------------------------------------------------------------------------------
# Saved models: .pt2 archives and state dicts

# The archive members a plain torch.export.save writes (under its root folder).
_ARCHIVE_PARTS = re.compile(
    r"^[^/]+/(archive_format|archive_version|byteorder|\.data/[^/]+|data/weights/[^/]+|"
    r"data/constants/[^/]+|data/sample_inputs/[^/]+|models/[^/]+\.json|extra/[^/]+)$"
)
# Node targets a convertible graph may call: ATen operators, size arithmetic.
_TARGETS = re.compile(
    r"^(torch\.ops\.aten\.\w+\.\w+|_operator\.(getitem|add|sub|mul|floordiv|truediv|mod|neg|"
    r"pow|eq|ne|lt|le|gt|ge)|torch\.sym_\w+|math\.(floor|ceil|trunc|sqrt))$"
)
# Names a size expression may use (sympy's and torch's size functions, symbols s0, u1 ...).
_EXPR_NAMES = frozenset(
    """Symbol Integer Float Rational Max Min Mod FloorDiv CleanDiv CeilDiv CeilToInt FloorToInt
    ModularIndexing PythonMod Where LShift RShift PowByNatural FloatPow FloatTrueDiv IntTrueDiv
    TruncToFloat TruncToInt RoundToInt RoundDecimal ToFloat Identity Abs Eq Ne Lt Le Gt Ge And
    Or Not Mul Add Pow floor ceiling sqrt oo zoo nan True False
    IsNonOverlappingAndDenseIndicator""".split()
)
_EXPR_NODES = (
    ast.Expression,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.keyword,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
    ast.Tuple,
)


class _Refused(ValueError):
    pass


def _read_model_file(path: Path) -> bytes:
    if not path.is_file():
        raise ValueError(f"no such file {str(path)!r}")
    return path.read_bytes()


def _is_pickle(data: bytes) -> bool:
    return data[:1] == b"\x80" and len(data) > 2 and data[1] <= 5


def load_archive(path: str | os.PathLike) -> tuple[Any, dict[str, str]]:
    """``(ExportedProgram, extra files)`` of a ``torch.export.save`` archive, read without
    unpickling: every tensor must be stored raw, the graph may call only ATen operators and
    size arithmetic, and size expressions may use only sympy's size functions.

    Raises:
      ValueError: not a file, not a ``.pt2`` archive (a pickle or a ``torch.save`` file is
        refused with its own line), or an archive with anything else in it.
    """
    data = _read_model_file(Path(path))
    if not zipfile.is_zipfile(io.BytesIO(data)):
        if _is_pickle(data):
            raise ValueError(
                "the file is a pickle, not a torch.export archive; refused (unpickling runs "
                "arbitrary code): save the model with torch.export.save, or pass its state "
                "dict with --torch-arch"
            )
        raise ValueError("the file is not a model: not a torch.export archive (not a zip file)")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
        if not any(n.endswith("/archive_format") for n in names):
            if any(n.endswith("/data.pkl") for n in names):
                raise ValueError(
                    "the file is a torch.save pickle, not a torch.export archive; refused "
                    "(unpickling runs arbitrary code): save the model with torch.export.save, "
                    "or load this state dict with --torch-arch"
                )
            raise ValueError("the file is a zip file but not a torch.export archive")
        try:
            _check_archive(z, names)
        except _Refused as err:
            raise ValueError(f"the torch.export archive is refused: {err}") from None
    import torch

    # torch.export.load fills in the extra files whose names it is given.
    extra: dict[str, Any] = {n.split("/extra/", 1)[1]: "" for n in names if "/extra/" in n}
    try:
        program = torch.export.load(io.BytesIO(data), extra_files=extra)
    except Exception as err:
        raise ValueError(
            f"the file is not a torch.export archive torch {torch.__version__} can read: "
            f"{first_line(err)}"
        ) from None
    return program, {k: str(v) for k, v in extra.items()}


def _check_archive(z: zipfile.ZipFile, names: list[str]) -> None:
    import torch

    odd = [n for n in names if not n.endswith("/") and not _ARCHIVE_PARTS.match(n)]
    if odd or "version" in names:
        raise _Refused(f"it holds {odd[0] if odd else 'version'} (not a plain exported program)")
    models = [n for n in names if re.search(r"/models/[^/]+\.json$", n)]
    if len(models) != 1:
        raise _Refused(f"it holds {len(models)} exported programs; one is needed")
    for n in names:
        if n.endswith("_config.json"):
            config = json.loads(z.read(n)).get("config", {})
            for key, meta in config.items():
                if meta.get("use_pickle") or not str(meta.get("path_name", "")).startswith(
                    ("weight_", "tensor_")
                ):
                    raise _Refused(f"{key!r} is stored as a pickled object")
        elif "/data/sample_inputs/" in n:
            try:
                torch.load(io.BytesIO(z.read(n)), weights_only=True)
            except Exception as err:
                raise _Refused(
                    f"its sample inputs are not plain tensors ({first_line(err)})"
                ) from None
    program = json.loads(z.read(models[0]))
    if program.get("guards_code"):
        raise _Refused("it holds guard code")
    _check_json(program)


def _check_json(value: Any) -> None:
    if isinstance(value, dict):
        target = value.get("target")
        if isinstance(target, str) and "inputs" in value and not _TARGETS.match(target):
            raise _Refused(f"its graph calls {target!r}, not an ATen operator")
        expr = value.get("expr_str")
        if isinstance(expr, str):
            _check_expression(expr)
        for k, v in value.items():
            if k == "range_constraints" and isinstance(v, dict):
                for name in v:
                    _check_expression(name)
            _check_json(v)
    elif isinstance(value, list):
        for v in value:
            _check_json(v)


def _check_expression(text: str) -> None:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise _Refused(f"size expression {text[:60]!r} does not parse") from None
    for node in ast.walk(tree):
        ok = isinstance(node, _EXPR_NODES)
        if isinstance(node, ast.Name):
            ok = node.id in _EXPR_NAMES or re.fullmatch(r"[a-z]{1,3}\d+", node.id) is not None
        elif isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Name)
        if not ok:
            raise _Refused(f"size expression {text[:60]!r} is not plain arithmetic")


def load_state_dict_module(path: str | os.PathLike, arch: str) -> Any:
    """The module ``arch`` (``"package.module:Class"``, built with no arguments) with the
    state dict in ``path`` (``torch.load(..., weights_only=True)``), in eval mode.

    Raises:
      ValueError: ``arch`` not of that form, not importable or not a module class; a file
        that is not a state dict; keys or shapes that do not match (one line each).
    """
    import torch

    data = _read_model_file(Path(path))
    module = _architecture(arch)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            "the file is not a state dict torch.load(weights_only=True) can read: "
            f"{first_line(err)}"
        ) from None
    if isinstance(state, dict) and set(state) == {"state_dict"}:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError("the file is not a state dict (a mapping of names to tensors)")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        text = " ".join(str(err).split())
        raise ValueError(f"the state dict does not fit --torch-arch {arch}: {text[:300]}") from None
    return module.eval()


def _architecture(arch: str) -> Any:
    import torch

    mod_name, sep, attr = str(arch).partition(":")
    if not sep or not mod_name or not attr:
        raise ValueError(f"--torch-arch must be package.module:Class, got {arch!r}")
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"--torch-arch {arch}: cannot import it ({first_line(err)})") from None
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)) and not callable(obj):
        raise ValueError(f"--torch-arch {arch} is not a torch.nn.Module class")
    try:
        module = obj()
    except Exception as err:
        raise ValueError(
            f"--torch-arch {arch}() failed: {type(err).__name__}: {first_line(err)}"
        ) from None
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"--torch-arch {arch}() is a {type(module).__name__}, not a module")
    return module


def read_file(path: str | os.PathLike, torch_arch: str | None = None) -> tuple[Any, dict, dict]:
    """``(module or ExportedProgram, from_torch keywords, card)`` of a saved PyTorch model: a
    ``.pt2`` archive (:func:`load_archive`), or with ``torch_arch`` a state dict
    (:func:`load_state_dict_module`). :func:`onepixel_jax.targets.host.load_target` makes the
    target and calls :func:`settle`.

    Conventions come from the archive's ``onepixel.json`` extra file (``layout``, ``scale``,
    ``mean``, ``std``, ``output``; ``card``: fields for the card) and otherwise are
    PyTorch's: NCHW in [0, 1]. An archive's input and output shapes give the card's
    ``input_shape`` and ``num_classes``. The card has ``format`` (``"torch-export"`` or
    ``"torch-state-dict"``), ``source``, ``sha256`` and, for a state dict, ``torch_arch``.
    """
    path = Path(path)
    card: dict[str, Any] = {"name": path.stem}
    meta: dict[str, Any] = {}
    if torch_arch is None:
        source, extra = load_archive(path)
        if META_FILE in extra:
            try:
                meta = dict(json.loads(extra[META_FILE]))
            except (ValueError, TypeError):
                raise ValueError(f"the archive's {META_FILE} is not a JSON object") from None
        unknown = sorted(set(meta) - {"layout", "scale", "mean", "std", "output", "card"})
        if unknown:
            raise ValueError(f"the archive's {META_FILE} has unknown keys {unknown}")
        if isinstance(meta.get("card"), dict):
            card.update(meta["card"])
        card["format"] = "torch-export"
        shape, k = _program_shapes(source, meta.get("layout", "NCHW"))
        if shape is not None:
            card["input_shape"] = list(shape)
        if k is not None:
            card["num_classes"] = k
    else:
        source = load_state_dict_module(path, torch_arch)
        card["format"] = "torch-state-dict"
        card["torch_arch"] = torch_arch
    card["source"], card["sha256"] = str(path), sha256_file(path)
    keywords = {k: meta[k] for k in ("layout", "scale", "mean", "std", "output") if k in meta}
    keywords.setdefault("output", None)  # None: read off the module's first outputs
    keywords["num_classes"] = card.get("num_classes")
    return source, keywords, card


def settle(target: TorchTarget, card: dict, detect_output: bool) -> dict:
    """Finish a target made from :func:`read_file`: with ``detect_output``, its output kind
    is read off the module's first outputs (rows of probabilities: ``"probs"``, else
    ``"logits"``); where the card gives the input shape, the module is checked and
    converted now. Returns the card with the conventions (``layout``, ``scale``)."""
    target._detect_output = detect_output
    if "input_shape" in card:
        target.input_shape = tuple(card["input_shape"])
        target.convert(target.input_shape)
    card["layout"], card["scale"] = target.host.layout, list(target.host.scale)
    return card


def _program_shapes(program: Any, layout: str) -> tuple[tuple[int, ...] | None, int | None]:
    x = aten._user_input(program).meta.get("val")
    shape = None
    if x is not None and x.ndim == 4 and all(isinstance(d, int) for d in x.shape[1:]):
        dims = tuple(int(d) for d in x.shape[1:])
        shape = (dims[1], dims[2], dims[0]) if layout == "NCHW" else dims
    k = None
    outs = [n for n in program.graph.nodes if n.op == "output"]
    if outs:
        vals = outs[0].args[0]
        if isinstance(vals, list | tuple) and len(vals) == 1 and hasattr(vals[0], "meta"):
            val = vals[0].meta.get("val")
            if val is not None and val.ndim == 2 and isinstance(val.shape[1], int):
                k = int(val.shape[1])
    return shape, k
