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
import time
from typing import Any

from onepixel_jax import progress as progress_lib
from onepixel_jax.cli import errors
from onepixel_jax.errors import UsageError
from onepixel_jax.experiments import inputs
from onepixel_jax.experiments.selection import MODES
from onepixel_jax.experiments.sweep import (
    SettingError,
    SweepConfig,
    SweepOutcome,
    SweepProgress,
    known_methods,
    run_sweep,
)
from onepixel_jax.objective import STOP_RULES

EARLY_STOP_CHOICES = tuple("none" if r is None else r for r in STOP_RULES)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        type=errors.non_empty,
        help="committed checkpoint name (list them with: onepixel models), checkpoint folder, "
        ".onnx file, or saved PyTorch model: a torch.export archive (.pt2) or a state dict "
        "(.pt, .pth) with --torch-arch",
    )
    # A saved PyTorch model (docs/targets.md): the architecture of a state dict.
    p.add_argument(
        "--torch-arch",
        default=None,
        metavar="MODULE:CLASS",
        type=errors.non_empty,
        help="for --model weights.pt: the torch.nn.Module class to load the state dict into, "
        "by import path (e.g. mypkg.nets:Net; built with no arguments; weights read with "
        "torch.load(weights_only=True))",
    )
    errors.add_image_flags(p)
    p.add_argument(
        "--pixels",
        type=pixels_arg,
        default=None,
        help="perturbed pixels d (default: 1); a strictly growing list such as 1,2,3,5,10,20 "
        "attacks each image with growing d until it is fooled (the L0 curve, docs/search.md)",
    )
    p.add_argument(
        "--protocol",
        default=None,
        metavar="NAME",
        type=protocol_arg,
        help="a named L0 protocol instead of --pixels, --strategy and --max-queries: "
        "sparse-k20 (Sparse-RS as published, 20 pixels, 10,000 queries) or fast-ladder",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="untargeted",
        help="untargeted: true non-targeted attack; targeted: one seeded random target per "
        "image; all-targets: every other class, batched (default: untargeted)",
    )
    p.add_argument(
        "--popsize",
        type=errors.int_at_least(4),
        default=None,
        help="candidates per generation (default: the strategy's own; 400 for de and paper)",
    )
    p.add_argument(
        "--max-iters",
        type=errors.int_at_least(0),
        default=None,
        help="generations after the first (default: the strategy's own; 100 for de and paper, "
        "as many as fit 40,400 evaluations for the others)",
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
        default=None,
        help="images per engine call and per write; part of the configuration (default: the "
        "device's size, 16 on a CPU, recorded in run.json)",
    )
    p.add_argument(
        "--batch-size",
        type=errors.int_at_least(1),
        default=None,
        help="attacks evolved side by side inside a call: memory and speed, not part of the "
        "configuration, may change between resumes (default: about 4M input values per "
        "model call)",
    )
    names = known_methods()
    p.add_argument(
        "--strategy",
        choices=names,
        default="de",
        metavar="METHOD",
        help="search method: a strategy or a preset such as de-best1 (default: de, the "
        "paper's differential evolution; see docs/search.md)",
    )
    p.add_argument(
        "--baseline",
        choices=("none", *names),
        action="append",
        default=None,
        metavar="METHOD",
        help="also run this search with the same evaluation budget on the same attacks, "
        "e.g. random (the paper's baseline); repeat for several",
    )
    p.add_argument(
        "--own-budgets",
        action="store_true",
        help="each method at its own budget (a preset's popsize and generations, a "
        "strategy's defaults) instead of one shared --popsize and --max-iters",
    )
    p.add_argument(
        "--max-queries",
        type=errors.int_at_least(1),
        default=None,
        help="cap every method's budget at this many model evaluations per attack",
    )
    p.add_argument(
        "--shared-keys",
        action="store_true",
        help="every method draws the same random numbers (common random numbers)",
    )
    p.add_argument(
        "--include-misclassified",
        action="store_true",
        help="attack every image with the model's prediction as label (Kaggle protocol)",
    )
    p.add_argument("--out", required=True, type=errors.non_empty, help="run folder, runs/NAME")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group(
        "array jobs and clusters (docs/scaling.md)",
        "every local device (GPUs, TPU cores) attacks its share of each chunk on its own;\n"
        "these flags split the chunks among jobs or processes",
    )
    g.add_argument(
        "--shard",
        type=shard_arg,
        default=None,
        metavar="I/N",
        help="attack only share I of N (0 <= I < N; chunks I, I+N, ...) into the run "
        "folder's results file of that share; the N shares may run at once (an array job) "
        "and onepixel report merges them into the records of one run",
    )
    g.add_argument(
        "--distributed",
        action="store_true",
        help="start jax.distributed (its settings from the flags below or from the cluster's "
        "environment: SLURM, TPU pods, ...); each process attacks its share of the chunks "
        "with its local devices and process 0 writes the report",
    )
    g.add_argument(
        "--coordinator-address",
        default=None,
        metavar="HOST:PORT",
        type=errors.host_port,
        help="jax.distributed coordinator (process 0's host); implies --distributed",
    )
    g.add_argument(
        "--num-processes",
        type=errors.int_at_least(1),
        default=None,
        help="jax.distributed process count; implies --distributed",
    )
    g.add_argument(
        "--process-id",
        type=errors.int_at_least(0),
        default=None,
        help="this process's jax.distributed id in [0, --num-processes); implies --distributed",
    )


def pixels_arg(text: str) -> int | tuple[int, ...]:
    """The ``--pixels`` argument type: one count, or a strictly growing comma list (a ladder)."""
    from onepixel_jax.experiments import l0

    if "," not in text:
        return errors.int_at_least(1)(text)
    try:
        return l0.parse_pixels(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def protocol_arg(text: str) -> str:
    """The ``--protocol`` argument type: a name of ``l0.PROTOCOLS``."""
    from onepixel_jax.experiments import l0

    if text not in l0.PROTOCOLS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(l0.PROTOCOLS)}, got {text!r}")
    return text


def shard_arg(text: str) -> tuple[int, int]:
    """The ``--shard I/N`` argument type: ``(I, N)`` with ``0 <= I < N``."""
    i, sep, n = text.partition("/")
    if not sep or not i.strip().isdigit() or not n.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be I/N such as 0/3, got {text!r}")
    i, n = int(i), int(n)
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"must be I/N with 0 <= I < N, got {text!r}")
    return i, n


def cluster_share(args: argparse.Namespace) -> tuple[tuple[int, int] | None, list | None]:
    """``(shard, devices)`` of this process: ``--shard`` as given, or with the cluster flags,
    ``jax.distributed.initialize`` and then this process's share ``(process index, process
    count)`` and its local devices. ``devices`` None: every device of the process."""
    flags = (args.coordinator_address, args.num_processes, args.process_id)
    if not args.distributed and all(v is None for v in flags):
        return args.shard, None
    if args.shard is not None:
        raise UsageError(
            "--shard cannot be combined with --distributed, --coordinator-address, "
            "--num-processes or --process-id (each process already attacks its share)"
        )
    if args.process_id is not None and args.num_processes is not None:
        if args.process_id >= args.num_processes:
            raise UsageError(
                f"--process-id {args.process_id} must be below --num-processes {args.num_processes}"
            )
    import jax

    try:
        jax.distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"jax.distributed.initialize failed: {exc}") from None
    count, index = jax.process_count(), jax.process_index()
    return ((index, count) if count > 1 else None), list(jax.local_devices())


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    """The sweep configuration of parsed ``onepixel attack`` arguments (UsageError if bad)."""
    methods = (args.strategy,)
    for baseline in args.baseline or ():
        if baseline == "none":
            continue
        if baseline in methods:
            what = "the --strategy itself" if baseline == args.strategy else "given twice"
            raise UsageError(f"--baseline {baseline} is {what}")
        methods += (baseline,)
    popsize, max_iters = args.popsize, args.max_iters
    own_budgets = bool(getattr(args, "own_budgets", False))
    if own_budgets:
        for flag, value in (("--popsize", popsize), ("--max-iters", max_iters)):
            if value is not None:
                raise UsageError(f"{flag} cannot be combined with --own-budgets")
        popsize, max_iters = 400, 100  # replaced by the largest of the methods' own
    elif popsize is None or max_iters is None:  # the first method's own budget
        from onepixel_jax.experiments import methods as methods_lib

        try:
            own = methods_lib.get(args.strategy).attack_config(pixels=args.pixels or 1)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--strategy {args.strategy}: {exc}") from None
        if popsize is None and max_iters is None:
            popsize, max_iters = own.popsize, own.max_iters
        popsize = own.popsize if popsize is None else popsize
        if max_iters is None:
            try:
                max_iters = methods_lib.attack_config(
                    args.strategy, pixels=args.pixels or 1, budget=(popsize, None)
                ).max_iters
            except (ValueError, TypeError) as exc:
                raise UsageError(f"--strategy {args.strategy}: {exc}") from None
    try:
        return SweepConfig(
            model=args.model,
            dataset=args.dataset,
            split=args.split,
            n_images=args.n_images,
            pixels=1 if args.pixels is None else args.pixels,
            mode=args.mode,
            popsize=popsize,
            max_iters=max_iters,
            early_stop=None if args.early_stop == "none" else args.early_stop,
            threshold=args.threshold,
            seed=args.seed,
            chunk_size=args.chunk_size,
            methods=methods,
            include_misclassified=bool(args.include_misclassified),
            own_budgets=own_budgets,
            max_queries=getattr(args, "max_queries", None),
            shared_keys=bool(getattr(args, "shared_keys", False)),
        )
    except SettingError as exc:
        raise _flag_error(exc) from None


def _flag_error(exc: SettingError) -> UsageError:
    flag = "--" + exc.field.replace("_", "-")
    if exc.field == "early_stop":
        flag = "--early-stop"
    elif exc.field == "methods":
        flag = "--strategy/--baseline"
    elif exc.field == "max_queries":
        flag = "--max-queries"
    return UsageError(
        f"{flag} {exc.detail}".replace("early_stop threshold", "--early-stop threshold")
    )


class ProgressBar:
    """The sweep's progress on stderr, fed by its progress callback: images done (moving per
    generation inside a chunk), images fooled by the main method, evaluations/s and ETA.

    On a terminal a tqdm bar redraws in place; otherwise (a log file, a batch job) plain
    lines are written: the first report, then at most one every ``plain_interval`` seconds,
    and the last one.
    """

    def __init__(
        self, quiet: bool, stream=None, plain_interval: float = 30.0, clock=time.monotonic
    ) -> None:
        self.quiet = quiet
        self.clock = clock
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.plain_interval = plain_interval
        self.bar = None
        self.last: float | None = None
        self.started = clock()
        self.base: float | None = None  # images done when this session's first report came

    def __call__(self, p: SweepProgress) -> None:
        if self.quiet:
            return
        if not self.tty:
            self._plain(p)
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=p.images_total,
                initial=p.images_done,
                unit="img",
                file=self.stream,
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

    def _plain(self, p: SweepProgress) -> None:
        now = self.clock()
        last = p.images_done >= p.images_total
        if self.last is not None and now - self.last < self.plain_interval and not last:
            return
        self.last = now
        done = p.images_done + p.partial * p.chunk_images
        if self.base is None:  # a resumed run: its earlier images took no time here
            self.base = float(p.images_done)
        rate = p.queries / p.seconds if p.seconds > 0 else math.nan
        new = done - self.base
        eta = (now - self.started) * (p.images_total - done) / new if new > 0 else math.nan
        evals = f"{rate:,.0f}/s" if math.isfinite(rate) else "-/s"
        print(
            f"[sweep] {done:.1f}/{p.images_total} images  fooled {p.fooled}/{p.images_done}  "
            f"{evals}  ETA {progress_lib.duration(eta)}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _interrupt_on_sigterm():
    """Treat SIGTERM like Ctrl-C (finished records are on disk either way); returns the old
    handler, or None when handlers cannot be installed (not the main thread)."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    if errors.interrupts_handled():  # the onepixel process's own handlers (exit code 143)
        return None
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
    shard: tuple[int, int] | None = None,
    devices: list | None = None,
    torch_arch: str | None = None,
) -> SweepOutcome | None:
    """Load the model and data, run the sweep with a progress bar and write the report.

    ``shard`` ``(i, n)``: attack only that share of the chunks (see ``run_sweep``);
    ``devices``: the devices the engine spreads each chunk over (None: all of them);
    ``torch_arch``: the architecture of a PyTorch state dict given as the model.
    Returns None when interrupted (after saying how to resume). Shared by ``attack`` and
    ``demo``.
    """
    errors.check_output_dir(out)
    errors.check_input_dir(data_dir, "--data-dir")
    inputs.check_sizes(config, batch_size)  # int32 counters, before loading anything
    predict_fn, card = inputs.load_model(config.model, torch_arch=torch_arch)
    images, labels, class_names = inputs.load_dataset(
        config.dataset, config.split, data_dir, download
    )
    inputs.check_sweep(config, predict_fn, card, images, labels, batch_size)  # memory, contract
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
            attack_fn=None if devices is None else _attack_on(devices),
            shard=shard,
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
        _report(out)
    return outcome


def _report(out: str) -> None:
    from onepixel_jax.experiments.report import write_report
    from onepixel_jax.experiments.summary import summary_line

    print(summary_line(write_report(out)))


def _attack_on(devices: list):
    """``opj.attack`` spreading its images over ``devices`` only."""
    import functools

    import onepixel_jax as opj

    return functools.partial(opj.attack, mesh=devices)


# --------------------------------------------------------------------------------------
# The L0 ladder: --pixels 1,2,3,5,10,20 or --protocol NAME (onepixel_jax.experiments.l0)


def is_ladder(args: argparse.Namespace) -> bool:
    return isinstance(args.pixels, tuple) or getattr(args, "protocol", None) is not None


def l0_config_from_args(args: argparse.Namespace):
    """The :class:`~onepixel_jax.experiments.l0.L0Config` of a ladder's arguments."""
    from onepixel_jax.experiments import l0

    refused = [
        ("--baseline", [b for b in args.baseline or () if b != "none"]),
        ("--popsize", args.popsize is not None),
        ("--max-iters", args.max_iters is not None),
        ("--own-budgets", args.own_budgets),
        ("--shared-keys", args.shared_keys),
        ("--threshold", args.threshold is not None),
        ("--shard", args.shard is not None),
        ("--distributed", args.distributed or args.coordinator_address is not None),
    ]
    for flag, given in refused:
        if given:
            raise UsageError(f"{flag} does not apply to an L0 ladder (--pixels LIST, --protocol)")
    if args.mode == "all-targets":
        raise UsageError("--mode all-targets does not apply to an L0 ladder")
    if args.early_stop not in ("success", "target_over_true"):
        raise UsageError("an L0 ladder stops each image at its first success: drop --early-stop")
    fields = dict(
        model=args.model,
        dataset=args.dataset,
        split=args.split,
        n_images=args.n_images,
        mode=args.mode,
        seed=args.seed,
        include_misclassified=bool(args.include_misclassified),
    )
    if args.chunk_size is not None:
        fields["chunk_size"] = args.chunk_size
    try:
        if args.protocol is not None:
            for flag, given in (
                ("--pixels", args.pixels is not None),
                ("--strategy", args.strategy != "de"),
                ("--max-queries", args.max_queries is not None),
            ):
                if given:
                    raise UsageError(f"{flag} cannot be combined with --protocol")
            return l0.protocol(args.protocol).config(**fields)
        return l0.L0Config(
            pixels=args.pixels, method=args.strategy, max_queries=args.max_queries, **fields
        )
    except l0.L0SettingError as exc:
        flag = {"method": "--strategy", "pixels": "--pixels"}.get(exc.field)
        raise UsageError(f"{flag or '--' + exc.field.replace('_', '-')} {exc.detail}") from None


def run_ladder(args: argparse.Namespace) -> int:
    """``onepixel attack --pixels LIST`` / ``--protocol NAME``: the L0 ladder and its report."""
    from onepixel_jax.experiments import l0

    config = l0_config_from_args(args)
    errors.check_output_dir(args.out)
    errors.check_input_dir(args.data_dir, "--data-dir")
    predict_fn, card = inputs.load_model(config.model, torch_arch=args.torch_arch)
    images, labels, class_names = inputs.load_dataset(
        config.dataset, config.split, args.data_dir, args.download
    )
    shape = images.shape[1:3]
    try:
        l0.check_ladder(config.pixels, *shape)
    except l0.L0SettingError as exc:
        raise UsageError(f"--pixels {exc.detail}") from None
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    previous = _interrupt_on_sigterm()
    try:
        l0.run_l0(
            config, args.out, predict_fn, images, labels, card=card, class_names=class_names,
            data_dir=args.data_dir, progress=progress,
        )  # fmt: skip
    except l0.L0SettingError as exc:
        raise UsageError(f"--{exc.field.replace('_', '-')} {exc.detail}") from None
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume {args.out}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if not args.no_report:
        print(l0.summary_line(args.out, l0.write_l0_report(args.out)))
    return 0


def run(args: argparse.Namespace) -> int:
    if is_ladder(args):
        return run_ladder(args)
    config = config_from_args(args)
    shard, devices = cluster_share(args)
    outcome = sweep(
        config,
        args.out,
        data_dir=args.data_dir,
        download=args.download,
        batch_size=args.batch_size,
        quiet=args.quiet,
        report=not args.no_report and shard is None,
        shard=shard,
        devices=devices,
        torch_arch=args.torch_arch,
    )
    if outcome is None:
        return 130
    if shard is not None and not args.no_report:
        if devices is None:  # an array job: other shares may still be running
            print(
                f"share {shard[0]}/{shard[1]} done; once every share has finished: "
                f"onepixel report {args.out}",
                file=sys.stderr,
            )
        else:  # processes of one jax.distributed job: process 0 reports once all are done
            import jax
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("onepixel attack: every share written")
            if jax.process_index() == 0:
                _report(args.out)
    return 0


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


__all__ = [
    "add_arguments",
    "cluster_share",
    "config_from_args",
    "l0_config_from_args",
    "pixels_arg",
    "protocol_arg",
    "register_cli",
    "run",
    "run_ladder",
    "shard_arg",
    "sweep",
]
