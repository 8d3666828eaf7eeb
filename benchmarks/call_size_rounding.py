"""How much a model's probabilities depend on the size of the call that computes them.

XLA's kernels may round the last bit of a result differently for different batch sizes, so the
same candidate can get a slightly different probability in a call of 400 candidates and in one
of 1,600. For each committed base network this script evaluates the same ``--candidates``
inputs (test images, each with one random pixel set to a random colour) in calls of each
``--sizes`` value and records the largest absolute difference of a probability from the calls
of the first size. Usage::

    python benchmarks/call_size_rounding.py --json benchmarks/results/call-size-rounding-cpu.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import onepixel_jax as opj
from onepixel_jax.provenance import machine_info, package_versions, utc_now

NETWORKS = ("digits-cnn", "lenet-mnist", "allconv-cifar10", "nin-cifar10", "vgg16-cifar10")


def candidates(dataset: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` test images (cycled) with one random pixel set to a random colour, float32."""
    images, _, _ = opj.data.load(dataset, "test", limit=64)
    rng = np.random.default_rng(seed)
    x = images[np.arange(n) % len(images)].astype(np.float32)
    r = rng.integers(0, x.shape[1], n)
    c = rng.integers(0, x.shape[2], n)
    x[np.arange(n), r, c] = rng.integers(0, 256, (n, x.shape[3]))
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS))
    ap.add_argument("--sizes", type=int, nargs="+", default=[400, 100, 200, 800, 1600])
    ap.add_argument("--candidates", type=int, default=1600)
    ap.add_argument("--json", type=Path, help="write the raw results here")
    args = ap.parse_args()
    if any(args.candidates % s for s in args.sizes):
        raise SystemExit("--candidates must be a multiple of every size")
    rows = []
    for name in args.networks:
        predict_fn, card = opj.models.load(name)
        x = jnp.asarray(candidates(card["dataset"], args.candidates))
        f = jax.jit(predict_fn)
        outs = {
            s: np.concatenate([np.asarray(f(x[i : i + s])) for i in range(0, len(x), s)])
            for s in args.sizes
        }
        ref = outs[args.sizes[0]]
        diffs = {s: float(np.abs(outs[s] - ref).max()) for s in args.sizes[1:]}
        rows.append({"network": name, "max_abs_diff_from_first_size": diffs})
        print(name, {s: f"{d:.1e}" for s, d in diffs.items()})
    if args.json is not None:
        out = {
            "command": "python benchmarks/call_size_rounding.py "
            + " ".join(
                ["--networks", *args.networks, "--sizes", *map(str, args.sizes)]
                + ["--candidates", str(args.candidates), "--json", str(args.json)]
            ),
            "date": utc_now(),
            "machine": machine_info(),
            "versions": package_versions(("jax", "jaxlib", "flax", "numpy")),
            "sizes": args.sizes,
            "candidates": args.candidates,
            "rows": rows,
        }
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
