"""Incremental evaluation against the full forward: multiply-adds per layer and wall time.

For each network it prints the multiply-adds per candidate of every convolution and
``dot_general`` in full and on windows for ``d`` tuples (``full`` where the plan runs the
operation on the whole map), then times, interleaved, the ``evaluate`` of these targets on one
call of ``--call-size`` candidates (default: the engine's CPU call size,
``planner.CPU_CALL_SIZE``) on one image:

* ``full``: :func:`onepixel_jax.targets.patched_forward` (patch the pixels in, one model call);
* ``generic``: :func:`onepixel_jax.targets.incremental.incremental_target`, the clean
  activations prepared once (``prepare`` runs once per image, not per generation, and is timed
  separately), the candidates split into ``default_chunks()`` chains as the engine runs it;
* ``generic, one chain``: the same with ``chunks=1``;
* ``hand-written`` (with ``--compare-rev REV``): the zoo-only layer programs of
  ``onepixel_jax/targets/incremental.py`` at git revision ``REV`` (before the generic
  interpreter replaced them), loaded from ``git show``; zoo checkpoints and AlexNet only.

The first call of each target (compilation included) is timed once, then ``--repeats``
interleaved warm calls (medians). Networks: a VGG-style Flax CNN written here (not from the
zoo), the committed checkpoints resnet20-cifar10 (ResNet-20), allconv-cifar10, nin-cifar10,
vgg16-cifar10, and AlexNet
(random weights, ``--alexnet-width``) at 227x227.

    python benchmarks/bench_incremental.py --compare-rev a539096~1 --json benchmarks/results/x.json
    python benchmarks/bench_incremental.py --nets allconv-cifar10 --pixels 1 3 5
    python benchmarks/bench_incremental.py --macs-only            # the counts, no timing
    python benchmarks/bench_incremental.py --nets none --attack 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import onepixel_jax as opj
from onepixel_jax.planner import CPU_CALL_SIZE
from onepixel_jax.targets import incremental, patched_forward
from onepixel_jax.zoo import architectures as arch
from onepixel_jax.zoo.checkpoints import make_predict_fn

NETS = [
    "user-cnn",
    "resnet20-cifar10",
    "allconv-cifar10",
    "nin-cifar10",
    "vgg16-cifar10",
    "alexnet",
]
# Also accepted: any other committed checkpoint name (lenet-mnist, digits-cnn).
ROOT = Path(__file__).resolve().parents[1]


class UserCNN(nn.Module):
    """A plain VGG-style CIFAR-10 network as a user would write it: three blocks of two 3x3
    convolutions (32, 64, 128 channels, SAME padding, ReLU) and a 2x2 max pool, then dense 256,
    ReLU, dense 10."""

    @nn.compact
    def __call__(self, x):
        x = x / 255.0 - 0.5
        for features in (32, 64, 128):
            x = nn.relu(nn.Conv(features, (3, 3))(x))
            x = nn.relu(nn.Conv(features, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(256)(x))
        return nn.Dense(10)(x)


def load(name: str, alexnet_width: float):
    """``(predict_fn, input_shape, weights)`` (``weights``: where the weights come from)."""
    if name == "user-cnn":
        module, shape = UserCNN(), (32, 32, 3)
        variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape)))

        def predict_fn(batch):
            return jax.nn.softmax(module.apply(variables, batch), axis=-1)

        return predict_fn, shape, "random"
    if name == "alexnet":
        module = arch.create(name, width=alexnet_width)
        shape = arch.ARCHITECTURES[name].input_shape
        variables = arch.init_variables(module, shape, jax.random.PRNGKey(0))
        return make_predict_fn(module, variables, shape), shape, "random"
    predict_fn, card = opj.models.load(name)
    return predict_fn, card.input_shape, "checkpoint"


def handwritten_module(rev: str):
    """The hand-written incremental module at git revision ``rev`` (and its ``cones``)."""
    modules = {}
    for stem in ("cones", "incremental"):
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:onepixel_jax/targets/{stem}.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        source = source.replace("from . import cones", "from . import _handwritten_cones as cones")
        name = f"onepixel_jax.targets._handwritten_{stem}"
        spec = importlib.util.spec_from_loader(name, loader=None)
        module = importlib.util.module_from_spec(spec)
        module.__package__ = "onepixel_jax.targets"
        sys.modules[name] = module
        exec(compile(source, f"{rev}:{stem}.py", "exec"), module.__dict__)
        modules[stem] = module
    return modules["incremental"]


def print_macs(name: str, predict_fn, shape, d: int) -> dict:
    """Print the plan's multiply-adds per operation; return its totals and cache size."""
    p = incremental.plan(predict_fn, shape, d)
    print(f"\n{name}, d = {d}: multiply-adds per candidate (convolutions and dot_general)")
    print(
        f"  {'#':>4s} {'operation':22s} {'output':>14s} {'window':>8s} {'full':>12s} {'incr.':>12s}"
    )
    for op in p.ops:
        if not op.macs:
            continue
        win = "full" if op.window is None else f"{op.window[0]}x{op.window[1]}"
        out = "x".join(str(v) for v in op.out_shape)
        print(
            f"  {op.index:4d} {op.primitive:22s} {out:>14s} {win:>8s} "
            f"{op.full_cost:12,d} {op.window_cost:12,d}"
        )
    ratio = p.full_macs / max(p.incremental_macs, 1)
    print(f"  total {' ' * 57}{p.full_macs:12,d} {p.incremental_macs:12,d}  ratio {ratio:.2f}x")
    cache = incremental.cache_bytes(predict_fn, shape, d)
    print(f"  cache per image: {cache:,d} bytes")
    return {
        "network": name,
        "input_shape": list(shape),
        "pixels": d,
        "macs_full": p.full_macs,
        "macs_incremental": p.incremental_macs,
        "cache_bytes_per_image": cache,
    }


def candidates(shape, d: int, count: int, seed: int) -> jax.Array:
    h, w, c = shape
    rng = np.random.default_rng(seed)
    pix = np.concatenate(
        [rng.integers(0, h, (count, d, 1)), rng.integers(0, w, (count, d, 1))]
        + [rng.integers(0, 256, (count, d, c))],
        axis=-1,
    )
    return jnp.asarray(pix[None], jnp.int32)  # (1 slot, P, d, 2 + C)


def time_eval(name, predict_fn, shape, weights, d, call_size, repeats, old) -> dict:
    image = jnp.asarray(np.random.default_rng(1).integers(0, 256, (1, *shape)), jnp.float32)
    pix = candidates(shape, d, call_size, d)
    targets = {
        "full": patched_forward(predict_fn),
        "generic": incremental.incremental_target(predict_fn, pixels=d),
        "generic_one_chain": incremental.incremental_target(predict_fn, pixels=d, chunks=1),
    }
    net = None if old is None else old._network_of(predict_fn)  # zoo layer programs only
    if net is not None:
        targets["handwritten"] = old.incremental_target(net)
    caches, calls, first, outs = {}, {}, {}, {}
    for key, target in targets.items():
        caches[key] = jax.jit(target.prepare)(image)
        fn = jax.jit(target.evaluate)
        calls[key] = lambda fn=fn, key=key: fn(caches[key], image, pix)
        t0 = time.perf_counter()
        outs[key] = np.asarray(jax.block_until_ready(calls[key]()))
        first[key] = time.perf_counter() - t0
    prep = jax.jit(targets["generic"].prepare)
    prep(image)
    calls["prepare"] = lambda: prep(image)
    times = {k: [] for k in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    full_macs, inc_macs = incremental.macs(predict_fn, shape, d)
    row = {
        "network": name,
        "weights": weights,
        "input_shape": list(shape),
        "pixels": d,
        "call_size": call_size,
        "chains": incremental.default_chunks(),
        "macs_full": full_macs,
        "macs_incremental": inc_macs,
        "cache_bytes_per_image": incremental.cache_bytes(predict_fn, shape, d),
        "prepare_ms_per_image": med["prepare"] * 1e3,
        "targets": {
            key: {
                "first_call_s": first[key],
                "warm_us_per_candidate": med[key] * 1e6 / call_size,
                "warm_speedup_vs_full": med["full"] / med[key],
                "max_abs_diff_vs_full": float(np.abs(outs[key] - outs["full"]).max()),
                "warm_s": times[key],
            }
            for key in targets
        },
    }
    t = row["targets"]
    hand = f"{t['handwritten']['warm_speedup_vs_full']:.2f}x" if "handwritten" in t else "n/a"
    print(
        f"| {name} | {d} | {call_size} | {t['full']['warm_us_per_candidate']:.1f} "
        f"| {t['generic']['warm_us_per_candidate']:.1f} "
        f"| {t['generic']['warm_speedup_vs_full']:.2f}x | {hand} "
        f"| {t['full']['first_call_s']:.1f} | {t['generic']['first_call_s']:.1f} "
        f"| {t['generic']['max_abs_diff_vs_full']:.1e} |",
        flush=True,
    )
    return row


def attack_wall(n_images: int) -> list:
    predict_fn, _ = opj.models.load("allconv-cifar10")
    x, y, _ = opj.data.load("cifar10", "test", limit=n_images)
    print(
        "\n| allconv-cifar10 attack | images | wall s (first call) | s/image | success | queries |"
    )
    print("|---|---|---|---|---|---|")
    rows, results = [], {}
    for mode in (False, True):
        cfg = opj.AttackConfig(popsize=400, max_iters=100, early_stop="success", incremental=mode)
        t0 = time.perf_counter()
        res = opj.attack(jax.random.key(0), predict_fn, x, y, cfg, progress=False)
        wall = time.perf_counter() - t0
        results[mode] = res
        label = "incremental" if mode else "full forward"
        print(
            f"| {label} | {n_images} | {wall:.1f} | {wall / n_images:.1f} | "
            f"{int(res.success.sum())}/{n_images} | {int(res.queries.sum())} |",
            flush=True,
        )
        rows.append(
            {
                "incremental": mode,
                "images": n_images,
                "wall_s": wall,
                "success": int(res.success.sum()),
                "queries": int(res.queries.sum()),
            }
        )
    rows[-1]["same_pixels"] = bool(np.array_equal(results[True].pixels, results[False].pixels))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=NETS, help=f"of {NETS}, or none")
    ap.add_argument("--pixels", nargs="+", type=int, default=[1])
    ap.add_argument("--call-size", type=int, default=CPU_CALL_SIZE)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--alexnet-width", type=float, default=0.25)
    ap.add_argument("--compare-rev", help="git revision of the hand-written layer programs")
    ap.add_argument("--macs-only", action="store_true")
    ap.add_argument("--attack", type=int, default=0, help="images of the attack comparison")
    ap.add_argument("--json", type=Path, help="write the raw results here")
    args = ap.parse_args()
    nets = [] if args.nets == ["none"] else args.nets
    report = {
        "command": "python " + " ".join(sys.argv),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "precision": "float32",
        "load_average_start": list(os.getloadavg()),
        "repeats": args.repeats,
        "plans": [],
        "rows": [],
    }
    print(
        f"# {report['date']} {report['machine']}, load {os.getloadavg()[0]:.1f}, "
        f"JAX {jax.__version__} {jax.default_backend()}"
    )
    old = handwritten_module(args.compare_rev) if args.compare_rev else None
    loaded = {name: load(name, args.alexnet_width) for name in nets}
    for name, (predict_fn, shape, _) in loaded.items():
        for d in args.pixels:
            report["plans"].append(print_macs(name, predict_fn, shape, d))
    if not args.macs_only and nets:
        print(
            "\n| network | d | call size | full us/cand. | generic us/cand. | generic speed-up "
            "| hand-written speed-up | full first call s | generic first call s | max abs diff |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, (predict_fn, shape, weights) in loaded.items():
            for d in args.pixels:
                report["rows"].append(
                    time_eval(
                        name, predict_fn, shape, weights, d, args.call_size, args.repeats, old
                    )
                )
    if args.attack:
        report["attack"] = attack_wall(args.attack)
    report["load_average_end"] = list(os.getloadavg())
    print(f"# load at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
