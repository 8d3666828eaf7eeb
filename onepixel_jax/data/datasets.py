"""The datasets by name: where they are looked for, and how each is assembled.

:func:`load` returns ``(images, labels, class_names)``: images uint8 ``(N, H, W, C)`` (C = 1
for greyscale), labels int32 ``(N,)``, class names indexed by label.

Data directory: the ``data_dir`` argument, else the environment variable
``ONEPIXEL_DATA_DIR``, else ``../shared/data`` next to the repository or the working directory
(when present), else the user cache directory (``$XDG_CACHE_HOME/onepixel_jax/data``, default
``~/.cache/onepixel_jax/data``). The first directory holding the dataset is used.

Local layouts understood (paths relative to the data directory):

* ``cifar10/``: ``train_1.npz`` ... ``train_5.npz`` and ``test_first1000.npz`` (arrays ``x``
  uint8 NHWC, ``y``), ``test_jpeg_q75_lossy.tar`` (``test/<class>/NNNN.jpg``); or the official
  python version (``cifar-10-batches-py/`` or ``cifar-10-python.tar.gz``), read with a
  restricted unpickler; or class-per-folder trees ``train/<class>/*.png`` and ``test/...``.
* ``mnist/``: the idx files (``train-images-idx3-ubyte[.gz]`` ...), or class-per-folder trees.
* ``imagenet_sample/``: JPEGs plus ``labels.csv`` (``file,synset,class_index,name``).
* ``tfds/<name>/``: a copy prepared by tensorflow-datasets (``cifar10``, ``mnist``), for
  instance by an earlier ``download=True``.
* ``digits`` needs no files (scikit-learn ships it).

Downloads happen only when asked: with ``download=True`` a missing ``cifar10`` or ``mnist``
is fetched by tensorflow-datasets (the ``tfds`` extra) into ``data_dir`` (else
``ONEPIXEL_DATA_DIR``, else the cache directory) under ``tfds/``. Without it, a dataset found
nowhere raises :class:`DataNotFoundError` at once, without importing tensorflow.

Files whose SHA-256 is known (:mod:`onepixel_jax.data.checksums`) are verified once per
process; a mismatch, truncated or corrupt file raises ``ValueError`` naming the file.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from onepixel_jax.data import download as download_lib
from onepixel_jax.data.checksums import read_verified
from onepixel_jax.data.formats import (
    decode_image,
    load_image_folder,
    read_cifar_python,
    read_idx,
    read_image_tar,
    read_npz,
)

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "DOWNLOADABLE",
    "ENV_VAR",
    "IMAGE_SHAPES",
    "DataNotFoundError",
    "candidate_dirs",
    "download_dir",
    "load",
]

ENV_VAR = "ONEPIXEL_DATA_DIR"

# split names accepted by each dataset
DATASETS: dict[str, tuple[str, ...]] = {
    "cifar10": ("train", "test", "test-jpeg"),
    "mnist": ("train", "test"),
    "digits": ("train", "test"),
    "imagenet-sample": ("test",),
}

# the image shape (H, W, C) of each dataset
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "cifar10": (32, 32, 3),
    "mnist": (28, 28, 1),
    "digits": (8, 8, 1),
    "imagenet-sample": (227, 227, 3),
}

# (dataset, split) pairs that tensorflow-datasets can provide
DOWNLOADABLE = {("cifar10", "train"), ("cifar10", "test"), ("mnist", "train"), ("mnist", "test")}

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
MNIST_CLASSES = tuple(str(i) for i in range(10))

_SUBDIR = {"cifar10": "cifar10", "mnist": "mnist", "imagenet-sample": "imagenet_sample"}


class DataNotFoundError(FileNotFoundError):
    """No data directory holds the requested dataset (and no download was asked for)."""


# ---------------------------------------------------------------------------------------------
# Data directory


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "onepixel_jax" / "data"


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched for data, in order (see the module docstring)."""
    if data_dir is not None:
        return [Path(data_dir)]
    dirs: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(Path(env))
    for base in (_repo_root(), Path.cwd()):
        shared = base.parent / "shared" / "data"
        if shared not in dirs:
            dirs.append(shared)
    dirs.append(_cache_dir())
    return dirs


def download_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Where ``download=True`` puts data: ``data_dir``, else ``ONEPIXEL_DATA_DIR``, else the
    cache directory."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else _cache_dir()


def _local_source(name: str, data_dir: str | os.PathLike | None) -> tuple[str, Path] | None:
    """``("files", dataset folder)`` or ``("tfds", data root)`` of the first directory holding
    ``name``; ``None`` when none does."""
    for root in candidate_dirs(data_dir):
        sub = root / _SUBDIR[name]
        if sub.is_dir() and any(sub.iterdir()):
            return "files", sub
        if download_lib.prepared(root, name):
            return "tfds", root
    return None


def _not_found(name: str, split: str, data_dir: str | os.PathLike | None) -> DataNotFoundError:
    looked = ", ".join(str(d / _SUBDIR[name]) for d in candidate_dirs(data_dir))
    where = f"pass data_dir= (or set {ENV_VAR}) to a folder holding {_SUBDIR[name]}/"
    if (name, split) in DOWNLOADABLE:
        hint = (
            f"{where}, or pass download=True (--download on the command line) to fetch it "
            "with tensorflow-datasets"
        )
    else:
        hint = f"{where}; it cannot be downloaded"
    return DataNotFoundError(f"dataset {name!r} not found in {looked}; {hint}")


# ---------------------------------------------------------------------------------------------
# Datasets


def _cifar10(sub: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    classes = list(CIFAR10_CLASSES)
    classes_file = sub / "classes.txt"
    if classes_file.is_file():
        classes = read_verified(classes_file, sub.parent).decode().split()
    if split == "test-jpeg":
        return _cifar10_jpeg(sub, classes)
    files = [f"train_{i}.npz" for i in range(1, 6)] if split == "train" else ["test_first1000.npz"]
    if all((sub / f).is_file() for f in files):
        parts = [read_npz(read_verified(sub / f, sub.parent), sub / f) for f in files]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        return x, y, classes
    official = read_cifar_python(sub, split)
    if official is not None:
        return official[0], official[1], classes
    tree = sub / split
    if tree.is_dir():
        return load_image_folder(tree, class_names=classes)
    raise ValueError(f"{sub}: no CIFAR-10 {split!r} files in a known layout")


def _cifar10_jpeg(sub: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    path = sub / "test_jpeg_q75_lossy.tar"
    if not path.is_file():
        tree = sub / "test-jpeg"
        if tree.is_dir():
            return load_image_folder(tree, class_names=classes)
        raise ValueError(f"{path}: not found (needed for split 'test-jpeg')")
    x, y = read_image_tar(read_verified(path, sub.parent), str(path), classes)
    return x, y, classes


def _mnist(sub: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    prefix = "train" if split == "train" else "t10k"
    found = {}
    for kind, ndim in (("images", 3), ("labels", 1)):
        for suffix in (".gz", ""):
            p = sub / f"{prefix}-{kind}-idx{ndim}-ubyte{suffix}"
            if p.is_file():
                found[kind] = read_idx(read_verified(p, sub.parent))
                arr = found[kind]
                if arr.ndim != ndim:
                    raise ValueError(f"{p}: expected {ndim} dimensions, got {arr.shape}")
                break
    classes = list(MNIST_CLASSES)
    if len(found) == 2:
        x, y = found["images"], found["labels"]
        if len(x) != len(y):
            raise ValueError(f"{sub}: {len(x)} images but {len(y)} labels")
        if x.dtype != np.uint8:
            raise ValueError(f"{sub}: MNIST images must be unsigned bytes, got {x.dtype}")
        return x[..., None], y, classes  # labels are checked (never cast) by load()
    tree = sub / split
    if tree.is_dir():
        return load_image_folder(tree, mode="L", class_names=classes)
    raise ValueError(f"{sub}: no MNIST {split!r} idx files")


DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0


def _digits(split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's 8x8 digits (1,797 images, values 0-16 rescaled to 0-255 uint8).

    Deterministic split: a permutation drawn with ``numpy.random.default_rng(0)``; its last
    360 images are ``test``, the other 1,437 ``train``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = d.target.astype(np.int32)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(x))
    idx = order[:-DIGITS_TEST_SIZE] if split == "train" else order[-DIGITS_TEST_SIZE:]
    return x[idx], y[idx], [str(i) for i in range(10)]


IMAGENET_SIZE = 227


def _imagenet_sample(sub: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image

    labels_csv = sub / "labels.csv"
    if not labels_csv.is_file():
        raise ValueError(f"{labels_csv}: not found")
    text = read_verified(labels_csv, sub.parent).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"file", "class_index"} <= set(rows[0]):
        raise ValueError(f"{labels_csv}: expected the header file,synset,class_index,name")
    names = [f"class {i}" for i in range(1000)]
    images, labels = [], []
    for row in rows:
        idx = int(row["class_index"])
        names[idx] = row.get("name") or row.get("synset") or names[idx]
        path = sub / row["file"]
        if path.name != row["file"]:
            raise ValueError(f"{labels_csv}: file names must not contain directories")
        image = decode_image(read_verified(path, sub.parent), str(path), "RGB")
        image = Image.fromarray(image).resize((IMAGENET_SIZE, IMAGENET_SIZE), Image.NEAREST)
        images.append(np.asarray(image, np.uint8))
        labels.append(idx)
    return np.stack(images), np.asarray(labels, np.int32), names


def _tfds(name: str, split: str, root: Path, download: bool):
    classes = list(CIFAR10_CLASSES) if name == "cifar10" else list(MNIST_CLASSES)
    try:
        return download_lib.load_tfds(name, split, root, download=download, class_names=classes)
    except download_lib.TfdsMissingError as err:
        raise DataNotFoundError(f"dataset {name!r}: {err}") from None


def load(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    download: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load a dataset split.

    Args:
      name: ``"cifar10"``, ``"mnist"``, ``"digits"`` or ``"imagenet-sample"``.
      split: ``"train"`` or ``"test"``; for ``cifar10`` also ``"test-jpeg"`` (the full 10,000
        test images as lossy JPEGs; ``"test"`` is the lossless first 1,000 of the shared data,
        or the full lossless test batch of the official archive or of tensorflow-datasets);
        ``imagenet-sample`` has only ``"test"`` (its 100 images, resized to 227x227 with the
        nearest filter).
      data_dir: directory holding ``cifar10/``, ``mnist/`` ... (see module docstring).
      limit: keep only the first ``limit`` images.
      download: fetch a missing ``cifar10`` / ``mnist`` split with tensorflow-datasets (the
        ``tfds`` extra) into :func:`download_dir`. Never done without it.

    Returns:
      ``(images, labels, class_names)``: uint8 ``(N, H, W, C)``, int32 ``(N,)``, list of str.

    Raises:
      ValueError: unknown name/split, bad limit, corrupt or checksum-mismatching file.
      DataNotFoundError: the dataset is in none of the searched directories (one line naming
        them, ``data_dir`` / ``ONEPIXEL_DATA_DIR`` and ``download=True``), or a download was
        asked for without tensorflow-datasets installed.
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}, got {name!r}")
    if not isinstance(split, str) or split not in DATASETS[name]:
        raise ValueError(f"split for {name!r} must be one of {DATASETS[name]}, got {split!r}")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 0
    ):
        raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")
    if data_dir is not None and not isinstance(data_dir, str | os.PathLike):
        raise TypeError(f"data_dir must be a path or None, got {type(data_dir).__name__}")
    if not isinstance(download, bool):
        raise TypeError(f"download must be a bool, got {type(download).__name__}")
    if name == "digits":
        x, y, classes = _digits(split)
    else:
        source = _local_source(name, data_dir)
        if source is None:
            if not download or (name, split) not in DOWNLOADABLE:
                raise _not_found(name, split, data_dir)
            x, y, classes = _tfds(name, split, download_dir(data_dir), True)
        elif source[0] == "tfds":
            if (name, split) not in DOWNLOADABLE:
                raise _not_found(name, split, data_dir)
            x, y, classes = _tfds(name, split, source[1], download)
        elif name == "cifar10":
            x, y, classes = _cifar10(source[1], split)
        elif name == "mnist":
            x, y, classes = _mnist(source[1], split)
        else:
            x, y, classes = _imagenet_sample(source[1])
    _check_arrays(name, split, x, y, classes)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return np.ascontiguousarray(x), y.astype(np.int32), list(classes)


def _check_arrays(name: str, split: str, x: np.ndarray, y: np.ndarray, classes) -> None:
    """Images uint8 ``(N, H, W, C)`` and integer labels that are class indices: a label is
    never cast into int32 (where 2**32 + 3 would silently become class 3)."""
    what = f"dataset {name!r} split {split!r}"
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype != np.uint8 or x.ndim != 4 or len(x) == 0:
        raise ValueError(
            f"{what}: images must be non-empty uint8 (N, H, W, C), got {x.dtype} {x.shape}"
        )
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{what}: labels must be {len(x)} integers, got {y.dtype} {y.shape}")
    k = len(classes)
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= k:
        raise ValueError(
            f"{what}: labels must be class indices in [0, {k}), found {lo if lo < 0 else hi}"
        )
