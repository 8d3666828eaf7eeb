"""Training of the target networks with optax (behind the ``onepixel train`` command).

The pieces, from small to large:

* :func:`train_step` / :func:`eval_step`: pure ``(state, batch)`` functions, jitted once at
  module level (:data:`jit_train_step`, :data:`jit_eval_step`). BatchNorm statistics
  (``batch_stats``) live in the :class:`TrainState` and are updated by every train step.
  Other code that trains (fooling-class retraining in ``onepixel_jax.defences``) reuses them.
* :func:`learning_rate_at`: the linear-warmup + cosine schedule (over steps, or over
  wall-clock time with a time budget); the step reads the rate from the state, so a schedule
  that follows time does not recompile.
* :func:`fit`: epochs of shuffled mini-batches over in-memory arrays, one record per epoch.
* :func:`train_and_evaluate`: one model on one dataset, evaluated on the test split after
  every epoch; writes ``params.msgpack`` and ``card.json`` (read by
  :func:`onepixel_jax.zoo.checkpoints.load`) into ``workdir``, rewritten after every epoch
  (card ``"status"`` ``"epoch k/n"``), so an interrupted run leaves a usable model;
  ``"complete"`` at the end.

Optimiser: SGD with Nesterov momentum (or AdamW), decoupled weight decay on kernels only
(not on biases or BatchNorm scales). CIFAR-10 augmentation runs inside the jitted step:
random 32x32 crop of the image padded by 4 zero pixels, and a random horizontal flip.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization, struct
from flax.training import train_state

from onepixel_jax import data as opj_data
from onepixel_jax.files import read_json_object, write_bytes_atomic
from onepixel_jax.provenance import machine_info, package_versions, utc_now
from onepixel_jax.zoo import architectures as arch_lib
from onepixel_jax.zoo import checkpoints as ckpt_lib

__all__ = [
    "DATASETS",
    "TrainConfig",
    "TrainState",
    "augment_batch",
    "create_train_state",
    "eval_step",
    "evaluate",
    "fit",
    "jit_eval_step",
    "jit_train_step",
    "learning_rate_at",
    "make_optimizer",
    "spot_check",
    "train_and_evaluate",
    "train_step",
]

DATASETS = ("cifar10", "mnist", "digits")

Batch = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Attributes:
      model: architecture name (a key of ``opj.models.ARCHITECTURES``).
      dataset: ``"cifar10"``, ``"mnist"`` or ``"digits"``.
      width: channel multiplier of the architecture.
      epochs: passes over the training set.
      batch_size: images per optimiser step (the last partial batch of an epoch is dropped).
      learning_rate: peak learning rate of the warmup + cosine schedule.
      warmup_epochs: epochs of linear warmup from 0 to ``learning_rate``.
      optimizer: ``"sgd"`` (Nesterov momentum ``momentum``) or ``"adamw"``.
      weight_decay: decoupled weight decay on kernels (multiplied by the learning rate).
      batch_norm, dropout: architecture overrides; ``None`` keeps the architecture default.
      augment: random crop (4-pixel zero padding) + horizontal flip; ``None`` = on for cifar10.
      label_smoothing: cross-entropy label smoothing.
      seed: seed of initialisation, shuffling, augmentation and dropout.
      train_limit: use only the first ``train_limit`` training images (tests, quick runs).
      eval_limit: evaluate on only the first ``eval_limit`` test images.
      data_dir: data directory (see ``opj.data``).
      command: the command line recorded in the card.
      name: checkpoint name recorded in the card (default: the workdir's name).
      time_budget: optional wall-clock limit in seconds for the optimisation steps; the cosine
        schedule then follows elapsed time instead of steps and reaches 0 at the budget, and
        training stops there even if fewer than ``epochs`` epochs were done (the card records
        the steps actually done).
      input_dropout: override of AllConv's input dropout rate.
      download: let ``opj.data`` download a missing dataset (never done otherwise).
      dead_pixel_rate, dead_pixels, dead_pixel_colours: dead-pixel augmentation
        (:mod:`onepixel_jax.defences.dead_pixels`): this share of the training images gets
        ``dead_pixels`` pixels set to ``"random"`` or ``"extreme"`` colours (0: off).
    """

    model: str = "allconv"
    dataset: str = "cifar10"
    width: float = 1.0
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 0.05
    warmup_epochs: float = 1.0
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_norm: bool | None = None
    dropout: float | None = None
    augment: bool | None = None
    label_smoothing: float = 0.0
    seed: int = 0
    train_limit: int | None = None
    eval_limit: int | None = None
    data_dir: str | None = None
    command: str | None = None
    name: str | None = None
    time_budget: float | None = None
    input_dropout: float | None = None
    download: bool = False
    dead_pixel_rate: float = 0.0
    dead_pixels: int = 1
    dead_pixel_colours: str = "random"

    def __post_init__(self) -> None:
        if self.model not in arch_lib.ARCHITECTURES:
            raise ValueError(
                f"model must be one of {sorted(arch_lib.ARCHITECTURES)}, got {self.model!r}"
            )
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be cifar10, mnist or digits, got {self.dataset!r}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        for field in ("epochs", "batch_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be an int >= 1, got {value!r}")
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"time_budget must be None or > 0, got {self.time_budget!r}")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ValueError("weight_decay and warmup_epochs must be >= 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not 0.0 <= self.dead_pixel_rate <= 1.0:
            raise ValueError(f"dead_pixel_rate must be in [0, 1], got {self.dead_pixel_rate!r}")
        if isinstance(self.dead_pixels, bool) or not isinstance(self.dead_pixels, int):
            raise ValueError(f"dead_pixels must be an int >= 1, got {self.dead_pixels!r}")
        if self.dead_pixels < 1 or self.dead_pixel_colours not in ("random", "extreme"):
            raise ValueError("dead_pixels must be >= 1 and dead_pixel_colours random or extreme")

    def model_kwargs(self, num_classes: int) -> dict[str, Any]:
        """Field overrides of the architecture's module that this config sets."""
        cls = arch_lib.ARCHITECTURES[self.model].module
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {"width": float(self.width), "num_classes": num_classes}
        if self.batch_norm is not None:
            kwargs["batch_norm"] = bool(self.batch_norm)
        if self.dropout is not None:
            if "dropout" not in fields:
                raise ValueError(f"{self.model} has no dropout to set")
            kwargs["dropout"] = float(self.dropout)
        if self.input_dropout is not None:
            if "input_dropout" not in fields:
                raise ValueError(f"{self.model} has no input_dropout to set")
            kwargs["input_dropout"] = float(self.input_dropout)
        return kwargs


class TrainState(train_state.TrainState):
    """Optimiser state plus what the steps need besides the parameters.

    ``apply_fn``, ``tx``, ``augment`` and ``label_smoothing`` are static (part of the compiled
    step); the rest are traced leaves.
    """

    batch_stats: Any = None  # BatchNorm running averages, or None without BatchNorm
    key: jax.Array | None = None  # shape=(2,), uint32: dropout/augmentation key, folded per step
    learning_rate: jax.Array | None = None  # shape=(), float32: rate of the next step
    augment: bool = struct.field(pytree_node=False, default=False)
    label_smoothing: float = struct.field(pytree_node=False, default=0.0)
    # Optional per-batch transform ``batch_fn(key, images) -> images`` after augmentation
    # (dead pixels, adversarial mixing); static: part of the compiled step.
    batch_fn: Any = struct.field(pytree_node=False, default=None)

    def variables(self) -> dict[str, Any]:
        """``{"params": ..., ["batch_stats": ...]}``: what a checkpoint stores."""
        out = {"params": self.params}
        if self.batch_stats is not None:
            out["batch_stats"] = self.batch_stats
        return out


def augment_batch(key: jax.Array, images: jax.Array, pad: int = 4) -> jax.Array:
    """Random crop of each image padded by ``pad`` zero pixels, and random horizontal flip.

    images: ``(B, H, W, C)`` float32; returns the same shape and dtype."""
    b, h, w, c = images.shape
    k_off, k_flip = jax.random.split(key)
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(k_off, (b, 2), 0, 2 * pad + 1)

    def crop(img: jax.Array, off: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))

    cropped = jax.vmap(crop)(padded, offsets)
    flip = jax.random.bernoulli(k_flip, 0.5, (b, 1, 1, 1))
    return jnp.where(flip, cropped[:, :, ::-1, :], cropped)


def learning_rate_at(config: TrainConfig, step: int, progress: float, warmup_steps: int) -> float:
    """Learning rate of the warmup + cosine schedule: linear warmup over ``warmup_steps``
    steps, times ``0.5 * (1 + cos(pi * progress))`` with ``progress`` in [0, 1] the fraction of
    the run done (in steps, or in wall-clock time with a time budget)."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    progress = min(max(progress, 0.0), 1.0)
    return float(config.learning_rate * warm * 0.5 * (1.0 + np.cos(np.pi * progress)))


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Update direction without the learning rate (the step applies ``-lr * update`` with
    ``state.learning_rate``), so the schedule can follow steps or time without recompiling."""

    def decay_mask(params: Any) -> Any:
        return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)

    if config.optimizer == "adamw":
        return optax.chain(
            optax.scale_by_adam(),
            optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
        )
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
        optax.trace(decay=config.momentum, nesterov=True),
    )


def create_train_state(
    model: nn.Module,
    variables: Mapping[str, Any],
    config: TrainConfig,
    key: jax.Array,
    *,
    augment: bool = False,
    batch_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> TrainState:
    """A fresh optimiser state for ``model`` starting from ``variables`` (its ``params`` and,
    with BatchNorm, ``batch_stats``). ``key`` seeds dropout and augmentation. ``batch_fn(key,
    images)`` (float32 ``(B, H, W, C)`` -> same), if given, transforms every training batch
    inside the step after the crop/flip augmentation (for instance dead pixels)."""
    state = TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=make_optimizer(config),
        batch_stats=variables.get("batch_stats"),
        key=key,
        learning_rate=jnp.float32(0.0),
        augment=bool(augment),
        label_smoothing=float(config.label_smoothing),
        batch_fn=batch_fn,
    )
    return state.replace(step=jnp.int32(0))  # an array from the start: one compiled step


def _apply(state: TrainState, params: Any, images: jax.Array, train: bool, key: jax.Array):
    variables = {"params": params}
    if state.batch_stats is None:
        return state.apply_fn(variables, images, train=train, rngs={"dropout": key}), None
    variables["batch_stats"] = state.batch_stats
    if not train:
        return state.apply_fn(variables, images, train=False), state.batch_stats
    logits, updates = state.apply_fn(
        variables, images, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
    )
    return logits, updates["batch_stats"]


def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step on ``batch``.

    Args:
      state: the :class:`TrainState`; its ``learning_rate`` is used for this step.
      batch: ``{"image": (B, H, W, C) pixels in [0, 255] (uint8 or float32),
        "label": (B,) int32}``.

    Returns:
      ``(new_state, metrics)``: step + 1, new params, optimiser state and (with BatchNorm)
      ``batch_stats`` updated from this batch; metrics ``loss`` (mean cross-entropy, shape
      ``()``) and ``correct`` (int32 count of top-1 hits).
    """
    key = jax.random.fold_in(state.key, state.step)
    k_aug, k_drop = jax.random.split(key)
    images = jnp.asarray(batch["image"], jnp.float32)
    labels = batch["label"]
    if state.augment:
        images = augment_batch(k_aug, images)
    if state.batch_fn is not None:
        images = state.batch_fn(jax.random.fold_in(k_aug, 1), images)

    def loss_fn(params):
        logits, new_stats = _apply(state, params, images, True, k_drop)
        targets = optax.smooth_labels(
            jax.nn.one_hot(labels, logits.shape[-1]), state.label_smoothing
        )
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        return loss, (logits, new_stats)

    (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    updates = jax.tree_util.tree_map(lambda u: -state.learning_rate * u, updates)
    state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        opt_state=opt_state,
        batch_stats=new_stats,
    )
    correct = jnp.sum(jnp.argmax(logits, -1) == labels)
    return state, {"loss": loss, "correct": correct}


def eval_step(state: TrainState, batch: Batch) -> dict[str, jax.Array]:
    """Inference-mode metrics on ``batch`` (``"image"``, ``"label"`` and optionally ``"mask"``,
    (B,) bool: which rows count). Returns ``correct`` (int32 count of top-1 hits among the
    counted rows) and ``predictions`` ((B,) int32)."""
    images = jnp.asarray(batch["image"], jnp.float32)
    logits, _ = _apply(state, state.params, images, False, jax.random.PRNGKey(0))
    predictions = jnp.argmax(logits, -1).astype(jnp.int32)
    hits = predictions == batch["label"]
    if "mask" in batch:
        hits = hits & batch["mask"]
    return {"correct": jnp.sum(hits.astype(jnp.int32)), "predictions": predictions}


# The one compilation of each step; every trainer in the package calls these.
jit_train_step = jax.jit(train_step)
jit_eval_step = jax.jit(eval_step)


def evaluate(
    state: TrainState, images: np.ndarray, labels: np.ndarray, batch_size: int = 500
) -> float:
    """Top-1 accuracy of the model in ``state`` on ``images`` (uint8 NHWC)."""
    correct = 0
    n = len(images)
    for start in range(0, n, batch_size):
        chunk = images[start : start + batch_size]
        chunk_labels = labels[start : start + batch_size]
        real = len(chunk)
        mask = np.ones(real, bool)
        if real < batch_size and n > batch_size:  # keep one compiled shape
            pad = batch_size - real
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            chunk_labels = np.concatenate([chunk_labels, np.zeros(pad, chunk_labels.dtype)])
            mask = np.concatenate([mask, np.zeros(pad, bool)])
        batch = {"image": chunk, "label": chunk_labels.astype(np.int32), "mask": mask}
        correct += int(jit_eval_step(state, batch)["correct"])
    return correct / max(n, 1)


def fit(
    state: TrainState,
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    *,
    eval_fn: Callable[[TrainState], float] | None = None,
    log: Callable[[str], None] = print,
    start_epoch: int = 0,
) -> Iterator[tuple[TrainState, dict[str, Any]]]:
    """Train for ``config.epochs`` epochs; yield ``(state, record)`` after each epoch.

    ``start_epoch`` resumes after that many finished epochs: ``state`` is the state saved
    after them, and the shuffling order continues exactly as in an uninterrupted run (the
    step-based schedule only; a time budget cannot be resumed).

    Mini-batches of ``config.batch_size`` (at most the data size) in an order drawn with
    ``numpy.random.default_rng(config.seed)``; the last partial batch of an epoch is dropped.
    The learning rate follows :func:`learning_rate_at` over the steps, or over wall-clock
    time when ``config.time_budget`` is set (training then also stops at the budget; the last
    record has ``"stopped_by_time_budget": True``). ``eval_fn(state)`` (test accuracy) goes
    into each record as ``"test_accuracy"``.
    """
    batch_size = min(config.batch_size, len(images))
    steps_per_epoch = len(images) // batch_size
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = min(int(config.warmup_epochs * steps_per_epoch), total_steps - 1)
    budget = config.time_budget
    rng = np.random.default_rng(config.seed)
    labels = np.asarray(labels, np.int32)
    if start_epoch and budget is not None:
        raise ValueError("a run with a time budget cannot be resumed")
    global_step, lr, out_of_time = start_epoch * steps_per_epoch, 0.0, False
    train_start = time.time()
    for epoch in range(1, config.epochs + 1):
        t0 = time.time()
        perm = rng.permutation(len(images))
        if epoch <= start_epoch:  # replay the order of the epochs already done
            continue
        loss_sum, correct, steps_done = 0.0, 0, 0
        for step in range(steps_per_epoch):
            if budget is None:
                progress = global_step / total_steps
            else:
                progress = (time.time() - train_start) / budget
                if progress >= 1.0 and steps_done > 0:
                    out_of_time = True
                    break
            lr = learning_rate_at(config, global_step, progress, warmup_steps)
            idx = perm[step * batch_size : (step + 1) * batch_size]
            state = state.replace(learning_rate=jnp.float32(lr))
            state, metrics = jit_train_step(state, {"image": images[idx], "label": labels[idx]})
            loss_sum += float(metrics["loss"])
            correct += int(metrics["correct"])
            if steps_done == 0 and global_step == 0:  # the budget starts after compilation
                jax.block_until_ready(state.params)
                train_start = time.time()
            global_step += 1
            steps_done += 1
        if steps_done == 0:
            return
        if budget is not None and time.time() - train_start >= budget:
            out_of_time = True
        seconds = time.time() - t0
        seen = steps_done * batch_size
        record: dict[str, Any] = {
            "epoch": epoch,
            "steps": steps_done,
            "loss": round(loss_sum / steps_done, 5),
            "train_accuracy": round(correct / seen, 5),
        }
        if eval_fn is not None:
            record["test_accuracy"] = round(eval_fn(state), 5)
        record["seconds"] = round(seconds, 2)
        record["learning_rate"] = lr
        record["stopped_by_time_budget"] = out_of_time
        test = f"  test_acc {100 * record['test_accuracy']:6.2f}%" if eval_fn else ""
        log(
            f"epoch {epoch:3d}/{config.epochs}  loss {loss_sum / steps_done:.4f}  "
            f"train_acc {100 * correct / seen:6.2f}%{test}  lr {lr:.4g}  {seconds:.1f}s"
        )
        yield state, record
        if out_of_time:
            return


SPOT_CHECK_IMAGES = 300
# The optimiser state of an unfinished run (params, momentum, batch statistics, step), written
# after every epoch beside the checkpoint so that `resume` continues where the run stopped;
# removed when the run completes. Its SHA-256 is in the card.
TRAIN_STATE_FILE = "train_state.msgpack"


def _save_train_state(path: Path, state: TrainState) -> str:
    data = serialization.msgpack_serialize(
        jax.tree_util.tree_map(
            np.asarray,
            {
                "step": state.step,
                "params": state.params,
                "opt_state": serialization.to_state_dict(state.opt_state),
                "batch_stats": state.batch_stats if state.batch_stats is not None else {},
            },
        )
    )
    write_bytes_atomic(path, data)
    return ckpt_lib.sha256_bytes(data)


def _load_train_state(path: Path, state: TrainState, sha256: str) -> TrainState:
    data = path.read_bytes()
    if ckpt_lib.sha256_bytes(data) != sha256:
        raise ValueError(
            f"{path} does not match the SHA-256 in its card; delete the folder to start over"
        )
    raw = serialization.msgpack_restore(data)
    params = serialization.from_state_dict(state.params, raw["params"])
    opt_state = serialization.from_state_dict(state.opt_state, raw["opt_state"])
    stats = state.batch_stats
    if stats is not None:
        stats = serialization.from_state_dict(stats, raw["batch_stats"])
    return state.replace(
        step=jnp.int32(int(raw["step"])), params=params, opt_state=opt_state, batch_stats=stats
    )


def _resume_point(workdir: Path, config: TrainConfig) -> tuple[int, dict | None]:
    """``(epochs_done, card)`` of an unfinished run of the same config in ``workdir``, else
    ``(0, None)``. Raises ValueError for a folder that holds another or a finished run."""
    card_path = workdir / ckpt_lib.CARD_FILE
    if not card_path.is_file():
        return 0, None
    card = read_json_object(card_path, "model card")
    status = str(card.get("status", ""))
    if status == "complete":
        raise ValueError(f"{workdir} holds a finished run; pick another output folder")
    if not status.startswith("epoch ") or not (workdir / TRAIN_STATE_FILE).is_file():
        raise ValueError(f"{workdir} holds no resumable run (no {TRAIN_STATE_FILE})")
    saved = dict(card.get("config") or {})
    mine = dataclasses.asdict(config)
    ignore = {"command", "data_dir"}
    diff = sorted(k for k in mine if k not in ignore and saved.get(k) != mine[k])
    if diff:
        raise ValueError(
            f"{workdir} holds a run with other settings ({', '.join(diff)}); resume it with the "
            "same arguments or pick another output folder"
        )
    return int(status.split()[1].split("/")[0]), card


def spot_check(predict_fn, dataset: str, *, data_dir=None, n: int = SPOT_CHECK_IMAGES) -> dict:
    """Accuracy of ``predict_fn`` on the first ``n`` test images, as stored in model cards
    (``card["spot_check"]``) so that a test can re-measure it exactly."""
    x, y, _ = opj_data.load(dataset, "test", data_dir=data_dir, limit=n)
    probs = jax.jit(predict_fn)(jnp.asarray(x, jnp.float32))
    acc = float(np.mean(np.asarray(jnp.argmax(probs, -1)) == y))
    return {"split": "test", "images": len(x), "accuracy": round(acc, 5)}


def _machine() -> dict[str, Any]:
    return {**machine_info(), **package_versions(("jax", "jaxlib", "flax", "optax"))}


def train_and_evaluate(
    config: TrainConfig, workdir: str | os.PathLike, *, log=print, resume: bool = False
) -> dict:
    """Train ``config.model`` on ``config.dataset``; write checkpoint and card to ``workdir``.

    ``resume=True`` continues an interrupted run of the same config in ``workdir`` after its
    last finished epoch (exactly as if it had not stopped, up to float rounding of the
    restored state); a folder without one starts afresh.

    One process writes ``workdir`` at a time: a second writer is refused with
    ``RunFolderBusyError`` (:class:`~onepixel_jax.experiments.lock.RunFolderLock`).

    Returns the model card (a dict, also written to ``workdir/card.json``)."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    from onepixel_jax.experiments.lock import RunFolderLock  # the experiments layer imports zoo

    with RunFolderLock(workdir):
        return _train_and_evaluate(config, Path(workdir), log=log, resume=resume)


def _train_and_evaluate(config: TrainConfig, workdir: Path, *, log, resume: bool) -> dict:
    start_epoch, old_card = _resume_point(workdir, config) if resume else (0, None)
    if resume and start_epoch and config.time_budget is not None:
        raise ValueError("a run with a time budget cannot be resumed")
    workdir.mkdir(parents=True, exist_ok=True)
    start_time = time.time()
    previous_seconds = float(old_card.get("training_time_seconds", 0.0)) if old_card else 0.0

    load_kwargs = {"data_dir": config.data_dir, "download": config.download}
    x_train, y_train, classes = opj_data.load(
        config.dataset, "train", limit=config.train_limit, **load_kwargs
    )
    x_test, y_test, _ = opj_data.load(
        config.dataset, "test", limit=config.eval_limit, **load_kwargs
    )
    num_classes = len(classes)
    arch = arch_lib.ARCHITECTURES[config.model]
    if tuple(x_train.shape[1:]) != arch.input_shape:
        raise ValueError(
            f"model {config.model!r} takes {arch.input_shape} inputs but {config.dataset!r} "
            f"images are {x_train.shape[1:]}"
        )
    augment = config.dataset == "cifar10" if config.augment is None else bool(config.augment)
    model_kwargs = config.model_kwargs(num_classes)
    model = arch_lib.create(config.model, **model_kwargs)
    key = jax.random.PRNGKey(config.seed)
    key, k_init = jax.random.split(key)
    variables = arch_lib.init_variables(model, arch.input_shape, k_init)
    n_params = arch_lib.param_count(variables["params"])
    batch_fn = None
    if config.dead_pixel_rate > 0:
        from onepixel_jax.defences import dead_pixels as dead_lib

        batch_fn = dead_lib.augmentation(
            config.dead_pixel_rate, config.dead_pixels, config.dead_pixel_colours
        )
    state = create_train_state(model, variables, config, key, augment=augment, batch_fn=batch_fn)
    if start_epoch:
        state = _load_train_state(
            workdir / TRAIN_STATE_FILE, state, str(old_card.get("train_state_sha256"))
        )
        log(f"[train] resuming after epoch {start_epoch} (step {int(state.step)})")
    steps_per_epoch = len(x_train) // min(config.batch_size, len(x_train))
    name = config.name or workdir.name
    log(
        f"[train] {name}: {config.model} width {config.width} on {config.dataset} "
        f"({len(x_train)} train / {len(x_test)} test images), {n_params:,} parameters, "
        f"{config.epochs} epochs x {steps_per_epoch} steps"
    )

    card: dict[str, Any] = {
        "name": name,
        "architecture": config.model,
        "model_kwargs": model_kwargs,
        "input_shape": list(arch.input_shape),
        "num_classes": num_classes,
        "class_names": classes,
        "parameter_count": n_params,
        "dataset": config.dataset,
        "train_images": len(x_train),
        "config": dataclasses.asdict(config),
        "augmentation": "random crop (4 px zero padding) + horizontal flip" if augment else None,
        "dead_pixels": (
            {
                "rate": config.dead_pixel_rate,
                "pixels": config.dead_pixels,
                "colours": config.dead_pixel_colours,
            }
            if config.dead_pixel_rate > 0
            else None
        ),
        "command": config.command,
        "seed": config.seed,
        "machine": _machine(),
        "data_sha256": opj_data.dataset_checksums(config.dataset, ["train", "test"]),
        "checkpoint_file": ckpt_lib.CHECKPOINT_FILE,
    }
    history: list[dict[str, Any]] = list(old_card.get("history", [])) if old_card else []
    test_acc = 0.0
    epochs = fit(
        state,
        x_train,
        y_train,
        config,
        eval_fn=lambda s: evaluate(s, x_test, y_test),
        log=log,
        start_epoch=start_epoch,
    )
    for state, record in epochs:
        stopped = record.pop("stopped_by_time_budget")
        record.pop("learning_rate")
        history.append(record)
        test_acc = record["test_accuracy"]
        final = record["epoch"] == config.epochs or stopped
        extra_acc = {}
        if final and config.dataset == "cifar10" and config.eval_limit is None:
            x_j, y_j, _ = opj_data.load("cifar10", "test-jpeg", data_dir=config.data_dir)
            extra_acc["test-jpeg"] = round(evaluate(state, x_j, y_j), 5)
            card["data_sha256"] = opj_data.dataset_checksums(
                "cifar10", ["train", "test", "test-jpeg"]
            )
            log(
                "[train] accuracy on the lossy JPEG test set (10,000): "
                f"{100 * extra_acc['test-jpeg']:.2f}%"
            )
        ckpt_path = workdir / ckpt_lib.CHECKPOINT_FILE
        digest = ckpt_lib.save_checkpoint(ckpt_path, state.variables())
        state_path = workdir / TRAIN_STATE_FILE
        if final:
            card.pop("train_state_sha256", None)
        else:
            card["train_state_sha256"] = _save_train_state(state_path, state)
        test_split = "test" if config.dataset != "cifar10" else "test (lossless test_first1000)"
        card.update(
            {
                "status": "complete" if final else f"epoch {record['epoch']}/{config.epochs}",
                "epochs_done": round(int(state.step) / steps_per_epoch, 3),
                "steps_done": int(state.step),
                "stopped_by_time_budget": stopped,
                "test_accuracy": test_acc,
                "test_split": test_split,
                "test_images": len(x_test),
                "other_accuracies": extra_acc,
                "history": history,
                "training_time_seconds": round(previous_seconds + time.time() - start_time, 1),
                "mean_epoch_seconds": round(float(np.mean([h["seconds"] for h in history])), 2),
                "created_utc": utc_now(),
                "checkpoint_sha256": digest,
                "checkpoint_bytes": ckpt_path.stat().st_size,
            }
        )
        ckpt_lib.write_card(workdir, card)
        if final:
            state_path.unlink(missing_ok=True)
            predict_fn, _ = ckpt_lib.load(workdir)
            card["spot_check"] = spot_check(predict_fn, config.dataset, data_dir=config.data_dir)
            ckpt_lib.write_card(workdir, card)
            break
    log(
        f"[train] done in {card.get('training_time_seconds', 0.0):.0f}s: test accuracy "
        f"{100 * test_acc:.2f}% -> {workdir}"
    )
    return card
