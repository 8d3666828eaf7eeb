"""Host-callback overhead of an ONNX Runtime target (opj.targets.from_onnx) per generation.

The zoo checkpoint is exported to ONNX, then three timings are taken on the same G batches of
``images * popsize`` candidate images (the engine's default call: one call per generation on
every image's population), interleaved and repeated (medians):

- direct: ``session.run`` on each batch from Python (the reference the issue names);
- callback: the same batches through the target inside one compiled ``lax.scan`` (one
  ``jax.pure_callback`` per step, as in the engine's loop);
- attack: ``opj.attack(..., early_stop=None, batch_size=images, call_size=images * popsize)``
  with G - 1 generations on ``images`` images, i.e. G model calls of the same size plus the
  engine's own work (DE, patching) and the small calls for the clean and final images. Per
  generation it is compared with direct.

The time spent inside ``session.run`` during the callback variants is also recorded, so the
time outside the host call (transfer, validation, dispatch) is reported apart from the
model's own run time, which varies with the machine's load.

    python benchmarks/bench_host_target.py [--model allconv-cifar10] [--images 4]
        [--popsize 400] [--gens 5] [--repeats 3] [--json FILE]

``--json FILE`` writes every timing (each repeat), the medians, the machine, the versions and
the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import onepixel_jax as opj
from onepixel_jax.provenance import machine_info, package_versions, utc_now
from onepixel_jax.targets.export import export_checkpoint
from onepixel_jax.targets.host import from_onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="allconv-cifar10")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--popsize", type=int, default=400)
    parser.add_argument("--gens", type=int, default=5, help="model calls timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the raw timings here")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    _, card = opj.models.load(args.model)
    shape = tuple(card["input_shape"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.model}.onnx"
        export_checkpoint(args.model, path)
        target = from_onnx(path)
        session_run = target.host_fn  # the very function the callback calls: session.run
        inside: list[float] = []  # time spent in session.run during the callback variants

        def timed_run(x):
            t0 = time.perf_counter()
            out = session_run(x)
            inside.append(time.perf_counter() - t0)
            return out

        target.host_fn = timed_run

        rng = np.random.default_rng(0)
        call = args.images * args.popsize
        batches = rng.integers(0, 256, (args.gens, call, *shape)).astype(np.float32)
        images = rng.integers(0, 256, (args.images, *shape)).astype(np.uint8)
        labels = np.zeros(args.images, np.int32)
        # all images side by side in one call per generation, as the direct calls
        cfg = opj.AttackConfig(
            popsize=args.popsize,
            max_iters=args.gens - 1,
            early_stop=None,
            batch_size=args.images,
            call_size=call,
        )

        @jax.jit
        def scan_calls(xs):
            return jax.lax.scan(lambda c, x: (c, target(x)), 0, xs)[1]

        xs = jax.device_put(batches)

        def direct() -> None:
            for b in batches:
                session_run(b)

        def callback() -> None:
            scan_calls(xs).block_until_ready()

        def attack() -> None:
            opj.attack(jax.random.key(0), target, images, labels, cfg)

        # warm-up: compile and first runs
        callback()
        attack()
        direct()
        times: dict[str, list[float]] = {"direct": [], "callback": [], "attack": []}
        outside: dict[str, list[float]] = {"callback": [], "attack": []}
        for _ in range(args.repeats):
            for name, fn in (("direct", direct), ("callback", callback), ("attack", attack)):
                inside.clear()
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
                if name in outside:
                    outside[name].append(times[name][-1] - sum(inside))

    med = {k: statistics.median(v) for k, v in times.items()}
    per_gen = {k: v / args.gens for k, v in med.items()}
    print(f"model {args.model}, call size {call} ({args.images} images x {args.popsize})")
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    out_gen = {k: statistics.median(v) / args.gens for k, v in outside.items()}
    for k, v in times.items():
        print(f"  {k:9s} " + "  ".join(f"{t:.3f}" for t in v) + f"   median {med[k]:.3f} s")
    for k, v in outside.items():
        print(f"  {k:9s} outside session.run: " + "  ".join(f"{t:.4f}" for t in v))
    print(
        "| model | call size | gens | direct s/gen | callback s/gen | callback vs direct | "
        "outside the host call s/gen | attack s/gen | attack vs direct |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.model} | {call} | {args.gens} | {per_gen['direct']:.3f} | "
        f"{per_gen['callback']:.3f} | {100 * (med['callback'] / med['direct'] - 1):+.1f}% | "
        f"{out_gen['callback']:.4f} ({100 * out_gen['callback'] / per_gen['direct']:.1f}%) | "
        f"{per_gen['attack']:.3f} | {100 * (med['attack'] / med['direct'] - 1):+.1f}% |"
    )
    if args.json:
        record = {
            "command": "python " + " ".join(sys.argv),
            "date": utc_now(),
            "model": args.model,
            "images": args.images,
            "popsize": args.popsize,
            "call_size": call,
            "gens": args.gens,
            "repeats": args.repeats,
            "times_s": times,
            "outside_session_run_s": outside,
            "median_s": med,
            "per_generation_s": per_gen,
            "outside_per_generation_s": out_gen,
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
            "machine": machine_info(),
            "versions": package_versions(("jax", "jaxlib", "onnx", "onnxruntime", "jax2onnx")),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
