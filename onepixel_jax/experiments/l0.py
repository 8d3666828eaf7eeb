"""The L0 robustness curve: every image attacked with growing ``d`` until it is fooled.

``onepixel attack --pixels 1,2,3,5,10,20`` (:func:`run_l0`, :class:`L0Config`) attacks the
first ``n_images`` images a model classifies correctly with a *ladder* of pixel counts. At each
step ``d`` of the ladder:

- an image fooled at a smaller step is fooled at ``d`` too: its record is carried over (its
  pixels, ``queries`` 0, ``fooled_at`` the step that fooled it), without a query;
- every other image is attacked from the best pixels the previous step found for it: those
  pixels are written into the image and the search adds ``d - d_prev`` pixels to them
  (``d`` pixels in all). The engine takes no per-image starting point, so the earlier pixels
  stay where they are (a greedy ladder); the search may only overwrite one of them with a
  new colour.

The result per ``d`` is the robust accuracy (images not fooled with at most ``d`` pixels) with
a Wilson 95 % interval and the median queries per success, counted over the whole ladder up to
the step that fooled the image (:func:`l0_summary`, :func:`l0_table`,
:func:`onepixel_jax.experiments.plots.plot_robust_accuracy`).

**The run folder** is an ordinary one (``run.json``, ``results.jsonl``, ``images.npz``, the
writer's lock): ``run.json`` describes the ladder under ``"l0"``, each record names its step
(``"method"`` is ``"<method> d=<d>"``, with ``"d"``, ``"queries_total"``, ``"fooled_at"``
and ``"l0"``, the number of pixels that differ from the clean image). The same command resumes
it (finished steps and images are kept; images are attacked in calls of ``chunk_size`` whose
random keys depend only on the seed, the step and the image, so a resumed run writes the same
records) and a larger ``n_images`` grows it. Each record's ``fitness`` is the step's best
fitness every ``fitness_stride`` generations (at most :data:`HISTORY_POINTS` values).

**Protocols** (:data:`PROTOCOLS`) name a ladder, a method and a cap:
``sparse-k20`` is the protocol of the sparse-attack literature's CIFAR-10 figures (Sparse-RS
as published, ``k = 20`` pixels, 10,000 queries per image, untargeted).
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from onepixel_jax import metrics
from onepixel_jax.errors import UsageError
from onepixel_jax.experiments import run_folder
from onepixel_jax.experiments.lock import RunFolderLock
from onepixel_jax.experiments.selection import select_images, targets_for
from onepixel_jax.experiments.sweep import takes_count

LADDER = (1, 2, 3, 5, 10, 20)
L0 = "l0"  # the run.json field describing the ladder
HISTORY_POINTS = 101  # fitness values kept per record
L0_MODES = ("untargeted", "targeted")
TABLE = "l0.md"
FIGURE = "l0.png"


class L0SettingError(UsageError):
    """An :class:`L0Config` field with an impossible value; ``field`` names it."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field} {detail}")
        self.field = field
        self.detail = detail


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


# --------------------------------------------------------------------------------------
# The ladder


def parse_pixels(text: str) -> int | tuple[int, ...]:
    """``--pixels``: one count (``"3"`` -> 3) or a ladder (``"1,2,5"`` -> ``(1, 2, 5)``).

    Raises ValueError with one line for an empty item (``"1,,3"``), a value that is not an
    integer >= 1 (``"0"``), or a ladder that does not grow strictly (``"3,2"``, ``"2,2"``).
    """
    parts = [p.strip() for p in str(text).split(",")]
    values = []
    for part in parts:
        if not part:
            where = "an empty item" if len(parts) > 1 else "no value"
            raise ValueError(f"has {where} in {text!r}; give counts such as 1,2,3,5")
        if not part.isdigit():
            raise ValueError(f"must be integers >= 1, got {part!r} in {text!r}")
        value = int(part)
        if value < 1:
            raise ValueError(f"must be integers >= 1, got {value} in {text!r}")
        if values and value <= values[-1]:
            raise ValueError(f"must grow strictly, got {values[-1]} then {value} in {text!r}")
        values.append(value)
    return values[0] if len(values) == 1 and "," not in str(text) else tuple(values)


def check_ladder(pixels: Sequence[int], height: int, width: int) -> tuple[int, ...]:
    """``pixels`` as a tuple, or L0SettingError when a step exceeds the ``height x width``
    image or the ladder is empty or does not grow strictly."""
    ladder = tuple(pixels)
    if not ladder:
        raise L0SettingError("pixels", "must name at least one pixel count")
    for i, d in enumerate(ladder):
        if not _is_int(d) or d < 1:
            raise L0SettingError("pixels", f"must be integers >= 1, got {d!r}")
        if i and d <= ladder[i - 1]:
            raise L0SettingError("pixels", f"must grow strictly, got {ladder[i - 1]} then {d}")
    if ladder[-1] > height * width:
        raise L0SettingError(
            "pixels", f"{ladder[-1]} exceeds the {height}x{width} image ({height * width} pixels)"
        )
    return tuple(int(d) for d in ladder)


# --------------------------------------------------------------------------------------
# Configuration and protocols


@dataclasses.dataclass(frozen=True)
class L0Config:
    """Everything that changes an L0 run's records; a resumed run must match it.

    Attributes:
      model, dataset, split: what is attacked (names as given to the loaders).
      n_images: the first images the model classifies correctly; a larger value grows a run.
      pixels: the ladder, strictly growing pixel counts.
      method: a named method (:func:`onepixel_jax.experiments.methods.names`), run at its own
        budget at every step (capped at ``max_queries``), stopping at the first success.
      mode: ``"untargeted"`` or ``"targeted"`` (one seeded random target per image).
      max_queries: the cap of each step's budget (``None``: the method's own).
      seed: the random stream, ``0 <= seed < 2**32``.
      chunk_size: images per engine call (speed and memory; the records do not depend on it).
      include_misclassified: attack every image with the model's prediction as label.
      protocol: the name of the :data:`PROTOCOLS` entry the run follows, if any.
    """

    model: str
    dataset: str
    split: str = "test"
    n_images: int = 100
    pixels: tuple[int, ...] = LADDER
    method: str = "fast"
    mode: str = "untargeted"
    max_queries: int | None = None
    seed: int = 0
    chunk_size: int = 20
    include_misclassified: bool = False
    protocol: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pixels", tuple(self.pixels))
        for name in ("model", "dataset", "split"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise L0SettingError(name, f"must be a non-empty string, got {value!r}")
        for name, minimum in (("n_images", 1), ("chunk_size", 1)):
            value = getattr(self, name)
            if not _is_int(value) or value < minimum:
                raise L0SettingError(name, f"must be an integer >= {minimum}, got {value!r}")
        check_ladder(self.pixels, 2**31, 1)
        if self.mode not in L0_MODES:
            raise L0SettingError("mode", f"must be one of {', '.join(L0_MODES)}, got {self.mode!r}")
        if self.max_queries is not None and (not _is_int(self.max_queries) or self.max_queries < 1):
            raise L0SettingError(
                "max_queries", f"must be an integer >= 1, got {self.max_queries!r}"
            )
        if not _is_int(self.seed) or not 0 <= self.seed < 2**32:
            raise L0SettingError("seed", f"must be an integer in [0, 2**32), got {self.seed!r}")
        if not isinstance(self.include_misclassified, bool):
            raise L0SettingError("include_misclassified", "must be a bool")
        for d, prev in zip(self.pixels, (0,) + self.pixels[:-1], strict=True):
            try:
                self.attack_config(d - prev)
            except (ValueError, TypeError) as exc:
                field = "max_queries" if str(exc).startswith("max_queries") else "method"
                raise L0SettingError(field, f"({self.method}): {exc}") from None

    def attack_config(self, pixels: int):
        """The engine settings of a step that adds ``pixels`` pixels."""
        from onepixel_jax.experiments import methods as methods_lib

        return methods_lib.attack_config(
            self.method,
            pixels=pixels,
            targeted=self.mode == "targeted",
            early_stop="success",
            max_queries=self.max_queries,
        )

    def label(self, d: int) -> str:
        """The ``method`` field of the records of step ``d``."""
        return f"{self.method} d={d}"

    def steps(self) -> list[tuple[int, int]]:
        """``(d, d_prev)`` per step (``d_prev`` 0 at the first)."""
        return list(zip(self.pixels, (0,) + self.pixels[:-1], strict=True))

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pixels"] = list(self.pixels)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> L0Config:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclasses.dataclass(frozen=True)
class L0Protocol:
    """A named ladder: pixel counts, a method and the cap of each step."""

    name: str
    pixels: tuple[int, ...]
    method: str
    max_queries: int | None
    about: str

    def config(self, **fields: Any) -> L0Config:
        """The :class:`L0Config` of this protocol with ``fields`` (model, dataset, ...)."""
        return L0Config(
            pixels=self.pixels,
            method=self.method,
            max_queries=self.max_queries,
            protocol=self.name,
            **fields,
        )

    @property
    def budget(self) -> int:
        """Queries per image at most (all steps)."""
        total = 0
        probe = L0Config("m", "d", pixels=self.pixels, method=self.method,
                         max_queries=self.max_queries)  # fmt: skip
        for d, prev in probe.steps():
            total += probe.attack_config(d - prev).budget
        return total


PROTOCOLS: dict[str, L0Protocol] = {
    p.name: p
    for p in (
        L0Protocol(
            "sparse-k20",
            (20,),
            "sparse-rs-10k",
            10_000,
            "Sparse-RS as published, k = 20 pixels, 10,000 queries, untargeted (the protocol "
            "of the sparse-attack literature's CIFAR-10 robust accuracies)",
        ),
        L0Protocol(
            "fast-ladder",
            LADDER,
            "fast",
            None,
            "fast at d = 1, 2, 3, 5, 10, 20, each step from the previous step's pixels",
        ),
    )
}


def protocol(name: str) -> L0Protocol:
    """The protocol ``name`` (UsageError naming the others)."""
    if name not in PROTOCOLS:
        raise UsageError(f"unknown L0 protocol {name!r} (available: {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]


# --------------------------------------------------------------------------------------
# Running


@dataclasses.dataclass(frozen=True)
class L0Outcome:
    """What :func:`run_l0` did: ``attacks_run`` new attack records, ``carried`` records of
    images fooled at a smaller step, ``reused`` records already in the folder."""

    out: Path
    info: dict
    attacks_run: int
    carried: int
    reused: int


def command_line(config: L0Config, out: str | Path, data_dir: str | None = None) -> str:
    """The ``onepixel attack`` command that runs (or resumes) ``config``."""
    parts = ["onepixel", "attack", "--model", config.model, "--dataset", config.dataset]
    parts += ["--split", config.split, "--n-images", str(config.n_images)]
    if config.protocol is not None:
        parts += ["--protocol", config.protocol]
    else:
        parts += ["--pixels", ",".join(map(str, config.pixels)), "--strategy", config.method]
        if config.max_queries is not None:
            parts += ["--max-queries", str(config.max_queries)]
    parts += ["--mode", config.mode, "--seed", str(config.seed)]
    parts += ["--chunk-size", str(config.chunk_size)]
    parts += ["--include-misclassified"] if config.include_misclassified else []
    parts += ["--data-dir", str(data_dir)] if data_dir is not None else []
    return shlex.join(parts + ["--out", str(out)])


def is_l0_run(info: Mapping[str, Any]) -> bool:
    """Whether a run.json is that of an L0 run."""
    return isinstance(info.get(L0), dict)


def _model_sha(card: Mapping | None) -> str | None:
    if not isinstance(card, Mapping):
        return None
    return card.get("sha256") or card.get("checkpoint_sha256")


def _run_config(config: L0Config) -> dict[str, Any]:
    """run.json's ``config``: the fields every run folder reader knows (no single ``pixels``:
    the ladder is under ``l0``)."""
    return {
        "model": config.model,
        "dataset": config.dataset,
        "split": config.split,
        "n_images": config.n_images,
        "mode": config.mode,
        "early_stop": "success",
        "seed": config.seed,
        "methods": [config.label(d) for d in config.pixels],
        "include_misclassified": config.include_misclassified,
    }


def _selection(config, predict_fn, images, labels) -> dict[str, Any]:
    indices, attack_labels, probs = select_images(
        predict_fn, images, labels, config.n_images, config.include_misclassified
    )
    return {
        "indices": indices.tolist(),
        "labels": attack_labels.tolist(),
        "true_labels": labels[indices].astype(int).tolist(),
        "num_classes": int(probs.shape[1]),
    }


def _check_resume(out: Path, config: L0Config, card) -> dict | None:
    """The run info of ``out`` when it holds this run (a smaller ``n_images`` included)."""
    if not run_folder.has_run_info(out):
        if run_folder.results_files(out):
            raise UsageError(
                f"{out} has {run_folder.RESULTS} but no {run_folder.RUN_INFO}; "
                "delete the folder or use another --out"
            )
        return None
    info = run_folder.read_run_info(out)
    if not is_l0_run(info):
        raise UsageError(f"{out} holds a run that is not an L0 ladder; use another --out")
    try:
        old = L0Config.from_json(info[L0])
    except (TypeError, ValueError) as exc:
        raise run_folder.DamagedFileError(
            f"run info {run_folder.run_info_path(out)} has an unreadable {L0} field ({exc}); "
            f"{run_folder.DAMAGED_HINT}"
        ) from None
    diffs = [
        f"{f.name}: {getattr(old, f.name)!r} -> {getattr(config, f.name)!r}"
        for f in dataclasses.fields(L0Config)
        if f.name not in ("n_images", "chunk_size")
        and getattr(old, f.name) != getattr(config, f.name)
    ]
    if config.n_images < old.n_images:
        diffs.append(f"n_images: {old.n_images} -> {config.n_images} (a run grows, not shrinks)")
    if info.get("model_sha256") != _model_sha(card):
        diffs.append("model checksum changed")
    if diffs:
        raise UsageError(
            f"{out} holds an L0 run with other settings ({'; '.join(diffs)}); use another "
            "--out or the original settings"
        )
    return info


def _new_info(config, out, predict_fn, images, labels, card, class_names, data_dir, command):
    from onepixel_jax.experiments import methods as methods_lib

    return {
        L0: config.to_json(),
        "config": _run_config(config),
        "method_settings": {
            config.label(d): methods_lib.describe(config.attack_config(d - prev))
            for d, prev in config.steps()
        },
        "model_sha256": _model_sha(card),
        "model_card": dict(card) if isinstance(card, Mapping) else {},
        **run_folder.provenance_fields(),
        "command": command or command_line(config, out, data_dir),
        "data_dir": None if data_dir is None else str(data_dir),
        "class_names": list(class_names) if class_names is not None else [],
        "image_shape": list(images.shape[1:]),
        "split_size": int(images.shape[0]),
        **_selection(config, predict_fn, images, labels),
    }


def _grow(out, info, config, predict_fn, images, labels, data_dir, command) -> dict:
    from onepixel_jax import provenance

    chosen = _selection(config, predict_fn, images, labels)
    n_old = len(info["indices"])
    if chosen["indices"][:n_old] != info["indices"] or chosen["labels"][:n_old] != info["labels"]:
        raise UsageError(
            f"{out}: the first {n_old} images selected now differ from the run's (did the model "
            "or the data change?); use another --out"
        )
    grown = {"from": n_old, "to": config.n_images, "at": provenance.utc_now()}
    info = dict(info, **chosen)
    info[L0] = dict(info[L0], n_images=config.n_images)
    info["config"] = dict(info["config"], n_images=config.n_images)
    info["grown"] = info.get("grown", []) + [grown]
    info["command"] = command or command_line(config, out, data_dir)
    run_folder.write_run_info(out, info)
    return info


def apply_tuples(image: np.ndarray, tuples: Sequence[Sequence[int]]) -> np.ndarray:
    """``image`` (H, W, C) uint8 with pixel ``tuples`` ``[row, col, v...]`` written in order."""
    out = np.array(image, copy=True)
    for t in tuples:
        out[int(t[0]), int(t[1])] = np.asarray(t[2:], out.dtype)
    return out


def changed_pixels(clean: np.ndarray, tuples: Sequence[Sequence[int]]) -> int:
    """The L0 distance: pixels of the adversarial image that differ from ``clean``."""
    adv = apply_tuples(clean, tuples)
    return int(np.any(adv != clean, axis=-1).sum())


def thinned(history: np.ndarray) -> tuple[list[float], int]:
    """At most :data:`HISTORY_POINTS` values of a best-fitness history, every ``stride``-th
    (the last one always kept), and the stride."""
    h = np.asarray(history, np.float64)
    stride = max(1, math.ceil((len(h) - 1) / (HISTORY_POINTS - 1))) if len(h) > 1 else 1
    picked = h[::stride]
    if (len(h) - 1) % stride:
        picked = np.append(picked, h[-1])
    return np.round(picked, 7).tolist(), stride


def _rounded(values) -> list:
    return np.round(np.asarray(values, np.float64), 7).tolist()


def _attack(predict_fn, images, labels, targets, keys, cfg, count=None):
    """One engine call with per-image keys (the records depend only on the seed, the step and
    the image, not on which images share the call); only the first ``count`` are attacked."""
    from onepixel_jax import runner

    return runner.attack(
        keys[0], predict_fn, images, labels, cfg, targets, progress=False, image_keys=keys,
        count=count,
    )  # fmt: skip


def run_l0(
    config: L0Config,
    out: str | Path,
    predict_fn: Callable,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    card: Mapping | None = None,
    class_names: Sequence[str] | None = None,
    data_dir: str | None = None,
    command: str | None = None,
    progress: Callable[[str], None] | None = None,
    attack_fn: Callable | None = None,
) -> L0Outcome:
    """Run, resume or grow the L0 ladder ``config`` into the run folder ``out``.

    Args:
      config: the ladder, the method, the images.
      out: the run folder (created if needed; one of another run is refused).
      predict_fn: ``(B, H, W, C)`` float32 pixels in [0, 255] -> ``(B, K)`` probabilities.
      images: ``(N, H, W, C)`` or ``(N, H, W)`` uint8 dataset split; ``labels``: ``(N,)``.
      card: the model card (its checksum is recorded and checked on resume).
      class_names, data_dir, command: recorded in run.json.
      progress: receives one line per engine call.
      attack_fn: ``fn(predict_fn, images, labels, targets, keys, cfg) -> AttackResult``
        (default: the engine with per-image keys).

    Raises:
      UsageError: impossible inputs (a step larger than the image, another run's folder),
        before any attack; DamagedFileError: a run file cannot be read back;
        RunFolderBusyError: another process is writing ``out``.
    """
    if not isinstance(config, L0Config):
        raise TypeError(f"config must be an L0Config, got {type(config).__name__}")
    out = Path(out)
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise UsageError(f"images must be (N, H, W, C) or (N, H, W), got shape {images.shape}")
    if labels.shape != (images.shape[0],):
        raise UsageError(f"labels have shape {labels.shape}, expected ({images.shape[0]},)")
    check_ladder(config.pixels, images.shape[1], images.shape[2])
    if config.n_images > images.shape[0]:
        raise L0SettingError(
            "n_images", f"{config.n_images} is larger than the {config.dataset} {config.split} "
            f"split ({images.shape[0]} images)"
        )  # fmt: skip
    _check_resume(out, config, card)
    with RunFolderLock(out, None):
        info = _check_resume(out, config, card)
        if info is None:
            info = _new_info(
                config, out, predict_fn, images, labels, card, class_names, data_dir, command
            )
            out.mkdir(parents=True, exist_ok=True)
            run_folder.write_run_info(out, info)
        elif len(info["indices"]) < config.n_images:
            info = _grow(out, info, config, predict_fn, images, labels, data_dir, command)
        wanted = min(len(info["indices"]), run_folder.max_saved_images(images[0].nbytes))
        if run_folder.saved_image_count(out) < wanted:
            run_folder.save_images(out, np.asarray(info["indices"], np.int64), images)
        return _ladder(config, out, info, predict_fn, images, progress, attack_fn)


def _ladder(config, out, info, predict_fn, images, progress, attack_fn) -> L0Outcome:
    attack_fn = attack_fn or _attack
    done = {(r["method"], int(r["index"])): r for r in run_folder.read_records(out, repair=True)}
    reused = len(done)
    num_classes = int(info["num_classes"])
    rows = []  # (position, index, label, target)
    for pos, (index, label) in enumerate(zip(info["indices"], info["labels"], strict=True)):
        (target,) = targets_for(config.mode, int(label), num_classes, config.seed, int(index))
        rows.append((pos, int(index), int(label), target))
    attacks_run = carried = 0
    base = jax.random.key(config.seed)
    for d, prev in config.steps():
        label_d, label_prev = config.label(d), config.label(prev) if prev else None
        todo, carry = [], []
        for row in rows:
            if (label_d, row[1]) in done:
                continue
            before = done.get((label_prev, row[1])) if prev else None
            if before is not None and before["success"]:
                carry.append((row, before))
            else:
                todo.append((row, before))
        new = [_carried(label_d, d, row, before) for row, before in carry]
        run_folder.append_records(out, new)
        for rec in new:
            done[(label_d, rec["index"])] = rec
        carried += len(new)
        cfg = config.attack_config(d - prev)
        step_key = jax.random.fold_in(base, d)
        for start in range(0, len(todo), config.chunk_size):
            part = todo[start : start + config.chunk_size]
            recs = _attack_part(
                config, cfg, d, part, images, predict_fn, attack_fn, step_key, label_d
            )
            run_folder.append_records(out, recs)
            for rec in recs:
                done[(label_d, rec["index"])] = rec
            attacks_run += len(recs)
            if progress is not None:
                fooled = sum(1 for r in recs if r["success"])
                progress(
                    f"d = {d}: {start + len(part)}/{len(todo)} images attacked ({fooled} of "
                    f"the last {len(part)} fooled), {len(carry)} carried from smaller d"
                )
    return L0Outcome(out, info, attacks_run, carried, reused)


def _carried(label: str, d: int, row, before: dict) -> dict:
    """The record at step ``d`` of an image fooled at a smaller step."""
    rec = dict(before)
    rec.update(
        method=label,
        d=d,
        queries=0,
        fooled_at=before.get("fooled_at") or before["d"],
        fitness=[before["fitness"][-1]],
        fitness_stride=1,
        seconds=0.0,
    )
    return rec


def _attack_part(config, cfg, d, part, images, predict_fn, attack_fn, step_key, label) -> list:
    """Attack ``part`` (rows with their previous step's record) at step ``d``; padded to the
    chunk size so that every call of a step has one shape (an ``attack_fn`` taking ``count``
    spends no model call on the padding)."""
    n = len(part)
    pad = config.chunk_size - n
    padded = part + part[-1:] * pad
    clean = images[[row[1] for row, _ in padded]]
    start = np.stack(
        [
            apply_tuples(c, before["pixels"] if before else [])
            for c, (_, before) in zip(clean, padded, strict=True)
        ]
    )
    labels = np.asarray([row[2] for row, _ in padded], np.int32)
    targets = None
    if config.mode == "targeted":
        targets = np.asarray([row[3] for row, _ in padded], np.int32)
    keys = jax.vmap(lambda i: jax.random.fold_in(step_key, i))(
        np.asarray([row[1] for row, _ in padded], np.int32)
    )
    t0 = time.perf_counter()
    extra = {"count": n} if pad > 0 and takes_count(attack_fn) else {}
    result = attack_fn(predict_fn, start, labels, targets, keys, cfg, **extra)
    seconds = (time.perf_counter() - t0) / max(n, 1)
    recs = []
    for i, (row, before) in enumerate(part):
        pos, index, label_, target = row
        earlier = [list(map(int, t)) for t in (before["pixels"] if before else [])]
        found = np.asarray(result.pixels[i]).astype(int).tolist()
        pixels = earlier + found
        original = clean[i]
        probs = np.asarray(result.probs[i], np.float64)
        history, stride = thinned(result.fitness_history[i])
        queries = int(result.queries[i])
        r, c = np.asarray([p[0] for p in pixels]), np.asarray([p[1] for p in pixels])
        before_vals = original[r, c].reshape(len(pixels), -1).astype(np.int64)
        after_vals = np.asarray([p[2:] for p in pixels], np.int64)
        recs.append(
            {
                "method": label,
                "d": d,
                "position": int(pos),
                "index": int(index),
                "label": int(label_),
                "target": None if target is None else int(target),
                "success": bool(result.success[i]),
                "predicted": int(probs.argmax()),
                "queries": queries,
                "queries_total": queries + (int(before["queries_total"]) if before else 0),
                "fooled_at": d if bool(result.success[i]) else None,
                "pixels": pixels,
                "l0": changed_pixels(original, pixels),
                "original_values": before_vals.tolist(),
                "distortion": float(np.abs(after_vals - before_vals).mean()),
                "probs": _rounded(probs),
                "original_probs": _rounded(
                    before["original_probs"] if before else result.original_probs[i]
                ),
                "fitness": history,
                "fitness_stride": stride,
                "seconds": round(seconds, 4),
            }
        )
    return recs


# --------------------------------------------------------------------------------------
# Measuring


def l0_summary(info: Mapping[str, Any], records: Sequence[dict]) -> list[dict[str, Any]]:
    """Per step of the ladder: images with a record, images fooled with at most ``d`` pixels,
    robust accuracy with its Wilson 95 % interval, images newly fooled at ``d``, and the median
    queries per success (over the ladder up to the step that fooled the image, and within that
    step alone)."""
    config = L0Config.from_json(info[L0])
    out = []
    for d in config.pixels:
        recs = [r for r in records if r["method"] == config.label(d)]
        n = len(recs)
        fooled = [r for r in recs if r["success"]]
        new = [r for r in fooled if r.get("fooled_at") == d]
        lo, hi = metrics.wilson_interval(n - len(fooled), n) if n else (math.nan, math.nan)
        totals = [int(r["queries_total"]) for r in fooled]
        steps = [int(r["queries"]) for r in new]
        out.append(
            {
                "d": d,
                "images": n,
                "fooled": len(fooled),
                "new": len(new),
                "robust": (n - len(fooled)) / n if n else math.nan,
                "robust_low": lo,
                "robust_high": hi,
                "median_queries": float(np.median(totals)) if totals else math.nan,
                "median_step_queries": float(np.median(steps)) if steps else math.nan,
                "median_l0": float(np.median([r["l0"] for r in fooled])) if fooled else math.nan,
                "queries": int(sum(int(r["queries"]) for r in recs)),
            }
        )
    return out


def _fmt(x: float, spec: str = "{:,.0f}") -> str:
    return "n/a" if x is None or not math.isfinite(x) else spec.format(x)


def l0_table(info: Mapping[str, Any], rows: Sequence[dict], title: str | None = None) -> str:
    """The Markdown table of :func:`l0_summary`'s rows."""
    config = L0Config.from_json(info[L0])
    head = title or (
        f"{config.model}, {config.method}"
        + (f" (protocol {config.protocol})" if config.protocol else "")
        + f", {config.mode}, {config.split} images"
    )
    lines = [
        f"### {head}",
        "",
        "| d | images | fooled with <= d pixels | newly fooled at d | robust accuracy [95 % CI] "
        "| median queries per success (ladder) | median queries at d (new) | median changed "
        "pixels | queries spent at d |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = (
            f"{100 * r['robust']:.1f} % [{100 * r['robust_low']:.1f}, {100 * r['robust_high']:.1f}]"
            if r["images"]
            else "n/a"
        )
        lines.append(
            f"| {r['d']} | {r['images']} | {r['fooled']} | {r['new']} | {ci} | "
            f"{_fmt(r['median_queries'])} | {_fmt(r['median_step_queries'])} | "
            f"{_fmt(r['median_l0'], '{:.0f}')} | {r['queries']:,} |"
        )
    cap = config.max_queries
    budget = "its own budget" + (f" capped at {cap:,} queries" if cap else "")
    lines += [
        "",
        f"Each step runs {config.method} at {budget}, stopping at the first success; an image "
        "fooled at a smaller d counts as fooled at every larger d (no query), the others start "
        "from the previous step's pixels. Queries per success count every step up to the one "
        "that fooled the image. Intervals are Wilson 95 % intervals.",
    ]
    return "\n".join(lines) + "\n"


def write_l0_report(run_dir: str | Path) -> list[dict[str, Any]]:
    """Write ``l0.md`` (the table) and ``l0.png`` (robust accuracy against d) into an L0 run
    folder; returns the summary rows."""
    from onepixel_jax.experiments import plots
    from onepixel_jax.files import write_bytes_atomic

    run_dir = Path(run_dir)
    info, records = run_folder.load_run(run_dir, "re-run the ladder into a new --out")
    if not is_l0_run(info):
        raise UsageError(f"{run_dir} is not an L0 run")
    rows = l0_summary(info, records)
    config = L0Config.from_json(info[L0])
    figure = run_dir / FIGURE
    if figure.exists():
        figure.unlink()
    plots.plot_robust_accuracy({config.model: rows}, figure, f"{config.method}, {config.mode}")
    text = l0_table(info, rows) + f"\n![robust accuracy against d]({FIGURE})\n"
    write_bytes_atomic(run_dir / TABLE, text.encode())
    return rows


def summary_line(run_dir: str | Path, rows: Sequence[dict]) -> str:
    """One line: robust accuracy at each d."""
    parts = [f"d={r['d']}: {_fmt(100 * r['robust'], '{:.0f}')} %" for r in rows if r["images"]]
    return f"{run_dir}: robust accuracy " + ", ".join(parts)


__all__ = [
    "HISTORY_POINTS",
    "L0",
    "LADDER",
    "PROTOCOLS",
    "L0Config",
    "L0Outcome",
    "L0Protocol",
    "L0SettingError",
    "apply_tuples",
    "changed_pixels",
    "check_ladder",
    "command_line",
    "is_l0_run",
    "l0_summary",
    "l0_table",
    "parse_pixels",
    "protocol",
    "run_l0",
    "summary_line",
    "thinned",
    "write_l0_report",
]
