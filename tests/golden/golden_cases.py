"""The cases of the golden set: each returns JSON-ready records for a fixed key.

Shared by ``make_golden.py`` (which wrote ``golden.json``) and ``test_golden.py`` (which
recomputes and compares). Only public entry points are used: ``opj.attack``,
``opj.random_search``, ``opj.AttackConfig``, ``opj.models.load``, ``opj.data.load`` and the
``onepixel`` command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

import onepixel_jax as opj

N_IMAGES = 6


def _target():
    predict_fn, _ = opj.models.load("digits-cnn")
    images, labels, _ = opj.data.load("digits", "test", limit=N_IMAGES)
    return predict_fn, images, labels


def _result_record(res) -> dict:
    return {
        "pixels": np.asarray(res.pixels).tolist(),
        "success": np.asarray(res.success).tolist(),
        "queries": np.asarray(res.queries).tolist(),
        "fitness_history": np.asarray(res.fitness_history, np.float64).tolist(),
        "probs": np.asarray(res.probs, np.float64).tolist(),
        "adversarial_sum": int(np.asarray(res.adversarial, np.int64).sum()),
    }


def _api_case(search: str, seed: int, targeted: bool, **cfg_kwargs):
    def run() -> dict:
        predict_fn, images, labels = _target()
        targets = (labels + 3) % 10 if targeted else None
        cfg = opj.AttackConfig(targeted=targeted, **cfg_kwargs)
        fn = opj.attack if search == "de" else opj.random_search
        res = fn(jax.random.key(seed), predict_fn, images, labels, cfg, targets=targets)
        return _result_record(res)

    return run


def api_cases() -> dict:
    small = dict(popsize=20, max_iters=12)
    return {
        "de_untargeted_nostop": _api_case("de", 0, False, **small),
        "de_untargeted_success_b2": _api_case(
            "de", 1, False, early_stop="success", batch_size=2, **small
        ),
        "de_targeted_over_true": _api_case("de", 2, True, early_stop="target_over_true", **small),
        "de_targeted_threshold": _api_case("de", 3, True, early_stop="threshold", **small),
        "de_untargeted_3px": _api_case("de", 4, False, pixels=3, early_stop="success", **small),
        "de_best1_crossover": _api_case("de", 5, False, strategy="best1", crossover=0.7, **small),
        "de_untargeted_threshold_b4": _api_case(
            "de", 6, False, early_stop="threshold", threshold=0.3, batch_size=4, **small
        ),
        "random_untargeted": _api_case("random", 7, False, early_stop="success", **small),
        "random_targeted_nostop": _api_case("random", 8, True, **small),
    }


def _read_run(out: Path) -> dict:
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("seconds", None)
    records.sort(
        key=lambda r: (r["method"], r["index"], -1 if r["target"] is None else r["target"])
    )
    info = json.loads((out / "run.json").read_text())
    keep = ("indices", "labels", "num_classes", "image_shape", "split_size")
    return {"records": records, "run": {k: info[k] for k in keep if k in info}}


def _cli_attack_case(mode: str, extra: list[str]):
    def run(out: Path) -> dict:
        from onepixel_jax.cli import main

        argv = [
            "attack", "--model", "digits-cnn", "--dataset", "digits", "--n-images", "4",
            "--mode", mode, "--popsize", "16", "--max-iters", "6", "--seed", "11",
            "--chunk-size", "3", "--baseline", "random", "--quiet", "--no-report",
            "--out", str(out), *extra,
        ]  # fmt: skip
        assert main(argv) == 0
        return _read_run(out)

    return run


def cli_attack_cases() -> dict:
    return {
        "untargeted": _cli_attack_case("untargeted", []),
        "targeted": _cli_attack_case("targeted", ["--early-stop", "threshold"]),
        "all_targets": _cli_attack_case("all-targets", ["--pixels", "2"]),
    }


def _cli_fool_case(encoding: str):
    def run(out: Path) -> dict:
        from onepixel_jax.cli import main

        argv = [
            "fool", "--model", "digits-cnn", "--encoding", encoding, "--generations", "4",
            "--popsize", "8", "--chunk", "2", "--seed", "3", "--out", str(out),
        ]  # fmt: skip
        assert main(argv) == 0
        summary = json.loads((out / "summary.json").read_text())
        keep = ("best_confidence", "first_generation_reaching", "reached", "evaluations")
        images = np.load(out / "best_images_uint8.npy")
        return {**{k: summary[k] for k in keep}, "images_sum": int(images.astype(np.int64).sum())}

    return run


def cli_fool_cases() -> dict:
    return {"direct": _cli_fool_case("direct"), "cppn": _cli_fool_case("cppn")}
