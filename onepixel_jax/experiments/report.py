"""A run folder's report (:func:`write_report`) and a table comparing run folders.

:func:`write_report` reads ``run.json`` and ``results.jsonl``, measures every method of the run
(:mod:`~onepixel_jax.experiments.summary`) and writes, into the same folder, ``summary.json``,
``report.md`` and the figures of :mod:`~onepixel_jax.experiments.plots` for the run's first
(main) method. :func:`comparison_table` puts several runs side by side, one row per run and
method.

No output ever replaces a run's records: :func:`check_report_outputs` refuses an output name
that is a symbolic link, not a regular file, or the same file as ``run.json``, a results file
or ``images.npz`` (a hard link), and figures are drawn into fresh files.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from onepixel_jax.experiments import plots, run_folder
from onepixel_jax.experiments.summary import pct, summarize
from onepixel_jax.files import UnsafeFileError, check_writable_file

REPORT_HINT = "re-run the attack into a new --out"
FIGURES = ("class_pairs.png", "target_counts.png", "per_class.png", "fitness.png", "examples.png")
OUTPUTS = (run_folder.SUMMARY, run_folder.REPORT, *FIGURES)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_protected(path: str | os.PathLike, run_dirs: list, flag: str) -> None:
    """Raise UnsafeFileError when ``path`` is (or links to) a file holding a run's records:
    ``run.json``, a results file, ``images.npz`` or a lock file of any of ``run_dirs``."""
    path = Path(path)
    for run_dir in run_dirs:
        for protected in run_folder.protected_files(run_dir):
            if os.path.realpath(path) == os.path.realpath(protected) or _same_file(path, protected):
                raise UnsafeFileError(
                    f"{flag} {path} is the {protected.name} of run folder {run_dir}, which holds "
                    "its records; write it elsewhere"
                )


def check_report_outputs(run_dir: str | os.PathLike) -> None:
    """Raise UnsafeFileError unless every file the report writes into ``run_dir`` is missing
    or a regular file of its own (see the module docstring)."""
    run_dir = Path(run_dir)
    for name in OUTPUTS:
        path = run_dir / name
        check_writable_file(path)
        if path.exists():
            check_protected(path, [run_dir], "report output")


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if x is None or not math.isfinite(x) else fmt.format(x)


def _ci(r: dict) -> str:
    return f"{pct(r['rate'])} [{pct(r['low'])}, {pct(r['high'])}] ({r['successes']}/{r['trials']})"


def jsonable(obj: Any) -> Any:
    """``obj`` with non-finite floats as ``None`` (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def _figures(run_dir: Path, info: dict, summary: dict, records: list[dict]) -> list:
    """Draw the figures of the run's main method; ``[(caption, file name)]``."""
    if not summary["methods"]:
        return []
    method, m = next(iter(summary["methods"].items()))
    if not m.get("attacks"):
        return []
    targeted = info["config"].get("mode", "untargeted") != "untargeted"
    names = plots.class_names(info)
    recs = [r for r in records if r["method"] == method]
    figures = []
    what = "target" if targeted else "new class"
    plots.plot_class_pairs(
        np.array(m["class_pairs"]),
        names,
        run_dir / "class_pairs.png",
        f"{method}: successful attacks, original -> {what}",
    )
    figures.append(("Original-to-reached class pairs", "class_pairs.png"))
    if targeted:
        plots.plot_target_counts(
            np.array(m["target_histogram"]),
            run_dir / "target_counts.png",
            f"{method}: images per number of target classes reached",
        )
        figures.append(("Number of target classes per image", "target_counts.png"))
    plots.plot_per_class(
        m["as_original"],
        m["as_target"],
        names,
        run_dir / "per_class.png",
        f"{method}: successful attacks per class",
    )
    figures.append(("Successes per class as original and as target", "per_class.png"))
    plots.plot_fitness(
        np.array([r["fitness"] for r in recs], np.float64),
        np.array(m["mean_fitness"]),
        run_dir / "fitness.png",
        "1 - p(target)" if targeted else "p(true class)",
        f"{method}: best fitness per generation",
    )
    figures.append(("Fitness curves", "fitness.png"))
    images_by_index = run_folder.read_images(run_dir, REPORT_HINT)
    if images_by_index and plots.plot_examples(
        recs,
        images_by_index,
        names,
        run_dir / "examples.png",
        f"{method}: clean (left) and adversarial (right); changed pixels boxed",
    ):
        figures.append(("Examples", "examples.png"))
    return figures


def write_report(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Measure a run folder and write summary.json, report.md and the figures into it.

    Returns the summary (:func:`~onepixel_jax.experiments.summary.summarize`). Raises
    UsageError when ``run_dir`` is not a run folder, DamagedFileError when one of its
    files cannot be read and UnsafeFileError when an output would replace something other
    than a regular file of its own (:func:`check_report_outputs`).
    """
    run_dir = Path(run_dir)
    info, records = run_folder.load_run(run_dir, REPORT_HINT)
    check_report_outputs(run_dir)
    summary = summarize(info, records)
    for name in FIGURES:  # drawn into fresh files: a hard link elsewhere keeps its content
        if (run_dir / name).exists():
            (run_dir / name).unlink()
    figures = _figures(run_dir, info, summary, records)
    run_folder.write_summary(run_dir, jsonable(summary))
    run_folder.write_report_text(run_dir, _markdown(info, summary, figures))
    return summary


def _comparison_lines(c: dict, title: str) -> list[str]:
    a, b = c["a"], c["b"]
    lines = [
        "",
        f"## {title}",
        "",
        f"| | {a} | {b} | difference | both | {a} only | {b} only | neither | McNemar exact p |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| success | {pct(c['a_rate'])} | {pct(c['b_rate'])} | "
        f"{100 * c['difference']:+.2f} points | {c['both']} | {c['a_only']} | "
        f"{c['b_only']} | {c['neither']} | {c['p_value']:.3g} |",
    ]
    if "neither_a_lower" in c and c["neither"]:
        lines += [
            "",
            f"Where neither method succeeded ({c['neither']} attacks), {a} reached the "
            f"lower best fitness on {c['neither_a_lower']}, {b} on "
            f"{c['neither_b_lower']} (sign test p = {c['neither_p_value']:.3g}).",
        ]
    return lines


def _markdown(info: dict, summary: dict, figures: list[tuple[str, str]]) -> str:
    config = info["config"]
    targeted = config.get("mode", "untargeted") != "untargeted"
    lines = [
        f"# Attack report: {config.get('model')} on {config.get('dataset')} "
        f"({config.get('split')})",
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
    expected = summary["expected_attacks"] * max(len(summary["methods"]), 1)
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
            f"| {method} | {m['attacks']} | {_ci(m['success'])} | {pct(m['confidence'])} | "
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
    for c in summary.get("comparisons", []):
        lines += _comparison_lines(c, f"{c['a']} against {c['b']} (same attacks, same budget)")
        if "images" in c:
            lines += _comparison_lines(
                dict(c["images"], a=c["a"], b=c["b"]), f"{c['a']} against {c['b']}, images fooled"
            )
    for method, m in summary["methods"].items():
        if m.get("seconds"):
            rate = m["queries"] / m["seconds"]
            lines += [
                "",
                f"{method} wall time {m['seconds']:.0f} s for {m['queries']:,} model evaluations "
                f"({rate:,.0f} evaluations/s).",
            ]
        if m.get("compile_seconds"):
            times = ", ".join(f"{t:.1f} s" for t in m["compile_seconds"])
            lines += [
                "",
                f"{method} compilation: the first engine call of each session reached its first "
                f"generation after {times} (compilation included; the persistent compilation "
                "cache shortens it in later sessions).",
            ]
    if figures:
        method = next(iter(summary["methods"]))
        lines += ["", f"## Figures ({method})", ""]
        for caption, name in figures:
            lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    return "\n".join(lines).rstrip() + "\n"


TABLE_COLUMNS = (
    "run",
    "model",
    "mode",
    "pixels",
    "method",
    "images",
    "success [95% CI]",
    "confidence",
    "AvgEvaluation",
    "AvgDistortion",
    "difference to the first method",
    "images fooled (derived)",
    "targets/image",
    "wall time",
)


def comparison_table(run_dirs: list[str | os.PathLike]) -> str:
    """A Markdown table with one row per run folder and method, side by side.

    Columns: :data:`TABLE_COLUMNS`. The difference column compares each method after the
    run's first with the first on the attacks both finished (percentage points and McNemar's
    exact p); images fooled and targets per image are filled for targeted runs. The numbers
    are measured from each folder's records (the same as its report.md).
    """
    header = "| " + " | ".join(TABLE_COLUMNS) + " |"
    lines = [header, "|" + "---|" * len(TABLE_COLUMNS)]
    for run_dir in run_dirs:
        info, records = run_folder.load_run(run_dir, REPORT_HINT)
        summary = summarize(info, records)
        config = info["config"]
        name = Path(run_dir).name
        vs = {c["b"]: c for c in summary["comparisons"]}
        if not any(m.get("attacks") for m in summary["methods"].values()):
            lines.append(f"| {name} | {config.get('model')} | no finished attacks |")
            continue
        for method, m in summary["methods"].items():
            if not m.get("attacks"):
                continue
            c = vs.get(method)
            targeted = "derived_untargeted" in m
            cells = [
                name,
                str(config.get("model")),
                str(config.get("mode")),
                str(config.get("pixels", "")),
                method,
                str(m["images"]),
                _ci(m["success"]),
                pct(m["confidence"]),
                _num(m["avg_evaluations"], "{:,.0f}"),
                _num(m["avg_distortion"]),
                f"{100 * (c['b_rate'] - c['a_rate']):+.2f} points (p = {c['p_value']:.2g})"
                if c
                else "",
                _ci(m["derived_untargeted"]) if targeted else "",
                _num(m["targets_per_image"], "{:.2f}") if targeted else "",
                f"{m['seconds']:,.0f} s",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
