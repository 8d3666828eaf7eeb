"""The paper's tables at the paper's scale: Su, Vargas & Sakurai (2019), Tables IV, V, VII, VIII.

The reproduction is a set of **cells**, each one ordinary run folder written by
:func:`~onepixel_jax.experiments.sweep.run_sweep` (resume, growth with a larger ``n_images``,
shares, writer lock): one network, one search method, ``d`` pixels, a mode, a dataset split.
Every cell follows the paper's Section V protocol:

- images: random images of the split in the seeded order
  :func:`~onepixel_jax.experiments.selection.seeded_order`, the first ``n_images`` of that order
  the network classifies correctly ("500 random images", correctly classified). Every cell of a
  split uses the same order, so the first images of any two cells are the same images and pair
  image by image. In the run folder, a record's ``index`` is the image's position in that order
  (the run attacks the split in that order); its dataset index is ``order[index]``, which
  :func:`dataset_indices` gives back and run.json's ``"selection"`` describes;
- search: DE/rand/1 with F = 0.5, no crossover, 400 candidates, 100 generations (``paper``);
  random search at the same budget (``random``); the bound-handling variant (``paper-clip``);
- early stop when the target's probability exceeds the original class's
  (``target_over_true``, for a non-targeted attack its first success);
- common random numbers (``shared_keys``, one method per folder): image ``p`` of every
  untargeted cell of a split draws the same random numbers, so the DE and random-search cells
  share their first 400 candidates and differ only by the search.

The Kaggle CIFAR-10 set of the paper's Section IV is not available; its closest substitute is
the lossy 10,000-image test split (``test-jpeg``) attacked with the network's own prediction
as label (``include_misclassified``, as the paper does on Kaggle).

Cells live in a working root (``runs/reproduction``, not committed); :func:`snapshot` copies
their ``run.json`` and records (gzip) to the committed records folder
(``benchmarks/results/reproduction``), from which :func:`write_tables` regenerates every table
and figure of docs/reproduction.md, and from which :func:`run_cell` restores a cell that the
working root lacks, so a fresh checkout continues the committed runs.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onepixel_jax.errors import UsageError
from onepixel_jax.experiments import inputs, run_folder
from onepixel_jax.experiments.selection import seeded_order, select_images
from onepixel_jax.experiments.sweep import SettingError, SweepConfig, SweepOutcome, run_sweep
from onepixel_jax.files import read_json_object, write_bytes_atomic, write_json_atomic

FIELD = "reproduction"  # run.json: the cell's description, checked when the cell resumes
SELECTION = "selection"  # run.json: how positions map to dataset indices
CLEAN = "clean-accuracy.json"
RECORDS_GZ = "results.jsonl.gz"
WORK_ROOT = "runs/reproduction"
RECORDS_ROOT = "benchmarks/results/reproduction"
NETWORKS = ("allconv-cifar10", "nin-cifar10", "vgg16-cifar10")
# The networks retrained with the paper's Section V changes that differ from NETWORKS' (VGG16
# is unchanged there), each with the network of NETWORKS it stands beside in Tables VII, VIII.
SECTION_V = {
    "nin-section5-cifar10": "nin-cifar10", "allconv-section5-cifar10": "allconv-cifar10",
}  # fmt: skip
SHORT = {
    "allconv-cifar10": "allconv", "nin-cifar10": "nin", "vgg16-cifar10": "vgg16",
    "nin-section5-cifar10": "nin5", "allconv-section5-cifar10": "allconv5",
}  # fmt: skip
LABEL = {
    "allconv-cifar10": "AllConv", "nin-cifar10": "NiN", "vgg16-cifar10": "VGG16",
    "nin-section5-cifar10": "NiN (Section V)", "allconv-section5-cifar10": "AllConv (Section V)",
}  # fmt: skip
CLEAN_SPLITS = ("test", "test-jpeg")
PREDICT_BATCH = 250


def _check_name(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value or "/" in value or value in (".", ".."):
        raise SettingError(field, f"must be a non-empty name without '/', got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class ReproductionCell:
    """One run folder of the reproduction, ``ROOT/<name>``.

    Attributes:
      name: the folder's name.
      model: a checkpoint name or folder; its card names the dataset.
      method: the search method (a name of :mod:`~onepixel_jax.experiments.methods`).
      pixels: perturbed pixels ``d``.
      mode: ``"untargeted"`` (true non-targeted) or ``"all-targets"`` (the nine targeted
        attacks per image of the paper's targeted figures).
      split: the dataset split (``test``: the lossless first 1,000 CIFAR-10 test images;
        ``test-jpeg``: the lossy 10,000, the Kaggle substitute).
      include_misclassified: attack every image of the order with the network's prediction
        as label (the paper's Kaggle protocol) instead of the correctly classified ones.
      n_images: the paper's number of images (500 non-targeted, 300 targeted); a run may
        stop short of it and grow later.
      chunk_size: images per engine call and per write; with ``seed`` it fixes the keys.
      seed: the attack's random stream; ``selection_seed``: the image order's.
      popsize, max_iters: the budget, ``popsize * (max_iters + 1)`` evaluations per attack
        (the paper's 400 x (100 + 1); smaller only for checks).
      tables: the paper's tables this cell contributes to (for listings).
    """

    name: str
    model: str
    method: str = "paper"
    pixels: int = 1
    mode: str = "untargeted"
    split: str = "test"
    include_misclassified: bool = False
    n_images: int = 500
    chunk_size: int = 10
    seed: int = 0
    selection_seed: int = 0
    popsize: int = 400
    max_iters: int = 100
    tables: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", tuple(self.tables))
        _check_name("name", self.name)
        if self.mode not in ("untargeted", "all-targets"):
            raise SettingError("mode", f"must be untargeted or all-targets, got {self.mode!r}")
        if not isinstance(self.selection_seed, int) or not 0 <= self.selection_seed < 2**32:
            raise SettingError(
                "selection_seed", f"must be an integer in [0, 2**32), got {self.selection_seed!r}"
            )
        self.sweep_config("dataset")  # checks every other field

    def sweep_config(self, dataset: str, n_images: int | None = None) -> SweepConfig:
        """The sweep of this cell on ``dataset`` (``n_images``: instead of the cell's)."""
        return SweepConfig(
            model=self.model,
            dataset=dataset,
            split=self.split,
            n_images=self.n_images if n_images is None else n_images,
            pixels=self.pixels,
            mode=self.mode,
            popsize=self.popsize,
            max_iters=self.max_iters,
            early_stop="target_over_true",
            seed=self.seed,
            chunk_size=self.chunk_size,
            methods=(self.method,),
            include_misclassified=self.include_misclassified,
            shared_keys=True,
        )

    def describe(self) -> dict[str, Any]:
        """The cell's identity in run.json (everything but ``n_images``, which may grow)."""
        d = dataclasses.asdict(self)
        for key in ("n_images", "tables"):
            d.pop(key)
        return d

    def command(self, root: str | Path, n_images: int | None = None) -> str:
        """The ``onepixel reproduce run`` command that runs (or resumes, or grows) this cell."""
        n = self.n_images if n_images is None else n_images
        parts = ["onepixel", "reproduce", "run", "--root", str(root)]
        if CELLS.get(self.name) == self:
            parts += ["--cell", self.name]
        else:
            d = self.describe()
            parts += ["--name", d.pop("name")]
            if d.pop("include_misclassified"):
                parts.append("--include-misclassified")
            for key, value in d.items():
                parts += ["--" + key.replace("_", "-"), str(value)]
        return shlex.join([*parts, "--n-images", str(n)])


def _cells() -> tuple[ReproductionCell, ...]:
    """The cells of docs/reproduction.md, in the order ``onepixel reproduce run`` runs them."""
    cells = []
    for net in NETWORKS:
        s = SHORT[net]
        cells += [
            ReproductionCell(f"{s}-d1-paper", net, "paper", tables=("VII", "VIII")),
            ReproductionCell(f"{s}-d1-random", net, "random", tables=("VII",)),
        ]
    cells += [
        ReproductionCell(
            "allconv-d1-all-targets", "allconv-cifar10", mode="all-targets", n_images=300,
            chunk_size=2, tables=("VIII",),
        ),
        ReproductionCell(
            "allconv-d1-paper-clip", "allconv-cifar10", "paper-clip", n_images=100,
            tables=("bounds",),
        ),
        ReproductionCell("allconv-d3-paper", "allconv-cifar10", pixels=3, tables=("V",)),
        ReproductionCell("allconv-d5-paper", "allconv-cifar10", pixels=5, tables=("V",)),
    ]  # fmt: skip
    for net in NETWORKS:
        cells.append(
            ReproductionCell(
                f"{SHORT[net]}-d1-jpeg", net, split="test-jpeg", include_misclassified=True,
                tables=("IV",),
            )
        )  # fmt: skip
    for net in NETWORKS[1:]:
        cells.append(
            ReproductionCell(
                f"{SHORT[net]}-d1-all-targets", net, mode="all-targets", n_images=300,
                chunk_size=2, tables=("VIII",),
            )
        )  # fmt: skip
    for net in SECTION_V:
        s = SHORT[net]
        cells += [
            ReproductionCell(f"{s}-d1-paper", net, "paper", tables=("VII", "VIII")),
            ReproductionCell(f"{s}-d1-random", net, "random", tables=("VII",)),
        ]
    return tuple(cells)


CELLS: dict[str, ReproductionCell] = {c.name: c for c in _cells()}


def cell(name: str) -> ReproductionCell:
    """A cell of :data:`CELLS` by name (UsageError naming the others)."""
    if name not in CELLS:
        raise UsageError(f"unknown reproduction cell {name!r} (available: {', '.join(CELLS)})")
    return CELLS[name]


# --------------------------------------------------------------------------------------
# The image order


def order_digest(order: np.ndarray) -> str:
    """SHA-256 of an order's int64 little-endian bytes (run.json checks it on resume)."""
    return hashlib.sha256(np.asarray(order, "<i8").tobytes()).hexdigest()


def selection_info(cell_: ReproductionCell, split_size: int) -> dict[str, Any]:
    """run.json's ``"selection"``: the seeded order the run attacks the split in."""
    order = seeded_order(split_size, cell_.selection_seed)
    return {
        "order": "seeded",
        "selection_seed": cell_.selection_seed,
        "split_size": int(split_size),
        "order_sha256": order_digest(order),
        "index": "position in the seeded order; dataset index = order[index] "
        "(onepixel_jax.experiments.reproduction.dataset_indices)",
    }


def dataset_indices(info: dict, positions: Sequence[int] | np.ndarray) -> np.ndarray:
    """The dataset indices of ``positions`` (records' ``index``) of a reproduction run.

    Raises:
      UsageError: run.json has no seeded order, or its order's checksum differs from the one
        NumPy draws here.
    """
    sel = info.get(SELECTION)
    if not isinstance(sel, dict) or sel.get("order") != "seeded":
        raise UsageError("run.json has no seeded image order (not a reproduction run)")
    order = seeded_order(int(sel["split_size"]), int(sel["selection_seed"]))
    if order_digest(order) != sel.get("order_sha256"):
        raise UsageError(
            "the seeded image order drawn here differs from the run's (order_sha256); "
            "this NumPy draws another permutation"
        )
    return order[np.asarray(positions, np.int64)]


# --------------------------------------------------------------------------------------
# Running cells


def _check_resumes(out: Path, described: dict, selection: dict) -> None:
    if not run_folder.has_run_info(out):
        return
    info = run_folder.read_run_info(out)
    if info.get(FIELD) != described:
        theirs = info.get(FIELD, {}).get("name") if isinstance(info.get(FIELD), dict) else None
        what = f"cell {theirs!r} with other settings" if theirs else "a run of no reproduction cell"
        raise UsageError(f"{out} holds {what}; use another --root or the cell's own settings")
    if info.get(SELECTION) != selection:
        raise UsageError(
            f"{out}: its image order differs from the one drawn here (order_sha256); "
            "use another --root"
        )


def restore(cell_name: str, records: str | Path, root: str | Path) -> bool:
    """Copy a committed cell (``records/<name>``: run.json and results.jsonl.gz) into the
    working ``root/<name>`` when the working folder has no run yet. Returns True if copied."""
    src, dst = Path(records) / cell_name, Path(root) / cell_name
    if run_folder.has_run_info(dst) or not run_folder.has_run_info(src):
        return False
    if run_folder.results_files(dst):
        raise UsageError(f"{dst} has records but no run.json; delete it or use another --root")
    info = run_folder.read_run_info(src)
    records_ = read_records_gz(src, info)
    dst.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records_)
    write_bytes_atomic(run_folder.results_path(dst), text.encode("utf-8"))
    write_json_atomic(run_folder.run_info_path(dst), info)
    return True


def run_cell(
    cell_: ReproductionCell,
    root: str | Path = WORK_ROOT,
    *,
    n_images: int | None = None,
    records: str | Path | None = RECORDS_ROOT,
    data_dir: str | None = None,
    batch_size: int | None = None,
    shard: tuple[int, int] | None = None,
    progress: Callable | None = None,
    attack_fn: Callable | None = None,
    model: tuple | None = None,
    data: tuple | None = None,
) -> SweepOutcome:
    """Run, resume or grow ``cell_`` into ``root/<name>`` (``n_images``: instead of the
    cell's). A working folder that does not exist yet starts from the committed records in
    ``records/<name>`` when there are some. ``model`` ``(predict_fn, card)`` and ``data``
    ``(images, labels, class_names)`` (the cell's split) are loaded by name unless given;
    ``attack_fn`` is the sweep's engine. Raises UsageError for bad settings or a folder of
    another cell."""
    predict_fn, card = inputs.load_model(cell_.model) if model is None else model
    dataset = card.get("dataset") if hasattr(card, "get") else None
    if not isinstance(dataset, str) or not dataset:
        raise UsageError(f"model {cell_.model!r} does not say which dataset it classifies (card)")
    images, labels, class_names = (
        inputs.load_dataset(dataset, cell_.split, data_dir) if data is None else data
    )
    images, labels = np.asarray(images), np.asarray(labels)
    config = cell_.sweep_config(dataset, n_images)
    inputs.check_sizes(config, batch_size)
    inputs.check_sweep(config, predict_fn, card, images, labels, batch_size)
    out = Path(root) / cell_.name
    if records is not None and shard is None:
        restore(cell_.name, records, root)
    elif records is not None and not run_folder.has_run_info(out):
        if run_folder.has_run_info(Path(records) / cell_.name):
            raise UsageError(
                f"{out} does not exist but {Path(records) / cell_.name} holds its committed "
                "records: run the cell once without --shard to start from them"
            )
    selection = selection_info(cell_, len(images))
    _check_resumes(out, cell_.describe(), selection)
    order = seeded_order(len(images), cell_.selection_seed)
    return run_sweep(
        config,
        out,
        predict_fn,
        images[order],
        labels[order],
        card=card,
        class_names=class_names,
        data_dir=data_dir,
        batch_size=batch_size,
        progress=progress,
        attack_fn=attack_fn,
        shard=shard,
        command=cell_.command(root, config.n_images),
        run_info={FIELD: cell_.describe(), SELECTION: selection},
    )


def clean_accuracy(
    models: Sequence[str],
    splits: Sequence[str] = CLEAN_SPLITS,
    path: str | Path | None = None,
    data_dir: str | None = None,
    loaders: tuple[Callable, Callable] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Accuracy of each network on each whole split (Table IV's OriginalAcc), kept in the JSON
    file ``path`` (entries already there are not measured again).

    ``loaders``: ``(load_model(name) -> (predict_fn, card), load_dataset(dataset, split) ->
    (images, labels, names))``, by default the command line's. Returns ``{model: {split:
    {"correct", "total", "accuracy", "model_sha256"}}}``.
    """
    from onepixel_jax.targets import predict_in_batches

    load_model, load_data = loaders or (
        inputs.load_model,
        lambda d, s: inputs.load_dataset(d, s, data_dir),
    )
    table = read_json_object(path, what="clean accuracy") if path and Path(path).exists() else {}
    for name in models:
        todo = [s for s in splits if s not in table.get(name, {})]
        if not todo:
            continue
        predict_fn, card = load_model(name)
        for split in todo:
            images, labels, _ = load_data(card["dataset"], split)
            probs = predict_in_batches(predict_fn, np.asarray(images, np.float32), PREDICT_BATCH)
            correct = int((np.asarray(probs).argmax(axis=1) == np.asarray(labels)).sum())
            table.setdefault(name, {})[split] = {
                "correct": correct,
                "total": int(len(labels)),
                "accuracy": correct / max(len(labels), 1),
                "model_sha256": card.get("sha256") or card.get("checkpoint_sha256"),
            }
            if path is not None:
                write_json_atomic(path, table)
    return table


# --------------------------------------------------------------------------------------
# Committed records


def read_records_gz(folder: str | Path, info: dict | None = None) -> list[dict]:
    """The records of a committed cell (``results.jsonl.gz``), each checked against its run."""
    from onepixel_jax.experiments import schema

    folder = Path(folder)
    info = run_folder.read_run_info(folder) if info is None else info
    path = folder / RECORDS_GZ
    if not path.exists():
        return []
    view = schema.RunInfoView(info)
    out = []
    try:
        lines = gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise run_folder.DamagedFileError(f"{path} cannot be read ({exc})") from None
    for n, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise run_folder.DamagedFileError(f"{path} line {n} is not JSON") from None
        schema.check_record(rec, view, path, n, "copy the cell again (onepixel reproduce snapshot)")
        out.append(rec)
    return out


def load_cell(folder: str | Path) -> tuple[dict, list[dict]]:
    """``(run info, records)`` of a committed cell or of a working run folder."""
    folder = Path(folder)
    if (folder / RECORDS_GZ).exists():
        info = run_folder.read_run_info(folder)
        return info, read_records_gz(folder, info)
    return run_folder.load_run(folder)


def snapshot(root: str | Path = WORK_ROOT, records: str | Path = RECORDS_ROOT) -> list[str]:
    """Copy every cell of the working ``root`` to ``records``: run.json as it is, the merged
    records of every results file as ``results.jsonl.gz`` (deterministic bytes: sorted in
    the order of one unsharded run, no time stamp), and the clean-accuracy file. Returns the
    names of the cells copied."""
    root, records = Path(root), Path(records)
    copied = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if not run_folder.has_run_info(folder):
            continue
        info, recs = run_folder.load_run(folder)
        if not isinstance(info.get(FIELD), dict):
            continue
        recs = run_folder.run_order(info, recs)
        dst = records / folder.name
        dst.mkdir(parents=True, exist_ok=True)
        write_json_atomic(dst / run_folder.RUN_INFO, info)
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in recs)
        write_bytes_atomic(dst / RECORDS_GZ, gzip.compress(text.encode("utf-8"), 9, mtime=0))
        copied.append(folder.name)
    if (root / CLEAN).exists():
        write_json_atomic(records / CLEAN, read_json_object(root / CLEAN, what="clean accuracy"))
    return copied


# --------------------------------------------------------------------------------------
# The tables

# The paper's figures that its text states (the tables' own cells are not in the text the
# project has; docs/reproduction.md says so). Percentages.
_NETS = ("allconv-cifar10", "nin-cifar10", "vgg16-cifar10")


def _by_net(*values: float) -> dict[str, float]:
    """``{network: value}``; a Section V network takes the value of the one it stands beside
    (the paper's networks are its Section V ones)."""
    out = dict(zip(_NETS, values, strict=True))
    return out | {net: out[beside] for net, beside in SECTION_V.items()}


PAPER = {
    # Abstract: one-pixel non-targeted success on the original CIFAR-10 test set (Section V).
    "original_nontargeted": _by_net(22.60, 35.20, 31.40),
    # Abstract: one-pixel non-targeted success on Kaggle CIFAR-10 (Table IV).
    "kaggle_nontargeted": _by_net(68.71, 71.66, 63.53),
    # Abstract: other classes each image can be perturbed to, Kaggle CIFAR-10 (Fig. 5).
    "kaggle_targets_per_image": _by_net(1.8, 2.1, 1.5),
    # Section IV.C.5 (Table VII, Kaggle, 80,000 evaluations each): DE minus random, and random.
    "de_minus_random": _by_net(19.01, 29.94, 47.96),
    "random": _by_net(49.70, 41.72, 15.57),
    # Section IV.C.1 (Table V, AllConv, Kaggle, targeted): confidence for 1, 3, 5 pixels.
    "confidence_by_pixels": {1: 79.39, 3: 79.17, 5: 77.09},
}  # fmt: skip


def _arrays(records: list[dict], targeted: bool) -> dict[str, np.ndarray]:
    """Per-attack arrays of a record list (sorted by position, then target)."""
    records = sorted(
        records, key=lambda r: (int(r["index"]), -1 if r["target"] is None else r["target"])
    )
    probs = np.array([r["probs"] for r in records], np.float64).reshape(len(records), -1)
    target = np.array([-1 if r["target"] is None else r["target"] for r in records], np.int64)
    reached = target if targeted else probs.argmax(axis=1) if len(records) else target
    return {
        "position": np.array([r["index"] for r in records], np.int64),
        "label": np.array([r["label"] for r in records], np.int64),
        "target": target,
        "reached": np.asarray(reached, np.int64),
        "success": np.array([r["success"] for r in records], bool),
        "queries": np.array([r["queries"] for r in records], np.int64),
        "distortion": np.array([r["distortion"] for r in records], np.float64),
        "probs": probs,
        "best_fitness": np.array([min(r["fitness"]) for r in records], np.float64),
        "seconds": np.array([r.get("seconds", 0.0) for r in records], np.float64),
    }


def _rate(success: np.ndarray) -> dict[str, float]:
    from onepixel_jax import metrics

    return metrics.rate_with_ci(success)


def _measure(a: dict[str, np.ndarray], targeted: bool) -> dict[str, Any]:
    from onepixel_jax import metrics

    ok = a["success"]
    return {
        "attacks": int(ok.size),
        "success": _rate(ok),
        "confidence": metrics.confidence(a["probs"], ok, a["reached"] if targeted else None)
        if ok.size else math.nan,
        "avg_evaluations": metrics.avg_evaluations(a["queries"], ok),
        "avg_distortion": metrics.avg_distortion(a["distortion"], ok),
        "evaluations": int(a["queries"].sum()),
        "seconds": float(a["seconds"].sum()),
    }  # fmt: skip


def _first(a: dict[str, np.ndarray], positions: np.ndarray) -> dict[str, np.ndarray]:
    """``a`` restricted to the attacks of ``positions`` (records of untargeted cells: one per
    position, in position order)."""
    keep = np.isin(a["position"], positions)
    return {k: v[keep] for k, v in a.items()}


def _common_positions(*arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The positions every one of the cells has finished, as the first positions of the
    order they share (each cell attacks a prefix of the same order)."""
    sets = [set(a["position"].tolist()) for a in arrays]
    common = set.intersection(*sets) if sets else set()
    return np.array(sorted(common), np.int64)


def _pair(a: dict, b: dict, positions: np.ndarray) -> dict[str, Any]:
    from onepixel_jax import metrics

    a, b = _first(a, positions), _first(b, positions)
    out = metrics.paired_comparison(
        a["success"], b["success"], a["best_fitness"], b["best_fitness"]
    )
    out["a"] = _measure(a, False)
    out["b"] = _measure(b, False)
    return out


def compute_tables(records: str | Path) -> dict[str, Any]:
    """Every figure of docs/reproduction.md from the cells in ``records`` (committed cells
    or working run folders; a missing cell leaves its rows out). JSON-ready except NaN."""
    from onepixel_jax import metrics

    records = Path(records)
    cells: dict[str, tuple[dict, dict]] = {}
    info_of: dict[str, dict] = {}
    for name, c in CELLS.items():
        if run_folder.has_run_info(records / name):
            info, recs = load_cell(records / name)
            if not recs:  # started, nothing finished yet
                continue
            info_of[name] = info
            cells[name] = (_arrays(recs, c.mode == "all-targets"), info)
    clean = (
        read_json_object(records / CLEAN, what="clean accuracy")
        if (records / CLEAN).exists()
        else {}
    )
    out: dict[str, Any] = {"scale": [], "clean": clean}
    for name, c in CELLS.items():
        if name not in cells:
            out["scale"].append({"cell": name, "images": 0, "paper_images": c.n_images})
            continue
        a, info = cells[name]
        images = int(np.unique(a["position"]).size)
        out["scale"].append({
            "cell": name, "images": images, "paper_images": c.n_images,
            "attacks": int(a["success"].size), "evaluations": int(a["queries"].sum()),
            "seconds": float(a["seconds"].sum()),
        })  # fmt: skip

    # Table VIII: original CIFAR-10 test set.
    viii = []
    for net in (*NETWORKS, *SECTION_V):
        s = SHORT[net]
        if net in SECTION_V and f"{s}-d1-paper" not in cells:
            continue  # a retrained network not attacked yet
        row: dict[str, Any] = {
            "network": net,
            "paper_nontargeted": PAPER["original_nontargeted"][net],
        }
        acc = clean.get(net, {}).get("test")
        row["original_acc"] = None if acc is None else acc["accuracy"]
        if f"{s}-d1-paper" in cells:
            row["nontargeted2"] = _measure(cells[f"{s}-d1-paper"][0], False)
        if f"{s}-d1-all-targets" in cells:
            a = cells[f"{s}-d1-all-targets"][0]
            row["targeted"] = _measure(a, True)
            _, fooled = metrics.derived_untargeted_success(a["position"], a["success"])
            row["nontargeted1"] = _rate(fooled)
            k = int(cells[f"{s}-d1-all-targets"][1]["num_classes"])
            row["target_counts"] = metrics.target_count_histogram(
                a["position"], a["success"], k
            ).tolist()
            _, counts = metrics.targets_reached(a["position"], a["success"])
            row["targets_per_image"] = float(counts.mean()) if counts.size else math.nan
            row["class_pairs"] = metrics.class_pair_counts(
                a["label"], a["reached"], a["success"], k
            ).tolist()
            row["class_names"] = list(cells[f"{s}-d1-all-targets"][1].get("class_names") or [])
            if f"{s}-d1-paper" in cells:  # Nontargeted1 against Nontargeted2, same images
                u = cells[f"{s}-d1-paper"][0]
                pos = _common_positions(u, a)
                ids, derived = metrics.derived_untargeted_success(a["position"], a["success"])
                derived = derived[np.isin(ids, pos)]
                true = _first(u, pos)["success"]
                row["derived_vs_true"] = {
                    "images": int(pos.size),
                    "derived": int(derived.sum()),
                    "true": int(true.sum()),
                    "both": int((derived & true).sum()),
                }
        viii.append(row)
    out["viii"] = viii

    # Table VII: DE against random search at the same budget, same images.
    vii = []
    for net in (*NETWORKS, *SECTION_V):
        s = SHORT[net]
        if f"{s}-d1-paper" in cells and f"{s}-d1-random" in cells:
            de, rnd = cells[f"{s}-d1-paper"][0], cells[f"{s}-d1-random"][0]
            pos = _common_positions(de, rnd)
            row = {"network": net, "images": int(pos.size), **_pair(de, rnd, pos)}
            row["first_population"] = {
                "de": int((_first(de, pos)["success"] & (_first(de, pos)["queries"] <= 400)).sum()),
                "random": int(
                    (_first(rnd, pos)["success"] & (_first(rnd, pos)["queries"] <= 400)).sum()
                ),
            }
            row["paper_de_minus_random"] = PAPER["de_minus_random"][net]
            row["paper_random"] = PAPER["random"][net]
            vii.append(row)
    out["vii"] = vii

    # Bound handling: the paper's DE with mutants redrawn (paper) or clipped (paper-clip).
    names = ("allconv-d1-paper", "allconv-d1-paper-clip", "allconv-d1-random")
    if all(n in cells for n in names):
        redraw, clip, rnd = (cells[n][0] for n in names)
        pos = _common_positions(redraw, clip, rnd)
        out["bounds"] = {
            "images": int(pos.size),
            "redraw_vs_random": _pair(redraw, rnd, pos),
            "clip_vs_random": _pair(clip, rnd, pos),
            "redraw_vs_clip": _pair(redraw, clip, pos),
        }

    # Table V: AllConv, 1, 3 and 5 pixels on the same images.
    v_names = {1: "allconv-d1-paper", 3: "allconv-d3-paper", 5: "allconv-d5-paper"}
    have = {d: cells[n][0] for d, n in v_names.items() if n in cells}
    if len(have) > 1:
        pos = _common_positions(*have.values())
        out["v"] = {
            "images": int(pos.size),
            "rows": [
                {"pixels": d, **_measure(_first(a, pos), False),
                 "paper_confidence": PAPER["confidence_by_pixels"][d]}
                for d, a in sorted(have.items())
            ],
        }  # fmt: skip

    # Table IV: one pixel on the Kaggle substitute (lossy test images, own predictions).
    iv = []
    for net in NETWORKS:
        row = {
            "network": net,
            "paper_nontargeted": PAPER["kaggle_nontargeted"][net],
            "paper_targets_per_image": PAPER["kaggle_targets_per_image"][net],
        }
        for split in CLEAN_SPLITS:
            acc = clean.get(net, {}).get(split)
            row[f"acc_{split}"] = None if acc is None else acc["accuracy"]
        name = f"{SHORT[net]}-d1-jpeg"
        if name in cells:
            a = cells[name][0]
            row["nontargeted"] = _measure(a, False)
            info = cells[name][1]
            pos = np.unique(a["position"])  # the images attacked, not the whole selection
            true = np.asarray(info["true_labels"], np.int64)[pos]
            row["misclassified_attacked"] = int((true != np.asarray(info["labels"])[pos]).sum())
        iv.append(row)
    out["iv"] = iv
    return out


# --------------------------------------------------------------------------------------
# Markdown


def _pct(x: float | None, digits: int = 2) -> str:
    return "" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f} %"


def _ci(r: dict | None) -> str:
    if not r or not r.get("trials"):
        return "not run"
    return (
        f"{100 * r['rate']:.2f} % [{100 * r['low']:.2f}, {100 * r['high']:.2f}] "
        f"({r['successes']}/{r['trials']})"
    )


def _num(x: float | None, fmt: str = "{:,.0f}") -> str:
    return "" if x is None or not np.isfinite(x) else fmt.format(x)


def _p(p: float) -> str:
    return f"{p:.2g}" if p < 0.01 else f"{p:.2f}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def markdown_blocks(t: dict[str, Any]) -> dict[str, str]:
    """The generated blocks of docs/reproduction.md by name (``scale``, ``viii``, ``vii``,
    ``bounds``, ``v``, ``iv``, ``targets``, ``readme``)."""
    blocks: dict[str, str] = {}
    lines = [
        "| cell | images done | paper's | attacks | evaluations | CPU time (sum of attacks) |",
        "|---|---|---|---|---|---|",
    ]
    for r in t["scale"]:
        if not r["images"]:
            lines.append(f"| {r['cell']} | not run | {r['paper_images']} | | | |")
            continue
        lines.append(
            f"| {r['cell']} | {r['images']} | {r['paper_images']} | {r['attacks']:,} | "
            f"{r['evaluations']:,} | {_hours(r['seconds'])} |"
        )
    blocks["scale"] = "\n".join(lines)

    lines = [
        "| network | OriginalAcc (lossless 1,000) | images | Nontargeted2: true non-targeted "
        "[95 % CI] | confidence | Targeted: all-targets attacks [95 % CI] | Nontargeted1: "
        "derived [95 % CI] | confidence (targeted) | paper: non-targeted |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in t["viii"]:
        n2, tg = r.get("nontargeted2"), r.get("targeted")
        lines.append(
            f"| {LABEL[r['network']]} | {_pct(r['original_acc'], 1)} | "
            f"{n2['attacks'] if n2 else 0} / {tg['attacks'] // 9 if tg else 0} | "
            f"{_ci(n2['success'] if n2 else None)} | {_pct(n2['confidence']) if n2 else ''} | "
            f"{_ci(tg['success'] if tg else None)} | {_ci(r.get('nontargeted1'))} | "
            f"{_pct(tg['confidence']) if tg else ''} | {r['paper_nontargeted']:.2f} % |"
        )
    blocks["viii"] = "\n".join(lines)

    lines = [
        "| network | images | target classes reached per image: 0 / 1 / 2 / 3 / 4+ | mean | "
        "paper (Kaggle, Fig. 5) | Nontargeted1 vs Nontargeted2 on the same images |",
        "|---|---|---|---|---|---|",
    ]
    for r in t["viii"]:
        if "target_counts" not in r:
            continue
        h = r["target_counts"]
        dv = r.get("derived_vs_true")
        pair = (
            f"{dv['derived']} derived, {dv['true']} true, {dv['both']} both, of {dv['images']}"
            if dv else ""
        )  # fmt: skip
        lines.append(
            f"| {LABEL[r['network']]} | {sum(h)} | {' / '.join(map(str, h[:4]))} / {sum(h[4:])} | "
            f"{r['targets_per_image']:.2f} | {PAPER['kaggle_targets_per_image'][r['network']]} | "
            f"{pair} |"
        )
    blocks["targets"] = "\n".join(lines)

    lines = [
        "| network | images | DE (paper) [95 % CI] | random search [95 % CI] | DE - random | "
        "DE only / random only (McNemar p) | neither fooled: DE closer / random closer (sign p) | "
        "fooled by the first 400 candidates: DE / random | AvgEvaluation DE / random | "
        "paper (Kaggle): DE - random, random |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in t["vii"]:
        lines.append(
            f"| {LABEL[r['network']]} | {r['images']} | {_ci(r['a']['success'])} | "
            f"{_ci(r['b']['success'])} | {100 * r['difference']:+.2f} points | "
            f"{r['a_only']} / {r['b_only']} ({_p(r['p_value'])}) | "
            f"{r['neither_a_lower']} / {r['neither_b_lower']} ({_p(r['neither_p_value'])}) | "
            f"{r['first_population']['de']} / {r['first_population']['random']} | "
            f"{_num(r['a']['avg_evaluations'])} / {_num(r['b']['avg_evaluations'])} | "
            f"+{r['paper_de_minus_random']:.2f}, {r['paper_random']:.2f} % |"
        )
    blocks["vii"] = "\n".join(lines)

    b = t.get("bounds")
    if b:
        lines = [
            "| comparison (AllConv, d = 1, same images and keys) | images | first [95 % CI] | "
            "second [95 % CI] | difference | first only / second only (McNemar p) | "
            "neither fooled: first closer / second closer (sign p) | AvgEvaluation |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, what in (
            ("redraw_vs_random", "redraw (paper) vs random search"),
            ("clip_vs_random", "clip (paper-clip) vs random search"),
            ("redraw_vs_clip", "redraw vs clip"),
        ):
            r = b[key]
            lines.append(
                f"| {what} | {b['images']} | {_ci(r['a']['success'])} | {_ci(r['b']['success'])} | "
                f"{100 * r['difference']:+.2f} points | {r['a_only']} / {r['b_only']} "
                f"({_p(r['p_value'])}) | {r['neither_a_lower']} / {r['neither_b_lower']} "
                f"({_p(r['neither_p_value'])}) | {_num(r['a']['avg_evaluations'])} / "
                f"{_num(r['b']['avg_evaluations'])} |"
            )
        blocks["bounds"] = "\n".join(lines)
    else:
        blocks["bounds"] = "(not run yet)"

    v = t.get("v")
    if v:
        lines = [
            "| pixels | images | true non-targeted success [95 % CI] | confidence | "
            "AvgEvaluation | AvgDistortion | paper: confidence (Kaggle, targeted) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in v["rows"]:
            lines.append(
                f"| {r['pixels']} | {v['images']} | {_ci(r['success'])} | "
                f"{_pct(r['confidence'])} | "
                f"{_num(r['avg_evaluations'])} | {_num(r['avg_distortion'], '{:.1f}')} | "
                f"{r['paper_confidence']:.2f} % |"
            )
        blocks["v"] = "\n".join(lines)
    else:
        blocks["v"] = "(not run yet)"

    lines = [
        "| network | OriginalAcc: lossless 1,000 | lossy 10,000 | images (misclassified among "
        "them) | non-targeted success [95 % CI] | confidence | paper (Kaggle): non-targeted |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in t["iv"]:
        n = r.get("nontargeted")
        lines.append(
            f"| {LABEL[r['network']]} | {_pct(r['acc_test'], 1)} | {_pct(r['acc_test-jpeg'], 1)} | "
            f"{n['attacks'] if n else 0} ({r.get('misclassified_attacked', 0)}) | "
            f"{_ci(n['success'] if n else None)} | {_pct(n['confidence']) if n else ''} | "
            f"{r['paper_nontargeted']:.2f} % |"
        )
    blocks["iv"] = "\n".join(lines)

    lines = [
        "| network (width 0.25) | images | DE success | random search, same budget | "
        "paper (original CIFAR-10) |",
        "|---|---|---|---|---|",
    ]
    vii = {r["network"]: r for r in t["vii"]}
    for r in t["viii"]:
        n2 = r.get("nontargeted2")
        if not n2:
            continue
        rnd = vii.get(r["network"])
        de_ci = n2["success"]
        short = lambda c: f"{100 * c['rate']:.1f} % [{100 * c['low']:.1f}, {100 * c['high']:.1f}]"  # noqa: E731
        rnd_text = f"{short(rnd['b']['success'])} ({rnd['images']} images)" if rnd else "not run"
        lines.append(
            f"| {LABEL[r['network']]} | {n2['attacks']} | {short(de_ci)} | {rnd_text} | "
            f"{r['paper_nontargeted']:.2f} % |"
        )
    blocks["readme"] = "\n".join(lines)
    return blocks


# Figures drawn from single cells: (cell, kind, file, title).
CELL_FIGURES = (
    ("allconv-d1-paper", "examples", "allconv-1px-examples.png", "AllConv, 1 pixel (paper's DE)"),
    ("nin-d1-paper", "examples", "nin-1px-examples.png", "NiN, 1 pixel (paper's DE)"),
    ("vgg16-d1-paper", "examples", "vgg16-1px-examples.png", "VGG16, 1 pixel (paper's DE)"),
    ("allconv-d3-paper", "examples", "allconv-3px-examples.png", "AllConv, 3 pixels"),
    ("allconv-d1-paper", "fitness", "allconv-1px-fitness.png", "AllConv, 1 pixel"),
    ("nin-d1-paper", "fitness", "nin-1px-fitness.png", "NiN, 1 pixel"),
    ("vgg16-d1-paper", "fitness", "vgg16-1px-fitness.png", "VGG16, 1 pixel"),
)  # fmt: skip


def _cell_figures(records: Path, folder: Path, load_images: Callable | None) -> list[Path]:
    """The examples (clean and adversarial images; the clean images come from the dataset,
    ``load_images(dataset, split)``) and fitness curves (Fig. 10: the probability of the true
    class per generation, first 50 attacks) of :data:`CELL_FIGURES`."""
    from onepixel_jax.experiments import plots

    written = []
    images_of: dict[tuple[str, str], np.ndarray] = {}
    for name, kind, file, title in CELL_FIGURES:
        if not run_folder.has_run_info(records / name):
            continue
        info, recs = load_cell(records / name)
        recs = sorted(recs, key=lambda r: int(r["index"]))
        if not recs:
            continue
        path = folder / file
        if kind == "fitness":
            curves = np.array([r["fitness"] for r in recs[: plots.MAX_CURVES]], np.float64)
            what = f"{title}: best fitness of the first {len(curves)} attacks"
            plots.plot_fitness(curves, curves.mean(axis=0), path, "p(true class)", what)
            written.append(path)
            continue
        if load_images is None:
            continue
        where = (info["config"]["dataset"], info["config"]["split"])
        if where not in images_of:
            try:
                images_of[where] = np.asarray(load_images(*where))
            except UsageError as exc:
                print(f"{file} not drawn: {exc}", file=sys.stderr)
                continue
        chosen = [r for r in recs if r["success"]][: plots.MAX_EXAMPLES]
        dataset_index = dataset_indices(info, [r["index"] for r in chosen])
        images = {
            r["index"]: images_of[where][i] for r, i in zip(chosen, dataset_index, strict=True)
        }
        plots.plot_examples(chosen, images, plots.class_names(info), path,
                            f"{title}: the first fooled images")  # fmt: skip
        written.append(path)
    return written


def write_figures(
    t: dict[str, Any],
    folder: str | Path,
    records: str | Path | None = None,
    load_images: Callable | None = None,
) -> list[Path]:
    """The figures of docs/reproduction.md into ``folder``: targets reached per image and
    class pairs of each all-targets cell, DE against random search with Wilson intervals, and
    with ``records`` the examples and fitness curves of :data:`CELL_FIGURES`."""
    from onepixel_jax.experiments import plots

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for r in t["viii"]:
        if "target_counts" not in r:
            continue
        s, label = SHORT[r["network"]], LABEL[r["network"]]
        n = sum(r["target_counts"])
        path = folder / f"{s}-all-targets-target-counts.png"
        plots.plot_target_counts(np.asarray(r["target_counts"]), path,
                                 f"{label}, 1 pixel, all targets: {n} images")  # fmt: skip
        written.append(path)
        path = folder / f"{s}-all-targets-class-pairs.png"
        k = len(r["class_pairs"])
        names = r["class_names"] if len(r["class_names"]) == k else [str(i) for i in range(k)]
        plots.plot_class_pairs(np.asarray(r["class_pairs"]), names, path,
                               f"{label}, 1 pixel: successful targeted attacks")  # fmt: skip
        written.append(path)
    if t["vii"]:
        plt = plots._pyplot()
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
        x = np.arange(len(t["vii"]))
        for k, (key, what, colour) in enumerate((("a", "DE (paper)", "0.25"),
                                                 ("b", "random search", "0.65"))):  # fmt: skip
            rates = [r[key]["success"] for r in t["vii"]]
            mid = np.array([100 * c["rate"] for c in rates])
            err = np.array([[100 * (c["rate"] - c["low"]) for c in rates],
                            [100 * (c["high"] - c["rate"]) for c in rates]])  # fmt: skip
            ax.bar(x + (k - 0.5) * 0.38, mid, 0.38, yerr=err, capsize=3, color=colour, label=what)
        ax.set_xticks(x)
        ax.set_xticklabels([f"{LABEL[r['network']]}\n({r['images']} images)" for r in t["vii"]])
        ax.set_ylabel("% of images fooled (95 % CI)")
        ax.set_title("1 pixel, same images and budget (40,400 evaluations)", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / "de-vs-random.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if records is not None:
        written += _cell_figures(Path(records), folder, load_images)
    return written


# The figures of each figure block of docs/reproduction.md: (file, alt text); a block shows
# those that exist.
FIGURE_BLOCKS = {
    "fig-viii": (
        ("allconv-all-targets-target-counts.png", "AllConv, all targets: target classes per image"),
        ("allconv-all-targets-class-pairs.png", "AllConv, all targets: class pairs"),
        ("nin-all-targets-target-counts.png", "NiN, all targets: target classes per image"),
        ("nin-all-targets-class-pairs.png", "NiN, all targets: class pairs"),
        ("vgg16-all-targets-target-counts.png", "VGG16, all targets: target classes per image"),
        ("vgg16-all-targets-class-pairs.png", "VGG16, all targets: class pairs"),
        ("allconv-1px-examples.png", "AllConv, 1 pixel: examples"),
        ("nin-1px-examples.png", "NiN, 1 pixel: examples"),
        ("vgg16-1px-examples.png", "VGG16, 1 pixel: examples"),
        ("allconv-1px-fitness.png", "AllConv, 1 pixel: fitness curves"),
        ("nin-1px-fitness.png", "NiN, 1 pixel: fitness curves"),
        ("vgg16-1px-fitness.png", "VGG16, 1 pixel: fitness curves"),
    ),
    "fig-vii": (("de-vs-random.png", "DE against random search"),),
    "fig-v": (("allconv-3px-examples.png", "AllConv, 3 pixels: examples"),),
}  # fmt: skip


def figure_blocks(folder: str | Path, relative_to: str | Path) -> dict[str, str]:
    """Markdown of :data:`FIGURE_BLOCKS`: the figures present in ``folder``, linked relative
    to the folder ``relative_to`` (the Markdown file's), two per row."""
    import os

    out = {}
    for name, figures in FIGURE_BLOCKS.items():
        rel = os.path.relpath(folder, relative_to)
        present = [
            f"![{alt}]({rel}/{file})" for file, alt in figures if (Path(folder) / file).exists()
        ]
        if not present:
            out[name] = "(no figure yet: its cell has not run)"
        elif len(present) == 1:
            out[name] = present[0]
        else:
            rows = ["| | |", "|---|---|"]
            for i in range(0, len(present), 2):
                pair = present[i : i + 2] + [""] * (2 - len(present[i : i + 2]))
                rows.append(f"| {pair[0]} | {pair[1]} |")
            out[name] = "\n".join(rows)
    return out


BEGIN = "<!-- generated: {name} -->"
END = "<!-- /generated: {name} -->"


def fill_blocks(text: str, blocks: dict[str, str]) -> str:
    """``text`` with every ``<!-- generated: NAME -->...<!-- /generated: NAME -->`` block
    replaced by ``blocks[NAME]`` (blocks the text does not mark are left out)."""
    for name, body in blocks.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        i = text.find(begin)
        j = text.find(end)
        if i < 0 or j < i:
            continue
        text = text[: i + len(begin)] + "\n" + body + "\n" + text[j:]
    return text


def write_tables(
    records: str | Path = RECORDS_ROOT,
    markdown: str | Path | None = None,
    figures: str | Path | None = None,
    snippet: str | Path | None = None,
    load_images: Callable | None = None,
    readme: str | Path | None = None,
) -> dict[str, Any]:
    """Regenerate the tables from ``records``: the marked blocks of the Markdown file
    ``markdown`` (printed when None), the figures into ``figures``, the README table into
    ``snippet`` (the whole file) and into the ``readme`` block of the existing file
    ``readme``; ``tables.json`` (every figure) next to the records. ``load_images(dataset,
    split)``: the clean images of the example figures (default: the dataset loader; examples
    are left out where the data is missing). Returns the figures. Raises UsageError when
    ``readme`` does not mark a ``readme`` block."""
    readme_text = None
    if readme is not None:
        try:
            readme_text = Path(readme).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--readme {readme} cannot be read ({exc})") from None
        marks = BEGIN.format(name="readme"), END.format(name="readme")
        if not 0 <= readme_text.find(marks[0]) < readme_text.find(marks[1]):
            raise UsageError(f"--readme {readme} has no '{marks[0]}' ... '{marks[1]}' block")
    t = compute_tables(records)
    blocks = markdown_blocks(t)
    write_json_atomic(Path(records) / "tables.json", _jsonable(t))
    if figures is not None:
        if load_images is None:
            load_images = lambda d, s: inputs.load_dataset(d, s)[0]  # noqa: E731
        write_figures(t, figures, records, load_images)
        if markdown is not None:
            blocks.update(figure_blocks(figures, Path(markdown).parent))
    if markdown is not None:
        path = Path(markdown)
        if path.exists():
            text = path.read_text(encoding="utf-8")
        else:
            text = "\n\n".join(
                f"{BEGIN.format(name=n)}\n{END.format(name=n)}" for n in blocks
            ) + "\n"  # fmt: skip
        write_bytes_atomic(path, fill_blocks(text, blocks).encode("utf-8"))
    else:
        print("\n\n".join(blocks.values()))
    if snippet is not None:
        write_bytes_atomic(Path(snippet), (blocks["readme"] + "\n").encode("utf-8"))
    if readme_text is not None:
        text = fill_blocks(readme_text, {"readme": blocks["readme"]})
        write_bytes_atomic(Path(readme), text.encode("utf-8"))
    return t


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return _jsonable(float(obj))
    return obj


__all__ = [
    "CELLS",
    "PAPER",
    "ReproductionCell",
    "cell",
    "clean_accuracy",
    "compute_tables",
    "dataset_indices",
    "fill_blocks",
    "load_cell",
    "markdown_blocks",
    "restore",
    "run_cell",
    "select_images",
    "snapshot",
    "write_figures",
    "write_tables",
]
