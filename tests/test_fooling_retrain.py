"""The extra "fooling" output added before retraining."""

import jax.numpy as jnp
import numpy as np
import pytest

from onepixel_jax.fooling.retrain import extend_head


def test_extend_head_adds_a_zero_output_to_the_last_dense_layer_only():
    rng = np.random.default_rng(0)
    params = {
        f"Dense_{i}": {
            "kernel": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=3), jnp.float32),
        }
        for i in (0, 2, 10)  # numeric, not lexicographic, order picks Dense_10
    }
    new = extend_head({"params": params}, extra=2)["params"]
    assert new["Dense_10"]["kernel"].shape == (4, 5) and new["Dense_10"]["bias"].shape == (5,)
    np.testing.assert_array_equal(new["Dense_10"]["kernel"][:, :3], params["Dense_10"]["kernel"])
    np.testing.assert_array_equal(new["Dense_10"]["kernel"][:, 3:], 0.0)
    np.testing.assert_array_equal(new["Dense_10"]["bias"][3:], 0.0)
    for name in ("Dense_0", "Dense_2"):
        np.testing.assert_array_equal(new[name]["kernel"], params[name]["kernel"])
    with pytest.raises(ValueError, match="Dense"):
        extend_head({"params": {"Conv_0": {}}})
