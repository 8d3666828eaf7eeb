"""Defended checkpoints for the defence grids: adding one to the package's checkpoints, and a
longer fooling-image evolution against a fooling-class network.

- :func:`promote`: copy a trained checkpoint folder (``params.msgpack`` + ``card.json``, as
  ``onepixel defend`` writes it) into ``onepixel_jax/zoo/weights/NAME``, loadable by name (a
  defence grid's ``defended`` cells), with the command that made it, its training time and a
  spot check of 300 test images in the card.
- :func:`evolve`: MAP-Elites with the direct encoding against a (fooling-class) checkpoint,
  the archive's cells being the base network's real classes (an extra ``"fooling"`` output is
  not a cell).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from onepixel_jax.errors import UsageError


def promote(
    source: str | Path, name: str, command: str | None = None, log: Callable = print
) -> Path:
    """Copy the checkpoint folder ``source`` into the package's checkpoints as ``name``;
    returns the new folder."""
    import shutil

    from onepixel_jax.experiments import inputs
    from onepixel_jax.zoo import checkpoints as ckpt_lib
    from onepixel_jax.zoo.training import spot_check

    src = Path(source)
    for f in (ckpt_lib.CHECKPOINT_FILE, ckpt_lib.CARD_FILE):
        if not (src / f).is_file():
            raise UsageError(f"{src} is not a checkpoint folder (no {f})")
    if not name or "/" in name:
        raise UsageError(f"--name must be a checkpoint name without '/', got {name!r}")
    dst = ckpt_lib.models_dir() / name
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / ckpt_lib.CHECKPOINT_FILE, dst / ckpt_lib.CHECKPOINT_FILE)
    card = json.loads((src / ckpt_lib.CARD_FILE).read_text())
    card["name"] = name
    card["command"] = command or card.get("command")
    if "training_time_seconds" not in card:
        card["training_time_seconds"] = card["defence"]["round_record"]["seconds"]
    if card.get("status") is None:
        card["status"] = "complete"
    ckpt_lib.write_card(dst, card)
    predict_fn, _ = inputs.load_model(str(dst), check=False)
    card["spot_check"] = spot_check(predict_fn, card["dataset"])
    ckpt_lib.write_card(dst, card)
    log(f"{dst}: test accuracy {card.get('test_accuracy')}, spot check {card['spot_check']}")
    return dst


def evolve(
    model: str,
    out: str | Path,
    *,
    generations: int = 1000,
    popsize: int = 100,
    seed: int = 7,
    log: Callable = print,
) -> dict:
    """A MAP-Elites run (direct encoding) against ``model`` into ``out``, stopping once every
    real class reaches the threshold; returns its summary."""
    from onepixel_jax.experiments import inputs
    from onepixel_jax.fooling.run import FoolConfig, run_fooling

    predict_fn, card = inputs.load_model(model)
    names = list(card["class_names"])
    if names[-1] == "fooling":
        names = names[:-1]
    config = FoolConfig(model=card["name"], encoding="direct", popsize=popsize, seed=seed, chunk=50)
    summary = run_fooling(
        config, predict_fn, card["input_shape"], names, out, generations, stop_at_threshold=True
    )
    log(
        f"{card['name']}: {summary['reached']}/{len(names)} classes >= 0.9999 after "
        f"{summary['generations']} generations; median best {summary['median_confidence']:.4f}"
    )
    return summary


__all__ = ["evolve", "promote"]
