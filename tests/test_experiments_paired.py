"""onepixel_jax.experiments.paired: two methods on the same images, paired image by image."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onepixel_jax.errors import UsageError
from onepixel_jax.experiments import paired

ROOT = Path(__file__).resolve().parents[1]
TEST = ROOT / "benchmarks/results/search/test"


def rec(index, success, queries, fitness=(), popsize=None):
    r = {"index": index, "success": success, "queries": queries, "fitness": list(fitness)}
    return r if popsize is None else dict(r, popsize=popsize)


def test_counts_ratios_and_medians_against_a_hand_count():
    ref = {0: rec(0, True, 400), 1: rec(1, False, 1000), 2: rec(2, True, 800)}
    ref[7] = rec(7, False, 1000)
    cand = {0: rec(0, True, 64), 1: rec(1, True, 128), 2: rec(2, False, 500), 9: rec(9, True, 1)}
    out = paired.compare(ref, cand, "toy")
    assert out["images"] == 3  # images 7 and 9 are on one side only
    assert out["paper"]["fooled"] == 2 and out["fast"]["fooled"] == 2
    assert out["fast_only"] == [1] and out["paper_only"] == [2]
    assert out["total_queries"] == {"fast": 692, "paper": 2200, "ratio": 692 / 2200}
    assert out["total_queries_on_paper_successes"]["fast"] == 564  # images 0 and 2
    assert out["median_queries_of_successes"] == {"fast": 96.0, "paper": 600.0}
    assert out["paired"]["a_only"] == 1 and out["paired"]["b_only"] == 1
    assert out["paired"]["p_value"] == pytest.approx(1.0)
    lo, hi = out["fast"]["wilson95"]
    assert lo < 2 / 3 < hi
    with pytest.raises(UsageError, match="no image in common"):
        paired.compare({5: rec(5, True, 1)}, {6: rec(6, True, 1)})


def test_a_stall_replay_ends_a_plateau_and_keeps_earlier_successes():
    # popsize 10: generation g has cost 10 * (g + 1) queries; fitness per generation
    flat = rec(0, False, 100, fitness=[0.9, 0.8] + [0.8] * 8, popsize=10)
    early = rec(1, True, 20, fitness=[0.9, 0.1], popsize=10)
    out = paired.replayed({0: flat, 1: early}, stall=3)
    assert out[1]["success"] and out[1]["queries"] == 20
    assert not out[0]["success"] and out[0]["queries"] < 100


def test_committed_cells_give_the_committed_comparison(tmp_path):
    out = tmp_path / "cmp.json"
    cmd = [
        sys.executable, "-m", "onepixel_jax.cli", "experiment", "paired",
        "--reference", str(TEST / "nin-d5-paper"), "--candidate", str(TEST / "nin-d5-fast"),
        "--label", "NiN, d = 5, test", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(out.read_text())
    want = json.loads((TEST / "nin-d5-fast-vs-paper.json").read_text())
    for d in (got, want):
        d.pop("sources")
    assert got == want
    # the committed comparison's counts follow from its own rows
    rows = got["rows"]
    assert got["fast"]["fooled"] == sum(r["fast_success"] for r in rows)
    assert got["total_queries"]["paper"] == sum(r["paper_queries"] for r in rows)
    assert np.all([r["image"] for r in rows] == np.sort([r["image"] for r in rows]))


def test_bad_folders_are_one_line_naming_the_flag(tmp_path):
    with pytest.raises(UsageError, match="--reference .* is not a run folder"):
        paired.load_side(tmp_path, name="--reference")
    several = ROOT / "benchmarks/results/search/tuning/allconv-cifar10-d1-fast"
    with pytest.raises(UsageError, match="several methods .*fast-stall128.*name one"):
        paired.load_side(several)
    with pytest.raises(UsageError, match="no records of method 'nope'"):
        paired.load_side(several, "nope")
