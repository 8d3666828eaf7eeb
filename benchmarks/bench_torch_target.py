"""A PyTorch model inside the compiled loop (opj.targets.from_torch) against the same network
in Flax, the host-callback path and torchattacks' OnePixel.

The network is a committed zoo checkpoint and its PyTorch twin (onepixel_jax.zoo.torch_port:
same weights, max |dp| checked before anything is timed); the images are the first N
correctly classified test images. Rows, all on those images, one run each:

- ``flax``: ``opj.attack`` on the Flax model, ``AttackConfig(early_stop="success",
  incremental=True)`` (the paper's DE: 1 pixel, popsize 400, 100 generations, with the
  incremental evaluation, which raises rather than fall back to the full forward);
- ``torch-jax``: the same on ``from_torch(twin)`` (the converted graph in the loop);
- ``torch-host``: the same with ``incremental=False`` on ``from_torch(twin, mode="host")``
  (one callback per generation; a callback cannot be evaluated incrementally);
- ``flax-fast``, ``torch-jax-fast``: ``AttackConfig(strategy="fast", early_stop="success",
  incremental=True)`` on the Flax model and on the twin in the loop;
- ``torchattacks``: ``OnePixel(twin, pixels=1, steps=100, popsize=400)`` image by image.

Each opj row is timed twice in a row: the first call (export, conversion and compilation
included; the persistent compilation cache is off) and the warm call (the same images again).
Rows are interleaved as listed. The JSON record (``--out``) holds every row's per-image
success and queries, the times, the load average before and after each row, versions and
the machine.

    nice -n 5 python benchmarks/bench_torch_target.py --model allconv-cifar10 --n-images 6 \\
        --out benchmarks/results/torch-target-cpu.json
"""

from __future__ import annotations

import os

os.environ.setdefault("ONEPIXEL_COMPILATION_CACHE", "0")  # honest first calls

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

import onepixel_jax as opj  # noqa: E402
from onepixel_jax.provenance import machine_info, package_versions, utc_now  # noqa: E402

ROWS = ("flax", "torch-jax", "torch-host", "flax-fast", "torch-jax-fast", "torchattacks")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load() -> float:
    return os.getloadavg()[0]


def first_correct(predict_fn, dataset: str, n: int):
    x, y, _ = opj.data.load(dataset, "test", limit=max(4 * n, 64))
    pred = np.asarray(predict_fn(x.astype(np.float32))).argmax(1)
    keep = np.flatnonzero(pred == y)[:n]
    return x[keep], y[keep].astype(np.int32), keep


def time_attack(name, predict_fn, x, y, cfg) -> dict:
    row: dict = {"method": name, "incremental": cfg.incremental, "load_before": load()}
    for call in ("first", "warm"):
        t0 = time.perf_counter()
        res = opj.attack(jax.random.key(0), predict_fn, x, y, cfg, progress=False)
        row[f"{call}_s"] = time.perf_counter() - t0
        log(f"{name} {call}: {row[f'{call}_s']:.1f} s, success {int(res.success.sum())}/{len(y)}")
    row.update(
        success=res.success.tolist(),
        queries=res.queries.tolist(),
        pixels=res.pixels.tolist(),
        load_after=load(),
    )
    return row


def time_torchattacks(module, x, y) -> dict:
    import torch
    import torchattacks

    atk = torchattacks.OnePixel(module, pixels=1, steps=100, popsize=400, inf_batch=400)
    row: dict = {"method": "torchattacks", "version": torchattacks.__version__}
    row["load_before"] = load()
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    yt = torch.from_numpy(y.astype(np.int64))
    success, per_image = [], []
    t0 = time.perf_counter()
    for i in range(len(x)):
        t1 = time.perf_counter()
        adv = atk(xt[i : i + 1], yt[i : i + 1])
        with torch.no_grad():
            success.append(bool(module(adv).argmax(1).item() != int(y[i])))
        per_image.append(time.perf_counter() - t1)
        log(f"torchattacks image {i}: {per_image[-1]:.1f} s, success {success[-1]}")
    row.update(first_s=time.perf_counter() - t0, per_image_s=per_image, success=success)
    row["load_after"] = load()
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="allconv-cifar10")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--n-images", type=int, default=6)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"--rows: unknown {unknown}; choose from {list(ROWS)}")

    import torch

    from onepixel_jax.targets.pytorch import TorchFallbackWarning
    from onepixel_jax.zoo.torch_port import max_prob_difference, port

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    module, predict_fn, _ = port(args.model)
    x, y, indices = first_correct(predict_fn, args.dataset, args.n_images)
    diff = max_prob_difference(module, predict_fn, x)
    log(f"{args.model}: images {indices.tolist()}, twin max |dp| {diff:.2g}")
    if diff > 1e-5:
        raise SystemExit(f"the PyTorch twin differs from the JAX model by {diff:.2g}")
    paper = opj.AttackConfig(early_stop="success", incremental=True)
    fast = opj.AttackConfig(strategy="fast", early_stop="success", incremental=True)
    host = opj.AttackConfig(early_stop="success", incremental=False)
    record: dict = {
        "date": utc_now(),
        "model": args.model,
        "dataset": args.dataset,
        "indices": indices.tolist(),
        "twin_max_prob_difference": diff,
        "machine": machine_info(),
        "versions": {**package_versions(), "torch": torch.__version__},
        "rows": [],
    }
    for name in rows:
        if name in ("flax", "flax-fast"):
            row = time_attack(name, predict_fn, x, y, fast if name.endswith("fast") else paper)
        elif name == "torchattacks":
            row = time_torchattacks(module, x, y)
        else:
            mode = "host" if name == "torch-host" else "auto"
            with warnings.catch_warnings():
                warnings.simplefilter("error", TorchFallbackWarning)
                target = opj.targets.from_torch(module, output="logits", mode=mode)
                cfg = host if mode == "host" else fast if name.endswith("fast") else paper
                row = time_attack(name, target, x, y, cfg)
            if mode == "auto":
                row["path"] = target.path(x.shape[1:])
        record["rows"].append(row)
        if args.out:
            Path(args.out).write_text(json.dumps(record, indent=1) + "\n")

    n = len(y)
    by = {r["method"]: r for r in record["rows"]}
    print(f"model {args.model}, {n} images {indices.tolist()}, twin max |dp| {diff:.2g}")
    print("| method | success | first call s | warm call s | s / image (warm) | s / success |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in record["rows"]:
        wins = int(np.sum(r["success"]))
        warm = r.get("warm_s", r["first_s"])
        per_success = f"{warm / wins:.2f}" if wins else "-"
        warm_text = f"{r['warm_s']:.1f}" if "warm_s" in r else "-"
        print(
            f"| {r['method']} | {wins}/{n} | {r['first_s']:.1f} | {warm_text} | "
            f"{warm / n:.2f} | {per_success} |"
        )
    if "flax" in by and "torch-jax" in by:
        for call in ("first", "warm"):
            ratio = by["torch-jax"][f"{call}_s"] / by["flax"][f"{call}_s"]
            print(f"torch in the loop / flax, {call} call: {ratio:.2f}x")
    if "torch-host" in by and "torch-jax" in by:
        ratio = by["torch-host"]["warm_s"] / by["torch-jax"]["warm_s"]
        print(f"host callback / torch in the loop (warm): {ratio:.1f}x")
    if "torchattacks" in by:
        ta = by["torchattacks"]
        if "torch-jax" in by:
            ratio = ta["first_s"] / by["torch-jax"]["warm_s"]
            print(f"torchattacks / torch in the loop, per image: {ratio:.1f}x")
        if "torch-jax-fast" in by and sum(ta["success"]) and sum(by["torch-jax-fast"]["success"]):
            fast_row = by["torch-jax-fast"]
            ratio = (ta["first_s"] / sum(ta["success"])) / (
                fast_row["warm_s"] / sum(fast_row["success"])
            )
            print(f"torchattacks / torch in the loop with strategy fast, per success: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
