"""Engine overhead and throughput of the compiled attack.

For each model and each number of images N, this measures side by side, interleaved:

* ``attack``: ``opj.attack`` with ``early_stop=None`` on N images (population P, G
  generations, so ``N * P * (G + 1)`` candidate evaluations), already compiled;
* ``bare``: ``G + 1`` calls of the jitted ``predict_fn`` alone on batches of the same shape
  ``(N * P, H, W, C)``, each waited for.

The overhead is ``median(attack) / median(bare) - 1``: everything the engine adds to the
model evaluations (DE update, decoding, patching, the loop, input checks and the extra
evaluations of clean and adversarial images). Throughput is candidate evaluations per second
of the attack.

    python benchmarks/bench_engine.py                # full run, writes a Markdown table
    python benchmarks/bench_engine.py --quick        # smoke run (seconds)
    python benchmarks/bench_engine.py --json FILE    # also every row and timing as JSON

The attack runs with ``incremental=False``, ``batch_size=N`` and ``call_size=N * P``, so that
its model calls are those of the bare reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import onepixel_jax as opj
from onepixel_jax import models


class TinyCNN(nn.Module):
    """Three small conv layers and a linear head on 32x32x3 (about 10k images/s on 2 CPU cores)."""

    @nn.compact
    def __call__(self, x):
        x = (x - 127.5) / 64.0
        for ch in (8, 16, 16):
            x = nn.relu(nn.Conv(ch, (3, 3), strides=2)(x))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


def make_predict(name: str):
    key = jax.random.key(0)
    if name == "tiny-cnn":
        module = TinyCNN()
    elif name == "allconv":
        module = models.create("allconv")  # full width: the paper's network
    else:
        raise ValueError(f"unknown model {name!r}")
    variables = module.init(key, jnp.zeros((1, 32, 32, 3)))

    def predict_fn(batch):
        if name == "tiny-cnn":
            return jax.nn.softmax(module.apply(variables, batch), -1)
        return jax.nn.softmax(module.apply(variables, batch, train=False), -1)

    return predict_fn


def bench_one(predict_fn, n: int, popsize: int, gens: int, repeats: int) -> dict:
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8)
    labels = rng.integers(0, 10, n)
    # the same model calls as the bare reference: every image's population in one call per
    # generation, the full forward (the incremental evaluation would change the work itself)
    cfg = opj.AttackConfig(
        popsize=popsize,
        max_iters=gens,
        early_stop=None,
        incremental=False,
        batch_size=n,
        call_size=n * popsize,
    )
    jitted = jax.jit(predict_fn)
    batch = jnp.asarray(rng.uniform(0, 255, (n * popsize, 32, 32, 3)), jnp.float32)

    def run_attack():
        opj.attack(jax.random.key(1), predict_fn, images, labels, cfg)

    def run_bare():
        for _ in range(gens + 1):
            jitted(batch).block_until_ready()

    @jax.jit
    def looped(x):  # the same calls in one compiled loop; the input changes so none is hoisted
        def step(i, acc):
            return acc + predict_fn(x + i.astype(jnp.float32) * 1e-3).sum()

        return jax.lax.fori_loop(0, gens + 1, step, jnp.float32(0))

    def run_loop():
        looped(batch).block_until_ready()

    run_attack()  # compile
    run_bare()
    run_loop()
    t_attack, t_bare, t_loop = [], [], []
    for _ in range(repeats):  # interleaved so all see the same machine load
        for fn, acc in ((run_attack, t_attack), (run_bare, t_bare), (run_loop, t_loop)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    a, b, c = (statistics.median(t) for t in (t_attack, t_bare, t_loop))
    evals = n * popsize * (gens + 1)
    return dict(
        attack_times=t_attack,
        bare_times=t_bare,
        loop_times=t_loop,
        n=n,
        popsize=popsize,
        gens=gens,
        attack_s=a,
        bare_s=b,
        loop_s=c,
        overhead=a / b - 1.0,
        overhead_loop=a / c - 1.0,
        evals_per_s=evals / a,
        bare_evals_per_s=evals / b,
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    dev = jax.devices()[0]
    jax_info = f"JAX {jax.__version__} on {dev.platform} ({dev.device_kind})"
    return f"{os.cpu_count()} cores, {cpu}; {jax_info}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny settings, for a smoke run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="tiny-cnn,allconv")
    ap.add_argument("--json", default=None, help="write every row (with its timings) here")
    args = ap.parse_args(argv)

    plans = {
        # model: (popsize, generations, image counts)
        "tiny-cnn": (400, 50, (1, 8, 32)),
        "allconv": (400, 2, (1, 8)),
    }
    if args.quick:
        plans = {"tiny-cnn": (8, 1, (2,))}
        args.repeats = 1
    rows = []
    for name in args.models.split(","):
        if name not in plans:
            continue
        popsize, gens, ns = plans[name]
        predict_fn = make_predict(name)
        for n in ns:
            r = bench_one(predict_fn, n, popsize, gens, args.repeats)
            r["model"] = name
            rows.append(r)
            print(
                f"{name:9s} N={n:3d} P={popsize} G={gens}: attack {r['attack_s']:.3f}s "
                f"bare {r['bare_s']:.3f}s loop {r['loop_s']:.3f}s "
                f"overhead {100 * r['overhead']:+.1f}% / {100 * r['overhead_loop']:+.1f}% "
                f"{r['evals_per_s']:,.0f} evals/s",
                flush=True,
            )
    print()
    print(f"Date: {dt.date.today().isoformat()}; machine: {machine()}")
    print(f"Command: python {' '.join(sys.argv)}")
    print()
    print(
        "| model | N | popsize | gens | attack (s) | bare calls (s) | bare loop (s) | "
        "overhead vs calls | overhead vs loop | attack evals/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['n']} | {r['popsize']} | {r['gens']} | {r['attack_s']:.2f} | "
            f"{r['bare_s']:.2f} | {r['loop_s']:.2f} | {100 * r['overhead']:+.1f}% | "
            f"{100 * r['overhead_loop']:+.1f}% | {r['evals_per_s']:,.0f} |"
        )
    if args.json:
        import json

        from onepixel_jax.provenance import machine_info, package_versions, utc_now

        record = {
            "command": "python benchmarks/bench_engine.py " + " ".join(sys.argv[1:]),
            "date": utc_now(),
            "repeats": args.repeats,
            "rows": rows,
            "load_end": os.getloadavg()[0],
            "machine": machine_info(),
            "versions": package_versions(("jax", "jaxlib", "flax")),
        }
        with open(args.json, "w") as f:
            f.write(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
