"""``onepixel report`` on hand-written run folders (no engine involved)."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

from onepixel_jax.cli import report as cli_report
from onepixel_jax.errors import UsageError
from onepixel_jax.experiments import plots, report, run_folder, summary

K = 3
B = [100, 100, 100]  # clean channel values under every attacked pixel
NAMES = ["cat", "dog", "ship"]


def _record(method, index, label, target, success, predicted, queries, probs, pixel, before):
    return {
        "method": method,
        "position": index,
        "index": index,
        "label": label,
        "target": target,
        "success": success,
        "predicted": predicted,
        "queries": queries,
        "pixels": [pixel],
        "original_values": [before],
        "distortion": float(np.abs(np.subtract(pixel[2:], before)).mean()),
        "probs": probs,
        "original_probs": [1.0 if k == label else 0.0 for k in range(K)],
        "fitness": [0.9, 0.6, 0.3],
        "seconds": 0.5,
    }


def _args(*run_dirs, table=None):
    return argparse.Namespace(run_dirs=[str(d) for d in run_dirs], table=table)


def make_run(tmp_path, mode, records, indices, labels):
    out = tmp_path / mode
    out.mkdir()
    info = {
        "config": {"model": "m", "dataset": "d", "split": "test", "mode": mode, "baseline": "none"},
        "model_sha256": "f" * 64,
        "num_classes": K,
        "class_names": NAMES,
        "indices": indices,
        "labels": labels,
        "command": "onepixel attack ...",
    }
    (out / "run.json").write_text(json.dumps(info))
    run_folder.append_records(out, records)
    images = np.full((len(indices), 6, 6, 3), 100, np.uint8)
    np.savez(out / "images.npz", indices=np.array(indices), images=images)
    return out


def test_all_targets_summary_matches_hand_computation(tmp_path):
    # Image 0 (label 0): targets 1 (success, p=0.8) and 2 (fail).
    # Image 1 (label 2): targets 0 (success, p=0.6) and 1 (success, p=0.5).
    recs = [
        _record("de", 0, 0, 1, True, 1, 400, [0.1, 0.8, 0.1], [1, 2, 255, 0, 0], B),
        _record("de", 0, 0, 2, False, 0, 1200, [0.7, 0.1, 0.2], [0, 0, 0, 0, 0], B),
        _record("de", 1, 2, 0, True, 0, 800, [0.6, 0.1, 0.3], [3, 3, 100, 100, 40], B),
        _record("de", 1, 2, 1, True, 1, 1600, [0.2, 0.5, 0.3], [5, 5, 70, 100, 100], B),
        # The random baseline on the same attacks: only one success.
        _record("random", 0, 0, 1, True, 1, 1200, [0.2, 0.7, 0.1], [1, 1, 0, 0, 0], B),
        _record("random", 0, 0, 2, False, 0, 1200, [0.9, 0.0, 0.1], [1, 1, 0, 0, 0], B),
        _record("random", 1, 2, 0, False, 2, 1200, [0.2, 0.1, 0.7], [1, 1, 0, 0, 0], B),
        _record("random", 1, 2, 1, False, 2, 1200, [0.1, 0.2, 0.7], [1, 1, 0, 0, 0], B),
    ]  # fmt: skip
    out = make_run(tmp_path, "all-targets", recs, [0, 1], [0, 2])
    summary = report.write_report(out)
    de = summary["methods"]["de"]
    assert de["success"]["successes"] == 3 and de["success"]["trials"] == 4
    assert de["confidence"] == pytest.approx((0.8 + 0.6 + 0.5) / 3)
    assert de["avg_evaluations"] == pytest.approx((400 + 800 + 1600) / 3)
    # Distortions of successes: 155/3*... computed per channel: (155+100+100)/3, (0+0+60)/3, 10.
    assert de["avg_distortion"] == pytest.approx(((355 / 3) + 20 + 10) / 3)
    assert de["derived_untargeted"]["rate"] == 1.0
    assert de["targets_per_image"] == pytest.approx(1.5)
    assert de["target_histogram"] == [0, 1, 1]
    assert de["class_pairs"] == [[0, 1, 0], [0, 0, 0], [1, 1, 0]]
    assert de["as_original"] == [1, 0, 2] and de["as_target"] == [1, 2, 0]
    np.testing.assert_allclose(de["mean_fitness"], [0.9, 0.6, 0.3])
    (cmp,) = summary["comparisons"]
    assert (cmp["a"], cmp["b"]) == ("de", "random")
    assert cmp["difference"] == pytest.approx(0.5)
    assert (cmp["both"], cmp["a_only"], cmp["b_only"], cmp["neither"]) == (1, 2, 0, 1)
    assert cmp["p_value"] == pytest.approx(0.5)  # 2 discordant pairs, both for DE
    # the one attack neither won has the same best fitness (0.3) for both methods
    assert (cmp["neither_a_lower"], cmp["neither_b_lower"]) == (0, 0)
    assert cmp["images"]["b_rate"] == pytest.approx(0.5)

    text = (out / "report.md").read_text()
    assert "75.00% [" in text and "(3/4)" in text and "+50.00 points" in text
    assert "| 0.5 |" in text  # the McNemar p-value cell
    for fig in ("class_pairs", "target_counts", "per_class", "fitness", "examples"):
        assert (out / f"{fig}.png").stat().st_size > 1000
        assert f"({fig}.png)" in text
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["methods"]["de"]["target_histogram"] == [0, 1, 1]


def test_untargeted_report_and_partial_runs(tmp_path, capsys):
    recs = [
        _record("de", 4, 1, None, True, 2, 400, [0.1, 0.3, 0.6], [0, 0, 0, 0, 0], B),
        _record("de", 7, 0, None, False, 0, 1200, [0.9, 0.05, 0.05], [0, 0, 0, 0, 0], [0, 0, 0]),
    ]  # fmt: skip
    out = make_run(tmp_path, "untargeted", recs, [4, 7, 9], [1, 0, 0])
    summ = summary.summarize(*run_folder.load_run(out))
    de = summ["methods"]["de"]
    assert de["confidence"] == pytest.approx(0.6)  # the new argmax's probability
    assert de["class_pairs"][1][2] == 1 and sum(map(sum, de["class_pairs"])) == 1
    assert "target_histogram" not in de and summ["expected_attacks"] == 3
    # The CLI entry point writes the report and says where.
    assert cli_report.run(_args(out)) == 0
    assert "de success 50.00%" in capsys.readouterr().out
    text = (out / "report.md").read_text()
    assert "Finished attacks: 2 of 3." in text and "target_counts.png" not in text
    # An empty run still reports (no figures, n/a measurements).
    (tmp_path / "e").mkdir()
    empty = make_run(tmp_path / "e", "untargeted", [], [0], [0])
    assert summary.summary_line(report.write_report(empty)) == "no finished attacks yet"
    with pytest.raises(UsageError, match="not found"):
        cli_report.run(_args(tmp_path / "nope"))


def test_rebuild_adversarial_and_nan_free_json(tmp_path):
    img = np.zeros((4, 4, 3), np.uint8)
    adv = plots.rebuild_adversarial(img, [[1, 2, 10, 20, 30], [3, 0, 255, 0, 7]])
    assert adv[1, 2].tolist() == [10, 20, 30] and adv[3, 0].tolist() == [255, 0, 7]
    assert int((adv != 0).any(-1).sum()) == 2 and img.sum() == 0
    assert report.jsonable({"a": math.nan, "b": [1.0, math.inf]}) == {"a": None, "b": [1.0, None]}


def test_comparison_table_one_row_per_run(tmp_path, capsys):
    targeted = [
        _record("de", 0, 0, 1, True, 1, 400, [0.1, 0.8, 0.1], [1, 2, 255, 0, 0], B),
        _record("de", 0, 0, 2, False, 0, 1200, [0.7, 0.1, 0.2], [0, 0, 0, 0, 0], B),
        _record("random", 0, 0, 1, False, 0, 1200, [0.8, 0.1, 0.1], [1, 1, 0, 0, 0], B),
        _record("random", 0, 0, 2, False, 0, 1200, [0.9, 0.0, 0.1], [1, 1, 0, 0, 0], B),
    ]  # fmt: skip
    a = make_run(tmp_path, "all-targets", targeted, [0], [0])
    untargeted = [
        _record("de", 4, 1, None, True, 2, 400, [0.1, 0.3, 0.6], [0, 0, 0, 0, 0], B),
        _record("de", 7, 0, None, False, 0, 1200, [0.9, 0.05, 0.05], [0, 0, 0, 0, 0], B),
    ]  # fmt: skip
    u = make_run(tmp_path, "untargeted", untargeted, [4, 7], [1, 0])
    rows = report.comparison_table([a, u]).splitlines()
    assert len(rows) == 5 and rows[0].count("|") == rows[2].count("|") == 15
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]
    de_a, random_a, de_u = cells
    assert de_a[0] == random_a[0] == "all-targets" and de_a[2] == "all-targets"
    assert (de_a[4], random_a[4], de_u[4]) == ("de", "random", "de")
    assert de_a[6] == "50.00% [9.45%, 90.55%] (1/2)"  # Wilson interval for 1 of 2
    assert de_a[7] == "80.00%" and de_a[8] == "400"
    assert de_a[10] == "" and random_a[10] == "-50.00 points (p = 1)"
    assert random_a[6].startswith("0.00%")
    assert de_a[11].startswith("100.00%") and de_a[12] == "1.00"
    assert de_u[6].endswith("(1/2)") and de_u[7] == "60.00%"
    assert de_u[10] == de_u[11] == de_u[12] == ""  # no baseline, not targeted
    # Through the CLI: several folders print the table; --table writes it to a file.
    assert cli_report.run(_args(a, u)) == 0
    assert "| untargeted |" in capsys.readouterr().out
    assert cli_report.run(_args(a, u, table=tmp_path / "t.md")) == 0
    assert (tmp_path / "t.md").read_text().splitlines() == rows


def test_report_compares_any_two_methods(tmp_path):
    """A run of two methods other than de/random: the first is compared with the second."""
    recs = [
        _record("fast", 0, 0, None, True, 1, 400, [0.1, 0.8, 0.1], [1, 2, 255, 0, 0], B),
        _record("fast", 1, 1, None, True, 0, 400, [0.8, 0.1, 0.1], [1, 2, 255, 0, 0], B),
        _record("paper", 0, 0, None, False, 0, 1200, [0.8, 0.1, 0.1], [1, 1, 0, 0, 0], B),
        _record("paper", 1, 1, None, True, 2, 800, [0.1, 0.1, 0.8], [1, 1, 0, 0, 0], B),
    ]  # fmt: skip
    out = make_run(tmp_path, "untargeted", recs, [0, 1], [0, 1])
    info = json.loads((out / "run.json").read_text())
    info["config"]["methods"] = ["fast", "paper"]
    (out / "run.json").write_text(json.dumps(info))
    summ = report.write_report(out)
    assert list(summ["methods"]) == ["fast", "paper"]
    (cmp,) = summ["comparisons"]
    assert (cmp["a"], cmp["b"], cmp["a_only"], cmp["both"]) == ("fast", "paper", 1, 1)
    text = (out / "report.md").read_text()
    assert "## fast against paper" in text and "Finished attacks: 4 of 4." in text
    assert summary.summary_line(summ).startswith("fast success 100.00%")
    assert "; paper 50.00%" in summary.summary_line(summ)


def test_compilation_time_is_recorded_by_the_first_call_and_reported(tmp_path):
    """The sweep writes its first engine call's time to the first generation (compilation
    included) into that call's records, per method and session; report.md shows it."""
    import jax
    import jax.numpy as jnp

    from onepixel_jax.experiments import SweepConfig, run_sweep

    weights = jnp.asarray(np.random.default_rng(0).normal(size=(4 * 4 * 3, K)), jnp.float32)

    def linear(batch):
        return jax.nn.softmax(batch.reshape(batch.shape[0], -1) / 255.0 @ weights, axis=-1)

    images = np.random.default_rng(1).integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    labels = np.asarray(linear(jnp.asarray(images, jnp.float32))).argmax(1)
    cfg = SweepConfig(
        "linear", "toy", n_images=4, popsize=8, max_iters=2, chunk_size=2, methods=("de", "random")
    )
    out = tmp_path / "run"
    run_sweep(cfg, out, linear, images, labels, progress=lambda p: None)
    _, records = run_folder.load_run(out)
    timed = [r for r in records if "compile_seconds" in r]
    assert sorted((r["method"], r["position"]) for r in timed) == [
        ("de", 0), ("de", 1), ("random", 0), ("random", 1)
    ]  # fmt: skip
    assert all(r["compile_seconds"] > 0 for r in timed)
    text = report.write_report(out) and (out / "report.md").read_text()
    de_time = next(r["compile_seconds"] for r in timed if r["method"] == "de")
    expected = f"reached its first generation after {de_time:.1f} s (compilation included"
    assert "de compilation: the first engine call of each session" in text and expected in text
    # without progress the engine does not time its first generation: nothing is recorded
    quiet = tmp_path / "quiet"
    run_sweep(cfg, quiet, linear, images, labels)
    assert not any("compile_seconds" in r for r in run_folder.load_run(quiet)[1])
    assert "compilation:" not in (report.write_report(quiet) and (quiet / "report.md").read_text())
