"""``onepixel fool`` end to end on a tiny randomly initialised checkpoint."""

import json

import numpy as np
import pytest

from onepixel_jax import models
from onepixel_jax.cli import main


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, zoo_init):
    """A random DigitsCNN (8x8x1, 10 classes) saved as a checkpoint directory with a card."""
    directory = tmp_path_factory.mktemp("tiny-digits")
    _, variables = zoo_init("digits-cnn", width=0.25)
    sha = models.save_checkpoint(directory / models.CHECKPOINT_FILE, variables)
    card = {
        "name": "tiny-digits",
        "architecture": "digits-cnn",
        "model_kwargs": {"width": 0.25},
        "input_shape": [8, 8, 1],
        "num_classes": 10,
        "class_names": [f"c{k}" for k in range(10)],
        "checkpoint_sha256": sha,
    }
    (directory / models.CARD_FILE).write_text(json.dumps(card))
    return str(directory)


def fool(model, out, *extra):
    argv = ["fool", "--model", model, "--out", str(out), "--popsize", "8", "--chunk", "3"]
    return main([*argv, *extra])


def test_run_writes_results_and_resumes(tiny_model, tmp_path, capsys):
    run = tmp_path / "a"
    assert fool(tiny_model, run, "--generations", "3") == 0
    printed = capsys.readouterr().out
    assert printed.count("[fool] gen") == 1 and "done" in printed
    first = np.load(run / "state.npz")
    # Extending the target resumes from the saved archive instead of starting over.
    assert fool(tiny_model, run, "--generations", "6") == 0
    printed = capsys.readouterr().out
    assert "resuming" in printed and printed.count("[fool] gen") == 1
    for name in ("config.json", "state.npz", "best_grid.png", "confidence_curve.png"):
        assert (run / name).stat().st_size > 0, name
    lines = (run / "progress.jsonl").read_text().splitlines()
    assert [json.loads(ln)["generation"] for ln in lines] == [3, 6]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["generations"] == 6 and summary["classes"][0] == "c0"
    best = np.array(summary["best_confidence"])
    assert best.shape == (10,) and np.all((best > 0) & (best <= 1))
    # The saved 8-bit images are classified exactly as during the search.
    np.testing.assert_allclose(summary["best_confidence_uint8_recheck"], best, rtol=1e-5)
    state = np.load(run / "state.npz")
    curve = state["curve"]
    assert curve.shape == (7, 10) and np.all(np.diff(curve, axis=0) >= 0)
    np.testing.assert_array_equal(curve[:4], first["curve"])  # history kept across the resume
    assert np.all(state["fitness"] >= first["fitness"])


def test_changed_config_is_refused(tiny_model, tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model": tiny_model, "seed": 0}))
    assert fool(tiny_model, tmp_path, "--generations", "3", "--seed", "1") == 2
    err = capsys.readouterr().err.strip()
    assert "different config" in err and "seed" in err and "\n" not in err


def test_cppn_run(tiny_model, tmp_path):
    extra = ("--generations", "2", "--chunk", "2", "--encoding", "cppn", "--max-hidden", "2")
    assert fool(tiny_model, tmp_path, *extra) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["encoding"] == "cppn" and summary["generations"] == 2


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--model", "no-such-model"], "--model"),
        (["--generations", "0"], "generations"),
        (["--popsize", "0"], "popsize"),
        (["--encoding", "pixels"], "encoding"),
        (["--threshold", "1.5"], "threshold"),
        (["--mutation-rate", "-0.1"], "mutation_rate"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tiny_model, tmp_path, capsys, extra, needle):
    argv = ["fool", "--model", tiny_model, "--out", str(tmp_path / "x"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and err.startswith("onepixel fool: error:") and "\n" not in err
    assert not (tmp_path / "x" / "state.npz").exists()
