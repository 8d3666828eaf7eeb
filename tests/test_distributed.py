"""Attacks over several devices and processes give the records of one device, bit for bit.

Forced host devices and a second process need a fresh JAX, so those cases run this file as a
script in subprocesses (``python tests/test_distributed.py devices|process ...``); the
reference runs in the test process on its one CPU device.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
FIELDS = ("pixels", "success", "queries", "fitness_history", "probs", "original_probs")
# (images, targeted): more images than devices and not a multiple of 4, fewer than devices.
CASES = ((7, False), (3, True))
SUBPROCESS_TIMEOUT = 420


def _case(n: int, targeted: bool):
    """Images, labels, targets and config of one case (small red-needle problems)."""
    sys.path.insert(0, str(HERE))
    from test_engine import H, W

    import onepixel_jax as opj

    rng = np.random.default_rng(100 + n)
    images = rng.integers(90, 140, (n, H, W, 3)).astype(np.uint8)
    labels = np.zeros(n, np.int32)
    targets = np.full(n, 1, np.int32) if targeted else None
    cfg = opj.AttackConfig(popsize=12, max_iters=10, early_stop="success", targeted=targeted)
    return images, labels, targets, cfg


@functools.lru_cache
def _reference(n: int, targeted: bool) -> dict:
    """The case on the test process's one device."""
    return _run_case(n, targeted)


def _run_case(n: int, targeted: bool, mesh=None, progress=False, count=None) -> dict:
    import jax
    from test_engine import red_needle_model

    import onepixel_jax as opj

    images, labels, targets, cfg = _case(n, targeted)
    res = opj.attack(
        jax.random.key(n),
        red_needle_model,
        images,
        labels,
        cfg,
        targets=targets,
        progress=progress,
        mesh=mesh,
        count=count,
    )
    out = {f: np.asarray(getattr(res, f)).tolist() for f in FIELDS}
    out["model_evaluations"] = res.model_evaluations
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _python(args: list[str], env: dict | None = None, **kw) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def _finish(proc: subprocess.Popen) -> str:
    try:
        out, _ = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"subprocess timed out:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-3000:]
    return out


def _result_line(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert lines, out[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


# --------------------------------------------------------------------------------------
# In-process: the layout of the shares and the mesh argument


def test_share_layout_deals_images_round_robin_with_counts_differing_by_at_most_one():
    from onepixel_jax.distributed import share_layout

    for n, d in ((7, 4), (3, 4), (8, 4), (1, 2), (5, 1)):
        lay = share_layout(n, d)
        assert lay.order.shape == (d, -(-n // d))
        real = lay.order[lay.order < n]
        assert sorted(real.tolist()) == list(range(n))  # every image exactly once
        assert lay.counts.sum() == n and lay.counts.max() - lay.counts.min() <= 1
        for k in range(d):  # real images first in each share, in call order
            np.testing.assert_array_equal(lay.order[k, : lay.counts[k]], np.arange(k, n, d))
            assert np.all(lay.order[k, lay.counts[k] :] >= n)


def test_one_device_runs_the_loop_as_is_and_bad_meshes_are_refused():
    import jax

    from onepixel_jax.distributed import resolve_mesh

    assert resolve_mesh(None) is None  # the test process has one CPU device
    assert resolve_mesh(jax.devices()) is None
    with pytest.raises(TypeError, match="mesh must be"):
        resolve_mesh("gpu")
    with pytest.raises(ValueError, match="no devices"):
        resolve_mesh([])


def test_device_plan_plans_a_share_like_one_device_plans_a_call():
    from onepixel_jax import engine
    from onepixel_jax.distributed import device_plan

    plan = engine.Plan(slots=66, call_slots=33)
    small, big = device_plan(plan, 2), device_plan(plan, 100)
    assert (small.slots, small.call_slots) == (33, 33)  # calls keep their shape
    assert (big.slots, big.call_slots) == (66, 33)  # a big share: the call's plan
    assert device_plan(plan, 40).slots == 66
    assert device_plan(plan, 20).slots == 33


# --------------------------------------------------------------------------------------
# Subprocesses: forced host devices, two processes under jax.distributed


def test_four_forced_host_devices_give_the_records_of_one_device():
    proc = _python(["devices"], env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    refs = {case: _reference(*case) for case in CASES}  # while the subprocess runs
    got = _result_line(_finish(proc))
    for n, targeted in CASES:
        name = f"{n}-{targeted}"
        ref = refs[(n, targeted)]
        for f in FIELDS:
            assert got[name][f] == ref[f], (name, f)
        # no device carries more than one device alone (padding is never started)
        assert got[name]["model_evaluations"] / 4 <= ref["model_evaluations"]
        assert got[name]["progress"]["images_done"] == n
        assert got[name]["progress"]["evaluations"] == sum(ref["queries"])
    assert got["digits-cnn"] == []  # fields that differ between one and four devices
    assert got["callbacks"] == 0  # progress came between segments, not from inside the loop
    # count=5 of 7 images (the sweep's padded last chunk): the padding is never started
    ref, part = refs[(7, False)], got["7-count5"]
    for f in FIELDS:
        assert part[f][:5] == ref[f][:5], f
    assert part["queries"][5:] == [0, 0]
    assert part["progress"]["images_done"] == 5
    assert part["progress"]["evaluations"] == sum(ref["queries"][:5])


def test_two_processes_under_jax_distributed_give_the_records_of_one_process(tmp_path):
    port = _free_port()
    procs = [_python(["process", str(i), "2", str(port)]) for i in range(2)]
    outs = [_finish(p) for p in procs]
    results = [_result_line(o) for o in outs]
    assert results[0]["devices"] == 4 and results[0]["local_devices"] == 2
    for n, targeted in CASES:
        name = f"{n}-{targeted}"
        ref = _reference(n, targeted)
        for got in results:  # every process gets every image's result
            for f in FIELDS:
                assert got[name][f] == ref[f], (name, f)


# --------------------------------------------------------------------------------------
# The subprocess side


def _devices_main() -> None:
    import jax

    import onepixel_jax as opj

    assert len(jax.devices()) == 4, jax.devices()
    from onepixel_jax import progress as progress_lib

    callbacks = []  # host callbacks from inside the compiled loop (there must be none)
    progress_lib.report = lambda *a: callbacks.append(a)
    out = {}
    for n, targeted in CASES:
        stats: list[dict] = []
        out[f"{n}-{targeted}"] = _run_case(n, targeted, progress=stats.append)
        out[f"{n}-{targeted}"]["progress"] = stats[-1]
    stats = []
    out["7-count5"] = _run_case(7, False, progress=stats.append, count=5)
    out["7-count5"]["progress"] = stats[-1]
    # A real CNN (the committed digits-cnn), one device against four, in this process.
    predict_fn, _ = opj.models.load("digits-cnn")
    images, labels, _ = opj.data.load("digits", "test", limit=6)
    cfg = opj.AttackConfig(popsize=20, max_iters=4, early_stop="success")
    runs = [
        opj.attack(jax.random.key(2), predict_fn, images, labels, cfg, progress=False, mesh=m)
        for m in (jax.devices()[:1], None)
    ]
    out["callbacks"] = len(callbacks)
    out["digits-cnn"] = [f for f in FIELDS if not np.array_equal(*(getattr(r, f) for r in runs))]
    print("RESULT " + json.dumps(out), flush=True)


def _process_main(process_id: int, num_processes: int, port: int) -> None:
    import jax

    jax.config.update("jax_num_cpu_devices", 2)
    jax.distributed.initialize(
        f"127.0.0.1:{port}", num_processes, process_id, initialization_timeout=120
    )
    out = {"devices": len(jax.devices()), "local_devices": len(jax.local_devices())}
    for n, targeted in CASES:
        out[f"{n}-{targeted}"] = _run_case(n, targeted)
    print("RESULT " + json.dumps(out), flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    if sys.argv[1] == "devices":
        _devices_main()
    elif sys.argv[1] == "process":
        _process_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]!r}")
