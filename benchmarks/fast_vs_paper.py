"""Pair ``fast`` with the paper's DE image by image and write the comparison as JSON.

Each side is a run folder (``results.jsonl`` or ``results.jsonl.gz``, e.g. a reproduction cell)
or a JSON-lines file of search records with ``--*-method`` naming the method's rows. Records
pair by their ``index`` (run folders) or ``image`` (search records); only images both sides
attacked are compared. Written: success of each, the paired counts with McNemar's exact test,
total queries (failures count their whole budget) and their ratio, median queries of the
successes, the images only one side fooled, and one row per image. ``--stall K`` first replays
fast's records as the stall rule of ``K`` generations would have ended them
(:func:`onepixel_jax.metrics.replay_stall`, exact on records run with a longer rule or none).

    python benchmarks/fast_vs_paper.py \
        --paper benchmarks/results/reproduction/allconv-d1-paper \
        --fast benchmarks/results/search/test/allconv-d1-fast \
        --label "AllConv, d = 1" --out benchmarks/results/search/test/allconv-d1-fast-vs-paper.json
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np

from onepixel_jax import metrics


def read_records(source: str, method: str | None = None) -> dict[int, dict]:
    """``{image: record}`` of a run folder or a JSON-lines file (rows of ``method`` only)."""
    path = Path(source)
    if path.is_dir():
        gz = path / "results.jsonl.gz"
        opener = gzip.open if gz.exists() else open
        path = gz if gz.exists() else path / "results.jsonl"
    else:
        opener = gzip.open if path.suffix == ".gz" else open
    out = {}
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if method is not None and r.get("method") != method:
                continue
            key = int(r["index"] if "index" in r else r["image"])
            out[key] = r
    return out


def replayed(records: dict[int, dict], stall: int) -> dict[int, dict]:
    """``records`` as the stall rule of ``stall`` generations would have ended them."""
    images = sorted(records)
    rows = [records[i] for i in images]
    popsize = [int(r.get("popsize") or _popsize(r)) for r in rows]
    success, queries = metrics.replay_stall(
        np.array([bool(r["success"]) for r in rows]),
        np.array([int(r["queries"]) for r in rows]),
        np.array(popsize),
        [r["fitness"] for r in rows],
        stall,
    )
    return {
        i: dict(r, success=bool(s), queries=int(q))
        for i, r, s, q in zip(images, rows, success, queries, strict=True)
    }


def _popsize(record: dict) -> int:
    raise SystemExit(f"record of image {record.get('index')} names no popsize: give --popsize")


def compare(paper: dict[int, dict], fast: dict[int, dict], label: str) -> dict:
    images = sorted(set(paper) & set(fast))
    if not images:
        raise SystemExit("the two sides have no image in common")
    ps = np.array([bool(paper[i]["success"]) for i in images])
    fs = np.array([bool(fast[i]["success"]) for i in images])
    pq = np.array([int(paper[i]["queries"]) for i in images])
    fq = np.array([int(fast[i]["queries"]) for i in images])
    paired = metrics.paired_comparison(fs, ps)
    n = len(images)

    def rate(s):
        lo, hi = metrics.wilson_interval(int(s.sum()), n)
        return {"fooled": int(s.sum()), "rate": float(s.mean()), "wilson95": [lo, hi]}

    def median(q, s):
        return float(np.median(q[s])) if s.any() else None

    only = {
        "fast_only": [int(i) for i, a, b in zip(images, fs, ps, strict=True) if a and not b],
        "paper_only": [int(i) for i, a, b in zip(images, fs, ps, strict=True) if b and not a],
    }
    return {
        "label": label,
        "images": n,
        "paper": rate(ps),
        "fast": rate(fs),
        "paired": {k: (float(v) if isinstance(v, float) else v) for k, v in paired.items()},
        **only,
        "total_queries": {
            "fast": int(fq.sum()),
            "paper": int(pq.sum()),
            "ratio": float(fq.sum() / pq.sum()),
        },
        "total_queries_on_paper_successes": {
            "fast": int(fq[ps].sum()),
            "paper": int(pq[ps].sum()),
            "ratio": float(fq[ps].sum() / pq[ps].sum()) if ps.any() else None,
        },
        "median_queries_of_successes": {"fast": median(fq, fs), "paper": median(pq, ps)},
        "rows": [
            {
                "image": int(i),
                "paper_success": bool(a),
                "paper_queries": int(b),
                "fast_success": bool(c),
                "fast_queries": int(d),
            }
            for i, a, b, c, d in zip(images, ps, pq, fs, fq, strict=True)
        ],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paper", required=True, help="the paper's DE: run folder or records")
    p.add_argument("--fast", required=True, help="fast: run folder or records")
    p.add_argument("--paper-method", default=None, help="method of the paper's rows (records)")
    p.add_argument("--fast-method", default=None, help="method of fast's rows (records)")
    p.add_argument("--stall", type=int, default=None, help="replay fast with this stall rule")
    p.add_argument("--popsize", type=int, default=None, help="fast's popsize (for --stall)")
    p.add_argument("--label", default="")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    fast = read_records(a.fast, a.fast_method)
    if a.stall is not None:
        if a.popsize is not None:
            fast = {i: dict(r, popsize=a.popsize) for i, r in fast.items()}
        fast = replayed(fast, a.stall)
    result = compare(read_records(a.paper, a.paper_method), fast, a.label)
    result["sources"] = {"paper": a.paper, "fast": a.fast, "fast_method": a.fast_method}
    result["stall_replayed"] = a.stall
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    t, m = result["total_queries"], result["median_queries_of_successes"]
    print(
        f"{result['label']}: {result['images']} images; paper {result['paper']['fooled']}, "
        f"fast {result['fast']['fooled']} (only fast {len(result['fast_only'])}, only paper "
        f"{len(result['paper_only'])}: {result['paper_only']}, McNemar p = "
        f"{result['paired']['p_value']:.3g}); total queries {t['fast']:,} / {t['paper']:,} = "
        f"{t['ratio']:.3f}; median of successes {m['fast']} / {m['paper']}"
    )


if __name__ == "__main__":
    main()
