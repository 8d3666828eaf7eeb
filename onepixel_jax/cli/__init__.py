"""Command-line entry point: ``onepixel <command> ...``.

Each sub-command lives in the module that implements it; that module exposes
``register_cli(subparsers)``, which adds its parser and sets ``func`` to a callable
``func(args) -> int`` (the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute sub-commands, in the order they are listed by --help.
_COMMAND_MODULES: tuple[str, ...] = (
    "onepixel_jax.demo",
    "onepixel_jax.sweep",
    "onepixel_jax.report",
    "onepixel_jax.cli.train",
    "onepixel_jax.cli.fool",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onepixel",
        description="Batched few-pixel adversarial attacks and fooling images in JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
