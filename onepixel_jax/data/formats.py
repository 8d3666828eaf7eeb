"""File formats of the datasets, read into NumPy arrays without executing anything.

* :func:`read_idx`: the idx format of MNIST (gzip-compressed or not).
* :func:`restricted_unpickle` / :func:`read_cifar_python_batch`: the official CIFAR-10 python
  batches, through an unpickler that admits only NumPy arrays, dicts, lists and scalars.
* :func:`read_npz`: ``x``/``y`` arrays in an npz file (``allow_pickle=False``).
* :func:`load_image_folder` / :func:`read_image_tar`: class-per-folder image trees, as
  folders or inside a tar file.

Every reader raises ``ValueError`` naming the file for truncated, corrupt or unsafe input.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "decode_image",
    "load_image_folder",
    "read_cifar_python",
    "read_cifar_python_batch",
    "read_idx",
    "read_image_tar",
    "read_npz",
    "restricted_unpickle",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm")


def read_npz(data: bytes, path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``x`` (uint8 ``(N, H, W, C)``) and ``y`` (``(N,)``, returned int32) of an npz file's
    bytes, loaded without pickle. ``ValueError`` naming ``path`` for anything else."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            x, y = z["x"], z["y"]
    except KeyError as err:
        raise ValueError(f"{path}: npz file lacks array {err}") from None
    except Exception as err:  # zipfile.BadZipFile, ValueError, EOFError, OSError
        raise ValueError(f"{path}: not a readable npz file ({type(err).__name__}: {err})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"{path}: expected x uint8 (N, H, W, C) and y (N,), got {x.shape} {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{path}: labels y must be integers, got {y.dtype}")
    if y.size and (int(y.min()) < 0 or int(y.max()) > np.iinfo(np.int32).max):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise ValueError(f"{path}: labels y must be class indices >= 0, found {bad}")
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


def read_cifar_python_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch of the official CIFAR-10 python version -> ``(x uint8 (N, 32, 32, 3), y int32)``,
    read with :func:`restricted_unpickle`. ``ValueError`` naming ``name`` and what to do for a
    damaged file."""
    try:
        obj = restricted_unpickle(data)
    except ValueError as err:
        raise ValueError(
            f"{name}: {err}; the file is damaged or not a CIFAR-10 python batch: replace it "
            'with a fresh copy of the dataset (docs/models.md, "Data")'
        ) from None
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


def read_cifar_python(sub: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``split`` of the official python version in ``sub`` (``cifar-10-batches-py/`` or
    ``cifar-10-python.tar.gz``); ``None`` when neither is there."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    folder = sub / "cifar-10-batches-py"
    if folder.is_dir() and all((folder / n).is_file() for n in names):
        parts = [read_cifar_python_batch((folder / n).read_bytes(), str(folder / n)) for n in names]
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
                    parts.append(read_cifar_python_batch(member.read(), f"{archive}:{n}"))
        except (tarfile.TarError, KeyError, EOFError, OSError, zlib.error) as err:
            raise ValueError(f"{archive}: corrupt or incomplete archive ({err})") from None
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def decode_image(data: bytes, name: str, mode: str) -> np.ndarray:
    """An image file's bytes -> uint8 array in Pillow ``mode`` (``"RGB"`` or ``"L"``)."""
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
            if f.suffix.lower() in IMAGE_SUFFIXES:
                images.append(decode_image(f.read_bytes(), str(f), mode))
                labels.append(classes.index(folder.name))
    if not images:
        raise ValueError(f"{root}: no images found in class folders")
    if len({im.shape for im in images}) != 1:
        raise ValueError(f"{root}: images differ in size")
    x = np.stack(images)
    if x.ndim == 3:
        x = x[..., None]
    return x, np.asarray(labels, np.int32), classes


def read_image_tar(
    data: bytes, name: str, class_names: Sequence[str], mode: str = "RGB"
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``<top>/<class>/<file>`` of a tar file's bytes -> ``(images, labels)``, sorted by
    class, then file name. Members outside ``class_names`` are skipped."""
    classes = list(class_names)
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
                image = decode_image(f.read(), f"{name}:{member.name}", mode)
                items.append((classes.index(parts[1]), parts[2], image))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{name}: corrupt or truncated tar ({err})") from None
    if not items:
        raise ValueError(f"{name}: no images <top>/<class>/<file> found")
    items.sort(key=lambda t: (t[0], t[1]))
    x = np.stack([t[2] for t in items])
    if x.ndim == 3:
        x = x[..., None]
    return x, np.asarray([t[0] for t in items], np.int32)
