"""Datasets as NumPy arrays: CIFAR-10, MNIST, scikit-learn digits and an ImageNet sample.

``load(name, split, data_dir=None, limit=None, download=False)`` returns
``(images, labels, class_names)`` (uint8 NHWC, int32, list of str). Nothing is downloaded
unless ``download=True``; a dataset found nowhere raises :class:`DataNotFoundError`.

Modules: :mod:`datasets` (names, search directories, :func:`load`), :mod:`formats` (idx,
CIFAR-10 python batches through a restricted unpickler, npz, image folders and tars),
:mod:`checksums` (known SHA-256s, verified reading) and :mod:`download`
(tensorflow-datasets, only when asked).
"""

# The package imports this module first: importing the command line's error module here
# installs, when this process is the onepixel command, its SIGINT/SIGTERM handlers before
# JAX is imported (a Ctrl-C during JAX's start-up would otherwise be swallowed by one of its
# garbage-collection callbacks). A program importing the package is not affected.
from onepixel_jax.cli import errors as _cli_errors  # noqa: F401
from onepixel_jax.data import checksums, datasets, download, formats
from onepixel_jax.data.checksums import KNOWN_SHA256, dataset_checksums
from onepixel_jax.data.datasets import (
    CIFAR10_CLASSES,
    DATASETS,
    DOWNLOADABLE,
    ENV_VAR,
    IMAGE_SHAPES,
    DataNotFoundError,
    candidate_dirs,
    download_dir,
    load,
)
from onepixel_jax.data.formats import (
    load_image_folder,
    read_idx,
    read_image_tar,
    read_npz,
    restricted_unpickle,
)

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "DOWNLOADABLE",
    "ENV_VAR",
    "IMAGE_SHAPES",
    "KNOWN_SHA256",
    "DataNotFoundError",
    "candidate_dirs",
    "checksums",
    "dataset_checksums",
    "datasets",
    "download",
    "download_dir",
    "formats",
    "load",
    "load_image_folder",
    "read_idx",
    "read_image_tar",
    "read_npz",
    "restricted_unpickle",
]
