"""The whole one-pixel corner space of some images, evaluated once, and scan orders replayed on it.

:func:`build` evaluates every pixel with every corner of the colour cube (8,192 candidates on a
32x32 RGB image) on the first ``n_images`` test images a network classifies correctly (the
selection of the sweeps) and stores the probabilities in an ``.npz`` file, resumably. Which
images one corner pixel can fool is then known exactly, and any order of the corner scan, any
population size and any stall rule can be replayed on the table without another model call
(:func:`replay`).

Probe orders: ``random`` (a random first corner per pixel, the others in index order) and
``farthest`` (the corner farthest in L1 from the pixel's clean colour first, the others by
decreasing distance). The replay follows :mod:`onepixel_jax.search.corner_scan` (the probe of
every pixel, then the pixels ranked by their probe's fitness, the paper's objective) with its
own random permutation, so a random order matches the engine's in distribution, not image by
image. The stall rule is :func:`onepixel_jax.metrics.replay_stall`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from onepixel_jax import metrics
from onepixel_jax.errors import UsageError

CHECKS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
ORDERS = ("random", "farthest")


def build(
    model: str,
    n_images: int,
    out: str | Path,
    *,
    call: int = 2048,
    data_dir: str | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Evaluate every (pixel, corner) of the first ``n_images`` correctly classified test
    images into ``out`` (``.npz``: ``probs`` ``(n, H*W, 2**C, K)`` float16, ``idx``,
    ``labels``, ``images``, ``done``); an existing file resumes after its ``done`` images."""
    import jax
    import jax.numpy as jnp

    from onepixel_jax.experiments import inputs
    from onepixel_jax.experiments.selection import select_images
    from onepixel_jax.targets import incremental

    predict_fn, card = inputs.load_model(model)
    images, labels, _ = inputs.load_dataset(card["dataset"], "test", data_dir)
    idx, lab, _ = select_images(predict_fn, images, labels, n_images, False)
    h, w, c = card["input_shape"]
    k = 2**c
    target = incremental.from_zoo(model)
    prepare, evaluate = jax.jit(target.prepare), jax.jit(target.evaluate)
    bits = (np.arange(k)[:, None] >> np.arange(c)[None, :]) & 1
    pix = np.array([[p // w, p % w, *(255 * bits[j])] for p in range(h * w) for j in range(k)])
    pix = jnp.asarray(pix.reshape(1, -1, 1, 2 + c), jnp.int32)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    probs = np.zeros((len(idx), h * w, k, card["num_classes"]), np.float16)
    done = 0
    if out.exists():
        with np.load(out) as old:
            if old["probs"].shape != probs.shape or not np.array_equal(old["idx"], idx):
                raise UsageError(f"{out} holds the table of other images; use another --out")
            done = int(old["done"])
            probs[:done] = old["probs"][:done]
    t0 = time.perf_counter()
    parts = -(-pix.shape[1] // call)
    for n in range(done, len(idx)):
        x = jnp.asarray(images[idx[n]][None].astype(np.float32))
        cache = prepare(x)
        rows = [
            np.asarray(evaluate(cache, x, pix[:, q * call : (q + 1) * call])[0])
            for q in range(parts)
        ]
        probs[n] = np.concatenate(rows).reshape(h * w, k, -1)
        if (n + 1) % 10 == 0 or n + 1 == len(idx):
            np.savez(out, probs=probs, idx=idx, labels=lab, images=images[idx], done=n + 1)
            rate = (n + 1 - done) * h * w * k / (time.perf_counter() - t0)
            log(f"{n + 1}/{len(idx)} images, {rate:,.0f} evaluations/s")
    return out


def scan_sequence(
    fit: np.ndarray, colours: np.ndarray, order: str, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """(pixel, corner) pairs in the corner scan's order for one image; ``fit`` ``(H*W, 2**C)``
    the paper's fitness of each, ``colours`` ``(H*W, C)`` the clean pixels."""
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


def replay(
    table: str | Path,
    *,
    popsize: int = 64,
    budget: int = 40_400,
    stalls: Sequence[int] = (0, 16, 32, 64),
    stall_eps: float = 1e-4,
    seed: int = 0,
    json_out: str | Path | None = None,
) -> str:
    """Markdown: per probe order the successes, median and mean queries and success at
    :data:`CHECKS` queries, then per order and stall rule the successes and total queries
    over all images (failures included), with queries counted per generation of
    ``popsize`` and at most ``budget`` per image. ``json_out``: also write every figure of
    the tables and each image's success and queries per order there (with the table's
    SHA-256 and the images' dataset indices), through the run folder's safe writer."""
    import hashlib

    from onepixel_jax import files

    table = Path(table)
    with np.load(table) as data:
        done = int(data["done"])
        probs = data["probs"][:done].astype(np.float32)
        labels, images = data["labels"][:done], data["images"][:done]
        dataset_indices = data["idx"][:done]
    n, hw, k, _ = probs.shape
    p_true = np.take_along_axis(probs, labels[:, None, None, None], 3)[..., 0]
    fooled = probs.argmax(-1) != labels[:, None, None]
    generations = budget // popsize
    lines = [
        f"{table}: {n} images, {int(fooled.any((1, 2)).sum())} fooled by some corner pixel; "
        f"popsize {popsize}, budget {generations * popsize:,}; queries counted per generation",
        "",
        "| order | successes | median q. | mean q. | " + " | ".join(f"@{q}" for q in CHECKS) + " |",
        "|---" * (4 + len(CHECKS)) + "|",
    ]
    record: dict = {"orders": {}, "stall": []}
    for order in ORDERS:
        rng = np.random.default_rng(seed)
        success, queries, histories = [], [], []
        for i in range(n):
            colours = images[i].reshape(hw, -1).astype(np.float32)
            seq = scan_sequence(p_true[i], colours, order, rng)
            hit = np.array([fooled[i][p, j] for p, j in seq])
            value = np.array([p_true[i][p, j] for p, j in seq])
            gens = -(-len(seq) // popsize)
            best = np.minimum.accumulate(
                [value[g * popsize : (g + 1) * popsize].min() for g in range(gens)]
            )
            # after the scan, random corners never improve on it: the best stays
            best = np.concatenate([best, np.full(max(generations - gens, 0), best[-1])])
            first = np.flatnonzero(hit)
            g_hit = first[0] // popsize if len(first) else None
            ok = g_hit is not None and g_hit < generations
            success.append(ok)
            queries.append((g_hit + 1) * popsize if ok else generations * popsize)
            histories.append(best[:generations])
        success, queries = np.array(success), np.array(queries, np.int64)
        q = queries[success]
        curve = [int(v) for v in metrics.success_curve(success, queries, CHECKS)]
        cells = " | ".join(map(str, curve))
        med = f"{np.median(q):,.0f}" if len(q) else "-"
        mean = f"{q.mean():,.0f}" if len(q) else "-"
        lines.append(f"| {order} | {len(q)}/{n} | {med} | {mean} | {cells} |")
        record["orders"][order] = {
            "successes": int(len(q)),
            "median_queries": float(np.median(q)) if len(q) else None,
            "mean_queries": float(q.mean()) if len(q) else None,
            "success_at": dict(zip(map(str, CHECKS), curve, strict=True)),
            "success": success.tolist(),
            "queries": queries.tolist(),
        }
        for stall in stalls:
            s, qs = metrics.replay_stall(success, queries, popsize, histories, stall, stall_eps)
            record["stall"].append(
                {"order": order, "stall": stall, "successes": int(s.sum()),
                 "total_queries": int(qs.sum())}
            )  # fmt: skip
    lines += [
        "",
        "| order | stall (generations) | successes | total queries (all images) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['order']} | {r['stall'] or 'off'} | {r['successes']}/{n} | {r['total_queries']:,} |"
        for r in record["stall"]
    ]
    if json_out is not None:
        record = {
            "table": str(table),
            "table_sha256": hashlib.sha256(table.read_bytes()).hexdigest(),
            "images": n,
            "dataset_indices": np.asarray(dataset_indices).astype(int).tolist(),
            "labels": np.asarray(labels).astype(int).tolist(),
            "fooled_by_some_corner": int(fooled.any((1, 2)).sum()),
            "popsize": popsize,
            "budget": generations * popsize,
            "stall_eps": stall_eps,
            "seed": seed,
            **record,
        }
        files.write_json_atomic(json_out, record)
    return "\n".join(lines) + "\n"


__all__ = ["CHECKS", "ORDERS", "build", "replay", "scan_sequence"]
