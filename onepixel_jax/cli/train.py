"""onepixel train: train a target network and write a checkpoint with its model card.

Argument parsing only; the training is onepixel_jax.zoo.training.train_and_evaluate. It writes
OUT/params.msgpack and OUT/card.json; list the committed checkpoints with onepixel models.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys

import numpy as np

from onepixel_jax import models as opj_models
from onepixel_jax.cli import errors
from onepixel_jax.errors import UsageError
from onepixel_jax.zoo.training import TrainConfig, train_and_evaluate


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser(
        "train",
        help="train a target network and write a checkpoint + model card",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = TrainConfig()
    p.add_argument("--model", default=d.model, choices=sorted(opj_models.ARCHITECTURES))
    p.add_argument("--dataset", default=d.dataset, choices=["cifar10", "mnist", "digits"])
    p.add_argument("--width", type=errors.finite_float, default=d.width)
    p.add_argument("--epochs", type=errors.int_at_least(1), default=d.epochs)
    p.add_argument("--batch-size", type=errors.int_at_least(1), default=d.batch_size)
    p.add_argument(
        "--lr", type=errors.finite_float, default=d.learning_rate, help="peak learning rate"
    )
    p.add_argument("--warmup-epochs", type=errors.finite_float, default=d.warmup_epochs)
    p.add_argument("--optimizer", default=d.optimizer, choices=["sgd", "adamw"])
    p.add_argument("--weight-decay", type=errors.finite_float, default=d.weight_decay)
    p.add_argument("--batch-norm", dest="batch_norm", action="store_true", default=None)
    p.add_argument("--no-batch-norm", dest="batch_norm", action="store_false")
    p.add_argument("--dropout", type=_rate, default=None, help="in [0, 1)")
    p.add_argument("--input-dropout", type=_rate, default=None, help="in [0, 1)")
    p.add_argument(
        "--time-budget",
        type=errors.finite_float,
        default=None,
        help="wall-clock seconds for training; the cosine schedule follows time and ends there",
    )
    p.add_argument("--augment", dest="augment", action="store_true", default=None)
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--label-smoothing", type=errors.finite_float, default=d.label_smoothing)
    p.add_argument(
        "--dead-pixel-rate",
        type=errors.finite_float,
        default=d.dead_pixel_rate,
        help="share of training images given dead pixels (defence; 0 = off)",
    )
    p.add_argument(
        "--dead-pixels", type=errors.int_at_least(1), default=d.dead_pixels, help="pixels d"
    )
    p.add_argument(
        "--dead-pixel-colours", default=d.dead_pixel_colours, choices=["random", "extreme"]
    )
    p.add_argument("--seed", type=errors.seed, default=d.seed, help="random seed in [0, 2**32)")
    p.add_argument("--train-limit", type=errors.int_at_least(1), default=None)
    p.add_argument("--eval-limit", type=errors.int_at_least(1), default=None)
    p.add_argument("--data-dir", type=errors.non_empty, default=None)
    p.add_argument(
        "--out",
        required=True,
        type=errors.non_empty,
        help="output folder, e.g. models/allconv-cifar10",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out after its last finished epoch (same arguments)",
    )
    p.set_defaults(func=errors.command("onepixel train", _run_cli))


def _check_model_size(config: TrainConfig, image_shape: tuple[int, int, int]) -> None:
    """Refuse a network whose parameters, gradients and optimiser state (counted from the
    shapes alone, nothing allocated) and one batch of images exceed the available memory."""
    import jax

    from onepixel_jax.experiments.limits import MEMORY_SHARE, available_memory, human_bytes
    from onepixel_jax.zoo import architectures

    have = available_memory()
    if have is None:
        return
    try:
        model = architectures.create(config.model, **config.model_kwargs(10))
        shapes = jax.eval_shape(
            lambda: architectures.init_variables(model, image_shape, jax.random.PRNGKey(0))
        )
    except Exception:  # noqa: BLE001 - the training itself reports a model that does not fit
        return
    need = architectures.param_count(shapes) * 4 * 4  # params, gradients, two moments
    need += config.batch_size * int(np.prod(image_shape)) * 4 * 8
    if need > have * MEMORY_SHARE:
        raise UsageError(
            f"--width {config.width:g} and --batch-size {config.batch_size} need about "
            f"{human_bytes(need)} of memory, more than the {human_bytes(have)} available; "
            "lower them"
        )


def _rate(text: str) -> float:
    """A dropout rate: a finite number in [0, 1)."""
    value = errors.finite_float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _run_cli(args: argparse.Namespace) -> int:
    command = "onepixel " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else None
    try:
        config = TrainConfig(
            model=args.model,
            dataset=args.dataset,
            width=args.width,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            warmup_epochs=args.warmup_epochs,
            optimizer=args.optimizer,
            weight_decay=args.weight_decay,
            batch_norm=args.batch_norm,
            dropout=args.dropout,
            input_dropout=args.input_dropout,
            time_budget=args.time_budget,
            augment=args.augment,
            label_smoothing=args.label_smoothing,
            dead_pixel_rate=args.dead_pixel_rate,
            dead_pixels=args.dead_pixels,
            dead_pixel_colours=args.dead_pixel_colours,
            seed=args.seed,
            train_limit=args.train_limit,
            eval_limit=args.eval_limit,
            data_dir=args.data_dir,
            command=command,
        )
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None
    errors.check_output_dir(args.out)
    errors.check_input_dir(args.data_dir, "--data-dir")
    from onepixel_jax.data import IMAGE_SHAPES

    h, w, _ = IMAGE_SHAPES[args.dataset]
    if args.dead_pixels > h * w:
        raise UsageError(
            f"--dead-pixels {args.dead_pixels} exceeds the {h * w} pixels of a {h}x{w} "
            f"{args.dataset} image"
        )
    _check_model_size(config, IMAGE_SHAPES[args.dataset])
    # A failed run leaves nothing behind; an interrupted one keeps what --resume continues.
    guard = contextlib.nullcontext() if args.resume else errors.removed_on_failure(args.out)
    with guard:
        try:
            train_and_evaluate(config, args.out, resume=args.resume)
        except ValueError as err:  # unreadable or mismatching data files
            raise UsageError(str(err)) from None
    return 0
