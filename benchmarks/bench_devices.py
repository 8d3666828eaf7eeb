"""Useful evaluations per second per device with 1, 2 and 4 forced host devices.

Each device count runs in its own process (``XLA_FLAGS=--xla_force_host_platform_device_count=D``)
and attacks ``D * images_per_device`` images with ``opj.attack`` over all its devices, so the
work per device stays the same. After one compiling call, the attack is timed ``--repeats``
times (median). Reported per device count:

* useful evaluations: ``queries.sum()`` (the candidate evaluations the attacks needed);
* carried evaluations: ``model_evaluations`` (what the model calls carried, idle slots included),
  per device: it must not grow with the device count;
* useful evaluations per second, in total and per device.

On a CPU the forced devices share the machine's cores, so the per-device rate falls as devices
are added: this shows the sharded loop runs and that work per device does not grow, not how
real accelerators scale (each has its own compute).

    python benchmarks/bench_devices.py                       # 1, 2, 4 devices
    python benchmarks/bench_devices.py --devices 1 2 --images-per-device 2 --repeats 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def worker(args: argparse.Namespace) -> dict:
    import jax
    import numpy as np

    import onepixel_jax as opj

    d = len(jax.devices())
    predict_fn, _ = opj.models.load(args.model)
    n = d * args.images_per_device
    images, labels, _ = opj.data.load("digits", "test", limit=n)
    cfg = opj.AttackConfig(popsize=args.popsize, max_iters=args.gens, early_stop=args.early_stop)

    def run():
        t0 = time.perf_counter()
        res = opj.attack(jax.random.key(0), predict_fn, images, labels, cfg, progress=False)
        return time.perf_counter() - t0, res

    run()  # compile
    times, res = [], None
    for _ in range(args.repeats):
        t, res = run()
        times.append(t)
    t = statistics.median(times)
    useful = int(np.sum(res.queries))
    return {
        "devices": d,
        "images": n,
        "seconds": t,
        "useful": useful,
        "carried": res.model_evaluations,
        "useful_per_s": useful / t,
        "useful_per_s_per_device": useful / t / d,
        "carried_per_device": res.model_evaluations / d,
        "times": times,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--model", default="digits-cnn")
    p.add_argument("--images-per-device", type=int, default=4)
    p.add_argument("--popsize", type=int, default=100)
    p.add_argument("--gens", type=int, default=20)
    p.add_argument("--early-stop", default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="write the rows, machine and load here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return

    import jax

    rows = []
    for d in args.devices:
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={d}",
        }
        cmd = [sys.executable, __file__, "--worker", *sys.argv[1:]]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        line = [x for x in out.splitlines() if x.startswith("RESULT ")][-1]
        rows.append(json.loads(line[len("RESULT ") :]))
        print(f"{d} devices: {rows[-1]}", file=sys.stderr, flush=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Command: `python benchmarks/bench_devices.py {' '.join(sys.argv[1:])}`".rstrip())
    print(
        f"Date: {dt.date.today()}. Machine: {os.cpu_count()} cores, {platform.machine()}, "
        f"{platform.processor() or 'cpu'}; JAX {jax.__version__} on the CPU, forced host "
        f"devices; load average {load:.1f} at the end."
    )
    print(
        f"Model {args.model}, popsize {args.popsize}, {args.gens} generations, early stop "
        f"{args.early_stop}, {args.images_per_device} images per device, median of "
        f"{args.repeats}.\n"
    )
    print(
        "| devices | images | seconds | useful evals | carried evals per device | "
        "useful evals/s | useful evals/s per device |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['devices']} | {r['images']} | {r['seconds']:.2f} | {r['useful']:,} | "
            f"{r['carried_per_device']:,.0f} | {r['useful_per_s']:,.0f} | "
            f"{r['useful_per_s_per_device']:,.0f} |"
        )
    if args.json:
        from onepixel_jax.provenance import machine_info, package_versions, utc_now

        record = {
            "command": "python benchmarks/bench_devices.py " + " ".join(sys.argv[1:]),
            "date": utc_now(),
            "model": args.model,
            "popsize": args.popsize,
            "gens": args.gens,
            "early_stop": args.early_stop,
            "images_per_device": args.images_per_device,
            "repeats": args.repeats,
            "rows": rows,
            "load_end": load,
            "machine": machine_info(),
            "versions": package_versions(("jax", "jaxlib")),
        }
        with open(args.json, "w") as f:
            f.write(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
