"""The committed ResNet-20 (``resnet20-cifar10``) takes every path the other zoo networks take:
the attack sweep and its report, the incremental evaluator inside it, fooling images, a
squeezing defence and verification."""

import json

import jax
import numpy as np

import onepixel_jax as opj
from onepixel_jax.cli import main
from onepixel_jax.defences import squeezing
from onepixel_jax.targets import incremental

NAME = "resnet20-cifar10"


def test_the_attack_sweep_and_its_report(tmp_path, capsys):
    out = tmp_path / "attack"
    argv = ["attack", "--model", NAME, "--dataset", "cifar10", "--n-images", "2"]
    argv += ["--popsize", "16", "--max-iters", "2", "--baseline", "random"]
    argv += ["--out", str(out), "--quiet"]
    assert main(argv) == 0
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["method"] for r in recs) == ["de", "de", "random", "random"]
    assert all(0 < r["queries"] <= 16 * 3 for r in recs)
    assert "resnet20-cifar10" in (out / "report.md").read_text()
    capsys.readouterr()


def test_the_engine_uses_the_incremental_evaluator_and_agrees_with_the_full_forward():
    predict_fn, _ = opj.models.load(NAME)
    images, labels, _ = opj.data.load("cifar10", "test", limit=2)
    assert incremental.pays_off(predict_fn, (32, 32, 3), 1)  # the default path uses it
    cfg = dict(popsize=16, max_iters=3, early_stop=None)
    on = opj.attack(jax.random.key(0), predict_fn, images, labels,
                    opj.AttackConfig(**cfg, incremental=True), progress=False)  # fmt: skip
    off = opj.attack(jax.random.key(0), predict_fn, images, labels,
                     opj.AttackConfig(**cfg, incremental=False), progress=False)  # fmt: skip
    np.testing.assert_allclose(on.probs, off.probs, atol=1e-5)
    np.testing.assert_array_equal(on.success, off.success)


def test_fooling_images(tmp_path, capsys):
    out = tmp_path / "fool"
    argv = ["fool", "--model", NAME, "--out", str(out), "--popsize", "8", "--chunk", "3",
            "--generations", "2"]  # fmt: skip
    assert main(argv) == 0
    best = np.array(json.loads((out / "summary.json").read_text())["best_confidence"])
    assert best.shape == (10,) and np.all((best > 0) & (best <= 1))
    capsys.readouterr()


def test_a_squeezing_defence_and_verification():
    predict_fn, _ = opj.models.load(NAME)
    images, labels, _ = opj.data.load("cifar10", "test", limit=1)
    x = np.asarray(images, np.float32)
    squeezed = squeezing.squeezed(predict_fn, "median2")
    probs = np.asarray(squeezed(x))
    assert probs.shape == (1, 10) and abs(probs.sum() - 1) < 1e-4
    res = opj.verify(predict_fn, x, labels, max_boxes=64)
    assert res.status[0] in ("robust", "vulnerable", "unknown", "misclassified")
    if res.status[0] == "vulnerable":  # the counterexample flips the plain forward pass
        r, c, *v = res.counterexample[0, 0].tolist()
        patched = x.copy()
        patched[0, r, c] = v
        assert int(np.argmax(predict_fn(patched)[0])) != int(labels[0])
