"""The README's main job picks its default target and builds a paper-setting sweep."""

import argparse

from onepixel_jax import cli, demo


def _args(**kw):
    base = dict(n_images=8, seed=0, data_dir=None, out=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_falls_back_to_bundled_digits_without_cifar(monkeypatch):
    monkeypatch.setattr(demo.models, "list_models", lambda: ["digits-cnn", "lenet-mnist"])
    assert demo.default_target() == ("digits-cnn", "digits")


def test_uses_cifar_when_checkpoint_and_data_exist(monkeypatch):
    monkeypatch.setattr(demo.models, "list_models", lambda: ["allconv-cifar10", "digits-cnn"])
    calls = []

    def fake_load(name, split, data_dir=None, limit=None):
        calls.append((name, split, limit))
        return None

    monkeypatch.setattr(demo.data, "load", fake_load)
    assert demo.default_target() == ("allconv-cifar10", "cifar10")
    assert calls == [("cifar10", "test", 1)]

    def missing(*a, **k):
        raise FileNotFoundError("no data")

    monkeypatch.setattr(demo.data, "load", missing)
    assert demo.default_target() == ("digits-cnn", "digits")


def test_demo_argv_is_a_valid_paper_setting_attack(monkeypatch):
    monkeypatch.setattr(demo, "default_target", lambda data_dir=None: ("digits-cnn", "digits"))
    argv = demo.demo_argv(_args(n_images=5, seed=3))
    args = cli.build_parser().parse_args(argv)
    assert args.command == "attack"
    assert (args.model, args.dataset, args.n_images, args.seed) == ("digits-cnn", "digits", 5, 3)
    assert (args.pixels, args.popsize, args.max_iters) == (1, 400, 100)
    assert args.out == "runs/demo-digits-cnn"
