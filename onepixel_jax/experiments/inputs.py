"""Loading the model and the dataset split a sweep attacks, with one-line errors.

Thin wrappers over ``onepixel_jax.models.load`` and ``onepixel_jax.data.load`` that turn an
unknown name, a missing file or a damaged model card into a :class:`UsageError` whose message
fits on one line (the command line prints it as is).
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


def load_model(name: str) -> tuple[Callable, Mapping]:
    """``(predict_fn, card)`` of a committed checkpoint name, a checkpoint folder or an
    ``.onnx`` file (an ONNX Runtime target, :func:`onepixel_jax.targets.from_onnx`).

    Raises:
      UsageError: unknown name, missing files or a checkpoint that does not match its card.
      DamagedFileError: a model card that is not a JSON object or lacks a field (the zoo's
        ``CardError``, naming the card file).
    """
    from onepixel_jax import zoo

    if not isinstance(name, str) or not name:
        raise UsageError(f"model must be a checkpoint name or folder, got {name!r}")
    if name.lower().endswith(".onnx"):
        from onepixel_jax.targets.host import load_target

        if not os.path.isfile(name):
            raise UsageError(f"model file {name!r} does not exist")
        try:
            return load_target(name)
        except (ValueError, TypeError, ImportError, OSError) as exc:
            raise UsageError(f"cannot load model {name!r}: {one_line(exc)}") from exc
    known = list(zoo.list_models())
    if not os.path.exists(name) and name not in known:
        hint = ", ".join(known) if known else "none installed"
        raise UsageError(f"unknown model {name!r} (available: {hint}; see onepixel models)")
    try:
        return zoo.load(name)
    except DamagedFileError:
        raise
    except (ValueError, OSError) as exc:
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
        raise UsageError(f"cannot load dataset {name!r} split {split!r}: {one_line(exc)}") from exc
    return np.asarray(images), np.asarray(labels), list(class_names)
