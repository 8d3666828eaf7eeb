"""One-pixel adversarial training (and dead-pixel fine-tuning) on the zoo's training steps.

Each epoch of :func:`adversarial_fine_tune`:

1. draw ``attack_images`` training images and attack them with the project's engine
   (:func:`onepixel_jax.attack`, batched over the images; a cheap strategy at a small budget,
   :attr:`AdversarialTrainingConfig.attack`) against the network as it is now; the best
   candidate of every image (successful or not: the worst case the search found) becomes a
   training example with the image's true label;
2. cycle the adversarial examples to ``adversarial_share`` of the clean training images,
   shuffle them into the clean set, and train one epoch with
   :func:`onepixel_jax.zoo.training.fit` (the zoo's jitted ``train_step``; BatchNorm
   statistics trained; optional dead-pixel augmentation of every batch via ``batch_fn``);
3. record the attack's success rate on those images, the seconds spent attacking and
   training (the cost per epoch), and the clean test accuracy.

With ``attack_images = 0`` it is plain fine-tuning, with dead pixels when
``dead_pixel_rate > 0``: the cheap way to give a committed checkpoint the dead-pixel defence.
The network starts from a checkpoint (fine-tuning: the scaled-down protocol; training from
scratch with dead pixels is ``onepixel train --dead-pixel-rate``). The result is a checkpoint
folder with its card (``"defence"`` says how it was trained), loadable by name once under
``onepixel_jax/zoo/weights/``.

Command line: ``onepixel defend fine-tune --model lenet-mnist --out DIR``
(``python -m onepixel_jax.defences.adversarial_training`` runs the same command).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from onepixel_jax import data as opj_data
from onepixel_jax.config import AttackConfig
from onepixel_jax.experiments.lock import RunFolderLock
from onepixel_jax.files import append_jsonl
from onepixel_jax.provenance import machine_info, package_versions, utc_now
from onepixel_jax.runner import attack
from onepixel_jax.zoo import architectures as arch_lib
from onepixel_jax.zoo import checkpoints as ckpt_lib
from onepixel_jax.zoo import training

from . import dead_pixels as dead_lib

__all__ = ["AdversarialTrainingConfig", "adversarial_examples", "adversarial_fine_tune"]

EPOCHS_FILE = "epochs.jsonl"


@dataclasses.dataclass(frozen=True)
class AdversarialTrainingConfig:
    """Settings of adversarial (and/or dead-pixel) fine-tuning.

    Attributes:
      model: the starting checkpoint (committed name or folder).
      epochs: epochs of fine-tuning; each makes fresh adversarial examples first.
      attack_images: training images attacked per epoch (0: no adversarial examples).
      adversarial_share: adversarial examples per clean training image in an epoch (the
        examples are cycled to this share).
      attack: the engine's settings for making them (default: 1 pixel, corner scan, 128
        candidates x 4 generations = 640 evaluations per image, stop at success).
      dead_pixel_rate, dead_pixels, dead_pixel_colours: dead-pixel augmentation of every
        training batch (:mod:`onepixel_jax.defences.dead_pixels`; rate 0: off).
      batch_size, learning_rate, warmup_epochs, weight_decay: the zoo's optimiser settings.
      train_limit, eval_limit: use only the first images of the train / test split.
      seed: seeds the choice of attacked images, the attack, shuffling and augmentation.
    """

    model: str
    epochs: int = 2
    attack_images: int = 500
    adversarial_share: float = 0.1
    attack: AttackConfig = dataclasses.field(
        default_factory=lambda: AttackConfig(
            pixels=1, strategy="corner-scan", popsize=128, max_iters=4, early_stop="success"
        )
    )
    dead_pixel_rate: float = 0.0
    dead_pixels: int = 1
    dead_pixel_colours: str = "random"
    batch_size: int = 128
    learning_rate: float = 0.01
    warmup_epochs: float = 0.0
    weight_decay: float = 5e-4
    train_limit: int | None = None
    eval_limit: int | None = None
    data_dir: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs",):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(self.attack_images, bool) or not isinstance(self.attack_images, int):
            raise ValueError(f"attack_images must be an int >= 0, got {self.attack_images!r}")
        if self.attack_images < 0 or not 0.0 <= self.adversarial_share <= 1.0:
            raise ValueError("attack_images must be >= 0 and adversarial_share in [0, 1]")
        if not isinstance(self.attack, AttackConfig) or self.attack.targeted:
            raise ValueError("attack must be an untargeted AttackConfig")
        if self.dead_pixel_rate > 0:
            dead_lib.augmentation(self.dead_pixel_rate, self.dead_pixels, self.dead_pixel_colours)

    def train_config(self, card: ckpt_lib.ModelCard, epoch: int) -> training.TrainConfig:
        """The ``TrainConfig`` of one epoch (one-epoch cosine schedule per epoch)."""
        return training.TrainConfig(
            model=card.architecture,
            dataset=card.dataset,
            width=float(card.model_kwargs.get("width", 1.0)),
            epochs=1,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate / epoch,
            warmup_epochs=self.warmup_epochs,
            weight_decay=self.weight_decay,
            seed=self.seed + epoch,
            data_dir=self.data_dir,
        )


def adversarial_examples(
    key: jax.Array,
    predict_fn: Callable[[jax.Array], jax.Array],
    images: np.ndarray,
    labels: np.ndarray,
    config: AttackConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """``(adversarial uint8 (N, H, W, C), success (N,) bool)``: the engine's best candidate
    for every image (untargeted), batched over the images."""
    res = attack(key, predict_fn, images, labels, config, progress=False)
    return np.asarray(res.adversarial, np.uint8), np.asarray(res.success, bool)


def adversarial_fine_tune(
    config: AdversarialTrainingConfig,
    workdir: str | Path,
    *,
    name: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fine-tune ``config.model`` with one-pixel adversarial examples and/or dead pixels.

    Writes ``params.msgpack`` and ``card.json`` into ``workdir`` after every epoch (card
    ``"status"``: ``"epoch k/n"``, then ``"complete"``) and one record per epoch to
    ``epochs.jsonl``: ``attack_success`` (share of the attacked training images the engine
    fooled, against the network before the epoch), ``attack_seconds``, ``train_seconds``,
    ``adversarial_examples``, ``test_accuracy``. Returns the card. One process writes
    ``workdir`` at a time (a second writer is refused with ``RunFolderBusyError``).
    """
    if not isinstance(config, AdversarialTrainingConfig):
        raise TypeError(f"config must be an AdversarialTrainingConfig, got {type(config).__name__}")
    with RunFolderLock(workdir):
        return _adversarial_fine_tune(config, Path(workdir), name=name, log=log)


def _adversarial_fine_tune(config, workdir: Path, *, name, log) -> dict[str, Any]:
    variables, card = ckpt_lib.load_variables(config.model)
    x_train, y_train, _ = opj_data.load(
        card.dataset, "train", limit=config.train_limit, data_dir=config.data_dir
    )
    x_test, y_test, _ = opj_data.load(
        card.dataset, "test", limit=config.eval_limit, data_dir=config.data_dir
    )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / EPOCHS_FILE).unlink(missing_ok=True)
    model = ckpt_lib.model_from_card(card)
    augment = card.get("augmentation") is not None
    batch_fn = None
    if config.dead_pixel_rate > 0:
        batch_fn = dead_lib.augmentation(
            config.dead_pixel_rate, config.dead_pixels, config.dead_pixel_colours
        )
    name = name or workdir.name
    rng = np.random.default_rng(config.seed)
    current = dict(variables)
    history: list[dict[str, Any]] = []
    start = time.time()
    out_card: dict[str, Any] = {}
    for epoch in range(1, config.epochs + 1):
        record: dict[str, Any] = {"epoch": epoch}
        xs, ys = x_train, np.asarray(y_train, np.int32)
        if config.attack_images > 0:
            t0 = time.perf_counter()
            idx = rng.choice(
                len(x_train), size=min(config.attack_images, len(x_train)), replace=False
            )
            predict_fn = ckpt_lib.make_predict_fn(model, current, card.input_shape)
            adv, success = adversarial_examples(
                jax.random.key(config.seed * 1000 + epoch),
                predict_fn,
                x_train[idx],
                y_train[idx],
                config.attack,
            )
            record["attack_seconds"] = round(time.perf_counter() - t0, 1)
            record["attacked_images"] = len(idx)
            record["attack_success"] = round(float(success.mean()), 5)
            n_adv = max(1, int(round(config.adversarial_share * len(x_train))))
            reps = np.resize(np.arange(len(adv)), n_adv)
            xs = np.concatenate([x_train, adv[reps]])
            ys = np.concatenate([ys, np.asarray(y_train[idx], np.int32)[reps]])
            record["adversarial_examples"] = n_adv
            log(
                f"[adv-train] epoch {epoch}: attacked {len(idx)} training images in "
                f"{record['attack_seconds']:.0f}s, success {100 * success.mean():.1f}%"
            )
        t0 = time.perf_counter()
        train_config = config.train_config(card, epoch)
        state = training.create_train_state(
            model,
            current,
            train_config,
            jax.random.PRNGKey(config.seed + epoch),
            augment=augment,
            batch_fn=batch_fn,
        )
        for trained, epoch_record in training.fit(state, xs, ys, train_config, log=log):
            state = trained
            record["loss"] = epoch_record["loss"]
        current = state.variables()
        record["train_seconds"] = round(time.perf_counter() - t0, 1)
        record["test_accuracy"] = round(training.evaluate(state, x_test, y_test), 5)
        history.append(record)
        append_jsonl(workdir / EPOCHS_FILE, [record])
        digest = ckpt_lib.save_checkpoint(workdir / ckpt_lib.CHECKPOINT_FILE, current)
        final = epoch == config.epochs
        kinds = []
        if config.attack_images > 0:
            kinds.append("one-pixel adversarial training")
        if config.dead_pixel_rate > 0:
            kinds.append("dead-pixel augmentation")
        out_card = {
            **card.to_dict(),
            "name": name,
            "status": "complete" if final else f"epoch {epoch}/{config.epochs}",
            "test_accuracy": record["test_accuracy"],
            "test_split": f"{card.dataset} test, first {len(x_test)} images",
            "test_images": len(x_test),
            "other_accuracies": {},
            "defence": {
                "kind": " + ".join(kinds) or "fine-tuning",
                "base_model": card.name,
                "base_checkpoint_sha256": card.checkpoint_sha256,
                "base_test_accuracy": card.test_accuracy,
                "protocol": (
                    f"fine-tuned from {card.name} for {epoch} epoch(s) on "
                    f"{len(x_train)} training images"
                ),
                "config": _config_dict(config),
                "epochs": history,
            },
            "dead_pixels": (
                {
                    "rate": config.dead_pixel_rate,
                    "pixels": config.dead_pixels,
                    "colours": config.dead_pixel_colours,
                }
                if config.dead_pixel_rate > 0
                else None
            ),
            "config": dataclasses.asdict(train_config),
            "command": None,
            "history": history,
            "training_time_seconds": round(time.time() - start, 1),
            "machine": {**machine_info(), **package_versions(("jax", "flax", "optax"))},
            "created_utc": utc_now(),
            "checkpoint_sha256": digest,
            "checkpoint_bytes": (workdir / ckpt_lib.CHECKPOINT_FILE).stat().st_size,
            "parameter_count": arch_lib.param_count(current["params"]),
        }
        out_card.pop("spot_check", None)
        ckpt_lib.write_card(workdir, out_card)
        log(f"[adv-train] epoch {epoch}: clean test accuracy {100 * record['test_accuracy']:.2f}%")
    predict_fn, _ = ckpt_lib.load(workdir)
    out_card["spot_check"] = training.spot_check(predict_fn, card.dataset, data_dir=config.data_dir)
    ckpt_lib.write_card(workdir, out_card)
    return out_card


def _config_dict(config: AdversarialTrainingConfig) -> dict[str, Any]:
    out = dataclasses.asdict(config)
    out["attack"] = {
        k: v for k, v in dataclasses.asdict(config.attack).items() if not isinstance(v, tuple)
    }
    return out


if __name__ == "__main__":  # the old script name: onepixel defend fine-tune
    import sys

    from onepixel_jax.cli import main

    sys.exit(main(["defend", "fine-tune", *sys.argv[1:]]))
