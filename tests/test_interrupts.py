"""SIGINT and SIGTERM end a real ``onepixel attack`` cleanly: 130 / 143, one line, records safe.

Each test starts the command as a process (the committed ``digits-cnn``, a tiny budget), sends
the signal at a moment of the run, and checks the exit code, that stderr holds one line and
no traceback or crash, and that every record on disk reads back; the same command then
resumes the run to the end. A signal during JAX's start-up is covered too: the handlers are in
place before JAX is imported.
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

from onepixel_jax.experiments import run_folder

ROOT = Path(__file__).resolve().parents[1]
CRASH = ("Traceback", "pure virtual", "Segmentation", "core dumped", "Fatal Python", "ignored")


def _argv(out: Path) -> list[str]:
    return [
        sys.executable, "-m", "onepixel_jax.cli", "attack", "--model", "digits-cnn",
        "--dataset", "digits", "--n-images", "6", "--chunk-size", "2", "--popsize", "20",
        "--max-iters", "3", "--quiet", "--out", str(out),
    ]  # fmt: skip


def _start(out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    return subprocess.Popen(
        _argv(out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_records(proc: subprocess.Popen, out: Path, n: int) -> None:
    deadline = time.monotonic() + 240
    path = out / "results.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.01)


def _caught(pid: int) -> int:
    """The process's mask of caught signals (Linux ``/proc``), 0 when unreadable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


def _wait_for_handler(proc: subprocess.Popen, sig: int) -> None:
    """Wait until the process catches ``sig`` (on a loaded machine the interpreter can take
    seconds to get there); without ``/proc``, a fixed pause."""
    if not Path(f"/proc/{proc.pid}/status").exists():
        time.sleep(0.6)
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if _caught(proc.pid) & (1 << (int(sig) - 1)):
            return
        time.sleep(0.002)


@pytest.mark.parametrize(
    "sig, code, moment",
    [(signal.SIGINT, 130, "first record"), (signal.SIGTERM, 143, "start-up")],
)
def test_a_signal_ends_the_run_cleanly_and_the_same_command_resumes(tmp_path, sig, code, moment):
    out = tmp_path / "run"
    proc = _start(out)
    if moment == "start-up":
        _wait_for_handler(proc, sig)  # the handlers are installed first; JAX is then imported
    else:
        _wait_for_records(proc, out, 1)
    assert proc.poll() is None, "the run ended before the signal"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "onepixel" in lines[0] and "on disk" in lines[0], err
    assert not any(mark in err for mark in CRASH), err
    if (out / "run.json").exists():
        run_folder.read_records(out)  # every record on disk reads back and checks
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    again = subprocess.run(_argv(out), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in records) == sorted(
        json.loads((out / "run.json").read_text())["indices"]
    )


def test_the_handlers_are_only_installed_in_the_onepixel_process():
    from onepixel_jax.cli import errors

    # pytest imported the package: the test process keeps its own SIGINT handler.
    assert not errors.running_as_onepixel()
    assert signal.getsignal(signal.SIGINT) is not errors._on_signal
