"""Fooling-class retraining (Nguyen, Yosinski & Clune 2015, section 3.3), on the zoo's steps.

One round:

1. evolve fooling images against the current network with MAP-Elites (``runs_per_round``
   seeds, one elite per real class each; :func:`onepixel_jax.fooling.run.run_fooling`). The
   archive has the ``K`` real classes as cells; the probability of the extra class is not a
   cell, so an image fools only when the network gives a real class a high confidence;
2. add every fooling image collected so far to the training set as class ``K`` ("fooling"),
   cycled to ``fooling_examples`` images;
3. retrain the ``K + 1``-class network with :func:`onepixel_jax.zoo.training.fit` (the zoo's
   jitted ``train_step``; BatchNorm statistics are trained like the parameters), either
   ``"fine_tune"`` (continue from the previous round's network; the first ``K + 1``-class
   network is the ``K``-class checkpoint with one more output, :func:`extend_head`) or
   ``"from_scratch"`` (a fresh initialisation every round, the paper's protocol);
4. measure clean test accuracy and how often the fooling class is predicted for the fooling
   images before and after the retraining; write the network as a checkpoint with its card
   (``round<r>/``), loadable with ``opj.models.load``.

With ``final_evolution`` the last network is attacked once more, to show whether new fooling
images still appear. Every round appends one record to ``rounds.jsonl`` in the work folder.

Command line: ``onepixel defend fooling-class --model lenet-mnist --rounds 3 --out DIR``
(``python -m onepixel_jax.defences.fooling_class`` runs the same command).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from onepixel_jax import data as opj_data
from onepixel_jax.experiments.lock import RunFolderLock
from onepixel_jax.files import append_jsonl
from onepixel_jax.fooling.run import ENCODINGS, FoolConfig, run_fooling
from onepixel_jax.provenance import machine_info, package_versions, utc_now
from onepixel_jax.zoo import architectures as arch_lib
from onepixel_jax.zoo import checkpoints as ckpt_lib
from onepixel_jax.zoo import training

__all__ = [
    "MODES",
    "FoolingClassConfig",
    "extend_head",
    "fooling_class_rate",
    "fooling_class_scores",
    "retrain_with_fooling_class",
]

MODES = ("fine_tune", "from_scratch")
ROUNDS_FILE = "rounds.jsonl"
FOOLING_CLASS_NAME = "fooling"


@dataclasses.dataclass(frozen=True)
class FoolingClassConfig:
    """Settings of fooling-class retraining.

    Attributes:
      model: the ``K``-class checkpoint (a committed name or a checkpoint folder).
      rounds: evolve-and-retrain rounds.
      mode: ``"fine_tune"`` or ``"from_scratch"`` (see the module docstring).
      encoding, generations, popsize, threshold, chunk: MAP-Elites per run (``FoolConfig``);
        a run stops early once every class reaches ``threshold``.
      runs_per_round: MAP-Elites seeds per round; each contributes ``K`` fooling images.
      epochs, batch_size, learning_rate, warmup_epochs, weight_decay: the retraining of each
        round (SGD with Nesterov momentum, warmup + cosine schedule; ``TrainConfig``).
      fooling_examples: training images of the fooling class per round (the collected images
        cycled); ``None``: the mean size of a real class in the training set used.
      train_limit, eval_limit: use only the first images of the train / test split.
      data_dir, download: where the dataset is (``opj.data.load``).
      seed: seeds evolution (run ``s`` of round ``r`` uses ``seed + 1000 r + s``), shuffling,
        augmentation and the initialisation of new weights.
      final_evolution: evolve once more against the last network.
    """

    model: str
    rounds: int = 1
    mode: str = "fine_tune"
    encoding: str = "direct"
    generations: int = 300
    popsize: int = 100
    runs_per_round: int = 1
    threshold: float = 0.9999
    chunk: int = 50
    epochs: int = 1
    batch_size: int = 128
    learning_rate: float = 0.01
    warmup_epochs: float = 0.0
    weight_decay: float = 5e-4
    fooling_examples: int | None = None
    train_limit: int | None = None
    eval_limit: int | None = None
    data_dir: str | None = None
    download: bool = False
    seed: int = 0
    final_evolution: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        for name in ("rounds", "generations", "popsize", "runs_per_round", "chunk", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("fooling_examples", "train_limit", "eval_limit"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold!r}")

    def train_config(self, architecture: str, dataset: str, width: float, round_: int):
        """The ``TrainConfig`` of one round's retraining."""
        return training.TrainConfig(
            model=architecture,
            dataset=dataset,
            width=width,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            warmup_epochs=self.warmup_epochs,
            weight_decay=self.weight_decay,
            seed=self.seed + round_,
            data_dir=self.data_dir,
            download=self.download,
        )


def extend_head(variables: Mapping[str, Any], template: Mapping[str, Any]) -> dict[str, Any]:
    """``variables`` of a ``K``-class network moved into the variables of the same network
    with more outputs.

    ``template`` holds the (freshly initialised) variables of the wider network. Leaves of
    equal shape are copied from ``variables``; leaves that differ only in their last axis
    (the output layer's kernel and bias: ``K`` there, ``K + e`` in ``template``) keep the
    first ``K`` entries from ``variables`` and the template's initial values for the new
    outputs (random weights, so a ReLU output such as NiN's still gets gradients). BatchNorm
    statistics are copied. ``ValueError`` for any other mismatch.
    """
    old_flat = dict(jax.tree_util.tree_leaves_with_path(dict(variables)))
    new_flat, treedef = jax.tree_util.tree_flatten_with_path(dict(template))
    if set(old_flat) != {path for path, _ in new_flat}:
        raise ValueError("variables and template must hold the same layers")
    leaves = []
    extended = 0
    for path, new in new_flat:
        old = jnp.asarray(old_flat[path])
        if old.shape == new.shape:
            leaves.append(old.astype(new.dtype))
        elif old.shape[:-1] == new.shape[:-1] and old.shape[-1] < new.shape[-1]:
            leaves.append(jnp.asarray(new).at[..., : old.shape[-1]].set(old.astype(new.dtype)))
            extended += 1
        else:
            raise ValueError(
                f"layer {jax.tree_util.keystr(path)}: shape {old.shape} cannot grow into "
                f"{new.shape}"
            )
    if extended == 0:
        raise ValueError("template has no wider output layer than variables")
    return jax.tree_util.tree_unflatten(treedef, leaves)


def fooling_class_rate(
    model: nn.Module, variables: Mapping[str, Any], images: np.ndarray, fooling_class: int
) -> float:
    """Share of ``images`` (uint8 NHWC) that ``model`` (inference mode) assigns to
    ``fooling_class``."""
    return fooling_class_scores(model, variables, images, fooling_class)[0]


def fooling_class_scores(
    model: nn.Module, variables: Mapping[str, Any], images: np.ndarray, fooling_class: int
) -> tuple[float, float]:
    """``(share, mean probability)``: the share of ``images`` (uint8 NHWC) that ``model``
    (inference mode) assigns to ``fooling_class``, and the mean softmax probability it gives
    that class on them."""
    if len(images) == 0:
        return 0.0, 0.0
    logits = _apply_inference(model)(dict(variables), jnp.asarray(images, jnp.float32))
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))
    return float(np.mean(probs.argmax(-1) == fooling_class)), float(probs[:, fooling_class].mean())


@functools.lru_cache(maxsize=8)
def _apply_inference(model: nn.Module) -> Callable:
    """``jit(model.apply(variables, x, train=False))``, compiled once per module."""
    return jax.jit(lambda variables, x: model.apply(variables, x, train=False))


def _evolve(
    config: FoolingClassConfig,
    predict_fn: Callable[[jax.Array], jax.Array],
    card: ckpt_lib.ModelCard,
    round_: int,
    out: Path,
    log: Callable[[str], None],
) -> tuple[np.ndarray, dict[str, Any]]:
    """MAP-Elites runs against ``predict_fn``; ``(elites uint8 (runs * K, H, W, C), stats)``."""
    images, reached, all_gen, best = [], [], [], []
    for run in range(config.runs_per_round):
        fool_config = FoolConfig(
            model=f"{card.name}-fooling-class-round{round_}",
            encoding=config.encoding,
            popsize=config.popsize,
            seed=config.seed + 1000 * round_ + run,
            chunk=config.chunk,
            threshold=config.threshold,
        )
        summary = run_fooling(
            fool_config,
            predict_fn,
            card.input_shape,
            list(card.class_names),
            out / f"evolve-{run}",
            config.generations,
            stop_at_threshold=True,
            log=lambda _: None,
        )
        images.append(np.load(out / f"evolve-{run}" / "best_images_uint8.npy"))
        reached.append(summary["reached"])
        all_gen.append(summary["generation_all_reached"])
        best.append(summary["best_confidence"])
        log(
            f"[fooling-class] round {round_} evolution {run}: {summary['reached']}/"
            f"{card.num_classes} classes >= {config.threshold:g} after "
            f"{summary['generations']} generations (median best {summary['median_confidence']:.4f})"
        )
    stats = {
        "reached_per_run": reached,
        "generation_all_reached_per_run": all_gen,
        "median_best_confidence": float(np.median(best)),
        "min_best_confidence": float(np.min(best)),
    }
    return np.concatenate(images), stats


def retrain_with_fooling_class(
    config: FoolingClassConfig, workdir: str | Path, *, log: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Run the rounds of fooling-class retraining into ``workdir``; return the round records.

    Each record: ``round``, ``mode``, the evolution statistics against the network of the
    previous round (``reached_per_run``, ``generation_all_reached_per_run``, best
    confidences), ``fooling_images`` collected so far, ``fooling_examples`` trained on,
    ``fooling_rate_before`` / ``fooling_rate_after`` (share of the collected fooling images
    predicted as the fooling class by the network before and after this round's training),
    ``fooling_prob_before`` / ``fooling_prob_after`` (their mean probability of the fooling
    class, same networks),
    ``test_accuracy`` (clean, ``K`` real classes), ``checkpoint`` (folder of the network),
    ``seconds``. A last record with ``"evolution_only": True`` holds the final evolution.
    One process writes ``workdir`` at a time (a second writer is refused with
    ``RunFolderBusyError``).
    """
    if not isinstance(config, FoolingClassConfig):
        raise TypeError(f"config must be a FoolingClassConfig, got {type(config).__name__}")
    with RunFolderLock(workdir):
        return _retrain_with_fooling_class(config, Path(workdir), log=log)


def _retrain_with_fooling_class(config, workdir: Path, *, log) -> list[dict[str, Any]]:
    if (workdir / ROUNDS_FILE).exists():
        raise ValueError(
            f"{workdir} already holds retraining rounds ({ROUNDS_FILE}); use another folder"
        )
    variables, card = ckpt_lib.load_variables(config.model)
    if card.dataset not in training.DATASETS:
        raise ValueError(f"model card {card.path} names no trainable dataset: {card.dataset!r}")
    k = card.num_classes
    load_kwargs = {"data_dir": config.data_dir, "download": config.download}
    x_train, y_train, _ = opj_data.load(
        card.dataset, "train", limit=config.train_limit, **load_kwargs
    )
    x_test, y_test, _ = opj_data.load(card.dataset, "test", limit=config.eval_limit, **load_kwargs)
    if tuple(x_train.shape[1:]) != card.input_shape:
        raise ValueError(
            f"model {card.name!r} takes {card.input_shape} inputs, {card.dataset!r} images "
            f"are {x_train.shape[1:]}"
        )
    workdir.mkdir(parents=True, exist_ok=True)  # inputs checked: now write
    kwargs = {**card.model_kwargs, "num_classes": k + 1}
    wide = arch_lib.create(card.architecture, **kwargs)
    augment = card.get("augmentation") is not None
    n_fooling = config.fooling_examples or max(1, round(len(x_train) / k))
    width = float(card.model_kwargs.get("width", 1.0))

    current_model = ckpt_lib.model_from_card(card)
    current_vars: dict[str, Any] = dict(variables)
    collected = np.zeros((0, *card.input_shape), np.uint8)
    records: list[dict[str, Any]] = []
    for round_ in range(1, config.rounds + 1):
        start = time.perf_counter()
        round_dir = workdir / f"round{round_}"
        predict_fn = ckpt_lib.make_predict_fn(current_model, current_vars, card.input_shape)
        elites, stats = _evolve(config, predict_fn, card, round_, round_dir, log)
        collected = np.concatenate([collected, elites])

        key = jax.random.PRNGKey(config.seed + round_)
        k_init, k_train = jax.random.split(key)
        fresh = arch_lib.init_variables(wide, card.input_shape, k_init)
        if config.mode == "from_scratch":
            start_vars = fresh
        elif current_model is not wide:  # the first K + 1-class network
            start_vars = extend_head(current_vars, fresh)
        else:
            start_vars = current_vars
        rate_before, prob_before = fooling_class_scores(wide, start_vars, collected, k)

        reps = np.resize(np.arange(len(collected)), n_fooling)
        xs = np.concatenate([x_train, collected[reps]])
        ys = np.concatenate([y_train, np.full(n_fooling, k, np.int32)])
        train_config = config.train_config(card.architecture, card.dataset, width, round_)
        state = training.create_train_state(
            wide, start_vars, train_config, k_train, augment=augment
        )
        history = []
        for trained, epoch_record in training.fit(state, xs, ys, train_config, log=log):
            state = trained
            history.append(epoch_record)
        current_model, current_vars = wide, state.variables()

        rate_after, prob_after = fooling_class_scores(wide, current_vars, collected, k)
        test_acc = training.evaluate(state, x_test, y_test)
        name = f"{card.name}-fooling-class-round{round_}"
        digest = ckpt_lib.save_checkpoint(round_dir / ckpt_lib.CHECKPOINT_FILE, current_vars)
        record = {
            "round": round_,
            "mode": config.mode,
            **stats,
            "fooling_images": len(collected),
            "fooling_examples": n_fooling,
            "clean_examples": len(x_train),
            "fooling_rate_before": round(rate_before, 5),
            "fooling_rate_after": round(rate_after, 5),
            "fooling_prob_before": round(prob_before, 5),
            "fooling_prob_after": round(prob_after, 5),
            "test_accuracy": round(test_acc, 5),
            "final_loss": history[-1]["loss"],
            "checkpoint": str(round_dir),
            "seconds": round(time.perf_counter() - start, 1),
        }
        ckpt_lib.write_card(
            round_dir,
            {
                "name": name,
                "architecture": card.architecture,
                "model_kwargs": kwargs,
                "input_shape": list(card.input_shape),
                "num_classes": k + 1,
                "class_names": [*card.class_names, FOOLING_CLASS_NAME],
                "parameter_count": arch_lib.param_count(current_vars["params"]),
                "dataset": card.dataset,
                "test_accuracy": round(test_acc, 5),
                "test_split": f"{card.dataset} test, first {len(x_test)} images, real classes",
                "defence": {
                    "kind": "fooling-class retraining",
                    "base_model": card.name,
                    "base_checkpoint_sha256": card.checkpoint_sha256,
                    "round": round_,
                    "config": dataclasses.asdict(config),
                    "round_record": record,
                },
                "config": dataclasses.asdict(train_config),
                "augmentation": card.get("augmentation") if augment else None,
                "command": None,
                "seed": config.seed,
                "machine": {**machine_info(), **package_versions(("jax", "flax", "optax"))},
                "data_sha256": opj_data.dataset_checksums(card.dataset, ["train", "test"]),
                "created_utc": utc_now(),
                "checkpoint_file": ckpt_lib.CHECKPOINT_FILE,
                "checkpoint_sha256": digest,
            },
        )
        append_jsonl(workdir / ROUNDS_FILE, [record])
        records.append(record)
        log(
            f"[fooling-class] round {round_} ({config.mode}): fooling class predicted for "
            f"{100 * rate_before:.1f}% -> {100 * rate_after:.1f}% of {len(collected)} fooling "
            f"images; clean test accuracy {100 * test_acc:.2f}%"
        )
    if config.final_evolution:
        start = time.perf_counter()
        round_ = config.rounds + 1
        predict_fn = ckpt_lib.make_predict_fn(current_model, current_vars, card.input_shape)
        _, stats = _evolve(config, predict_fn, card, round_, workdir / f"round{round_}", log)
        record = {
            "round": round_,
            "evolution_only": True,
            **stats,
            "seconds": round(time.perf_counter() - start, 1),
        }
        append_jsonl(workdir / ROUNDS_FILE, [record])
        records.append(record)
    return records


if __name__ == "__main__":  # the old script name: onepixel defend fooling-class
    import sys

    from onepixel_jax.cli import main

    sys.exit(main(["defend", "fooling-class", *sys.argv[1:]]))
