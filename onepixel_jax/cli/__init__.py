"""Command-line entry point: ``onepixel <command> ...``.

This package is argument parsing only; every command calls library functions. Each command
module exposes ``register_cli(subparsers)``, which adds its parser and sets ``func`` to a
callable ``func(args) -> int`` (the exit code). :func:`main` runs it through
:func:`onepixel_jax.cli.errors.run_command`, so that every command reports a bad argument,
input, path or file as one line on stderr with exit code 2. Run as the ``onepixel`` process
itself (``argv`` None), SIGINT and SIGTERM stop a command cleanly with exit code 130 or 143
(:func:`onepixel_jax.cli.errors.install_interrupt_handlers`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Nothing here imports JAX at module level: importing this package installs the interrupt
# handlers (cli.errors) before JAX's slow start-up.
from onepixel_jax.cli.errors import (
    ArgumentParser,
    finish_process,
    install_interrupt_handlers,
    run_command,
)

# Modules that contribute sub-commands, in the order they are listed by --help.
COMMAND_MODULES: tuple[str, ...] = (
    "onepixel_jax.cli.demo",
    "onepixel_jax.cli.attack",
    "onepixel_jax.cli.report",
    "onepixel_jax.cli.models",
    "onepixel_jax.cli.train",
    "onepixel_jax.cli.fool",
    "onepixel_jax.cli.defend",
    "onepixel_jax.cli.experiment",
    "onepixel_jax.cli.reproduce",
    "onepixel_jax.cli.verify",
)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="onepixel",
        description="Batched few-pixel adversarial attacks and fooling images in JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``onepixel`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    With ``argv`` None this is the ``onepixel`` process itself: interrupts are handled as
    described in :mod:`onepixel_jax.cli.errors`, and an interrupted command ends the process
    (``os._exit``) once its files are safe.
    """
    entry = argv is None
    if entry:
        install_interrupt_handlers()
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, or a one-line argument error
            return exc.code if isinstance(exc.code, int) else 2
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        from onepixel_jax import compile_cache

        compile_cache.enable()  # compiled programs reused by the next process
        code = run_command(f"onepixel {args.command}", args.func, args)
    except BrokenPipeError:  # `onepixel models | head`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    except KeyboardInterrupt:  # before the command started (while importing)
        print("onepixel: interrupted", file=sys.stderr)
        code = 130
    return finish_process(code) if entry else code


if __name__ == "__main__":
    sys.exit(main())
