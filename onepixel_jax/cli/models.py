"""onepixel models [NAME]: the committed checkpoints, or the model card of one of them.

Without a name: one line per checkpoint shipped in onepixel_jax/zoo/weights/ (name,
architecture, dataset, test accuracy, parameters and checkpoint size). With a name: its model
card (card.json) as JSON.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from onepixel_jax.cli import errors
from onepixel_jax.errors import UsageError


def _size(n_bytes: Any) -> str:
    if not isinstance(n_bytes, int | float):
        return "?"
    return f"{n_bytes / 2**20:.1f} MiB" if n_bytes >= 2**20 else f"{n_bytes / 2**10:.0f} KiB"


def _card(name: str):
    from onepixel_jax import zoo

    return zoo.ModelCard.read(zoo.models_dir() / name / zoo.CARD_FILE)


def table_rows(names: list[str]) -> list[list[str]]:
    """One row per checkpoint: name, architecture, dataset, accuracy, parameters, size."""
    rows = []
    for name in names:
        card = _card(name)
        acc = card.test_accuracy
        split = card.get("test_split") or "test"
        rows.append(
            [
                name,
                card.architecture,
                card.dataset or "?",
                "?" if acc is None else f"{100 * acc:.2f} % on {split}",
                "?" if card.parameter_count is None else f"{card.parameter_count:,}",
                _size(card.get("checkpoint_bytes")),
            ]
        )
    return rows


def run(args: argparse.Namespace) -> int:
    from onepixel_jax import zoo

    known = list(zoo.list_models())
    if args.name is not None:
        if args.name not in known:
            hint = ", ".join(known) if known else "none installed"
            raise UsageError(f"unknown model {args.name!r} (available: {hint})")
        print(json.dumps(_card(args.name).to_dict(), indent=2))
        return 0
    header = ["name", "architecture", "dataset", "test accuracy", "parameters", "size"]
    rows = [header, *table_rows(known)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    if not known:
        print("(no checkpoints found)")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add the ``models`` sub-command."""
    p = subparsers.add_parser(
        "models",
        help="list the committed checkpoints, or print one model card",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", default=None, help="checkpoint name: print its card")
    p.set_defaults(func=errors.command("onepixel models", run))
