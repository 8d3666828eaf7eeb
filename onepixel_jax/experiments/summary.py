"""The paper's measurements of a run's records, per method, and paired method comparisons.

Pure functions from ``(run info, records)`` to JSON-ready dicts, built on
:mod:`onepixel_jax.metrics`; no files and no figures here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from onepixel_jax import metrics


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
        "distortion": np.array([r.get("distortion", math.nan) for r in records], np.float64),
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
        # time to the first generation of each session's first engine call (compilation
        # included), where the sweep recorded it; one value per such call
        "compile_seconds": list(
            dict.fromkeys(r["compile_seconds"] for r in records if "compile_seconds" in r)
        ),
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


def run_methods(info: dict, records: list[dict]) -> list[str]:
    """The methods of a run in order: those of its config, then any other found in records.

    Runs written before configs named their methods have ``baseline`` instead.
    """
    config = info.get("config", {})
    methods = list(config.get("methods") or [])
    if not methods:
        methods = ["de"] + (["random"] if config.get("baseline") == "random" else [])
    for r in records:
        if r["method"] not in methods:
            methods.append(r["method"])
    return methods


def best_fitness(record: dict) -> float:
    """Lowest fitness an attack reached (the last entry of its best-so-far curve)."""
    curve = record.get("fitness") or []
    return float(curve[-1]) if curve else float("nan")


def expected_attacks(info: dict) -> int:
    """Attacks per method when the run is finished."""
    n = len(info["indices"])
    mode = info["config"].get("mode")
    return n * (int(info["num_classes"]) - 1 if mode == "all-targets" else 1)


def compare(first: list[dict], second: list[dict], targeted: bool) -> dict[str, Any] | None:
    """Paired comparison of two methods' records on the attacks both finished.

    Returns :func:`onepixel_jax.metrics.paired_comparison` on the attacks (``a`` = first),
    with ``"images"``: the same on images fooled (derived non-targeted) for targeted runs;
    ``None`` when the methods share no attack.
    """
    a = {(r["index"], r["target"]): r for r in first}
    b = {(r["index"], r["target"]): r for r in second}
    common = sorted(set(a) & set(b), key=lambda t: (t[0], -1 if t[1] is None else t[1]))
    if not common:
        return None
    out = metrics.paired_comparison(
        np.array([a[c]["success"] for c in common]),
        np.array([b[c]["success"] for c in common]),
        np.array([best_fitness(a[c]) for c in common]),
        np.array([best_fitness(b[c]) for c in common]),
    )
    if targeted:
        idx = np.array([c[0] for c in common])
        _, a_img = metrics.derived_untargeted_success(idx, [a[c]["success"] for c in common])
        _, b_img = metrics.derived_untargeted_success(idx, [b[c]["success"] for c in common])
        out["images"] = metrics.paired_comparison(a_img, b_img)
    return out


def summarize(info: dict, records: list[dict]) -> dict[str, Any]:
    """The run's summary: configuration, measurements per method, and the first method
    compared with each other one (``comparisons``: list of dicts with ``a`` and ``b``)."""
    config = info["config"]
    targeted = config.get("mode", "untargeted") != "untargeted"
    k = int(info["num_classes"])
    methods = run_methods(info, records)
    by_method: dict[str, list[dict]] = {m: [] for m in methods}
    for r in records:
        by_method[r["method"]].append(r)
    summary: dict[str, Any] = {
        "config": config,
        "model_sha256": info.get("model_sha256"),
        "expected_attacks": expected_attacks(info),
        "methods": {m: measure(by_method[m], k, targeted) for m in methods},
        "comparisons": [],
    }
    first = methods[0]
    for other in methods[1:]:
        cmp = compare(by_method[first], by_method[other], targeted)
        if cmp is not None:
            summary["comparisons"].append({"a": first, "b": other, **cmp})
    return summary


def pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f}%"


def summary_line(summary: dict) -> str:
    """One line for the terminal: the first method's success rate with its 95 % interval."""
    if not summary["methods"]:
        return "no finished attacks yet"
    first, m = next(iter(summary["methods"].items()))
    if not m.get("attacks"):
        return "no finished attacks yet"
    s = m["success"]
    line = (
        f"{first} success {pct(s['rate'])} [{pct(s['low'])}, {pct(s['high'])}] "
        f"over {s['trials']} attacks"
    )
    if "derived_untargeted" in m:
        line += f"; images fooled {pct(m['derived_untargeted']['rate'])}"
    for c in summary.get("comparisons", []):
        line += f"; {c['b']} {pct(c['b_rate'])}"
    return line
