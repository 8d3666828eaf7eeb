"""Loading the model and the dataset split a sweep attacks, with one-line errors.

Thin wrappers over ``onepixel_jax.models.load`` and ``onepixel_jax.data.load`` that turn an
unknown name, a missing file or a damaged model card into a :class:`UsageError` whose message
fits on one line (the command line prints it as is). Every model loaded here is checked
against the model contract (:func:`onepixel_jax.targets.contract.check_model`) on one small
batch, and :func:`check_sweep` checks a sweep's sizes, labels and model against each other
before any attack.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import numpy as np

from onepixel_jax.errors import UsageError
from onepixel_jax.files import DamagedFileError


def one_line(exc: BaseException) -> str:
    """The first line of an error message (with its list when the line ends in a colon)."""
    lines = [ln.strip(" -") for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"
    return lines[0]


def load_model(
    name: str, check: bool = True, torch_arch: str | None = None
) -> tuple[Callable, Mapping]:
    """``(predict_fn, card)`` of a committed checkpoint name, a checkpoint folder, an
    ``.onnx`` file (an ONNX Runtime target, :func:`onepixel_jax.targets.from_onnx`) or a
    saved PyTorch model (a ``.pt2`` archive, or a state dict with ``torch_arch``,
    ``package.module:Class``; :func:`onepixel_jax.targets.host.load_target`).

    With ``check`` and a card that gives the input shape, the model contract is checked on
    two synthetic images (:func:`check_loaded_model`); otherwise :func:`check_sweep` checks
    it on the dataset's images.

    Raises:
      UsageError: unknown name, missing files, a checkpoint that does not match its card, or
        a model that breaks the contract (``ModelContractError``).
      DamagedFileError: a model card that is not a JSON object or lacks a field (the zoo's
        ``CardError``, naming the card file).
    """
    predict_fn, card = _load_model(name, torch_arch)
    if check and _card_shape(card) is not None:
        check_loaded_model(name, predict_fn, card)
    return predict_fn, card


def _card_shape(card: Mapping) -> tuple[int, ...] | None:
    shape = card.get("input_shape") if isinstance(card, Mapping) else None
    if isinstance(shape, list | tuple) and len(shape) == 3:
        return tuple(int(s) for s in shape)
    return None


def _card_classes(card: Mapping) -> int | None:
    k = card.get("num_classes") if isinstance(card, Mapping) else None
    return int(k) if isinstance(k, int) and not isinstance(k, bool) else None


def check_loaded_model(name: str, predict_fn: Callable, card: Mapping, images=None) -> int:
    """The contract check of a loaded model (on ``images``, or on synthetic images of the
    card's input shape); returns ``K``. Raises ModelContractError (a UsageError)."""
    from onepixel_jax.targets.contract import check_model

    return check_model(
        predict_fn,
        images,
        image_shape=None if images is not None else _card_shape(card),
        num_classes=_card_classes(card),
        name=f"model {name!r}",
    )


def check_sizes(config, batch_size=None) -> None:
    """The sizes of a sweep that can be checked before loading anything: the engine's int32
    counters (UsageError naming the flag)."""
    from onepixel_jax.experiments.limits import check_sweep_sizes

    check_sweep_sizes(
        popsize=config.popsize,
        max_iters=config.max_iters,
        chunk_size=config.chunk_size,
        n_images=config.n_images,
        batch_size=batch_size,
    )


def check_sweep(config, predict_fn: Callable, card: Mapping, images, labels, batch_size=None):
    """Check a sweep before any attack: its sizes against the engine's counters and this
    machine's memory, the dataset's labels against the model's classes, and (when the card
    did not give the input shape) the model contract on the dataset's first images.

    Raises:
      UsageError: naming the flag or input at fault.
    """
    from onepixel_jax.experiments.limits import check_sweep_sizes

    images = np.asarray(images)
    shape = images.shape[1:] if images.ndim == 4 else (*images.shape[1:], 1)
    k = _card_classes(card)
    if _card_shape(card) is None or k is None:
        k = check_loaded_model(config.model, predict_fn, card, images[:2])
    if config.pixels > shape[0] * shape[1]:
        raise UsageError(
            f"--pixels {config.pixels} exceeds the {shape[0]}x{shape[1]} image size of "
            f"{config.dataset!r}"
        )
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise UsageError(
            f"dataset {config.dataset!r} has labels in [{int(labels.min())}, "
            f"{int(labels.max())}], but model {config.model!r} has {k} classes; attack it on "
            "a dataset of its own classes"
        )
    check_sweep_sizes(
        popsize=config.popsize,
        max_iters=config.max_iters,
        chunk_size=config.chunk_size,
        n_images=config.n_images,
        pixels=config.pixels,
        image_shape=shape,
        attacks_per_image=k - 1 if config.mode == "all-targets" else 1,
        batch_size=batch_size,
    )


def _load_model(name: str, torch_arch: str | None = None) -> tuple[Callable, Mapping]:
    """The command line's view of :func:`onepixel_jax.targets.host.load_target` (the one
    model resolver: zoo names and folders, ONNX, PyTorch): its errors as one-line
    UsageErrors, with the known names for an unknown one."""
    from onepixel_jax import zoo
    from onepixel_jax.targets.host import MODEL_FILE_SUFFIXES, load_target

    if not isinstance(name, str) or not name:
        raise UsageError(f"model must be a checkpoint name or folder, got {name!r}")
    is_file = name.lower().endswith(MODEL_FILE_SUFFIXES) or torch_arch is not None
    if is_file and not os.path.isfile(name):
        raise UsageError(f"model file {name!r} does not exist")
    if not is_file and not os.path.exists(name) and name not in zoo.list_models():
        known = ", ".join(zoo.list_models()) or "none installed"
        raise UsageError(f"unknown model {name!r} (available: {known}; see onepixel models)")
    try:
        return load_target(name, torch_arch=torch_arch)
    except DamagedFileError:
        raise
    except (ValueError, TypeError, ImportError, OSError) as exc:
        raise UsageError(f"cannot load model {name!r}: {one_line(exc)}") from exc


def load_dataset(
    name: str, split: str, data_dir: str | None = None, download: bool = False
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images uint8 NHWC, labels, class_names)`` of a dataset split.

    Nothing is downloaded unless ``download`` is True (``onepixel_jax.data.load`` decides how).

    Raises:
      UsageError: unknown name or split, data not found, damaged files.
    """
    from onepixel_jax import data

    try:
        images, labels, class_names = data.load(name, split, data_dir=data_dir, download=download)
    except (KeyError, ValueError, OSError, ImportError) as exc:
        line = one_line(exc)
        if line.startswith(f"dataset {name!r} split {split!r}: "):
            line = line.split(": ", 1)[1]
        raise UsageError(f"cannot load dataset {name!r} split {split!r}: {line}") from exc
    return np.asarray(images), np.asarray(labels), list(class_names)
