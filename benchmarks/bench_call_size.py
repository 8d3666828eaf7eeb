"""Bare forward rate (images/s) against the model-call size, per committed network.

The engine's default call size on a CPU (``onepixel_jax.planner.CPU_CALL_SIZE``) comes from
this measurement: bigger calls are not faster per image on a CPU, and NiN is faster on
smaller ones. Usage::

    python benchmarks/bench_call_size.py [--models allconv-cifar10,...] [--sizes 100,200,...]

Prints one Markdown table (images/s; best per network in bold) and the machine.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import onepixel_jax as opj
from onepixel_jax.provenance import machine_info, utc_now

DEFAULT_MODELS = "digits-cnn,lenet-mnist,allconv-cifar10,nin-cifar10,vgg16-cifar10"
DEFAULT_SIZES = "50,100,200,400,800,1600"


def forward_rate(predict_fn, shape, size: int, seconds: float = 2.0) -> float:
    """Images per second of a jitted ``predict_fn`` on batches of ``size`` (compile
    excluded; repeated until ``seconds`` have passed, at least 3 calls)."""
    f = jax.jit(predict_fn)
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (size, *shape)), jnp.float32)
    f(x).block_until_ready()
    calls, t0 = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - t0 < seconds:
        f(x).block_until_ready()
        calls += 1
    return calls * size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--sizes", default=DEFAULT_SIZES)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = {}
    for name in args.models.split(","):
        predict_fn, card = opj.models.load(name)
        shape = tuple(card["input_shape"])
        rows[name] = [forward_rate(predict_fn, shape, s, args.seconds) for s in sizes]
        print(name, [round(r) for r in rows[name]], flush=True)
    print(f"\n{utc_now()}, {machine_info()}\n")
    print("| network | " + " | ".join(str(s) for s in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for name, rates in rows.items():
        best = int(np.argmax(rates))
        cells = [f"**{r:,.0f}**" if i == best else f"{r:,.0f}" for i, r in enumerate(rates)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"sizes": sizes, "rates": rows, "machine": machine_info()}, fh, indent=1)


if __name__ == "__main__":
    main()
