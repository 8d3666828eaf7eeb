"""The resumable fooling run (fooling/run.py) on a tiny linear classifier: state files.

Every ``run_fooling`` call compiles its own evolution, so the tests that resume, damage or
re-check a 2-generation run start from copies of one such run (``two_generations``) instead
of each running it again.
"""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from onepixel_jax.files import DamagedFileError
from onepixel_jax.fooling.run import FoolConfig, run_fooling

SHAPE = (4, 4, 1)
CLASSES = ["a", "b", "c"]
WEIGHTS = jax.random.normal(jax.random.PRNGKey(0), (16, 3)) / 64.0


def predict_fn(images: jax.Array) -> jax.Array:
    flat = jnp.reshape(jnp.asarray(images, jnp.float32), (images.shape[0], -1))
    return jax.nn.softmax(flat @ WEIGHTS, axis=-1)


def run(out, generations, **kwargs):
    config = FoolConfig(model="linear", popsize=6, chunk=2, **kwargs)
    return run_fooling(config, predict_fn, SHAPE, CLASSES, out, generations, log=lambda _: None)


@pytest.fixture(scope="module")
def two_generations(tmp_path_factory):
    """A run stopped after 2 generations (tests copy it before they change it)."""
    out = tmp_path_factory.mktemp("fool") / "two"
    run(out, 2)
    return out


def copy_of(run_dir, dest):
    shutil.copytree(run_dir, dest, dirs_exist_ok=True)
    return dest


def test_resumed_run_equals_an_uninterrupted_one(tmp_path, two_generations):
    whole = run(tmp_path / "whole", 4)
    split = run(copy_of(two_generations, tmp_path / "split"), 4)
    assert split["best_confidence"] == whole["best_confidence"]
    np.testing.assert_array_equal(
        np.load(tmp_path / "split" / "best_images_uint8.npy"),
        np.load(tmp_path / "whole" / "best_images_uint8.npy"),
    )
    assert split["machine"]["jax_backend"] == jax.default_backend()
    assert json.loads((tmp_path / "split" / "summary.json").read_text()) == split


def test_torn_progress_line_is_cut_on_resume(tmp_path, two_generations):
    copy_of(two_generations, tmp_path)
    with open(tmp_path / "progress.jsonl", "a") as fh:
        fh.write('{"generation": 4, "reach')  # a kill in the middle of a write
    run(tmp_path, 4)
    lines = (tmp_path / "progress.jsonl").read_text().splitlines()
    assert [json.loads(line)["generation"] for line in lines] == [2, 4]


@pytest.mark.parametrize("name", ["state.npz", "config.json"])
def test_damaged_files_are_named(tmp_path, two_generations, name):
    copy_of(two_generations, tmp_path)
    (tmp_path / name).write_bytes(b"\x00garbage")
    with pytest.raises(DamagedFileError) as info:
        run(tmp_path, 4)
    assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)


def test_changed_config_and_bad_length_are_refused(tmp_path, two_generations):
    copy_of(two_generations, tmp_path)
    with pytest.raises(ValueError, match="different config.*seed"):
        run(tmp_path, 2, seed=1)
    with pytest.raises(ValueError, match="generations"):
        run(tmp_path / "x", 0)
