"""Training of the target networks with optax (behind the ``onepixel train`` command).

:func:`train_and_evaluate` trains one model on one dataset, evaluates it on the test split
after every epoch, and writes ``params.msgpack`` (``flax.serialization`` msgpack of the
variables) and ``card.json`` (the model card read by :func:`onepixel_jax.models.load`) into
``workdir``. The checkpoint and card are rewritten after every epoch (card ``"status"``
``"epoch k/n"``), so an interrupted run still leaves a usable model; ``"complete"`` at the end.

Optimiser: SGD with Nesterov momentum (or AdamW) on a linear-warmup + cosine learning-rate
schedule, decoupled weight decay on kernels only (not on biases or BatchNorm scales).
CIFAR-10 augmentation runs inside the jitted step: random 32x32 crop of the image padded by
4 zero pixels, and a random horizontal flip.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from . import data as opj_data
from . import models as opj_models

__all__ = ["TrainConfig", "augment_batch", "train_and_evaluate"]


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

    def __post_init__(self) -> None:
        if self.model not in opj_models.ARCHITECTURES:
            raise ValueError(
                f"model must be one of {sorted(opj_models.ARCHITECTURES)}, got {self.model!r}"
            )
        if self.dataset not in ("cifar10", "mnist", "digits"):
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


class TrainState(train_state.TrainState):
    batch_stats: Any = None


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


def _model_kwargs(config: TrainConfig, num_classes: int) -> dict:
    cls = opj_models.ARCHITECTURES[config.model].module
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {"width": float(config.width), "num_classes": num_classes}
    if config.batch_norm is not None:
        kwargs["batch_norm"] = bool(config.batch_norm)
    if config.dropout is not None:
        if "dropout" not in fields:
            raise ValueError(f"{config.model} has no dropout to set")
        kwargs["dropout"] = float(config.dropout)
    if config.input_dropout is not None:
        if "input_dropout" not in fields:
            raise ValueError(f"{config.model} has no input_dropout to set")
        kwargs["input_dropout"] = float(config.input_dropout)
    return kwargs


def learning_rate_at(config: TrainConfig, step: int, progress: float, warmup_steps: int) -> float:
    """Learning rate of the warmup + cosine schedule: linear warmup over ``warmup_steps``
    steps, times ``0.5 * (1 + cos(pi * progress))`` with ``progress`` in [0, 1] the fraction of
    the run done (in steps, or in wall-clock time with a time budget)."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    progress = min(max(progress, 0.0), 1.0)
    return float(config.learning_rate * warm * 0.5 * (1.0 + np.cos(np.pi * progress)))


def _make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Update direction without the learning rate (applied by the step as ``-lr * update``),
    so the schedule can follow steps or wall-clock time without recompiling."""

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


def _make_steps(model: Any, augment: bool, label_smoothing: float, num_classes: int):
    def loss_fn(params, batch_stats, images, labels, key):
        k_aug, k_drop = jax.random.split(key)
        x = images.astype(jnp.float32)
        if augment:
            x = augment_batch(k_aug, x)
        variables = {"params": params}
        if batch_stats is not None:
            variables["batch_stats"] = batch_stats
            logits, updates = model.apply(
                variables, x, train=True, rngs={"dropout": k_drop}, mutable=["batch_stats"]
            )
            new_stats = updates["batch_stats"]
        else:
            logits = model.apply(variables, x, train=True, rngs={"dropout": k_drop})
            new_stats = None
        targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        return loss, (logits, new_stats)

    @jax.jit
    def train_step(state: TrainState, x_all, y_all, idx, key, lr):
        images, labels = x_all[idx], y_all[idx]
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (logits, new_stats)), grads = grad_fn(
            state.params, state.batch_stats, images, labels, key
        )
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        updates = jax.tree_util.tree_map(lambda u: -lr * u, updates)
        state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
            batch_stats=new_stats,
        )
        correct = jnp.sum(jnp.argmax(logits, -1) == labels)
        return state, {"loss": loss, "correct": correct}

    @jax.jit
    def logits_step(params, batch_stats, images):
        variables = {"params": params}
        if batch_stats is not None:
            variables["batch_stats"] = batch_stats
        return model.apply(variables, images.astype(jnp.float32), train=False)

    return train_step, logits_step


def evaluate(
    logits_step, state: TrainState, images: np.ndarray, labels: np.ndarray, batch_size: int = 500
) -> float:
    """Top-1 accuracy of the model in ``state`` on ``images`` (uint8 NHWC)."""
    correct = 0
    n = len(images)
    for start in range(0, n, batch_size):
        chunk = images[start : start + batch_size]
        real = len(chunk)
        if real < batch_size and n > batch_size:  # keep one compiled shape
            chunk = np.concatenate(
                [chunk, np.zeros((batch_size - real, *chunk.shape[1:]), chunk.dtype)]
            )
        logits = logits_step(state.params, state.batch_stats, jnp.asarray(chunk))
        pred = np.asarray(jnp.argmax(logits, -1))[:real]
        correct += int(np.sum(pred == labels[start : start + real]))
    return correct / max(n, 1)


SPOT_CHECK_IMAGES = 300


def spot_check(predict_fn, dataset: str, *, data_dir=None, n: int = SPOT_CHECK_IMAGES) -> dict:
    """Accuracy of ``predict_fn`` on the first ``n`` test images, as stored in model cards
    (``card["spot_check"]``) so that a test can re-measure it exactly."""
    x, y, _ = opj_data.load(dataset, "test", data_dir=data_dir, limit=n)
    probs = jax.jit(predict_fn)(jnp.asarray(x, jnp.float32))
    acc = float(np.mean(np.asarray(jnp.argmax(probs, -1)) == y))
    return {"split": "test", "images": len(x), "accuracy": round(acc, 5)}


def _machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
    }


def _data_checksums(dataset: str, splits: list[str]) -> dict:
    if dataset == "digits":
        import sklearn

        return {"source": f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})"}
    prefix = {"cifar10": "cifar10/", "mnist": "mnist/"}[dataset]
    wanted = {
        "cifar10": {
            "train": [f"train_{i}.npz" for i in range(1, 6)],
            "test": ["test_first1000.npz"],
            "test-jpeg": ["test_jpeg_q75_lossy.tar"],
        },
        "mnist": {
            "train": ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"],
            "test": ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"],
        },
    }[dataset]
    out = {}
    for split in splits:
        for f in wanted.get(split, []):
            out[prefix + f] = opj_data.KNOWN_SHA256.get(prefix + f)
    return out


def _write_card(workdir: Path, card: dict) -> None:
    (workdir / opj_models.CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")


def train_and_evaluate(config: TrainConfig, workdir: str | os.PathLike, *, log=print) -> dict:
    """Train ``config.model`` on ``config.dataset``; write checkpoint and card to ``workdir``.

    Returns the model card (a dict, also written to ``workdir/card.json``)."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start_time = time.time()

    x_train, y_train, classes = opj_data.load(
        config.dataset, "train", data_dir=config.data_dir, limit=config.train_limit
    )
    x_test, y_test, _ = opj_data.load(
        config.dataset, "test", data_dir=config.data_dir, limit=config.eval_limit
    )
    num_classes = len(classes)
    arch = opj_models.ARCHITECTURES[config.model]
    if tuple(x_train.shape[1:]) != arch.input_shape:
        raise ValueError(
            f"model {config.model!r} takes {arch.input_shape} inputs but {config.dataset!r} "
            f"images are {x_train.shape[1:]}"
        )
    augment = config.dataset == "cifar10" if config.augment is None else bool(config.augment)
    model_kwargs = _model_kwargs(config, num_classes)
    model = opj_models.create(config.model, **model_kwargs)
    key = jax.random.PRNGKey(config.seed)
    key, k_init = jax.random.split(key)
    variables = opj_models.init_variables(model, arch.input_shape, k_init)
    n_params = opj_models.param_count(variables["params"])

    batch_size = min(config.batch_size, len(x_train))
    steps_per_epoch = len(x_train) // batch_size
    tx = _make_optimizer(config)
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = min(int(config.warmup_epochs * steps_per_epoch), total_steps - 1)
    budget = config.time_budget
    state = TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=tx,
        batch_stats=variables.get("batch_stats"),
    )
    train_step, logits_step = _make_steps(model, augment, config.label_smoothing, num_classes)
    x_dev, y_dev = jnp.asarray(x_train), jnp.asarray(y_train)
    rng = np.random.default_rng(config.seed)
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
        "command": config.command,
        "seed": config.seed,
        "machine": _machine(),
        "data_sha256": _data_checksums(config.dataset, ["train", "test"]),
        "checkpoint_file": opj_models.CHECKPOINT_FILE,
    }
    history = []
    epoch_times = []
    test_acc = 0.0
    global_step, lr, out_of_time = 0, 0.0, False
    train_start = time.time()
    for epoch in range(1, config.epochs + 1):
        t0 = time.time()
        perm = rng.permutation(len(x_train))
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
            idx = jnp.asarray(perm[step * batch_size : (step + 1) * batch_size])
            key, k_step = jax.random.split(key)
            state, metrics = train_step(state, x_dev, y_dev, idx, k_step, jnp.float32(lr))
            loss_sum += float(metrics["loss"])
            correct += int(metrics["correct"])
            if global_step == 0:  # the budget starts after the first step (compilation)
                jax.block_until_ready(state.params)
                train_start = time.time()
            global_step += 1
            steps_done += 1
        if steps_done == 0:
            break
        if budget is not None and time.time() - train_start >= budget:
            out_of_time = True
        train_time = time.time() - t0
        epoch_times.append(train_time)
        seen = steps_done * batch_size
        test_acc = evaluate(logits_step, state, x_test, y_test)
        history.append(
            {
                "epoch": epoch,
                "steps": steps_done,
                "loss": round(loss_sum / steps_done, 5),
                "train_accuracy": round(correct / seen, 5),
                "test_accuracy": round(test_acc, 5),
                "seconds": round(train_time, 2),
            }
        )
        log(
            f"epoch {epoch:3d}/{config.epochs}  loss {loss_sum / steps_done:.4f}  "
            f"train_acc {100 * correct / seen:6.2f}%  test_acc {100 * test_acc:6.2f}%  "
            f"lr {lr:.4g}  {train_time:.1f}s",
        )
        sys.stdout.flush()
        final = epoch == config.epochs or out_of_time
        extra_acc = {}
        if final and config.dataset == "cifar10" and config.eval_limit is None:
            x_j, y_j, _ = opj_data.load("cifar10", "test-jpeg", data_dir=config.data_dir)
            extra_acc["test-jpeg"] = round(evaluate(logits_step, state, x_j, y_j), 5)
            card["data_sha256"] = _data_checksums("cifar10", ["train", "test", "test-jpeg"])
            log(
                "[train] accuracy on the lossy JPEG test set (10,000): "
                f"{100 * extra_acc['test-jpeg']:.2f}%"
            )
        ckpt_vars = {"params": state.params}
        if state.batch_stats is not None:
            ckpt_vars["batch_stats"] = state.batch_stats
        digest = opj_models.save_checkpoint(workdir / opj_models.CHECKPOINT_FILE, ckpt_vars)
        test_split = "test" if config.dataset != "cifar10" else "test (lossless test_first1000)"
        card.update(
            {
                "status": "complete" if final else f"epoch {epoch}/{config.epochs}",
                "epochs_done": round(global_step / steps_per_epoch, 3),
                "steps_done": global_step,
                "stopped_by_time_budget": out_of_time,
                "test_accuracy": round(test_acc, 5),
                "test_split": test_split,
                "test_images": len(x_test),
                "other_accuracies": extra_acc,
                "history": history,
                "training_time_seconds": round(time.time() - start_time, 1),
                "mean_epoch_seconds": round(float(np.mean(epoch_times)), 2),
                "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "checkpoint_sha256": digest,
                "checkpoint_bytes": (workdir / opj_models.CHECKPOINT_FILE).stat().st_size,
            }
        )
        _write_card(workdir, card)
        if final:
            predict_fn, _ = opj_models.load(workdir)
            card["spot_check"] = spot_check(predict_fn, config.dataset, data_dir=config.data_dir)
            _write_card(workdir, card)
            break
    log(
        f"[train] done in {card['training_time_seconds']:.0f}s: test accuracy "
        f"{100 * test_acc:.2f}% -> {workdir}"
    )
    return card
