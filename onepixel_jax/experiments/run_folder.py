"""The run folder of an attack sweep: its file names and every read and write of them.

Layout::

    run.json        configuration, reproducing command, provenance, selected images
    results.jsonl   one JSON record per attack (method, index, label, target, pixels, ...)
    images.npz      the clean attacked images (indices, images), for the report's examples
    summary.json, report.md, *.png   written by the report

Writes go through :mod:`onepixel_jax.files` (atomic replace, fsynced JSON lines); a file that
cannot be read back raises :class:`~onepixel_jax.files.DamagedFileError` with its path and
what to do, which the command line shows as one line.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from onepixel_jax import provenance
from onepixel_jax.errors import UsageError
from onepixel_jax.files import (
    DamagedFileError,
    append_jsonl,
    read_json_object,
    read_jsonl,
    write_bytes_atomic,
    write_json_atomic,
)

RUN_INFO = "run.json"
RESULTS = "results.jsonl"
IMAGES = "images.npz"
SUMMARY = "summary.json"
REPORT = "report.md"

# The clean images saved for the report are capped (a few thousand CIFAR-10 images).
MAX_SAVED_IMAGE_BYTES = 64 * 2**20
# Fields every run.json and every record must have for the report to read it.
RUN_INFO_FIELDS = ("config", "indices", "labels", "num_classes")
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
DAMAGED_HINT = "delete the run folder or use another --out"

PathLike = str | os.PathLike


def run_info_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / RUN_INFO


def results_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / RESULTS


def images_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / IMAGES


def has_run_info(run_dir: PathLike) -> bool:
    return run_info_path(run_dir).exists()


def provenance_fields() -> dict[str, Any]:
    """Where a run was made: package versions, machine and UTC creation time."""
    return {
        "versions": provenance.package_versions(),
        "machine": provenance.machine_info(),
        "created": provenance.utc_now(),
    }


# --------------------------------------------------------------------------------------
# run.json


def read_run_info(run_dir: PathLike, hint: str = DAMAGED_HINT) -> dict:
    """The run's ``run.json`` as a dict.

    Raises:
      UsageError: ``run_dir`` is not a run folder (no ``run.json``).
      DamagedFileError: ``run.json`` is not a JSON object or lacks a field.
    """
    path = run_info_path(run_dir)
    if not path.exists():
        if not Path(run_dir).is_dir():
            raise UsageError(f"run folder {run_dir} not found")
        raise UsageError(f"{run_dir} is not a run folder (no {RUN_INFO})")
    try:
        info = read_json_object(path, what="run info")
    except DamagedFileError as exc:
        raise DamagedFileError(f"{exc}; {hint}") from None
    missing = [k for k in RUN_INFO_FIELDS if k not in info]
    if missing:
        raise DamagedFileError(f"run info {path} lacks {', '.join(missing)}; {hint}")
    if not isinstance(info["config"], dict):
        raise DamagedFileError(f"run info {path}: config is not an object; {hint}")
    return info


def write_run_info(run_dir: PathLike, info: dict) -> None:
    """Write ``run.json`` atomically (the folder must exist)."""
    write_json_atomic(run_info_path(run_dir), info)


# --------------------------------------------------------------------------------------
# results.jsonl


def record_key(rec: dict) -> tuple[str, int, int]:
    """Identity of a record: (method, dataset index, target or -1)."""
    target = rec.get("target")
    return (rec["method"], int(rec["index"]), -1 if target is None else int(target))


def read_records(run_dir: PathLike, repair: bool = False, hint: str = DAMAGED_HINT) -> list[dict]:
    """All complete records of the run's ``results.jsonl`` (``[]`` when there is none).

    A last line cut short by a kill is ignored; with ``repair=True`` the file is also
    truncated to its last complete line so that appending continues cleanly. A damaged
    record before the last line, or one without the record fields, raises DamagedFileError.
    """
    path = results_path(run_dir)
    try:
        records = read_jsonl(path, repair=repair)
    except DamagedFileError as exc:
        raise DamagedFileError(f"{exc}; {hint}") from None
    except OSError as exc:
        raise DamagedFileError(f"{path} cannot be read ({exc.strerror}); {hint}") from None
    for n, rec in enumerate(records, 1):
        missing = [k for k in RECORD_FIELDS if k not in rec]
        if missing:
            raise DamagedFileError(f"{path}: record {n} lacks {', '.join(missing)}; {hint}")
    return records


def append_records(run_dir: PathLike, records: Iterable[dict]) -> None:
    """Append records to ``results.jsonl``, each flushed and fsynced."""
    append_jsonl(results_path(run_dir), records)


# --------------------------------------------------------------------------------------
# images.npz


def max_saved_images(image_nbytes: int) -> int:
    """How many clean images ``images.npz`` holds at most (MAX_SAVED_IMAGE_BYTES)."""
    return max(1, MAX_SAVED_IMAGE_BYTES // max(int(image_nbytes), 1))


def _load_npz(run_dir: PathLike, hint: str) -> tuple[np.ndarray, np.ndarray] | None:
    path = images_path(run_dir)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            indices, images = np.asarray(saved["indices"]), np.asarray(saved["images"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DamagedFileError(f"{path} cannot be read ({type(exc).__name__}); {hint}") from None
    if indices.ndim != 1 or len(images) != len(indices):
        raise DamagedFileError(f"{path} holds mismatched indices and images; {hint}")
    return indices, images


def saved_image_count(run_dir: PathLike, hint: str = DAMAGED_HINT) -> int:
    """Number of clean images in ``images.npz`` (0 when there is none)."""
    saved = _load_npz(run_dir, hint)
    return 0 if saved is None else len(saved[0])


def read_images(run_dir: PathLike, hint: str = DAMAGED_HINT) -> dict[int, np.ndarray]:
    """The saved clean images by dataset index (``{}`` when there is no ``images.npz``)."""
    saved = _load_npz(run_dir, hint)
    if saved is None:
        return {}
    return {int(i): img for i, img in zip(saved[0], saved[1], strict=True)}


def save_images(run_dir: PathLike, indices: np.ndarray, images: np.ndarray) -> None:
    """Write the clean images ``images[indices]`` (capped) to ``images.npz`` atomically."""
    indices = np.asarray(indices)[: max_saved_images(images[0].nbytes)]
    buf = io.BytesIO()
    np.savez_compressed(buf, indices=indices, images=images[indices])
    write_bytes_atomic(images_path(run_dir), buf.getvalue())


# --------------------------------------------------------------------------------------
# Report outputs


def load_run(run_dir: PathLike, hint: str = DAMAGED_HINT) -> tuple[dict, list[dict]]:
    """``(run info, records)`` of a run folder; a torn last line is ignored."""
    return read_run_info(run_dir, hint), read_records(run_dir, hint=hint)


def write_summary(run_dir: PathLike, summary: dict) -> Path:
    path = Path(run_dir) / SUMMARY
    write_json_atomic(path, summary)
    return path


def write_report_text(run_dir: PathLike, text: str) -> Path:
    path = Path(run_dir) / REPORT
    write_bytes_atomic(path, text.encode("utf-8"))
    return path


__all__ = [
    "IMAGES",
    "REPORT",
    "RESULTS",
    "RUN_INFO",
    "SUMMARY",
    "append_records",
    "load_run",
    "read_images",
    "read_records",
    "read_run_info",
    "record_key",
    "save_images",
    "saved_image_count",
    "write_run_info",
]
