"""The accelerator suite: one command, a fixed time budget, raw JSON written as it goes.

Sections, in order (each skipped with a note when the budget is spent):

1. ``device``: devices, versions, default matmul precision.
2. ``forward``: bare forward images/s against the call size per network, with the device's
   memory in use after each size (``memory_stats``; ``None`` on a CPU).
3. ``calibration``: :func:`onepixel_jax.planner.calibrate` per network (the call size it
   measures, with the rate at each size tried) beside the default plan.
4. ``useful_share``: ``opj.attack`` (paper DE, stop at the first success, the planner's plan)
   on 20 and 100 images: useful evaluations / evaluations carried, useful evaluations/s.
5. ``attack``: ``opj.attack`` throughput per network with incremental evaluation on and off:
   first call (compilation included) and warm call on the same images.
6. ``cli``: ``onepixel attack`` over ``--cli-images`` images against ``opj.attack``'s rate on
   the same images (the sweep's chunks and writes included).
7. ``peers``: ``benchmarks/bench_protocol.py`` (the paper's protocol side by side with
   torchattacks and ART on the same device), when torch is installed.

    bash benchmarks/gpu_suite.sh                      # on the accelerator, ~8 minutes
    python benchmarks/gpu_suite.py --quick --out /tmp/suite.json   # a CPU smoke run

Every number lands in ``--out`` (JSON) right after it is measured, so a run cut short by its
time limit still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import onepixel_jax as opj
from onepixel_jax import planner
from onepixel_jax.provenance import machine_info, package_versions, utc_now
from onepixel_jax.targets.resolver import resolve

ROOT = Path(__file__).resolve().parents[1]


class Suite:
    def __init__(self, out: Path, budget: float):
        self.out, self.budget, self.t0 = out, budget, time.perf_counter()
        self.data: dict = {"created_utc": utc_now(), "budget_s": budget, "sections": {}}
        self.save()

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def record(self, section: str, key: str, value) -> None:
        self.data["sections"].setdefault(section, {})[key] = value
        self.data["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        self.save()
        print(f"[suite] {section} {key}: {json.dumps(value)[:200]}", flush=True)

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.out)


def memory_in_use() -> int | None:
    stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], "memory_stats") else None
    return None if not stats else int(stats.get("bytes_in_use", 0))


def forward_rate(predict_fn, shape, size: int, seconds: float) -> dict:
    f = jax.jit(predict_fn)
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (size, *shape)), jnp.float32)
    t = time.perf_counter()
    f(x).block_until_ready()
    first = time.perf_counter() - t
    calls, t0 = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - t0 < seconds:
        f(x).block_until_ready()
        calls += 1
    rate = calls * size / (time.perf_counter() - t0)
    return {"images_per_s": round(rate), "first_call_s": round(first, 3), "memory": memory_in_use()}


def first_correct(predict_fn, n: int, split: str = "test"):
    x, y, _ = opj.data.load("cifar10", split)
    probs = opj.predict_in_batches(predict_fn, x[: 4 * n + 50].astype(np.float32), 500)
    ok = np.flatnonzero(probs.argmax(1) == y[: len(probs)])[:n]
    return x[ok], y[ok]


def timed_attack(predict_fn, x, y, cfg) -> dict:
    t = time.perf_counter()
    res = opj.attack(jax.random.key(0), predict_fn, x, y, cfg, progress=False)
    seconds = time.perf_counter() - t
    useful = int(res.queries.sum())
    return {
        "images": len(x),
        "seconds": round(seconds, 3),
        "success": int(res.success.sum()),
        "useful_evaluations": useful,
        "evaluations_carried": int(res.model_evaluations),
        "useful_share": round(useful / max(res.model_evaluations, 1), 4),
        "useful_per_s": round(useful / seconds),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/gpu_suite.json"))
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the whole suite")
    ap.add_argument("--models", default="allconv-cifar10,nin-cifar10,vgg16-cifar10")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a CPU smoke run)")
    ap.add_argument("--cli-images", type=int, default=1000)
    args = ap.parse_args(argv)
    suite = Suite(Path(args.out), args.budget)
    models = [m for m in args.models.split(",") if m]
    if (ROOT / "onepixel_jax/zoo/weights/resnet20-cifar10").is_dir():
        models.append("resnet20-cifar10")
    quick = args.quick
    suite.record(
        "device",
        "info",
        {
            "devices": [str(d) for d in jax.devices()],
            "device_kind": jax.devices()[0].device_kind,
            "backend": jax.default_backend(),
            "matmul_precision": str(jax.config.jax_default_matmul_precision),
            "machine": machine_info(),
            "versions": package_versions(("jax", "jaxlib", "flax")),
        },
    )

    sizes = [64, 256] if quick else [1600, 5200, 12800, 25600, 51200]
    for name in models[:1] if quick else models:
        if suite.left() < 60:
            break
        predict_fn, _ = opj.models.load(name)
        rates = {}
        for size in sizes:
            rates[size] = forward_rate(predict_fn, (32, 32, 3), size, 0.5 if quick else 2.0)
        suite.record("forward", name, rates)

    for name in models[:1] if quick else models:  # the measured call size of each network
        if suite.left() < 60:
            break
        p, _ = opj.models.load(name)
        target = resolve(p, True, 1, None, (32, 32, 3))
        t = time.perf_counter()
        cal = planner.calibrate(target, (32, 32, 3), 16 if quick else 400, 1,
                                max_slots=4 if quick else None)  # fmt: skip
        suite.record("calibration", name, {
            "call_size": cal.call_size, "device_kind": cal.device_kind,
            "seconds": round(time.perf_counter() - t, 2),
            "rows": [{"call_size": c, "seconds": round(sec, 6), "candidates_per_s": round(r)}
                     for c, sec, r in cal.rows],
            "default_plan": list(planner.plan_slots(400, 10**6, (32, 32, 3))),
        })  # fmt: skip

    predict_fn, _ = opj.models.load(models[0])
    counts = (4, 8) if quick else (20, 100)
    x, y = first_correct(predict_fn, max(counts))
    popsize, iters = (16, 3) if quick else (400, 100)
    cfg = opj.AttackConfig(strategy="paper", early_stop="success", popsize=popsize, max_iters=iters)
    slots, call_slots = planner.plan_slots(popsize, max(counts), (32, 32, 3))
    for n in counts:
        if suite.left() < 60:
            break
        timed_attack(predict_fn, x[:n], y[:n], cfg)  # compile (and warm) first
        share = timed_attack(predict_fn, x[:n], y[:n], cfg)
        suite.record("useful_share", f"{models[0]}-{n}", {**share, "plan": [slots, call_slots]})

    n = 4 if quick else 200
    for name in models[:1] if quick else models:
        for incremental in (True, False):
            if suite.left() < 90:
                break
            p, _ = opj.models.load(name)
            xs, ys = first_correct(p, n)
            c = opj.AttackConfig(
                early_stop="success", popsize=popsize, max_iters=iters, incremental=incremental
            )
            first = timed_attack(p, xs, ys, c)
            warm = timed_attack(p, xs, ys, c)
            suite.record(
                "attack", f"{name}-incremental-{incremental}", {"first": first, "warm": warm}
            )

    if suite.left() > 120:
        n = 8 if quick else args.cli_images
        xs, ys = first_correct(predict_fn, n)
        api = timed_attack(predict_fn, xs, ys, opj.AttackConfig(early_stop="success"))
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [
                sys.executable, "-m", "onepixel_jax.cli", "attack", "--model", models[0],
                "--dataset", "cifar10", "--n-images", str(n), "--quiet", "--no-report",
                "--out", str(Path(tmp) / "run"),
            ] + (["--popsize", "16", "--max-iters", "3"] if quick else [])  # fmt: skip
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            seconds = time.perf_counter() - t
            recs = [json.loads(line) for line in (Path(tmp) / "run/results.jsonl").open()]
        useful = sum(r["queries"] for r in recs)
        suite.record("cli", models[0], {
            "returncode": proc.returncode, "images": n, "seconds": round(seconds, 2),
            "useful_per_s": round(useful / seconds), "api_useful_per_s": api["useful_per_s"],
            "ratio": round(useful / seconds / max(api["useful_per_s"], 1), 3),
        })  # fmt: skip

    if suite.left() > 120 and not quick:
        out = Path(args.out).with_name("gpu_suite_protocol.json")
        cmd = [sys.executable, str(ROOT / "benchmarks/bench_protocol.py"), "--n-images", "20",
               "--torch-device", "cuda", "--with-fast", "--out", str(out)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(suite.left(), 1))
        peers = {"returncode": proc.returncode, "tail": proc.stdout[-2000:], "json": str(out)}
        suite.record("peers", "bench_protocol", peers)
    suite.record("done", "elapsed_s", round(time.perf_counter() - suite.t0, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
