"""Resumable many-image attack sweeps: :class:`SweepConfig` and :func:`run_sweep`.

A sweep attacks the first ``n_images`` images of a dataset split that the model classifies
correctly (or, with ``include_misclassified``, the first images with the model's own
prediction as label), with every search method named in ``methods`` on the same images and
targets. Images are processed in chunks of ``chunk_size``; each chunk is one batched engine
call per method, whose records are appended to the run folder's ``results.jsonl`` and flushed
to disk before the next chunk starts (see :mod:`onepixel_jax.experiments.run_folder`).

Determinism: the key of a chunk is ``fold_in(key(seed), first position of the chunk)``, method
``m`` (its position in ``methods``) uses ``fold_in(chunk key, m)`` (with ``shared_keys``, the
chunk key itself: every method draws the same random numbers), and the engine derives attack
``j`` of a call from ``fold_in(method key, j)``. A re-run, or a resumed run that repeats a
half-written chunk, therefore produces identical records. ``chunk_size`` is part of the
configuration; ``batch_size`` (how many attacks the engine evolves side by side) is not, and
may change between resumes.

Methods are named (:mod:`onepixel_jax.experiments.methods`): a strategy of the search registry
or a preset (a strategy with settings and a budget of its own, such as ``de-best1``). They share
the config's ``popsize`` and ``max_iters`` unless ``own_budgets`` gives each its own;
``max_queries`` caps every method's budget.
"""

from __future__ import annotations

import dataclasses
import inspect
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from onepixel_jax import planner, runner
from onepixel_jax.config import AttackConfig
from onepixel_jax.errors import UsageError
from onepixel_jax.experiments import run_folder
from onepixel_jax.experiments.lock import RunFolderLock
from onepixel_jax.experiments.selection import MODES, select_images, targets_for
from onepixel_jax.objective import STOP_RULES

SEED_LIMIT = 2**32  # seeds must fit in uint32 (jax.random.key)

# The fields of SweepConfig in the order of the reproducing command line.
_COMMAND_ORDER = (
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
    "methods",
    "include_misclassified",
    "own_budgets",
    "max_queries",
    "shared_keys",
)


class SettingError(UsageError):
    """A SweepConfig field with an impossible value; ``field`` names it."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field} {detail}")
        self.field = field
        self.detail = detail


def known_methods() -> tuple[str, ...]:
    """Every name a sweep's ``methods`` may hold: the strategies, then the presets of
    :mod:`onepixel_jax.experiments.methods`."""
    from onepixel_jax.experiments import methods as methods_lib

    return tuple(methods_lib.names())


def method_names() -> tuple[str, ...]:
    """The search methods a sweep can run: the names of :mod:`onepixel_jax.search`'s registry
    (``"de"``, the paper's DE, and ``"random"``, its random-search baseline, among them)."""
    from onepixel_jax import search

    return tuple(search.names())


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Everything that changes a sweep's records; a resumed run must match it.

    Attributes:
      model, dataset, split: what is attacked (names as given to the loaders).
      n_images: images to attack; a larger value later grows the run.
      pixels: perturbed pixels ``d``.
      mode: ``"untargeted"``, ``"targeted"`` (one seeded random target per image) or
        ``"all-targets"`` (every other class).
      popsize, max_iters: the search budget, ``popsize * (max_iters + 1)`` evaluations.
      early_stop, threshold: the engine's stop rule (see ``AttackConfig``).
      seed: the random stream, ``0 <= seed < 2**32``.
      chunk_size: images per engine call and per write; it fixes the random keys (part of the
        configuration). ``None``: the device's size (:func:`onepixel_jax.planner.chunk_images`)
        when the run is created, recorded in run.json and kept when the run resumes.
      methods: search methods run on the same images, e.g. ``("de", "random")``; the first
        is the main one, the others are compared with it.
      include_misclassified: attack every image with the model's prediction as label.
      own_budgets: each method runs at its own budget (a preset's popsize and generations, a
        strategy's defaults) instead of ``popsize`` and ``max_iters``, which are then set to
        the largest of the methods' (they size the engine's calls).
      max_queries: caps every method's budget at this many evaluations per attack
        (``max_iters = max_queries // popsize - 1`` where it is over); ``None``: no cap.
      shared_keys: every method of a chunk draws from the chunk's key (common random
        numbers): a method's records do not depend on the other methods of the run.
    """

    model: str
    dataset: str
    split: str = "test"
    n_images: int = 100
    pixels: int = 1
    mode: str = "untargeted"
    popsize: int = 400
    max_iters: int = 100
    early_stop: str | None = "target_over_true"
    threshold: float | None = None
    seed: int = 0
    chunk_size: int | None = None
    methods: tuple[str, ...] = ("de",)
    include_misclassified: bool = False
    own_budgets: bool = False
    max_queries: int | None = None
    shared_keys: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        for name in ("own_budgets", "shared_keys"):
            if not isinstance(getattr(self, name), bool):
                raise SettingError(name, f"must be a bool, got {getattr(self, name)!r}")
        if self.max_queries is not None and (not _is_int(self.max_queries) or self.max_queries < 1):
            raise SettingError("max_queries", f"must be an integer >= 1, got {self.max_queries!r}")
        for name in ("model", "dataset", "split"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise SettingError(name, f"must be a non-empty string, got {value!r}")
        for name, minimum in (
            ("n_images", 1),
            ("pixels", 1),
            ("popsize", 4),
            ("max_iters", 0),
            ("chunk_size", 1),
        ):
            value = getattr(self, name)
            if name == "chunk_size" and value is None:
                continue
            if not _is_int(value):
                raise SettingError(name, f"must be an integer, got {value!r}")
            if value < minimum:
                raise SettingError(name, f"must be at least {minimum}, got {value}")
        if not _is_int(self.seed) or not 0 <= self.seed < SEED_LIMIT:
            raise SettingError("seed", f"must be an integer in [0, 2**32), got {self.seed!r}")
        if self.mode not in MODES:
            raise SettingError("mode", f"must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.early_stop not in STOP_RULES:
            raise SettingError(
                "early_stop", f"must be None, success, threshold or target_over_true, "
                f"got {self.early_stop!r}"
            )  # fmt: skip
        if self.threshold is not None:
            if not isinstance(self.threshold, int | float) or not 0.0 < self.threshold < 1.0:
                raise SettingError("threshold", f"must be in (0, 1), got {self.threshold!r}")
            if self.early_stop != "threshold":
                raise SettingError("threshold", "only applies with early_stop threshold")
        if not self.methods:
            raise SettingError("methods", "must name at least one search method")
        known = known_methods()
        for m in self.methods:
            if m not in known:
                raise SettingError(
                    "methods", f"has unknown search method {m!r} (available: {', '.join(known)})"
                )
        if len(set(self.methods)) != len(self.methods):
            raise SettingError("methods", f"names a method twice: {self.methods}")
        self._check_method_budgets()
        if not isinstance(self.include_misclassified, bool):
            raise SettingError("include_misclassified", "must be a bool")

    def _check_method_budgets(self) -> None:
        """Every method's engine settings must exist; with ``own_budgets`` the popsize and
        max_iters fields become the largest of the methods'."""
        from onepixel_jax.experiments import methods as methods_lib

        budget = None if self.own_budgets else (self.popsize, self.max_iters)
        cfgs = []
        for m in self.methods:
            try:
                cfgs.append(
                    methods_lib.attack_config(
                        m, pixels=self.pixels, budget=budget, max_queries=self.max_queries
                    )
                )
            except (ValueError, TypeError) as exc:
                text = str(exc)
                if text.startswith("max_queries "):
                    raise SettingError("max_queries", text.removeprefix("max_queries ")) from None
                raise SettingError("methods", f"({m}): {text}") from None
        if self.own_budgets:
            object.__setattr__(self, "popsize", max(c.popsize for c in cfgs))
            object.__setattr__(self, "max_iters", max(c.max_iters for c in cfgs))

    def attack_config(self, method: str, batch_size: int | None = None) -> AttackConfig:
        """The engine settings of ``method`` in this sweep (see the class docstring)."""
        from onepixel_jax.experiments import methods as methods_lib

        return methods_lib.attack_config(
            method,
            pixels=self.pixels,
            targeted=self.mode != "untargeted",
            early_stop=self.early_stop,
            threshold=self.threshold,
            budget=None if self.own_budgets else (self.popsize, self.max_iters),
            max_queries=self.max_queries,
            batch_size=batch_size,
        )

    def to_json(self) -> dict[str, Any]:
        """The run.json form (``methods`` as a list)."""
        d = dataclasses.asdict(self)
        d["methods"] = list(self.methods)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SweepConfig:
        """Read a run.json config; runs written before ``methods`` existed name a ``baseline``."""
        d = dict(d)
        if "methods" not in d:
            d["methods"] = ("de",) + (("random",) if d.get("baseline") == "random" else ())
        d.pop("baseline", None)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclasses.dataclass(frozen=True)
class SweepProgress:
    """Where a sweep stands, passed to the ``progress`` callback after every chunk."""

    images_done: int
    images_total: int
    fooled: int  # images the first method fooled, among images_done
    queries: int  # model evaluations of this session
    seconds: float  # engine time of this session
    step: int  # images finished by the latest chunk (0 before the first and within a chunk)
    chunk_images: int = 0  # images of the chunk in progress
    partial: float = 0.0  # fraction of that chunk's evaluation budget spent, in [0, 1]


@dataclasses.dataclass(frozen=True)
class SweepOutcome:
    """What :func:`run_sweep` did: ``attacks_run`` new records, ``attacks_reused`` kept ones."""

    out: Path
    info: dict
    attacks_run: int
    attacks_reused: int
    grown: bool

    @property
    def reused_finished_run(self) -> bool:
        """True when the folder already held every record and nothing was attacked."""
        return self.attacks_run == 0 and self.attacks_reused > 0


def command_line(config: SweepConfig, out: str | Path, data_dir: str | None = None) -> str:
    """The ``onepixel attack`` command that reproduces ``config`` (flags in a fixed order)."""
    parts = ["onepixel", "attack"]
    for key in _COMMAND_ORDER:
        value = getattr(config, key)
        flag = "--" + key.replace("_", "-")
        if key in ("include_misclassified", "own_budgets", "shared_keys"):
            parts += [flag] if value else []
        elif key in ("popsize", "max_iters") and config.own_budgets:
            continue  # each method's own
        elif key == "early_stop":
            parts += [flag, value or "none"]
        elif key == "methods":
            parts += ["--strategy", value[0]]
            for other in value[1:]:
                parts += ["--baseline", other]
        elif value is not None:
            parts += [flag, str(value)]
    if data_dir is not None:
        parts += ["--data-dir", str(data_dir)]
    parts += ["--out", str(out)]
    return shlex.join(parts)


def _config_diffs(old: SweepConfig, new: SweepConfig) -> list[str]:
    diffs = [
        f"{f.name}: {getattr(old, f.name)!r} -> {getattr(new, f.name)!r}"
        for f in dataclasses.fields(SweepConfig)
        if f.name != "n_images" and getattr(old, f.name) != getattr(new, f.name)
    ]
    if new.n_images < old.n_images:
        diffs.append(
            f"n_images: {old.n_images} -> {new.n_images} (a run can grow, not shrink; "
            "the report covers the images done)"
        )
    return diffs


def check_resume(out: Path, config: SweepConfig, model_sha: str | None) -> dict | None:
    """The existing run info if ``out`` holds a run of the same configuration, else None.

    A larger ``n_images`` counts as the same configuration: the run grows (the first images,
    their targets and their random keys do not depend on how many follow). Raises UsageError
    when the folder holds a run with another configuration or more images than asked, and
    DamagedFileError when its run.json cannot be read.
    """
    if not run_folder.has_run_info(out):
        if run_folder.results_files(out):
            raise UsageError(
                f"{out} has {run_folder.RESULTS} but no {run_folder.RUN_INFO}; "
                "delete the folder or use another --out"
            )
        return None
    info = run_folder.read_run_info(out)
    try:
        old = SweepConfig.from_json(info["config"])
    except (TypeError, ValueError) as exc:
        raise run_folder.DamagedFileError(
            f"run info {run_folder.run_info_path(out)} has an unreadable config ({exc}); "
            f"{run_folder.DAMAGED_HINT}"
        ) from None
    diffs = _config_diffs(old, config)
    if info.get("model_sha256") != model_sha:
        diffs.append("model checksum changed")
    if diffs:
        raise UsageError(
            f"{out} holds a run with a different configuration ({'; '.join(diffs)}); "
            "use another --out or the original settings"
        )
    return info


def _selection_fields(indices: np.ndarray, attack_labels: np.ndarray, labels: np.ndarray) -> dict:
    """The run.json fields naming the attacked images: dataset indices and labels."""
    return {
        "indices": indices.tolist(),
        "labels": attack_labels.tolist(),
        "true_labels": labels[indices].astype(int).tolist(),
    }


def _model_sha(card: Mapping | None) -> str | None:
    if not isinstance(card, Mapping):
        return None
    return card.get("sha256") or card.get("checkpoint_sha256")


def _check_inputs(config: SweepConfig, images: np.ndarray, labels: np.ndarray, card) -> None:
    n_split, height, width = images.shape[:3]
    if labels.shape != (n_split,):
        raise UsageError(f"labels have shape {labels.shape}, expected ({n_split},)")
    if config.n_images > n_split:
        raise SettingError(
            "n_images",
            f"{config.n_images} is larger than the {config.dataset} {config.split} split "
            f"({n_split} images)",
        )
    expected = card.get("input_shape") if isinstance(card, Mapping) else None
    if expected is not None and tuple(expected) != tuple(images.shape[1:]):
        raise UsageError(
            f"model {config.model!r} takes {'x'.join(map(str, expected))} images, "
            f"{config.dataset} has {'x'.join(map(str, images.shape[1:]))}"
        )
    if config.pixels > height * width:
        raise SettingError("pixels", f"{config.pixels} exceeds the {height}x{width} image size")


def method_settings(config: SweepConfig) -> dict[str, dict]:
    """Per method, the engine settings it runs with (strategy, budget, stall, settings)."""
    from onepixel_jax.experiments import methods as methods_lib

    return {m: methods_lib.describe(config.attack_config(m)) for m in config.methods}


def _new_run_info(
    config, out, predict_fn, images, labels, card, class_names, data_dir, command, extra
) -> dict:
    indices, attack_labels, clean_probs = select_images(
        predict_fn, images, labels, config.n_images, config.include_misclassified
    )
    return {
        **(extra or {}),
        "config": config.to_json(),
        "method_settings": method_settings(config),
        "model_sha256": _model_sha(card),
        "model_card": dict(card) if isinstance(card, Mapping) else {},
        **run_folder.provenance_fields(),
        "seed": config.seed,
        "command": command or command_line(config, out, data_dir),
        "data_dir": None if data_dir is None else str(data_dir),
        "num_classes": int(clean_probs.shape[1]),
        "class_names": list(class_names) if class_names is not None else [],
        "image_shape": list(images.shape[1:]),
        "split_size": int(images.shape[0]),
        **_selection_fields(indices, attack_labels, labels),
    }


def _grow_run(out, info, config, predict_fn, images, labels, data_dir, command) -> dict:
    """Extend a run's image list to ``config.n_images``; the first images stay as they are."""
    from onepixel_jax import provenance

    indices, attack_labels, _ = select_images(
        predict_fn, images, labels, config.n_images, config.include_misclassified
    )
    n_old = len(info["indices"])
    if (
        indices[:n_old].tolist() != info["indices"]
        or attack_labels[:n_old].tolist() != info["labels"]
    ):
        raise UsageError(
            f"{out}: the first {n_old} images selected now differ from the run's "
            "(did the model or the data change?); use another --out"
        )
    grown = {"from": n_old, "to": config.n_images, "at": provenance.utc_now()}
    info = dict(info, config=config.to_json())
    info.update(
        _selection_fields(indices, attack_labels, labels),
        command=command or command_line(config, out, data_dir),
        grown=info.get("grown", []) + [grown],
    )
    run_folder.write_run_info(out, info)
    return info


def _with_chunk_size(config, out, images, labels, card, class_names) -> SweepConfig:
    """``config`` with its chunk size resolved: as given; else the one the run in ``out`` was
    created with; else the device's (:func:`onepixel_jax.planner.chunk_images`)."""
    if config.chunk_size is not None:
        return config
    if run_folder.has_run_info(out):
        stored = run_folder.read_run_info(out).get("config", {}).get("chunk_size")
        if _is_int(stored) and stored >= 1:
            return dataclasses.replace(config, chunk_size=int(stored))
    if class_names is not None:
        k = len(class_names)
    elif card is not None and "num_classes" in card:
        k = int(card["num_classes"])
    else:
        k = int(np.max(labels)) + 1 if len(labels) else 2
    per_image = max(1, k - 1) if config.mode == "all-targets" else 1
    chunk = planner.chunk_images(config.popsize, images.shape[1:], per_image)
    return dataclasses.replace(config, chunk_size=chunk)


def _attack_config(config: SweepConfig, batch_size: int | None, method: str) -> AttackConfig:
    """The engine settings of ``method`` (:meth:`SweepConfig.attack_config`)."""
    return config.attack_config(method, batch_size)


def _round(values: Any, digits: int = 7) -> list:
    return np.round(np.asarray(values, np.float64), digits).tolist()


def make_records(
    result: Any,
    rows: Sequence[tuple[int, int, int, int | None]],
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


def takes_count(engine: Callable) -> bool:
    """Whether ``engine`` has a ``count`` keyword (the images it attacks; the rest is padding)."""
    try:
        return "count" in inspect.signature(engine).parameters
    except (TypeError, ValueError):  # no signature (a builtin or an odd callable)
        return False


def _attack_rows(engine, key, predict_fn, images, rows, chunk, num_classes, mode, cfg, progress):
    """One engine call on ``rows``, padded to the full chunk so every call has one shape.

    The padding repeats the last row; an engine that takes ``count`` (:func:`onepixel_jax.
    attack` does) attacks only the real rows, so the padding costs no model call; another
    engine attacks the copies too. ``progress`` goes to the engine (False, or a callable
    receiving per-generation stats)."""
    per_image = 1 if mode != "all-targets" else num_classes - 1
    full = chunk * per_image
    idx = [r[1] for r in rows]
    lab = [r[2] for r in rows]
    tgt = [r[3] for r in rows]
    pad = full - len(rows)
    if pad > 0:  # repeat the last row; padded results are discarded
        idx, lab, tgt = idx + idx[-1:] * pad, lab + lab[-1:] * pad, tgt + tgt[-1:] * pad
    targets = None if mode == "untargeted" else np.asarray(tgt, np.int32)
    extra = {"count": len(rows)} if pad > 0 and takes_count(engine) else {}
    result = engine(
        key,
        predict_fn,
        images[idx],
        np.asarray(lab, np.int32),
        cfg,
        targets=targets,
        progress=progress,
        **extra,
    )
    if pad > 0:
        keep = len(rows)
        result = dataclasses.replace(
            result,
            **{
                f.name: getattr(result, f.name)[:keep]
                for f in dataclasses.fields(result)
                if isinstance(getattr(result, f.name), np.ndarray)
            },
        )
    return result


def run_sweep(
    config: SweepConfig,
    out: str | Path,
    predict_fn: Callable,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    card: Mapping | None = None,
    class_names: Sequence[str] | None = None,
    data_dir: str | None = None,
    batch_size: int | None = None,
    attack_fn: Callable | None = None,
    progress: Callable[[SweepProgress], None] | None = None,
    shard: tuple[int, int] | None = None,
    command: str | None = None,
    run_info: Mapping[str, Any] | None = None,
    record_fields: Callable[[str, Any], list[dict]] | None = None,
) -> SweepOutcome:
    """Run, resume or grow a sweep into the run folder ``out``.

    Args:
      config: what to attack and how (part of the run's identity).
      out: the run folder; created if needed. A folder holding a run of the same config is
        resumed (finished records are kept); one of another config is refused.
      predict_fn: ``(B, H, W, C)`` float32 pixels in [0, 255] -> ``(B, K)`` probabilities.
      images: ``(N, H, W, C)`` or ``(N, H, W)`` uint8 dataset split; ``labels``: ``(N,)``.
      card: the model card (its ``sha256``/``checkpoint_sha256`` and ``input_shape`` are
        checked and recorded).
      class_names: names of the K classes, for the report.
      data_dir: recorded in run.json and its reproducing command only.
      batch_size: attacks the engine evolves side by side (memory and speed only); ``None``:
        the engine's planner (:mod:`onepixel_jax.planner`).
      attack_fn: the engine, ``fn(key, predict_fn, images, labels, cfg, targets=...) ->
        AttackResult`` with ``cfg.strategy`` the method's name; ``None`` is
        :func:`onepixel_jax.attack`.
      progress: called with a :class:`SweepProgress` before the first chunk, after each
        chunk (``step`` > 0) and once per generation inside a chunk (``partial`` > 0).
      shard: ``(i, n)`` attacks only share ``i`` of ``n`` (chunks ``i``, ``i + n``, ...) and
        appends to that share's own results file, so the ``n`` shares can run at once into
        one folder; their merged records equal those of one unsharded run
        (:func:`~onepixel_jax.experiments.run_folder.load_run`). ``None``: every chunk.
      command: the command recorded in run.json as reproducing the run (``None``: the
        ``onepixel attack`` command of ``config``).
      run_info: further fields for a new run.json (an experiment grid's description of its
        cell); the caller checks them when the run resumes.
      record_fields: ``fn(method, result) -> [dict]``, fields added to the records of one
        engine call (one dict per attack of ``result``), e.g. a detector's verdict on the
        returned images.

    Returns:
      A :class:`SweepOutcome`. A KeyboardInterrupt propagates after the records of every
      finished chunk are on disk; the same call resumes.

    Raises:
      UsageError: impossible inputs (sizes, shapes, another run's folder), before any attack.
      DamagedFileError: a run-folder file cannot be read back.
      RunFolderBusyError: another process is writing ``out`` (or this share of it).
    """
    if not isinstance(config, SweepConfig):
        raise TypeError(f"config must be a SweepConfig, got {type(config).__name__}")
    if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
        raise SettingError("batch_size", f"must be at least 1, got {batch_size!r}")
    if shard is not None and not (
        len(shard) == 2 and all(map(_is_int, shard)) and 0 <= shard[0] < shard[1]
    ):
        raise SettingError("shard", f"must be (i, n) with 0 <= i < n, got {shard!r}")
    out = Path(out)
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise UsageError(f"images must be (N, H, W, C) or (N, H, W), got shape {images.shape}")
    if attack_fn is None:
        attack_fn = runner.attack
    _check_inputs(config, images, labels, card)
    config = _with_chunk_size(config, out, images, labels, card, class_names)
    check_resume(out, config, _model_sha(card))  # another run's folder: refused untouched
    with RunFolderLock(out, shard):  # one writer per folder, or per share
        return _locked_sweep(
            config, out, predict_fn, images, labels, card, class_names, data_dir,
            batch_size, attack_fn, progress, shard, command, run_info, record_fields,
        )  # fmt: skip


def _locked_sweep(
    config, out, predict_fn, images, labels, card, class_names, data_dir,
    batch_size, attack_fn, progress, shard, command=None, run_info=None, record_fields=None,
) -> SweepOutcome:  # fmt: skip
    """The body of :func:`run_sweep`, run while holding the run folder's writer lock."""
    info = check_resume(out, config, _model_sha(card))
    grown = False
    if info is None:
        info = _new_run_info(
            config, out, predict_fn, images, labels, card, class_names, data_dir, command, run_info
        )
        out.mkdir(parents=True, exist_ok=True)
        run_folder.write_run_info(out, info)
    elif info["config"]["n_images"] < config.n_images:
        info = _grow_run(out, info, config, predict_fn, images, labels, data_dir, command)
        grown = True
    indices = np.asarray(info["indices"], np.int64)
    attack_labels = np.asarray(info["labels"], np.int64)
    num_classes = int(info["num_classes"])
    if config.mode != "untargeted" and num_classes < 2:
        raise UsageError("targeted modes need at least two classes")

    wanted = min(len(indices), run_folder.max_saved_images(images[0].nbytes))
    if run_folder.saved_image_count(out) < wanted:
        run_folder.save_images(out, indices, images)

    done = {
        run_folder.record_key(r): r for r in run_folder.read_records(out, repair=True, shard=shard)
    }
    methods = config.methods
    first = methods[0]
    chunk = config.chunk_size
    base_key = jax.random.key(config.seed)
    cfgs = {m: _attack_config(config, batch_size, m) for m in config.methods}

    def chunk_rows(start: int) -> list[tuple[int, int, int, int | None]]:
        stop = min(start + chunk, len(indices))
        return [
            (p, int(indices[p]), int(attack_labels[p]), t)
            for p in range(start, stop)
            for t in targets_for(
                config.mode, int(attack_labels[p]), num_classes, config.seed, int(indices[p])
            )
        ]

    def row_key(method: str, row: tuple) -> tuple[str, int, int]:
        return (method, row[1], -1 if row[3] is None else row[3])

    def fooled(rows: list) -> int:
        return len({r[1] for r in rows if done[row_key(first, r)]["success"]})

    starts = range(0, len(indices), chunk)
    if shard is not None:  # share i of n: chunks i, i + n, ... (chunks fix the random keys)
        starts = starts[shard[0] :: shard[1]]
    chunks = [(start, chunk_rows(start)) for start in starts]
    images_total = sum(len({r[0] for r in rows}) for _, rows in chunks)
    images_done = n_fooled = queries = 0
    seconds = 0.0
    for _, rows in chunks:  # count what earlier runs finished
        if all(row_key(m, r) in done for m in methods for r in rows):
            images_done += len({r[0] for r in rows})
            n_fooled += fooled(rows)
    reused = sum(1 for _, rows in chunks for m in methods for r in rows if row_key(m, r) in done)

    def report(step: int, chunk_images: int = 0, partial: float = 0.0) -> None:
        if progress is not None:
            progress(
                SweepProgress(
                    images_done,
                    images_total,
                    n_fooled,
                    queries,
                    seconds,
                    step,
                    chunk_images,
                    partial,
                )
            )

    def engine_progress(rows: list, calls_before: int, calls: int):
        """A hook turning the engine's per-generation stats into the chunk's fraction done."""
        if progress is None:
            return False
        chunk_images = len({r[0] for r in rows})
        budget = cfgs[methods[0]].budget

        def hook(stats: dict) -> None:
            n = max(int(stats["images"]), 1)
            frac = max(stats["images_done"] / n, stats["evaluations"] / (n * budget))
            report(0, chunk_images, (calls_before + min(frac, 1.0)) / calls)

        return hook

    report(0)
    attacks_run = 0
    timed: set[str] = set()  # methods whose first engine call of this session is recorded
    for start, rows in chunks:
        chunk_key = jax.random.fold_in(base_key, start)
        todo = [m for m in methods if any(row_key(m, r) not in done for r in rows)]
        for m, method in enumerate(methods):
            if method not in todo:
                continue
            hook = engine_progress(rows, todo.index(method), len(todo))
            t0 = time.perf_counter()
            result = _attack_rows(
                attack_fn,
                chunk_key if config.shared_keys else jax.random.fold_in(chunk_key, m),
                predict_fn,
                images,
                rows,
                chunk,
                num_classes,
                config.mode,
                cfgs[method],
                hook,
            )
            elapsed = time.perf_counter() - t0
            recs = make_records(result, rows, images[[r[1] for r in rows]], method, elapsed)
            compile_s = getattr(result, "compile_seconds", None)
            if method not in timed and compile_s is not None:
                # The session's first engine call of this method compiles its loop: its
                # time to the first generation goes into its records (report.md shows it).
                for rec in recs:
                    rec["compile_seconds"] = round(float(compile_s), 3)
            timed.add(method)
            if record_fields is not None:
                for rec, extra in zip(recs, record_fields(method, result), strict=True):
                    rec.update(extra)
            new = [r for r in recs if run_folder.record_key(r) not in done]
            run_folder.append_records(out, new, shard=shard)
            for r in new:
                done[run_folder.record_key(r)] = r
            attacks_run += len(new)
            queries += int(sum(r["queries"] for r in recs))
            seconds += elapsed
        if todo:
            step = len({r[0] for r in rows})
            images_done += step
            n_fooled += fooled(rows)
            report(step)
    return SweepOutcome(out, info, attacks_run, reused, grown)
