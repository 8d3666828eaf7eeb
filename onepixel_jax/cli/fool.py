"""onepixel fool: evolve fooling images for every class of a model, resumably.

Argument parsing only; the run itself is onepixel_jax.fooling.run.run_fooling, which describes
the files written into --out. Running the same command again resumes the run.
"""

from __future__ import annotations

import argparse
from typing import Any

from onepixel_jax.cli import errors
from onepixel_jax.errors import UsageError
from onepixel_jax.fooling.run import ENCODINGS, MAX_HIDDEN, FoolConfig, run_fooling


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        type=errors.non_empty,
        help="committed checkpoint name (list them with: onepixel models) or checkpoint folder",
    )
    p.add_argument(
        "--encoding", choices=ENCODINGS, default="direct", help="image encoding (default direct)"
    )
    p.add_argument(
        "--generations",
        type=errors.int_between(1, errors.INT32_MAX - 1, "generations are counted in int32"),
        default=200,
        help="target generation count",
    )
    p.add_argument(
        "--popsize", type=errors.int_at_least(1), default=100, help="offspring per generation"
    )
    p.add_argument("--seed", type=errors.seed, default=0, help="random seed in [0, 2**32)")
    p.add_argument("--out", required=True, type=errors.non_empty, help="run folder (resumable)")
    p.add_argument(
        "--chunk",
        type=errors.int_at_least(1),
        default=10,
        help="generations per compiled call and per log line",
    )
    p.add_argument(
        "--threshold", type=errors.finite_float, default=0.9999, help="confidence target"
    )
    p.add_argument(
        "--stop-at-threshold",
        action="store_true",
        help="stop once every class reaches --threshold",
    )
    g = p.add_argument_group("direct encoding")
    g.add_argument("--mutation-rate", type=finite, default=0.1, help="per-pixel probability")
    g.add_argument("--eta", type=finite, default=15.0, help="polynomial mutation index, >= 0")
    g.add_argument("--rate-decay", type=finite, default=1.0, help="rate *= decay, in (0, 1]")
    g.add_argument("--min-rate", type=finite, default=0.0, help="floor of the decayed rate")
    g.add_argument("--crossover-rate", type=finite, default=0.0, help="uniform crossover prob.")
    c = p.add_argument_group("CPPN encoding")
    c.add_argument(
        "--max-hidden",
        type=errors.int_between(0, MAX_HIDDEN, "the connection matrix grows with its square"),
        default=12,
        help="hidden node capacity",
    )
    c.add_argument("--weight-sigma", type=finite, default=0.5, help="> 0")
    c.add_argument("--add-node-rate", type=finite, default=0.1)
    c.add_argument("--add-connection-rate", type=finite, default=0.2)


# Numbers are finite at parsing (nan and inf never reach the search); their ranges are
# FoolConfig.validate's, which names the field.
finite = errors.finite_float


def config_from_args(args: argparse.Namespace, model_sha256: str = "") -> FoolConfig:
    config = FoolConfig(
        model=args.model,
        encoding=args.encoding,
        popsize=args.popsize,
        seed=args.seed,
        chunk=args.chunk,
        threshold=args.threshold,
        mutation_rate=args.mutation_rate,
        eta=args.eta,
        rate_decay=args.rate_decay,
        min_rate=args.min_rate,
        crossover_rate=args.crossover_rate,
        max_hidden=args.max_hidden,
        weight_sigma=args.weight_sigma,
        add_node_rate=args.add_node_rate,
        add_connection_rate=args.add_connection_rate,
        model_sha256=model_sha256,
    )
    config.validate()
    return config


def _run_cli(args: argparse.Namespace) -> int:
    from onepixel_jax.experiments.inputs import load_model
    from onepixel_jax.experiments.limits import check_fooling_sizes

    try:
        config_from_args(args)  # argument errors before loading anything
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None
    errors.check_output_dir(args.out)
    try:
        predict_fn, card = load_model(args.model)
    except ValueError as err:
        raise UsageError(f"--model: {err}") from None
    num_classes = int(card.get("num_classes", 0))
    class_names = card.get("class_names") or [str(k) for k in range(num_classes)]
    check_fooling_sizes(
        popsize=args.popsize,
        chunk=args.chunk,
        generations=args.generations,
        image_shape=card["input_shape"],
        num_classes=len(class_names),
        encoding=args.encoding,
        max_hidden=args.max_hidden,
    )
    config = config_from_args(args, model_sha256=str(card.get("checkpoint_sha256", "")))
    with errors.removed_on_failure(args.out):
        try:
            summary = run_fooling(
                config,
                predict_fn,
                card["input_shape"],
                class_names,
                args.out,
                args.generations,
                stop_at_threshold=args.stop_at_threshold,
            )
        except ValueError as err:  # another run's folder, or its damaged state files
            raise UsageError(str(err)) from None
    print(
        f"[fool] done: {summary['reached']}/{len(class_names)} classes >= "
        f"{config.threshold:g} after {summary['generations']} generations, "
        f"{summary['wall_time_s']:.1f}s; min {summary['min_confidence']:.6f}, "
        f"median {summary['median_confidence']:.6f} -> {args.out}"
    )
    return 0


def register_cli(subparsers: Any) -> None:
    """Add the ``fool`` sub-command."""
    p = subparsers.add_parser(
        "fool",
        help="evolve fooling images (MAP-Elites, direct or CPPN encoding)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=errors.command("onepixel fool", _run_cli))
