"""Measurement grids: the search and defence experiments as cells that write run folders.

Each cell is one ordinary run folder (``run.json``, ``results.jsonl``, ``images.npz``), written
by :func:`~onepixel_jax.experiments.sweep.run_sweep` like any ``onepixel attack`` run: the same
image selection, records, resume, growth and writer lock, and ``onepixel report`` reads it.
``run.json`` holds the cell's description under ``"cell"`` (checked when the cell resumes: a
folder of another cell is refused) and every record names its cell (``"cell"``).

**Search cells** (:class:`SearchCell`, the predefined ones in :data:`SEARCH_CELLS`): one network,
``d`` pixels, untargeted or targeted, several named methods
(:mod:`~onepixel_jax.experiments.methods`) each at its own budget, optionally capped at
``max_queries``, stopping each image at its first success, with common random numbers
(``shared_keys``). Folder: ``ROOT/<cell name>``.

**Defence grids** (:class:`DefenceGrid`): for one undefended network, a calibration
(``ROOT/<model>/clean.json``: clean accuracy of the network and of each squeezed pipeline, the
feature-squeezing detector's threshold for a 5 % false-positive rate on calibration images
that are never attacked) and one cell per (method, ``d``, defended system), folder
``ROOT/<model>/<method>-d<d>-<system>``:

- ``none``: the undefended network. Its records also carry, with no further search, what each
  squeezed pipeline says of the adversarial image (``"squeezed"``: still misclassified) and
  whether the detector flags it (``"flagged"``): the non-adaptive effect of each defence.
- a squeezer (``median2``...): the squeezed pipeline
  (:func:`onepixel_jax.defences.squeezing.squeezed`) attacked end to end.
- ``detector``: the detector-guarded system, attacked through
  :func:`~onepixel_jax.defences.squeezing.detector_target` with
  :func:`~onepixel_jax.defences.squeezing.detection_aware_objective`: a record's ``success`` is
  "fooled and not detected", next to ``"fooled"`` and ``"flagged"``.
- a checkpoint name (``lenet-mnist-advtrain``...): a defended network.

Every cell of a grid attacks the same images, the first ones the undefended network classifies
correctly (a cell with fewer images attacks the first of them), so any two cells pair image by
image. Reports: :mod:`onepixel_jax.experiments.grid_report`.
"""

from __future__ import annotations

import dataclasses
import shlex
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onepixel_jax.errors import UsageError
from onepixel_jax.experiments import inputs, run_folder
from onepixel_jax.experiments.selection import select_images
from onepixel_jax.experiments.sweep import SettingError, SweepConfig, SweepOutcome, run_sweep
from onepixel_jax.files import read_json_object, write_json_atomic

CELL = "cell"  # the run.json field and the record field naming a run's cell
CLEAN = "clean.json"
PREDICT_BATCH = 250

# Per dataset: the squeezed pipelines, the detector's squeezers (Xu et al.) and the test
# images the detector is calibrated on, which are never attacked.
DEFENCE_SETTINGS: dict[str, dict[str, Any]] = {
    "mnist": {"squeezers": ("median2", "median3", "bits1"), "detector": ("bits1", "median2"),
              "calibration": (5000, 6000)},
    "cifar10": {"squeezers": ("median2", "median3", "bits5"), "detector": ("bits5", "median2"),
                "calibration": (500, 1000)},
    "digits": {"squeezers": ("median2", "bits1"), "detector": ("bits1", "median2"),
               "calibration": (200, 360)},
}  # fmt: skip


def _cell_error(field: str, detail: str) -> SettingError:
    return SettingError(field, detail)


def _check_name(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value or "/" in value or value in (".", ".."):
        raise _cell_error(field, f"must be a non-empty name without '/', got {value!r}")
    return value


def _check_resumes(out: Path, cell: dict) -> None:
    """Refuse a folder that holds the run of another cell (or a plain ``onepixel attack``)."""
    if not run_folder.has_run_info(out):
        return
    info = run_folder.read_run_info(out)
    if info.get(CELL) != cell:
        theirs = info.get(CELL, {}).get("name") if isinstance(info.get(CELL), dict) else None
        what = f"cell {theirs!r} with other settings" if theirs else "a run of no grid cell"
        raise UsageError(f"{out} holds {what}; use another --root or the cell's own settings")


def _cell_fields(name: str) -> Callable[[str, Any], list[dict]]:
    def fields(method: str, result: Any) -> list[dict]:
        return [{CELL: name} for _ in range(len(result.success))]

    return fields


def _dataset_of(card: Any, model: str) -> str:
    dataset = card.get("dataset") if hasattr(card, "get") else None
    if not isinstance(dataset, str) or not dataset:
        raise UsageError(f"model {model!r} does not say which dataset it classifies (card)")
    return dataset


# --------------------------------------------------------------------------------------
# Search cells


@dataclasses.dataclass(frozen=True)
class SearchCell:
    """One cell of the search grid, written to ``ROOT/<name>``.

    Attributes:
      name: the folder's name.
      model: a checkpoint name (``onepixel models``); its card names the dataset.
      pixels: perturbed pixels ``d``.
      targeted: one seeded random target per image instead of any other class.
      methods: named methods (:func:`onepixel_jax.experiments.methods.names`), each run at
        its own budget on the same images.
      n_images: the first images the model classifies correctly (a larger value grows it).
      max_queries: caps every method's budget (``None``: each method's own).
      chunk_size: images per engine call; with the seed it fixes the random keys.
      seed: the random stream.
    """

    name: str
    model: str
    pixels: int = 1
    targeted: bool = False
    methods: tuple[str, ...] = ("paper", "fast")
    n_images: int = 10
    max_queries: int | None = None
    chunk_size: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        _check_name("name", self.name)
        _check_name("model", self.model)
        if not isinstance(self.targeted, bool):
            raise _cell_error("targeted", f"must be a bool, got {self.targeted!r}")
        self.sweep_config("dataset")  # checks every other field

    def sweep_config(self, dataset: str, n_images: int | None = None) -> SweepConfig:
        """The sweep of this cell on ``dataset`` (``n_images``: instead of the cell's)."""
        return SweepConfig(
            model=self.model,
            dataset=dataset,
            n_images=self.n_images if n_images is None else n_images,
            pixels=self.pixels,
            mode="targeted" if self.targeted else "untargeted",
            early_stop="success",
            seed=self.seed,
            chunk_size=self.chunk_size,
            methods=self.methods,
            own_budgets=True,
            max_queries=self.max_queries,
            shared_keys=True,
        )

    def describe(self) -> dict[str, Any]:
        """The cell's identity in run.json (everything but ``n_images``, which may grow)."""
        d = dataclasses.asdict(self)
        d.pop("n_images")
        d["methods"] = list(self.methods)
        return {"grid": "search", **d}

    def command(self, root: str | Path, n_images: int | None = None) -> str:
        """The ``onepixel experiment search`` command that runs (or resumes) this cell."""
        parts = ["onepixel", "experiment", "search", "--root", str(root), "--name", self.name]
        parts += ["--model", self.model, "--pixels", str(self.pixels)]
        parts += ["--methods", ",".join(self.methods)]
        parts += ["--n-images", str(self.n_images if n_images is None else n_images)]
        parts += ["--targeted"] if self.targeted else []
        if self.max_queries is not None:
            parts += ["--max-queries", str(self.max_queries)]
        parts += ["--chunk-size", str(self.chunk_size), "--seed", str(self.seed)]
        return shlex.join(parts)


_CAPPED = (
    "de-best1", "de-current-to-best1", "de-rand2", "de-rand1-bin", "de-rand1-dither", "jade",
    "de-rand1-corners", "cma-es", "sparse-rs", "random", "random-corners",
)  # fmt: skip


def _search_cells() -> tuple[SearchCell, ...]:
    """The measurements of docs/search-results.md, one cell per (setting, group of methods)."""
    from onepixel_jax import search

    capped = tuple(m for m in _CAPPED if m != "cma-es" or "cma-es" in search.names())
    cells = []
    for net in ("allconv-cifar10", "nin-cifar10", "vgg16-cifar10"):
        cells += [
            SearchCell(f"{net}-d1", net, 1, methods=("fast", "paper"), n_images=100, chunk_size=20),
            SearchCell(
                f"{net}-d1-corner-scan", net, 1, methods=("corner-scan-random",), n_images=100,
                max_queries=8192, chunk_size=20,
            ),
        ]  # fmt: skip
    cells += [
        SearchCell("allconv-cifar10-d1-cap4000", "allconv-cifar10", 1, methods=capped,
                   n_images=10, max_queries=4000),
        SearchCell("nin-cifar10-d1-cap4000", "nin-cifar10", 1,
                   methods=(*capped, "corner-scan"), n_images=30, max_queries=4000, chunk_size=10),
        SearchCell("vgg16-cifar10-d1-cap4000", "vgg16-cifar10", 1,
                   methods=(*capped, "corner-scan"), n_images=30, max_queries=4000, chunk_size=10),
        SearchCell("lenet-mnist-d1-cap4000", "lenet-mnist", 1, methods=("fast", "paper", *capped),
                   n_images=20, max_queries=4000, chunk_size=10),
        SearchCell("allconv-cifar10-d3", "allconv-cifar10", 3, n_images=24, chunk_size=6,
                   methods=("fast", "paper")),
        SearchCell("allconv-cifar10-d5", "allconv-cifar10", 5, n_images=12, chunk_size=6,
                   methods=("fast", "paper")),
        SearchCell("allconv-cifar10-d1-targeted", "allconv-cifar10", 1, targeted=True,
                   n_images=30, chunk_size=6, methods=("fast", "paper")),
        SearchCell("allconv-cifar10-d3-cap4000", "allconv-cifar10", 3, methods=capped,
                   n_images=20, max_queries=4000, chunk_size=10),
        SearchCell("allconv-cifar10-d5-cap4000", "allconv-cifar10", 5, methods=capped,
                   n_images=12, max_queries=4000, chunk_size=6),
        SearchCell("allconv-cifar10-d1-targeted-cap4000", "allconv-cifar10", 1, targeted=True,
                   methods=(*capped, "corner-scan"), n_images=12, max_queries=4000, chunk_size=6),
        SearchCell("nin-cifar10-d3", "nin-cifar10", 3, n_images=12, chunk_size=6,
                   methods=("fast", "paper")),
        SearchCell("vgg16-cifar10-d3", "vgg16-cifar10", 3, n_images=12, chunk_size=6,
                   methods=("fast", "paper")),
        SearchCell("allconv-cifar10-d1-grid-scan", "allconv-cifar10", 1, methods=("grid-scan",),
                   n_images=40, chunk_size=20),
    ]  # fmt: skip
    return tuple(cells)


SEARCH_CELLS: dict[str, SearchCell] = {c.name: c for c in _search_cells()}


def search_cell(name: str) -> SearchCell:
    """A predefined cell of :data:`SEARCH_CELLS` by name (UsageError naming the others)."""
    if name not in SEARCH_CELLS:
        raise UsageError(f"unknown search cell {name!r} (available: {', '.join(SEARCH_CELLS)})")
    return SEARCH_CELLS[name]


def run_search_cell(
    cell: SearchCell,
    root: str | Path,
    *,
    n_images: int | None = None,
    data_dir: str | None = None,
    batch_size: int | None = None,
    progress: Callable | None = None,
    attack_fn: Callable | None = None,
    model: tuple | None = None,
    data: tuple | None = None,
) -> SweepOutcome:
    """Run, resume or grow ``cell`` into ``ROOT/<cell.name>`` (``n_images``: instead of the
    cell's, e.g. fewer images for a quick check into another root). ``model`` ``(predict_fn,
    card)`` and ``data`` ``(images, labels, class_names)`` (the test split) are loaded by name
    unless given; ``attack_fn`` is the sweep's engine. Raises UsageError for bad settings or a
    folder of another cell."""
    predict_fn, card = inputs.load_model(cell.model) if model is None else model
    dataset = _dataset_of(card, cell.model)
    images, labels, class_names = (
        inputs.load_dataset(dataset, "test", data_dir) if data is None else data
    )
    config = cell.sweep_config(dataset, n_images)
    inputs.check_sizes(config, batch_size)
    inputs.check_sweep(config, predict_fn, card, images, labels, batch_size)
    out = Path(root) / cell.name
    _check_resumes(out, cell.describe())
    return run_sweep(
        config,
        out,
        predict_fn,
        images,
        labels,
        card=card,
        class_names=class_names,
        data_dir=data_dir,
        batch_size=batch_size,
        progress=progress,
        attack_fn=attack_fn,
        command=cell.command(root, config.n_images),
        run_info={CELL: cell.describe()},
        record_fields=_cell_fields(cell.name),
    )


# --------------------------------------------------------------------------------------
# Defence grids


@dataclasses.dataclass(frozen=True)
class DefenceCell:
    """One attacked system of a :class:`DefenceGrid`: ``kind`` is ``"none"``,
    ``"squeezed"``, ``"detector"`` or ``"model"``; ``system`` the squeezer or checkpoint
    name (``"none"``, ``"detector"`` for the others)."""

    model: str
    kind: str
    system: str
    method: str
    pixels: int
    n_images: int

    @property
    def name(self) -> str:
        return f"{self.method}-d{self.pixels}-{self.system}"

    @property
    def attacked_model(self) -> str:
        return self.system if self.kind == "model" else self.model


@dataclasses.dataclass(frozen=True)
class DefenceGrid:
    """The defence measurements of one undefended network, written under ``ROOT/<model>``.

    Attributes:
      model: the undefended network (a checkpoint name).
      methods: named methods (:mod:`~onepixel_jax.experiments.methods`), each at its own
        budget; ``fast-p128`` is the setting the committed defence tables were measured with.
      pixels: the values of ``d``.
      n_images: images of the ``none`` cells (the first the network classifies correctly).
      limit_images: images of every other cell, the first of the ``none`` cells' (``None``:
        ``n_images``).
      clean_images: the first test images clean accuracy is measured on.
      adaptive: attack the squeezed pipelines and the detector-guarded system end to end.
      defended: defended checkpoints attacked on the same images.
      squeezers, detector, calibration: ``None``: the dataset's (:data:`DEFENCE_SETTINGS`);
        ``calibration`` is the ``[start, stop)`` range of test images the detector is
        calibrated on (never attacked).
      fpr: the detector's false-positive rate on the calibration images.
      seed, chunk_size: the sweep's random stream and images per engine call.
    """

    model: str
    methods: tuple[str, ...] = ("fast-p128",)
    pixels: tuple[int, ...] = (1,)
    n_images: int = 100
    limit_images: int | None = None
    clean_images: int = 1000
    adaptive: bool = True
    defended: tuple[str, ...] = ()
    squeezers: tuple[str, ...] | None = None
    detector: tuple[str, ...] | None = None
    calibration: tuple[int, int] | None = None
    fpr: float = 0.05
    seed: int = 0
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("methods", "pixels", "defended"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("squeezers", "detector", "calibration"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_name("model", self.model)
        for name in self.defended:
            _check_name("defended", name)
        if not self.methods or not self.pixels:
            raise _cell_error("methods" if not self.methods else "pixels", "must not be empty")
        for name, value in (("clean_images", self.clean_images), ("n_images", self.n_images)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _cell_error(name, f"must be an integer >= 1, got {value!r}")
        if self.limit_images is not None and (
            isinstance(self.limit_images, bool)
            or not isinstance(self.limit_images, int)
            or not 1 <= self.limit_images <= self.n_images
        ):
            raise _cell_error(
                "limit_images", f"must be in [1, n_images = {self.n_images}], got "
                f"{self.limit_images!r}"
            )  # fmt: skip
        if not isinstance(self.fpr, float | int) or not 0.0 < self.fpr < 1.0:
            raise _cell_error("fpr", f"must be in (0, 1), got {self.fpr!r}")
        for m in self.methods:
            for d in self.pixels:  # every (method, d) must make a sweep
                self._sweep(self.model, "dataset", m, d, 1)

    def settings(self, dataset: str) -> dict[str, Any]:
        """The squeezers, detector squeezers and calibration range in force on ``dataset``."""
        default = DEFENCE_SETTINGS.get(dataset)
        out = {}
        for name in ("squeezers", "detector", "calibration"):
            value = getattr(self, name)
            if value is None:
                if default is None:
                    raise UsageError(
                        f"no default {name} for dataset {dataset!r}; give them (known: "
                        f"{', '.join(DEFENCE_SETTINGS)})"
                    )
                value = default[name]
            out[name] = tuple(value)
        lo, hi = out["calibration"]
        if not 0 <= lo < hi:
            raise _cell_error("calibration", f"must be a range start < stop, got {lo}, {hi}")
        return out

    def cells(self, squeezers: Sequence[str]) -> list[DefenceCell]:
        """Every cell, method by method and ``d`` by ``d``: none, the squeezers and the
        detector (``adaptive``), then the defended checkpoints."""
        others = self.limit_images or self.n_images
        out = []
        for method in self.methods:
            for d in self.pixels:
                out.append(DefenceCell(self.model, "none", "none", method, d, self.n_images))
                if self.adaptive:
                    out += [
                        DefenceCell(self.model, "squeezed", s, method, d, others) for s in squeezers
                    ]
                    out.append(DefenceCell(self.model, "detector", "detector", method, d, others))
                out += [
                    DefenceCell(self.model, "model", m, method, d, others) for m in self.defended
                ]
        return out

    def _sweep(self, model: str, dataset: str, method: str, d: int, n: int) -> SweepConfig:
        return SweepConfig(
            model=model,
            dataset=dataset,
            n_images=n,
            pixels=d,
            early_stop="success",
            seed=self.seed,
            chunk_size=self.chunk_size,
            methods=(method,),
            own_budgets=True,
        )

    def command(self, root: str | Path) -> str:
        """The ``onepixel experiment defences`` command that runs (or resumes) this grid."""
        parts = ["onepixel", "experiment", "defences", "--root", str(root), "--model", self.model]
        parts += ["--methods", ",".join(self.methods)]
        parts += ["--pixels", *map(str, self.pixels), "--n-images", str(self.n_images)]
        if self.limit_images is not None:
            parts += ["--limit-images", str(self.limit_images)]
        parts += ["--clean-images", str(self.clean_images)]
        parts += [] if self.adaptive else ["--no-adaptive"]
        if self.defended:
            parts += ["--defended", *self.defended]
        for flag, value in (("--squeezers", self.squeezers), ("--detector", self.detector)):
            if value is not None:
                parts += [flag, *value]
        if self.calibration is not None:
            parts += ["--calibration", *map(str, self.calibration)]
        parts += ["--fpr", str(self.fpr), "--seed", str(self.seed)]
        if self.chunk_size is not None:
            parts += ["--chunk-size", str(self.chunk_size)]
        return shlex.join(parts)


def _accuracy(predict_fn, images: np.ndarray, labels: np.ndarray) -> float:
    from onepixel_jax.targets import predict_in_batches

    probs = predict_in_batches(predict_fn, images.astype(np.float32), PREDICT_BATCH)
    return float(np.mean(np.asarray(probs).argmax(1) == labels))


def calibrate(
    grid: DefenceGrid, root: str | Path, predict_fn, card, images, labels
) -> tuple[dict, Any]:
    """The grid's calibration, ``ROOT/<model>/clean.json`` (computed once, then read back):
    clean accuracy of the network and of each squeezed pipeline on the first
    ``clean_images`` test images, and the detector calibrated for ``fpr`` on the calibration
    images with its false-positive rates. Returns ``(clean, detector)``."""
    from onepixel_jax.defences import squeezing

    dataset = _dataset_of(card, grid.model)
    settings = grid.settings(dataset)
    lo, hi = settings["calibration"]
    if hi > len(images) or grid.clean_images > len(images):
        raise UsageError(
            f"the {dataset} test split has {len(images)} images: fewer than the calibration "
            f"range [{lo}, {hi}) or --clean-images {grid.clean_images} needs"
        )
    key = {
        "model": grid.model,
        "model_sha256": card.get("sha256") or card.get("checkpoint_sha256"),
        "dataset": dataset,
        "clean_images": grid.clean_images,
        "squeezers": list(settings["squeezers"]),
        "detector_squeezers": list(settings["detector"]),
        "calibration_images": [lo, hi],
        "fpr": float(grid.fpr),
    }
    path = Path(root) / grid.model / CLEAN
    if path.exists():
        clean = read_json_object(path, what="calibration")
        if {k: clean.get(k) for k in key} != key:
            raise UsageError(
                f"{path} holds the calibration of other settings; use another --root or the "
                "grid's own settings"
            )
        detector = squeezing.FeatureSqueezingDetector(
            predict_fn, settings["detector"], float(clean["detector"]["threshold"]), grid.fpr
        )
        return clean, detector
    detector = squeezing.FeatureSqueezingDetector.calibrated(
        predict_fn, settings["detector"], images[lo:hi], fpr=grid.fpr
    )
    xc, yc = images[: grid.clean_images], labels[: grid.clean_images]
    idx, _, _ = select_images(predict_fn, images[:lo], labels[:lo], grid.n_images, False)
    accuracy = {"none": _accuracy(predict_fn, xc, yc)}
    for name in settings["squeezers"]:
        accuracy[name] = _accuracy(squeezing.squeezed(predict_fn, name), xc, yc)
    clean = {
        **key,
        "accuracy": accuracy,
        "detector": {
            "threshold": float(detector.threshold),
            "fpr_calibration": float(np.mean(detector.flags(images[lo:hi]))),
            "fpr_clean_images": float(np.mean(detector.flags(xc))),
            "fpr_clean_attack_images": float(np.mean(detector.flags(images[idx]))),
        },
        "image_ids": idx.tolist(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, clean)
    return clean, detector


def _system_engine(cell: DefenceCell, predict_fn, detector, squeezed_fns) -> Callable:
    """The engine call of a cell: the sweep hands it the undefended ``predict_fn`` (which
    selected the images); it attacks the cell's system instead."""
    from onepixel_jax import runner
    from onepixel_jax.defences import squeezing

    if cell.kind == "detector":
        import jax.numpy as jnp

        target = squeezing.detector_target(detector)

        def engine(key, _predict_fn, images, labels, cfg, targets=None, progress=False):
            objective = squeezing.detection_aware_objective(detector, cfg.targeted, cfg.early_stop)
            objective = objective.replace(
                fitness=cfg.objective, stall=int(cfg.stall), stall_eps=jnp.float32(cfg.stall_eps)
            )
            return runner.run(
                key, target, images, labels, method=cfg.method(), objective=objective,
                targets=targets, schedule=cfg.schedule(), progress=progress,
            )  # fmt: skip

        return engine
    system = squeezed_fns[cell.system] if cell.kind == "squeezed" else predict_fn

    def engine(key, _predict_fn, images, labels, cfg, targets=None, progress=False):
        with warnings.catch_warnings():  # a defence that misclassifies clean images is expected
            warnings.filterwarnings("ignore", "[^ ]+ of the [0-9]+ images are already", UserWarning)
            return runner.attack(key, system, images, labels, cfg, targets, progress=progress)

    return engine


def _defence_fields(cell: DefenceCell, detector, squeezed_fns) -> Callable:
    """The extra fields of a cell's records: its name, the detector's flag on the returned
    image, and for ``none`` each squeezed pipeline's verdict, for ``detector`` ``fooled``."""
    from onepixel_jax.targets import predict_in_batches

    def fields(method: str, result: Any) -> list[dict]:
        adv = np.asarray(result.adversarial)
        labels = np.asarray(result.labels)
        flags = detector.flags(adv)
        out = [{CELL: cell.name, "flagged": bool(f)} for f in flags]
        if cell.kind == "detector":
            fooled = np.asarray(result.probs).argmax(1) != labels
            for rec, f in zip(out, fooled, strict=True):
                rec["fooled"] = bool(f)
        if cell.kind == "none":
            verdicts = {}
            for name, fn in squeezed_fns.items():
                probs = predict_in_batches(fn, adv.astype(np.float32), PREDICT_BATCH)
                verdicts[name] = np.asarray(probs).argmax(1) != labels
            for i, rec in enumerate(out):
                rec["squeezed"] = {name: bool(v[i]) for name, v in verdicts.items()}
        return out

    return fields


def defence_cell_info(grid: DefenceGrid, cell: DefenceCell, clean: dict) -> dict[str, Any]:
    """A defence cell's identity in run.json."""
    return {
        "grid": "defences",
        "name": cell.name,
        "model": grid.model,
        "kind": cell.kind,
        "system": cell.system,
        "method": cell.method,
        "pixels": cell.pixels,
        "seed": grid.seed,
        "squeezers": clean["squeezers"] if cell.kind == "none" else [],
        "detector": {
            "squeezers": clean["detector_squeezers"],
            "threshold": clean["detector"]["threshold"],
            "fpr": clean["fpr"],
            "calibration_images": clean["calibration_images"],
        },
    }


def run_defence_grid(
    grid: DefenceGrid,
    root: str | Path,
    *,
    data_dir: str | None = None,
    batch_size: int | None = None,
    progress: Callable | None = None,
    log: Callable[[str], None] | None = None,
    models: dict[str, tuple] | None = None,
    data: tuple | None = None,
) -> list[SweepOutcome]:
    """Calibrate (once) and run, resume or grow every cell of ``grid`` under
    ``ROOT/<model>``; ``log`` receives one line per cell. ``models`` ``{name: (predict_fn,
    card)}`` and ``data`` ``(images, labels, class_names)`` (the test split) are loaded by
    name unless given. Raises UsageError for bad settings or a folder of another cell."""
    from onepixel_jax.defences import squeezing

    models = dict(models or {})

    def load(name: str) -> tuple:
        if name not in models:
            models[name] = inputs.load_model(name)
        return models[name]

    predict_fn, card = load(grid.model)
    dataset = _dataset_of(card, grid.model)
    images, labels, class_names = (
        inputs.load_dataset(dataset, "test", data_dir) if data is None else data
    )
    settings = grid.settings(dataset)
    lo = settings["calibration"][0]
    clean, detector = calibrate(grid, root, predict_fn, card, images, labels)
    if clean["image_ids"] and max(clean["image_ids"]) >= lo:
        raise UsageError(
            f"--n-images {grid.n_images} reaches the detector's calibration images (from test "
            f"image {lo}); lower it"
        )
    squeezed_fns = {s: squeezing.squeezed(predict_fn, s) for s in settings["squeezers"]}
    outcomes = []
    for cell in grid.cells(settings["squeezers"]):
        model_fn, model_card = predict_fn, card
        if cell.kind == "model":
            model_fn, model_card = load(cell.system)
        config = grid._sweep(cell.attacked_model, dataset, cell.method, cell.pixels, cell.n_images)
        inputs.check_sizes(config, batch_size)
        inputs.check_sweep(config, model_fn, model_card, images, labels, batch_size)
        out = Path(root) / grid.model / cell.name
        info = defence_cell_info(grid, cell, clean)
        _check_resumes(out, info)
        outcome = run_sweep(
            config,
            out,
            predict_fn,  # selects the images; the engine attacks the cell's system
            images,
            labels,
            card=model_card,
            class_names=class_names,
            data_dir=data_dir,
            batch_size=batch_size,
            progress=progress,
            attack_fn=_system_engine(cell, model_fn, detector, squeezed_fns),
            command=grid.command(root),
            run_info={CELL: info},
            record_fields=_defence_fields(cell, detector, squeezed_fns),
        )
        outcomes.append(outcome)
        if log is not None:
            log(f"{out}: {outcome.attacks_run} attacks run, {outcome.attacks_reused} kept")
    return outcomes


__all__ = [
    "CELL",
    "DEFENCE_SETTINGS",
    "SEARCH_CELLS",
    "DefenceCell",
    "DefenceGrid",
    "SearchCell",
    "calibrate",
    "run_defence_grid",
    "run_search_cell",
    "search_cell",
]
