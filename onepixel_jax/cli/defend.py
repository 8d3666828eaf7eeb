"""onepixel defend: train defended networks from a checkpoint.

Argument parsing only. Two sub-commands:

  fine-tune      one-pixel adversarial and/or dead-pixel fine-tuning of a checkpoint
                 (onepixel_jax.defences.adversarial_training.adversarial_fine_tune); writes a
                 checkpoint folder with its card and epochs.jsonl into --out
  fooling-class  retraining rounds with an extra "fooling" class
                 (onepixel_jax.defences.fooling_class.retrain_with_fooling_class); writes
                 round<r>/ checkpoints and rounds.jsonl into --out

Examples:
  onepixel defend fine-tune --model lenet-mnist --attack-images 0 --dead-pixel-rate 0.5 --out DIR
  onepixel defend fooling-class --model lenet-mnist --rounds 3 --out DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from onepixel_jax.cli import errors
from onepixel_jax.config import AttackConfig
from onepixel_jax.defences import adversarial_training as adv_lib
from onepixel_jax.defences import dead_pixels as dead_lib
from onepixel_jax.defences import fooling_class as fc_lib
from onepixel_jax.errors import UsageError
from onepixel_jax.experiments.sweep import method_names
from onepixel_jax.fooling.run import ENCODINGS

DEFAULT_MODEL = "lenet-mnist"

# AttackConfig's fields as the fine-tune flags that set them (for its error messages).
_ATTACK_FLAGS = {
    "pixels": "--attack-pixels",
    "popsize": "--attack-popsize",
    "max_iters": "--attack-iters",
    "strategy": "--attack-strategy",
}


def _share(text: str) -> float:
    """A share: a number in [0, 1]."""
    value = errors.finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _positive_float(text: str) -> float:
    """A finite number > 0."""
    value = errors.finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = errors.finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _attack_error(err: Exception) -> str | None:
    """An AttackConfig or attack error as ``"--attack-FLAG: message"``; None if it names
    no attack field."""
    message = str(err)
    for field, flag in _ATTACK_FLAGS.items():
        if message.startswith(f"{field} "):
            return f"{flag}: {message}"
    return None


def _check_model(name: str) -> None:
    """UsageError unless ``name`` is a committed checkpoint or an existing path."""
    from onepixel_jax import zoo

    known = list(zoo.list_models())
    if not os.path.exists(name) and name not in known:
        hint = ", ".join(known) if known else "none installed"
        raise UsageError(
            f"--model: unknown model {name!r} (available: {hint}; see onepixel models)"
        )


def _check_start(args: argparse.Namespace) -> None:
    """Before any work: the starting checkpoint loads and keeps the model contract, and the
    dead pixels fit its images (UsageError naming the flag)."""
    from onepixel_jax.experiments.inputs import load_model

    _, card = load_model(args.model)
    if not card.get("input_shape"):
        return
    h, w, _ = card["input_shape"]
    dead = getattr(args, "dead_pixels", None)
    if dead is not None and dead > h * w:
        raise UsageError(f"--dead-pixels {dead} exceeds the {h * w} pixels of {h}x{w} images")
    pixels = getattr(args, "attack_pixels", None)
    if pixels is not None and pixels > h * w:
        raise UsageError(f"--attack-pixels {pixels} exceeds the {h * w} pixels of {h}x{w} images")
    if getattr(args, "attack_popsize", None) is not None and args.attack_images > 0:
        from onepixel_jax.experiments.limits import check_sweep_sizes

        check_sweep_sizes(
            popsize=args.attack_popsize,
            max_iters=args.attack_iters,
            chunk_size=args.attack_images,
            n_images=args.attack_images,
            pixels=pixels or 1,
            image_shape=card["input_shape"],
            names={
                "popsize": "--attack-popsize",
                "max_iters": "--attack-iters",
                "chunk_size": "--attack-images",
                "n_images": "--attack-images",
            },
        )


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        type=errors.non_empty,
        help=f"starting checkpoint: committed name (onepixel models) or folder "
        f"(default {DEFAULT_MODEL})",
    )


# --------------------------------------------------------------------------------------
# onepixel defend fine-tune


def add_fine_tune_arguments(p: argparse.ArgumentParser) -> None:
    d = adv_lib.AdversarialTrainingConfig(model="x")
    _add_common(p)
    p.add_argument("--epochs", type=errors.int_at_least(1), default=d.epochs)
    p.add_argument(
        "--attack-images",
        type=errors.int_at_least(0),
        default=d.attack_images,
        help="training images attacked per epoch (0: no adversarial examples)",
    )
    p.add_argument(
        "--adversarial-share",
        type=_share,
        default=d.adversarial_share,
        help="adversarial examples per clean training image, in [0, 1]",
    )
    p.add_argument("--attack-strategy", choices=method_names(), default=d.attack.strategy)
    p.add_argument("--attack-popsize", type=errors.int_at_least(1), default=d.attack.popsize)
    p.add_argument("--attack-iters", type=errors.int_at_least(0), default=d.attack.max_iters)
    p.add_argument("--attack-pixels", type=errors.int_at_least(1), default=d.attack.pixels)
    p.add_argument(
        "--dead-pixel-rate",
        type=_share,
        default=d.dead_pixel_rate,
        help="share of training images given dead pixels (0 = off)",
    )
    p.add_argument("--dead-pixels", type=errors.int_at_least(1), default=d.dead_pixels)
    p.add_argument("--dead-pixel-colours", default=d.dead_pixel_colours, choices=dead_lib.COLOURS)
    p.add_argument("--lr", type=_positive_float, default=d.learning_rate)
    p.add_argument("--batch-size", type=errors.int_at_least(1), default=d.batch_size)
    p.add_argument("--train-limit", type=errors.int_at_least(1), default=None)
    p.add_argument("--eval-limit", type=errors.int_at_least(1), default=None)
    p.add_argument("--data-dir", type=errors.non_empty, default=None)
    p.add_argument("--seed", type=errors.seed, default=d.seed, help="random seed in [0, 2**32)")
    p.add_argument(
        "--name", type=errors.non_empty, default=None, help="name in the card (default: --out's)"
    )
    p.add_argument("--out", required=True, type=errors.non_empty, help="checkpoint folder")


def fine_tune_config(args: argparse.Namespace) -> adv_lib.AdversarialTrainingConfig:
    """The fine-tuning configuration of parsed arguments (UsageError naming the flag)."""
    try:
        attack = AttackConfig(
            pixels=args.attack_pixels,
            strategy=args.attack_strategy,
            popsize=args.attack_popsize,
            max_iters=args.attack_iters,
            early_stop="success",
        )
    except (ValueError, TypeError) as err:
        raise UsageError(_attack_error(err) or f"--attack-strategy: {err}") from None
    try:
        return adv_lib.AdversarialTrainingConfig(
            model=args.model,
            epochs=args.epochs,
            attack_images=args.attack_images,
            adversarial_share=args.adversarial_share,
            attack=attack,
            dead_pixel_rate=args.dead_pixel_rate,
            dead_pixels=args.dead_pixels,
            dead_pixel_colours=args.dead_pixel_colours,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            train_limit=args.train_limit,
            eval_limit=args.eval_limit,
            data_dir=args.data_dir,
            seed=args.seed,
        )
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None


def _run_fine_tune(args: argparse.Namespace) -> int:
    config = fine_tune_config(args)  # argument errors before loading anything
    _check_model(args.model)
    errors.check_output_dir(args.out)
    errors.check_input_dir(args.data_dir, "--data-dir")
    _check_start(args)
    with errors.removed_on_failure(args.out):  # a refused or failed run leaves nothing
        try:
            card = adv_lib.adversarial_fine_tune(config, args.out, name=args.name)
        except ValueError as err:  # a checkpoint, data files or --attack-pixels that do not fit
            raise UsageError(_attack_error(err) or str(err)) from None
    print(
        f"[defend] {card['defence']['kind']}: clean test accuracy "
        f"{100 * card['test_accuracy']:.2f}% -> {args.out}"
    )
    return 0


# --------------------------------------------------------------------------------------
# onepixel defend fooling-class


def add_fooling_class_arguments(p: argparse.ArgumentParser) -> None:
    d = {f.name: f.default for f in dataclasses.fields(fc_lib.FoolingClassConfig)}
    _add_common(p)
    p.add_argument("--rounds", type=errors.int_at_least(1), default=3)
    p.add_argument("--mode", default=d["mode"], choices=fc_lib.MODES)
    p.add_argument("--encoding", default=d["encoding"], choices=ENCODINGS)
    p.add_argument("--generations", type=errors.int_at_least(1), default=d["generations"])
    p.add_argument("--popsize", type=errors.int_at_least(1), default=d["popsize"])
    p.add_argument(
        "--runs-per-round",
        type=errors.int_at_least(1),
        default=d["runs_per_round"],
        help="MAP-Elites seeds per round",
    )
    p.add_argument(
        "--fooling-examples",
        type=errors.int_at_least(1),
        default=None,
        help="fooling-class training images per round (default: a real class's mean size)",
    )
    p.add_argument("--epochs", type=errors.int_at_least(1), default=d["epochs"])
    p.add_argument("--batch-size", type=errors.int_at_least(1), default=d["batch_size"])
    p.add_argument("--lr", type=_positive_float, default=d["learning_rate"])
    p.add_argument("--warmup-epochs", type=_non_negative_float, default=d["warmup_epochs"])
    p.add_argument("--train-limit", type=errors.int_at_least(1), default=None)
    p.add_argument("--eval-limit", type=errors.int_at_least(1), default=None)
    p.add_argument("--data-dir", type=errors.non_empty, default=None)
    p.add_argument("--download", action="store_true", help="download the dataset if missing")
    p.add_argument("--seed", type=errors.seed, default=d["seed"], help="random seed in [0, 2**32)")
    p.add_argument(
        "--no-final-evolution",
        dest="final_evolution",
        action="store_false",
        help="do not evolve once more against the last network",
    )
    p.add_argument("--out", required=True, type=errors.non_empty, help="work folder")


def fooling_class_config(args: argparse.Namespace) -> fc_lib.FoolingClassConfig:
    """The retraining configuration of parsed arguments (UsageError if bad)."""
    try:
        return fc_lib.FoolingClassConfig(
            model=args.model,
            rounds=args.rounds,
            mode=args.mode,
            encoding=args.encoding,
            generations=args.generations,
            popsize=args.popsize,
            runs_per_round=args.runs_per_round,
            fooling_examples=args.fooling_examples,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            warmup_epochs=args.warmup_epochs,
            train_limit=args.train_limit,
            eval_limit=args.eval_limit,
            data_dir=args.data_dir,
            download=args.download,
            seed=args.seed,
            final_evolution=args.final_evolution,
        )
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None


def _run_fooling_class(args: argparse.Namespace) -> int:
    config = fooling_class_config(args)  # argument errors before loading anything
    _check_model(args.model)
    errors.check_output_dir(args.out)
    errors.check_input_dir(args.data_dir, "--data-dir")
    _check_start(args)
    with errors.removed_on_failure(args.out):  # a refused or failed run leaves nothing
        try:
            records = fc_lib.retrain_with_fooling_class(config, args.out)
        except ValueError as err:  # a used work folder, a checkpoint or data that do not fit
            raise UsageError(str(err)) from None
    rounds = [r for r in records if not r.get("evolution_only")]
    if rounds:
        last = rounds[-1]
        print(
            f"[defend] {len(rounds)} fooling-class round(s): clean test accuracy "
            f"{100 * last['test_accuracy']:.2f}%, fooling class predicted for "
            f"{100 * last['fooling_rate_after']:.1f}% of {last['fooling_images']} fooling "
            f"images -> {args.out}"
        )
    return 0


# --------------------------------------------------------------------------------------


def register_cli(subparsers: Any) -> None:
    """Add the ``defend`` command and its ``fine-tune`` and ``fooling-class`` sub-commands."""
    p = subparsers.add_parser(
        "defend",
        help="train defended networks (adversarial / dead-pixel fine-tuning, fooling class)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="defence", metavar="DEFENCE")

    def usage(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=usage)

    fine = sub.add_parser(
        "fine-tune",
        help="fine-tune a checkpoint with one-pixel adversarial examples and/or dead pixels",
        description=(
            "Fine-tune a checkpoint: each epoch attacks --attack-images training images with "
            "the engine and trains on them with their true labels; with --dead-pixel-rate > 0 "
            "every batch also gets dead pixels (--attack-images 0: dead pixels only). Writes "
            "params.msgpack, card.json and epochs.jsonl into --out."
        ),
    )
    add_fine_tune_arguments(fine)
    fine.set_defaults(func=errors.command("onepixel defend fine-tune", _run_fine_tune))

    fooling = sub.add_parser(
        "fooling-class",
        help="retraining rounds with an extra fooling class (MAP-Elites, then retrain)",
        description=(
            "Rounds of fooling-class retraining (Nguyen et al. 2015): evolve fooling images "
            "against the current network with MAP-Elites, add them as an extra class, retrain "
            "(--mode fine_tune or from_scratch). Writes round<r>/ checkpoints with their cards "
            "and rounds.jsonl into --out, which must not hold an earlier run."
        ),
    )
    add_fooling_class_arguments(fooling)
    fooling.set_defaults(func=errors.command("onepixel defend fooling-class", _run_fooling_class))
