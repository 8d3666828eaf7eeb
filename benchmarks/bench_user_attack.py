"""A whole paper-protocol attack on a user's own Flax CNN: the full forward against the exact
incremental evaluation, end to end.

The network is ``UserCNN`` of ``bench_incremental.py`` (a plain VGG-style Flax CNN written
outside the zoo), trained here with plain optax (Adam, no augmentation; ``--epochs`` passes
over the CIFAR-10 training images, seed 0), because an attack on random weights does not behave
like an attack on a model anyone would study. The trained weights are kept as a msgpack file
with its SHA-256 (``--weights``, default ``runs/bench/user-cnn.msgpack``; ignored by git) so
that a second run reuses them; the JSON record holds the hash and the clean accuracy.

The attack: ``opj.attack`` with the paper's DE (1 pixel, population 400, 100 generations,
untargeted), each image stopped at its first success (``early_stop="success"``), on the first
``--n-images`` lossless CIFAR-10 test images the network classifies correctly, one call for
all images. Rows, interleaved: ``incremental=False`` (the full forward of every candidate,
what this model got before the generic incremental evaluation existed) and
``incremental=True``. Each is timed twice in a row: the first call (compilation included; the
persistent compilation cache is off) and the warm call (the same images again). Successes,
queries and pixels are compared between the rows: the evaluation is exact, so they must agree.

    python benchmarks/bench_user_attack.py --n-images 20 \\
        --out benchmarks/results/user-cnn-attack-cpu.json
"""

from __future__ import annotations

import os

os.environ.setdefault("ONEPIXEL_COMPILATION_CACHE", "0")  # honest first calls

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import serialization  # noqa: E402

import onepixel_jax as opj  # noqa: E402
from onepixel_jax.provenance import machine_info, package_versions, utc_now  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_incremental import UserCNN  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train(epochs: int, batch: int = 128, seed: int = 0):
    """Train ``UserCNN`` on the CIFAR-10 training images; return its variables."""
    x, y, _ = opj.data.load("cifar10", "train")
    x = x.astype(np.float32)
    module = UserCNN()
    variables = module.init(jax.random.PRNGKey(seed), jnp.zeros((1, 32, 32, 3)))
    tx = optax.adam(1e-3)
    opt = tx.init(variables)

    @jax.jit
    def step(variables, opt, xb, yb):
        def loss_fn(v):
            logits = module.apply(v, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(variables)
        updates, opt = tx.update(grads, opt, variables)
        return optax.apply_updates(variables, updates), opt, loss

    rng = np.random.default_rng(seed)
    steps = len(x) // batch
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        t0 = time.perf_counter()
        for i in range(steps):
            idx = order[i * batch : (i + 1) * batch]
            variables, opt, loss = step(variables, opt, x[idx], y[idx])
            if i % 100 == 0:
                log(f"epoch {epoch + 1}/{epochs} step {i}/{steps} loss {float(loss):.3f}")
        log(f"epoch {epoch + 1} done in {time.perf_counter() - t0:.0f} s")
    return module, variables


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--weights", type=Path, default=ROOT / "runs" / "bench" / "user-cnn.msgpack")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--train-only", action="store_true", help="train (or load) and stop")
    args = ap.parse_args()

    module = UserCNN()
    if args.weights.exists():
        template = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
        variables = serialization.from_bytes(template, args.weights.read_bytes())
        log(f"weights from {args.weights}")
    else:
        module, variables = train(args.epochs)
        args.weights.parent.mkdir(parents=True, exist_ok=True)
        args.weights.write_bytes(serialization.to_bytes(variables))
    sha = hashlib.sha256(args.weights.read_bytes()).hexdigest()
    if args.train_only:
        log(f"weights in {args.weights} (sha256 {sha})")
        return

    @jax.jit
    def predict_fn(batch):
        return jax.nn.softmax(module.apply(variables, batch), axis=-1)

    x, y, _ = opj.data.load("cifar10", "test")
    x = x.astype(np.float32)
    pred = np.concatenate(
        [np.asarray(predict_fn(x[i : i + 500])).argmax(1) for i in range(0, len(x), 500)]
    )
    accuracy = float((pred == y).mean())
    keep = np.flatnonzero(pred == y)[: args.n_images]
    log(f"clean accuracy {accuracy:.3f} on {len(x)} lossless test images; images {keep.tolist()}")
    images, labels = x[keep], y[keep]

    record = {
        "command": "python " + " ".join(sys.argv),
        "date": utc_now(),
        "model": "UserCNN (benchmarks/bench_incremental.py), trained by this script",
        "epochs": args.epochs,
        "weights_sha256": sha,
        "clean_accuracy_lossless_test": accuracy,
        "indices": keep.tolist(),
        "precision": "float32 (default)",
        "config": "AttackConfig(popsize=400, max_iters=100, early_stop='success', incremental=...)",
        "machine": machine_info(),
        "versions": package_versions(),
        "rows": [],
    }
    results = {}
    for mode in (False, True):
        cfg = opj.AttackConfig(popsize=400, max_iters=100, early_stop="success", incremental=mode)
        row = {"incremental": mode, "load_before": os.getloadavg()[0]}
        for call in ("first", "warm"):
            t0 = time.perf_counter()
            res = opj.attack(jax.random.key(0), predict_fn, images, labels, cfg, progress=False)
            jax.block_until_ready(res.success)
            row[f"{call}_s"] = time.perf_counter() - t0
            log(f"incremental={mode} {call} call {row[f'{call}_s']:.1f} s")
        row["load_after"] = os.getloadavg()[0]
        row["success"] = np.asarray(res.success).astype(bool).tolist()
        row["queries"] = np.asarray(res.queries).astype(int).tolist()
        row["pixels"] = np.asarray(res.pixels).astype(int).tolist()
        results[mode] = row
        record["rows"].append(row)
    full, inc = results[False], results[True]
    record["same_results"] = (
        full["success"] == inc["success"]
        and full["queries"] == inc["queries"]
        and full["pixels"] == inc["pixels"]
    )
    record["speedup_warm"] = full["warm_s"] / inc["warm_s"]
    record["speedup_first"] = full["first_s"] / inc["first_s"]
    n = len(keep)
    print(
        f"{n} images, {sum(inc['success'])} fooled, {sum(inc['queries']):,} queries; "
        f"full {full['first_s']:.1f} s first / {full['warm_s']:.1f} s warm "
        f"({full['warm_s'] / n:.2f} s/image); incremental {inc['first_s']:.1f} / "
        f"{inc['warm_s']:.1f} s ({inc['warm_s'] / n:.2f} s/image); warm speed-up "
        f"{record['speedup_warm']:.2f}x, first call {record['speedup_first']:.2f}x; "
        f"same results: {record['same_results']}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
