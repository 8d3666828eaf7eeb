"""onepixel report RUN_DIR [RUN_DIR ...]: the paper's measurements and figures of run folders.

Reads run.json and results.jsonl written by onepixel attack and writes, into the same folder,
summary.json, report.md and PNG figures of the run's main method: class_pairs.png,
target_counts.png (targeted modes), per_class.png, fitness.png and examples.png. Every other
method of the run is compared with the main one on the same attacks (McNemar's exact test).
With several folders, or --table FILE, it also writes a Markdown table comparing the runs side
by side, one row per run and method. FILE may not be a file of a run folder (its records, or
what the report writes there), a device or a fifo; a symbolic link is followed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from onepixel_jax.cli import errors
from onepixel_jax.errors import UsageError
from onepixel_jax.files import UnsafeFileError, resolve_output, write_bytes_atomic


def run(args: argparse.Namespace) -> int:
    from onepixel_jax.experiments import run_folder
    from onepixel_jax.experiments.report import (
        OUTPUTS,
        REPORT_HINT,
        check_protected,
        check_report_outputs,
        comparison_table,
        write_report,
    )
    from onepixel_jax.experiments.summary import summary_line

    for run_dir in args.run_dirs:  # every folder readable before anything is written
        run_folder.load_run(run_dir, REPORT_HINT)
        run_folder.saved_image_count(run_dir, REPORT_HINT)
        check_report_outputs(run_dir)
    table = None
    if args.table:
        errors.check_output_file(args.table, "--table")
        check_protected(args.table, args.run_dirs, "--table")
        try:  # a link is followed; a device or fifo is refused
            table = resolve_output(args.table)
        except UnsafeFileError as exc:
            raise UsageError(f"--table: {exc}") from None
        outputs = [Path(d) / name for d in args.run_dirs for name in OUTPUTS]
        if any(os.path.realpath(o) == str(table) for o in outputs):
            raise UsageError(
                f"--table {args.table} is a file the report writes into a run folder; write "
                "the table elsewhere"
            )
    from onepixel_jax.experiments import l0

    for run_dir in args.run_dirs:
        if l0.is_l0_run(run_folder.read_run_info(run_dir, REPORT_HINT)):  # an L0 ladder
            print(l0.summary_line(Path(run_dir).name, l0.write_l0_report(run_dir)))
            print(f"wrote {Path(run_dir) / l0.TABLE}")
            continue
        summary = write_report(run_dir)
        print(f"{Path(run_dir).name}: {summary_line(summary)}")
        print(f"wrote {Path(run_dir) / run_folder.REPORT}")
    sweeps = [d for d in args.run_dirs if not l0.is_l0_run(run_folder.read_run_info(d))]
    if sweeps and (args.table or len(args.run_dirs) > 1):
        text = comparison_table(sweeps)
        if table is not None:
            table.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(table, text.encode("utf-8"))
            print(f"wrote {args.table}")
        else:
            print(text, end="")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add the ``report`` sub-command."""
    p = subparsers.add_parser(
        "report",
        help="measurements and figures of attack run folders, and a table comparing them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        type=errors.non_empty,
        help="run folder(s) written by onepixel attack",
    )
    p.add_argument(
        "--table",
        metavar="FILE",
        type=errors.non_empty,
        help="write a Markdown table with one row per run and method to FILE (printed when "
        "several runs are given and FILE is not)",
    )
    p.set_defaults(func=errors.command("onepixel report", run))
