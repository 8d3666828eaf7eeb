"""``onepixel demo``: its default target, offline, and its messages on a first and a second run."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from onepixel_jax.cli import build_parser, demo, main

ROOT = Path(__file__).resolve().parents[1]


def _args(**kw):
    base = dict(n_images=8, seed=0, data_dir=None, out=None, popsize=400, max_iters=100)
    base.update(kw)
    return argparse.Namespace(**base)


def test_empty_data_dir_falls_back_to_bundled_digits(tmp_path):
    assert not demo.cifar10_available(str(tmp_path))
    assert demo.default_target(str(tmp_path)) == ("digits-cnn", "digits")


def test_demo_config_is_the_paper_setting_one_image_per_call():
    cfg = demo.demo_config("digits-cnn", "digits", _args(n_images=5, seed=3))
    assert (cfg.model, cfg.dataset, cfg.n_images, cfg.seed) == ("digits-cnn", "digits", 5, 3)
    assert (cfg.pixels, cfg.popsize, cfg.max_iters, cfg.mode) == (1, 400, 100, "untargeted")
    assert cfg.chunk_size == 1 and cfg.methods == ("de",) and cfg.early_stop == "success"
    args = build_parser().parse_args(["demo"])
    assert (args.n_images, args.popsize, args.max_iters, args.out) == (8, 400, 100, None)


def test_demo_from_a_data_less_directory_uses_digits_and_reuses_the_run(
    tmp_path, monkeypatch, capsys
):
    """A fresh directory, no data anywhere the demo is told to look, and the cache empty.

    The first run is the console entry point in a fresh interpreter; the second, which only
    finds the finished run, calls the same ``main`` in this process (same arguments,
    environment and working directory)."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    env = dict(
        os.environ,
        ONEPIXEL_DATA_DIR=str(empty),
        XDG_CACHE_HOME=str(empty),
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(ROOT),
    )
    argv = [
        "demo", "--n-images", "2", "--popsize", "8", "--max-iters", "2", "--data-dir", str(empty),
    ]  # fmt: skip
    cmd = [sys.executable, "-m", "onepixel_jax.cli", *argv]
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.strip().splitlines()
    assert lines[0].startswith("demo: digits-cnn on digits (no download)")
    out = tmp_path / "runs" / "demo-digits-cnn"
    assert lines[-1].startswith(f"report: {Path('runs/demo-digits-cnn/report.md')}; figures: ")
    assert "class_pairs.png" in lines[-1] and (out / "report.md").exists()
    assert "Traceback" not in first.stderr
    # A second run reuses the finished run and says so; nothing is attacked again.
    before = (out / "results.jsonl").read_bytes()
    monkeypatch.chdir(tmp_path)
    for name in ("ONEPIXEL_DATA_DIR", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(empty))
    capsys.readouterr()
    assert main(argv) == 0
    second = capsys.readouterr()
    assert "reused the finished run in runs/demo-digits-cnn" in second.out
    assert second.out.strip().splitlines()[-1].startswith("report: ")
    assert "Traceback" not in second.err
    assert (out / "results.jsonl").read_bytes() == before
