"""Datasets as NumPy arrays: CIFAR-10, MNIST, scikit-learn digits and an ImageNet sample.

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
* ``digits`` needs no files (scikit-learn ships it).

Files whose SHA-256 is known (the shared data README, or a ``SHA256SUMS`` file in the data
directory) are verified once per process; a mismatch, truncated or corrupt file raises
``ValueError`` naming the file. With the ``tfds`` extra installed, tensorflow-datasets is the
fallback for ``cifar10`` and ``mnist`` when no local copy is found.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "DATASETS",
    "DataNotFoundError",
    "candidate_dirs",
    "load",
    "read_idx",
    "restricted_unpickle",
]

ENV_VAR = "ONEPIXEL_DATA_DIR"

# split names accepted by each dataset
DATASETS: dict[str, tuple[str, ...]] = {
    "cifar10": ("train", "test", "test-jpeg"),
    "mnist": ("train", "test"),
    "digits": ("train", "test"),
    "imagenet-sample": ("test",),
}

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

# SHA-256 of the files of the shared data directory (from its README), by relative path.
KNOWN_SHA256: dict[str, str] = {
    "cifar10/classes.txt": "2ce042b1e0b48db4bb214408e6414ba18b2731c24af244f2d6c112fddf31af00",
    "cifar10/test_first1000.npz": (
        "7a0a78b8049f1340452c1fe46c962227652e387079f86009a48c94b8a8449bdf"
    ),
    "cifar10/test_jpeg_q75_lossy.tar": (
        "e48adedee3b04d8030be234342ac61b1d57961c070be4e10380b98c98b8ede40"
    ),
    "cifar10/train_1.npz": "868c8121a16e0e7f64915713418f931435dd8c6a5be158124740fc36f4aa2a6c",
    "cifar10/train_2.npz": "d858c2d0d5215b564711228e25457ef8204a40f2da717176546fa8c3c3102849",
    "cifar10/train_3.npz": "6ea2e0606e82dc721dac8d5c25d6d41c40c58c2a430c20f63865f775d8fe7b12",
    "cifar10/train_4.npz": "692ca6b6e45068ba416cbbfa5be6675b78b0895cd6165873ba147de86d727183",
    "cifar10/train_5.npz": "941c0aa35d8a71ebd26e0ccbb641bcc086f95ce698e8e5c60b6a8fdc4067638b",
    "mnist/t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    ),
    "mnist/t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    ),
    "mnist/train-images-idx3-ubyte.gz": (
        "7ff28fd295f802eefc6d40e461175dfe4b969b1842b2abc8c6dc8c20711cf79f"
    ),
    "mnist/train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    "imagenet_sample/labels.csv": (
        "239b232b4e4e55dc08558d6b89c93935d04e2b95cc47a0c5dc4c7927c9161893"
    ),
}

_SUBDIR = {"cifar10": "cifar10", "mnist": "mnist", "imagenet-sample": "imagenet_sample"}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm")

# (resolved path, size, mtime_ns) of files whose checksum was verified in this process
_VERIFIED: set[tuple[str, int, int]] = set()
_SUMS_CACHE: dict[str, dict[str, str]] = {}


class DataNotFoundError(FileNotFoundError):
    """No data directory holds the requested dataset."""


# ---------------------------------------------------------------------------------------------
# Data directory


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


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


def _dataset_dir(name: str, data_dir: str | os.PathLike | None) -> Path | None:
    for root in candidate_dirs(data_dir):
        sub = root / _SUBDIR[name]
        if sub.is_dir() and any(sub.iterdir()):
            return sub
    return None


def _not_found(name: str, data_dir: str | os.PathLike | None) -> DataNotFoundError:
    looked = "\n".join(f"  - {d / _SUBDIR[name]}" for d in candidate_dirs(data_dir))
    hint = (
        "Put the files there (see shared/data/README.md for the layout), set "
        f"{ENV_VAR}, pass data_dir=..., or install the 'tfds' extra to download them."
    )
    if name == "imagenet-sample":
        hint = f"Put the JPEGs and labels.csv there, set {ENV_VAR}, or pass data_dir=...."
    return DataNotFoundError(f"dataset {name!r} not found; looked in:\n{looked}\n{hint}")


# ---------------------------------------------------------------------------------------------
# Checksums


def _known_sums(root: Path) -> dict[str, str]:
    """Known SHA-256 by path relative to ``root``: the README table plus ``root/SHA256SUMS``."""
    key = str(root.resolve())
    if key not in _SUMS_CACHE:
        sums = dict(KNOWN_SHA256)
        sums_file = root / "SHA256SUMS"
        if sums_file.is_file():
            for line in sums_file.read_text(errors="replace").splitlines():
                parts = line.split(None, 1)
                if len(parts) == 2 and len(parts[0]) == 64:
                    sums[parts[1].strip().lstrip("*").removeprefix("./")] = parts[0].lower()
        _SUMS_CACHE[key] = sums
    return _SUMS_CACHE[key]


def _read_verified(path: Path, dataset_dir: Path) -> bytes:
    """Bytes of ``path``; checked against its known SHA-256 the first time in this process."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from None
    root = dataset_dir.parent
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    expected = _known_sums(root).get(rel)
    if expected is None:
        return data
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return data
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ValueError(
            f"{path}: SHA-256 {digest} does not match the known {expected} "
            f"({len(data)} bytes read); the file is truncated or corrupt, replace it"
        )
    _VERIFIED.add(key)
    return data


# ---------------------------------------------------------------------------------------------
# Readers


def _load_npz(data: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            x, y = z["x"], z["y"]
    except KeyError as err:
        raise ValueError(f"{path}: npz file lacks array {err}") from None
    except Exception as err:  # zipfile.BadZipFile, ValueError, EOFError, OSError
        raise ValueError(f"{path}: not a readable npz file ({type(err).__name__}: {err})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or len(x) != len(y):
        raise ValueError(
            f"{path}: expected x uint8 (N, H, W, C) and y (N,), got {x.shape} {y.shape}"
        )
    return x, y.astype(np.int32)


_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(source: str | os.PathLike | bytes) -> np.ndarray:
    """Array stored in an idx file (the MNIST format), gzip-compressed or not.

    ``source`` is a path or the file's bytes. Raises ``ValueError`` for a truncated or
    malformed file.
    """
    name = "<bytes>"
    if isinstance(source, bytes | bytearray):
        raw = bytes(source)
    else:
        name = str(source)
        try:
            raw = Path(source).read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read {name}: {err.strerror or err}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{name}: corrupt or truncated gzip stream ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{name}: not an idx file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{name}: unknown idx data type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{name}: truncated idx header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{name}: idx header promises {expected} data bytes for shape {shape}, "
            f"found {len(raw) - header}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only what the official CIFAR-10 python batches contain: NumPy arrays (rebuilt via
    ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``) inside dicts,
    lists, bytes, strings and numbers. Any other global is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle API
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a data file")


def restricted_unpickle(data: bytes) -> object:
    """Unpickle a CIFAR-10 python batch with :class:`_RestrictedUnpickler` (``encoding='bytes'``).

    Raises ``ValueError`` for anything else (including pickles that call functions)."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        kind = "unsafe" if "refusing" in str(err) else "corrupt"
        raise ValueError(f"{kind} pickle: {err}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"corrupt pickle ({type(err).__name__}: {err})") from None


def _get(d: dict, key: str) -> object:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise ValueError(f"CIFAR-10 batch lacks the key {key!r}")


def _cifar_python_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    obj = restricted_unpickle(data)
    if not isinstance(obj, dict):
        raise ValueError(f"{name}: expected a dict, got {type(obj).__name__}")
    x = np.asarray(_get(obj, "data"))
    labels = _get(obj, "labels")
    if not isinstance(labels, list | np.ndarray):
        raise ValueError(f"{name}: labels must be a list")
    y = np.asarray(labels, dtype=np.int32)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
        raise ValueError(f"{name}: expected data uint8 (N, 3072) and N labels, got {x.shape}")
    # three 1,024-byte colour planes per image -> HWC
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), y


def _cifar_python(sub: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    folder = sub / "cifar-10-batches-py"
    if folder.is_dir() and all((folder / n).is_file() for n in names):
        parts = [_cifar_python_batch((folder / n).read_bytes(), str(folder / n)) for n in names]
    else:
        archive = sub / "cifar-10-python.tar.gz"
        if not archive.is_file():
            return None
        parts = []
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for n in names:
                    member = tar.extractfile(f"cifar-10-batches-py/{n}")
                    if member is None:
                        raise ValueError(f"{archive}: member {n} is not a file")
                    parts.append(_cifar_python_batch(member.read(), f"{archive}:{n}"))
        except (tarfile.TarError, KeyError, EOFError, OSError, zlib.error) as err:
            raise ValueError(f"{archive}: corrupt or incomplete archive ({err})") from None
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _decode_image(data: bytes, name: str, mode: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert(mode), dtype=np.uint8)
    except Exception as err:  # PIL raises many types for bad files
        raise ValueError(f"{name}: cannot decode image ({err})") from None


def load_image_folder(
    root: str | os.PathLike, *, mode: str = "RGB", class_names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Class-per-folder image tree ``root/<class>/<image>`` -> ``(images, labels, classes)``.

    Classes are ``class_names`` when given (every folder must be one of them), else the sorted
    folder names. Images are sorted by file name within a class; all must share one size.
    ``mode`` is a Pillow mode: ``"RGB"`` or ``"L"`` (greyscale, returned with C = 1).
    """
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    classes = list(class_names) if class_names is not None else [p.name for p in folders]
    images, labels = [], []
    for folder in folders:
        if folder.name not in classes:
            raise ValueError(f"{folder}: folder is not one of the classes {classes}")
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() in _IMAGE_SUFFIXES:
                images.append(_decode_image(f.read_bytes(), str(f), mode))
                labels.append(classes.index(folder.name))
    if not images:
        raise ValueError(f"{root}: no images found in class folders")
    if len({im.shape for im in images}) != 1:
        raise ValueError(f"{root}: images differ in size")
    x = np.stack(images)
    if x.ndim == 3:
        x = x[..., None]
    return x, np.asarray(labels, np.int32), classes


# ---------------------------------------------------------------------------------------------
# Datasets


def _cifar10(sub: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    classes = list(CIFAR10_CLASSES)
    classes_file = sub / "classes.txt"
    if classes_file.is_file():
        classes = _read_verified(classes_file, sub).decode().split()
    if split == "test-jpeg":
        return _cifar10_jpeg(sub, classes)
    files = [f"train_{i}.npz" for i in range(1, 6)] if split == "train" else ["test_first1000.npz"]
    if all((sub / f).is_file() for f in files):
        parts = [_load_npz(_read_verified(sub / f, sub), sub / f) for f in files]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        return x, y, classes
    official = _cifar_python(sub, split)
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
    data = _read_verified(path, sub)
    items = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar.getmembers():
                parts = member.name.split("/")
                if not member.isfile() or len(parts) != 3 or parts[1] not in classes:
                    continue
                f = tar.extractfile(member)
                if f is None:
                    continue
                image = _decode_image(f.read(), f"{path}:{member.name}", "RGB")
                items.append((classes.index(parts[1]), parts[2], image))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{path}: corrupt or truncated tar ({err})") from None
    if not items:
        raise ValueError(f"{path}: no images test/<class>/<file> found")
    items.sort(key=lambda t: (t[0], t[1]))
    x = np.stack([t[2] for t in items])
    y = np.asarray([t[0] for t in items], np.int32)
    return x, y, classes


def _mnist(sub: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    prefix = "train" if split == "train" else "t10k"
    found = {}
    for kind, ndim in (("images", 3), ("labels", 1)):
        for suffix in (".gz", ""):
            p = sub / f"{prefix}-{kind}-idx{ndim}-ubyte{suffix}"
            if p.is_file():
                found[kind] = read_idx(_read_verified(p, sub))
                arr = found[kind]
                if arr.ndim != ndim:
                    raise ValueError(f"{p}: expected {ndim} dimensions, got {arr.shape}")
                break
    classes = [str(i) for i in range(10)]
    if len(found) == 2:
        x, y = found["images"], found["labels"]
        if len(x) != len(y):
            raise ValueError(f"{sub}: {len(x)} images but {len(y)} labels")
        return x[..., None].astype(np.uint8), y.astype(np.int32), classes
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
    text = _read_verified(labels_csv, sub).decode()
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
        image = _decode_image(_read_verified(path, sub), str(path), "RGB")
        image = Image.fromarray(image).resize((IMAGENET_SIZE, IMAGENET_SIZE), Image.NEAREST)
        images.append(np.asarray(image, np.uint8))
        labels.append(idx)
    return np.stack(images), np.asarray(labels, np.int32), names


def _tfds(name: str, split: str) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """tensorflow-datasets fallback; ``None`` when the extra is not installed."""
    try:
        import tensorflow as tf
        import tensorflow_datasets as tfds
    except ImportError:
        return None
    tf.config.set_visible_devices([], "GPU")  # leave accelerator memory to JAX
    cache = _cache_dir() / "tfds"
    ds, info = tfds.load(name, split=split, data_dir=str(cache), as_supervised=True, with_info=True)
    # Batched iteration, not ``batch_size=-1``: the single-element path aborts the process
    # (std::length_error) with tensorflow 2.21 / tensorflow-datasets 4.9.
    xs, ys = [], []
    for x, y in tfds.as_numpy(ds.batch(4096)):
        xs.append(np.asarray(x, np.uint8))
        ys.append(np.asarray(y, np.int32))
    if not xs:
        raise ValueError(f"tensorflow-datasets returned no examples for {name}/{split}")
    # The local loaders' names (tfds uses the same label order for both datasets).
    classes = list(CIFAR10_CLASSES) if name == "cifar10" else [str(i) for i in range(10)]
    if info.features["label"].num_classes != len(classes):
        raise ValueError(f"tensorflow-datasets {name} has an unexpected number of classes")
    return np.concatenate(xs), np.concatenate(ys), classes


def load(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load a dataset split.

    Args:
      name: ``"cifar10"``, ``"mnist"``, ``"digits"`` or ``"imagenet-sample"``.
      split: ``"train"`` or ``"test"``; for ``cifar10`` also ``"test-jpeg"`` (the full 10,000
        test images as lossy JPEGs; ``"test"`` is the lossless first 1,000 of the shared data,
        or the full lossless test batch of the official archive); ``imagenet-sample`` has only
        ``"test"`` (its 100 images, resized to 227x227 with the nearest filter).
      data_dir: directory holding ``cifar10/``, ``mnist/`` ... (see module docstring).
      limit: keep only the first ``limit`` images.

    Returns:
      ``(images, labels, class_names)``: uint8 ``(N, H, W, C)``, int32 ``(N,)``, list of str.

    Raises:
      ValueError: unknown name/split, bad limit, corrupt or checksum-mismatching file.
      DataNotFoundError: the dataset is in none of the searched directories.
    """
    if name not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}, got {name!r}")
    if split not in DATASETS[name]:
        raise ValueError(f"split for {name!r} must be one of {DATASETS[name]}, got {split!r}")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 0
    ):
        raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")
    if data_dir is not None and not isinstance(data_dir, str | os.PathLike):
        raise TypeError(f"data_dir must be a path or None, got {type(data_dir).__name__}")
    if name == "digits":
        x, y, classes = _digits(split)
    else:
        sub = _dataset_dir(name, data_dir)
        if sub is None:
            result = (
                _tfds(name, split)
                if name in ("cifar10", "mnist") and split != "test-jpeg"
                else None
            )
            if result is None:
                raise _not_found(name, data_dir)
            x, y, classes = result
        elif name == "cifar10":
            x, y, classes = _cifar10(sub, split)
        elif name == "mnist":
            x, y, classes = _mnist(sub, split)
        else:
            x, y, classes = _imagenet_sample(sub)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return np.ascontiguousarray(x), y.astype(np.int32), list(classes)
