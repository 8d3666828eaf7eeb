"""onepixel attack: a resumable few-pixel attack sweep over a dataset, written to a run folder.

The sweep is onepixel_jax.experiments.sweep.run_sweep; the run folder's files are described in
onepixel_jax.experiments.run_folder. Running the same command again resumes an interrupted run
or grows it (a larger --n-images); any other changed setting is refused.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from typing import Any

from onepixel_jax.cli import errors
from onepixel_jax.errors import UsageError
from onepixel_jax.experiments import inputs
from onepixel_jax.experiments.selection import MODES
from onepixel_jax.experiments.sweep import (
    SettingError,
    SweepConfig,
    SweepOutcome,
    SweepProgress,
    method_names,
    run_sweep,
)

EARLY_STOP_CHOICES = ("none", "success", "threshold", "target_over_true")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        type=errors.non_empty,
        help="committed checkpoint name (list them with: onepixel models) or checkpoint folder",
    )
    p.add_argument("--dataset", required=True, help="cifar10, mnist, digits, imagenet-sample")
    p.add_argument("--split", default="test", help="dataset split (default: test)")
    p.add_argument("--data-dir", default=None, type=errors.non_empty, help="dataset folder")
    p.add_argument(
        "--download",
        action="store_true",
        help="download the dataset if it is not found locally (never done otherwise)",
    )
    p.add_argument(
        "--n-images", type=errors.int_at_least(1), default=100, help="images (default: 100)"
    )
    p.add_argument(
        "--pixels", type=errors.int_at_least(1), default=1, help="perturbed pixels d (default: 1)"
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="untargeted",
        help="untargeted: true non-targeted attack; targeted: one seeded random target per "
        "image; all-targets: every other class, batched (default: untargeted)",
    )
    p.add_argument(
        "--popsize", type=errors.int_at_least(4), default=400, help="population (default: 400)"
    )
    p.add_argument(
        "--max-iters", type=errors.int_at_least(0), default=100, help="generations (default: 100)"
    )
    p.add_argument(
        "--early-stop",
        choices=EARLY_STOP_CHOICES,
        default="target_over_true",
        help="stop rule (default: target_over_true, the paper's original-CIFAR-10 protocol)",
    )
    p.add_argument(
        "--threshold", type=errors.finite_float, default=None, help="for --early-stop threshold"
    )
    p.add_argument(
        "--seed", type=errors.seed, default=0, help="random seed in [0, 2**32) (default: 0)"
    )
    p.add_argument(
        "--chunk-size",
        type=errors.int_at_least(1),
        default=16,
        help="images per engine call and per write; part of the configuration (default: 16)",
    )
    p.add_argument(
        "--batch-size",
        type=errors.int_at_least(1),
        default=None,
        help="attacks evolved side by side inside a call: memory and speed, not part of the "
        "configuration, may change between resumes (default: about 4M input values per "
        "model call)",
    )
    names = method_names()
    p.add_argument(
        "--strategy",
        choices=names,
        default="de",
        help="search method (default: de, the paper's differential evolution)",
    )
    p.add_argument(
        "--baseline",
        choices=("none", *names),
        default="none",
        help="also run this search with the same evaluation budget on the same attacks, "
        "e.g. random (the paper's baseline)",
    )
    p.add_argument(
        "--include-misclassified",
        action="store_true",
        help="attack every image with the model's prediction as label (Kaggle protocol)",
    )
    p.add_argument("--out", required=True, type=errors.non_empty, help="run folder, runs/NAME")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    """The sweep configuration of parsed ``onepixel attack`` arguments (UsageError if bad)."""
    methods = (args.strategy,)
    if args.baseline != "none":
        if args.baseline == args.strategy:
            raise UsageError(f"--baseline {args.baseline} is the --strategy itself")
        methods += (args.baseline,)
    try:
        return SweepConfig(
            model=args.model,
            dataset=args.dataset,
            split=args.split,
            n_images=args.n_images,
            pixels=args.pixels,
            mode=args.mode,
            popsize=args.popsize,
            max_iters=args.max_iters,
            early_stop=None if args.early_stop == "none" else args.early_stop,
            threshold=args.threshold,
            seed=args.seed,
            chunk_size=args.chunk_size,
            methods=methods,
            include_misclassified=bool(args.include_misclassified),
        )
    except SettingError as exc:
        raise _flag_error(exc) from None


def _flag_error(exc: SettingError) -> UsageError:
    flag = "--" + exc.field.replace("_", "-")
    if exc.field == "early_stop":
        flag = "--early-stop"
    elif exc.field == "methods":
        flag = "--strategy/--baseline"
    return UsageError(
        f"{flag} {exc.detail}".replace("early_stop threshold", "--early-stop threshold")
    )


class ProgressBar:
    """A tqdm bar over images fed by the sweep's progress callback; it moves per generation
    inside a chunk and shows the images fooled by the main method and evaluations/s."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def __call__(self, p: SweepProgress) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=p.images_total,
                initial=p.images_done,
                unit="img",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.5,
                bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
            )
        self.bar.n = round(p.images_done + p.partial * p.chunk_images, 2)
        if p.step:
            rate = p.queries / p.seconds if p.seconds > 0 else math.nan
            self.bar.set_postfix(
                fooled=f"{p.fooled}/{p.images_done}",
                evals_s=f"{rate:,.0f}" if math.isfinite(rate) else "-",
                refresh=False,
            )
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _interrupt_on_sigterm():
    """Treat SIGTERM like Ctrl-C (finished records are on disk either way); returns the old
    handler, or None when handlers cannot be installed (not the main thread)."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def sweep(
    config: SweepConfig,
    out: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    batch_size: int | None = None,
    quiet: bool = False,
    report: bool = True,
) -> SweepOutcome | None:
    """Load the model and data, run the sweep with a progress bar and write the report.

    Returns None when interrupted (after saying how to resume). Shared by ``attack`` and
    ``demo``.
    """
    errors.check_output_dir(out)
    errors.check_input_dir(data_dir, "--data-dir")
    predict_fn, card = inputs.load_model(config.model)
    images, labels, class_names = inputs.load_dataset(
        config.dataset, config.split, data_dir, download
    )
    bar = ProgressBar(quiet)
    previous = _interrupt_on_sigterm()
    try:
        outcome = run_sweep(
            config,
            out,
            predict_fn,
            images,
            labels,
            card=card,
            class_names=class_names,
            data_dir=data_dir,
            batch_size=batch_size,
            progress=None if quiet else bar,
        )
    except SettingError as exc:
        raise _flag_error(exc) from None
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted; run the same command again to resume {out}", file=sys.stderr)
        return None
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if report:
        from onepixel_jax.experiments.report import write_report
        from onepixel_jax.experiments.summary import summary_line

        print(summary_line(write_report(out)))
    return outcome


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    outcome = sweep(
        config,
        args.out,
        data_dir=args.data_dir,
        download=args.download,
        batch_size=args.batch_size,
        quiet=args.quiet,
        report=not args.no_report,
    )
    return 130 if outcome is None else 0


def register_cli(subparsers: Any) -> None:
    """Add the ``attack`` sub-command."""
    p = subparsers.add_parser(
        "attack",
        help="resumable few-pixel attack sweep over a dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=errors.command("onepixel attack", run))


__all__ = ["add_arguments", "config_from_args", "register_cli", "run", "sweep"]
