"""Named methods (:mod:`onepixel_jax.experiments.methods`) and what they change in a sweep:
presets with their own settings and budgets, ``own_budgets``, ``max_queries`` and
``shared_keys``; the sweep's old behaviour for plain strategy names is unchanged."""

from __future__ import annotations

import argparse
import json
import shlex

import numpy as np
import pytest

import onepixel_jax as opj
from onepixel_jax.cli import attack as cli_attack
from onepixel_jax.cli import main
from onepixel_jax.experiments import methods, run_folder
from onepixel_jax.experiments.sweep import SettingError, SweepConfig, command_line, run_sweep

TINY = {
    "test-tiny-de": methods.MethodPreset("test-tiny-de", "de", popsize=16, max_iters=4),
    "test-tiny-best1": methods.MethodPreset(
        "test-tiny-best1", "de", (("mutation", "best1"),), popsize=8, max_iters=7
    ),
    "test-tiny-random": methods.MethodPreset("test-tiny-random", "random", popsize=12, max_iters=2),
}
for _p in TINY.values():
    if _p.name not in methods.PRESETS:
        methods.register(_p)


def test_presets_name_their_strategy_settings_and_budget():
    cfg = methods.attack_config("de-best1", pixels=3)
    assert (cfg.strategy, cfg.mutation, cfg.popsize, cfg.max_iters) == ("de", "best1", 400, 100)
    cfg = methods.attack_config("corner-scan-random")
    assert cfg.options == (("probe", "random"),) and cfg.budget == 128 * 315
    assert methods.attack_config("fast-nostall").stall == 0
    from onepixel_jax.search.fast import fast_stall

    assert methods.attack_config("fast").stall == fast_stall(1)  # the strategy's own rule
    assert methods.attack_config("de-rand1-margin").objective == "margin"
    assert methods.attack_config("jade").budget == 40_400  # a strategy at its defaults
    # the caller's budget replaces the preset's, the settings stay
    cfg = methods.attack_config("de-best1", budget=(20, 3))
    assert (cfg.popsize, cfg.max_iters, cfg.mutation) == (20, 3, "best1")
    # a cap cuts whole generations: 4,000 // 64 - 1 = 61 generations after the first
    assert methods.attack_config("fast", max_queries=4000).budget == 64 * 62
    assert methods.attack_config("paper", max_queries=10**6).budget == 40_400  # under the cap
    with pytest.raises(ValueError, match="less than one generation of paper"):
        methods.attack_config("paper", max_queries=100)
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        methods.get("nope")
    with pytest.raises(ValueError, match="already registered"):
        methods.register(methods.MethodPreset("fast", "fast"))
    assert set(methods.PRESETS) <= set(methods.names())
    assert not set(methods.PRESETS) & set(opj.search.names())


def test_own_budgets_give_each_method_its_budget():
    cfg = SweepConfig(
        model="m", dataset="d", methods=("paper", "fast", "de-best1"), own_budgets=True
    )
    budgets = {m: cfg.attack_config(m).budget for m in cfg.methods}
    assert budgets == {"paper": 40_400, "fast": 64 * 631, "de-best1": 40_400}
    assert (cfg.popsize, cfg.max_iters) == (400, 630)  # the largest of the methods'
    shared = SweepConfig(
        model="m", dataset="d", methods=("de", "de-best1"), popsize=10, max_iters=2
    )
    assert [shared.attack_config(m).budget for m in shared.methods] == [30, 30]
    assert shared.attack_config("de-best1").mutation == "best1"
    capped = SweepConfig(model="m", dataset="d", methods=("paper", "fast"), own_budgets=True,
                         max_queries=4000)  # fmt: skip
    assert [capped.attack_config(m).budget for m in capped.methods] == [4000, 3968]
    with pytest.raises(SettingError, match="max_queries") as err:
        SweepConfig(model="m", dataset="d", methods=("paper",), own_budgets=True, max_queries=50)
    assert err.value.field == "max_queries"
    with pytest.raises(SettingError, match="unknown search method 'nope'"):
        SweepConfig(model="m", dataset="d", methods=("nope",))


def test_command_line_round_trips_the_new_fields(tmp_path):
    cfg = SweepConfig(
        model="m", dataset="d", methods=("paper", "fast", "de-best1"), own_budgets=True,
        max_queries=4000, shared_keys=True, early_stop="success", chunk_size=5,
    )  # fmt: skip
    line = command_line(cfg, tmp_path / "out")
    assert "--baseline fast --baseline de-best1 --own-budgets --max-queries 4000" in line
    assert "--popsize" not in line  # each method's own
    parser = argparse.ArgumentParser()
    cli_attack.add_arguments(parser)
    args = parser.parse_args(shlex.split(line)[2:])
    assert cli_attack.config_from_args(args) == cfg


@pytest.fixture(scope="module")
def digits():
    predict_fn, card = opj.models.load("digits-cnn")
    x, y, names = opj.data.load("digits", "test")
    return predict_fn, card, x, y, names


def _sweep(out, cfg, digits, engine=None):
    predict_fn, card, x, y, names = digits
    return run_sweep(cfg, out, predict_fn, x, y, card=card, class_names=names, attack_fn=engine)


def test_a_sweep_runs_each_preset_at_its_own_budget(tmp_path, digits):
    cfg = SweepConfig(
        model="digits-cnn", dataset="digits", n_images=4, chunk_size=2, early_stop="success",
        methods=("test-tiny-de", "test-tiny-best1", "test-tiny-random"), own_budgets=True,
    )  # fmt: skip
    _sweep(tmp_path / "run", cfg, digits)
    info, records = run_folder.load_run(tmp_path / "run")
    own = {"test-tiny-de": (16, 4), "test-tiny-best1": (8, 7), "test-tiny-random": (12, 2)}
    for m, (popsize, max_iters) in own.items():
        settings = info["method_settings"][m]
        assert (settings["popsize"], settings["max_iters"]) == (popsize, max_iters)
        recs = [r for r in records if r["method"] == m]
        assert len(recs) == 4
        assert all(len(r["fitness"]) == max_iters + 1 for r in recs)
        assert all(r["queries"] % popsize == 0 for r in recs)
        assert all(r["queries"] <= popsize * (max_iters + 1) for r in recs)
        failed = [r["queries"] for r in recs if not r["success"]]
        assert all(q == popsize * (max_iters + 1) for q in failed)
    assert info["method_settings"]["test-tiny-best1"]["settings"]["mutation"] == "best1"
    assert info["config"]["own_budgets"] is True
    assert {r["method"] for r in records} == set(own)


def test_shared_keys_make_a_methods_records_independent_of_the_others(tmp_path, digits):
    base = dict(model="digits-cnn", dataset="digits", n_images=2, chunk_size=2,
                early_stop="success", own_budgets=True, shared_keys=True)  # fmt: skip
    _sweep(
        tmp_path / "a", SweepConfig(**base, methods=("test-tiny-random", "test-tiny-de")), digits
    )
    _sweep(tmp_path / "b", SweepConfig(**base, methods=("test-tiny-de",)), digits)

    def de_records(path):
        recs = [json.loads(x) for x in (path / "results.jsonl").read_text().splitlines()]
        return [
            {k: v for k, v in r.items() if k != "seconds"}
            for r in recs
            if r["method"] == "test-tiny-de"
        ]

    a, b = de_records(tmp_path / "a"), de_records(tmp_path / "b")
    assert a == b and len(a) == 2
    # without shared keys the second method's stream is its own
    own = dict(base, shared_keys=False)
    _sweep(tmp_path / "c", SweepConfig(**own, methods=("test-tiny-random", "test-tiny-de")), digits)
    c = de_records(tmp_path / "c")
    assert [r["pixels"] for r in c] != [r["pixels"] for r in a]


def test_attack_refuses_popsize_with_own_budgets_in_one_line(tmp_path, capsys):
    out = str(tmp_path / "x")
    argv = ["attack", "--model", "digits-cnn", "--dataset", "digits", "--strategy", "paper",
            "--baseline", "fast", "--own-budgets", "--popsize", "16", "--out", out]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--popsize cannot be combined with --own-budgets" in err[0]
    assert not (tmp_path / "x").exists()
    argv = ["attack", "--model", "digits-cnn", "--dataset", "digits", "--strategy", "paper",
            "--own-budgets", "--max-queries", "50", "--out", str(tmp_path / "y")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-queries" in err[0] and "one generation" in err[0]


def test_preset_records_differ_from_the_plain_strategy(tmp_path, digits):
    """de-best1 under a shared budget is DE with best/1: its search differs from de's."""
    cfg = SweepConfig(model="digits-cnn", dataset="digits", n_images=2, chunk_size=2,
                      popsize=16, max_iters=4, early_stop="success",
                      methods=("de", "test-tiny-best1"), shared_keys=True)  # fmt: skip
    _sweep(tmp_path / "r", cfg, digits)
    _, records = run_folder.load_run(tmp_path / "r")
    fit = {m: np.array([r["fitness"] for r in records if r["method"] == m]) for m in cfg.methods}
    assert fit["de"].shape == fit["test-tiny-best1"].shape == (2, 5)  # the shared budget
    assert not np.array_equal(fit["de"], fit["test-tiny-best1"])
    assert np.array_equal(fit["de"][:, 0], fit["test-tiny-best1"][:, 0])  # same first population
