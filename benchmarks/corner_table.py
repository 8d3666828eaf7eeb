"""The whole one-pixel corner space of each image, evaluated once, and scan orders replayed on it.

``build`` evaluates every pixel with every corner of the colour cube (8,192 candidates on a
32x32 RGB image) on the first N test images a network classifies correctly (the selection of
``search_curves.py``) and stores the probabilities. Which images one corner pixel can fool is
then known exactly, and any order of the corner scan, any population size and any stall rule
can be replayed on the table without another model call:

    python benchmarks/corner_table.py build --model allconv-cifar10 --n-images 100 \\
        --out runs/corner-table/allconv-cifar10.npz
    python benchmarks/corner_table.py replay runs/corner-table/allconv-cifar10.npz \\
        --popsize 64 --stall 0 8 16 32 64

``replay`` prints, per probe order (``random``: a random first corner per pixel, the others in
index order; ``farthest``: the corner farthest from the pixel's clean colour first, the others
by decreasing distance) the successes, their median and mean queries, success at a few query
counts, and, per stall rule, the successes and the total queries over all images (failures
included). It replays :mod:`onepixel_jax.search.corner_scan`'s order (probe, then the pixels
ranked by their probe's fitness, the paper's objective) with its own random permutation, so the
random order matches the engine's in distribution, not image by image.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

CHECKS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)


def build(args) -> int:
    import jax
    import jax.numpy as jnp

    import onepixel_jax as opj
    from onepixel_jax.experiments.selection import select_images
    from onepixel_jax.targets import incremental

    predict_fn, card = opj.models.load(args.model)
    dataset = args.dataset or ("mnist" if "mnist" in args.model else "cifar10")
    images, labels, _ = opj.data.load(dataset, "test", limit=4000)
    idx, lab, _ = select_images(predict_fn, images, labels, args.n_images, False)
    h, w, c = card.input_shape
    k = 2**c
    target = incremental.from_zoo(args.model)
    prepare, evaluate = jax.jit(target.prepare), jax.jit(target.evaluate)
    bits = (np.arange(k)[:, None] >> np.arange(c)[None, :]) & 1
    pix = np.array([[p // w, p % w, *(255 * bits[j])] for p in range(h * w) for j in range(k)])
    pix = jnp.asarray(pix.reshape(1, -1, 1, 2 + c), jnp.int32)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    probs = np.zeros((len(idx), h * w, k, card.num_classes), np.float16)
    done = 0
    if out.exists():  # resume
        old = np.load(out)
        done = int(old["done"])
        probs[:done] = old["probs"][:done]
    t0 = time.perf_counter()
    parts = -(-pix.shape[1] // args.call)
    for n in range(done, len(idx)):
        x = jnp.asarray(images[idx[n]][None].astype(np.float32))
        cache = prepare(x)
        rows = [
            np.asarray(evaluate(cache, x, pix[:, q * args.call : (q + 1) * args.call])[0])
            for q in range(parts)
        ]
        probs[n] = np.concatenate(rows).reshape(h * w, k, -1)
        if (n + 1) % 10 == 0 or n + 1 == len(idx):
            np.savez(out, probs=probs, idx=idx, labels=lab, images=images[idx], done=n + 1)
            rate = (n + 1 - done) * h * w * k / (time.perf_counter() - t0)
            print(f"{n + 1}/{len(idx)} images, {rate:,.0f} evaluations/s", flush=True)
    return 0


def scan_sequence(fit, colours, order, rng):
    """(pixel, corner) pairs in the corner scan's order for one image."""
    hw, k = fit.shape
    c = colours.shape[1]
    perm = rng.permutation(hw)
    if order == "farthest":
        bits = (np.arange(k)[:, None] >> np.arange(c)[None, :]) & 1
        dist = np.abs(colours[:, None, :] - 255.0 * bits[None]).sum(-1)
        corners = np.argsort(-dist, axis=1, kind="stable")
    else:
        first = rng.integers(0, k, hw)
        corners = (first[:, None] + np.arange(k)[None, :]) % k
    probe = [(p, corners[p, 0]) for p in perm]
    ranked = perm[np.argsort([fit[p, corners[p, 0]] for p in perm], kind="stable")]
    return probe + [(p, corners[p, j]) for p in ranked for j in range(1, k)]


def replay(args) -> int:
    data = np.load(args.table)
    done = int(data["done"])
    probs = data["probs"][:done].astype(np.float32)
    labels, images = data["labels"][:done], data["images"][:done]
    n, hw, k, _ = probs.shape
    p_true = np.take_along_axis(probs, labels[:, None, None, None], 3)[..., 0]
    fooled = probs.argmax(-1) != labels[:, None, None]
    pop = args.popsize
    budget = (args.budget // pop) * pop
    print(f"{args.table}: {n} images, {int(fooled.any((1, 2)).sum())} fooled by some corner pixel")
    print(f"popsize {pop}, budget {budget:,}; queries counted per generation\n")
    print(
        "| order | successes | median q. | mean q. | " + " | ".join(f"@{q}" for q in CHECKS) + " |"
    )
    print("|---" * (4 + len(CHECKS)) + "|")
    stall_rows = []
    for order in ("random", "farthest"):
        rng = np.random.default_rng(args.seed)
        first_hit, best = [], []
        for i in range(n):
            seq = scan_sequence(p_true[i], images[i].reshape(hw, -1).astype(np.float32), order, rng)
            s = np.array([fooled[i][p, j] for p, j in seq])
            v = np.array([p_true[i][p, j] for p, j in seq])
            gens = -(-len(seq) // pop)
            hits = np.flatnonzero(s)
            first_hit.append(hits[0] // pop if len(hits) else None)
            best.append(
                np.minimum.accumulate([v[g * pop : (g + 1) * pop].min() for g in range(gens)])
            )
        q = np.array([(g + 1) * pop for g in first_hit if g is not None])
        cells = " | ".join(str(int((q <= c).sum())) for c in CHECKS)
        med = f"{np.median(q):,.0f}" if len(q) else "-"
        mean = f"{q.mean():,.0f}" if len(q) else "-"
        print(f"| {order} | {len(q)}/{n} | {med} | {mean} | {cells} |")
        for stall in args.stall:
            total, wins = 0, 0
            for g_hit, b in zip(first_hit, best, strict=True):
                end = budget // pop  # generations run without a success
                if stall:  # the engine's rule: no gain > eps over the last `stall` generations
                    # after the scan the random corners never improve on it, so the rule ends it
                    b = np.concatenate([b, np.full(end, b[-1])])[:end]
                    late = [g for g in range(stall, end) if b[g - stall] - b[g] <= args.stall_eps]
                    end = late[0] + 1 if late else end
                if g_hit is not None and g_hit < end:
                    total, wins = total + (g_hit + 1) * pop, wins + 1
                else:
                    total += end * pop
            stall_rows.append((order, stall, wins, total))
    print("\n| order | stall (generations) | successes | total queries (all images) |")
    print("|---|---|---|---|")
    for order, stall, wins, total in stall_rows:
        print(f"| {order} | {stall or 'off'} | {wins}/{n} | {total:,} |")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="evaluate every corner pixel of each image")
    b.add_argument("--model", required=True)
    b.add_argument("--dataset", default=None)
    b.add_argument("--n-images", type=int, required=True)
    b.add_argument("--call", type=int, default=2048, help="candidates per model call")
    b.add_argument("--out", required=True)
    r = sub.add_parser("replay", help="replay scan orders and stall rules on a table")
    r.add_argument("table")
    r.add_argument("--popsize", type=int, default=64)
    r.add_argument("--budget", type=int, default=40_400)
    r.add_argument("--stall", type=int, nargs="+", default=[0, 16, 32, 64])
    r.add_argument("--stall-eps", type=float, default=1e-4)
    r.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    return build(args) if args.command == "build" else replay(args)


if __name__ == "__main__":
    raise SystemExit(main())
