"""onepixel experiment: the search and defence measurement grids, written as run folders.

  onepixel experiment search --root DIR --cell NAME [--cell NAME ...]
  onepixel experiment search --root DIR --model M --pixels D --methods a,b --n-images N
  onepixel experiment defences --root DIR --model M [--pixels 1 3] [--defended NAME ...]
  onepixel experiment report search INPUT ... [--markdown FILE] [--figures DIR]
  onepixel experiment report defences ROOT [--markdown FILE] [--figures DIR]
  onepixel experiment paired --reference DIR --candidate DIR --out FILE [--stall K]
  onepixel experiment corner-table build|replay ...
  onepixel experiment promote CHECKPOINT_DIR --name NAME
  onepixel experiment evolve --model M --out DIR

Each cell is an ordinary run folder under --root (onepixel report reads it); running the same
command again resumes it, and a larger --n-images grows it. The grids are
onepixel_jax.experiments.grids, the reports onepixel_jax.experiments.grid_report, the named
methods (strategies and presets such as de-best1) onepixel_jax.experiments.methods.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from onepixel_jax.cli import errors
from onepixel_jax.errors import UsageError


def _pair(kind: str):
    """Argument type ``METHOD:N`` -> ``(METHOD, N)`` with N >= 1."""

    def parse(text: str) -> tuple[str, int]:
        name, sep, n = text.rpartition(":")
        if not sep or not name or not n.strip().isdigit() or int(n) < 1:
            raise argparse.ArgumentTypeError(
                f"must be METHOD:{kind} such as paper:4000, got {text!r}"
            )
        return name, int(n)

    return parse


def _method_list(text: str) -> tuple[str, ...]:
    from onepixel_jax.experiments import methods as methods_lib

    names = tuple(m.strip() for m in text.split(",") if m.strip())
    if not names:
        raise argparse.ArgumentTypeError("must name at least one method")
    known = methods_lib.names()
    for m in names:
        if m not in known:
            raise argparse.ArgumentTypeError(
                f"unknown method {m!r} (available: {', '.join(known)})"
            )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"names a method twice: {text!r}")
    return names


def _progress(quiet: bool):
    from onepixel_jax.cli.attack import ProgressBar

    return ProgressBar(quiet)


def _setting_error(exc: Exception) -> UsageError:
    from onepixel_jax.experiments.sweep import SettingError

    if isinstance(exc, SettingError):
        return UsageError(f"--{exc.field.replace('_', '-')} {exc.detail}")
    return UsageError(str(exc))


# --------------------------------------------------------------------------------------
# search


def _search_cells(args: argparse.Namespace) -> list:
    from onepixel_jax.experiments import grids
    from onepixel_jax.experiments.sweep import SettingError

    adhoc = args.model is not None or args.methods is not None
    if args.cell and adhoc:
        raise UsageError("--cell cannot be combined with --model/--methods (a cell of your own)")
    if args.cell:
        return [grids.search_cell(name) for name in args.cell]
    if not adhoc:
        raise UsageError("give --cell NAME (see --list) or --model and --methods")
    if args.model is None or args.methods is None:
        raise UsageError("a cell of your own needs both --model and --methods")
    if args.n_images is None:
        raise UsageError("a cell of your own needs --n-images")
    name = args.name or "-".join(
        [args.model, f"d{args.pixels}"]
        + (["targeted"] if args.targeted else [])
        + ([f"cap{args.max_queries}"] if args.max_queries else [])
    )
    try:
        return [
            grids.SearchCell(
                name=name,
                model=args.model,
                pixels=args.pixels,
                targeted=args.targeted,
                methods=args.methods,
                n_images=args.n_images,
                max_queries=args.max_queries,
                chunk_size=args.chunk_size,
                seed=args.seed,
            )
        ]
    except SettingError as exc:
        raise _setting_error(exc) from None


def run_search(args: argparse.Namespace) -> int:
    from onepixel_jax.experiments import grids
    from onepixel_jax.experiments.sweep import SettingError

    if args.list:
        for cell in grids.SEARCH_CELLS.values():
            cap = "" if cell.max_queries is None else f", cap {cell.max_queries:,}"
            print(
                f"{cell.name}: {cell.model}, d = {cell.pixels}"
                f"{', targeted' if cell.targeted else ''}, {cell.n_images} images{cap}: "
                f"{', '.join(cell.methods)}"
            )
        return 0
    if args.root is None:
        raise UsageError("--root is required (the folder the cells' run folders go into)")
    errors.check_output_dir(args.root, "--root")
    errors.check_input_dir(args.data_dir, "--data-dir")
    cells = _search_cells(args)
    for cell in cells:
        bar = _progress(args.quiet)
        try:
            outcome = grids.run_search_cell(
                cell,
                args.root,
                n_images=args.n_images if args.cell else None,
                data_dir=args.data_dir,
                batch_size=args.batch_size,
                progress=None if args.quiet else bar,
            )
        except KeyboardInterrupt:
            bar.close()
            print("interrupted; run the same command again to resume", file=sys.stderr)
            return 130
        except SettingError as exc:
            raise _setting_error(exc) from None
        finally:
            bar.close()
        print(f"{outcome.out}: {outcome.attacks_run} attacks run, {outcome.attacks_reused} kept")
    return 0


# --------------------------------------------------------------------------------------
# defences


def run_defences(args: argparse.Namespace) -> int:
    from onepixel_jax.experiments import grids
    from onepixel_jax.experiments.sweep import SettingError

    errors.check_output_dir(args.root, "--root")
    errors.check_input_dir(args.data_dir, "--data-dir")
    try:
        grid = grids.DefenceGrid(
            model=args.model,
            methods=args.methods,
            pixels=tuple(args.pixels),
            n_images=args.n_images,
            limit_images=args.limit_images,
            clean_images=args.clean_images,
            adaptive=args.adaptive,
            defended=tuple(args.defended),
            squeezers=args.squeezers,
            detector=args.detector,
            calibration=args.calibration,
            fpr=args.fpr,
            seed=args.seed,
            chunk_size=args.chunk_size,
        )
    except SettingError as exc:
        raise _setting_error(exc) from None
    bar = _progress(args.quiet)
    try:
        grids.run_defence_grid(
            grid,
            args.root,
            data_dir=args.data_dir,
            batch_size=args.batch_size,
            progress=None if args.quiet else bar,
            log=print,
        )
    except KeyboardInterrupt:
        bar.close()
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except SettingError as exc:
        raise _setting_error(exc) from None
    finally:
        bar.close()
    return 0


# --------------------------------------------------------------------------------------
# report


def _write(text: str, path: str | None) -> None:
    from onepixel_jax.files import write_bytes_atomic

    if path is None:
        print(text, end="")
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, text.encode("utf-8"))
    print(f"wrote {path}")


def run_report(args: argparse.Namespace) -> int:
    from onepixel_jax.experiments import grid_report

    if args.markdown is not None:
        errors.check_output_file(args.markdown, "--markdown")
    if args.figures is not None:
        errors.check_output_dir(args.figures, "--figures")
    if args.kind == "defences":
        wrong = [
            flag
            for flag, value in (
                ("--truncate", args.truncate), ("--replay", args.replay),
                ("--paired", args.paired), ("--all-images", args.all_images),
            )
            if value
        ]  # fmt: skip
        if wrong:
            raise UsageError(f"{wrong[0]} applies to report search, not defences")
        if len(args.inputs) != 1:
            raise UsageError("report defences takes one ROOT (the folder of the defence grid)")
        text = grid_report.defence_report(args.inputs[0])
        if args.fooling:
            fig = None if args.figures is None else Path(args.figures) / "fooling_class_rounds.png"
            text += "\n### Fooling-class rounds\n\n" + grid_report.fooling_table(args.fooling, fig)
        if args.figures is not None:
            grid_report.success_figure(args.inputs[0], Path(args.figures) / "attack_success.png")
        _write(text + "\n", args.markdown)
        return 0
    if args.fooling:
        raise UsageError("--fooling applies to report defences, not search")
    runs = grid_report.read_search(args.inputs)
    if not runs:
        raise UsageError("no search records in the inputs")
    grid_report.add_replays(runs, truncate=args.truncate, replay=args.replay)
    text = grid_report.search_report(
        runs,
        paired=args.paired,
        all_images=args.all_images,
        figures=args.figures,
        figure_link=args.figure_link,
    )
    _write(text, args.markdown)
    return 0


# --------------------------------------------------------------------------------------
# corner table, promote, evolve


def run_corner_table(args: argparse.Namespace) -> int:
    from onepixel_jax.experiments import corner_table

    if args.action == "build":
        if args.model is None or args.n_images is None or args.out is None:
            raise UsageError("corner-table build needs --model, --n-images and --out")
        errors.check_output_file(args.out, "--out")
        corner_table.build(args.model, args.n_images, args.out, call=args.call)
        return 0
    if args.table is None:
        raise UsageError("corner-table replay needs --table (a file written by build)")
    if not Path(args.table).is_file():
        raise UsageError(f"--table {args.table} not found")
    if args.json is not None:
        errors.check_output_file(args.json, "--json")
    print(
        corner_table.replay(
            args.table,
            popsize=args.popsize,
            budget=args.budget,
            stalls=args.stall,
            stall_eps=args.stall_eps,
            seed=args.seed,
            json_out=args.json,
        ),
        end="",
    )
    return 0


def run_promote(args: argparse.Namespace) -> int:
    from onepixel_jax.experiments import defence_models

    defence_models.promote(args.source, args.name, args.command)
    return 0


def run_evolve(args: argparse.Namespace) -> int:
    from onepixel_jax.experiments import defence_models

    errors.check_output_dir(args.out)
    defence_models.evolve(
        args.model, args.out, generations=args.generations, popsize=args.popsize, seed=args.seed
    )
    return 0


# --------------------------------------------------------------------------------------
# parsers


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, type=errors.non_empty, help="dataset folder")
    p.add_argument(
        "--batch-size",
        type=errors.int_at_least(1),
        default=None,
        help="attacks evolved side by side (memory and speed only)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _search_parser(sub: Any) -> None:
    p = sub.add_parser(
        "search",
        help="search cells: named methods at their own budgets on the same images",
        description="Run, resume or grow search cells into ROOT/<cell name> (run folders).",
    )
    p.add_argument("--root", type=errors.non_empty, default=None, help="folder of the cells")
    p.add_argument(
        "--cell", action="append", default=None, metavar="NAME", help="a predefined cell"
    )
    p.add_argument("--list", action="store_true", help="list the predefined cells and exit")
    p.add_argument(
        "--n-images",
        type=errors.int_at_least(1),
        default=None,
        help="images (a predefined cell: instead of its own, e.g. fewer into another --root)",
    )
    g = p.add_argument_group("a cell of your own")
    g.add_argument("--name", type=errors.non_empty, default=None, help="its folder name")
    g.add_argument("--model", type=errors.non_empty, default=None, help="checkpoint name")
    g.add_argument("--pixels", type=errors.int_at_least(1), default=1, help="d (default: 1)")
    g.add_argument("--targeted", action="store_true", help="one seeded random target per image")
    g.add_argument(
        "--methods", type=_method_list, default=None, help="comma-separated method names"
    )
    g.add_argument(
        "--max-queries", type=errors.int_at_least(1), default=None, help="cap every budget"
    )
    g.add_argument(
        "--chunk-size", type=errors.int_at_least(1), default=5, help="images per engine call"
    )
    g.add_argument("--seed", type=errors.seed, default=0, help="random seed (default: 0)")
    _common(p)
    p.set_defaults(func=errors.command("onepixel experiment search", run_search))


def _defences_parser(sub: Any) -> None:
    p = sub.add_parser(
        "defences",
        help="defence cells: squeezed pipelines, the detector, defended checkpoints",
        description="Calibrate and run, resume or grow a defence grid into ROOT/<model>/.",
    )
    p.add_argument("--root", required=True, type=errors.non_empty, help="folder of the grid")
    p.add_argument("--model", required=True, type=errors.non_empty, help="undefended network")
    p.add_argument(
        "--methods",
        type=_method_list,
        default=("fast-p128",),
        help="comma-separated method names (default: fast-p128)",
    )
    p.add_argument(
        "--pixels", type=errors.int_at_least(1), nargs="+", default=[1], help="values of d"
    )
    p.add_argument(
        "--n-images", type=errors.int_at_least(1), default=100, help="images of the none cells"
    )
    p.add_argument(
        "--limit-images",
        type=errors.int_at_least(1),
        default=None,
        help="images of the other cells (the first of the none cells'; default: --n-images)",
    )
    p.add_argument(
        "--clean-images", type=errors.int_at_least(1), default=1000, help="for clean accuracy"
    )
    p.add_argument(
        "--no-adaptive",
        dest="adaptive",
        action="store_false",
        help="no squeezed-pipeline or detector cells",
    )
    p.add_argument("--defended", nargs="*", default=[], help="defended checkpoints to attack")
    p.add_argument("--squeezers", nargs="+", default=None, help="default: the dataset's")
    p.add_argument("--detector", nargs="+", default=None, help="the detector's squeezers")
    p.add_argument(
        "--calibration",
        type=errors.int_at_least(0),
        nargs=2,
        default=None,
        metavar=("START", "STOP"),
        help="test images the detector is calibrated on (default: the dataset's)",
    )
    p.add_argument("--fpr", type=errors.finite_float, default=0.05, help="detector false positives")
    p.add_argument("--seed", type=errors.seed, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--chunk-size", type=errors.int_at_least(1), default=None, help="images per engine call"
    )
    _common(p)
    p.set_defaults(func=errors.command("onepixel experiment defences", run_defences))


def _report_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="tables and figures of search cells or a defence grid",
        description="The tables (Markdown) and figures of the measurement grids.",
    )
    p.add_argument("kind", choices=("search", "defences"))
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        type=errors.non_empty,
        help="search: run folders, folders of them, .jsonl records; defences: the grid root",
    )
    p.add_argument("--markdown", type=errors.non_empty, default=None, help="write it here")
    p.add_argument("--figures", type=errors.non_empty, default=None, help="figure folder")
    p.add_argument(
        "--figure-link",
        default="figures/search",
        help="search: how the Markdown links the figures (default: figures/search)",
    )
    p.add_argument(
        "--truncate",
        type=_pair("CAP"),
        action="append",
        default=[],
        help="search: add METHOD as a run capped at CAP queries would have ended",
    )
    p.add_argument(
        "--replay",
        type=_pair("K"),
        action="append",
        default=[],
        help="search: add METHOD with the stall rule of K generations, replayed",
    )
    p.add_argument(
        "--paired",
        action="append",
        default=[],
        help="search: every method against this one on the images both ran (repeatable)",
    )
    p.add_argument(
        "--all-images",
        action="store_true",
        help="search: each method on all its images (default: the images all methods ran)",
    )
    p.add_argument("--fooling", nargs="*", default=[], help="defences: fooling-class work folders")
    p.set_defaults(func=errors.command("onepixel experiment report", run_report))


def run_paired(args: argparse.Namespace) -> int:
    import json

    from onepixel_jax.experiments import paired
    from onepixel_jax.files import write_bytes_atomic

    out = errors.check_output_file(args.out, "--out")
    reference = paired.load_side(args.reference, args.reference_method, "--reference")
    candidate = paired.load_side(args.candidate, args.candidate_method, "--candidate")
    if args.stall is not None:
        candidate = paired.replayed(candidate, args.stall, args.popsize)
    result = paired.compare(reference, candidate, args.label)
    result["sources"] = {
        "paper": args.reference, "fast": args.candidate, "fast_method": args.candidate_method
    }  # fmt: skip
    result["stall_replayed"] = args.stall
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, (json.dumps(result, indent=1) + "\n").encode("utf-8"))
    print(paired.summary_line(result))
    return 0


def _paired_parser(sub: Any) -> None:
    p = sub.add_parser(
        "paired",
        help="a method against the paper's DE on the same images, image by image (JSON)",
    )
    p.add_argument("--reference", required=True, type=errors.non_empty,
                   help="run folder of the reference (the paper's DE)")  # fmt: skip
    p.add_argument("--candidate", required=True, type=errors.non_empty,
                   help="run folder of the method compared with it (fast)")  # fmt: skip
    p.add_argument("--reference-method", default=None, help="its method, in a folder of several")
    p.add_argument("--candidate-method", default=None, help="its method, in a folder of several")
    p.add_argument("--stall", type=errors.int_at_least(1), default=None,
                   help="replay the candidate as a stall rule of this many generations would "
                   "have ended it")  # fmt: skip
    p.add_argument("--popsize", type=errors.int_at_least(1), default=None,
                   help="the candidate's popsize (--stall), where its records lack it")  # fmt: skip
    p.add_argument("--label", default="", help="a label written into the result")
    p.add_argument("--out", required=True, type=errors.non_empty, help="the JSON file written")
    p.set_defaults(func=errors.command("onepixel experiment paired", run_paired))


def _tools_parsers(sub: Any) -> None:
    c = sub.add_parser(
        "corner-table",
        help="every corner pixel of some images evaluated once; scan orders replayed on it",
    )
    c.add_argument("action", choices=("build", "replay"))
    c.add_argument("--model", type=errors.non_empty, default=None, help="build: checkpoint")
    c.add_argument("--n-images", type=errors.int_at_least(1), default=None, help="build")
    c.add_argument("--out", type=errors.non_empty, default=None, help="build: the .npz table")
    c.add_argument(
        "--call", type=errors.int_at_least(1), default=2048, help="build: candidates per call"
    )
    c.add_argument("--table", type=errors.non_empty, default=None, help="replay: the .npz")
    c.add_argument("--popsize", type=errors.int_at_least(1), default=64, help="replay")
    c.add_argument("--budget", type=errors.int_at_least(1), default=40_400, help="replay")
    c.add_argument(
        "--stall", type=errors.int_at_least(0), nargs="+", default=[0, 16, 32, 64], help="replay"
    )
    c.add_argument("--stall-eps", type=errors.finite_float, default=1e-4, help="replay")
    c.add_argument("--seed", type=errors.seed, default=0, help="replay: random scan orders")
    c.add_argument(
        "--json", default=None, help="replay: also write every figure and per-image result here"
    )
    c.set_defaults(func=errors.command("onepixel experiment corner-table", run_corner_table))

    m = sub.add_parser("promote", help="add a trained defence checkpoint to the package's")
    m.add_argument("source", type=errors.non_empty, help="checkpoint folder")
    m.add_argument("--name", required=True, type=errors.non_empty, help="its checkpoint name")
    m.add_argument("--command", default=None, help="the command that trained it")
    m.set_defaults(func=errors.command("onepixel experiment promote", run_promote))

    e = sub.add_parser(
        "evolve", help="fooling images against a (fooling-class) network, real classes only"
    )
    e.add_argument("--model", required=True, type=errors.non_empty)
    e.add_argument("--generations", type=errors.int_at_least(1), default=1000)
    e.add_argument("--popsize", type=errors.int_at_least(1), default=100)
    e.add_argument("--seed", type=errors.seed, default=7)
    e.add_argument("--out", required=True, type=errors.non_empty)
    e.set_defaults(func=errors.command("onepixel experiment evolve", run_evolve))


def register_cli(subparsers: Any) -> None:
    """Add the ``experiment`` sub-command and its own sub-commands."""
    p = subparsers.add_parser(
        "experiment",
        help="the search and defence measurement grids (run folders) and their reports",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    _search_parser(sub)
    _defences_parser(sub)
    _report_parser(sub)
    _paired_parser(sub)
    _tools_parsers(sub)


__all__ = ["register_cli"]
