"""Tables and figures of the measurement grids, regenerated from their run folders.

**Search** (:func:`read_search`, :func:`search_report`): per (network, ``d``, targeted or not)
and per method, success at query checkpoints with Wilson 95 % intervals, total queries over all
images (failures counted at their budget), median queries of the successes and McNemar's exact
p against the paper's DE; optionally each method against a reference on the images both ran
(paired tables), runs replayed with a query cap or the stall rule
(:func:`onepixel_jax.metrics.truncate_runs`, :func:`~onepixel_jax.metrics.replay_stall`), and
success-versus-queries figures. Inputs are run folders (a grid's cells or any ``onepixel
attack`` run), folders holding them, and the JSON-lines files of the earlier search
measurements (one line per image: ``model``, ``method``, ``pixels``, ``targeted``, ``image``,
``success``, ``queries``, ``budget``, ``cap``, ``popsize``, ``history``), which are read as
they are, without recomputation. A method's label is its name, with `` (cap N)`` when its
cell capped the budget.

**Defences** (:func:`defence_report`, :func:`success_figure`, :func:`fooling_table`): per
undefended network, clean accuracies and the detector's calibration, then per (method, ``d``)
the undefended success, the non-adaptive effect of each squeezer and of the detector on its
adversarial images, and every attacked system (squeezed pipelines, the detector-guarded
system: fooled and not detected, defended checkpoints) paired with the undefended network on
the same images.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onepixel_jax import metrics
from onepixel_jax.errors import UsageError
from onepixel_jax.experiments import run_folder
from onepixel_jax.experiments.grids import CELL, CLEAN
from onepixel_jax.files import read_json_object

CHECKPOINTS = (100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 40_400)
REFERENCE = "paper"
REPORT_HINT = "run the cell again into a new --root"

Setting = tuple[str, int, bool]  # (model, pixels, targeted)
Runs = dict[Setting, dict[str, dict[int, dict]]]  # setting -> method label -> image -> row


# --------------------------------------------------------------------------------------
# Reading the search measurements


def _label(method: str, cap: int | None) -> str:
    return method if cap is None else f"{method} (cap {cap:,})"


def _legacy_rows(path: Path) -> Iterable[tuple[Setting, str, dict]]:
    """The rows of a JSON-lines file of the earlier search measurements."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            setting = (str(r["model"]), int(r["pixels"]), bool(r["targeted"]))
            row = {
                "image": int(r["image"]),
                "success": bool(r["success"]),
                "queries": int(r["queries"]),
                "budget": int(r["budget"]),
                "popsize": int(r["popsize"]),
                "history": r.get("history"),
            }
            label = _label(str(r["method"]), r["cap"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path} line {n} is not a search record ({exc})") from None
        yield setting, label, row


def _run_rows(run_dir: Path) -> Iterable[tuple[Setting, str, dict]]:
    """The rows of a run folder: one per record (queries, success, the fitness history)."""
    info, records = run_folder.load_run(run_dir, REPORT_HINT)
    config = info["config"]
    setting = (
        str(config["model"]),
        int(config.get("pixels", 1)),
        config.get("mode", "untargeted") != "untargeted",
    )
    cap = config.get("max_queries")
    settings = info.get("method_settings") or {}
    for rec in records:
        m = rec["method"]
        own = settings.get(m) or {}
        popsize = int(own.get("popsize", config.get("popsize", 1)))
        budget = int(own.get("budget", popsize * (int(config.get("max_iters", 0)) + 1)))
        row = {
            "image": int(rec["index"]),
            "success": bool(rec["success"]),
            "queries": int(rec["queries"]),
            "budget": budget,
            "popsize": popsize,
            "history": rec["fitness"],
        }
        yield setting, _label(m, cap), row


def _is_defence_run(run_dir: Path) -> bool:
    info = run_folder.read_run_info(run_dir, REPORT_HINT)
    return isinstance(info.get(CELL), dict) and info[CELL].get("grid") == "defences"


def search_sources(paths: Sequence[str | Path]) -> list[Path]:
    """The run folders and JSON-lines files behind ``paths``: a run folder, a ``.jsonl``
    file, or a folder holding them (one level down; defence cells are left out)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.suffix == ".jsonl":
            out.append(p)
        elif p.is_dir() and run_folder.has_run_info(p):
            out.append(p)
        elif p.is_dir():
            children = sorted(p.iterdir())
            runs = [c for c in children if c.is_dir() and run_folder.has_run_info(c)]
            out += [c for c in runs if not _is_defence_run(c)]
            out += [c for c in children if c.is_file() and c.suffix == ".jsonl"]
        else:
            raise UsageError(f"{p} is neither a run folder, a folder of them nor a .jsonl file")
    return out


def read_search(paths: Sequence[str | Path]) -> Runs:
    """Every row of the sources behind ``paths`` (:func:`search_sources`), by setting, method
    label and image; a later source's row replaces an earlier one's for the same image."""
    runs: Runs = defaultdict(lambda: defaultdict(dict))
    for src in search_sources(paths):
        rows = _legacy_rows(src) if src.is_file() else _run_rows(src)
        for setting, label, row in rows:
            runs[setting][label][row["image"]] = row
    return {s: dict(m) for s, m in runs.items()}


# --------------------------------------------------------------------------------------
# Replays


def _columns(rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.array([r["success"] for r in rows], bool),
        np.array([r["queries"] for r in rows], np.int64),
        np.array([r["popsize"] for r in rows], np.int64),
    )


def truncated(by_image: dict[int, dict], cap: int) -> dict[int, dict]:
    """The rows as runs capped at ``cap`` queries would have ended."""
    images = sorted(by_image)
    rows = [by_image[i] for i in images]
    success, queries, popsize = _columns(rows)
    s, q = metrics.truncate_runs(success, queries, popsize, cap)
    limit = (cap // popsize) * popsize
    return {
        i: dict(r, success=bool(s[k]), queries=int(q[k]), budget=int(min(r["budget"], limit[k])))
        for k, (i, r) in enumerate(zip(images, rows, strict=True))
    }


def stall_replayed(by_image: dict[int, dict], stall: int, eps: float = 1e-4) -> dict | None:
    """The rows as the stall rule of ``stall`` generations would have ended them; ``None``
    when a row has no fitness history."""
    images = sorted(by_image)
    rows = [by_image[i] for i in images]
    if any(r.get("history") is None for r in rows):
        return None
    success, queries, popsize = _columns(rows)
    s, q = metrics.replay_stall(success, queries, popsize, [r["history"] for r in rows], stall, eps)
    return {
        i: dict(r, success=bool(s[k]), queries=int(q[k]))
        for k, (i, r) in enumerate(zip(images, rows, strict=True))
    }


def add_replays(
    runs: Runs, truncate: Sequence[tuple[str, int]] = (), replay: Sequence[tuple[str, int]] = ()
) -> None:
    """Add, in place, ``METHOD (truncated at CAP)`` for every ``(method, cap)`` of
    ``truncate`` and ``LABEL + stall K (replayed)`` for every label of ``method`` (capped or
    not) and ``(method, k)`` of ``replay``."""
    for methods in runs.values():
        for method, k in replay:
            # every label of the method, capped or not, but not an earlier replay of it
            base = [m for m in methods if m.split(" (")[0] == method and "(replayed)" not in m]
            for label in base:
                rows = stall_replayed(methods[label], int(k))
                if rows is not None:
                    methods[f"{label} + stall {k} (replayed)"] = rows
        for method, cap in truncate:
            if method in methods:
                methods[f"{method} (truncated at {int(cap):,})"] = truncated(methods[method], cap)


# --------------------------------------------------------------------------------------
# Search tables and figures


def summary(rows: list[dict]) -> dict[str, Any]:
    """Attacks, successes, total queries, median queries of the successes, largest budget."""
    success, queries, _ = _columns(rows)
    return {
        "n": len(rows),
        "success": int(success.sum()),
        "total": int(queries.sum()),
        "median": float(np.median(queries[success])) if success.any() else float("nan"),
        "budget": max(r["budget"] for r in rows),
    }


def _title(setting: Setting) -> str:
    model, pixels, targeted = setting
    return f"{model}, d = {pixels}, {'targeted' if targeted else 'untargeted'}"


def search_table(setting: Setting, methods: dict[str, dict[int, dict]]) -> str:
    """One setting's table: a row per method label (the reference first)."""
    lines = [
        f"### {_title(setting)}",
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
        lo, hi = metrics.wilson_interval(sm["success"], sm["n"])
        success, queries, _ = _columns(rows)
        cells = [str(k) for k in metrics.success_curve(success, queries, CHECKPOINTS)]
        cmp = ""
        if ref is not None and label != REFERENCE:
            both = [i for i in images if i in ref]
            if both:
                pc = metrics.paired_comparison(
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


def paired_table(
    setting: Setting, methods: dict[str, dict[int, dict]], reference: str = REFERENCE
) -> str:
    """Each method against ``reference`` on the images both ran: successes, the ratios of the
    total queries and of the median queries of the successes, McNemar's p."""
    ref = methods.get(reference)
    if ref is None:
        return ""
    lines = [
        f"#### {_title(setting)}: paired against {reference}",
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
        pc = metrics.paired_comparison(
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


def search_figure(
    setting: Setting, methods: dict[str, dict[int, dict]], out_dir: str | Path, suffix: str = ""
) -> str:
    """Success (%) against queries per image, one line per method (Wilson bands when there
    are at most five); returns the file name written into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, pixels, targeted = setting
    fig, ax = plt.subplots(figsize=(7, 4.5))
    grid = np.unique(np.geomspace(64, 40_400, 200).astype(int))
    many = len(methods) > 5
    top = max(r["budget"] for by_image in methods.values() for r in by_image.values())
    grid = grid[grid <= top]
    colours = plt.get_cmap("tab20").colors
    for n_line, (label, by_image) in enumerate(sorted(methods.items())):
        success, queries, _ = _columns(list(by_image.values()))
        counts = metrics.success_curve(success, queries, grid)
        n = len(success)
        ci = np.array([metrics.wilson_interval(int(k), n) for k in counts])
        colour = colours[n_line % len(colours)] if many else None
        (line,) = ax.plot(grid, 100 * counts / n, label=f"{label} (n={n})", color=colour)
        if not many:
            ax.fill_between(
                grid, 100 * ci[:, 0], 100 * ci[:, 1], color=line.get_color(), alpha=0.08
            )
    ax.set_xscale("log")
    ax.set_xlabel("model queries per image")
    ax.set_ylabel("images fooled (%)")
    kind = "targeted" if targeted else "untargeted"
    title_suffix = suffix.replace("-", " ").strip()
    title_suffix = f" ({title_suffix})" if title_suffix else ""
    ax.set_title(f"{model}, {pixels} pixel{'s' if pixels > 1 else ''}, {kind}{title_suffix}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    name = f"{model}-d{pixels}-{kind}{suffix}.png"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(out_dir) / name, dpi=110)
    plt.close(fig)
    return name


def search_report(
    runs: Runs,
    *,
    paired: Sequence[str] = (),
    all_images: bool = False,
    figures: str | Path | None = None,
    figure_link: str = "figures/search",
) -> str:
    """The Markdown of every setting of ``runs`` (after :func:`add_replays`): its table, the
    paired tables against each of ``paired``, and with ``figures`` the figures (full runs, and
    capped runs apart), linked as ``figure_link/NAME``. By default each method is shown on
    the images every method of its setting ran; ``all_images``: each on all of its own."""
    raw = {s: dict(m) for s, m in runs.items()}
    shown = {s: dict(m) for s, m in runs.items()}
    if not all_images:
        for methods in shown.values():
            common = set.intersection(*(set(m) for m in methods.values()))
            for label in methods:
                methods[label] = {i: methods[label][i] for i in sorted(common)}
    text = []
    for setting in sorted(shown):
        methods = shown[setting]
        text.append(search_table(setting, methods))
        for reference in paired:
            text.append(paired_table(setting, raw[setting], reference))
        if figures is None:
            continue
        capped = {k: v for k, v in methods.items() if "cap" in k or "truncated" in k}
        full = {k: v for k, v in methods.items() if k not in capped}
        measured_cap = any("(cap " in k and "(replayed)" not in k for k in capped)
        parts = [(full, "")] if full else [(capped, "")]
        if full and measured_cap:
            parts.append((capped, "-capped-runs"))
        for part, suffix in parts:
            name = search_figure(setting, part, figures, suffix)
            text.append(f"![{name}]({figure_link}/{name})\n")
    return "\n".join(text)


# --------------------------------------------------------------------------------------
# Defences


def read_defences(root: str | Path) -> dict[str, dict[str, Any]]:
    """``{model: {"clean": clean.json, "cells": {cell name: (run info, records)}}}`` of a
    defence grid's root (every ``ROOT/<model>`` with a ``clean.json``)."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"defence grid root {root} not found")
    out = {}
    for model_dir in sorted(p for p in root.iterdir() if (p / CLEAN).is_file()):
        clean = read_json_object(model_dir / CLEAN, what="calibration")
        cells = {}
        for run_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            if run_folder.has_run_info(run_dir) and _is_defence_run(run_dir):
                info, records = run_folder.load_run(run_dir, REPORT_HINT)
                cells[info[CELL]["name"]] = (info, records)
        out[model_dir.name] = {"clean": clean, "cells": cells}
    if not out:
        raise UsageError(f"{root} holds no defence grid (no <model>/{CLEAN})")
    return out


def _by_image(info: dict, records: list[dict]) -> dict[int, dict]:
    order = {index: p for p, index in enumerate(info["indices"])}
    return dict(sorted(((r["index"], r) for r in records), key=lambda kv: order[kv[0]]))


def _rate(s) -> str:
    s = np.asarray(s, bool)
    lo, hi = metrics.wilson_interval(int(s.sum()), s.size)
    return f"{100 * s.mean():.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"


def _paired_p(a: dict[int, bool], b: dict[int, bool]) -> str:
    both = [i for i in a if i in b]
    c = metrics.paired_comparison(
        np.array([a[i] for i in both], bool), np.array([b[i] for i in both], bool)
    )
    return f"{c['p_value']:.3g} ({c['a_only']}/{c['b_only']})"


def _card_accuracy(info: dict) -> str:
    acc = (info.get("model_card") or {}).get("test_accuracy")
    return f"{100 * acc:.2f} %" if isinstance(acc, int | float) else "?"


def defence_table(model: str, grid: dict[str, Any]) -> str:
    """The table of one network's defence grid (see the module docstring)."""
    clean, cells = grid["clean"], grid["cells"]
    acc, det = clean["accuracy"], clean["detector"]
    lines = [
        f"### {model}",
        "",
        f"Clean accuracy on the first {clean['clean_images']} test images: "
        + ", ".join(f"{k} {100 * v:.2f} %" for k, v in acc.items())
        + f". Detector ({' + '.join(clean['detector_squeezers'])}): threshold "
        f"{det['threshold']:.4f} (L1), flags {100 * det['fpr_calibration']:.1f} % of the "
        f"calibration images, {100 * det['fpr_clean_images']:.1f} % of the clean test images "
        f"and {100 * det['fpr_clean_attack_images']:.1f} % of the clean attacked images.",
        "",
        "| attack | d | defence | clean acc. | success [95 % CI] | McNemar p vs none "
        "(defended-only / none-only) | mean queries |",
        "|---|---|---|---|---|---|---|",
    ]
    rejected = f"{100 * acc['none']:.2f} % ({100 * det['fpr_clean_images']:.1f} % rejected)"
    described = {name: (info, recs, info[CELL]) for name, (info, recs) in cells.items()}
    bases = sorted(
        (c for c in described.values() if c[2]["kind"] == "none"),
        key=lambda c: (c[2]["method"], c[2]["pixels"]),
    )
    for info, recs, cell in bases:
        method, d = cell["method"], cell["pixels"]
        base = _by_image(info, recs)
        s0 = {i: r["success"] for i, r in base.items()}
        lines.append(
            f"| {method} | {d} | none | {100 * acc['none']:.2f} % | {_rate(list(s0.values()))} "
            f"| - | {np.mean([r['queries'] for r in base.values()]):.0f} |"
        )
        for name in cell["squeezers"]:
            s = {i: r["squeezed"][name] for i, r in base.items()}
            lines.append(
                f"| {method} (non-adaptive: adv. of none) | {d} | {name} | "
                f"{100 * acc[name]:.2f} % | {_rate(list(s.values()))} | {_paired_p(s, s0)} | - |"
            )
        und = {i: r["success"] and not r["flagged"] for i, r in base.items()}
        lines.append(
            f"| {method} (non-adaptive: adv. of none) | {d} | detector, fooled & not flagged "
            f"| {rejected} | {_rate(list(und.values()))} | {_paired_p(und, s0)} | - |"
        )
        others = sorted(
            (c for c in described.values() if c[2]["kind"] != "none"
             and c[2]["method"] == method and c[2]["pixels"] == d),
            key=lambda c: (c[2]["kind"] == "model", c[2]["system"]),
        )  # fmt: skip
        for o_info, o_recs, o_cell in others:
            rows = _by_image(o_info, o_recs)
            s = {i: r["success"] for i, r in rows.items()}
            if o_cell["kind"] == "detector":
                label, clean_acc = "detector, fooled & not flagged", rejected
            elif o_cell["kind"] == "squeezed":
                label, clean_acc = o_cell["system"], f"{100 * acc[o_cell['system']]:.2f} %"
            else:
                label, clean_acc = o_cell["system"], _card_accuracy(o_info)
            if len(s) < len(s0):
                on_them = [s0[i] for i in s if i in s0]
                label += f" (first {len(s)} images; none on them: {_rate(on_them)})"
            kind = "trained" if o_cell["kind"] == "model" else "adaptive"
            lines.append(
                f"| {method} ({kind}) | {d} | {label} | {clean_acc} | {_rate(list(s.values()))} "
                f"| {_paired_p(s, s0)} | {np.mean([r['queries'] for r in rows.values()]):.0f} |"
            )
    return "\n".join(lines) + "\n"


def defence_report(root: str | Path) -> str:
    """The tables of every network of the defence grid under ``root``."""
    return "\n".join(defence_table(m, g) for m, g in read_defences(root).items())


def success_figure(root: str | Path, path: str | Path) -> None:
    """Bar chart of attack success with Wilson intervals, per network and cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grids = read_defences(root)
    fig, axes = plt.subplots(1, len(grids), figsize=(6 * len(grids), 4), squeeze=False)
    for ax, (model, grid) in zip(axes[0], grids.items(), strict=True):
        cells = sorted(
            ((info[CELL], recs) for info, recs in grid["cells"].values()),
            key=lambda c: (c[0]["method"], c[0]["pixels"], c[0]["kind"] != "none", c[0]["system"]),
        )
        labels, rates, errs = [], [], []
        for cell, recs in cells:
            s = np.array([r["success"] for r in recs], bool)
            lo, hi = metrics.wilson_interval(int(s.sum()), s.size)
            labels.append(f"{cell['system']} d{cell['pixels']} {cell['method']}")
            rates.append(s.mean())
            errs.append((s.mean() - lo, hi - s.mean()))
        ax.bar(range(len(rates)), rates, yerr=np.array(errs).T, capsize=3)
        ax.set_xticks(range(len(rates)), labels, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("attack success (Wilson 95 %)")
        ax.set_title(model)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fooling_table(folders: Sequence[str | Path], figure: str | Path | None = None) -> str:
    """Per round of fooling-class retraining (``onepixel defend fooling-class`` work
    folders): classes MAP-Elites reaches at the threshold, best confidences, generations
    needed, fooling-class rates and clean accuracy; ``figure``: the best confidence per class
    and round."""
    lines = [
        "| run | retraining | round | network attacked | classes >= 99.99 % | median / min best "
        "confidence | median generation reaching (reached classes) | fooling images so far "
        "| fooling class on them before -> after | clean test acc. after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    curves: dict[str, list] = {}
    for folder in map(Path, folders):
        rounds_file = folder / "rounds.jsonl"
        if not rounds_file.is_file():
            raise UsageError(f"{folder} is not a fooling-class work folder (no rounds.jsonl)")
        rounds = [json.loads(x) for x in rounds_file.read_text().splitlines() if x]
        base = None
        mode = None
        for rec in rounds:
            mode = rec.get("mode", mode)  # an evolution-only record attacks the last mode's network
            r = rec["round"]
            s = json.loads((folder / f"round{r}" / "evolve-0" / "summary.json").read_text())
            base = base or s["model"].rsplit("-fooling-class", 1)[0]
            gens = [g for g in s["first_generation_reaching"] if g >= 0]
            attacked = base if r == 1 else f"round {r - 1} network"
            only = rec.get("evolution_only")
            if only:
                after = "-"
            elif mode == "from_scratch":  # "before" is a fresh initialisation: not informative
                after = f"(fresh network) -> {100 * rec['fooling_rate_after']:.0f} %"
            else:
                after = (
                    f"{100 * rec['fooling_rate_before']:.0f} % -> "
                    f"{100 * rec['fooling_rate_after']:.0f} %"
                )
            acc = "-" if only else f"{100 * rec['test_accuracy']:.2f} %"
            n = "-" if only else str(rec["fooling_images"])
            lines.append(
                f"| {folder.name} | {(mode or '-').replace('_', ' ')} "
                f"| {r}{' (evolution only)' if only else ''} | {attacked} | "
                f"{s['reached']}/{len(s['classes'])} | {s['median_confidence']:.4f} / "
                f"{s['min_confidence']:.4f} | {int(np.median(gens)) if gens else '-'} (of "
                f"{s['generations']}) | {n} | {after} | {acc} |"
            )
            curves.setdefault(folder.name, []).append(sorted(s["best_confidence"]))
    if figure and curves:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5), squeeze=False)
        for ax, (name, per_round) in zip(axes[0], curves.items(), strict=True):
            for r, conf in enumerate(per_round, 1):
                ax.plot(range(len(conf)), conf, marker="o", label=f"evolution {r}")
            ax.axhline(0.9999, color="grey", lw=0.8, ls="--")
            ax.set_title(name)
            ax.set_xlabel("class (sorted by best confidence)")
            ax.set_ylabel("best MAP-Elites confidence")
            ax.legend(fontsize=8)
        fig.tight_layout()
        Path(figure).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(figure, dpi=110)
        plt.close(fig)
    return "\n".join(lines) + "\n"


__all__ = [
    "CHECKPOINTS",
    "add_replays",
    "defence_report",
    "defence_table",
    "fooling_table",
    "paired_table",
    "read_defences",
    "read_search",
    "search_figure",
    "search_report",
    "search_sources",
    "search_table",
    "stall_replayed",
    "success_figure",
    "summary",
    "truncated",
]
