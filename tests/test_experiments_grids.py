"""The measurement grids (:mod:`onepixel_jax.experiments.grids`) write ordinary run folders:
``onepixel report`` reads them, an interrupted cell resumes without writing anything twice, a
folder of another cell is refused, a defence grid's records name their cell and the detector
cell's success is "fooled and not detected"; the reports regenerate the committed tables."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest

import onepixel_jax as opj
from onepixel_jax.cli import main
from onepixel_jax.errors import UsageError
from onepixel_jax.experiments import grid_report, grids, methods, run_folder

REPO = Path(__file__).resolve().parents[1]

for _p in (
    methods.MethodPreset("test-grid-de", "de", popsize=16, max_iters=4),
    methods.MethodPreset("test-grid-random", "random", popsize=8, max_iters=6),
):
    if _p.name not in methods.PRESETS:
        methods.register(_p)


@pytest.fixture(scope="module")
def digits():
    predict_fn, card = opj.models.load("digits-cnn")
    x, y, names = opj.data.load("digits", "test")
    return (predict_fn, card), (x, y, names)


def _cell(**kw) -> grids.SearchCell:
    base = dict(name="digits-d1", model="digits-cnn", methods=("test-grid-de", "test-grid-random"),
                n_images=4, chunk_size=2)  # fmt: skip
    return grids.SearchCell(**{**base, **kw})


def _lines(path: Path) -> list[str]:
    return [x for x in (path / "results.jsonl").read_text().splitlines() if x]


class Interrupting:
    """The sweep's engine (``opj.attack``) raising KeyboardInterrupt on call ``die_at``."""

    def __init__(self, die_at: int | None = None) -> None:
        self.calls = 0
        self.die_at = die_at

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.die_at:
            raise KeyboardInterrupt
        return opj.attack(*args, **kwargs)


def test_a_search_cell_is_a_run_folder_that_onepixel_report_reads(tmp_path, digits, capsys):
    model, data = digits
    outcome = grids.run_search_cell(_cell(), tmp_path, model=model, data=data)
    out = tmp_path / "digits-d1"
    assert outcome.attacks_run == 8
    info, records = run_folder.load_run(out)
    assert info["cell"]["grid"] == "search" and info["cell"]["name"] == "digits-d1"
    assert info["command"].startswith("onepixel experiment search --root")
    assert {r["cell"] for r in records} == {"digits-d1"}
    budgets = {m: s["budget"] for m, s in info["method_settings"].items()}
    assert budgets == {"test-grid-de": 80, "test-grid-random": 56}
    for r in records:
        assert r["queries"] <= budgets[r["method"]]
    assert main(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "| test-grid-de | 4 |" in text and "| test-grid-random | 4 |" in text
    runs = grid_report.read_search([tmp_path])
    assert set(runs) == {("digits-cnn", 1, False)}
    rows = runs[("digits-cnn", 1, False)]
    assert set(rows) == {"test-grid-de", "test-grid-random"}
    assert sorted(rows["test-grid-de"]) == info["indices"]
    table = grid_report.search_report(runs)
    successes = sum(r["success"] for r in records if r["method"] == "test-grid-de")
    assert f"| test-grid-de | 4 | 80 | {successes}/4 = " in table


def test_an_interrupted_cell_resumes_and_writes_nothing_twice(tmp_path, digits):
    model, data = digits
    cell = _cell(n_images=6)
    with pytest.raises(KeyboardInterrupt):  # chunks of 2 images x 2 methods: dies on call 4
        grids.run_search_cell(cell, tmp_path / "a", model=model, data=data,
                              attack_fn=Interrupting(die_at=4))  # fmt: skip
    before = _lines(tmp_path / "a" / "digits-d1")
    assert len(before) == 6  # chunk 1 (both methods) and chunk 2's first method
    outcome = grids.run_search_cell(cell, tmp_path / "a", model=model, data=data)
    assert (outcome.attacks_run, outcome.attacks_reused) == (6, 6)
    after = _lines(tmp_path / "a" / "digits-d1")
    assert after[:6] == before  # nothing rewritten
    keys = [run_folder.record_key(json.loads(x)) for x in after]
    assert len(keys) == len(set(keys)) == 12
    # the same records as a run that was never interrupted (times aside)
    grids.run_search_cell(cell, tmp_path / "b", model=model, data=data)

    def strip(lines):
        return sorted(json.dumps({k: v for k, v in json.loads(x).items() if k != "seconds"},
                                 sort_keys=True) for x in lines)  # fmt: skip

    assert strip(after) == strip(_lines(tmp_path / "b" / "digits-d1"))
    again = grids.run_search_cell(cell, tmp_path / "a", model=model, data=data)
    assert again.reused_finished_run and _lines(tmp_path / "a" / "digits-d1") == after


def test_a_folder_of_another_cell_is_refused(tmp_path, digits):
    model, data = digits
    grids.run_search_cell(_cell(n_images=2), tmp_path, model=model, data=data)
    other = _cell(n_images=2, methods=("test-grid-de",))  # same folder name, other methods
    with pytest.raises(UsageError, match="holds cell 'digits-d1' with other settings"):
        grids.run_search_cell(other, tmp_path, model=model, data=data)
    assert len(_lines(tmp_path / "digits-d1")) == 4


def test_the_cli_runs_a_cell_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    root = str(tmp_path / "root")
    assert main(["experiment", "search", "--root", root, "--model", "digits-cnn",
                 "--methods", "de,nope", "--n-images", "2"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--methods" in err[0] and "unknown method 'nope'" in err[0]
    assert main(["experiment", "search", "--root", root, "--cell", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown search cell 'nope'" in err[0]
    assert main(["experiment", "search", "--root", root, "--model", "digits-cnn",
                 "--methods", "paper", "--n-images", "2", "--max-queries", "10"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].count("--max-queries") == 1 and "one generation" in err[0]
    assert main(["experiment", "report", "defences", root, "--paired", "paper"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--paired applies to report search" in err[0]
    assert not Path(root).exists()
    assert main(["experiment", "search", "--list"]) == 0
    assert "allconv-cifar10-d1: allconv-cifar10, d = 1, 100 images" in capsys.readouterr().out


def test_a_defence_grid_writes_cells_whose_records_say_what_was_measured(tmp_path, digits):
    (predict_fn, card), data = digits
    grid = grids.DefenceGrid(
        "digits-cnn", methods=("test-grid-de",), n_images=4, limit_images=2, clean_images=60,
        squeezers=("median2",), defended=("digits-cnn",), chunk_size=2,
    )  # fmt: skip
    grids.run_defence_grid(grid, tmp_path, models={"digits-cnn": (predict_fn, card)}, data=data)
    model_dir = tmp_path / "digits-cnn"
    clean = json.loads((model_dir / "clean.json").read_text())
    assert set(clean["accuracy"]) == {"none", "median2"} and clean["calibration_images"] == [
        200,
        360,
    ]
    names = sorted(p.name for p in model_dir.iterdir() if p.is_dir())
    assert names == ["test-grid-de-d1-detector", "test-grid-de-d1-digits-cnn",
                     "test-grid-de-d1-median2", "test-grid-de-d1-none"]  # fmt: skip
    cells = {}
    for name in names:
        info, recs = run_folder.load_run(model_dir / name)
        assert info["cell"]["grid"] == "defences" and info["cell"]["name"] == name
        assert {r["cell"] for r in recs} == {name}
        assert all(isinstance(r["flagged"], bool) for r in recs)
        cells[info["cell"]["kind"]] = (info, recs)
    none_info, none = cells["none"]
    assert len(none) == 4 and all(set(r["squeezed"]) == {"median2"} for r in none)
    det_info, det = cells["detector"]
    assert len(det) == 2 and det_info["indices"] == none_info["indices"][:2]  # the same images
    for r in det:
        assert r["success"] == (r["fooled"] and not r["flagged"])
        assert r["fooled"] == (r["predicted"] != r["label"])
    assert det_info["cell"]["detector"]["threshold"] == clean["detector"]["threshold"]
    # the detector's flag on the returned images, recomputed independently
    from onepixel_jax.defences import squeezing

    detector = squeezing.FeatureSqueezingDetector(
        predict_fn, ("bits1", "median2"), clean["detector"]["threshold"]
    )
    images = run_folder.read_images(model_dir / "test-grid-de-d1-none")
    for r in none:
        adv = images[r["index"]].copy()
        for row in r["pixels"]:
            adv[row[0], row[1]] = row[2:]
        assert bool(detector.flags(adv[None])[0]) == r["flagged"]
    text = grid_report.defence_report(tmp_path)
    assert "### digits-cnn" in text
    s = sum(r["success"] for r in none)
    assert (
        f"| test-grid-de | 1 | none | {100 * clean['accuracy']['none']:.2f} % | {25 * s:.1f} % ["
        in text
    )
    assert "| test-grid-de (adaptive) | 1 | detector, fooled & not flagged (first 2 images;" in text
    assert "| test-grid-de (trained) | 1 | digits-cnn (first 2 images;" in text
    assert main(["report", str(model_dir / "test-grid-de-d1-detector")]) == 0
    # a second run reuses the calibration and every record
    outcomes = grids.run_defence_grid(grid, tmp_path, models={"digits-cnn": (predict_fn, card)},
                                      data=data)  # fmt: skip
    assert all(o.attacks_run == 0 for o in outcomes)


def test_the_committed_search_table_regenerates_from_the_committed_records():
    """``benchmarks/results/search/tables.md`` is what the report makes of the committed
    records (without the figure links)."""
    files = sorted(glob.glob(str(REPO / "benchmarks/results/search/*.jsonl")))
    runs = grid_report.read_search(files)
    grid_report.add_replays(runs, truncate=[("paper", 4000)])
    text = grid_report.search_report(runs, paired=["paper"], all_images=True)
    committed = (REPO / "benchmarks/results/search/tables.md").read_text()
    tables = [x for x in committed.splitlines() if not x.startswith("![")]
    assert [x for x in text.splitlines() if x.strip()] == [x for x in tables if x.strip()]


def test_a_stall_replay_covers_methods_named_with_stall_and_never_replays_a_replay():
    def row(success, queries, history):
        return {"success": success, "queries": queries, "popsize": 10, "budget": 100,
                "history": history}  # fmt: skip

    plateau = [0.9, 0.5] + [0.5] * 8  # no gain after generation 1: a stall of 3 ends it at 4
    runs = {"setting": {"fast-stall128": {0: row(False, 100, plateau), 1: row(True, 20, [0.9, 0])}}}
    grid_report.add_replays(runs, replay=[("fast-stall128", 3)])
    grid_report.add_replays(runs, replay=[("fast-stall128", 3)])  # again: no replay of a replay
    labels = sorted(runs["setting"])
    assert labels == ["fast-stall128", "fast-stall128 + stall 3 (replayed)"]
    replayed = runs["setting"]["fast-stall128 + stall 3 (replayed)"]
    assert replayed[1]["success"] and replayed[1]["queries"] == 20
    assert not replayed[0]["success"] and replayed[0]["queries"] < 100


def test_the_committed_defence_tables_come_from_the_committed_records(tmp_path):
    """docs/figures/defences/tables.md is what the report writes from the committed run folders
    (the command in docs/defences-results.md), to the byte."""
    repo = Path(__file__).resolve().parents[1]
    b = repo / "benchmarks" / "results" / "defences"
    out = tmp_path / "tables.md"
    argv = ["experiment", "report", "defences", str(b / "grid"), "--markdown", str(out)]
    fooling = [str(b / f) for f in ("fooling-lenet", "fooling-lenet-scratch", "fooling-allconv")]
    assert main([*argv, "--fooling", *fooling]) == 0
    committed = (repo / "docs" / "figures" / "defences" / "tables.md").read_text()
    assert out.read_text() == committed
