"""Tables and success-versus-queries figures from the JSON lines of search_curves.py.

    python benchmarks/search_report.py benchmarks/results/search/*.jsonl \\
        --figures docs/figures/search --markdown benchmarks/results/search/tables.md

For every (network, pixels, targeted) setting: per method, success at the query checkpoints
with Wilson 95 % intervals, total queries over all images (failures included), median queries
of the successes, and McNemar's exact p against the paper's DE. By default every method is
shown on the images all methods of the setting ran (``--all-images``: each on all of its own).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from onepixel_jax.metrics import paired_comparison, wilson_interval

CHECKPOINTS = (100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 40_400)
REFERENCE = "paper"


def load(paths):
    runs = defaultdict(
        lambda: defaultdict(dict)
    )  # (model, pixels, targeted) -> method label -> {image: row}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            label = r["method"] if r["cap"] is None else f"{r['method']} (cap {r['cap']:,})"
            runs[(r["model"], r["pixels"], r["targeted"])][label][r["image"]] = r
    return runs


def replay_stall(row, k, eps=1e-4):
    """The row as the stall rule ``k`` (generations, improvement ``> eps``) would have ended it.

    The rule only truncates a run (the search before the stop is the same), so it is replayed
    exactly on the stored best-fitness history. ``None`` when the row has no history."""
    h = row.get("history")
    if h is None:
        return None
    p = row["popsize"]
    rounds = row["queries"] // p
    for g in range(k, rounds):
        if h[g - k] - h[g] <= eps:
            if row["success"] and g == rounds - 1:
                break  # success in the same generation: the image counts as fooled
            return dict(row, success=False, queries=(g + 1) * p)
    return row


def truncate(row, cap):
    """The row as a run capped at ``cap`` queries would have ended (same search until then)."""
    p = row["popsize"]
    limit = (cap // p) * p
    if row["queries"] <= limit:
        return dict(row, budget=min(row["budget"], limit))
    return dict(row, success=False, queries=limit, budget=limit, history=None)


def curve(rows, checkpoints=CHECKPOINTS):
    s = np.array([r["success"] for r in rows])
    q = np.array([r["queries"] for r in rows])
    return [(int(np.sum(s & (q <= c))), len(rows)) for c in checkpoints]


def summary(rows):
    s = np.array([r["success"] for r in rows])
    q = np.array([r["queries"] for r in rows])
    return {
        "n": len(rows),
        "success": int(s.sum()),
        "total": int(q.sum()),
        "median": float(np.median(q[s])) if s.any() else float("nan"),
        "budget": max(r["budget"] for r in rows),
    }


def table(setting, methods):
    model, pixels, targeted = setting
    lines = [
        f"### {model}, d = {pixels}, {'targeted' if targeted else 'untargeted'}",
        "",
        "| method | images | budget | success [95 % CI] | "
        + " | ".join(f"@{c:,}" for c in CHECKPOINTS)
        + " | total queries | median q. (successes) | vs paper: only / paper only (McNemar p) |",
        "|---" * (len(CHECKPOINTS) + 7) + "|",
    ]
    ref = methods.get(REFERENCE)
    for label, by_image in sorted(methods.items(), key=lambda kv: (kv[0] != REFERENCE, kv[0])):
        images = sorted(by_image)
        rows = [by_image[i] for i in images]
        sm = summary(rows)
        lo, hi = wilson_interval(sm["success"], sm["n"])
        cells = [f"{k}" for k, _ in curve(rows)]
        cmp = ""
        if ref is not None and label != REFERENCE:
            both = [i for i in images if i in ref]
            if both:
                pc = paired_comparison(
                    np.array([by_image[i]["success"] for i in both]),
                    np.array([ref[i]["success"] for i in both]),
                )
                cmp = f"{pc['a_only']} / {pc['b_only']} (p = {pc['p_value']:.3g}, n = {len(both)})"
        lines.append(
            f"| {label} | {sm['n']} | {sm['budget']:,} | {sm['success']}/{sm['n']} = "
            f"{100 * sm['success'] / sm['n']:.0f} % [{100 * lo:.0f}, {100 * hi:.0f}] | "
            + " | ".join(cells)
            + f" | {sm['total']:,} | {sm['median']:,.0f} | {cmp} |"
        )
    return "\n".join(lines) + "\n"


def paired_table(setting, methods, reference=REFERENCE):
    """Each method against ``reference`` on the images both ran: successes, the ratios of total
    queries and of the median queries of the successes (the issue's targets), McNemar's p."""
    ref = methods.get(reference)
    if ref is None:
        return ""
    model, pixels, targeted = setting
    lines = [
        f"#### {model}, d = {pixels}, {'targeted' if targeted else 'untargeted'}: "
        f"paired against {reference}",
        "",
        f"| method | images (both ran) | success | {reference} success | only / {reference} only "
        f"(McNemar p) | total queries | {reference} total | ratio | median q. (successes) | "
        f"{reference} median | ratio |",
        "|---" * 11 + "|",
    ]
    for label, by_image in sorted(methods.items()):
        if label == reference:
            continue
        both = [i for i in sorted(by_image) if i in ref]
        if not both:
            continue
        a = summary([by_image[i] for i in both])
        b = summary([ref[i] for i in both])
        pc = paired_comparison(
            np.array([by_image[i]["success"] for i in both]),
            np.array([ref[i]["success"] for i in both]),
        )
        med = a["median"] / b["median"] if b["median"] == b["median"] else float("nan")
        lines.append(
            f"| {label} | {len(both)} | {a['success']} | {b['success']} | "
            f"{pc['a_only']} / {pc['b_only']} (p = {pc['p_value']:.3g}) | {a['total']:,} | "
            f"{b['total']:,} | {a['total'] / b['total']:.3f} | {a['median']:,.0f} | "
            f"{b['median']:,.0f} | {med:.3f} |"
        )
    return "\n".join(lines) + "\n"


def figure(setting, methods, out_dir, suffix=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, pixels, targeted = setting
    fig, ax = plt.subplots(figsize=(7, 4.5))
    grid = np.unique(np.geomspace(64, 40_400, 200).astype(int))
    many = len(methods) > 5  # no interval bands, distinct colours
    top = max(r["budget"] for by_image in methods.values() for r in by_image.values())
    grid = grid[grid <= top]
    colours = plt.get_cmap("tab20").colors
    for n_line, (label, by_image) in enumerate(sorted(methods.items())):
        rows = list(by_image.values())
        pts = curve(rows, grid)
        rate = np.array([k / n for k, n in pts])
        ci = np.array([wilson_interval(k, n) for k, n in pts])
        colour = colours[n_line % len(colours)] if many else None
        (line,) = ax.plot(grid, 100 * rate, label=f"{label} (n={len(rows)})", color=colour)
        if not many:
            ax.fill_between(
                grid, 100 * ci[:, 0], 100 * ci[:, 1], color=line.get_color(), alpha=0.08
            )
    ax.set_xscale("log")
    ax.set_xlabel("model queries per image")
    ax.set_ylabel("images fooled (%)")
    kind = "targeted" if targeted else "untargeted"
    ax.set_title(f"{model}, {pixels} pixel{'s' if pixels > 1 else ''}, {kind}{suffix}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    name = f"{model}-d{pixels}-{kind}{suffix}.png"
    fig.savefig(Path(out_dir) / name, dpi=110)
    plt.close(fig)
    return name


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("inputs", nargs="+")
    p.add_argument("--figures", default=None)
    p.add_argument("--markdown", default=None)
    p.add_argument(
        "--truncate",
        action="append",
        default=[],
        help="METHOD:CAP adds METHOD as a run capped at CAP queries would have ended",
    )
    p.add_argument(
        "--all-images",
        action="store_true",
        help="every method on all its images (default: only the images every method ran)",
    )
    p.add_argument(
        "--replay",
        action="append",
        default=[],
        help="METHOD:K adds METHOD with the stall rule of K generations, replayed on its history",
    )
    p.add_argument(
        "--paired",
        action="append",
        default=[],
        help="REFERENCE adds, per setting, every method against REFERENCE on the images both "
        "ran (repeatable; e.g. paper, 'corner-scan (cap 8,192)')",
    )
    args = p.parse_args(argv)
    runs = load(args.inputs)
    for spec in args.replay:
        method, k = spec.split(":")
        for methods in runs.values():
            base = [m for m in methods if m.split(" (")[0] == method and "stall" not in m]
            for label in base:
                rows = {i: replay_stall(r, int(k)) for i, r in methods[label].items()}
                if all(v is not None for v in rows.values()):
                    methods[f"{label} + stall {k} (replayed)"] = rows
    for spec in args.truncate:
        method, cap = spec.split(":")
        for methods in runs.values():
            if method in methods:
                rows = {i: truncate(r, int(cap)) for i, r in methods[method].items()}
                methods[f"{method} (truncated at {int(cap):,})"] = rows
    raw = {setting: dict(methods) for setting, methods in runs.items()}  # before any filter
    if not args.all_images:  # compare every method on the images all of them ran
        for methods in runs.values():
            common = set.intersection(*(set(m) for m in methods.values()))
            for label in methods:
                methods[label] = {i: methods[label][i] for i in sorted(common)}
    text = []
    for setting in sorted(runs):
        text.append(table(setting, runs[setting]))
        for reference in args.paired:
            text.append(paired_table(setting, raw[setting], reference))
        if args.figures:
            Path(args.figures).mkdir(parents=True, exist_ok=True)
            methods = runs[setting]
            capped = {k: v for k, v in methods.items() if "cap" in k or "truncated" in k}
            full = {k: v for k, v in methods.items() if k not in capped}
            for part, suffix in ((full, ""), (capped, " (capped runs)")):
                measured_cap = any("(cap " in k and "stall" not in k for k in capped)
                if part and (suffix == "" or (full and measured_cap)):
                    name = figure(
                        setting,
                        part,
                        args.figures,
                        suffix.replace(" ", "-").replace("(", "").replace(")", ""),
                    )
                    text.append(f"![{name}](figures/search/{name})\n")
            if not full:
                name = figure(setting, capped, args.figures)
                text.append(f"![{name}](figures/search/{name})\n")
    out = "\n".join(text)
    if args.markdown:
        Path(args.markdown).write_text(out)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
