"""onepixel demo: a paper-setting one-pixel attack on an embedded default, offline.

It runs the sweep of onepixel attack (1 pixel, untargeted, population 400, 100 generations,
stop at success) on the best target available without a download: the committed AllConv
CIFAR-10 checkpoint when CIFAR-10 is found locally (--data-dir, $ONEPIXEL_DATA_DIR,
../shared/data or the cache folder), otherwise the committed digits CNN on scikit-learn's 8x8
digits, which ship inside the scikit-learn wheel. Nothing is ever downloaded.

Images are attacked one at a time, so the progress bar moves per image. Results, report.md and
the figures go to --out (default runs/demo-MODEL); the last line names them. Running the demo
again with the same settings reuses the finished run in that folder and says so (nothing is
attacked again); pass another --out for a fresh run, or a larger --n-images to grow it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from onepixel_jax.cli import errors
from onepixel_jax.errors import UsageError
from onepixel_jax.experiments.inputs import one_line

DIGITS = ("digits-cnn", "digits")
CIFAR = ("allconv-cifar10", "cifar10")
FIGURES = ("class_pairs.png", "per_class.png", "fitness.png", "examples.png")


def cifar10_available(data_dir: str | None = None) -> bool:
    """Whether CIFAR-10's test split can be read from local files (never downloads).

    False when no CIFAR-10 is found (the demo then uses the digits); a CIFAR-10 that is found
    but cannot be read (a damaged or truncated file) raises UsageError naming it, rather than
    falling back without a word.
    """
    from onepixel_jax import data

    try:
        data.load("cifar10", "test", data_dir=data_dir, limit=1, download=False)
    except data.DataNotFoundError:
        return False
    except (OSError, ValueError) as err:
        raise UsageError(
            f"CIFAR-10 was found but cannot be read: {one_line(err)}; repair or remove it "
            "(without CIFAR-10 the demo uses the digits)"
        ) from None
    except ImportError:
        return False
    return True


def default_target(data_dir: str | None = None) -> tuple[str, str]:
    """``(model, dataset)`` of the demo: CIFAR-10 when available locally, else the digits."""
    from onepixel_jax import zoo

    if CIFAR[0] in zoo.list_models() and cifar10_available(data_dir):
        return CIFAR
    return DIGITS


def demo_config(model: str, dataset: str, args: argparse.Namespace):
    """The demo's sweep configuration (paper settings, one image per engine call)."""
    from onepixel_jax.experiments.sweep import SweepConfig

    return SweepConfig(
        model=model,
        dataset=dataset,
        split="test",
        n_images=args.n_images,
        pixels=1,
        mode="untargeted",
        popsize=args.popsize,
        max_iters=args.max_iters,
        early_stop="success",
        seed=args.seed,
        chunk_size=1,
        methods=("de",),
    )


def run(args: argparse.Namespace) -> int:
    from onepixel_jax.cli.attack import sweep
    from onepixel_jax.experiments.sweep import command_line

    errors.check_input_dir(args.data_dir, "--data-dir")
    model, dataset = default_target(args.data_dir)
    out = args.out or f"runs/demo-{model}"
    errors.check_output_dir(out)
    config = demo_config(model, dataset, args)
    print(f"demo: {model} on {dataset} (no download); same as:", flush=True)
    print(command_line(config, out, args.data_dir), flush=True)
    outcome = sweep(config, out, data_dir=args.data_dir, quiet=args.quiet)
    if outcome is None:
        return 130
    if outcome.reused_finished_run:
        print(
            f"reused the finished run in {out} (nothing attacked; use another --out to run again)"
        )
    figures = [str(Path(out) / f) for f in FIGURES if (Path(out) / f).exists()]
    print(f"report: {Path(out) / 'report.md'}; figures: {', '.join(figures) or 'none'}")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add the ``demo`` sub-command."""
    p = subparsers.add_parser(
        "demo",
        help="one-pixel attack on an embedded default (offline); re-running reuses the run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n-images", type=errors.int_at_least(1), default=8, help="images (default: 8)")
    p.add_argument("--popsize", type=errors.int_at_least(4), default=400, help="(default: 400)")
    p.add_argument(
        "--max-iters", type=errors.int_at_least(0), default=100, help="generations (default: 100)"
    )
    p.add_argument("--seed", type=errors.seed, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--data-dir",
        type=errors.non_empty,
        default=None,
        help="where to look for CIFAR-10 (default: the usual data folders)",
    )
    p.add_argument(
        "--out", type=errors.non_empty, default=None, help="run folder (default: runs/demo-MODEL)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=errors.command("onepixel demo", run))
