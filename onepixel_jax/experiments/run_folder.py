"""The run folder of an attack sweep: its file names and every read and write of them.

Layout::

    run.json        configuration, reproducing command, provenance, selected images
    results.jsonl   one JSON record per attack (method, index, label, target, pixels, ...)
    results.I-of-N.jsonl   the records of share I of N (``onepixel attack --shard I/N`` or
                    process I of N); every results file is read, the records merged
    images.npz      the clean attacked images (indices, images), for the report's examples
    summary.json, report.md, *.png   written by the report

Writes go through :mod:`onepixel_jax.files` (atomic replace, fsynced JSON lines, never
through a symbolic link or over a non-regular file). Every read is checked against
:mod:`~onepixel_jax.experiments.schema` (types, ranges, shapes, nesting): a file that cannot be
read back, or holds something no run writes, raises
:class:`~onepixel_jax.files.DamagedFileError` naming the file, the line or field and what to
do, which the command line shows as one line. A writer holds the folder's lock
(:mod:`~onepixel_jax.experiments.lock`, the ``.lock`` files).
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
from onepixel_jax.experiments import schema
from onepixel_jax.files import (
    DamagedFileError,
    UnsafeFileError,
    append_jsonl,
    check_readable_file,
    read_json_object,
    read_jsonl_lines,
    write_bytes_atomic,
    write_json_atomic,
)

RUN_INFO = "run.json"
RESULTS = "results.jsonl"
SHARD_RESULTS = "results.{i}-of-{n}.jsonl"
IMAGES = "images.npz"
SUMMARY = "summary.json"
REPORT = "report.md"

# The clean images saved for the report are capped (a few thousand CIFAR-10 images).
MAX_SAVED_IMAGE_BYTES = 64 * 2**20
# Fields every run.json and every record must have for the report to read it.
RUN_INFO_FIELDS = ("config", "indices", "labels", "num_classes")
RECORD_FIELDS = schema.RECORD_FIELDS
DAMAGED_HINT = "delete the run folder or use another --out"
RECORD_HINT = "delete that line and run the same onepixel attack command again to redo the attack"
# The files a run's records live in: nothing the package writes may replace them.
RECORD_FILES = (RUN_INFO, RESULTS, IMAGES)

PathLike = str | os.PathLike


def run_info_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / RUN_INFO


def results_path(run_dir: PathLike, shard: tuple[int, int] | None = None) -> Path:
    """The results file of the run, or of share ``shard = (i, n)`` of it."""
    if shard is None:
        return Path(run_dir) / RESULTS
    return Path(run_dir) / SHARD_RESULTS.format(i=shard[0], n=shard[1])


def results_files(run_dir: PathLike) -> list[Path]:
    """Every results file of the run that exists: ``results.jsonl``, then the shares' files
    in the order of their shares."""
    run_dir = Path(run_dir)
    shards = []
    for path in run_dir.glob(SHARD_RESULTS.format(i="*", n="*")):
        i, _, n = path.name[len("results.") : -len(".jsonl")].partition("-of-")
        if i.isdigit() and n.isdigit():
            shards.append(((int(n), int(i)), path))
    main = [results_path(run_dir)] if results_path(run_dir).exists() else []
    return main + [path for _, path in sorted(shards)]


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
    """The run's ``run.json`` as a dict, checked (:func:`schema.check_run_info`).

    Raises:
      UsageError: ``run_dir`` is not a run folder (no ``run.json``).
      DamagedFileError: ``run.json`` is not a JSON object, lacks a field or holds a value of
        the wrong type or range (the message names the field).
    """
    path = run_info_path(run_dir)
    if not os.path.lexists(path):
        if not Path(run_dir).is_dir():
            raise UsageError(f"run folder {run_dir} not found")
        raise UsageError(f"{run_dir} is not a run folder (no {RUN_INFO})")
    try:
        info = read_json_object(path, what="run info")
    except DamagedFileError as exc:
        raise DamagedFileError(f"{exc}; {hint}") from None
    return schema.check_run_info(info, path, hint)


def write_run_info(run_dir: PathLike, info: dict) -> None:
    """Write ``run.json`` atomically (the folder must exist).

    A new ``run.json`` is created exclusively: when two processes start the same folder at
    once (the shares of one run do), the second one joins the first's run if it describes the
    same run (configuration, model checksum, images) and is refused with a UsageError
    otherwise, so the folder never holds records of a configuration it does not describe.
    """
    path = run_info_path(run_dir)
    if os.path.lexists(path):
        write_json_atomic(path, info)
        return
    tmp = path.with_name(f"{RUN_INFO}.{os.getpid()}.new")
    write_json_atomic(tmp, info)
    try:
        os.link(tmp, path)
    except FileExistsError:
        theirs = read_run_info(run_dir)
        same = ("config", "model_sha256", "indices", "labels", "num_classes")
        if any(theirs.get(k) != info.get(k) for k in same):
            raise UsageError(
                f"{run_dir}: another process started a run with other settings in this folder "
                "at the same time; use another --out"
            ) from None
    except OSError:  # a file system without hard links: the lock already serialises writers
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


# --------------------------------------------------------------------------------------
# results.jsonl


def record_key(rec: dict) -> tuple[str, int, int]:
    """Identity of a record: (method, dataset index, target or -1)."""
    target = rec.get("target")
    return (rec["method"], int(rec["index"]), -1 if target is None else int(target))


def read_records(
    run_dir: PathLike,
    repair: bool = False,
    hint: str = DAMAGED_HINT,
    shard: tuple[int, int] | None = None,
    info: dict | None = None,
) -> list[dict]:
    """All complete records of the run's results files (``[]`` when there is none).

    ``results.jsonl`` and the shares' files (:func:`results_files`) are read in that order;
    a record whose key (:func:`record_key`) was already read is skipped. A last line cut
    short by a kill is ignored; with ``repair=True`` the writer's own file (that of
    ``shard``; other shares may be appending to theirs) is also truncated to its last
    complete line so that appending continues cleanly (it must then be a file of its own:
    a symbolic link is refused). Every record is checked against the run
    (:func:`schema.check_record`; ``info``: the run's ``run.json``, read when not given): a
    damaged line before the last, a record that lacks a field or holds a wrong value, or the
    record of an image the run never selected raises DamagedFileError naming the file and
    line.
    """
    own = results_path(run_dir, shard)
    if repair and os.path.lexists(own) and os.path.islink(own):
        raise UnsafeFileError(
            f"{own} is a symbolic link; a run folder's records must be its own file (replace "
            "the link with a copy of the file it points at, or use another --out)"
        )
    if info is None and has_run_info(run_dir):
        info = read_run_info(run_dir, hint)
    run = None if info is None else schema.RunInfoView(info)
    records: list[dict] = []
    seen: set[tuple[str, int, int]] = set()
    for path in results_files(run_dir):
        try:
            lines = read_jsonl_lines(path, repair=repair and path == own)
        except DamagedFileError as exc:
            raise DamagedFileError(f"{exc}; {RECORD_HINT}") from None
        except OSError as exc:
            raise DamagedFileError(f"{path} cannot be read ({exc.strerror}); {hint}") from None
        for n, rec in lines:
            if run is not None:
                schema.check_record(rec, run, path, n, RECORD_HINT)
            else:
                missing = [k for k in RECORD_FIELDS if k not in rec]
                if missing:
                    raise DamagedFileError(
                        f"{path} line {n}: the record lacks {', '.join(missing)}; " + RECORD_HINT
                    )
            if record_key(rec) not in seen:
                seen.add(record_key(rec))
                records.append(rec)
    return records


def run_order(info: dict, records: list[dict]) -> list[dict]:
    """``records`` in the order one unsharded run writes them: chunk by chunk, and within a
    chunk method by method (the order of ``config.methods``), then by position and target."""
    config = info["config"]
    chunk = int(config.get("chunk_size", 1)) or 1
    methods = list(config.get("methods", []))

    def key(rec: dict) -> tuple:
        m = rec["method"]
        pos = int(rec.get("position", 0))
        rank = methods.index(m) if m in methods else len(methods)
        return (pos // chunk, rank, m, pos, record_key(rec)[2])

    return sorted(records, key=key)


def append_records(
    run_dir: PathLike, records: Iterable[dict], shard: tuple[int, int] | None = None
) -> None:
    """Append records to ``results.jsonl`` (or to share ``shard``'s file), each flushed and
    fsynced."""
    append_jsonl(results_path(run_dir, shard), records)


# --------------------------------------------------------------------------------------
# images.npz


def max_saved_images(image_nbytes: int) -> int:
    """How many clean images ``images.npz`` holds at most (MAX_SAVED_IMAGE_BYTES)."""
    return max(1, MAX_SAVED_IMAGE_BYTES // max(int(image_nbytes), 1))


def _load_npz(run_dir: PathLike, hint: str) -> tuple[np.ndarray, np.ndarray] | None:
    path = images_path(run_dir)
    if not os.path.lexists(path):
        return None
    check_readable_file(path, "saved images")
    try:
        with np.load(path, allow_pickle=False) as saved:
            indices, images = np.asarray(saved["indices"]), np.asarray(saved["images"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DamagedFileError(f"{path} cannot be read ({type(exc).__name__}); {hint}") from None
    except MemoryError:
        raise DamagedFileError(f"{path} claims arrays too large to load; {hint}") from None
    run = None
    if has_run_info(run_dir):
        run = schema.RunInfoView(read_run_info(run_dir, hint))
    schema.check_saved_images(indices, images, run, path, hint)
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
    """``(run info, records)`` of a run folder, both checked; a torn last line is ignored.
    The records of a run written in shares are merged into the order of one unsharded run."""
    info = read_run_info(run_dir, hint)
    records = read_records(run_dir, hint=hint, info=info)
    if len(results_files(run_dir)) > 1:
        records = run_order(info, records)
    return info, records


def protected_files(run_dir: PathLike) -> list[Path]:
    """The files of a run folder that hold its records, which no output may replace:
    ``run.json``, every results file, ``images.npz`` and the lock files."""
    run_dir = Path(run_dir)
    names = [run_dir / n for n in RECORD_FILES] + results_files(run_dir)
    return names + sorted(run_dir.glob(".lock*"))


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
    "protected_files",
    "read_images",
    "read_records",
    "read_run_info",
    "record_key",
    "results_files",
    "run_order",
    "save_images",
    "saved_image_count",
    "write_run_info",
]
