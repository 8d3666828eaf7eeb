"""Incremental evaluation against the full forward: multiply-adds per layer and wall time.

For each network it prints the analytic multiply-add count per layer of the full forward and
of the incremental path for ``d`` tuples (window per tuple, static size; ``full`` where the
plan runs the layer in full), then times, interleaved, the two targets' ``evaluate`` on one
call of ``--call-size`` candidates (the engine's CPU call size, 400) on one image:

* ``full``: :func:`onepixel_jax.targets.patched_forward` (patch, one model call);
* ``incremental``: :func:`onepixel_jax.targets.incremental.incremental_target` with the
  image's clean activations prepared once (``prepare`` is timed separately: it runs once
  per image, not per generation), as the engine runs it (the candidates split into
  ``default_chunks()`` independent chains, one per CPU core), and with one chain.

``--attack N`` also runs a paper-protocol attack (popsize 400, 100 generations, untargeted,
stop on success) on the first N CIFAR-10 test images with allconv-cifar10, with and without
the incremental target, and prints the wall time per image.

    python benchmarks/bench_incremental.py                       # all networks, d = 1
    python benchmarks/bench_incremental.py --nets allconv-cifar10 --pixels 1 3 5
    python benchmarks/bench_incremental.py --macs-only           # the counts, no timing
    python benchmarks/bench_incremental.py --nets none --attack 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import onepixel_jax as opj
from onepixel_jax.targets import incremental, patched_forward
from onepixel_jax.zoo import architectures as arch
from onepixel_jax.zoo.checkpoints import make_predict_fn

NETS = ["allconv-cifar10", "nin-cifar10", "vgg16-cifar10", "lenet-mnist", "digits-cnn", "alexnet"]


def load(name: str, alexnet_width: float):
    """``(predict_fn, network, input_shape)``; ``alexnet`` has random weights."""
    if name == "alexnet":
        module = arch.create("alexnet", width=alexnet_width)
        shape = arch.ARCHITECTURES["alexnet"].input_shape
        variables = arch.init_variables(module, shape, jax.random.PRNGKey(0))
        predict_fn = make_predict_fn(module, variables, shape)
    else:
        predict_fn, card = opj.models.load(name)
        shape = card.input_shape
    return predict_fn, incremental._network_of(predict_fn), shape


def print_macs(name: str, net, d: int) -> None:
    print(f"\n{name}, d = {d}: multiply-adds per candidate (convolutions and dense layers)")
    print(f"  {'layer':22s} {'op':14s} {'output':>12s} {'window':>8s} {'full':>12s} {'incr.':>12s}")
    for p in incremental.plan(net, d):
        inc = p.window_macs if p.incremental else p.full_macs
        tag = "" if p.incremental else " (full)"
        out = "x".join(str(v) for v in p.out_shape)
        win = f"{p.window[0]}x{p.window[1]}"
        print(
            f"  {p.name:22s} {p.kind:14s} {out:>12s} {win:>8s} {p.full_macs:12,d} {inc:12,d}{tag}"
        )
    full, inc = incremental.macs(net, d)
    pad = " " * 38
    print(f"  {'dense head':22s}{pad}{net.head_macs:12,d} {net.head_macs:12,d}")
    print(f"  {'total':22s}{pad}{full:12,d} {inc:12,d}  ratio {full / inc:.2f}x")


def candidates(shape, d: int, count: int, seed: int) -> jax.Array:
    h, w, c = shape
    rng = np.random.default_rng(seed)
    pix = np.concatenate(
        [rng.integers(0, h, (count, d, 1)), rng.integers(0, w, (count, d, 1))]
        + [rng.integers(0, 256, (count, d, c))],
        axis=-1,
    )
    return jnp.asarray(pix[None], jnp.int32)  # (1 slot, P, d, 2 + C)


def time_eval(name, predict_fn, shape, d, call_size, repeats):
    image = jnp.asarray(np.random.default_rng(1).integers(0, 256, (1, *shape)), jnp.float32)
    pix = candidates(shape, d, call_size, d)
    full = patched_forward(predict_fn)
    inc = incremental.for_predict_fn(predict_fn)
    one = incremental.incremental_target(incremental._network_of(predict_fn), chunks=1)
    f_full, f_inc, f_prep = jax.jit(full.evaluate), jax.jit(inc.evaluate), jax.jit(inc.prepare)
    f_one = jax.jit(one.evaluate)
    cache = f_prep(image)
    t0 = time.perf_counter()
    a = f_inc(cache, image, pix).block_until_ready()
    compile_inc = time.perf_counter() - t0
    b = f_full((), image, pix).block_until_ready()
    err = max(float(jnp.abs(a - b).max()), float(jnp.abs(f_one(cache, image, pix) - b).max()))
    times = {"full": [], "inc": [], "one": [], "prep": []}
    calls = {
        "full": lambda: f_full((), image, pix),
        "inc": lambda: f_inc(cache, image, pix),
        "one": lambda: f_one(cache, image, pix),
        "prep": lambda: f_prep(image),
    }
    for _ in range(repeats):
        for key, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            times[key].append(time.perf_counter() - t0)
    mf, mi, mo, mp = (statistics.median(times[k]) for k in ("full", "inc", "one", "prep"))
    us = 1e6 / call_size
    print(
        f"| {name} | {d} | {call_size} | {mf * us:.1f} | {mo * us:.1f} | {mi * us:.1f} "
        f"| {incremental.default_chunks()} | {mf / mi:.2f}x | {mp * 1e3:.1f} | {err:.1e} "
        f"| {compile_inc:.1f} |",
        flush=True,
    )


def attack_wall(n_images: int) -> None:
    predict_fn, _ = opj.models.load("allconv-cifar10")
    x, y, _ = opj.data.load("cifar10", "test", limit=n_images)
    print(
        "\n| allconv-cifar10 attack | images | wall s (first call, compile incl.) | s/image "
        "| success | queries | same pixels |"
    )
    print("|---|---|---|---|---|---|---|")
    results = {}
    for mode in (False, True):
        cfg = opj.AttackConfig(popsize=400, max_iters=100, early_stop="success", incremental=mode)
        t0 = time.perf_counter()
        res = opj.attack(jax.random.key(0), predict_fn, x, y, cfg, progress=False)
        wall = time.perf_counter() - t0
        results[mode] = res
        same = "" if mode is False else str(bool(np.array_equal(res.pixels, results[False].pixels)))
        label = "incremental" if mode else "full forward"
        print(
            f"| {label} | {n_images} | {wall:.1f} | {wall / n_images:.1f} | "
            f"{int(res.success.sum())}/{n_images} | {int(res.queries.sum())} | {same} |",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=NETS, help=f"of {NETS}, or none")
    ap.add_argument("--pixels", nargs="+", type=int, default=[1])
    ap.add_argument("--call-size", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--alexnet-width", type=float, default=0.25)
    ap.add_argument("--macs-only", action="store_true")
    ap.add_argument("--attack", type=int, default=0, help="images of the attack comparison")
    args = ap.parse_args()
    nets = [] if args.nets == ["none"] else args.nets
    print(
        f"# {dt.date.today()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, JAX {jax.__version__} "
        f"{jax.default_backend()}"
    )
    loaded = {name: load(name, args.alexnet_width) for name in nets}
    for name, (_, net, _) in loaded.items():
        for d in args.pixels:
            print_macs(name, net, d)
    if not args.macs_only and nets:
        print(
            "\n| network | d | call size | full us/cand. | incremental, one chain us/cand. "
            "| incremental us/cand. | chains | speed-up | prepare ms/image | max abs diff "
            "| compile s |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, (predict_fn, _, shape) in loaded.items():
            for d in args.pixels:
                time_eval(name, predict_fn, shape, d, args.call_size, args.repeats)
    if args.attack:
        attack_wall(args.attack)
    print(f"# load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
