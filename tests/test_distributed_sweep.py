"""Sweeps split into shares (``--shard I/N``, or one share per jax.distributed process) write
the records of one unsharded run, however they are interrupted and resumed.

In-process cases use the tiny linear model of ``test_sweep``; the concurrent cases run
``onepixel attack`` in subprocesses on the committed ``digits-cnn`` checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from test_sweep import CountingEngine, config, sweep

from onepixel_jax import cli
from onepixel_jax.experiments import run_folder
from onepixel_jax.experiments.report import write_report

TIMEOUT = 420
# A small digits-cnn sweep: 6 chunks of 2 images, DE and the random baseline.
CLI_ARGS = [
    "attack",
    "--model",
    "digits-cnn",
    "--dataset",
    "digits",
    "--n-images",
    "12",
    "--chunk-size",
    "2",
    "--popsize",
    "12",
    "--max-iters",
    "4",
    "--baseline",
    "random",
    "--seed",
    "3",
    "--quiet",
]


def merged(out) -> list[dict]:
    """The run's records as the report reads them, without their timing."""
    _, recs = run_folder.load_run(out)
    for r in recs:
        r.pop("seconds")
        r.pop("compile_seconds", None)  # recorded only where the engine reports progress
    return recs


def keys_per_file(out) -> Counter:
    return Counter(
        run_folder.record_key(json.loads(line))
        for path in run_folder.results_files(out)
        for line in path.read_text().splitlines()
        if line.endswith("}")
    )


def summary_without_timing(out) -> dict:
    summary = json.loads(json.dumps(write_report(out)))
    for name in ("seconds", "created", "generated", "run_dir"):
        summary.pop(name, None)
    for method in summary["methods"].values():
        method.pop("seconds")  # engine time
        method.pop("compile_seconds")
    return summary


# --------------------------------------------------------------------------------------
# In-process: shares of the sweep library


def test_three_shares_interrupted_and_resumed_merge_into_the_single_run(tmp_path):
    cfg = config(mode="all-targets", n_images=5, methods=("de", "random"), early_stop="success")
    ref = tmp_path / "ref"
    sweep(ref, cfg)
    out = tmp_path / "shared"
    with pytest.raises(KeyboardInterrupt):  # share 1 "dies" in its second engine call
        sweep(out, cfg, CountingEngine(die_at=2), shard=(1, 3))
    with open(run_folder.results_path(out, (1, 3)), "a") as fh:  # with a torn record
        fh.write('{"method": "random", "index": 3, "lab')
    progress = []
    for i in (2, 0, 1):  # chunks of 2 images: shares 0 and 1 hold 2 images, share 2 one
        outcome = sweep(out, cfg, shard=(i, 3), progress=progress.append)
        assert progress[-1].images_done == progress[-1].images_total == (1 if i == 2 else 2)
    assert outcome.attacks_reused > 0  # share 1 kept its first chunk's records
    assert not run_folder.results_path(out).exists()
    assert sorted(p.name for p in run_folder.results_files(out)) == [
        f"results.{i}-of-3.jsonl" for i in range(3)
    ]
    assert max(keys_per_file(out).values()) == 1  # no record written twice
    assert merged(out) == merged(ref)  # same records, in the single run's order
    assert summary_without_timing(out) == summary_without_timing(ref)

    # Resuming without --shard, or with another share count, finds every record done.
    engine = CountingEngine()
    assert sweep(out, cfg, engine).reused_finished_run and engine.calls == 0
    engine = CountingEngine()
    sweep(out, cfg, engine, shard=(0, 2))
    assert engine.calls == 0


def test_bad_shares_are_refused(tmp_path):
    from onepixel_jax.experiments.sweep import SettingError

    for bad in ((3, 3), (-1, 2), (0,), (0.5, 2)):
        with pytest.raises(SettingError, match="shard"):
            sweep(tmp_path / "x", config(), shard=bad)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shard", "3/3"], "0 <= I < N"),
        (["--shard", "1-3"], "I/N"),
        (["--shard", "0/2", "--distributed"], "cannot be combined"),
        (["--num-processes", "2", "--process-id", "2"], "below --num-processes"),
    ],
)
def test_bad_shard_and_cluster_flags_are_usage_errors(tmp_path, capsys, args, message):
    argv = CLI_ARGS + ["--out", str(tmp_path / "run")] + args
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------
# Subprocesses: concurrent shares killed and resumed; two jax.distributed processes


def _onepixel(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    code = "import sys; from onepixel_jax import cli; sys.exit(cli.main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen, ok=(0,)) -> str:
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"onepixel timed out:\n{out[-3000:]}")
    assert proc.returncode in ok, out[-3000:]
    return out


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    assert cli.main(CLI_ARGS + ["--out", str(out), "--no-report"]) == 0
    return out


def test_three_concurrent_shares_killed_and_resumed_equal_the_single_run(tmp_path, single_run):
    out = tmp_path / "run"
    argv = CLI_ARGS + ["--out", str(out)]
    procs = [_onepixel(argv + ["--shard", f"{i}/3"]) for i in range(3)]
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:  # kill every share once one has written a record
        if any(p.stat().st_size > 0 for p in run_folder.results_files(out)):
            break
        if all(p.poll() is not None for p in procs):
            break
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        _finish(p, ok=(0, -signal.SIGKILL))
    partial = run_folder.read_records(out)
    assert len(partial) < len(run_folder.read_records(single_run))  # killed mid-run

    procs = [_onepixel(argv + ["--shard", f"{i}/3"]) for i in range(3)]
    outs = [_finish(p) for p in procs]
    assert all("onepixel report" in o for o in outs)  # each share says how to merge
    assert max(keys_per_file(out).values()) == 1
    assert merged(out) == merged(single_run)
    assert cli.main(["report", str(out)]) == 0
    assert summary_without_timing(out) == summary_without_timing(single_run)


def test_two_jax_distributed_processes_write_the_single_run(tmp_path, single_run):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    cluster = ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes", "2"]
    argv = CLI_ARGS + ["--out", str(out)] + cluster
    procs = [_onepixel(argv + ["--process-id", str(i)]) for i in range(2)]
    outs = [_finish(p) for p in procs]
    assert "success" in outs[0].lower()  # process 0 wrote the report once both were done
    assert (out / run_folder.REPORT).exists()
    assert sorted(p.name for p in run_folder.results_files(out)) == [
        "results.0-of-2.jsonl",
        "results.1-of-2.jsonl",
    ]
    assert merged(out) == merged(single_run)
