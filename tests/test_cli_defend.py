"""onepixel defend: parsing, one-line argument errors, and the flags reaching the library.

No training here: the library calls are replaced by recorders; the training itself is tested
in test_defences_adversarial_training.py and test_defences_fooling_class.py.
"""

from __future__ import annotations

import runpy
import sys
import warnings

import pytest

from onepixel_jax import AttackConfig
from onepixel_jax.cli import build_parser, defend, main
from onepixel_jax.defences import adversarial_training as adv
from onepixel_jax.defences import fooling_class as fc


def test_help_of_defend_and_its_subcommands(capsys):
    assert main(["defend", "--help"]) == 0
    out = capsys.readouterr().out
    assert "fine-tune" in out and "fooling-class" in out
    for sub, flag in (("fine-tune", "--adversarial-share"), ("fooling-class", "--rounds")):
        assert main(["defend", sub, "--help"]) == 0
        assert flag in capsys.readouterr().out
    assert main(["defend"]) == 2  # no defence named: its help, on stderr
    assert "fine-tune" in capsys.readouterr().err


def test_defaults_are_the_library_defaults():
    parser = build_parser()
    args = parser.parse_args(["defend", "fine-tune", "--out", "x"])
    assert defend.fine_tune_config(args) == adv.AdversarialTrainingConfig(model="lenet-mnist")
    assert args.name is None
    args = parser.parse_args(["defend", "fooling-class", "--out", "x"])
    assert defend.fooling_class_config(args) == fc.FoolingClassConfig(model="lenet-mnist", rounds=3)


BAD_FINE_TUNE = [
    (["--epochs", "-1"], "--epochs"),
    (["--adversarial-share", "1.5"], "--adversarial-share"),
    (["--dead-pixel-rate", "-0.1"], "--dead-pixel-rate"),
    (["--attack-images", "-5"], "--attack-images"),
    (["--attack-strategy", "no-such-search"], "--attack-strategy"),
    (["--attack-strategy", "de", "--attack-popsize", "2"], "--attack-popsize"),
    (["--lr", "0"], "--lr"),
    (["--seed", "-1"], "--seed"),
    (["--model", "no-such-model"], "--model"),
    (["--data-dir", "/no/such/dir"], "--data-dir"),
]
BAD_FOOLING_CLASS = [
    (["--rounds", "0"], "--rounds"),
    (["--mode", "scratch"], "--mode"),
    (["--encoding", "pixels"], "--encoding"),
    (["--generations", "-3"], "--generations"),
    (["--fooling-examples", "0"], "--fooling-examples"),
    (["--warmup-epochs", "-1"], "--warmup-epochs"),
    (["--lr", "nan"], "--lr"),
    (["--model", "no-such-model"], "--model"),
]


@pytest.mark.parametrize(
    ("sub", "argv", "flag"),
    [("fine-tune", *case) for case in BAD_FINE_TUNE]
    + [("fooling-class", *case) for case in BAD_FOOLING_CLASS],
)
def test_bad_input_is_one_line_naming_the_flag_and_exit_2(sub, argv, flag, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["defend", sub, *argv, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"onepixel defend {sub}: error: ")
    assert captured.err.count("\n") == 1 and flag in captured.err
    assert "Traceback" not in captured.err
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("sub", ["fine-tune", "fooling-class"])
def test_out_is_required_and_must_be_a_folder(sub, tmp_path, capsys):
    assert main(["defend", sub]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err
    (tmp_path / "f").write_text("x")
    assert main(["defend", sub, "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "not a directory" in err


def test_fine_tune_passes_the_flags_to_the_library(monkeypatch, tmp_path, capsys):
    calls = []

    def fake(config, workdir, *, name=None):
        calls.append((config, workdir, name))
        return {"defence": {"kind": "fine-tuning"}, "test_accuracy": 0.5}

    monkeypatch.setattr(adv, "adversarial_fine_tune", fake)
    out = str(tmp_path / "m")
    argv = ["--model", "digits-cnn", "--epochs", "3", "--attack-images", "6"]
    argv += ["--adversarial-share", "0.25", "--attack-strategy", "random"]
    argv += ["--attack-popsize", "8", "--attack-iters", "1", "--attack-pixels", "2"]
    argv += ["--dead-pixel-rate", "0.5", "--dead-pixels", "3", "--dead-pixel-colours", "extreme"]
    argv += ["--lr", "0.02", "--batch-size", "32", "--train-limit", "96", "--eval-limit", "40"]
    argv += ["--seed", "7", "--name", "tiny", "--out", out]
    assert main(["defend", "fine-tune", *argv]) == 0
    expected = adv.AdversarialTrainingConfig(
        model="digits-cnn",
        epochs=3,
        attack_images=6,
        adversarial_share=0.25,
        attack=AttackConfig(
            pixels=2, strategy="random", popsize=8, max_iters=1, early_stop="success"
        ),
        dead_pixel_rate=0.5,
        dead_pixels=3,
        dead_pixel_colours="extreme",
        batch_size=32,
        learning_rate=0.02,
        train_limit=96,
        eval_limit=40,
        seed=7,
    )
    assert calls == [(expected, out, "tiny")]
    assert "50.00%" in capsys.readouterr().out


def test_fooling_class_passes_the_flags_to_the_library(monkeypatch, tmp_path, capsys):
    calls = []

    def fake(config, workdir):
        calls.append((config, workdir))
        return [
            {
                "round": 1,
                "test_accuracy": 0.9,
                "fooling_rate_after": 0.75,
                "fooling_images": 10,
            },
            {"round": 2, "evolution_only": True},
        ]

    monkeypatch.setattr(fc, "retrain_with_fooling_class", fake)
    out = str(tmp_path / "f")
    argv = ["--model", "digits-cnn", "--rounds", "1", "--mode", "from_scratch"]
    argv += ["--encoding", "cppn", "--generations", "3", "--popsize", "8"]
    argv += ["--runs-per-round", "2", "--fooling-examples", "32", "--epochs", "4"]
    argv += ["--batch-size", "16", "--lr", "0.05", "--warmup-epochs", "0.5"]
    argv += ["--train-limit", "32", "--eval-limit", "32", "--seed", "3"]
    argv += ["--no-final-evolution", "--out", out]
    assert main(["defend", "fooling-class", *argv]) == 0
    expected = fc.FoolingClassConfig(
        model="digits-cnn",
        rounds=1,
        mode="from_scratch",
        encoding="cppn",
        generations=3,
        popsize=8,
        runs_per_round=2,
        fooling_examples=32,
        epochs=4,
        batch_size=16,
        learning_rate=0.05,
        warmup_epochs=0.5,
        train_limit=32,
        eval_limit=32,
        seed=3,
        final_evolution=False,
    )
    assert calls == [(expected, out)]
    assert "75.0% of 10 fooling images" in capsys.readouterr().out


def test_library_value_errors_are_one_line(monkeypatch, tmp_path, capsys):
    """A used work folder (the library's ValueError) is an input error, not a traceback."""

    def fake(config, workdir):
        raise ValueError(f"{workdir} already holds retraining rounds (rounds.jsonl)")

    monkeypatch.setattr(fc, "retrain_with_fooling_class", fake)
    assert main(["defend", "fooling-class", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("onepixel defend fooling-class: error: ") and "already holds" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("module", "sub"),
    [("adversarial_training", "fine-tune"), ("fooling_class", "fooling-class")],
)
def test_old_module_commands_run_the_cli(module, sub, monkeypatch, tmp_path, capsys):
    """``python -m onepixel_jax.defences.MODULE ...`` is ``onepixel defend SUB ...``."""
    monkeypatch.setattr(sys, "argv", [module, "--epochs", "0", "--out", str(tmp_path)])
    with warnings.catch_warnings():  # runpy: the module is imported already (by the cli)
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_module(f"onepixel_jax.defences.{module}", run_name="__main__")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"onepixel defend {sub}: error: argument --epochs")
    assert err.count("\n") == 1
