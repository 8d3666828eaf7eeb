"""The paper's protocol as users run it, side by side with the PyTorch peers.

The workload: the first N correctly classified test images, 1 pixel, untargeted, population
400, 100 generations, each image stopped at its first success (early stopping on), default
settings otherwise. Reported per method: success, wall time per image and per success,
useful evaluations per second (queries actually needed, failures included, divided by wall
time), the share of the model's evaluations that were useful, and the bare forward rate at
the engine's call size.

Methods in one run:

- ``opj`` : ``opj.attack`` with the default settings (``AttackConfig(early_stop="success")``;
  for zoo networks this includes the exact incremental evaluation where it pays);
- ``opj-full-forward``: the same with ``incremental=False`` (a full forward per candidate);
- ``opj-all-slots``: the previous default (all images side by side, no compaction, full
  forward);
- ``opj-batch-B``: ``batch_size=B`` for each ``--batch-sizes`` value;
- ``torchattacks``: torchattacks ``OnePixel`` (pixels=1, steps=100, popsize=400: it divides by
  the 5 genes for SciPy's multiplier, so 400 candidates);
- ``art``: ART ``PixelAttack`` (th=1, es=1: differential evolution, max_iter=100; ART fixes the
  population at 400 // 5 x 5 = 400).

The peers run on an exact PyTorch port of the same checkpoint (``torch_port.py``, checked to
max |dp| < 1e-5 before anything is timed). They need the ``peers`` extra::

    pip install -e ".[peers]"
    python benchmarks/bench_protocol.py --model allconv-cifar10 --n-images 20

Without torch the script says so in one line and exits with code 2 (``--no-peers`` runs the
JAX methods only). Results go to ``--out`` as JSON; a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import onepixel_jax as opj
from onepixel_jax.planner import plan_slots
from onepixel_jax.provenance import machine_info, package_versions, utc_now

HERE = Path(__file__).resolve().parent


def first_correct(predict_fn, dataset: str, n: int, data_dir=None):
    x, y, _ = opj.data.load(dataset, "test", data_dir=data_dir, limit=max(4 * n, 64))
    if x.ndim == 3:
        x = x[..., None]
    pred = opj.predict_in_batches(predict_fn, x.astype(np.float32), 256).argmax(1)
    keep = np.flatnonzero(pred == y)[:n]
    if len(keep) < n:
        raise SystemExit(f"only {len(keep)} correctly classified images among the first {len(x)}")
    return x[keep], y[keep].astype(np.int32), keep


def bare_rate(predict_fn, shape, size: int, seconds: float = 3.0) -> float:
    f = jax.jit(predict_fn)
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (size, *shape)), jnp.float32)
    f(x).block_until_ready()
    calls, t0 = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - t0 < seconds:
        f(x).block_until_ready()
        calls += 1
    return calls * size / (time.perf_counter() - t0)


def run_opj(name, predict_fn, x, y, cfg, warm_x, warm_y):
    # Compile on other images of the same count first (a user's second call costs no
    # compilation); the compile time is reported separately.
    t0 = time.perf_counter()
    opj.attack(jax.random.key(99), predict_fn, warm_x, warm_y, cfg, progress=False)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = opj.attack(jax.random.key(0), predict_fn, x, y, cfg, progress=False)
    wall = time.perf_counter() - t0
    log(f"{name}: {wall:.1f} s, success {res.success.mean():.2f}")
    useful = int(res.queries.sum())
    return {
        "method": name,
        "success": res.success.tolist(),
        "queries": res.queries.tolist(),
        "wall_s": wall,
        "warmup_call_s": compile_s,
        "useful_evaluations": useful,
        "model_evaluations": int(res.model_evaluations),
        "batch_size": cfg.batch_size,
    }


def run_torchattacks(module, x, y):
    import torch
    import torchattacks

    atk = torchattacks.OnePixel(module, pixels=1, steps=100, popsize=400, inf_batch=400)
    counter = {"n": 0}
    orig_forward = module.forward

    def counted(inp):
        counter["n"] += int(inp.shape[0])
        return orig_forward(inp)

    module.forward = counted
    device = next(module.parameters()).device
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0).to(device)
    yt = torch.from_numpy(y.astype(np.int64)).to(device)
    success, t0 = [], time.perf_counter()
    for i in range(len(x)):  # the attack loops over images internally too
        adv = atk(xt[i : i + 1], yt[i : i + 1])
        with torch.no_grad():
            success.append(bool(orig_forward(adv).argmax(1).item() != int(y[i])))
    wall = time.perf_counter() - t0
    module.forward = orig_forward
    return {
        "method": "torchattacks",
        "success": success,
        "wall_s": wall,
        "model_evaluations": counter["n"],
        "version": torchattacks.__version__,
    }


def run_art(module, x, y, num_classes: int):
    import torch
    from art.attacks.evasion import PixelAttack
    from art.estimators.classification import PyTorchClassifier

    counter = {"n": 0}
    orig_forward = module.forward

    def counted(inp):
        counter["n"] += int(inp.shape[0])
        return orig_forward(inp)

    module.forward = counted
    device = next(module.parameters()).device
    clf = PyTorchClassifier(
        model=module,
        device_type="gpu" if device.type == "cuda" else "cpu",
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(x.shape[3], x.shape[1], x.shape[2]),
        nb_classes=num_classes,
        clip_values=(0.0, 1.0),
        channels_first=True,
    )
    atk = PixelAttack(clf, th=1, es=1, max_iter=100, targeted=False, verbose=False)
    xt = (x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0).copy()
    t0 = time.perf_counter()
    adv = atk.generate(xt, y=np.eye(num_classes, dtype=np.float32)[y])
    wall = time.perf_counter() - t0
    module.forward = orig_forward
    with torch.no_grad():
        pred = orig_forward(torch.from_numpy(adv).to(device)).argmax(1).cpu().numpy()
    import art

    return {
        "method": "art",
        "success": (pred != y).tolist(),
        "wall_s": wall,
        "model_evaluations": counter["n"],
        "version": art.__version__,
    }


def log(msg: str) -> None:
    print(f"[bench_protocol] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def summarise(r: dict, n: int) -> dict:
    succ = int(np.sum(r["success"]))
    out = {
        "method": r["method"],
        "success_rate": succ / n,
        "s_per_image": r["wall_s"] / n,
        "s_per_success": r["wall_s"] / succ if succ else float("nan"),
    }
    if "useful_evaluations" in r:
        out["useful_per_s"] = r["useful_evaluations"] / r["wall_s"]
        out["useful_share"] = r["useful_evaluations"] / max(r["model_evaluations"], 1)
    out["model_evaluations_per_s"] = r["model_evaluations"] / r["wall_s"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="allconv-cifar10")
    ap.add_argument("--dataset", default=None, help="default: the model card's dataset")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n-images", type=int, default=20)
    ap.add_argument("--batch-sizes", default="1,5", help="extra opj runs with these batch sizes")
    ap.add_argument("--no-peers", action="store_true", help="JAX methods only")
    ap.add_argument(
        "--skip-old",
        action="store_true",
        help="skip the previous default (all slots, no compaction)",
    )
    ap.add_argument(
        "--with-fast", action="store_true", help="also the fast preset (corner scan at d = 1)"
    )
    ap.add_argument(
        "--torch-device",
        default="cpu",
        help="where the peers' PyTorch model runs: cpu (default) or cuda",
    )
    ap.add_argument("--out", default=None, help="JSON results (default: print only)")
    args = ap.parse_args()
    if not args.no_peers:
        try:
            import torch  # noqa: F401
            import torchattacks  # noqa: F401
            from art.attacks.evasion import PixelAttack  # noqa: F401
        except ImportError as err:
            print(
                f"bench_protocol: error: the peers need the peers extra ({err.name} is missing): "
                'pip install -e ".[peers]", or run with --no-peers',
                file=sys.stderr,
            )
            return 2

    predict_fn, card = opj.models.load(args.model)
    dataset = args.dataset or card["dataset"]
    n = args.n_images
    x, y, idx = first_correct(predict_fn, dataset, 2 * n, args.data_dir)
    x, y, warm_x, warm_y = x[:n], y[:n], x[n:], y[n:]
    shape = x.shape[1:]
    base = opj.AttackConfig(early_stop="success")  # the paper's protocol, default settings
    slots, call_slots = plan_slots(base.popsize, n, shape, base.schedule())
    results = [run_opj("opj", predict_fn, x, y, base, warm_x, warm_y)]
    full = opj.AttackConfig(early_stop="success", incremental=False)
    results.append(run_opj("opj-full-forward", predict_fn, x, y, full, warm_x, warm_y))
    if not args.skip_old:
        old = opj.AttackConfig(early_stop="success", batch_size=n, compact=False, incremental=False)
        results.append(run_opj("opj-all-slots", predict_fn, x, y, old, warm_x, warm_y))
    if args.with_fast:  # the project's fast preset on the same workload (not the paper's DE)
        fast = opj.AttackConfig(strategy="fast", early_stop="success")
        results.append(run_opj("opj-fast-preset", predict_fn, x, y, fast, warm_x, warm_y))
    for b in [int(s) for s in args.batch_sizes.split(",") if s]:
        cfg = opj.AttackConfig(early_stop="success", batch_size=b)
        results.append(run_opj(f"opj-batch-{b}", predict_fn, x, y, cfg, warm_x, warm_y))
    call = call_slots * base.popsize
    bare = bare_rate(predict_fn, shape, call)

    if not args.no_peers:
        sys.path.insert(0, str(HERE))
        import torch_port

        module, _, _ = torch_port.port(args.model)
        module = module.to(args.torch_device)
        diff = torch_port.max_prob_difference(module, predict_fn, x)
        if diff >= 1e-5:
            print(f"bench_protocol: error: PyTorch port differs by {diff:.2e}", file=sys.stderr)
            return 1
        results.append(run_torchattacks(module, x, y))
        log(f"torchattacks: {results[-1]['wall_s']:.1f} s")
        results.append(run_art(module, x, y, int(card["num_classes"])))
        log(f"art: {results[-1]['wall_s']:.1f} s")
    else:
        diff = None

    rows = [summarise(r, n) for r in results]
    report = {
        "command": " ".join(sys.argv),
        "date": utc_now(),
        "machine": machine_info(),
        "versions": package_versions(),
        "model": args.model,
        "images": idx[:n].tolist(),
        "n_images": n,
        "jax_devices": [str(d) for d in jax.devices()],
        "torch_device": None if args.no_peers else args.torch_device,
        "default_slots": slots,
        "default_call_size": call,
        "bare_forward_per_s_at_call_size": bare,
        "port_max_prob_difference": diff,
        "rows": rows,
        "raw": results,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    ref = next(r for r in rows if r["method"] == "opj")
    print(
        f"\n{args.model}, {n} images, {utc_now()}, JAX on {jax.devices()[0]}; bare forward at "
        f"call size {call}: {bare:,.0f}/s; port max |dp| = {diff}"
    )
    print(
        "| method | success | s / image | s / success | useful eval/s | useful share | "
        "time vs opj |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['method']} | {100 * r['success_rate']:.0f} % | {r['s_per_image']:.2f} | "
            f"{r['s_per_success']:.2f} | {r.get('useful_per_s', float('nan')):,.0f} | "
            f"{100 * r.get('useful_share', float('nan')):.0f} % | "
            f"{r['s_per_image'] / ref['s_per_image']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
