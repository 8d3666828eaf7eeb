"""The run folder's writer lock: one writer per folder (or per share), surviving kill -9.

Unit tests drive :class:`RunFolderLock` directly (two lock objects in one process conflict
like two processes do: ``flock`` locks belong to open files). The end-to-end tests start real
``onepixel attack`` processes on the committed ``digits-cnn`` with a tiny budget: two writers
started together on one ``--out`` (exactly one is refused, the records all come from the
other's configuration), and a writer killed with SIGKILL in the middle of its run, which the
same command then resumes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onepixel_jax.experiments.lock import RunFolderBusyError, RunFolderLock, read_holder

ROOT = Path(__file__).resolve().parents[1]


def test_a_second_writer_is_refused_and_named(tmp_path):
    with RunFolderLock(tmp_path / "run"):
        holder = read_holder(tmp_path / "run" / ".lock")
        assert holder["pid"] == os.getpid() and holder["shard"] is None
        with pytest.raises(RunFolderBusyError, match=f"pid {os.getpid()}") as info:
            RunFolderLock(tmp_path / "run").acquire()
        assert "\n" not in str(info.value) and "--out" in str(info.value)
        with pytest.raises(RunFolderBusyError):  # a share next to the whole-folder writer
            RunFolderLock(tmp_path / "run", shard=(0, 2)).acquire()
    # Released: the record is emptied and the next writer gets it at once.
    assert (tmp_path / "run" / ".lock").read_bytes() == b""
    with RunFolderLock(tmp_path / "run") as again:
        assert again.stale is None


def test_shares_run_side_by_side_but_not_twice(tmp_path):
    run = tmp_path / "run"
    with RunFolderLock(run, shard=(0, 2)), RunFolderLock(run, shard=(1, 2)):
        with pytest.raises(RunFolderBusyError, match="share 1/2"):
            RunFolderLock(run, shard=(1, 2)).acquire()
        with pytest.raises(RunFolderBusyError, match=r"share 0/2.*share 1/2|share 1/2.*0/2"):
            RunFolderLock(run).acquire()  # the whole folder while shares write


def test_a_failed_writer_removes_the_folder_it_created(tmp_path):
    with pytest.raises(ValueError, match="refused"):
        with RunFolderLock(tmp_path / "a" / "b" / "run"):
            raise ValueError("refused")
    assert not (tmp_path / "a").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(ValueError):
        with RunFolderLock(tmp_path / "kept"):
            raise ValueError("refused")
    assert (tmp_path / "kept").is_dir()  # it existed before


def test_a_symlinked_lock_file_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "elsewhere").write_text("keep me")
    (tmp_path / "run" / ".lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="symbolic link"):
        RunFolderLock(tmp_path / "run").acquire()
    assert (tmp_path / "elsewhere").read_text() == "keep me"


HOLD = """
import sys, time
from onepixel_jax.experiments.lock import RunFolderLock
lock = RunFolderLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_writer_killed_with_sigkill_leaves_a_lock_the_next_one_takes_over(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout.readline().strip() == b"held"
        with pytest.raises(RunFolderBusyError, match=f"pid {proc.pid}"):
            RunFolderLock(tmp_path / "run").acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with RunFolderLock(tmp_path / "run") as lock:  # the kernel dropped the dead one's flock
        assert lock.stale is not None and lock.stale["pid"] == proc.pid


# --------------------------------------------------------------------------------------
# Real onepixel attack processes


def _attack(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "onepixel_jax.cli", "attack", "--model", "digits-cnn",
        "--dataset", "digits", "--popsize", "20", "--max-iters", "3", "--chunk-size", "1",
        "--quiet", "--no-report", "--out", str(out), *extra,
    ]  # fmt: skip


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_two_attacks_on_one_folder_one_is_refused_records_from_one_config(tmp_path):
    out = tmp_path / "run"
    procs = [
        subprocess.Popen(
            _attack(out, "--n-images", "6", "--seed", str(seed)),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2).strip().splitlines()
    assert len(refused) == 1 and "error:" in refused[0] and "Traceback" not in refused[0]
    winner = 1 if results[0][0] == 0 else 2
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["seed"] == winner
    records = _records(out)
    keys = {(r["method"], r["index"]) for r in records}
    assert len(records) == len(keys) == 6 and {r["index"] for r in records} == set(info["indices"])


def test_kill_9_in_a_locked_run_then_the_same_command_resumes(tmp_path):
    out = tmp_path / "run"
    argv = _attack(out, "--n-images", "12")
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        path = out / "results.jsonl"
        if path.exists() and path.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = len(_records(out))
    assert 2 <= done_before < 12, "the kill came too late to test a resume"
    assert read_holder(out / ".lock")["pid"] == proc.pid  # left behind by the dead writer
    again = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    records = _records(out)
    info = json.loads((out / "run.json").read_text())
    assert sorted(r["index"] for r in records) == sorted(info["indices"])
    assert len({r["index"] for r in records}) == 12
    assert (out / ".lock").read_bytes() == b""  # released by the resumed writer


def _writers():
    from onepixel_jax.defences.adversarial_training import (
        AdversarialTrainingConfig,
        adversarial_fine_tune,
    )
    from onepixel_jax.defences.fooling_class import FoolingClassConfig, retrain_with_fooling_class
    from onepixel_jax.zoo.training import TrainConfig, train_and_evaluate

    return {
        "train": lambda out: train_and_evaluate(
            TrainConfig(model="digits-cnn", dataset="digits", epochs=1), out
        ),
        "adversarial": lambda out: adversarial_fine_tune(
            AdversarialTrainingConfig(model="digits-cnn"), out
        ),
        "fooling-class": lambda out: retrain_with_fooling_class(
            FoolingClassConfig(model="digits-cnn"), out
        ),
    }


@pytest.mark.parametrize("writer", ["train", "adversarial", "fooling-class"])
def test_training_and_defence_outputs_have_one_writer(writer, tmp_path):
    out = tmp_path / "model"
    with RunFolderLock(out):  # another writer, in the middle of its run
        (out / "card.json").write_text("theirs")
        with pytest.raises(RunFolderBusyError, match="being written by process pid"):
            _writers()[writer](out)
        assert sorted(p.name for p in out.iterdir()) == [".lock", "card.json"]
        assert (out / "card.json").read_text() == "theirs"


def test_a_refused_command_removes_nothing_another_writer_made(tmp_path):
    from onepixel_jax.cli import errors

    out = tmp_path / "new"  # absent when the command looked, created by the other writer since
    with pytest.raises(RunFolderBusyError):
        with errors.removed_on_failure(out):
            out.mkdir()
            (out / "card.json").write_text("theirs")
            raise RunFolderBusyError(f"--out {out} is being written by another process")
    assert (out / "card.json").read_text() == "theirs"
    with pytest.raises(ValueError):  # a failure of the command's own still cleans up
        with errors.removed_on_failure(tmp_path / "mine"):
            (tmp_path / "mine").mkdir()
            raise ValueError("failed")
    assert not (tmp_path / "mine").exists()


def test_the_train_command_refuses_a_busy_out_with_one_line(tmp_path, capsys):
    from onepixel_jax.cli import main

    out = tmp_path / "model"
    with RunFolderLock(out):
        (out / "card.json").write_text("theirs")
        argv = ["train", "--model", "digits-cnn", "--dataset", "digits", "--epochs", "1"]
        assert main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"--out {out} is being written" in err
        assert (out / "card.json").read_text() == "theirs"
