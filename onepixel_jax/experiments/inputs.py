"""Loading the model and the dataset split a sweep attacks, with one-line errors.

Thin wrappers over ``onepixel_jax.models.load`` and ``onepixel_jax.data.load`` that turn an
unknown name, a missing file or a damaged model card into a :class:`UsageError` whose message
fits on one line (the command line prints it as is).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from onepixel_jax.errors import UsageError
from onepixel_jax.files import DamagedFileError, read_json_object

# Fields a model card needs for an attack (the loader needs more to build the network).
CARD_FIELDS = ("architecture", "input_shape", "checkpoint_sha256")


def one_line(exc: BaseException) -> str:
    """The first line of an error message (with its list when the line ends in a colon)."""
    lines = [ln.strip(" -") for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"
    return lines[0]


def _models():
    try:
        from onepixel_jax import zoo as models
    except ImportError:
        from onepixel_jax import models
    return models


def _card_path(models, name: str) -> Path | None:
    """The card file that ``models.load(name)`` would read, if it can be told beforehand."""
    card_file = getattr(models, "CARD_FILE", "card.json")
    path = Path(name)
    if path.is_dir():
        return path / card_file
    if path.is_file() and path.name == card_file:
        return path
    if "/" not in name:
        candidate = Path(models.models_dir()) / name / card_file
        if candidate.is_file():
            return candidate
    return None


def load_model(name: str) -> tuple[Callable, dict]:
    """``(predict_fn, card)`` of a committed checkpoint name or a checkpoint folder.

    Raises:
      UsageError: unknown name, missing files or a checkpoint that does not match its card.
      DamagedFileError: a model card that is not a JSON object or lacks a needed field.
    """
    models = _models()
    if not isinstance(name, str) or not name:
        raise UsageError(f"model must be a checkpoint name or folder, got {name!r}")
    known = list(models.list_models())
    if not os.path.exists(name) and name not in known:
        hint = ", ".join(known) if known else "none installed"
        raise UsageError(f"unknown model {name!r} (available: {hint}; see onepixel models)")
    card_path = _card_path(models, name)
    if card_path is not None:
        card = read_json_object(card_path, what="model card")
        missing = [k for k in CARD_FIELDS if k not in card]
        if missing:
            raise DamagedFileError(f"model card {card_path} lacks {', '.join(missing)}")
    try:
        return models.load(name)
    except (KeyError, TypeError, AttributeError) as exc:
        raise DamagedFileError(
            f"model card of {name!r} is damaged ({type(exc).__name__}: {one_line(exc)})"
        ) from exc
    except (ValueError, OSError) as exc:
        raise UsageError(f"cannot load model {name!r}: {one_line(exc)}") from exc


def load_dataset(
    name: str, split: str, data_dir: str | None = None, download: bool = False
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images uint8 NHWC, labels, class_names)`` of a dataset split.

    Nothing is downloaded unless ``download`` is True (the data loader decides how).

    Raises:
      UsageError: unknown name or split, data not found, damaged files.
    """
    from onepixel_jax import data

    kwargs = {"data_dir": data_dir}
    if "download" in inspect.signature(data.load).parameters:
        kwargs["download"] = download
    elif download:
        raise UsageError("this version of the data loader cannot download")
    try:
        images, labels, class_names = data.load(name, split, **kwargs)
    except (KeyError, ValueError, OSError, ImportError) as exc:
        raise UsageError(f"cannot load dataset {name!r} split {split!r}: {one_line(exc)}") from exc
    return np.asarray(images), np.asarray(labels), list(class_names)
