"""``onepixel train``: train a target network and write a checkpoint with its model card.

Argument parsing only; the training is :func:`onepixel_jax.train.train_and_evaluate`.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from onepixel_jax import data as opj_data
from onepixel_jax import models as opj_models
from onepixel_jax.train import TrainConfig, train_and_evaluate


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser(
        "train",
        help="train a target network and write a checkpoint + model card",
        description="Train a target network; writes OUT/params.msgpack and OUT/card.json.",
    )
    d = TrainConfig()
    p.add_argument("--model", default=d.model, choices=sorted(opj_models.ARCHITECTURES))
    p.add_argument("--dataset", default=d.dataset, choices=["cifar10", "mnist", "digits"])
    p.add_argument("--width", type=float, default=d.width)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.learning_rate, help="peak learning rate")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--optimizer", default=d.optimizer, choices=["sgd", "adamw"])
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--batch-norm", dest="batch_norm", action="store_true", default=None)
    p.add_argument("--no-batch-norm", dest="batch_norm", action="store_false")
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--input-dropout", type=float, default=None)
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="wall-clock seconds for training; the cosine schedule follows time and ends there",
    )
    p.add_argument("--augment", dest="augment", action="store_true", default=None)
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True, help="output directory, e.g. models/allconv-cifar10")
    p.set_defaults(func=_run_cli)


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
            seed=args.seed,
            train_limit=args.train_limit,
            eval_limit=args.eval_limit,
            data_dir=args.data_dir,
            command=command,
        )
        train_and_evaluate(config, args.out)
    except (ValueError, TypeError, opj_data.DataNotFoundError) as err:
        print(f"onepixel train: error: {err}", file=sys.stderr)
        return 1
    return 0
