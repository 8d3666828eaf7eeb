"""``onepixel report runs/NAME [runs/OTHER ...]``: the paper's measurements and figures.

Reads ``run.json`` and ``results.jsonl`` written by ``onepixel attack`` and writes, into
the same folder, ``summary.json``, ``report.md`` and PNG figures:

- ``class_pairs.png``: successful attacks per (original, reached) class pair (paper Figs. 6, 12)
- ``target_counts.png``: images per number of target classes reached (Figs. 5, 11; targeted)
- ``per_class.png``: successes per class as original and as target (Figs. 8, 14)
- ``fitness.png``: best fitness per generation, per attack and mean (Fig. 10)
- ``examples.png``: clean and adversarial images side by side, changed pixels marked

With several folders (or ``--table FILE``) it also writes a Markdown table comparing the runs
side by side (:func:`comparison_table`), for sweeps over models, pixel counts and modes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from onepixel_jax import metrics

RESULTS = "results.jsonl"
RUN_INFO = "run.json"
IMAGES = "images.npz"
MAX_CURVES = 50
MAX_EXAMPLES = 8


# --------------------------------------------------------------------------------------
# Loading and measuring


def load_run(run_dir: str | Path) -> tuple[dict, list[dict]]:
    """``(run info, records)`` of a run folder; a torn last line is ignored."""
    from onepixel_jax.sweep import read_records

    run_dir = Path(run_dir)
    info_path = run_dir / RUN_INFO
    if not info_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {RUN_INFO})")
    info = json.loads(info_path.read_text())
    return info, read_records(run_dir / RESULTS)


def _arrays(records: list[dict]) -> dict[str, np.ndarray]:
    """Stack the fields of records into arrays (targets -1 when untargeted)."""
    n = len(records)
    return {
        "index": np.array([r["index"] for r in records], np.int64),
        "label": np.array([r["label"] for r in records], np.int64),
        "target": np.array([-1 if r["target"] is None else r["target"] for r in records], np.int64),
        "success": np.array([r["success"] for r in records], bool),
        "predicted": np.array([r["predicted"] for r in records], np.int64),
        "queries": np.array([r["queries"] for r in records], np.int64),
        "distortion": np.array([r["distortion"] for r in records], np.float64),
        "probs": np.array([r["probs"] for r in records], np.float64).reshape(n, -1),
        "fitness": np.array([r["fitness"] for r in records], np.float64).reshape(n, -1),
        "seconds": np.array([r.get("seconds", 0.0) for r in records], np.float64),
    }


def measure(records: list[dict], num_classes: int, targeted: bool) -> dict[str, Any]:
    """All measurements of one method's records (see :mod:`onepixel_jax.metrics`)."""
    if not records:
        return {"attacks": 0, "images": 0}
    a = _arrays(records)
    reached = a["target"] if targeted else a["predicted"]
    pairs = metrics.class_pair_counts(a["label"], reached, a["success"], num_classes)
    as_original, as_target = metrics.per_class_counts(pairs)
    out: dict[str, Any] = {
        "attacks": len(records),
        "images": int(np.unique(a["index"]).size),
        "success": metrics.rate_with_ci(a["success"]),
        "confidence": metrics.confidence(a["probs"], a["success"], reached),
        "avg_evaluations": metrics.avg_evaluations(a["queries"], a["success"]),
        "avg_distortion": metrics.avg_distortion(a["distortion"], a["success"]),
        "class_pairs": pairs.tolist(),
        "as_original": as_original.tolist(),
        "as_target": as_target.tolist(),
        "mean_fitness": metrics.mean_fitness_curve(a["fitness"]).tolist(),
        "queries": int(a["queries"].sum()),
        "seconds": float(a["seconds"].sum()),
    }
    if targeted:
        _, fooled = metrics.derived_untargeted_success(a["index"], a["success"])
        _, counts = metrics.targets_reached(a["index"], a["success"])
        out["derived_untargeted"] = metrics.rate_with_ci(fooled)
        out["targets_per_image"] = float(counts.mean())
        out["target_histogram"] = metrics.target_count_histogram(
            a["index"], a["success"], num_classes
        ).tolist()
    return out


def summarize(info: dict, records: list[dict]) -> dict[str, Any]:
    """The run's summary: configuration plus measurements per method and DE vs random."""
    config = info["config"]
    targeted = config["mode"] != "untargeted"
    k = int(info["num_classes"])
    by_method: dict[str, list[dict]] = {}
    for r in records:
        by_method.setdefault(r["method"], []).append(r)
    summary: dict[str, Any] = {
        "config": config,
        "model_sha256": info.get("model_sha256"),
        "expected_attacks": _expected_attacks(info),
        "methods": {m: measure(rs, k, targeted) for m, rs in sorted(by_method.items())},
    }
    if "de" in by_method and "random" in by_method:
        de = {(r["index"], r["target"]): r for r in by_method["de"]}
        rnd = {(r["index"], r["target"]): r for r in by_method["random"]}
        common = sorted(set(de) & set(rnd), key=lambda t: (t[0], -1 if t[1] is None else t[1]))
        if common:
            summary["de_vs_random"] = metrics.de_vs_random(
                np.array([de[c]["success"] for c in common]),
                np.array([rnd[c]["success"] for c in common]),
                np.array([_best_fitness(de[c]) for c in common]),
                np.array([_best_fitness(rnd[c]) for c in common]),
            )
            if targeted:
                idx = np.array([c[0] for c in common])
                de_ok = [de[c]["success"] for c in common]
                rnd_ok = [rnd[c]["success"] for c in common]
                _, de_img = metrics.derived_untargeted_success(idx, de_ok)
                _, rnd_img = metrics.derived_untargeted_success(idx, rnd_ok)
                summary["de_vs_random_derived"] = metrics.de_vs_random(de_img, rnd_img)
    return summary


def _best_fitness(record: dict) -> float:
    """Lowest fitness an attack reached (the last entry of its best-so-far curve)."""
    curve = record.get("fitness") or []
    return float(curve[-1]) if curve else float("nan")


def _expected_attacks(info: dict) -> int:
    n = len(info["indices"])
    mode = info["config"]["mode"]
    return n * (int(info["num_classes"]) - 1 if mode == "all-targets" else 1)


def summary_line(summary: dict) -> str:
    """One line for the terminal: DE success rate with its 95 % interval."""
    de = summary["methods"].get("de")
    if not de or not de.get("attacks"):
        return "no finished attacks yet"
    s = de["success"]
    line = (
        f"DE success {_pct(s['rate'])} [{_pct(s['low'])}, {_pct(s['high'])}] "
        f"over {s['trials']} attacks"
    )
    if "derived_untargeted" in de:
        line += f"; images fooled {_pct(de['derived_untargeted']['rate'])}"
    if "de_vs_random" in summary:
        line += f"; random search {_pct(summary['de_vs_random']['random_rate'])}"
    return line


# --------------------------------------------------------------------------------------
# Figures


def _class_names(info: dict) -> list[str]:
    names = info.get("class_names") or []
    k = int(info["num_classes"])
    return list(names) if len(names) == k else [str(i) for i in range(k)]


def plot_class_pairs(pairs: np.ndarray, names: list[str], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    pairs = np.asarray(pairs)
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    im = ax.imshow(pairs, cmap="Reds")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if pairs[i, j]:
                    dark = pairs[i, j] > 0.6 * pairs.max()
                    ax.text(
                        j,
                        i,
                        str(pairs[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if dark else "black",
                    )
    ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("reached class")
    ax.set_ylabel("original class")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_target_counts(hist: np.ndarray, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    hist = np.asarray(hist, np.float64)
    pct = 100.0 * hist / max(hist.sum(), 1)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.bar(np.arange(len(hist)), pct, color="0.35")
    for i, v in enumerate(pct):
        if v:
            ax.text(i, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(np.arange(len(hist)))
    ax.set_xlabel("number of target classes reached")
    ax.set_ylabel("% of images")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_per_class(as_original, as_target, names: list[str], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    k = len(names)
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * k, 3.5))
    ax.bar(x - 0.2, as_original, 0.4, color="black", label="as original")
    ax.bar(x + 0.2, as_target, 0.4, color="0.6", label="as target")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("successful attacks")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_fitness(curves: np.ndarray, mean: np.ndarray, path: Path, ylabel: str, title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for c in curves[:MAX_CURVES]:
        ax.plot(c, color="tab:blue", alpha=0.35, linewidth=0.8)
    ax.plot(mean, "r--", linewidth=2, label=f"mean of {len(curves)}")
    ax.set_xlabel("generation")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rebuild_adversarial(original: np.ndarray, pixels: list) -> np.ndarray:
    """The adversarial image from its clean image (H, W, C) and the record's pixel rows."""
    adv = np.array(original, copy=True)
    for row in pixels:
        r, c, values = int(row[0]), int(row[1]), row[2:]
        adv[r, c] = np.asarray(values, adv.dtype).reshape(adv[r, c].shape)
    return adv


def plot_examples(records, images_by_index, names, path: Path, title: str) -> int:
    """Grid of (clean, adversarial) pairs; returns the number of examples drawn."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    chosen = [r for r in records if r["success"] and r["index"] in images_by_index]
    chosen += [r for r in records if not r["success"] and r["index"] in images_by_index]
    chosen = chosen[:MAX_EXAMPLES]
    if not chosen:
        return 0
    cols = 4  # two examples per row
    rows = math.ceil(len(chosen) / 2)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for n, rec in enumerate(chosen):
        orig = images_by_index[rec["index"]]
        adv = rebuild_adversarial(orig, rec["pixels"])
        label, pred = rec["label"], rec["predicted"]
        p0 = rec["original_probs"][label]
        p1 = rec["probs"][pred]
        for j, (img, text) in enumerate(
            (
                (orig, f"{names[label]} ({100 * p0:.0f}%)"),
                (adv, f"-> {names[pred]} ({100 * p1:.0f}%){'' if rec['success'] else ', failed'}"),
            )
        ):
            ax = axes[n // 2, 2 * (n % 2) + j]
            shown = img[..., 0] if img.shape[-1] == 1 else img
            ax.imshow(
                shown,
                cmap="gray" if img.shape[-1] == 1 else None,
                vmin=0,
                vmax=255,
                interpolation="nearest",
            )
            colour = "red" if (j == 1 and rec["success"]) else "black"
            ax.set_title(text, fontsize=8, color=colour)
            half = max(0.5, img.shape[0] / 20)  # the pixel itself on tiny images
            for row in rec["pixels"]:
                r, c = int(row[0]), int(row[1])
                ax.add_patch(
                    Rectangle(
                        (c - half, r - half), 2 * half, 2 * half, fill=False, ec="lime", lw=1.2
                    )
                )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(chosen)


# --------------------------------------------------------------------------------------
# Report


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f}%"


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if x is None or not math.isfinite(x) else fmt.format(x)


def _ci(r: dict) -> str:
    return (
        f"{_pct(r['rate'])} [{_pct(r['low'])}, {_pct(r['high'])}] ({r['successes']}/{r['trials']})"
    )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def write_report(run_dir: str | Path) -> dict[str, Any]:
    """Measure a run folder and write summary.json, report.md and the figures into it."""
    import matplotlib

    matplotlib.use("Agg")

    run_dir = Path(run_dir)
    info, records = load_run(run_dir)
    summary = summarize(info, records)
    config = info["config"]
    targeted = config["mode"] != "untargeted"
    names = _class_names(info)
    de_recs = [r for r in records if r["method"] == "de"]
    de = summary["methods"].get("de", {"attacks": 0})
    figures: list[tuple[str, str]] = []

    if de.get("attacks"):
        what = "target" if targeted else "new class"
        plot_class_pairs(
            np.array(de["class_pairs"]),
            names,
            run_dir / "class_pairs.png",
            f"successful attacks: original -> {what}",
        )
        figures.append(("Original-to-reached class pairs", "class_pairs.png"))
        if targeted:
            plot_target_counts(
                np.array(de["target_histogram"]),
                run_dir / "target_counts.png",
                "images per number of target classes reached",
            )
            figures.append(("Number of target classes per image", "target_counts.png"))
        plot_per_class(
            de["as_original"],
            de["as_target"],
            names,
            run_dir / "per_class.png",
            "successful attacks per class",
        )
        figures.append(("Successes per class as original and as target", "per_class.png"))
        fit = np.array([r["fitness"] for r in de_recs], np.float64)
        plot_fitness(
            fit,
            np.array(de["mean_fitness"]),
            run_dir / "fitness.png",
            "1 - p(target)" if targeted else "p(true class)",
            "best fitness per generation",
        )
        figures.append(("Fitness curves", "fitness.png"))
        images_by_index = _load_images(run_dir)
        if images_by_index and plot_examples(
            de_recs,
            images_by_index,
            names,
            run_dir / "examples.png",
            "clean (left) and adversarial (right); changed pixels boxed",
        ):
            figures.append(("Examples", "examples.png"))

    (run_dir / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
    (run_dir / "report.md").write_text(_markdown(info, summary, figures))
    return summary


def _load_images(run_dir: Path) -> dict[int, np.ndarray]:
    path = run_dir / IMAGES
    if not path.exists():
        return {}
    with np.load(path) as z:
        return {int(i): img for i, img in zip(z["indices"], z["images"], strict=True)}


def _markdown(info: dict, summary: dict, figures: list[tuple[str, str]]) -> str:
    config = info["config"]
    targeted = config["mode"] != "untargeted"
    lines = [
        f"# Attack report: {config['model']} on {config['dataset']} ({config['split']})",
        "",
        f"Command: `{info.get('command')}`",
        "",
        f"Model sha256: `{info.get('model_sha256')}`; created {info.get('created')}; "
        f"versions: {', '.join(f'{k} {v}' for k, v in info.get('versions', {}).items())}.",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in config.items()]
    done = sum(m.get("attacks", 0) for m in summary["methods"].values())
    expected = summary["expected_attacks"] * (2 if config.get("baseline") == "random" else 1)
    lines += ["", f"Finished attacks: {done} of {expected}.", "", "## Results", ""]
    header = (
        "| method | attacks | success rate [95% CI] | confidence | AvgEvaluation | AvgDistortion |"
    )
    if targeted:
        header = header[:-1] + " images fooled (derived non-targeted) [95% CI] | targets/image |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for method, m in summary["methods"].items():
        if not m.get("attacks"):
            continue
        row = (
            f"| {method} | {m['attacks']} | {_ci(m['success'])} | {_pct(m['confidence'])} | "
            f"{_num(m['avg_evaluations'], '{:.0f}')} | {_num(m['avg_distortion'])} |"
        )
        if targeted:
            row += f" {_ci(m['derived_untargeted'])} | {_num(m['targets_per_image'], '{:.2f}')} |"
        lines.append(row)
    lines += [
        "",
        "Success rate: targeted attacks count when the adversarial argmax is the target, "
        "untargeted ones when it differs from the label. Confidence: mean probability of the "
        "reached class over successes. AvgEvaluation: mean model queries of successful attacks. "
        "AvgDistortion: mean absolute change per colour channel of the attacked pixels "
        "(0..255) over successes. Intervals are Wilson 95% intervals.",
    ]
    for key, title in (
        ("de_vs_random", "DE against random search (same images, same budget)"),
        ("de_vs_random_derived", "DE against random search, images fooled"),
    ):
        if key in summary:
            c = summary[key]
            lines += [
                "",
                f"## {title}",
                "",
                "| | DE | random | difference | both | DE only | random only | neither "
                "| McNemar exact p |",
                "|---|---|---|---|---|---|---|---|---|",
                f"| success | {_pct(c['de_rate'])} | {_pct(c['random_rate'])} | "
                f"{100 * c['difference']:+.2f} points | {c['both']} | {c['de_only']} | "
                f"{c['random_only']} | {c['neither']} | {c['p_value']:.3g} |",
            ]
            if "neither_de_lower" in c and c["neither"]:
                lines += [
                    "",
                    f"Where neither method succeeded ({c['neither']} attacks), DE reached the "
                    f"lower best fitness on {c['neither_de_lower']}, random search on "
                    f"{c['neither_random_lower']} (sign test p = {c['neither_p_value']:.3g}).",
                ]
    de = summary["methods"].get("de")
    if de and de.get("seconds"):
        rate = de["queries"] / de["seconds"] if de["seconds"] else float("nan")
        lines += [
            "",
            f"DE wall time {de['seconds']:.0f} s for {de['queries']:,} model evaluations "
            f"({rate:,.0f} evaluations/s).",
        ]
    if figures:
        lines += ["", "## Figures", ""]
        for caption, name in figures:
            lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------------------
# CLI


def comparison_table(run_dirs: list[str | Path]) -> str:
    """One Markdown row per run folder, side by side: what was attacked and the DE measurements.

    Columns: run, model, mode, pixels, images, DE success [95 % CI], confidence, AvgEvaluation,
    AvgDistortion, random search success and DE minus random (when the run has the baseline),
    images fooled and targets per image (all-targets runs), and DE wall time. The rows are
    measured from each folder's records (the same numbers as its report.md).
    """
    header = (
        "| run | model | mode | pixels | images | DE success [95% CI] | confidence | "
        "AvgEvaluation | AvgDistortion | random search | DE - random | images fooled "
        "(derived) | targets/image | DE wall time |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for run_dir in run_dirs:
        info, records = load_run(run_dir)
        summary = summarize(info, records)
        config = info["config"]
        de = summary["methods"].get("de", {})
        if not de.get("attacks"):
            lines.append(f"| {Path(run_dir).name} | {config['model']} | no finished attacks |")
            continue
        vs = summary.get("de_vs_random")
        targeted = "derived_untargeted" in de
        cells = [
            Path(run_dir).name,
            str(config["model"]),
            str(config["mode"]),
            str(config.get("pixels", "")),
            str(de["images"]),
            _ci(de["success"]),
            _pct(de["confidence"]),
            _num(de["avg_evaluations"], "{:,.0f}"),
            _num(de["avg_distortion"]),
            _pct(vs["random_rate"]) if vs else "",
            f"{100 * vs['difference']:+.2f} points (p = {vs['p_value']:.2g})" if vs else "",
            _ci(de["derived_untargeted"]) if targeted else "",
            _num(de["targets_per_image"], "{:.2f}") if targeted else "",
            f"{de['seconds']:,.0f} s",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _run_cli(args: argparse.Namespace) -> int:
    try:
        for run_dir in args.run_dirs:
            summary = write_report(run_dir)
            print(f"{Path(run_dir).name}: {summary_line(summary)}")
            print(f"wrote {Path(run_dir) / 'report.md'}")
        if args.table or len(args.run_dirs) > 1:
            table = comparison_table(args.run_dirs)
            if args.table:
                Path(args.table).write_text(table)
                print(f"wrote {args.table}")
            else:
                print(table, end="")
    except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
        print(f"onepixel report: error: {exc}", file=sys.stderr)
        return 2
    return 0


def register_cli(subparsers: Any) -> None:
    """Add the ``report`` sub-command."""
    p = subparsers.add_parser(
        "report",
        help="measurements and figures of attack run folders, and a table comparing them",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run folder(s) written by `onepixel attack`"
    )
    p.add_argument(
        "--table",
        metavar="FILE",
        help="write a Markdown table with one row per run to FILE (printed when several runs "
        "are given and FILE is not)",
    )
    p.set_defaults(func=_run_cli)
