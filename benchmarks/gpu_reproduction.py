"""The paper's whole reproduction protocol on one accelerator, from no records, timed.

Every cell of ``onepixel reproduce list`` (or ``--cells``) at the paper's scale (or
``--n-images``), in order. A cell runs as ``--shards`` concurrent processes on the one device
(``onepixel reproduce run --cell C --shard I/S``: the same chunks, keys and records as one
process), then one ``onepixel reproduce run --cell C`` that checks the shares are complete;
after the last cell one plain ``onepixel reproduce run`` measures the clean accuracies. The
cells start from no committed records (``--records ''``), so every record is the device's own.

    bash benchmarks/gpu_reproduction.sh                  # on the accelerator
    python benchmarks/gpu_reproduction.py --cells allconv-d1-paper --n-images 2 --shards 2 \\
        --root /tmp/rg --out /tmp/rg.json --records-out /tmp/rg-records   # a CPU smoke run

``--out`` (JSON) gets each cell's wall time (compilation included) as soon as it ends; at
``--budget`` seconds the running shares are interrupted (SIGINT: their records so far are
kept and the same command resumes them) and no further cell starts. At the end the run
folders are snapshotted to ``--records-out`` (``onepixel reproduce snapshot``) and compared
image by image with the committed CPU records of the same cells, which used the same images
and keys: the share of attacks with the same outcome and the same number of evaluations
(the devices' floating point differs, so a trajectory may part ways).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# This process and the shares share one device: none of them takes its memory up front.
os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"

from onepixel_jax.experiments import reproduction  # noqa: E402
from onepixel_jax.provenance import machine_info, package_versions, utc_now  # noqa: E402


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "onepixel_jax.cli", *args]


class Report:
    def __init__(self, path: Path, meta: dict):
        self.path = path
        self.data = {"meta": meta, "cells": {}, "total_s": None, "comparison": {}}
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.path)


def run_processes(commands: list[list[str]], env: dict, deadline: float) -> tuple[list, bool]:
    """Run ``commands`` at once; interrupt them all at ``deadline``. (return codes, cut)."""
    procs = [subprocess.Popen(c, env=env, cwd=ROOT) for c in commands]
    cut = False
    while any(p.poll() is None for p in procs):
        if time.perf_counter() > deadline and not cut:
            cut = True
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)
        time.sleep(0.5)
    return [p.returncode for p in procs], cut


def compare(gpu_folder: Path, cpu_folder: Path) -> dict | None:
    """Same-outcome shares of the attacks both record sets hold."""
    if not (cpu_folder / reproduction.RECORDS_GZ).exists():
        return None
    _, gpu = reproduction.load_cell(gpu_folder)
    _, cpu = reproduction.load_cell(cpu_folder)

    def key(r):
        return (r["method"], r["position"], r.get("target"))

    cpu_by = {key(r): r for r in cpu}
    both = [(r, cpu_by[key(r)]) for r in gpu if key(r) in cpu_by]
    n = len(both)
    return {
        "attacks_compared": n,
        "same_success": sum(a["success"] == b["success"] for a, b in both),
        "same_queries": sum(a["queries"] == b["queries"] for a, b in both),
        "success_device": sum(bool(a["success"]) for a, _ in both),
        "success_cpu": sum(bool(b["success"]) for _, b in both),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", default="", help="comma-separated cells (default: every cell)")
    p.add_argument("--n-images", type=int, default=None, help="instead of the paper's")
    p.add_argument("--shards", type=int, default=4, help="concurrent processes per cell")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for all cells")
    p.add_argument("--root", default="runs/reproduction-gpu")
    p.add_argument("--out", default="benchmarks/results/reproduction-gpu/timing.json")
    p.add_argument("--records-out", default="benchmarks/results/reproduction-gpu")
    p.add_argument("--cpu-records", default=reproduction.RECORDS_ROOT)
    args = p.parse_args(argv)
    if args.shards < 1:
        p.error("--shards must be at least 1")
    names = [c for c in args.cells.split(",") if c] or list(reproduction.CELLS)
    for name in names:
        reproduction.cell(name)  # a bad name fails here, before anything runs

    import jax

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    meta = {
        "command": " ".join(sys.argv),
        "created_utc": utc_now(),
        "machine": machine_info(),
        "versions": package_versions(),
        "devices": [str(d) for d in jax.devices()],
        "default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "shards": args.shards,
        "n_images": args.n_images,
        "budget_s": args.budget,
    }
    report = Report(ROOT / args.out, meta)
    t0 = time.perf_counter()
    deadline = t0 + args.budget
    extra = [] if args.n_images is None else ["--n-images", str(args.n_images)]
    base = ["reproduce", "run", "--quiet", "--root", args.root, "--records", ""]
    for name in names:
        if time.perf_counter() > deadline:
            report.data["cells"][name] = {"status": "not started (budget spent)"}
            report.save()
            continue
        start = time.perf_counter()
        print(f"== {name} ({args.shards} shares) at {start - t0:.0f} s", flush=True)
        shares = [
            cli(*base, "--cell", name, "--shard", f"{i}/{args.shards}", *extra)
            for i in range(args.shards)
        ]
        codes, cut = run_processes(shares, env, deadline)
        if not cut and all(c == 0 for c in codes):
            more, cut = run_processes([cli(*base, "--cell", name, *extra)], env, deadline)
            codes += more
        report.data["cells"][name] = {
            "wall_s": round(time.perf_counter() - start, 2),
            "return_codes": codes,
            "status": "interrupted at the budget" if cut else "done",
        }
        report.save()
    if time.perf_counter() < deadline and args.cells == "" and args.n_images is None:
        subprocess.run(cli(*base), env=env, cwd=ROOT, check=False)  # the clean accuracies
    report.data["total_s"] = round(time.perf_counter() - t0, 2)
    report.save()
    if Path(args.root).is_dir():
        subprocess.run(
            cli("reproduce", "snapshot", "--root", args.root, "--records", args.records_out),
            env=env,
            cwd=ROOT,
            check=False,
        )
        for name in names:
            gpu_folder = Path(args.records_out) / name
            if gpu_folder.is_dir():
                report.data["comparison"][name] = compare(gpu_folder, Path(args.cpu_records) / name)
        report.save()
    print(json.dumps({"total_s": report.data["total_s"], "cells": report.data["cells"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
