"""Useful share of the model's evaluations under an accelerator-shaped plan, counted on a CPU.

The share of the candidate evaluations carried by model calls that an attack needed
(``queries.sum() / model_evaluations``) depends only on the plan (slots, slots per call) and
on when each image stops, not on the device's speed. This script runs the H200's plan for
CIFAR-10 at popsize 400 (calls of 5,200 candidates, 13 slots each; 26 slots for 20 images, 65
for 100) on the CPU with the committed ``digits-cnn`` and scikit-learn's digits, the paper's DE
(``strategy="paper"``, 400 x 100) stopping each image at its first success, in two ways:

- ``whole groups``: a call group makes one full call while any of its slots is busy (the
  engine before partly busy groups were split; ``engine.tail_slots`` forced to 0);
- ``split tail`` (the engine's default): the one partly busy group is evaluated in calls of
  ``ceil(13 / 8) = 2`` slots over its busy slots only.

Both must return the same pixels and queries (the split changes no result). Usage::

    python benchmarks/bench_useful_share.py --images 20 100 \
        --json benchmarks/results/useful-share-cpu.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

import onepixel_jax as opj
from onepixel_jax import engine
from onepixel_jax.provenance import machine_info, package_versions, utc_now

CALL_SIZE = 5200  # the accelerator plan's call for 32x32x3 at popsize 400: 13 slots
SLOTS = {20: 26, 100: 65}  # planner.plan_slots off the CPU, for 32x32x3 at popsize 400


def run(n: int, split_tail: bool) -> dict:
    predict_fn, _ = opj.models.load("digits-cnn")
    x, y, _ = opj.data.load("digits", "test", limit=n)
    cfg = opj.AttackConfig(
        strategy="paper", early_stop="success", call_size=CALL_SIZE, batch_size=SLOTS[n]
    )
    real = engine.tail_slots
    if not split_tail:
        engine.tail_slots = lambda call_slots: 0
    try:
        t0 = time.perf_counter()
        res = opj.attack(jax.random.key(0), predict_fn, x, y, cfg, progress=False)
        seconds = time.perf_counter() - t0
    finally:
        engine.tail_slots = real
    return {
        "images": n,
        "slots": SLOTS[n],
        "call_size": CALL_SIZE,
        "split_tail": split_tail,
        "useful_evaluations": int(res.queries.sum()),
        "model_evaluations": int(res.model_evaluations),
        "useful_share": float(res.queries.sum() / res.model_evaluations),
        "fooled": int(res.success.sum()),
        "queries": res.queries.tolist(),
        "pixels": res.pixels.tolist(),
        "seconds_cpu_first_call": round(seconds, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, nargs="+", default=[20, 100], choices=sorted(SLOTS))
    ap.add_argument("--json", type=Path, help="write the raw results here")
    args = ap.parse_args()
    rows = []
    print("| images | slots | calls | useful share | fooled | same results |")
    print("|---|---|---|---|---|---|")
    for n in args.images:
        whole, split = run(n, False), run(n, True)
        same = whole["queries"] == split["queries"] and whole["pixels"] == split["pixels"]
        for r in (whole, split):
            r["same_results_as_the_other_way"] = same
            rows.append(r)
            kind = "split tail" if r["split_tail"] else "whole groups"
            print(
                f"| {n} | {r['slots']} | {kind} | {r['useful_share']:.3f} | {r['fooled']}/{n} "
                f"| {'yes' if same else 'NO'} |"
            )
    if args.json:
        out = {
            "command": "python benchmarks/bench_useful_share.py "
            + " ".join(["--images", *map(str, args.images), "--json", str(args.json)]),
            "date": utc_now(),
            "machine": machine_info(),
            "versions": package_versions(("jax", "jaxlib", "flax", "numpy")),
            "model": "digits-cnn",
            "dataset": "digits test",
            "config": {
                "strategy": "paper",
                "popsize": 400,
                "max_iters": 100,
                "early_stop": "success",
            },
            "rows": rows,
        }
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
