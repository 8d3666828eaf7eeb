"""Every file read from a run folder is checked on load: one line naming file, line, field.

A finished tiny run (committed ``digits-cnn``, 4 images) is copied into each case and one of
its files damaged; ``onepixel report`` and the resuming ``onepixel attack`` must both refuse it
with exit code 2 and one line naming the file and the line or field, and leave the run's files
byte for byte as they were. The schema functions are also checked directly, including the
hand-written minimal run folders older tools wrote.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from onepixel_jax.cli import main
from onepixel_jax.experiments import run_folder, schema
from onepixel_jax.files import DamagedFileError, parse_json

RUN_ARGS = [
    "attack", "--model", "digits-cnn", "--dataset", "digits", "--n-images", "4",
    "--chunk-size", "2", "--popsize", "20", "--max-iters", "3", "--quiet", "--no-report",
]  # fmt: skip
FILES = ("run.json", "results.jsonl", "images.npz")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("schema") / "run"
    assert main([*RUN_ARGS, "--out", str(out)]) == 0
    return out


def _digests(run: Path) -> dict:
    return {n: hashlib.sha256((run / n).read_bytes()).hexdigest() for n in FILES}


def _record_edit(field, value):
    def edit(run: Path) -> None:
        path = run / "results.jsonl"
        lines = path.read_text().splitlines()
        rec = json.loads(lines[1])
        if value is _DROP:
            del rec[field]
        else:
            rec[field] = value
        lines[1] = json.dumps(rec)
        path.write_text("\n".join(lines) + "\n")

    return edit


def _info_edit(key, value):
    def edit(run: Path) -> None:
        info = json.loads((run / "run.json").read_text())
        d = info
        *parents, last = key.split(".")
        for k in parents:
            d = d[k]
        if value is _DROP:
            del d[last]
        else:
            d[last] = value
        (run / "run.json").write_text(json.dumps(info))

    return edit


def _raw_line(text):
    def edit(run: Path) -> None:
        path = run / "results.jsonl"
        lines = path.read_text().splitlines()
        lines[1] = text
        path.write_text("\n".join(lines) + "\n")

    return edit


def _npz(**arrays):
    def edit(run: Path) -> None:
        with open(run / "images.npz", "wb") as fh:
            np.savez(fh, **arrays)

    return edit


_DROP = object()

# (id, edit, pieces the one line must contain)
CASES = [
    ("success-string", _record_edit("success", "no"), ["line 2", "'success'", "true or false"]),
    ("success-int", _record_edit("success", 1), ["line 2", "'success'"]),
    ("index-string", _record_edit("index", "abc"), ["line 2", "'index'", "integer"]),
    ("index-not-selected", _record_edit("index", 300), ["line 2", "not one of the run's"]),
    ("index-2**40", _record_edit("index", 2**40), ["line 2", "'index'"]),
    ("label-other", _record_edit("label", 3), ["line 2", "'label'"]),
    ("label-2**32+3", _record_edit("label", 2**32 + 3), ["line 2", "'label'"]),
    ("target-untargeted", _record_edit("target", 4), ["line 2", "'target'", "untargeted"]),
    ("predicted-10", _record_edit("predicted", 10), ["line 2", "'predicted'"]),
    ("queries-negative", _record_edit("queries", -1), ["line 2", "'queries'"]),
    ("probs-null", _record_edit("probs", None), ["line 2", "'probs'", "10 class"]),
    ("probs-sum", _record_edit("probs", [0.5] * 10), ["line 2", "'probs'", "summing to 1"]),
    ("probs-nan", _record_edit("probs", [math.nan] * 10), ["line 2", "'probs'"]),
    ("original-probs-short", _record_edit("original_probs", [1.0]), ["'original_probs'"]),
    ("fitness-empty", _record_edit("fitness", []), ["line 2", "'fitness'"]),
    ("fitness-too-long", _record_edit("fitness", [0.5] * 50), ["'fitness'", "max_iters"]),
    ("pixels-outside", _record_edit("pixels", [[8, 0, 5]]), ["'pixels[0]'", "8x8"]),
    ("pixels-channels", _record_edit("pixels", [[0, 0, 5, 6]]), ["'pixels[0]'", "channel"]),
    ("pixels-value", _record_edit("pixels", [[0, 0, 300]]), ["'pixels[0]'", "[0, 255]"]),
    ("pixels-count", _record_edit("pixels", [[0, 0, 1], [1, 1, 1]]), ["'pixels'", "1 pixels"]),
    ("method-number", _record_edit("method", 5), ["'method'"]),
    ("lacks-success", _record_edit("success", _DROP), ["line 2", "lacks success"]),
    ("not-json", _raw_line("\x00{nope"), ["line 2", "damaged record"]),
    ("not-object", _raw_line("[1, 2]"), ["line 2", "not a JSON object"]),
    ("nested-100000", _raw_line('{"index": ' + "[" * 100000 + "]" * 100000 + "}"), ["nested"]),
    ("huge-int", _raw_line('{"index": ' + "9" * 6000 + "}"), ["line 2"]),
    ("run-no-model", _info_edit("config.model", _DROP), ["run.json", "config.model"]),
    ("run-mode", _info_edit("config.mode", "sideways"), ["'config.mode'", "sideways"]),
    ("run-n-images", _info_edit("config.n_images", "4"), ["'config.n_images'", "'4'"]),
    ("run-indices-dup", _info_edit("indices", [0, 0, 1, 2]), ["'indices'", "distinct"]),
    ("run-labels-range", _info_edit("labels", [0, 1, 2, 10]), ["'labels[3]'"]),
    ("run-classes-1", _info_edit("num_classes", 1), ["'num_classes'"]),
    ("run-image-shape", _info_edit("image_shape", [8, 8]), ["'image_shape'"]),
    ("run-methods", _info_edit("config.methods", "de"), ["'config.methods'"]),
    (
        "npz-size",
        _npz(indices=np.arange(4), images=np.zeros((4, 9, 9, 1), np.uint8)),
        ["images.npz", "9x9x1", "8x8x1"],
    ),
    (
        "npz-foreign",
        _npz(indices=np.arange(50, 54), images=np.zeros((4, 8, 8, 1), np.uint8)),
        ["images.npz", "image 50"],
    ),
    (
        "npz-object",
        _npz(indices=np.array([{"x": 1}], dtype=object), images=np.zeros(1)),
        ["images.npz"],
    ),
]


@pytest.mark.parametrize("command", ["report", "resume"])
@pytest.mark.parametrize("edit, pieces", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_damaged_run_files_are_one_line_naming_file_and_field(
    finished, tmp_path, capsys, command, edit, pieces
):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    edit(run)
    before = _digests(run)
    argv = ["report", str(run)] if command == "report" else [*RUN_ARGS, "--out", str(run)]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0], err
    for piece in pieces:
        assert piece in lines[0], lines[0]
    assert _digests(run) == before


def test_json_nesting_and_numbers_are_bounded():
    assert parse_json('{"a": [1, [2]]}') == {"a": [1, [2]]}
    with pytest.raises(ValueError, match="nested deeper"):
        parse_json("[" * 65 + "]" * 65)
    with pytest.raises(ValueError, match="nested deeper"):
        parse_json("[" * 200000 + "]" * 200000)
    with pytest.raises(ValueError):
        parse_json("1" * 10000)


def test_a_minimal_hand_written_run_is_accepted_and_a_bad_one_is_not(tmp_path):
    info = {
        "config": {"model": "m", "dataset": "d", "split": "test", "mode": "untargeted"},
        "num_classes": 3,
        "indices": [4, 7],
        "labels": [1, 0],
    }
    assert schema.check_run_info(info, "run.json", "hint") is info
    run = schema.RunInfoView(info)
    rec = {
        "method": "de", "index": 4, "label": 1, "target": None, "success": True,
        "predicted": 2, "queries": 400, "pixels": [[0, 0, 1, 2, 3]],
        "probs": [0.1, 0.3, 0.6], "original_probs": [0.0, 1.0, 0.0], "fitness": [0.9, 0.3],
    }  # fmt: skip
    schema.check_record(rec, run, "r.jsonl", 1, "hint")  # no image shape: any channels
    with pytest.raises(DamagedFileError, match="r.jsonl line 3: field 'success'"):
        schema.check_record(dict(rec, success="no"), run, "r.jsonl", 3, "hint")
    with pytest.raises(DamagedFileError, match="image 5 is not one of the run's"):
        schema.check_record(dict(rec, index=5), run, "r.jsonl", 3, "hint")
    with pytest.raises(DamagedFileError, match="'num_classes'"):
        schema.check_run_info(dict(info, num_classes=True), "run.json", "hint")


def test_a_symlinked_results_file_is_read_but_never_written(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes((run / "results.jsonl").read_bytes()[:-5])  # a torn last line
    (run / "results.jsonl").unlink()
    (run / "results.jsonl").symlink_to(outside)
    before = outside.read_bytes()
    assert len(run_folder.read_records(run)) == 3  # reading follows the link
    with pytest.raises(ValueError, match="symbolic link"):
        run_folder.read_records(run, repair=True)
    assert outside.read_bytes() == before
