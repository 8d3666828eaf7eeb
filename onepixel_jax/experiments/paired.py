"""Two methods on the same images, paired image by image: the comparison of ``fast`` with the
paper's DE in ``docs/search-results.md`` (``onepixel experiment paired``).

Each side is a run folder (a working one with ``results.jsonl``, or a committed cell with
``results.jsonl.gz``), read and checked as every run folder is
(:func:`onepixel_jax.experiments.reproduction.load_cell`); ``method`` picks one method's rows
of a folder that holds several. Records pair by their dataset ``index``; only images both sides
attacked are compared. ``stall`` first replays the candidate's records as a stall rule of that
many generations would have ended them (:func:`onepixel_jax.metrics.replay_stall`, exact on
records run with a longer rule or none).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onepixel_jax import metrics
from onepixel_jax.errors import UsageError


def load_side(folder: str | Path, method: str | None = None, name: str = "") -> dict[int, dict]:
    """``{dataset index: record}`` of a run folder (one target per image: untargeted);
    ``name`` (a flag, say) starts the messages of bad input."""
    from onepixel_jax.experiments import reproduction

    folder, lead = Path(folder), f"{name} " if name else ""
    if not folder.is_dir() or not (folder / "run.json").is_file():
        raise UsageError(f"{lead}{folder} is not a run folder (no run.json)")
    _, records = reproduction.load_cell(folder)
    methods = sorted({r["method"] for r in records})
    if method is None and len(methods) > 1:
        raise UsageError(f"{lead}{folder} holds several methods ({', '.join(methods)}): name one")
    rows = [r for r in records if method is None or r["method"] == method]
    if not rows:
        raise UsageError(f"{lead}{folder} holds no records of method {method!r}")
    return {int(r["index"]): r for r in rows}


def replayed(records: dict[int, dict], stall: int, popsize: int | None = None) -> dict[int, dict]:
    """``records`` as the stall rule of ``stall`` generations would have ended them
    (``popsize``: the candidates per generation, when the records do not say)."""
    images = sorted(records)
    rows = [records[i] for i in images]
    sizes = []
    for r in rows:
        size = popsize or r.get("popsize")
        if not size:
            raise UsageError(f"the record of image {r['index']} names no popsize: give it")
        sizes.append(int(size))
    success, queries = metrics.replay_stall(
        np.array([bool(r["success"]) for r in rows]),
        np.array([int(r["queries"]) for r in rows]),
        np.array(sizes),
        [r["fitness"] for r in rows],
        stall,
    )
    return {
        i: dict(r, success=bool(s), queries=int(q))
        for i, r, s, q in zip(images, rows, success, queries, strict=True)
    }


def compare(
    reference: dict[int, dict],
    candidate: dict[int, dict],
    label: str = "",
    names: tuple[str, str] = ("paper", "fast"),
) -> dict:
    """The paired comparison of ``candidate`` with ``reference`` (``names``: how the two are
    called in the result): success with Wilson intervals, McNemar's exact test, the images
    only one side fooled, total queries (a failure counts its whole budget) and their ratio,
    on all images and on the reference's successes, medians of the successes, and a row per
    image."""
    ref, cand = names
    images = sorted(set(reference) & set(candidate))
    if not images:
        raise UsageError("the two sides have no image in common")
    rs = np.array([bool(reference[i]["success"]) for i in images])
    cs = np.array([bool(candidate[i]["success"]) for i in images])
    rq = np.array([int(reference[i]["queries"]) for i in images])
    cq = np.array([int(candidate[i]["queries"]) for i in images])
    paired = metrics.paired_comparison(cs, rs)
    n = len(images)

    def rate(s):
        lo, hi = metrics.wilson_interval(int(s.sum()), n)
        return {"fooled": int(s.sum()), "rate": float(s.mean()), "wilson95": [lo, hi]}

    def median(q, s):
        return float(np.median(q[s])) if s.any() else None

    def ratio(a, b):
        return float(a / b) if b else None

    return {
        "label": label,
        "images": n,
        ref: rate(rs),
        cand: rate(cs),
        "paired": {k: (float(v) if isinstance(v, float) else v) for k, v in paired.items()},
        f"{cand}_only": [int(i) for i, a, b in zip(images, cs, rs, strict=True) if a and not b],
        f"{ref}_only": [int(i) for i, a, b in zip(images, cs, rs, strict=True) if b and not a],
        "total_queries": {
            cand: int(cq.sum()), ref: int(rq.sum()), "ratio": ratio(cq.sum(), rq.sum())
        },
        "total_queries_on_paper_successes": {
            cand: int(cq[rs].sum()),
            ref: int(rq[rs].sum()),
            "ratio": ratio(cq[rs].sum(), rq[rs].sum()),
        },
        "median_queries_of_successes": {cand: median(cq, cs), ref: median(rq, rs)},
        "rows": [
            {
                "image": int(i),
                f"{ref}_success": bool(a),
                f"{ref}_queries": int(b),
                f"{cand}_success": bool(c),
                f"{cand}_queries": int(d),
            }
            for i, a, b, c, d in zip(images, rs, rq, cs, cq, strict=True)
        ],
    }  # fmt: skip


def summary_line(result: dict, names: tuple[str, str] = ("paper", "fast")) -> str:
    ref, cand = names
    t, m = result["total_queries"], result["median_queries_of_successes"]
    ratio = "-" if t["ratio"] is None else f"{t['ratio']:.3f}"
    return (
        f"{result['label']}: {result['images']} images; {ref} {result[ref]['fooled']}, "
        f"{cand} {result[cand]['fooled']} (only {cand} {len(result[f'{cand}_only'])}, only "
        f"{ref} {len(result[f'{ref}_only'])}: {result[f'{ref}_only']}, McNemar p = "
        f"{result['paired']['p_value']:.3g}); total queries {t[cand]:,} / {t[ref]:,} = "
        f"{ratio}; median of successes {m[cand]} / {m[ref]}"
    )


__all__ = ["compare", "load_side", "replayed", "summary_line"]
