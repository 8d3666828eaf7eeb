"""``onepixel demo``: the main job on an embedded default, with no download.

It runs a paper-setting one-pixel attack sweep (``onepixel attack``) on the best target that
is available offline: the committed AllConv CIFAR-10 checkpoint when its data is found
locally, otherwise the committed digits CNN on scikit-learn's bundled 8x8 digits, which
ship inside the scikit-learn wheel. Results, figures and ``report.md`` go to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import data, models


def default_target(data_dir: str | None = None) -> tuple[str, str]:
    """``(model, dataset)`` of the demo: CIFAR-10 when possible, else the bundled digits."""
    if "allconv-cifar10" in models.list_models():
        try:
            data.load("cifar10", "test", data_dir=data_dir, limit=1)
            return "allconv-cifar10", "cifar10"
        except (FileNotFoundError, ValueError):
            pass
    return "digits-cnn", "digits"


def demo_argv(args: argparse.Namespace) -> list[str]:
    model, dataset = default_target(args.data_dir)
    out = args.out or f"runs/demo-{model}"
    argv = [
        "attack",
        f"--model={model}",
        f"--dataset={dataset}",
        f"--n-images={args.n_images}",
        "--pixels=1",
        "--mode=untargeted",
        "--popsize=400",
        "--max-iters=100",
        "--early-stop=success",
        f"--seed={args.seed}",
        "--chunk-size=4",
        f"--out={out}",
    ]
    if args.data_dir:
        argv.append(f"--data-dir={args.data_dir}")
    return argv


def _run(args: argparse.Namespace) -> int:
    from .cli import main

    argv = demo_argv(args)
    print("onepixel " + " ".join(argv), flush=True)
    return main(argv)


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="one-pixel attack on an embedded default (offline)")
    p.add_argument("--n-images", type=int, default=8, help="images to attack (default: 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None, help="run folder (default: runs/demo-MODEL)")
    p.set_defaults(func=_run)


if __name__ == "__main__":
    sys.exit(_run(argparse.Namespace(n_images=8, seed=0, data_dir=None, out=None)))
