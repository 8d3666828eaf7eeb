"""Known SHA-256 checksums of the data files, and verified reading.

The table :data:`KNOWN_SHA256` holds the files of the shared data directory (from its
README); a ``SHA256SUMS`` file in a data directory adds to it. A file with a known checksum is
verified the first time it is read in a process (keyed by path, size and modification time);
a mismatch raises ``ValueError`` naming the file.
"""

from __future__ import annotations

from pathlib import Path

from onepixel_jax.provenance import sha256_bytes

__all__ = ["KNOWN_SHA256", "dataset_checksums", "known_sums", "read_verified"]

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

# Files of each dataset split in the shared layout (what a model card records checksums of).
SPLIT_FILES: dict[str, dict[str, list[str]]] = {
    "cifar10": {
        "train": [f"cifar10/train_{i}.npz" for i in range(1, 6)],
        "test": ["cifar10/test_first1000.npz"],
        "test-jpeg": ["cifar10/test_jpeg_q75_lossy.tar"],
    },
    "mnist": {
        "train": ["mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz"],
        "test": ["mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"],
    },
}

# (resolved path, size, mtime_ns) of files whose checksum was verified in this process
_VERIFIED: set[tuple[str, int, int]] = set()


def known_sums(root: Path, table: dict[str, str] | None = None) -> dict[str, str]:
    """Known SHA-256 by path relative to ``root``: ``table`` (default :data:`KNOWN_SHA256`)
    plus the lines of ``root/SHA256SUMS``."""
    sums = dict(KNOWN_SHA256 if table is None else table)
    sums_file = root / "SHA256SUMS"
    if sums_file.is_file():
        for line in sums_file.read_text(errors="replace").splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and len(parts[0]) == 64:
                sums[parts[1].strip().lstrip("*").removeprefix("./")] = parts[0].lower()
    return sums


def read_verified(path: Path, root: Path, table: dict[str, str] | None = None) -> bytes:
    """Bytes of ``path`` (inside the data directory ``root``); checked against its known
    SHA-256 the first time in this process. ``ValueError`` for an unreadable or mismatching
    file."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from None
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    expected = known_sums(root, table).get(rel)
    if expected is None:
        return data
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return data
    digest = sha256_bytes(data)
    if digest != expected:
        raise ValueError(
            f"{path}: SHA-256 {digest} does not match the known {expected} "
            f"({len(data)} bytes read); the file is truncated or corrupt, replace it"
        )
    _VERIFIED.add(key)
    return data


def dataset_checksums(dataset: str, splits: list[str]) -> dict[str, str | None]:
    """The known SHA-256 of the files behind ``splits`` of ``dataset`` (for model cards);
    for ``digits`` the scikit-learn version that ships it."""
    if dataset == "digits":
        import sklearn

        return {"source": f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})"}
    out: dict[str, str | None] = {}
    for split in splits:
        for rel in SPLIT_FILES.get(dataset, {}).get(split, []):
            out[rel] = KNOWN_SHA256.get(rel)
    return out
