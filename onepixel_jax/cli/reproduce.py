"""onepixel reproduce: the paper's Tables IV, V, VII and VIII from run folders.

  onepixel reproduce list
  onepixel reproduce run [--cell NAME ...] [--n-images N] [--root DIR] [--records DIR]
                         [--shard I/N]
  onepixel reproduce run --name NAME --model M [--method paper] [--pixels D] [--mode MODE]
                         [--split S] [--include-misclassified] --n-images N ...
  onepixel reproduce snapshot [--root DIR] [--records DIR]
  onepixel reproduce tables [--records DIR] [--markdown FILE] [--figures DIR] [--snippet FILE]
                           [--readme FILE]

run runs the cells (each one run folder under --root; all of them, in order, without
--cell) at the paper's scale or at --n-images; running it again resumes, a larger --n-images
grows the same folders, --shard I/N runs one share of a cell's chunks. A cell that --root
lacks starts from its committed records (--records). snapshot copies run.json and the
records (gzip) of every cell to --records; tables regenerates the tables and figures from
them. The cells and tables are onepixel_jax.experiments.reproduction.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from onepixel_jax.cli import errors
from onepixel_jax.errors import UsageError


def _custom_cell(args: argparse.Namespace):
    from onepixel_jax.experiments import reproduction
    from onepixel_jax.experiments.sweep import SettingError

    if args.n_images is None:
        raise UsageError("a cell of your own (--model) needs --n-images")
    try:
        return reproduction.ReproductionCell(
            name=args.name or f"{args.model}-d{args.pixels}-{args.method}",
            model=args.model,
            method=args.method,
            pixels=args.pixels,
            mode=args.mode,
            split=args.split,
            include_misclassified=args.include_misclassified,
            n_images=args.n_images,
            chunk_size=args.chunk_size,
            seed=args.seed,
            selection_seed=args.selection_seed,
            popsize=args.popsize,
            max_iters=args.max_iters,
        )
    except SettingError as exc:
        raise UsageError(f"--{exc.field.replace('_', '-')} {exc.detail}") from None


def run_cells(args: argparse.Namespace) -> int:
    from onepixel_jax.cli.attack import ProgressBar
    from onepixel_jax.experiments import reproduction
    from onepixel_jax.experiments.sweep import SettingError

    own = [args.name, args.method, args.pixels, args.mode, args.split, args.popsize]
    own += [args.max_iters, args.chunk_size, args.seed, args.selection_seed]
    if args.model is None and (any(v is not None for v in own) or args.include_misclassified):
        raise UsageError("--name, --method, --pixels ... describe a cell of your own: add --model")
    if args.model is not None and args.cell:
        raise UsageError("--cell cannot be combined with --model (a cell of your own)")
    if args.model is not None:
        defaults = reproduction.ReproductionCell("x", "x")
        for key in ("method", "pixels", "mode", "split", "popsize", "max_iters", "chunk_size"):
            if getattr(args, key) is None:
                setattr(args, key, getattr(defaults, key))
        for key in ("seed", "selection_seed"):
            if getattr(args, key) is None:
                setattr(args, key, 0)
        cells = [_custom_cell(args)]
    else:
        cells = [reproduction.cell(n) for n in args.cell] or list(reproduction.CELLS.values())
    errors.check_output_dir(args.root, "--root")
    if args.shard is not None and len(cells) != 1:
        raise UsageError("--shard runs a share of one cell: give one --cell")
    for c in cells:
        print(f"cell {c.name}: {c.command(args.root, args.n_images)}", file=sys.stderr)
        try:
            outcome = reproduction.run_cell(
                c,
                args.root,
                n_images=args.n_images,
                records=None if args.records in (None, "") else args.records,
                data_dir=args.data_dir,
                batch_size=args.batch_size,
                shard=args.shard,
                progress=ProgressBar(args.quiet),
            )
        except SettingError as exc:
            raise UsageError(f"--{exc.field.replace('_', '-')} {exc.detail}") from None
        print(
            f"cell {c.name}: {outcome.attacks_run} new attacks, {outcome.attacks_reused} kept "
            f"-> {outcome.out}",
            file=sys.stderr,
        )
    if args.shard is None and args.model is None:
        models = sorted({c.model for c in cells})
        reproduction.clean_accuracy(
            models, path=f"{args.root}/{reproduction.CLEAN}", data_dir=args.data_dir
        )
    return 0


def list_cells(args: argparse.Namespace) -> int:
    from onepixel_jax.experiments import reproduction

    for c in reproduction.CELLS.values():
        what = f"{c.model} {c.method} d={c.pixels} {c.mode} {c.split}"
        what += " (with misclassified)" if c.include_misclassified else ""
        print(f"{c.name:26s} {what}, {c.n_images} images; tables {', '.join(c.tables)}")
    return 0


def snapshot(args: argparse.Namespace) -> int:
    from onepixel_jax.experiments import reproduction

    errors.check_input_dir(args.root, "--root")
    errors.check_output_dir(args.records, "--records")
    names = reproduction.snapshot(args.root, args.records)
    if not names:
        raise UsageError(f"--root {args.root} holds no reproduction cell")
    print(f"copied {len(names)} cells to {args.records}: {', '.join(names)}", file=sys.stderr)
    return 0


def tables(args: argparse.Namespace) -> int:
    from onepixel_jax.experiments import reproduction

    errors.check_input_dir(args.records, "--records")
    reproduction.write_tables(
        args.records,
        markdown=args.markdown,
        figures=args.figures,
        snippet=args.snippet,
        readme=args.readme,
    )
    return 0


def register_cli(subparsers: Any) -> None:
    """Add the ``reproduce`` sub-command."""
    from onepixel_jax.experiments import reproduction

    p = subparsers.add_parser(
        "reproduce",
        help="the paper's Tables IV, V, VII and VIII at the paper's scale, from run folders",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="reproduce_command", metavar="STEP", required=True)

    q = sub.add_parser("list", help="the cells")
    q.set_defaults(func=errors.command("onepixel reproduce list", list_cells))

    r = sub.add_parser("run", help="run, resume or grow cells")
    r.add_argument(
        "--cell",
        action="append",
        default=[],
        metavar="NAME",
        type=errors.non_empty,
        help="a cell (see list); repeat for several; default: every cell in order",
    )
    r.add_argument(
        "--n-images",
        type=errors.int_at_least(1),
        default=None,
        help="images per cell instead of the paper's (a larger value grows the run)",
    )
    r.add_argument(
        "--root",
        default=reproduction.WORK_ROOT,
        type=errors.non_empty,
        help=f"working folder of the run folders (default: {reproduction.WORK_ROOT})",
    )
    r.add_argument(
        "--records",
        default=reproduction.RECORDS_ROOT,
        help="committed records a missing cell starts from ('' for none; default: "
        f"{reproduction.RECORDS_ROOT})",
    )
    r.add_argument("--data-dir", default=None, help="dataset folder")
    r.add_argument(
        "--batch-size",
        type=errors.int_at_least(1),
        default=None,
        help="attacks evolved side by side (speed and memory only)",
    )
    from onepixel_jax.cli.attack import shard_arg

    r.add_argument(
        "--shard",
        type=shard_arg,
        default=None,
        metavar="I/N",
        help="run share I of N of one cell's chunks (shares may run at once)",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    g = r.add_argument_group("a cell of your own (instead of --cell)")
    g.add_argument("--model", default=None, type=errors.non_empty, help="checkpoint")
    g.add_argument("--name", default=None, type=errors.non_empty, help="folder name")
    g.add_argument("--method", default=None, type=errors.non_empty, help="default: paper")
    g.add_argument("--pixels", type=errors.int_at_least(1), default=None, help="default: 1")
    g.add_argument("--mode", choices=("untargeted", "all-targets"), default=None)
    g.add_argument("--split", default=None, type=errors.non_empty, help="default: test")
    g.add_argument("--include-misclassified", action="store_true")
    g.add_argument("--popsize", type=errors.int_at_least(4), default=None, help="default: 400")
    g.add_argument("--max-iters", type=errors.int_at_least(0), default=None, help="default: 100")
    g.add_argument("--chunk-size", type=errors.int_at_least(1), default=None, help="default: 10")
    g.add_argument("--seed", type=errors.seed, default=None, help="default: 0")
    g.add_argument("--selection-seed", type=errors.seed, default=None, help="default: 0")
    r.set_defaults(func=errors.command("onepixel reproduce run", run_cells))

    s = sub.add_parser("snapshot", help="copy the cells' run.json and records to --records")
    s.add_argument("--root", default=reproduction.WORK_ROOT, type=errors.non_empty)
    s.add_argument("--records", default=reproduction.RECORDS_ROOT, type=errors.non_empty)
    s.set_defaults(func=errors.command("onepixel reproduce snapshot", snapshot))

    t = sub.add_parser("tables", help="the tables and figures from the committed records")
    t.add_argument("--records", default=reproduction.RECORDS_ROOT, type=errors.non_empty)
    t.add_argument(
        "--markdown",
        default=None,
        type=errors.non_empty,
        help="write the tables to this Markdown file (default: print them)",
    )
    t.add_argument(
        "--figures", default=None, type=errors.non_empty, help="write the figures to this folder"
    )
    t.add_argument(
        "--snippet",
        default=None,
        type=errors.non_empty,
        help="write the README's reproduction table to this file",
    )
    t.add_argument(
        "--readme",
        default=None,
        type=errors.non_empty,
        help="fill the table into the '<!-- generated: readme -->' block of this existing file",
    )
    t.set_defaults(func=errors.command("onepixel reproduce tables", tables))
