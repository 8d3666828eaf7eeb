"""tensorflow-datasets as a source: reading a prepared copy, and downloading when asked.

Nothing here runs unless a caller asks: :func:`onepixel_jax.data.load` downloads only with
``download=True`` and reads a prepared copy only when one is on disk (``<root>/tfds/<name>/``),
so a machine without data and without the flag never touches tensorflow or the network.
TensorFlow is imported with the GPU hidden from it, so JAX keeps the accelerator memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["TFDS_SUBDIR", "load_tfds", "prepared"]

TFDS_SUBDIR = "tfds"


class TfdsMissingError(ImportError):
    """tensorflow-datasets (the ``tfds`` extra) is not installed."""


def prepared(root: Path, name: str) -> bool:
    """Whether ``root/tfds/<name>/<version>/`` holds a prepared tensorflow-datasets copy."""
    base = root / TFDS_SUBDIR / name
    return base.is_dir() and any(base.glob("*/dataset_info.json"))


def _import_tfds():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise TfdsMissingError(
            f"tensorflow-datasets is not installed ({err}); install the extra: "
            "pip install 'onepixel-jax[tfds]'"
        ) from None
    tf.config.set_visible_devices([], "GPU")  # leave accelerator memory to JAX
    return tfds


def load_tfds(
    name: str, split: str, root: Path, *, download: bool, class_names: list[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``name``/``split`` through tensorflow-datasets with ``root/tfds`` as its data directory.

    ``download=False`` reads a prepared copy only (no network). Returns uint8 NHWC images,
    int32 labels and ``class_names`` (tensorflow-datasets uses the same label order).
    """
    tfds = _import_tfds()
    ds, info = tfds.load(
        name,
        split=split,
        data_dir=str(root / TFDS_SUBDIR),
        download=download,
        as_supervised=True,
        with_info=True,
    )
    if info.features["label"].num_classes != len(class_names):
        raise ValueError(f"tensorflow-datasets {name} has an unexpected number of classes")
    # Batched iteration, not ``batch_size=-1``: the single-element path aborts the process
    # (std::length_error) with tensorflow 2.21 / tensorflow-datasets 4.9.
    xs, ys = [], []
    for x, y in tfds.as_numpy(ds.batch(4096)):
        xs.append(np.asarray(x, np.uint8))
        ys.append(np.asarray(y, np.int32))
    if not xs:
        raise ValueError(f"tensorflow-datasets returned no examples for {name}/{split}")
    return np.concatenate(xs), np.concatenate(ys), list(class_names)
