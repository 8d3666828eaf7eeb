"""Success-versus-queries measurements of the search strategies (docs/search.md).

One run per (network, setting, method) with early stopping at the first success: an image's
``queries`` is the number of model evaluations until its first success (or the whole budget
when it fails), so success at ``q`` queries is ``success and queries <= q`` and one run gives
the whole curve. Every method attacks the same images: the first ``--n-images`` test images the
network classifies correctly (dataset order). Results are appended as JSON lines, one per image,
as they are produced; a rerun skips the (method, image) pairs already in the file, so the
script can be stopped and restarted (resumable) and grown with a larger ``--n-images``.

    python benchmarks/search_curves.py --model allconv-cifar10 --pixels 1 --n-images 30 \\
        --methods paper,corner-scan,fast --out benchmarks/results/search/allconv-cifar10.jsonl

``--max-queries`` caps the budget of the listed methods (the cap is recorded per line).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

import onepixel_jax as opj
from onepixel_jax.experiments.selection import select_images

PAPER_BUDGET = 40_400

# Method name -> AttackConfig fields (pixels, targeted and early_stop are set per run). Each
# popsize * (max_iters + 1) is at most the paper's 40,400 evaluations, but for the grid scan, the
# reference that runs its whole grid (65,536 candidates on 32x32 RGB).
METHODS: dict[str, dict] = {
    "paper": dict(strategy="paper"),
    "random": dict(strategy="random"),
    "random-corners": dict(strategy="random", sampler="corners"),
    "de-best1": dict(strategy="de", mutation="best1"),
    "de-best1-bin": dict(strategy="de", mutation="best1", crossover=0.7),
    "de-current-to-best1": dict(strategy="de", mutation="current_to_best1"),
    "de-rand2": dict(strategy="de", mutation="rand2"),
    "de-rand1-bin": dict(strategy="de", crossover=0.7),
    "de-rand1-dither": dict(strategy="de", options=(("dither", True),)),
    "de-rand1-corners": dict(strategy="de", sampler="corners"),
    "de-rand1-margin": dict(strategy="de", objective="margin"),
    "jade": dict(strategy="jade", popsize=100, max_iters=403),
    "shade": dict(strategy="shade", popsize=100, max_iters=403),
    "corner-scan": dict(strategy="corner-scan", popsize=128, max_iters=314),
    # the scan as first measured: a random first corner per pixel, the others in index order
    "corner-scan-random": dict(
        strategy="corner-scan", popsize=128, max_iters=314, options=(("probe", "random"),)
    ),
    "sparse-rs": dict(strategy="sparse-rs", popsize=100, max_iters=403),
    "grid-scan": dict(strategy="grid-scan", popsize=128, max_iters=511),  # all 65,536 (reference)
    "cma-es": dict(strategy="cma-es", popsize=100, max_iters=403),
    "fast": dict(strategy="fast", popsize=64, max_iters=630),
    "fast-nostall": dict(strategy="fast", popsize=64, max_iters=630, stall=0),
    # earlier forms of the preset, kept to label their records: 128 candidates per generation
    # with stall 32, then 64 with stall 64; both scanned corners in the random order at d = 1
    # (corner-scan-random), which the corner-scan options reproduce exactly
    "fast-p128": dict(strategy="fast", popsize=128, max_iters=314, stall=32),
    "fast-p64-stall32": dict(strategy="fast", popsize=64, max_iters=630, stall=32),  # d > 1
    "fast-p64-random": dict(
        strategy="corner-scan", popsize=64, max_iters=630, stall=64, options=(("probe", "random"),)
    ),
    "paper-stall": dict(strategy="paper", stall=10),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", default=None, help="default: cifar10, or mnist for lenet-mnist")
    p.add_argument("--pixels", type=int, default=1)
    p.add_argument("--targeted", action="store_true")
    p.add_argument("--n-images", type=int, required=True)
    p.add_argument("--methods", required=True, help=f"comma-separated, from {sorted(METHODS)}")
    p.add_argument("--max-queries", type=int, default=None, help="cap the budget of the methods")
    p.add_argument("--chunk", type=int, default=5, help="images per engine call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def config_for(method: str, pixels: int, targeted: bool, cap: int | None) -> opj.AttackConfig:
    fields = dict(METHODS[method])
    popsize = fields.get("popsize", 400)
    max_iters = fields.get("max_iters", 100)
    if cap is not None and popsize * (max_iters + 1) > cap:
        fields["max_iters"] = cap // popsize - 1
    return opj.AttackConfig(pixels=pixels, targeted=targeted, early_stop="success", **fields)


def target_for(label: int, index: int, num_classes: int) -> int:
    """A fixed target per image: a class other than the label, spread over the classes."""
    return (label + 1 + index % (num_classes - 1)) % num_classes


def done_pairs(path: Path) -> set:
    out = set()
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out.add((r["method"], r["pixels"], r["targeted"], r["image"], r["cap"]))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    dataset = args.dataset or ("mnist" if "mnist" in args.model else "cifar10")
    predict_fn, _ = opj.models.load(args.model)
    images, labels, _ = opj.data.load(dataset, "test", limit=4000)
    idx, lab, _ = select_images(predict_fn, images, labels, args.n_images, False)
    num_classes = 10
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    have = done_pairs(out)
    for method in args.methods.split(","):
        if method not in METHODS:
            raise SystemExit(f"unknown method {method!r}; one of {sorted(METHODS)}")
        cfg = config_for(method, args.pixels, args.targeted, args.max_queries)
        for start in range(0, len(idx), args.chunk):
            part = [
                j
                for j in range(start, min(start + args.chunk, len(idx)))
                if (method, args.pixels, args.targeted, int(idx[j]), args.max_queries) not in have
            ]
            if not part:
                continue
            part = list(range(start, min(start + args.chunk, len(idx))))
            x = images[idx[part]]
            y = lab[part].astype(np.int32)
            tg = None
            if args.targeted:
                tg = np.array([target_for(int(lab[j]), j, num_classes) for j in part], np.int32)
            t0 = time.perf_counter()
            # Chunks have fixed boundaries and keys, so a resumed run repeats a chunk exactly.
            key = jax.random.fold_in(jax.random.key(args.seed), start)
            r = opj.attack(key, predict_fn, x, y, cfg, tg, progress=False)
            wall = time.perf_counter() - t0
            with out.open("a") as f:
                for k, j in enumerate(part):
                    if (method, args.pixels, args.targeted, int(idx[j]), args.max_queries) in have:
                        continue
                    row = {
                        "model": args.model,
                        "method": method,
                        "strategy": cfg.strategy,
                        "pixels": args.pixels,
                        "targeted": args.targeted,
                        "image": int(idx[j]),
                        "label": int(y[k]),
                        "target": None if tg is None else int(tg[k]),
                        "success": bool(r.success[k]),
                        "queries": int(r.queries[k]),
                        "budget": cfg.budget,
                        "cap": args.max_queries,
                        "popsize": cfg.popsize,
                        "pixels_found": r.pixels[k].tolist(),
                        "final_fitness": float(r.fitness_history[k, -1]),
                        # best fitness per generation run (the stall rule can be replayed on it)
                        "history": [
                            round(float(v), 6)
                            for v in r.fitness_history[k, : int(r.queries[k]) // cfg.popsize]
                        ],
                        "wall_s_chunk": round(wall, 2),
                        "config": {
                            f.name: getattr(cfg, f.name)
                            for f in dataclasses.fields(cfg)
                            if f.name not in ("batch_size", "call_size")
                        },
                    }
                    f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
            print(
                f"{args.model} d={args.pixels} t={args.targeted} {method}: "
                f"{start + len(part)}/{len(idx)} images, {wall:.0f}s, "
                f"success {int(r.success.sum())}/{len(part)}",
                file=sys.stderr,
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
