"""Dead-pixel augmentation and its hook in the zoo's train step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from onepixel_jax.defences import dead_pixels
from onepixel_jax.zoo import architectures as arch_lib
from onepixel_jax.zoo import training


def _batch(b=64, h=8, w=8, c=3):
    return jnp.full((b, h, w, c), 100.0, jnp.float32)


@pytest.mark.parametrize("colours", ["random", "extreme"])
@pytest.mark.parametrize("count", [1, 3])
def test_changes_at_most_count_pixels_of_chosen_images(colours, count):
    x = _batch()
    out = np.asarray(jax.jit(dead_pixels.augmentation(0.5, count, colours))(jax.random.key(1), x))
    changed = np.any(out != 100.0, axis=-1).reshape(len(out), -1).sum(1)
    assert changed.max() <= count
    assert 10 < (changed > 0).sum() < 54  # about half of 64 images
    if colours == "extreme":
        assert set(np.unique(out)) <= {0.0, 100.0, 255.0}
    else:
        assert out.min() >= 0.0 and out.max() <= 255.0


def test_rate_zero_and_one():
    x = _batch(16)
    np.testing.assert_array_equal(
        np.asarray(dead_pixels.dead_pixels(jax.random.key(0), x, 0.0, 2)), np.asarray(x)
    )
    out = np.asarray(dead_pixels.dead_pixels(jax.random.key(0), x, 1.0, 1, "extreme"))
    assert np.all(np.any(out != 100.0, axis=-1).reshape(16, -1).sum(1) == 1)


def test_bad_settings():
    with pytest.raises(ValueError):
        dead_pixels.augmentation(1.5)
    with pytest.raises(ValueError):
        dead_pixels.augmentation(0.1, 0)
    with pytest.raises(ValueError):
        dead_pixels.augmentation(0.1, 1, "white")
    with pytest.raises(ValueError):
        training.TrainConfig(dead_pixel_rate=2.0)
    assert dead_pixels.augmentation(0.1, 2) is dead_pixels.augmentation(0.1, 2)


def test_train_step_applies_batch_fn():
    """The hook runs inside the jitted step: a batch_fn that blanks the images makes the
    step see constant inputs (same loss for two different batches)."""
    model = arch_lib.create("digits-cnn", num_classes=10)
    variables = arch_lib.init_variables(model, (8, 8, 1), jax.random.PRNGKey(0))
    cfg = training.TrainConfig(model="digits-cnn", dataset="digits")
    blank = lambda key, images: jnp.zeros_like(images)  # noqa: E731
    state = training.create_train_state(
        model, variables, cfg, jax.random.PRNGKey(1), batch_fn=blank
    )
    labels = jnp.arange(8) % 10
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (8, 8, 8, 1)).astype(np.float32)
    b = rng.integers(0, 256, (8, 8, 8, 1)).astype(np.float32)
    _, ma = training.jit_train_step(state, {"image": a, "label": labels})
    _, mb = training.jit_train_step(state, {"image": b, "label": labels})
    assert float(ma["loss"]) == pytest.approx(float(mb["loss"]), rel=1e-6)
    plain = state.replace(batch_fn=None)
    _, pa = training.jit_train_step(plain, {"image": a, "label": labels})
    _, pb = training.jit_train_step(plain, {"image": b, "label": labels})
    assert float(pa["loss"]) != pytest.approx(float(pb["loss"]), rel=1e-6)
