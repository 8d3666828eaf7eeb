"""Fooling-class retraining: head extension, and a tiny end-to-end run on a BN checkpoint."""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from onepixel_jax import data, models
from onepixel_jax.defences import fooling_class as fc


@pytest.fixture(scope="module")
def head():
    """``head(num_classes, arch="allconv", seed=0) -> (module, variables)``: a small BN zoo
    network (width 0.125), initialised once per argument set for the module. ``module.init``
    is called as ``models.init_variables`` calls it, but eagerly: that jits a fresh function
    per call, so each network compiles its whole random initialisation (15-30 s on a loaded
    two-core CPU); eager primitives compile once per shape, mostly shared by the 10- and
    11-output networks."""

    @functools.cache
    def make(num_classes: int, arch: str = "allconv", seed: int = 0):
        module = models.create(arch, width=0.125, batch_norm=True, num_classes=num_classes)
        x = jnp.zeros((1, *models.ARCHITECTURES[arch].input_shape), jnp.float32)
        key = jax.random.PRNGKey(seed)
        return module, dict(module.init({"params": key, "dropout": key}, x, train=False))

    return make


@pytest.mark.parametrize("arch", ["allconv", "nin", "lenet"])
def test_extend_head_keeps_old_outputs_and_adds_new_ones(arch, head):
    """AllConv and NiN end in a 1x1 convolution, LeNet in a Dense layer; BN stats are kept."""
    m10, old = head(10, arch, seed=0)
    m11, template = head(11, arch, seed=1)
    new = fc.extend_head(old, template)
    paths_old = dict(jax.tree_util.tree_leaves_with_path(old))
    grown = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(new):
        before = np.asarray(paths_old[path])
        wanted = np.asarray(dict(jax.tree_util.tree_leaves_with_path(template))[path])
        assert leaf.shape == wanted.shape
        if before.shape == leaf.shape:
            np.testing.assert_array_equal(leaf, before)
        else:
            grown += 1
            np.testing.assert_array_equal(leaf[..., :10], before)
            np.testing.assert_array_equal(leaf[..., 10:], wanted[..., 10:])
    assert grown == 2  # kernel and bias of the output layer
    # the extended network gives the old logits on the first K outputs
    shape = models.ARCHITECTURES[arch].input_shape
    x = jax.random.uniform(jax.random.PRNGKey(3), (2, *shape), maxval=255.0)
    np.testing.assert_allclose(m11.apply(new, x)[:, :10], m10.apply(old, x), rtol=1e-5, atol=1e-5)


def test_extend_head_rejects_other_mismatches(head):
    """The networks of the test above (initialised once): 11 outputs cannot shrink into 10,
    10 into 10 has no new output, AllConv's layers are not LeNet's."""
    _, v10 = head(10, seed=0)
    _, v11 = head(11, seed=1)
    _, lenet11 = head(11, "lenet", seed=1)
    with pytest.raises(ValueError, match="cannot grow"):
        fc.extend_head(v11, v10)
    with pytest.raises(ValueError, match="no wider output"):
        fc.extend_head(v10, v10)
    with pytest.raises(ValueError, match="same layers"):
        fc.extend_head(v10, lenet11)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"mode": "scratch"}, "mode"),
        ({"rounds": 0}, "rounds"),
        ({"encoding": "pixels"}, "encoding"),
        ({"fooling_examples": 0}, "fooling_examples"),
        ({"threshold": 2.0}, "threshold"),
    ],
)
def test_config_rejects_bad_values(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        fc.FoolingClassConfig(model="allconv-cifar10", **kwargs)


def _cifar_or_fail():
    """CIFAR-10 from the configured data directory; absent is a failure under CI=true."""
    try:
        data.load("cifar10", "test", limit=1)
    except data.DataNotFoundError:
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip("CIFAR-10 data not available")


def test_retraining_on_a_batch_norm_checkpoint_end_to_end(tmp_path):
    """allconv-cifar10 has BatchNorm: one fine-tune round with a tiny budget runs, the net
    gets K + 1 outputs, its BN statistics move, and the fooling class is predicted for the
    fooling images more often, and with a higher probability, after the retraining."""
    _cifar_or_fail()
    config = fc.FoolingClassConfig(
        model="allconv-cifar10",
        rounds=1,
        mode="fine_tune",
        generations=3,
        popsize=8,
        chunk=3,
        epochs=4,
        batch_size=16,
        learning_rate=0.01,
        fooling_examples=32,
        train_limit=32,
        eval_limit=32,
        final_evolution=True,
    )
    lines: list[str] = []
    records = fc.retrain_with_fooling_class(config, tmp_path, log=lines.append)
    first, final = records
    assert first["round"] == 1 and first["mode"] == "fine_tune"
    assert first["fooling_images"] == 10 and first["fooling_examples"] == 32
    # 16 steps at lr 0.01 (one core: 0 -> 80 % of the fooling images, mean probability
    # 0.02 -> 0.31; at lr 0.05 the network was wrecked, 34 % clean accuracy)
    assert first["fooling_rate_after"] > first["fooling_rate_before"] + 0.3
    assert first["fooling_prob_after"] > first["fooling_prob_before"] + 0.1
    assert final["evolution_only"] is True and len(final["reached_per_run"]) == 1
    assert [json.loads(s) for s in (tmp_path / "rounds.jsonl").read_text().splitlines()] == records

    predict_fn, card = models.load(tmp_path / "round1")
    assert card.num_classes == 11 and card.class_names[-1] == "fooling"
    assert card["defence"]["base_model"] == "allconv-cifar10"
    probs = predict_fn(jnp.zeros((2, 32, 32, 3)))
    assert probs.shape == (2, 11)
    retrained, _ = models.load_variables(tmp_path / "round1")
    original, _ = models.load_variables("allconv-cifar10")
    moved = jax.tree_util.tree_map(
        lambda a, b: not np.allclose(a, b), retrained["batch_stats"], original["batch_stats"]
    )
    assert all(jax.tree_util.tree_leaves(moved))
    with pytest.raises(ValueError, match="already holds"):
        fc.retrain_with_fooling_class(config, tmp_path)
