"""``onepixel models``: the committed checkpoints and their cards."""

from __future__ import annotations

import json

from onepixel_jax import zoo
from onepixel_jax.cli import main


def test_lists_every_committed_checkpoint(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["name", "architecture", "dataset", "test", "accuracy",
                                "parameters", "size"]  # fmt: skip
    names = [line.split()[0] for line in lines[1:]]
    assert names == zoo.list_models() and "digits-cnn" in names
    row = next(line for line in lines if line.startswith("digits-cnn "))
    assert "digits-cnn" in row and "digits" in row and "99.17 %" in row and "38,282" in row
    assert "KiB" in row


def test_prints_one_card(capsys):
    assert main(["models", "digits-cnn"]) == 0
    card = json.loads(capsys.readouterr().out)
    on_disk = json.loads((zoo.models_dir() / "digits-cnn" / zoo.CARD_FILE).read_text())
    assert card == on_disk
