"""Trained checkpoints: the typed model card, loading with SHA-256 checks, saving.

A checkpoint is a directory with ``params.msgpack`` (``flax.serialization`` msgpack of the
variables ``{"params": ..., "batch_stats": ...}``; NumPy arrays only, never pickle) and
``card.json`` (the model card). The committed checkpoints live in
``onepixel_jax/zoo/weights/`` (shipped with the package) and load by name (:func:`list_models`).

:class:`ModelCard` is parsed and validated from ``card.json``: a missing or bad field raises
:class:`CardError` naming the file and the field. The card also reads like the JSON object it
was parsed from (``card["test_accuracy"]``, ``card.get("history")``), so every field written
by training stays reachable without a typed attribute for each.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from onepixel_jax.files import (
    DamagedFileError,
    read_json_object,
    write_bytes_atomic,
    write_json_atomic,
)
from onepixel_jax.provenance import sha256_bytes, sha256_file
from onepixel_jax.zoo.architectures import ARCHITECTURES, create, init_variables

__all__ = [
    "CARD_FILE",
    "CHECKPOINT_FILE",
    "CardError",
    "ModelCard",
    "list_models",
    "load",
    "load_variables",
    "make_predict_fn",
    "model_from_card",
    "models_dir",
    "save_checkpoint",
    "write_card",
    "sha256_file",
]

CHECKPOINT_FILE = "params.msgpack"
CARD_FILE = "card.json"

PredictFn = Callable[[jax.Array], jax.Array]

_SHA256 = re.compile(r"[0-9a-f]{64}")


class CardError(DamagedFileError):
    """A model card that is not a JSON object, lacks a field or has a bad value."""


@dataclasses.dataclass(frozen=True, eq=False)
class ModelCard(Mapping):
    """The model card of a checkpoint (``card.json``), validated.

    Attributes:
      name: checkpoint name (default: the directory's name).
      architecture: a key of ``ARCHITECTURES``.
      model_kwargs: field overrides of the architecture's module (``width``, ``batch_norm``...).
      input_shape: ``(H, W, C)`` of the images the network takes.
      num_classes: number of outputs ``K``.
      class_names: ``K`` names, indexed by label.
      checkpoint_sha256: hex SHA-256 of ``params.msgpack``.
      dataset: training dataset name, when recorded.
      test_accuracy: accuracy on the card's test split, when recorded.
      parameter_count: number of trainable scalars, when recorded.
      raw: the whole JSON object (training history, provenance...); the card reads as it.
      path: the ``card.json`` it was read from (``None`` for a card built in memory).
    """

    name: str
    architecture: str
    model_kwargs: Mapping[str, Any]
    input_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]
    checkpoint_sha256: str
    dataset: str | None = None
    test_accuracy: float | None = None
    parameter_count: int | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    path: Path | None = None

    # Read-only mapping over the JSON object, so ``card["field"]`` keeps working.
    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def to_dict(self) -> dict[str, Any]:
        """The card as a JSON-ready dict (what ``card.json`` holds)."""
        return dict(self.raw)

    @classmethod
    def from_dict(cls, obj: Any, path: str | Path | None = None) -> ModelCard:
        """Parse and validate a card; :class:`CardError` names ``path`` and the bad field."""
        where = f"model card {path}" if path is not None else "model card"
        if not isinstance(obj, Mapping):
            raise CardError(f"{where} is not a JSON object")

        def bad(field: str, expected: str) -> CardError:
            if field not in obj:
                return CardError(f"{where} lacks the field {field!r} ({expected})")
            return CardError(f"{where}: field {field!r} must be {expected}, got {obj[field]!r}")

        arch = obj.get("architecture")
        if not isinstance(arch, str) or arch not in ARCHITECTURES:
            raise bad("architecture", f"one of {sorted(ARCHITECTURES)}")
        kwargs = obj.get("model_kwargs", {})
        if not isinstance(kwargs, Mapping):
            raise bad("model_kwargs", "a JSON object")
        shape = obj.get("input_shape")
        if (
            not isinstance(shape, list | tuple)
            or len(shape) != 3
            or not all(_is_int(s) and s > 0 for s in shape)
        ):
            raise bad("input_shape", "[H, W, C] of positive integers")
        default_k = kwargs.get("num_classes", ARCHITECTURES[arch].num_classes)
        num_classes = obj.get("num_classes", default_k)
        if not _is_int(num_classes) or num_classes < 1:
            raise bad("num_classes", "an integer >= 1")
        if num_classes < 2:
            raise CardError(
                f"{where}: field 'num_classes' is 1; an attacked classifier has at least 2 classes"
            )
        if _is_int(default_k) and num_classes != default_k:
            raise CardError(
                f"{where}: field 'num_classes' says {num_classes}, but the network it describes "
                f"({arch}, model_kwargs) has {default_k} outputs; make them agree"
            )
        names = obj.get("class_names") or [str(k) for k in range(num_classes)]
        if (
            not isinstance(names, list | tuple)
            or len(names) != num_classes
            or not all(isinstance(n, str) for n in names)
        ):
            raise bad("class_names", f"a list of {num_classes} strings")
        digest = obj.get("checkpoint_sha256")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise bad("checkpoint_sha256", "a hex SHA-256 (64 lower-case hex digits)")
        name = obj.get("name") or (Path(path).parent.name if path is not None else arch)
        if not isinstance(name, str):
            raise bad("name", "a string")
        dataset = obj.get("dataset")
        if dataset is not None and not isinstance(dataset, str):
            raise bad("dataset", "a string")
        accuracy = obj.get("test_accuracy")
        if accuracy is not None and (isinstance(accuracy, bool) or not _is_real(accuracy)):
            raise bad("test_accuracy", "a number")
        count = obj.get("parameter_count")
        if count is not None and not _is_int(count):
            raise bad("parameter_count", "an integer")
        return cls(
            name=name,
            architecture=arch,
            model_kwargs=dict(kwargs),
            input_shape=tuple(int(s) for s in shape),
            num_classes=int(num_classes),
            class_names=tuple(names),
            checkpoint_sha256=digest,
            dataset=dataset,
            test_accuracy=None if accuracy is None else float(accuracy),
            parameter_count=None if count is None else int(count),
            raw=dict(obj),
            path=None if path is None else Path(path),
        )

    @classmethod
    def read(cls, path: str | Path) -> ModelCard:
        """Read and validate ``path`` (a ``card.json``)."""
        try:
            obj = read_json_object(path, "model card")
        except DamagedFileError as err:
            raise CardError(str(err)) from None
        return cls.from_dict(obj, path)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating)


def models_dir() -> Path:
    """The directory of the checkpoints that ship with the package (``onepixel_jax/zoo/weights``,
    installed with it as package data)."""
    return Path(__file__).resolve().parent / "weights"


def list_models() -> list[str]:
    """Names of the committed checkpoints (directories of :func:`models_dir` with a card)."""
    root = models_dir()
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if (p / CARD_FILE).is_file() and (p / CHECKPOINT_FILE).exists()
    )


def save_checkpoint(path: str | Path, variables: Mapping[str, Any]) -> str:
    """Write ``variables`` as msgpack (``flax.serialization``) atomically; returns its SHA-256."""
    data = serialization.msgpack_serialize(jax.tree_util.tree_map(np.asarray, dict(variables)))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data)
    return sha256_bytes(data)


def write_card(directory: str | Path, card: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``directory/card.json`` atomically, after checking that it reads back as a
    :class:`ModelCard` (so no writer can leave a card that :func:`load` refuses). The one
    card writer of the package (training, fine-tuning, fooling-class rounds, promotion)."""
    out = dict(card.to_dict() if isinstance(card, ModelCard) else card)
    path = Path(directory) / CARD_FILE
    ModelCard.from_dict(out, path)  # raises CardError naming the field
    write_json_atomic(path, out)
    return out


def model_from_card(card: ModelCard | Mapping[str, Any]) -> nn.Module:
    """Module described by a model card (``architecture`` plus ``model_kwargs``)."""
    if not isinstance(card, ModelCard):
        card = ModelCard.from_dict(card)
    kwargs = dict(card.model_kwargs)
    for key in ("mean", "std"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    try:
        return create(card.architecture, **kwargs)
    except (TypeError, ValueError) as err:
        where = f"model card {card.path}" if card.path is not None else "model card"
        raise CardError(f"{where}: field 'model_kwargs' does not fit: {err}") from None


def _resolve(name_or_path: str | Path) -> Path:
    if not isinstance(name_or_path, str | Path):
        raise TypeError(f"name_or_path must be a str or Path, got {type(name_or_path).__name__}")
    path = Path(name_or_path)
    if path.is_dir() and (path / CARD_FILE).is_file():
        return path
    if path.is_file() and path.name in (CARD_FILE, CHECKPOINT_FILE):
        return path.parent
    candidate = models_dir() / str(name_or_path)
    if "/" not in str(name_or_path) and (candidate / CARD_FILE).is_file():
        return candidate
    raise ValueError(
        f"name_or_path {str(name_or_path)!r} is neither a known checkpoint nor a directory with "
        f"{CARD_FILE}; known checkpoints: {list_models()}"
    )


def load_variables(
    name_or_path: str | Path, *, verify: bool = True
) -> tuple[dict[str, Any], ModelCard]:
    """The variables of a checkpoint and its card.

    Returns ``(variables, card)``: ``variables`` is ``{"params": ..., ["batch_stats": ...]}``
    with float32 ``jax.Array`` leaves, checked against the architecture of the card.

    Raises:
      ValueError: unknown name, checksum mismatch (``verify``), a checkpoint that is not
        msgpack or does not fit the card; :class:`CardError` for a bad card.
    """
    directory = _resolve(name_or_path)
    card = ModelCard.read(directory / CARD_FILE)
    ckpt = directory / CHECKPOINT_FILE
    try:
        data = ckpt.read_bytes()
    except OSError as err:
        raise ValueError(f"checkpoint {ckpt} cannot be read ({err.strerror or err})") from None
    if verify:
        digest = sha256_bytes(data)
        if digest != card.checkpoint_sha256:
            raise ValueError(
                f"checkpoint {ckpt} has SHA-256 {digest}, but its card says "
                f"{card.checkpoint_sha256}; the file is corrupt or does not belong to this card"
            )
    try:
        restored = serialization.msgpack_restore(data)
    except Exception as err:  # msgpack raises several unrelated types
        raise ValueError(f"checkpoint {ckpt} is not a valid msgpack file: {err}") from None
    model = model_from_card(card)
    expected_tree = jax.eval_shape(
        lambda: init_variables(model, card.input_shape, jax.random.PRNGKey(0))
    )
    exp_shapes = jax.tree_util.tree_map(lambda a: tuple(a.shape), expected_tree)
    got_shapes = jax.tree_util.tree_map(lambda a: tuple(np.shape(a)), restored)
    if exp_shapes != got_shapes:
        raise ValueError(f"checkpoint {ckpt} does not match the architecture in its card")
    if not all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree_util.tree_leaves(restored)):
        raise ValueError(
            f"checkpoint {ckpt} holds NaN or infinite weights; it cannot be attacked or trained "
            "from (train it again, or restore the file)"
        )
    variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), restored)
    return variables, card


def make_predict_fn(
    model: nn.Module, variables: Mapping[str, Any], input_shape: tuple[int, int, int]
) -> PredictFn:
    """``predict_fn(batch) -> probs``: float32 ``(B, H, W, C)`` pixels in ``[0, 255]`` to
    softmax probabilities ``(B, K)``; inference mode (BatchNorm running averages, no dropout).
    A ``(B, H, W)`` batch is accepted for one-channel inputs. JAX-traceable."""
    height, width, channels = input_shape
    variables = dict(variables)

    def predict_fn(batch: jax.Array) -> jax.Array:
        batch = jnp.asarray(batch, jnp.float32)
        if batch.ndim == 3 and channels == 1:
            batch = batch[..., None]
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (height, width, channels):
            raise ValueError(
                f"batch must have shape (B, {height}, {width}, {channels}), got {batch.shape}"
            )
        logits = model.apply(variables, batch, train=False)
        return jax.nn.softmax(logits, axis=-1)

    # What it computes, for evaluators that exploit the network's structure
    # (onepixel_jax.targets.incremental); the function itself is unchanged.
    predict_fn.module, predict_fn.variables, predict_fn.input_shape = model, variables, input_shape
    return predict_fn


def load(name_or_path: str | Path, *, verify: bool = True) -> tuple[PredictFn, ModelCard]:
    """Load a trained checkpoint.

    Args:
      name_or_path: a committed checkpoint name (see :func:`list_models`, e.g.
        ``"lenet-mnist"``) or a directory holding ``card.json`` and ``params.msgpack``.
      verify: check the checkpoint's SHA-256 against the card (default).

    Returns:
      ``(predict_fn, card)``: ``predict_fn(batch)`` maps float32 ``(B, H, W, C)`` pixels in
      ``[0, 255]`` to softmax probabilities ``(B, K)`` float32; it is JAX-traceable (jit/vmap)
      and closes over the parameters. ``card`` is the :class:`ModelCard`.

    Raises:
      ValueError: unknown name, checksum mismatch, or a checkpoint that does not fit the card
        (:class:`CardError`, a ``ValueError`` too, for a bad card).
    """
    variables, card = load_variables(name_or_path, verify=verify)
    return make_predict_fn(model_from_card(card), variables, card.input_shape), card
