"""How loose the linear bounds of a pixel's full colour cube get, layer by layer.

For each model, a few test images and positions: the bounds of the input of every ReLU and
max pooling over the whole colour cube ``[0, 255]^C`` at one position
(:func:`onepixel_jax.targets.bounds.propagate`, the verifier's domain, every variable in
full), against the range the values actually take over 64 random colours and the cube's
corners. Per such layer (in graph order) it records the elements that depend on the pixel,
the share of them whose bounds straddle 0 (unstable: the ReLU's relaxation is loose there)
and the median ratio of bound width to sampled width (at least 1; a lower bound on the
looseness, since sampling underestimates the true range).

    nice -n 5 python benchmarks/bench_verify.py --out benchmarks/results/verification/looseness.json

``--exhaustive RUN`` or ``RUN:N`` (repeatable) also checks a greyscale ``onepixel verify``
run folder (its first ``N`` records) against every one-pixel change of its images (every
position and grey value, plain forward pass).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import onepixel_jax as opj
from onepixel_jax import provenance
from onepixel_jax.targets import bounds, interpret
from onepixel_jax.targets.interpret import Graph, Lit

MODELS = (("digits-cnn", "digits"), ("lenet-mnist", "mnist"), ("allconv-cifar10", "cifar10"))


def nonlinear_inputs(graph: Graph) -> list[tuple[int, str]]:
    """``(input variable, kind)`` of the graph's ReLUs (``max`` with a literal 0) and max
    poolings (``reduce_window_max``), in graph order."""
    out = []
    for e in graph.eqns:
        if e.name == "reduce_window_max":
            out.append((e.ins[0], "max pool"))
        if e.name != "max":
            continue
        lits = [a for a in e.ins if isinstance(a, Lit)]
        var = [a for a in e.ins if isinstance(a, int)]
        if len(lits) == 1 and len(var) == 1 and np.all(np.asarray(lits[0].value) == 0):
            out.append((var[0], "relu"))
    return out


def pixel_lin(image: np.ndarray, row: int, col: int) -> bounds.Lin:
    """The full input of ``image`` ``(1, H, W, C)`` with pixel ``(row, col)`` the cube."""
    c = image.shape[-1]
    mid = np.zeros((c + 1, *image.shape), np.float32)
    mid[c] = image
    mid[c, 0, row, col] = 127.5
    for i in range(c):
        mid[i, 0, row, col, i] = 127.5
    return bounds.Lin(jnp.asarray(mid), jnp.zeros_like(jnp.asarray(mid)))


def measure(name: str, dataset: str, n_images: int, n_positions: int, seed: int) -> dict:
    fn, _ = opj.models.load(name)
    images, _, _ = opj.data.load(dataset, "test")
    images = np.asarray(images[:n_images], np.float32)
    h, w, c = images.shape[1:]
    graph = interpret.trace(fn, jax.ShapeDtypeStruct((1, h, w, c), jnp.float32))
    found = nonlinear_inputs(graph)
    pre = [v for v, _ in found]
    trunc = interpret.prune(graph, pre)
    bound_fn = jax.jit(lambda lin: [bounds.bounds_of(o) for o in bounds.propagate(trunc, [lin])])
    concrete = jax.jit(
        jax.vmap(lambda x: interpret.walk(trunc, [x], interpret.concrete_domain())[0])
    )
    rng = np.random.default_rng(seed)
    corners = np.array(np.meshgrid(*[[0, 255]] * c, indexing="ij")).reshape(c, -1).T
    colours = np.concatenate([corners, rng.uniform(0, 255, (64, c))]).astype(np.float32)
    layers = [{"unstable": [], "ratio": [], "cone": []} for _ in pre]
    for image in images:
        for _ in range(n_positions):
            row, col = (int(v) for v in rng.integers(0, (h, w)))
            lohi = bound_fn(pixel_lin(image[None], row, col))
            batch = np.repeat(image[None, None], len(colours), 0)
            batch[:, 0, row, col] = colours
            vals = concrete(jnp.asarray(batch))
            for k, ((lo, hi), v) in enumerate(zip(lohi, vals, strict=True)):
                lo, hi, v = np.asarray(lo), np.asarray(hi), np.asarray(v)
                width = hi - lo
                cone = width > 1e-5
                sampled = v.max(axis=0) - v.min(axis=0)
                unstable = cone & (lo < 0) & (hi > 0)
                seen = cone & (sampled > 1e-5)
                layers[k]["cone"].append(int(cone.sum()))
                layers[k]["unstable"].append(float(unstable.sum() / max(cone.sum(), 1)))
                if seen.any():
                    layers[k]["ratio"].append(float(np.median(width[seen] / sampled[seen])))
    return {
        "model": name,
        "nonlinear_layers": len(pre),
        "samples": len(images) * n_positions,
        "layers": [
            {
                "layer": k + 1,
                "kind": found[k][1],
                "cone_elements_median": float(np.median(d["cone"])),
                # straddling 0 matters at a ReLU only
                "unstable_share_median": (
                    float(np.median(d["unstable"])) if found[k][1] == "relu" else None
                ),
                "width_ratio_median": float(np.median(d["ratio"])) if d["ratio"] else None,
            }
            for k, d in enumerate(layers)
        ],
    }


def exhaustive(spec: str) -> dict:
    """Check a greyscale ``onepixel verify`` run folder against every one-pixel change of its
    images (every position, every grey value 0..255) under the plain forward pass.
    ``spec``: ``RUN`` (every record) or ``RUN:N`` (its first ``N`` records)."""
    run_dir, _, first = (
        spec.rpartition(":") if spec.rpartition(":")[2].isdigit() else (spec, "", "")
    )
    folder = Path(run_dir)
    info = json.loads((folder / "run.json").read_text())
    recs = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    recs = recs[: int(first)] if first else recs
    config = info["config"]
    fn, _ = opj.models.load(config["model"])
    images, _, _ = opj.data.load(config["dataset"], config["split"])
    images = np.asarray(images, np.float32)
    h, w, c = images.shape[1:]
    if c != 1:
        raise SystemExit("--exhaustive needs a greyscale run (256 colours per position)")
    grey = jnp.arange(256.0)
    pos = jnp.stack(jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij"), -1).reshape(-1, 2)

    @jax.jit
    def every_change(img):  # (H * W, 256) predicted classes
        def one(p):
            batch = jnp.repeat(img[None], 256, 0).at[:, p[0], p[1], 0].set(grey)
            return jnp.argmax(fn(batch), axis=1)

        return jax.lax.map(one, pos)

    agree, started = 0, time.perf_counter()
    truth = {"robust": 0, "vulnerable": 0}
    for r in recs:
        pred = np.asarray(every_change(jnp.asarray(images[r["index"]])))
        t = r["target"]
        flipped = bool(np.any(pred != r["label"]) if t is None else np.any(pred == t))
        truth["vulnerable" if flipped else "robust"] += 1
        agree += r["status"] == ("vulnerable" if flipped else "robust")
    return {
        "run": run_dir,
        "images": len(recs),
        "truth": truth,
        "agree": agree,
        "seconds": time.perf_counter() - started,
    }


def plot(record: dict, path: str) -> None:
    """The bound width / sampled width per nonlinear layer of each model, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for m in record["models"]:
        layers = [d for d in m["layers"] if d["width_ratio_median"] is not None]
        ax.plot(
            [d["layer"] for d in layers],
            [d["width_ratio_median"] for d in layers],
            marker="o",
            label=m["model"],
        )
    ax.set_yscale("log")
    ax.set_xlabel("nonlinear layer (ReLU or max pooling), in order")
    ax.set_ylabel("bound width / sampled width")
    ax.set_title("Linear bounds over a pixel's whole colour cube (median)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument(
        "--exhaustive",
        action="append",
        default=[],
        metavar="RUN[:N]",
        help="also check a greyscale onepixel verify run folder (its first N records) against "
        "exhaustive enumeration",
    )
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--positions", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", default=None, help="also draw the looseness per layer (PNG)")
    p.add_argument(
        "--replot", action="store_true", help="only draw --figure from the record in --out"
    )
    args = p.parse_args()
    if args.replot:
        with open(args.out) as fh:
            plot(json.load(fh), args.figure)
        return
    started = time.perf_counter()
    results = []
    for name, dataset in MODELS:
        t0 = time.perf_counter()
        results.append(measure(name, dataset, args.images, args.positions, args.seed))
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
        for layer in results[-1]["layers"]:
            print("  ", layer, flush=True)
    checks = []
    for run_dir in args.exhaustive:
        checks.append(exhaustive(run_dir))
        print(checks[-1], flush=True)
    record = {
        "command": "python benchmarks/bench_verify.py "
        + f"--out {args.out} --images {args.images} --positions {args.positions} "
        + f"--seed {args.seed}"
        + "".join(f" --exhaustive {d}" for d in args.exhaustive),
        "seconds": time.perf_counter() - started,
        "machine": provenance.machine_info(),
        "versions": provenance.package_versions(),
        "created": provenance.utc_now(),
        "models": results,
        "exhaustive": checks,
    }
    with open(args.out, "w") as fh:
        json.dump(record, fh, indent=1)
        fh.write("\n")
    if args.figure:
        plot(record, args.figure)


if __name__ == "__main__":
    main()
