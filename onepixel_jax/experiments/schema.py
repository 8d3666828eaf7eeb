"""What the files of a run folder must hold: checked on every load, one line per problem.

:func:`check_run_info` (``run.json``), :func:`check_record` (one line of a results file,
against the run it belongs to) and :func:`check_saved_images` (``images.npz``) check types,
ranges, lengths and shapes; the first problem raises
:class:`~onepixel_jax.files.DamagedFileError` naming the file, the line or field, what was
expected and what to do. A file that passes can be measured and resumed without any further
check: the report and the sweep rely on it.

Fields a run folder written by ``onepixel attack`` always has are required; older or
hand-written run folders may lack the optional ones (``image_shape``, ``config.pixels``,
``position``...), and whatever is present is checked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from onepixel_jax.experiments.selection import MODES
from onepixel_jax.files import DamagedFileError
from onepixel_jax.objective import STOP_RULES

# The largest class index, dataset index or count a run file may hold: beyond int32 the
# engine's arrays would wrap silently.
INDEX_LIMIT = 2**31 - 1
PROB_TOLERANCE = 1e-2  # |sum of a probability row - 1| allowed (records are rounded)

_CONFIG_INTS = {
    "n_images": 1,
    "pixels": 1,
    "popsize": 1,
    "max_iters": 0,
    "seed": 0,
    "chunk_size": 1,
}
# run.json spells "never" as null or "none" (the CLI flag's value); the rules are objective's.
_EARLY_STOP = (*STOP_RULES, "none")


class RunInfoView:
    """The facts of a checked ``run.json`` that records are checked against."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        config = info["config"]
        self.num_classes = int(info["num_classes"])
        self.mode = config.get("mode", "untargeted")
        self.label_of = dict(zip(info["indices"], info["labels"], strict=True))
        self.position_of = {index: p for p, index in enumerate(info["indices"])}
        shape = info.get("image_shape")
        self.image_shape = None if shape is None else tuple(shape)
        self.pixels = config.get("pixels")
        self.max_iters = config.get("max_iters")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Checker:
    """Raises DamagedFileError with ``where`` (file, line) and ``hint`` in the message."""

    def __init__(self, where: str, hint: str) -> None:
        self.where = where
        self.hint = hint

    def fail(self, field: str, expected: str, value: Any = ...) -> DamagedFileError:
        got = "" if value is ... else f", got {_show(value)}"
        return DamagedFileError(
            f"{self.where}: field {field!r} must be {expected}{got}; {self.hint}"
        )

    def missing(self, fields: list[str]) -> DamagedFileError:
        return DamagedFileError(f"{self.where} lacks {', '.join(fields)}; {self.hint}")

    def int_field(self, field: str, value: Any, lo: int = 0, hi: int = INDEX_LIMIT) -> int:
        if not _is_int(value) or not lo <= value <= hi:
            raise self.fail(field, f"an integer in [{lo}, {hi}]", value)
        return value

    def str_field(self, field: str, value: Any, empty: bool = False) -> str:
        if not isinstance(value, str) or (not empty and not value):
            raise self.fail(field, "a non-empty string", value)
        return value

    def int_list(self, field: str, value: Any, lo: int = 0, hi: int = INDEX_LIMIT) -> list[int]:
        if not isinstance(value, list):
            raise self.fail(field, "a list of integers", value)
        for i, v in enumerate(value):
            if not _is_int(v) or not lo <= v <= hi:
                raise self.fail(f"{field}[{i}]", f"an integer in [{lo}, {hi}]", v)
        return value

    def prob_row(self, field: str, value: Any, k: int) -> None:
        if not isinstance(value, list) or len(value) != k:
            got = f"{len(value)} values" if isinstance(value, list) else _show(value)
            raise DamagedFileError(
                f"{self.where}: field {field!r} must be a list of {k} class probabilities, got "
                f"{got}; {self.hint}"
            )
        if not all(_is_number(v) for v in value):
            bad = next(v for v in value if not _is_number(v))
            raise self.fail(field, "a list of numbers", bad)
        p = np.asarray(value, np.float64)
        if not np.all(np.isfinite(p)) or p.min() < -1e-6 or p.max() > 1 + 1e-6:
            raise self.fail(field, "probabilities in [0, 1]", [float(v) for v in p[:4]])
        if abs(p.sum() - 1.0) > PROB_TOLERANCE:
            raise self.fail(field, f"probabilities summing to 1 (they sum to {p.sum():.4g})")


# --------------------------------------------------------------------------------------
# run.json


def check_run_info(info: Any, path: str | Path, hint: str) -> dict:
    """Check a parsed ``run.json``; returns it. Raises DamagedFileError naming the field."""
    c = _Checker(f"run info {path}", hint)
    if not isinstance(info, dict):
        raise DamagedFileError(f"run info {path} is not a JSON object; {hint}")
    missing = [k for k in ("config", "indices", "labels", "num_classes") if k not in info]
    if missing:
        raise c.missing(missing)
    config = info["config"]
    if not isinstance(config, dict):
        raise c.fail("config", "a JSON object", config)
    for key in ("model", "dataset"):
        if key not in config:
            raise c.missing([f"config.{key}"])
        c.str_field(f"config.{key}", config[key])
    if "split" in config:
        c.str_field("config.split", config["split"])
    if "mode" in config and config["mode"] not in MODES:
        raise c.fail("config.mode", f"one of {', '.join(MODES)}", config["mode"])
    for key, lo in _CONFIG_INTS.items():
        if key in config:
            hi = 2**32 - 1 if key == "seed" else INDEX_LIMIT
            c.int_field(f"config.{key}", config[key], lo, hi)
    if "methods" in config:
        methods = config["methods"]
        if (
            not isinstance(methods, list)
            or not methods
            or not all(isinstance(m, str) and m for m in methods)
            or len(set(methods)) != len(methods)
        ):
            raise c.fail("config.methods", "a list of distinct method names", methods)
    if "baseline" in config and not isinstance(config["baseline"], str | None):
        raise c.fail("config.baseline", "a method name", config["baseline"])
    if config.get("early_stop", None) not in _EARLY_STOP:
        raise c.fail("config.early_stop", "none or one of " + ", ".join(filter(None, STOP_RULES)))
    threshold = config.get("threshold")
    if threshold is not None and (
        not _is_number(threshold) or not math.isfinite(threshold) or not 0 < threshold < 1
    ):
        raise c.fail("config.threshold", "null or a number in (0, 1)", threshold)
    if not isinstance(config.get("include_misclassified", False), bool):
        raise c.fail("config.include_misclassified", "true or false")

    k = c.int_field("num_classes", info["num_classes"], 2, INDEX_LIMIT)
    indices = c.int_list("indices", info["indices"])
    labels = c.int_list("labels", info["labels"], 0, k - 1)
    if len(labels) != len(indices):
        raise c.fail("labels", f"a list of {len(indices)} labels (one per index)", len(labels))
    if len(set(indices)) != len(indices):
        raise c.fail("indices", "distinct dataset indices")
    if "n_images" in config and config["n_images"] != len(indices):
        raise c.fail(
            "indices", f"a list of config.n_images = {config['n_images']} indices", len(indices)
        )
    if "true_labels" in info:
        true = c.int_list("true_labels", info["true_labels"])
        if len(true) != len(indices):
            raise c.fail("true_labels", f"a list of {len(indices)} labels", len(true))
    if "split_size" in info:
        size = c.int_field("split_size", info["split_size"], 1)
        if indices and max(indices) >= size:
            raise c.fail("indices", f"indices below split_size = {size}", max(indices))
    names = info.get("class_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise c.fail("class_names", "a list of strings", names)
    if names and len(names) != k:
        raise c.fail("class_names", f"a list of num_classes = {k} names", len(names))
    shape = info.get("image_shape")
    if shape is not None and (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(_is_int(s) and 1 <= s <= 2**16 for s in shape)
    ):
        raise c.fail("image_shape", "[height, width, channels] of positive integers", shape)
    sha = info.get("model_sha256")
    if sha is not None and not isinstance(sha, str):
        raise c.fail("model_sha256", "a string or null", sha)
    for key in ("command", "created", "data_dir"):
        if info.get(key) is not None and not isinstance(info[key], str):
            raise c.fail(key, "a string", info[key])
    for key in ("model_card", "versions", "machine"):
        if key in info and not isinstance(info[key], dict):
            raise c.fail(key, "a JSON object", info[key])
    return info


# --------------------------------------------------------------------------------------
# Records


RECORD_FIELDS = (
    "method",
    "index",
    "label",
    "target",
    "success",
    "predicted",
    "queries",
    "pixels",
    "probs",
    "original_probs",
    "fitness",
)


def check_record(rec: Any, run: RunInfoView, path: str | Path, line: int, hint: str) -> None:
    """Check one record of ``path`` (at ``line``) against its run; DamagedFileError if bad."""
    c = _Checker(f"{path} line {line}", hint)
    if not isinstance(rec, dict):
        raise DamagedFileError(f"{path} line {line} is not a JSON object; {hint}")
    missing = [k for k in RECORD_FIELDS if k not in rec]
    if missing:
        raise DamagedFileError(f"{path} line {line}: the record lacks {', '.join(missing)}; {hint}")
    k = run.num_classes
    c.str_field("method", rec["method"])
    index = c.int_field("index", rec["index"])
    if index not in run.label_of:
        raise DamagedFileError(
            f"{path} line {line}: image {index} is not one of the run's images (run.json "
            f"indices); the record belongs to another run; {hint}"
        )
    label = c.int_field("label", rec["label"], 0, k - 1)
    if label != run.label_of[index]:
        raise c.fail("label", f"the run's label of image {index}, {run.label_of[index]}", label)
    target = rec["target"]
    if run.mode == "untargeted":
        if target is not None:
            raise c.fail("target", "null in an untargeted run", target)
    else:
        c.int_field("target", target, 0, k - 1)
        if target == label:
            raise c.fail("target", f"a class other than the label {label}", target)
    if not isinstance(rec["success"], bool):
        raise c.fail("success", "true or false", rec["success"])
    c.int_field("predicted", rec["predicted"], 0, k - 1)
    c.int_field("queries", rec["queries"], 0, 2**62)
    if "position" in rec:
        c.int_field("position", rec["position"])
    _check_pixels(c, rec, run)
    c.prob_row("probs", rec["probs"], k)
    c.prob_row("original_probs", rec["original_probs"], k)
    fitness = rec["fitness"]
    if (
        not isinstance(fitness, list)
        or not fitness
        or not all(_is_number(f) and not math.isnan(f) for f in fitness)
    ):
        raise c.fail("fitness", "a non-empty list of numbers (the best fitness per generation)")
    if _is_int(run.max_iters) and len(fitness) > run.max_iters + 1:
        raise c.fail("fitness", f"at most max_iters + 1 = {run.max_iters + 1} values", len(fitness))
    for key in ("distortion", "seconds", "compile_seconds"):
        value = rec.get(key)
        if value is not None and (not _is_number(value) or not value >= 0):
            raise c.fail(key, "a number >= 0", value)


def _check_pixels(c: _Checker, rec: dict, run: RunInfoView) -> None:
    pixels = rec["pixels"]
    expected = "a list of pixels [row, col, value, ...] of integers"
    if not isinstance(pixels, list) or not pixels:
        raise c.fail("pixels", expected, pixels)
    if _is_int(run.pixels) and len(pixels) != run.pixels:
        raise c.fail("pixels", f"a list of {run.pixels} pixels (config.pixels)", len(pixels))
    h, w, ch = run.image_shape if run.image_shape is not None else (None, None, None)
    width = None if ch is None else 2 + ch
    for i, row in enumerate(pixels):
        if not isinstance(row, list) or len(row) < 3 or not all(_is_int(v) for v in row):
            raise c.fail(f"pixels[{i}]", "[row, col, value, ...] of integers", row)
        if width is not None and len(row) != width:
            raise c.fail(f"pixels[{i}]", f"{width} integers (row, col, {ch} channel values)", row)
        if len(row) != len(pixels[0]):
            raise c.fail(f"pixels[{i}]", "as long as the other pixels", row)
        r, col, values = row[0], row[1], row[2:]
        if r < 0 or col < 0 or (h is not None and (r >= h or col >= w)):
            where = "" if h is None else f" inside the {h}x{w} image"
            raise c.fail(f"pixels[{i}]", f"a position{where}", row[:2])
        if min(values) < 0 or max(values) > 255:
            raise c.fail(f"pixels[{i}]", "channel values in [0, 255]", values)
    before = rec.get("original_values")
    if before is not None:
        if not isinstance(before, list) or len(before) != len(pixels):
            raise c.fail("original_values", f"a list of {len(pixels)} pixel values", before)
        for i, row in enumerate(before):
            if (
                not isinstance(row, list)
                or len(row) != len(pixels[0]) - 2
                or not all(_is_int(v) and 0 <= v <= 255 for v in row)
            ):
                raise c.fail(f"original_values[{i}]", "channel values in [0, 255]", row)


# --------------------------------------------------------------------------------------
# images.npz


def check_saved_images(
    indices: np.ndarray, images: np.ndarray, run: RunInfoView | None, path: str | Path, hint: str
) -> None:
    """Check the arrays of ``images.npz`` against the run; DamagedFileError if they do not fit."""
    if indices.ndim != 1 or len(images) != len(indices):
        raise DamagedFileError(f"{path} holds mismatched indices and images; {hint}")
    if not np.issubdtype(indices.dtype, np.integer):
        raise DamagedFileError(f"{path}: indices must be integers, got {indices.dtype}; {hint}")
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DamagedFileError(
            f"{path}: images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}; {hint}"
        )
    if run is None:
        return
    shape = images.shape[1:] if images.ndim == 4 else (*images.shape[1:], 1)
    if run.image_shape is not None and tuple(shape) != run.image_shape:
        raise DamagedFileError(
            f"{path}: images are {'x'.join(map(str, shape))}, the run's are "
            f"{'x'.join(map(str, run.image_shape))}; {hint}"
        )
    unknown = [int(i) for i in indices if int(i) not in run.label_of]
    if unknown:
        raise DamagedFileError(
            f"{path}: image {unknown[0]} is not one of the run's images (run.json indices); {hint}"
        )


__all__ = [
    "INDEX_LIMIT",
    "RECORD_FIELDS",
    "RunInfoView",
    "check_record",
    "check_run_info",
    "check_saved_images",
]
