"""Command-line entry point: ``onepixel <command> ...``.

This package is argument parsing only; every command calls library functions. Each command
module exposes ``register_cli(subparsers)``, which adds its parser and sets ``func`` to a
callable ``func(args) -> int`` (the exit code). :func:`main` runs it through
:func:`onepixel_jax.cli.errors.run_command`, so that every command reports a bad argument,
input, path or file as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from onepixel_jax.cli.errors import ArgumentParser, run_command

# Modules that contribute sub-commands, in the order they are listed by --help.
COMMAND_MODULES: tuple[str, ...] = (
    "onepixel_jax.cli.demo",
    "onepixel_jax.cli.attack",
    "onepixel_jax.cli.report",
    "onepixel_jax.cli.models",
    "onepixel_jax.cli.train",
    "onepixel_jax.cli.fool",
    "onepixel_jax.cli.defend",
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
    """Run ``onepixel`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a one-line argument error
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    return run_command(f"onepixel {args.command}", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
