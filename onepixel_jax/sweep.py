"""``onepixel attack``: resumable many-image attack sweeps written as JSON Lines.

A sweep attacks the first ``--n-images`` images of a dataset split that the model
classifies correctly (or, with ``--include-misclassified``, the first images with the
model's own prediction as label). Images are processed in chunks of ``--chunk-size``;
each chunk is one batched :func:`onepixel_jax.attack` call (and one
:func:`onepixel_jax.random_search` call with ``--baseline random``) whose records are
appended to ``results.jsonl`` and flushed to disk before the next chunk starts.

Run folder layout (``--out``)::

    run.json        configuration, package versions, model checksum, selected images
    results.jsonl   one record per attack: image, label, target, pixels, success, ...
    images.npz      the clean attacked images (for the report's example grid)
    report.md, summary.json, *.png   written by ``onepixel report``

Determinism: the key of a chunk is ``fold_in(key(seed), first position of the chunk)``
and the engine derives image ``j`` of a call from ``fold_in(chunk key, j)``, so a
re-run, or a resumed run that repeats a half-written chunk, produces identical records.
``--chunk-size`` is therefore part of the configuration; ``--batch-size`` (how many
attacks the engine evolves side by side) is not, and may change between resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = "results.jsonl"
RUN_INFO = "run.json"
IMAGES = "images.npz"
MODES = ("untargeted", "targeted", "all-targets")
EARLY_STOP_CHOICES = ("none", "success", "threshold", "target_over_true")
MAX_SAVED_IMAGE_BYTES = 64 * 2**20
SELECT_BATCH = 256
AUTO_BATCH_VALUES = 2**22

# Settings that change results; a resumed run must match them exactly.
CONFIG_KEYS = (
    "model",
    "dataset",
    "split",
    "n_images",
    "pixels",
    "mode",
    "popsize",
    "max_iters",
    "early_stop",
    "threshold",
    "seed",
    "chunk_size",
    "baseline",
    "include_misclassified",
)


class UsageError(Exception):
    """A problem with the command line or its inputs; reported as one line, exit code 2."""


# --------------------------------------------------------------------------------------
# Loading (module-level so tests can substitute tiny models and datasets)


def _one_line(exc: BaseException) -> str:
    """The first line of an error message (with its list when the line ends in a colon)."""
    lines = [ln.strip(" -") for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"
    return lines[0]


def load_model(name: str) -> tuple[Callable, dict]:
    """``(predict_fn, card)`` from :func:`onepixel_jax.models.load`; UsageError if unknown."""
    from onepixel_jax import models

    if not os.path.exists(name) and hasattr(models, "list_models"):
        known = list(models.list_models())
        if name not in known:
            hint = ", ".join(known) if known else "none installed"
            raise UsageError(f"unknown model {name!r} (available: {hint})")
    try:
        return models.load(name)
    except (KeyError, ValueError, FileNotFoundError, OSError) as exc:
        raise UsageError(f"cannot load model {name!r}: {_one_line(exc)}") from exc


def load_dataset(
    name: str, split: str, data_dir: str | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images uint8 NHWC, labels, class_names)`` from :func:`onepixel_jax.data.load`."""
    from onepixel_jax import data

    try:
        images, labels, class_names = data.load(name, split, data_dir=data_dir)
    except (KeyError, ValueError, FileNotFoundError, OSError) as exc:
        raise UsageError(f"cannot load dataset {name!r} split {split!r}: {_one_line(exc)}") from exc
    return np.asarray(images), np.asarray(labels), list(class_names)


# --------------------------------------------------------------------------------------
# Records


def record_key(rec: dict) -> tuple[str, int, int]:
    """Identity of a record: (method, dataset index, target or -1)."""
    target = rec.get("target")
    return (rec["method"], int(rec["index"]), -1 if target is None else int(target))


def read_records(path: Path, repair: bool = False) -> list[dict]:
    """All complete records of a ``results.jsonl``.

    A last line cut short by a kill is ignored; with ``repair=True`` the file is also
    truncated to its last complete line so that appending continues cleanly.
    """
    if not path.exists():
        return []
    raw = path.read_bytes()
    records, good_end, pos = [], 0, 0
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        end = len(raw) if nl < 0 else nl + 1
        line = raw[pos:end].strip()
        if line:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if end < len(raw):
                    raise ValueError(f"{path}: corrupt record at byte {pos}") from None
                break  # a torn final line
            if not isinstance(rec, dict) or nl < 0:
                break  # complete JSON without its newline: treat as torn, rewrite it
            records.append(rec)
        good_end = end
        pos = end
    if repair and good_end < len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
            fh.flush()
            os.fsync(fh.fileno())
    return records


def _round(values: Any, digits: int = 7) -> list:
    return np.round(np.asarray(values, np.float64), digits).tolist()


def make_records(
    result: Any,
    rows: list[tuple[int, int, int, int | None]],
    originals: np.ndarray,
    method: str,
    seconds: float,
) -> list[dict]:
    """One JSON-ready dict per attacked row.

    ``rows`` holds ``(position, dataset index, label, target)`` per attack in the order of
    ``result``; ``originals`` are the clean images of those rows (N, H, W, C) uint8.
    """
    out = []
    for i, (pos, index, label, target) in enumerate(rows):
        pix = np.asarray(result.pixels[i])  # (d, 2 + C)
        r, c = pix[:, 0], pix[:, 1]
        before = originals[i][r, c].reshape(len(pix), -1).astype(np.int64)
        after = np.asarray(result.adversarial[i])[r, c].reshape(len(pix), -1).astype(np.int64)
        probs = np.asarray(result.probs[i], np.float64)
        out.append(
            {
                "method": method,
                "position": int(pos),
                "index": int(index),
                "label": int(label),
                "target": None if target is None else int(target),
                "success": bool(result.success[i]),
                "predicted": int(probs.argmax()),
                "queries": int(result.queries[i]),
                "pixels": pix.astype(int).tolist(),
                "original_values": before.tolist(),
                "distortion": float(np.abs(after - before).mean()),
                "probs": _round(probs),
                "original_probs": _round(result.original_probs[i]),
                "fitness": _round(result.fitness_history[i]),
                "seconds": round(seconds / max(len(rows), 1), 4),
            }
        )
    return out


def append_records(path: Path, records: Iterable[dict]) -> None:
    """Append records as JSON lines, flushing and fsyncing after each one."""
    with open(path, "a", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


# --------------------------------------------------------------------------------------
# Configuration and run folder


def config_from_args(args: argparse.Namespace) -> dict:
    early = None if args.early_stop == "none" else args.early_stop
    return {
        "model": args.model,
        "dataset": args.dataset,
        "split": args.split,
        "n_images": args.n_images,
        "pixels": args.pixels,
        "mode": args.mode,
        "popsize": args.popsize,
        "max_iters": args.max_iters,
        "early_stop": early,
        "threshold": args.threshold,
        "seed": args.seed,
        "chunk_size": args.chunk_size,
        "baseline": args.baseline,
        "include_misclassified": bool(args.include_misclassified),
    }


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for pkg in ("onepixel-jax", "jax", "jaxlib", "flax", "numpy"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return versions


def check_arguments(args: argparse.Namespace) -> None:
    """Argument checks that need no model or data."""
    for name, minimum in (
        ("n_images", 1),
        ("pixels", 1),
        ("popsize", 4),
        ("max_iters", 0),
        ("chunk_size", 1),
    ):
        value = getattr(args, name)
        if value < minimum:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be at least {minimum}, got {value}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threshold is not None:
        if not 0.0 < args.threshold < 1.0:
            raise UsageError(f"--threshold must be in (0, 1), got {args.threshold}")
        if args.early_stop != "threshold":
            raise UsageError("--threshold only applies with --early-stop threshold")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise UsageError(f"data directory not found: {args.data_dir}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"--out {out} is not writable ({probe} is not a directory)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out} is not writable ({probe} does not allow writing)")
    if out.exists() and (out / RESULTS).exists() and not os.access(out / RESULTS, os.W_OK):
        raise UsageError(f"--out {out}: {RESULTS} is not writable")


def check_resume(out: Path, config: dict, model_sha: str | None) -> dict | None:
    """The existing run info if ``out`` holds a run of the same configuration, else None.

    A larger ``n_images`` counts as the same configuration: the run grows (the first images,
    their targets and their random keys do not depend on how many follow). Raises UsageError
    when the folder holds a run with another configuration, or with more images than asked.
    """
    info_path = out / RUN_INFO
    if not info_path.exists():
        if (out / RESULTS).exists():
            raise UsageError(f"--out {out} has {RESULTS} but no {RUN_INFO}; use a new --out")
        return None
    info = json.loads(info_path.read_text())
    old = info.get("config", {})
    diffs = [
        f"{k}: {old.get(k)!r} -> {config.get(k)!r}"
        for k in CONFIG_KEYS
        if k != "n_images" and old.get(k) != config.get(k)
    ]
    old_n = old.get("n_images")
    if old_n is not None and config["n_images"] < old_n:
        diffs.append(
            f"n_images: {old_n} -> {config['n_images']} (a run can grow, not shrink; "
            "`onepixel report` covers the images done)"
        )
    if info.get("model_sha256") != model_sha:
        diffs.append("model checksum changed")
    if diffs:
        raise UsageError(
            f"--out {out} holds a run with a different configuration ({'; '.join(diffs)}); "
            "use a new --out or the original settings"
        )
    return info


def _selection_fields(indices: np.ndarray, attack_labels: np.ndarray, labels: np.ndarray) -> dict:
    """The run.json fields naming the attacked images: dataset indices and labels."""
    return {
        "indices": indices.tolist(),
        "labels": attack_labels.tolist(),
        "true_labels": labels[indices].astype(int).tolist(),
    }


def _grow_run(
    out: Path,
    info: dict,
    config: dict,
    predict_fn: Callable,
    images: np.ndarray,
    labels: np.ndarray,
    data_dir: str | None,
) -> dict:
    """Extend a run's image list to ``config["n_images"]``; the first images stay as they are."""
    indices, attack_labels, _ = select_images(
        predict_fn, images, labels, config["n_images"], config["include_misclassified"]
    )
    n_old = len(info["indices"])
    if (
        indices[:n_old].tolist() != info["indices"]
        or attack_labels[:n_old].tolist() != info["labels"]
    ):
        raise UsageError(
            f"--out {out}: the first {n_old} images selected now differ from the run's "
            "(did the model or the data change?); use a new --out"
        )
    grown = {
        "from": n_old,
        "to": config["n_images"],
        "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    info = dict(info, config=dict(info["config"], n_images=config["n_images"]))
    info.update(
        _selection_fields(indices, attack_labels, labels),
        command=command_line(info["config"], out, data_dir),
        grown=info.get("grown", []) + [grown],
    )
    _write_json_atomic(out / RUN_INFO, info)
    return info


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Image selection and targets


def select_images(
    predict_fn: Callable,
    images: np.ndarray,
    labels: np.ndarray,
    n_images: int,
    include_misclassified: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dataset indices, attack labels and clean-image probabilities of the attacked images.

    Default: the first ``n_images`` images (dataset order) the model classifies correctly,
    attacked with their true label. ``include_misclassified``: the first ``n_images``
    images, attacked with the model's own prediction as label.
    """
    from onepixel_jax import predict_in_batches

    chosen, chosen_labels, chosen_probs = [], [], []
    for start in range(0, len(images), SELECT_BATCH):
        block = images[start : start + SELECT_BATCH]
        probs = np.asarray(predict_in_batches(predict_fn, block.astype(np.float32), SELECT_BATCH))
        pred = probs.argmax(axis=1)
        for j in range(len(block)):
            idx = start + j
            if include_misclassified or pred[j] == labels[idx]:
                chosen.append(idx)
                chosen_labels.append(int(pred[j]))
                chosen_probs.append(probs[j])
                if len(chosen) == n_images:
                    return np.array(chosen), np.array(chosen_labels), np.array(chosen_probs)
    raise UsageError(
        f"only {len(chosen)} of the {len(images)} images are classified correctly, "
        f"fewer than --n-images {n_images} (lower it or add --include-misclassified)"
    )


def targets_for(mode: str, label: int, num_classes: int, seed: int, index: int) -> list:
    """The targets attacked for one image: ``[None]``, one seeded random class, or all others."""
    if mode == "untargeted":
        return [None]
    if mode == "targeted":
        rng = np.random.default_rng([seed, index])
        return [int((label + 1 + rng.integers(num_classes - 1)) % num_classes)]
    return [k for k in range(num_classes) if k != label]


# --------------------------------------------------------------------------------------
# The sweep


@dataclasses.dataclass
class _Progress:
    images_done: int = 0
    fooled: int = 0
    queries: int = 0
    seconds: float = 0.0


def auto_batch_size(popsize: int, image_shape: tuple[int, ...]) -> int:
    """Attacks evolved side by side when ``--batch-size`` is not given.

    Keeps one model call at about ``AUTO_BATCH_VALUES`` input values (e.g. 3 CIFAR-10 attacks
    of 400 candidates, 13 on MNIST, 163 on 8x8 digits), which bounds the activation memory.
    """
    per_attack = popsize * int(np.prod(image_shape))
    return max(1, AUTO_BATCH_VALUES // per_attack)


def _attack_config(config: dict, batch_size: int | None):
    import onepixel_jax as opj

    return opj.AttackConfig(
        pixels=config["pixels"],
        popsize=config["popsize"],
        max_iters=config["max_iters"],
        targeted=config["mode"] != "untargeted",
        early_stop=config["early_stop"],
        threshold=config["threshold"],
        batch_size=batch_size,
    )


def command_line(config: dict, out: Path, data_dir: str | None) -> str:
    """The ``onepixel attack`` command that reproduces ``config`` (flags in a fixed order)."""
    parts = ["onepixel", "attack"]
    for key in CONFIG_KEYS:
        value = config[key]
        flag = "--" + key.replace("_", "-")
        if key == "include_misclassified":
            parts += [flag] if value else []
        elif key == "early_stop":
            parts += [flag, value or "none"]
        elif value is not None:
            parts += [flag, str(value)]
    if data_dir is not None:
        parts += ["--data-dir", data_dir]
    parts += ["--out", str(out)]
    return shlex.join(parts)


def run_sweep(args: argparse.Namespace) -> int:
    """Run (or resume) a sweep; returns the exit code."""
    import jax

    import onepixel_jax as opj

    check_arguments(args)
    config = config_from_args(args)
    out = Path(args.out)

    predict_fn, card = load_model(args.model)
    images, labels, class_names = load_dataset(args.dataset, args.split, args.data_dir)
    if images.ndim == 3:
        images = images[..., None]
    n_split, height, width = images.shape[:3]
    if args.n_images > n_split:
        raise UsageError(
            f"--n-images {args.n_images} is larger than the {args.dataset} {args.split} "
            f"split ({n_split} images)"
        )
    expected = card.get("input_shape") if isinstance(card, dict) else None
    if expected is not None and tuple(expected) != tuple(images.shape[1:]):
        raise UsageError(
            f"model {args.model!r} takes {'x'.join(map(str, expected))} images, "
            f"{args.dataset} has {'x'.join(map(str, images.shape[1:]))}"
        )
    if args.pixels > height * width:
        raise UsageError(f"--pixels {args.pixels} exceeds the {height}x{width} image size")
    model_sha = None
    if isinstance(card, dict):
        model_sha = card.get("sha256") or card.get("checkpoint_sha256")
    info = check_resume(out, config, model_sha)

    if info is None:
        indices, attack_labels, clean_probs = select_images(
            predict_fn, images, labels, args.n_images, args.include_misclassified
        )
        num_classes = int(clean_probs.shape[1])
        info = {
            "config": config,
            "model_sha256": model_sha,
            "model_card": card if isinstance(card, dict) else {},
            "versions": package_versions(),
            "seed": args.seed,
            "command": command_line(config, out, args.data_dir),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "data_dir": args.data_dir,
            "num_classes": num_classes,
            "class_names": class_names,
            "image_shape": list(images.shape[1:]),
            "split_size": int(n_split),
            **_selection_fields(indices, attack_labels, labels),
        }
        out.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(out / RUN_INFO, info)
    elif info["config"]["n_images"] < config["n_images"]:
        info = _grow_run(out, info, config, predict_fn, images, labels, args.data_dir)
    indices = np.asarray(info["indices"], np.int64)
    attack_labels = np.asarray(info["labels"], np.int64)
    num_classes = int(info["num_classes"])
    if config["mode"] != "untargeted" and num_classes < 2:
        raise UsageError("targeted modes need at least two classes")

    if _saved_image_count(out / IMAGES) < min(len(indices), _max_saved(images)):
        _save_images(out / IMAGES, indices, images)

    done = {record_key(r): r for r in read_records(out / RESULTS, repair=True)}
    methods = ["de"] + (["random"] if config["baseline"] == "random" else [])
    chunk = config["chunk_size"]
    base_key = jax.random.key(config["seed"])
    batch = args.batch_size or auto_batch_size(config["popsize"], images.shape[1:])
    cfg = _attack_config(config, batch)
    engines = {"de": opj.attack, "random": opj.random_search}

    def chunk_rows(start: int) -> list[tuple[int, int, int, int | None]]:
        stop = min(start + chunk, len(indices))
        return [
            (p, int(indices[p]), int(attack_labels[p]), t)
            for p in range(start, stop)
            for t in targets_for(
                config["mode"], int(attack_labels[p]), num_classes, config["seed"], int(indices[p])
            )
        ]

    def row_key(method: str, row: tuple) -> tuple[str, int, int]:
        return (method, row[1], -1 if row[3] is None else row[3])

    chunks = [(start, chunk_rows(start)) for start in range(0, len(indices), chunk)]
    progress = _Progress()
    for _, rows in chunks:  # count what earlier runs finished
        if all(row_key(m, r) in done for m in methods for r in rows):
            progress.images_done += len({r[0] for r in rows})
            progress.fooled += len({r[1] for r in rows if done[row_key("de", r)]["success"]})
    bar = _progress_bar(len(indices), args.quiet, initial=progress.images_done)
    previous_handler = _interrupt_on_sigterm()
    try:
        for start, rows in chunks:
            chunk_key = jax.random.fold_in(base_key, start)
            todo = [m for m in methods if any(row_key(m, r) not in done for r in rows)]
            for m, method in enumerate(methods):
                if method not in todo:
                    continue
                t0 = time.perf_counter()
                result = _attack_rows(
                    engines[method],
                    jax.random.fold_in(chunk_key, m),
                    predict_fn,
                    images,
                    rows,
                    chunk,
                    num_classes,
                    config["mode"],
                    cfg,
                )
                seconds = time.perf_counter() - t0
                recs = make_records(result, rows, images[[r[1] for r in rows]], method, seconds)
                new = [r for r in recs if record_key(r) not in done]
                append_records(out / RESULTS, new)
                for r in new:
                    done[record_key(r)] = r
                progress.queries += int(sum(r["queries"] for r in recs))
                progress.seconds += seconds
            if todo:
                progress.images_done += len({r[0] for r in rows})
                progress.fooled += len({r[1] for r in rows if done[row_key("de", r)]["success"]})
                _update_bar(bar, progress, len({r[0] for r in rows}))
    except KeyboardInterrupt:
        _close_bar(bar)
        print(f"interrupted; run the same command again to resume {out}", file=sys.stderr)
        return 130
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    _close_bar(bar)

    if not args.no_report:
        from onepixel_jax import report

        summary = report.write_report(out)
        print(report.summary_line(summary))
    return 0


def _attack_rows(engine, key, predict_fn, images, rows, chunk, num_classes, mode, cfg):
    """One engine call on ``rows``, padded to the full chunk so every call has one shape."""
    per_image = 1 if mode != "all-targets" else num_classes - 1
    full = chunk * per_image
    idx = [r[1] for r in rows]
    lab = [r[2] for r in rows]
    tgt = [r[3] for r in rows]
    pad = full - len(rows)
    if pad > 0:  # repeat the last row; padded results are discarded
        idx, lab, tgt = idx + idx[-1:] * pad, lab + lab[-1:] * pad, tgt + tgt[-1:] * pad
    targets = None if mode == "untargeted" else np.asarray(tgt, np.int32)
    result = engine(key, predict_fn, images[idx], np.asarray(lab, np.int32), cfg, targets=targets)
    if pad > 0:
        keep = len(rows)
        result = dataclasses.replace(
            result,
            **{
                f.name: getattr(result, f.name)[:keep]
                for f in dataclasses.fields(result)
                if getattr(result, f.name) is not None
            },
        )
    return result


def _interrupt_on_sigterm():
    """Treat SIGTERM like Ctrl-C (finished records are on disk either way); returns the old
    handler, or None when handlers cannot be installed (not the main thread)."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def _max_saved(images: np.ndarray) -> int:
    """How many clean images ``images.npz`` holds at most (MAX_SAVED_IMAGE_BYTES)."""
    return max(1, MAX_SAVED_IMAGE_BYTES // max(images[0].nbytes, 1))


def _saved_image_count(path: Path) -> int:
    if not path.exists():
        return 0
    with np.load(path) as saved:
        return len(saved["indices"])


def _save_images(path: Path, indices: np.ndarray, images: np.ndarray) -> None:
    indices = indices[: _max_saved(images)]
    sel = images[indices]
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, indices=indices, images=sel)
    os.replace(tmp, path)


def _progress_bar(total: int, quiet: bool, initial: int = 0):
    if quiet:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="img",
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
    )


def _update_bar(bar, progress: _Progress, n: int) -> None:
    if bar is None:
        return
    rate = progress.queries / progress.seconds if progress.seconds > 0 else math.nan
    bar.set_postfix(
        fooled=f"{progress.fooled}/{progress.images_done}",
        evals_s=f"{rate:,.0f}" if math.isfinite(rate) else "-",
        refresh=False,
    )
    bar.update(n)


def _close_bar(bar) -> None:
    if bar is not None:
        bar.close()


# --------------------------------------------------------------------------------------
# CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name (see `onepixel models`) or path")
    p.add_argument("--dataset", required=True, help="cifar10, mnist, digits, imagenet-sample")
    p.add_argument("--split", default="test", help="dataset split (default: test)")
    p.add_argument("--data-dir", default=None, help="where the dataset files are")
    p.add_argument("--n-images", type=int, default=100, help="images to attack (default: 100)")
    p.add_argument("--pixels", type=int, default=1, help="perturbed pixels d (default: 1)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="untargeted",
        help="untargeted: true non-targeted attack; targeted: one seeded random target per "
        "image; all-targets: every other class, batched (default: untargeted)",
    )
    p.add_argument("--popsize", type=int, default=400, help="DE population (default: 400)")
    p.add_argument("--max-iters", type=int, default=100, help="DE generations (default: 100)")
    p.add_argument(
        "--early-stop",
        choices=EARLY_STOP_CHOICES,
        default="target_over_true",
        help="stop rule (default: target_over_true, the paper's original-CIFAR-10 protocol)",
    )
    p.add_argument("--threshold", type=float, default=None, help="for --early-stop threshold")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--chunk-size",
        type=int,
        default=16,
        help="images per engine call and per write; part of the configuration (default: 16)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="attacks evolved side by side inside a call; memory and speed only, results do "
        "not depend on it (default: about 4M input values per model call)",
    )
    p.add_argument(
        "--baseline",
        choices=("none", "random"),
        default="none",
        help="also run random search with the same evaluation budget on the same images",
    )
    p.add_argument(
        "--include-misclassified",
        action="store_true",
        help="attack every image with the model's prediction as label (Kaggle protocol)",
    )
    p.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_cli(args: argparse.Namespace) -> int:
    try:
        return run_sweep(args)
    except UsageError as exc:
        print(f"onepixel attack: error: {exc}", file=sys.stderr)
        return 2


def register_cli(subparsers: Any) -> None:
    """Add the ``attack`` sub-command."""
    p = subparsers.add_parser(
        "attack",
        help="resumable few-pixel attack sweep over a dataset",
        description=__doc__.split("\n\n")[0],
    )
    add_arguments(p)
    p.set_defaults(func=_run_cli)
