"""Bad input, table-driven: every case is one clear line (CLI) or one named error (API).

CLI cases run through the real entry point, ``onepixel_jax.cli.main(argv)`` (a few through a
subprocess), and must exit with code 2, print exactly one line on stderr and no traceback, and
leave the folder they ran in exactly as it was. API cases must raise a ValueError or TypeError
whose message names the argument. Budgets are tiny and the model is the committed
``digits-cnn`` on the bundled ``digits``, so the whole table stays fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import onepixel_jax as opj
from onepixel_jax.cli import main
from onepixel_jax.experiments.sweep import SweepConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--popsize", "8", "--max-iters", "1", "--quiet", "--no-report"]


def attack(*extra: str, out: str = "{tmp}/run") -> list[str]:
    return [
        "attack", "--model", "digits-cnn", "--dataset", "digits", "--n-images", "2",
        "--chunk-size", "2", *TINY, "--out", out, *extra,
    ]  # fmt: skip


def fool(*extra: str, out: str = "{tmp}/fool") -> list[str]:
    return [
        "fool", "--model", "digits-cnn", "--generations", "1", "--popsize", "4", "--chunk", "1",
        "--out", out, *extra,
    ]  # fmt: skip


def train(*extra: str, out: str = "{tmp}/model") -> list[str]:
    return [
        "train", "--model", "digits-cnn", "--dataset", "digits", "--epochs", "1",
        "--train-limit", "64", "--eval-limit", "64", "--out", out, *extra,
    ]  # fmt: skip


# --------------------------------------------------------------------------------------
# Folder set-ups: each writes into the case's folder before the command runs.


def _finished_run(tmp: Path) -> None:
    shutil.copytree(FINISHED_RUN, tmp / "run")


def _file(name: str, text: str = "x"):
    def setup(tmp: Path) -> None:
        (tmp / name).write_text(text)

    return setup


def _damage(name: str, how: str):
    def setup(tmp: Path) -> None:
        _finished_run(tmp)
        path = tmp / "run" / name
        if how == "garbage":
            path.write_bytes(b"\x00{not json")
        elif how == "list":
            path.write_text("[1, 2, 3]\n")
        elif how == "no-fields":
            path.write_text(json.dumps({"config": {}}) + "\n")
        elif how == "middle-record":
            lines = path.read_text().splitlines(keepends=True)
            lines[0] = lines[0][: len(lines[0]) // 2] + "\n"
            path.write_text("".join(lines))
        elif how == "record-fields":
            lines = path.read_text().splitlines()
            rec = json.loads(lines[0])
            del rec["success"]
            path.write_text("\n".join([json.dumps(rec), *lines[1:]]) + "\n")
        elif how == "truncate":
            path.write_bytes(path.read_bytes()[:40])
        elif how == "delete":
            path.unlink()
        else:  # pragma: no cover
            raise ValueError(how)

    return setup


def _card(content: str):
    def setup(tmp: Path) -> None:
        (tmp / "ckpt").mkdir()
        shutil.copy(opj.models.models_dir() / "digits-cnn" / "params.msgpack", tmp / "ckpt")
        (tmp / "ckpt" / "card.json").write_text(content)

    return setup


def _card_without(field: str):
    card = json.loads((opj.models.models_dir() / "digits-cnn" / "card.json").read_text())
    del card[field]
    return _card(json.dumps(card))


def _mkdir(name: str):
    def setup(tmp: Path) -> None:
        (tmp / name).mkdir()

    return setup


# (id, argv, set-up or None, a piece of the expected message)
CLI_CASES = [
    # attack: arguments
    ("attack-unknown-model", attack("--model", "nope"), None, "unknown model 'nope'"),
    ("attack-empty-model", attack("--model", ""), None, "must not be empty"),
    ("attack-unknown-dataset", attack("--dataset", "nope"), None, "cannot load dataset 'nope'"),
    ("attack-unknown-split", attack("--split", "nope"), None, "split"),
    ("attack-n-images-0", attack("--n-images", "0"), None, "--n-images: must be at least 1"),
    ("attack-n-images-text", attack("--n-images", "two"), None, "must be an integer"),
    ("attack-n-images-too-many", attack("--n-images", "5000"), None, "larger than"),
    ("attack-pixels-0", attack("--pixels", "0"), None, "--pixels: must be at least 1"),
    ("attack-pixels-too-many", attack("--pixels", "65"), None, "exceeds the 8x8"),
    ("attack-popsize-3", attack("--popsize", "3"), None, "--popsize: must be at least 4"),
    ("attack-max-iters-negative", attack("--max-iters", "-1"), None, "--max-iters"),
    ("attack-mode", attack("--mode", "sideways"), None, "invalid choice"),
    ("attack-early-stop", attack("--early-stop", "never"), None, "invalid choice"),
    ("attack-threshold-alone", attack("--threshold", "0.5"), None, "--early-stop threshold"),
    (
        "attack-threshold-range",
        attack("--early-stop", "threshold", "--threshold", "1.5"),
        None,
        "--threshold must be in (0, 1)",
    ),
    ("attack-threshold-nan", attack("--threshold", "nan"), None, "must be finite"),
    ("attack-seed-negative", attack("--seed", "-1"), None, "--seed: must be in [0, 2**32)"),
    ("attack-seed-2**32", attack("--seed", str(2**32)), None, "must be in [0, 2**32)"),
    ("attack-seed-2**64", attack("--seed", str(2**64)), None, "must be in [0, 2**32)"),
    ("attack-seed-text", attack("--seed", "abc"), None, "--seed: must be an integer"),
    ("attack-chunk-size-0", attack("--chunk-size", "0"), None, "--chunk-size"),
    ("attack-batch-size-0", attack("--batch-size", "0"), None, "--batch-size"),
    ("attack-strategy", attack("--strategy", "annealing"), None, "invalid choice"),
    ("attack-baseline-itself", attack("--baseline", "de"), None, "is the --strategy itself"),
    ("attack-unknown-flag", attack("--bogus"), None, "unrecognized arguments: --bogus"),
    ("attack-missing-out", attack()[:-2], None, "the following arguments are required: --out"),
    # attack: paths and data
    ("attack-data-dir-missing", attack("--data-dir", "{tmp}/nope"), None, "is not a directory"),
    (
        "attack-data-not-found",
        attack("--dataset", "mnist", "--data-dir", "{tmp}/empty"),
        _mkdir("empty"),
        "not found",
    ),
    ("attack-out-empty", attack(out=""), None, "--out: must not be empty"),
    ("attack-out-is-file", attack(out="{tmp}/f"), _file("f"), "exists and is not a directory"),
    ("attack-out-under-file", attack(out="{tmp}/f/run"), _file("f"), "cannot be created"),
    ("attack-model-dir-no-card", attack("--model", "{tmp}/empty"), _mkdir("empty"), "empty"),
    ("attack-card-not-object", attack("--model", "{tmp}/ckpt"), _card("[1, 2]"), "JSON object"),
    ("attack-card-not-json", attack("--model", "{tmp}/ckpt"), _card("{oops"), "card"),
    (
        "attack-card-lacks-field",
        attack("--model", "{tmp}/ckpt"),
        _card_without("input_shape"),
        "input_shape",
    ),
    # attack: an existing run folder that cannot be resumed
    ("resume-run-json-garbage", attack(), _damage("run.json", "garbage"), "delete the"),
    ("resume-run-json-list", attack(), _damage("run.json", "list"), "not a JSON object"),
    ("resume-run-json-fields", attack(), _damage("run.json", "no-fields"), "lacks"),
    (
        "resume-middle-record",
        attack(),
        _damage("results.jsonl", "middle-record"),
        "damaged record",
    ),
    ("resume-record-fields", attack(), _damage("results.jsonl", "record-fields"), "success"),
    ("resume-images-npz", attack(), _damage("images.npz", "truncate"), "images.npz"),
    ("resume-results-without-run-json", attack(), _damage("run.json", "delete"), "no run.json"),
    ("resume-other-config", attack("--popsize", "10"), _finished_run, "popsize: 8 -> 10"),
    ("resume-shrink", attack("--n-images", "1"), _finished_run, "can grow, not shrink"),
    ("resume-other-methods", attack("--baseline", "random"), _finished_run, "methods"),
    # report
    ("report-missing-folder", ["report", "{tmp}/nope"], None, "not found"),
    ("report-not-a-run", ["report", "{tmp}/empty"], _mkdir("empty"), "not a run folder"),
    ("report-run-json", ["report", "{tmp}/run"], _damage("run.json", "garbage"), "run.json"),
    (
        "report-middle-record",
        ["report", "{tmp}/run"],
        _damage("results.jsonl", "middle-record"),
        "damaged record",
    ),
    ("report-images-npz", ["report", "{tmp}/run"], _damage("images.npz", "garbage"), "images"),
    (
        "report-record-fields",
        ["report", "{tmp}/run"],
        _damage("results.jsonl", "record-fields"),
        "lacks",
    ),
    ("report-table-empty", ["report", "{tmp}/run", "--table", ""], _finished_run, "empty"),
    (
        "report-table-dir",
        ["report", "{tmp}/run", "--table", "{tmp}/run"],
        _finished_run,
        "is a directory",
    ),
    (
        "report-table-under-file",
        ["report", "{tmp}/run", "--table", "{tmp}/f/t.md"],
        lambda t: (_finished_run(t), _file("f")(t)),
        "cannot be created",
    ),
    ("report-no-folder", ["report"], None, "required: RUN_DIR"),
    # models, demo, the command itself
    ("models-unknown", ["models", "nope"], None, "unknown model 'nope'"),
    ("demo-n-images-0", ["demo", "--n-images", "0"], None, "--n-images"),
    ("demo-seed", ["demo", "--seed", str(2**40)], None, "--seed"),
    ("demo-out-is-file", ["demo", "--out", "{tmp}/f"], _file("f"), "not a directory"),
    ("demo-data-dir-missing", ["demo", "--data-dir", "{tmp}/nope"], None, "not a directory"),
    ("unknown-command", ["bogus"], None, "invalid choice: 'bogus'"),
    # train
    ("train-epochs-0", train("--epochs", "0"), None, "--epochs"),
    ("train-out-is-file", train(out="{tmp}/f"), _file("f"), "not a directory"),
    ("train-out-under-file", train(out="{tmp}/f/m"), _file("f"), "cannot be created"),
    ("train-out-empty", train(out=""), None, "must not be empty"),
    ("train-seed", train("--seed", str(2**32)), None, "--seed"),
    ("train-batch-size-0", train("--batch-size", "0"), None, "--batch-size"),
    ("train-architecture", train("--model", "transformer"), None, "invalid choice"),
    # fool
    ("fool-generations-0", fool("--generations", "0"), None, "--generations"),
    ("fool-out-is-file", fool(out="{tmp}/f"), _file("f"), "not a directory"),
    ("fool-out-empty", fool(out=""), None, "must not be empty"),
    ("fool-seed", fool("--seed", "-3"), None, "--seed"),
    ("fool-unknown-model", fool("--model", "nope"), None, "nope"),
    ("fool-encoding", fool("--encoding", "jpeg"), None, "encoding"),
    ("fool-popsize-0", fool("--popsize", "0"), None, "popsize"),
    # sizes: int32 counters, memory and the file system, checked before any work
    ("attack-popsize-10**12", attack("--popsize", str(10**12)), None, "--popsize"),
    ("attack-max-iters-2**32", attack("--max-iters", str(2**32)), None, "got 4,294,967,296"),
    (
        "attack-max-iters-int32-max",
        attack("--max-iters", str(2**31 - 1)),
        None,
        "--max-iters must be at most 2,147,483,646 (the engine counts generations in int32), "
        "got 2,147,483,647",
    ),
    (
        "attack-cifar10-batch-damaged",
        [
            "attack",
            "--model",
            "allconv-cifar10",
            "--dataset",
            "cifar10",
            "--data-dir",
            "{tmp}/data",
            "--n-images",
            "1",
            *TINY,
            "--out",
            "{tmp}/run",
        ],
        lambda t: (
            (t / "data" / "cifar10" / "cifar-10-batches-py").mkdir(parents=True),
            (t / "data" / "cifar10" / "cifar-10-batches-py" / "test_batch").write_bytes(
                b"\x80\x03garbage"
            ),
        ),
        "test_batch: corrupt pickle",
    ),
    ("attack-chunk-size-10**9", attack("--chunk-size", str(10**9)), None, "--chunk-size"),
    ("attack-n-images-10**12", attack("--n-images", str(10**12)), None, "--n-images"),
    ("attack-out-name-300", attack(out="{tmp}/" + "x" * 300), None, "--out"),
    ("fool-max-hidden-10**9", fool("--max-hidden", str(10**9)), None, "--max-hidden"),
    ("fool-popsize-10**12", fool("--popsize", str(10**12)), None, "--popsize"),
    ("train-dead-pixels-1000", train("--dead-pixels", "1000"), None, "--dead-pixels"),
    (
        "defend-dead-pixels-1000",
        ["defend", "fine-tune", "--dead-pixels", "1000", "--out", "{tmp}/d"],
        None,
        "--dead-pixels",
    ),
    # numbers and addresses that cannot work
    (
        "attack-coordinator-garbage",
        attack("--distributed", "--coordinator-address", "garbage"),
        None,
        "--coordinator-address",
    ),
    ("fool-eta-nan", fool("--eta", "nan"), None, "--eta"),
    ("fool-eta-inf", fool("--eta", "inf"), None, "--eta"),
    ("fool-weight-sigma-nan", fool("--weight-sigma", "nan"), None, "--weight-sigma"),
    ("fool-weight-sigma-0", fool("--weight-sigma", "0"), None, "weight_sigma"),
    ("train-dropout-1.5", train("--dropout", "1.5"), None, "--dropout"),
    # outputs that would replace a run's records or a non-regular file
    (
        "report-table-over-results",
        ["report", "{tmp}/run", "--table", "{tmp}/run/results.jsonl"],
        _finished_run,
        "holds its records",
    ),
    (
        "report-table-over-run-json",
        ["report", "{tmp}/run", "--table", "{tmp}/run/run.json"],
        _finished_run,
        "holds its records",
    ),
    (
        "report-table-fifo",
        ["report", "{tmp}/run", "--table", "{tmp}/fifo"],
        lambda t: (_finished_run(t), os.mkfifo(t / "fifo")),
        "fifo",
    ),
    (
        "report-figure-linked-to-records",
        ["report", "{tmp}/run"],
        lambda t: (
            _finished_run(t),
            (t / "run" / "fitness.png").symlink_to(t / "run" / "results.jsonl"),
        ),
        "symbolic link",
    ),
    (
        "resume-results-linked-outside",
        attack(),
        lambda t: (
            _finished_run(t),
            (t / "run" / "results.jsonl").rename(t / "outside.jsonl"),
            (t / "run" / "results.jsonl").symlink_to(t / "outside.jsonl"),
        ),
        "symbolic link",
    ),
    (
        "demo-damaged-cifar10",
        ["demo", "--data-dir", "{tmp}/data", "--out", "{tmp}/d"],
        lambda t: (
            (t / "data" / "cifar10").mkdir(parents=True),
            (t / "data" / "cifar10" / "test_first1000.npz").write_bytes(b"\x00not an npz"),
        ),
        "CIFAR-10 was found but cannot be read",
    ),
]


@pytest.fixture(scope="module", autouse=True)
def finished_run(tmp_path_factory):
    """One finished tiny run, copied into the cases that resume or report on it."""
    global FINISHED_RUN
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(attack(out=str(out))) == 0
    FINISHED_RUN = out
    return out


FINISHED_RUN: Path


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file and folder under ``root``; the run folders'
    ``.lock`` files are left out (a writer that took the lock records itself there before
    finding a damaged record, and empties it again)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if not p.name.startswith(".lock")
    }


def _expand(argv: list[str], tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in argv]


@pytest.mark.parametrize(
    "argv, setup, message", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, setup, message):
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        setup(tmp_path)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    code = main(_expand(argv, tmp_path))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("onepixel") and ": error: " in lines[0], err
    assert message in lines[0], err
    assert "Traceback" not in err
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed


SUBPROCESS_CASES = [
    ("seed-2**64", attack("--seed", str(2**64)), None),
    ("report-damaged-record", ["report", "{tmp}/run"], _damage("results.jsonl", "middle-record")),
    ("train-epochs-0", train("--epochs", "0"), None),
]


@pytest.mark.parametrize(
    "argv, setup", [c[1:] for c in SUBPROCESS_CASES], ids=[c[0] for c in SUBPROCESS_CASES]
)
def test_cli_bad_input_in_a_subprocess(tmp_path, argv, setup):
    if setup is not None:
        setup(tmp_path)
    before = _snapshot(tmp_path)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "onepixel_jax.cli", *_expand(argv, tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and ": error: " in lines[0], proc.stderr
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------------------
# The Python API: a ValueError or TypeError whose message names the argument.


def _api_target():
    predict_fn, _ = opj.models.load("digits-cnn")
    images, labels, _ = opj.data.load("digits", "test", limit=4)
    return predict_fn, images, labels


CFG = dict(popsize=8, max_iters=1)
KEY = jax.random.key(0)

API_CASES = [
    ("attack-key-int", lambda p, x, y: opj.attack(0, p, x, y, opj.AttackConfig(**CFG)), "key"),
    ("attack-images-2d", lambda p, x, y: opj.attack(KEY, p, x[0, ..., 0], y), "images"),
    ("attack-labels-length", lambda p, x, y: opj.attack(KEY, p, x, y[:2]), "labels"),
    ("attack-labels-range", lambda p, x, y: opj.attack(KEY, p, x, y + 10), "labels"),
    ("attack-labels-float", lambda p, x, y: opj.attack(KEY, p, x, y + 0.5), "labels"),
    (
        "attack-targets-missing",
        lambda p, x, y: opj.attack(KEY, p, x, y, opj.AttackConfig(targeted=True, **CFG)),
        "targets",
    ),
    (
        "attack-targets-untargeted",
        lambda p, x, y: opj.attack(KEY, p, x, y, opj.AttackConfig(**CFG), targets=y),
        "targets",
    ),
    ("attack-cfg-dict", lambda p, x, y: opj.attack(KEY, p, x, y, {"popsize": 8}), "cfg"),
    ("attack-predict-fn", lambda p, x, y: opj.attack(KEY, 5, x, y), "predict_fn"),
    ("attack-images-nan", lambda p, x, y: opj.attack(KEY, p, x * np.nan, y), "images"),
    ("attack-images-scale", lambda p, x, y: opj.attack(KEY, p, x * 10.0, y), "images"),
    ("attack-images-empty", lambda p, x, y: opj.attack(KEY, p, x[:0], y[:0]), "images"),
    (
        "attack-pixels-vs-image",
        lambda p, x, y: opj.attack(KEY, p, x, y, opj.AttackConfig(pixels=65, **CFG)),
        "pixels",
    ),
    ("config-pixels-0", lambda *_: opj.AttackConfig(pixels=0), "pixels"),
    ("config-pixels-float", lambda *_: opj.AttackConfig(pixels=1.5), "pixels"),
    ("config-popsize-3", lambda *_: opj.AttackConfig(popsize=3), "popsize"),
    ("config-max-iters", lambda *_: opj.AttackConfig(max_iters=-1), "max_iters"),
    ("config-F", lambda *_: opj.AttackConfig(F=0.0), "F"),
    ("config-crossover", lambda *_: opj.AttackConfig(crossover=2.0), "crossover"),
    ("config-strategy", lambda *_: opj.AttackConfig(strategy="annealing"), "strategy"),
    ("config-early-stop", lambda *_: opj.AttackConfig(early_stop="never"), "early_stop"),
    ("config-threshold", lambda *_: opj.AttackConfig(threshold=1.5), "threshold"),
    ("config-batch-size", lambda *_: opj.AttackConfig(batch_size=0), "batch_size"),
    ("config-targeted", lambda *_: opj.AttackConfig(targeted="yes"), "targeted"),
    ("data-name", lambda *_: opj.data.load("nope", "test"), "name"),
    ("data-split", lambda *_: opj.data.load("digits", "nope"), "split"),
    ("data-limit", lambda *_: opj.data.load("digits", "test", limit=-1), "limit"),
    ("data-dir-type", lambda *_: opj.data.load("digits", "test", data_dir=5), "data_dir"),
    ("models-name", lambda *_: opj.models.load("nope"), "nope"),
    ("models-type", lambda *_: opj.models.load(5), "name_or_path"),
    ("sweep-seed", lambda *_: SweepConfig("m", "d", seed=2**32), "seed"),
    ("sweep-methods", lambda *_: SweepConfig("m", "d", methods=("de", "de")), "methods"),
    ("sweep-mode", lambda *_: SweepConfig("m", "d", mode="sideways"), "mode"),
]


@pytest.fixture(scope="module")
def api_target():
    return _api_target()


@pytest.mark.parametrize("call, name", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input_names_the_argument(api_target, call, name):
    with pytest.raises((ValueError, TypeError)) as info:
        call(*api_target)
    assert name in str(info.value)


def test_api_missing_data_is_not_downloaded(tmp_path):
    with pytest.raises(FileNotFoundError, match="mnist"):
        opj.data.load("mnist", "test", data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_table_is_large_enough():
    assert len(CLI_CASES) + len(SUBPROCESS_CASES) + len(API_CASES) >= 60
