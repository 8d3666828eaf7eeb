"""The fooling-image run behind ``onepixel fool``: every class of a model, resumably.

The run directory ``out`` holds:

* ``config.json`` — what fixes the run (model and its checkpoint hash, encoding,
  hyperparameters, population, seed). Re-running with the same ``--out`` continues from
  the saved archive; a different config is refused. ``--generations`` is the target and may
  be raised to extend a finished run.
* ``progress.jsonl`` — one line appended per chunk of generations: generation, wall time,
  best confidence per class, how many classes reach the threshold.
* ``state.npz`` — the archive (genomes, images, confidences), the per-generation curve and
  the elapsed time, rewritten atomically after every chunk.
* ``best_grid.png``, ``confidence_curve.png``, ``summary.json`` — written at the end.

Generation ``g`` uses ``fold_in(key, g)``, so an interrupted and resumed run yields the same
archive as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from onepixel_jax.experiments.lock import RunFolderLock
from onepixel_jax.files import (
    DamagedFileError,
    append_jsonl,
    read_json_object,
    read_jsonl,
    write_bytes_atomic,
    write_json_atomic,
)
from onepixel_jax.fooling import figures
from onepixel_jax.fooling import map_elites as me
from onepixel_jax.fooling.archive import Archive
from onepixel_jax.fooling.cppn import CPPNParams, cppn_encoding
from onepixel_jax.fooling.direct import DirectParams, direct_encoding
from onepixel_jax.fooling.encoding import Encoding
from onepixel_jax.provenance import machine_info, package_versions

ENCODINGS = ("direct", "cppn")
CONFIG_FILE = "config.json"
PROGRESS_FILE = "progress.jsonl"
STATE_FILE = "state.npz"
SUMMARY_FILE = "summary.json"
GRID_FILE = "best_grid.png"
CURVE_FILE = "confidence_curve.png"


@dataclasses.dataclass(frozen=True)
class FoolConfig:
    """Everything that determines a fooling run except its length."""

    model: str
    encoding: str = "direct"
    popsize: int = 100
    seed: int = 0
    chunk: int = 10
    threshold: float = 0.9999
    # direct encoding
    mutation_rate: float = 0.1
    eta: float = 15.0
    rate_decay: float = 1.0
    min_rate: float = 0.0
    crossover_rate: float = 0.0
    # CPPN encoding
    max_hidden: int = 12
    weight_sigma: float = 0.5
    add_node_rate: float = 0.1
    add_connection_rate: float = 0.2
    # provenance of the model (set from its card)
    model_sha256: str = ""

    def validate(self) -> None:
        """Raise ValueError (TypeError for a wrong type) naming the first bad field."""
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        for name in ("popsize", "seed", "chunk", "max_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(f"{name} must be an int, got {value!r}")
        for name in FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not np.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
        for name in ("popsize", "chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in [0, 2**32), got {self.seed}")
        if not 0 <= self.max_hidden <= MAX_HIDDEN:
            raise ValueError(f"max_hidden must be in [0, {MAX_HIDDEN}], got {self.max_hidden}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        for name in ("mutation_rate", "min_rate", "crossover_rate", "add_node_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.add_connection_rate <= 1.0:
            raise ValueError(
                f"add_connection_rate must be in [0, 1], got {self.add_connection_rate}"
            )
        if not 0.0 < self.rate_decay <= 1.0:
            raise ValueError(f"rate_decay must be in (0, 1], got {self.rate_decay}")
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")
        if self.weight_sigma <= 0:
            raise ValueError(f"weight_sigma must be > 0, got {self.weight_sigma}")


FLOAT_FIELDS = (
    "threshold",
    "mutation_rate",
    "eta",
    "rate_decay",
    "min_rate",
    "crossover_rate",
    "weight_sigma",
    "add_node_rate",
    "add_connection_rate",
)
# Hidden nodes a CPPN may hold: its connection matrix grows with the square (4 inputs,
# the hidden nodes and the colour outputs on each side).
MAX_HIDDEN = 4096


def make_encoding(config: FoolConfig, image_shape: Sequence[int]) -> Encoding:
    """The encoding a config describes, for images of ``image_shape``."""
    shape = tuple(int(s) for s in image_shape)
    if config.encoding == "direct":
        params = DirectParams(
            mutation_rate=config.mutation_rate,
            eta=config.eta,
            rate_decay=config.rate_decay,
            min_rate=config.min_rate,
            crossover_rate=config.crossover_rate,
        )
        return direct_encoding(shape, params)
    params = CPPNParams(
        weight_sigma=config.weight_sigma,
        add_node_rate=config.add_node_rate,
        add_connection_rate=config.add_connection_rate,
    )
    return cppn_encoding(shape, max_hidden=config.max_hidden, params=params)


# ---------------------------------------------------------------------------------------------
# State files


def _save_state(path: Path, state: me.FoolingState, curve: np.ndarray, elapsed: float) -> None:
    arch = state.archive
    leaves = jax.tree_util.tree_leaves(arch.genomes)
    arrays = {f"genome_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    buffer = io.BytesIO()
    np.savez(
        buffer,
        images=np.asarray(arch.images).astype(np.uint8),
        fitness=np.asarray(arch.fitness),
        generation=np.asarray(state.generation),
        curve=curve.astype(np.float32),
        elapsed=np.asarray(elapsed, np.float64),
        **arrays,
    )
    write_bytes_atomic(path, buffer.getvalue())


def _load_state(path: Path, template: me.FoolingState) -> tuple[me.FoolingState, np.ndarray, float]:
    try:
        return _read_state(path, template)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise DamagedFileError(
            f"fooling state {path} cannot be read ({type(err).__name__}); "
            "delete the folder or use another --out"
        ) from None


def _read_state(path: Path, template: me.FoolingState) -> tuple[me.FoolingState, np.ndarray, float]:
    with np.load(path, allow_pickle=False) as data:
        leaves, treedef = jax.tree_util.tree_flatten(template.archive.genomes)
        genomes = jax.tree_util.tree_unflatten(
            treedef,
            [jnp.asarray(data[f"genome_{i}"], leaf.dtype) for i, leaf in enumerate(leaves)],
        )
        arch = Archive(
            genomes=genomes,
            images=jnp.asarray(data["images"], jnp.float32),
            fitness=jnp.asarray(data["fitness"], jnp.float32),
        )
        state = me.FoolingState(archive=arch, generation=jnp.asarray(data["generation"], jnp.int32))
        return state, np.asarray(data["curve"]), float(data["elapsed"])


def _trim_progress(path: Path, generation: int) -> None:
    """Drop progress lines past ``generation`` (written before a crash, not in the state)."""
    records = read_jsonl(path, repair=True)
    keep = [r for r in records if r.get("generation", 0) <= generation]
    if len(keep) != len(records):
        path.unlink()
        append_jsonl(path, keep)


# ---------------------------------------------------------------------------------------------
# The run


def run_fooling(
    config: FoolConfig,
    predict_fn: Callable[[jax.Array], jax.Array],
    image_shape: Sequence[int],
    class_names: Sequence[str],
    out: str | Path,
    generations: int,
    stop_at_threshold: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) MAP-Elites into ``out`` until ``generations``; returns the summary.

    ``class_names`` fixes the number of cells ``K``; a model with more outputs (an extra
    "fooling" class) has its extra columns ignored. Raises ValueError if ``out`` holds a run
    with a different config, and ``RunFolderBusyError`` (a ValueError) while another process
    writes ``out`` (:class:`~onepixel_jax.experiments.lock.RunFolderLock`).
    """
    config.validate()
    if isinstance(generations, bool) or not isinstance(generations, int | np.integer):
        raise TypeError(f"generations must be an int, got {generations!r}")
    if not 1 <= generations < 2**31 - 1:
        raise ValueError(f"generations must be in [1, 2**31 - 1), got {generations}")
    with RunFolderLock(out):  # one writer per run folder (a second one is refused)
        return _run_fooling(
            config, predict_fn, image_shape, class_names, Path(out), generations,
            stop_at_threshold, log,
        )  # fmt: skip


def _run_fooling(
    config, predict_fn, image_shape, class_names, out, generations, stop_at_threshold, log
):
    config_path = out / CONFIG_FILE
    config_dict = dataclasses.asdict(config)
    if config_path.exists():
        saved = read_json_object(config_path, "fooling config")
        if saved != config_dict:
            diff = sorted(
                k for k in set(saved) | set(config_dict) if saved.get(k) != config_dict.get(k)
            )
            raise ValueError(
                f"out {str(out)!r} holds a run with a different config (differs in {diff}); "
                "use another --out or the same settings"
            )
    else:
        write_json_atomic(config_path, config_dict)

    num_classes = len(class_names)
    encoding = make_encoding(config, image_shape)
    key_init, key_run = jax.random.split(jax.random.PRNGKey(config.seed))
    init = jax.jit(
        functools.partial(
            me.init,
            encoding=encoding,
            predict_fn=predict_fn,
            num_classes=num_classes,
            popsize=config.popsize,
        )
    )
    state_path = out / STATE_FILE
    progress_path = out / PROGRESS_FILE
    if state_path.exists():
        template = jax.eval_shape(init, key_init)
        state, curve, elapsed = _load_state(state_path, template)
        _trim_progress(progress_path, int(state.generation))
        log(f"[fool] resuming {out} at generation {int(state.generation)}")
    else:
        start = time.perf_counter()
        state = init(key_init)
        curve = np.asarray(state.archive.fitness)[None]
        elapsed = time.perf_counter() - start
        _save_state(state_path, state, curve, elapsed)

    compiled: dict[int, Callable] = {}

    def run_chunk(length: int, state: me.FoolingState):
        if length not in compiled:
            compiled[length] = jax.jit(
                functools.partial(
                    me.run,
                    encoding=encoding,
                    predict_fn=predict_fn,
                    popsize=config.popsize,
                    num_generations=length,
                )
            )
        return compiled[length](key_run, state, encoding.params)

    def all_reached(fitness: np.ndarray) -> bool:
        return bool(np.all(fitness >= config.threshold))

    while int(state.generation) < generations:
        if stop_at_threshold and all_reached(np.asarray(state.archive.fitness)):
            break
        length = min(config.chunk, generations - int(state.generation))
        start = time.perf_counter()
        state, metrics = run_chunk(length, state)
        fitness = np.asarray(state.archive.fitness)
        elapsed += time.perf_counter() - start
        curve = np.concatenate([curve, np.asarray(metrics.best_fitness)])
        gen = int(state.generation)
        reached = int(np.sum(fitness >= config.threshold))
        record = {
            "generation": gen,
            "elapsed_s": round(elapsed, 3),
            "reached": reached,
            "best": [float(f) for f in fitness],
        }
        append_jsonl(progress_path, [record])
        _save_state(state_path, state, curve, elapsed)
        log(
            f"[fool] gen {gen:5d}/{generations}  {elapsed:7.1f}s  "
            f"{reached}/{num_classes} >= {config.threshold:g}  "
            f"min {fitness.min():.6f}  median {np.median(fitness):.6f}"
        )
    stopped_early = int(state.generation) < generations

    return _finish(config, predict_fn, class_names, out, state, curve, elapsed, stopped_early)


def _finish(config, predict_fn, class_names, out, state, curve, elapsed, stopped_early):
    arch = state.archive
    fitness = np.asarray(arch.fitness)
    images_u8 = np.asarray(arch.images).astype(np.uint8)
    # Check: the saved 8-bit images are classified with the confidences the search reports.
    probs = np.asarray(jax.jit(predict_fn)(jnp.asarray(images_u8, jnp.float32)))
    recheck = probs[np.arange(len(class_names)), np.arange(len(class_names))]
    first = np.asarray(me.first_generation_reaching(jnp.asarray(curve[1:]), config.threshold))
    if np.any(curve[0] >= config.threshold):  # reached by the initial population
        first = np.where(curve[0] >= config.threshold, 0, first)
    gen = int(state.generation)
    title = (
        f"{config.model}, {config.encoding} encoding, {gen} generations x {config.popsize}, "
        f"seed {config.seed}"
    )
    figures.save_best_grid(out / GRID_FILE, images_u8, fitness, class_names, title)
    figures.save_confidence_curves(out / CURVE_FILE, curve, class_names, config.threshold, title)
    np.save(out / "best_images_uint8.npy", images_u8)
    all_gen = int(first.max()) if np.all(first >= 0) else None
    summary = {
        "model": config.model,
        "encoding": config.encoding,
        "popsize": config.popsize,
        "seed": config.seed,
        "generations": gen,
        "stopped_at_threshold": bool(stopped_early),
        "evaluations": int(config.popsize * (gen + 1)),
        "wall_time_s": round(elapsed, 2),
        "threshold": config.threshold,
        "classes": list(class_names),
        "best_confidence": [float(f) for f in fitness],
        "best_confidence_uint8_recheck": [float(f) for f in recheck],
        "reached": int(np.sum(fitness >= config.threshold)),
        "min_confidence": float(fitness.min()),
        "median_confidence": float(np.median(fitness)),
        "first_generation_reaching": [int(f) for f in first],
        "generation_all_reached": all_gen,
        "machine": {**machine_info(), **package_versions(("jax", "jaxlib"))},
        "config": dataclasses.asdict(config),
    }
    write_json_atomic(out / SUMMARY_FILE, summary)
    return summary
