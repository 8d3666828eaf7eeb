"""Tests of opj.data: real loaders on ../shared/data, formats, checksums, safety."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onepixel_jax import data

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _shared(name: str) -> Path:
    """The shared data directory holding dataset folder ``name``; a missing folder is a
    failure under CI=true, else a skip naming only what is missing."""
    if not (SHARED / name).is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {SHARED / name} is missing")
        pytest.skip(f"{name} not found in the shared data at {SHARED}")
    return SHARED


@pytest.fixture(scope="module")
def shared_dir() -> Path:
    """The shared data directory with CIFAR-10 in it."""
    return _shared("cifar10")


@pytest.fixture(scope="module")
def mnist_dir() -> Path:
    """The shared data directory with MNIST in it."""
    return _shared("mnist")


# ---------------------------------------------------------------------------------------------
# Real data


def test_cifar10_test_first1000(shared_dir):
    x, y, classes = data.load("cifar10", "test", data_dir=shared_dir)
    assert x.shape == (1000, 32, 32, 3) and x.dtype == np.uint8
    assert y.dtype == np.int32
    assert classes[0] == "airplane" and classes[9] == "truck" and len(classes) == 10
    assert y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert x[0, 0, :3, 0].tolist() == [158, 159, 165]
    assert np.bincount(y).tolist() == [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]


def test_cifar10_train(shared_dir):
    x, y, _ = data.load("cifar10", "train", data_dir=shared_dir)
    assert x.shape == (50000, 32, 32, 3) and x.dtype == np.uint8
    assert y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert x[0, 0, 0].tolist() == [59, 62, 63]
    assert x[0, 0, :3, 0].tolist() == [59, 43, 50]
    assert np.bincount(y).tolist() == [5000] * 10
    means = x[::10].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(means, [125.3, 122.95, 113.87], atol=1.0)


def test_cifar10_jpeg_full_test(shared_dir):
    x, y, _ = data.load("cifar10", "test-jpeg", data_dir=shared_dir)
    assert x.shape == (10000, 32, 32, 3) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [1000] * 10
    np.testing.assert_allclose(x.reshape(-1, 3).mean(axis=0), [125.99, 123.69, 114.85], atol=0.5)


def test_mnist(mnist_dir):
    x, y, classes = data.load("mnist", "test", data_dir=mnist_dir)
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.uint8 and y.dtype == np.int32
    assert classes == [str(i) for i in range(10)]
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    xt, yt, _ = data.load("mnist", "train", data_dir=mnist_dir)
    assert xt.shape == (60000, 28, 28, 1)
    assert np.bincount(yt).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(xt.mean() / 255 - 0.1306604763) < 1e-6


def test_imagenet_sample():
    shared_dir = _shared("imagenet_sample")
    x, y, names = data.load("imagenet-sample", "test", data_dir=shared_dir, limit=5)
    assert x.shape == (5, 227, 227, 3) and x.dtype == np.uint8
    assert y.tolist() == [0, 10, 20, 30, 40]
    assert len(names) == 1000 and names[0] == "tench"


def test_default_resolution_finds_shared_data(shared_dir, monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    assert shared_dir in data.candidate_dirs()
    x, y, _ = data.load("cifar10", "test", limit=3)
    assert x.shape == (3, 32, 32, 3) and y.tolist() == [3, 8, 8]


def test_env_var_takes_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    assert data.candidate_dirs()[0] == tmp_path
    assert data.candidate_dirs(tmp_path / "x") == [tmp_path / "x"]


# ---------------------------------------------------------------------------------------------
# digits (always available)


def test_digits_split_is_deterministic_and_disjoint():
    x_tr, y_tr, classes = data.load("digits", "train")
    x_te, y_te, _ = data.load("digits", "test")
    assert x_tr.shape == (1437, 8, 8, 1) and x_te.shape == (360, 8, 8, 1)
    assert x_tr.dtype == np.uint8 and y_tr.dtype == np.int32
    assert x_tr.max() == 255 and x_tr.min() == 0
    from sklearn.datasets import load_digits

    ref = load_digits()
    all_x = np.concatenate([x_tr, x_te])[..., 0].astype(np.float64)
    # every value is an exact rescaling of a 0..16 value
    np.testing.assert_array_equal(np.rint(np.rint(all_x * 16 / 255) * 255 / 16), all_x)
    assert sorted(np.concatenate([y_tr, y_te]).tolist()) == sorted(ref.target.tolist())
    again, _, _ = data.load("digits", "test")
    np.testing.assert_array_equal(again, x_te)
    assert len(classes) == 10


def test_limit_and_argument_errors():
    x, y, _ = data.load("digits", "test", limit=7)
    assert len(x) == len(y) == 7
    with pytest.raises(ValueError, match="name"):
        data.load("svhn", "test")
    with pytest.raises(ValueError, match="split"):
        data.load("mnist", "validation")
    with pytest.raises(ValueError, match="limit"):
        data.load("digits", "test", limit=-1)
    with pytest.raises(ValueError, match="limit"):
        data.load("digits", "test", limit=2.5)
    with pytest.raises(TypeError, match="data_dir"):
        data.load("mnist", "test", data_dir=42)


def test_missing_data_names_the_searched_directories(tmp_path):
    with pytest.raises(data.DataNotFoundError) as info:
        data.load("imagenet-sample", "test", data_dir=tmp_path)
    assert str(tmp_path / "imagenet_sample") in str(info.value)


# ---------------------------------------------------------------------------------------------
# Formats on small files


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    return header + array.astype(dtype).tobytes()


def test_read_idx_round_trip_plain_and_gzip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3)).astype(np.uint8)
    raw = _idx_bytes(images, 0x08)
    (tmp_path / "a.idx").write_bytes(raw)
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.idx"), images)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.idx.gz"), images)
    ints = np.array([[1, -2], [300000, 4]], np.int32)
    got = data.read_idx(_idx_bytes(ints, 0x0C))
    np.testing.assert_array_equal(got, ints)
    assert got.dtype == np.int32


def test_read_idx_rejects_truncated_and_corrupt(tmp_path):
    raw = _idx_bytes(np.zeros((4, 2, 2), np.uint8), 0x08)
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(raw[:-1])
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(b"\x01\x02" + raw[2:])
    with pytest.raises(ValueError, match="data type"):
        data.read_idx(raw[:2] + b"\x07" + raw[3:])
    gz = gzip.compress(raw)
    with pytest.raises(ValueError, match="gzip"):
        data.read_idx(gz[: len(gz) // 2])


def _write_mnist(directory: Path, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    directory.mkdir(parents=True)
    (directory / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(images, 0x08))
    (directory / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels, 0x08))
    return images, labels


def test_mnist_from_small_idx_files(tmp_path):
    images, labels = _write_mnist(tmp_path / "mnist")
    x, y, _ = data.load("mnist", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(x[..., 0], images)
    np.testing.assert_array_equal(y, labels)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        data.load("mnist", "test", data_dir=tmp_path)


def test_known_file_with_wrong_checksum_is_refused(shared_dir, tmp_path):
    target = tmp_path / "cifar10"
    target.mkdir()
    src = shared_dir / "cifar10" / "test_first1000.npz"
    truncated = src.read_bytes()[:-100]
    (target / "test_first1000.npz").write_bytes(truncated)
    with pytest.raises(ValueError, match="SHA-256.*truncated or corrupt"):
        data.load("cifar10", "test", data_dir=tmp_path)
    # an intact copy loads, and the verification is cached per file
    shutil.copy(src, target / "test_first1000.npz")
    x, _, _ = data.load("cifar10", "test", data_dir=tmp_path, limit=2)
    assert x.shape == (2, 32, 32, 3)


def test_corrupt_npz_without_known_checksum(tmp_path, monkeypatch):
    target = tmp_path / "cifar10"
    target.mkdir()
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((2, 32, 32, 3), np.uint8), y=np.zeros(2, np.uint8))
    (target / "test_first1000.npz").write_bytes(buf.getvalue()[:50])
    monkeypatch.setattr(data.checksums, "KNOWN_SHA256", {})
    with pytest.raises(ValueError, match="not a readable npz"):
        data.load("cifar10", "test", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# Official CIFAR-10 python batches and the restricted unpickler


def _official_batch(n: int, seed: int) -> tuple[dict, np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    planes = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": labels,
        b"data": planes,
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    return batch, planes, labels


def test_official_python_batch_is_read_as_hwc(tmp_path):
    batch, planes, labels = _official_batch(4, 0)
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=3))
    x, y, classes = data.load("cifar10", "test", data_dir=tmp_path)
    assert x.shape == (4, 32, 32, 3) and y.tolist() == labels
    # pixel (row 2, column 5): red, green, blue come from the three 1,024-value planes
    for c in range(3):
        assert x[1, 2, 5, c] == planes[1, c * 1024 + 2 * 32 + 5]
    assert classes[3] == "cat"


class _Exploit:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_restricted_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _Exploit(str(marker)), b"labels": []}, protocol=3)
    # the payload really would run with the standard unpickler
    assert b"mkdir" in payload
    with pytest.raises(ValueError, match="refusing.*mkdir"):
        data.restricted_unpickle(payload)
    assert not marker.exists()
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(ValueError, match="refusing"):
        data.load("cifar10", "test", data_dir=tmp_path)
    assert not marker.exists()


def test_restricted_unpickler_refuses_other_globals():
    import collections

    payload = pickle.dumps(collections.OrderedDict(a=1), protocol=3)
    with pytest.raises(ValueError, match="OrderedDict"):
        data.restricted_unpickle(payload)
    with pytest.raises(ValueError, match="corrupt"):
        data.restricted_unpickle(pickle.dumps([1, 2, 3], protocol=3)[:-3])


def test_class_per_folder_tree(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    expected = {}
    for cls in ("cat", "airplane"):
        folder = tmp_path / "cifar10" / "test" / cls
        folder.mkdir(parents=True)
        for i in range(2):
            img = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{i}.png")
            expected[(cls, i)] = img
    x, y, classes = data.load("cifar10", "test", data_dir=tmp_path)
    assert x.shape == (4, 32, 32, 3)
    assert [classes[i] for i in y] == ["airplane", "airplane", "cat", "cat"]
    np.testing.assert_array_equal(x[2], expected[("cat", 0)])


_NO_NETWORK = """
import socket, sys, time
def refuse(*args, **kwargs):
    raise RuntimeError("network access attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from onepixel_jax import data
for case, name, target in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    start = time.perf_counter()
    try:
        data.load(name, "test", data_dir=target)
    except data.DataNotFoundError as err:
        print(case, "ERROR", err)
    print(case, "SECONDS", time.perf_counter() - start)
    print(case, "TENSORFLOW", "tensorflow" in sys.modules)
"""
MISSING_NAMES = ("mnist", "cifar10")
MISSING_KINDS = ("missing", "empty", "empty-subfolder")


@pytest.fixture(scope="module")
def missing_data_runs(tmp_path_factory) -> dict[str, tuple[Path, dict[str, str]]]:
    """``{"kind-name": (data dir, {"ERROR"|"SECONDS"|"TENSORFLOW": printed value})}``: every
    case loaded in turn by one fresh interpreter with the network refused (one process
    start instead of one per case; a tensorflow import by any case shows in every later
    one)."""
    root = tmp_path_factory.mktemp("missing")
    argv, targets = [], {}
    for kind in MISSING_KINDS:
        for name in MISSING_NAMES:
            case = f"{kind}-{name}"
            target = root / case / "data"
            (root / case).mkdir()
            if kind != "missing":
                target.mkdir()
            if kind == "empty-subfolder":
                (target / name).mkdir()
            argv += [case, name, str(target)]
            targets[case] = target
    env = {**os.environ, "XDG_CACHE_HOME": str(root / "cache"), "JAX_PLATFORMS": "cpu"}
    env.pop(data.ENV_VAR, None)
    out = subprocess.run(
        [sys.executable, "-c", _NO_NETWORK, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    ).stdout
    lines: dict[str, dict[str, str]] = {case: {} for case in targets}
    for line in out.splitlines():
        case, field, value = (line.split(" ", 2) + ["", ""])[:3]
        assert case in lines, f"unexpected output line (a message over several lines?): {line!r}"
        lines[case][field] = value
    return {case: (targets[case], lines[case]) for case in targets}


@pytest.mark.parametrize("name", MISSING_NAMES)
@pytest.mark.parametrize("kind", MISSING_KINDS)
def test_missing_data_is_one_line_without_network_or_tensorflow(missing_data_runs, name, kind):
    """No data and no download=True: a DataNotFoundError at once, whatever extras are
    installed (tensorflow-datasets is, in the test environment), and no tensorflow import.
    The cases share one subprocess (``missing_data_runs``), so only the first pays the
    interpreter's first data import within its 5 seconds."""
    target, lines = missing_data_runs[f"{kind}-{name}"]
    message = lines["ERROR"]
    assert str(target / name) in message
    assert "ONEPIXEL_DATA_DIR" in message and "download=True" in message
    assert "--download" in message
    assert float(lines["SECONDS"]) < 5.0
    assert lines["TENSORFLOW"] == "False"


def test_not_downloadable_splits_say_so(tmp_path):
    with pytest.raises(data.DataNotFoundError, match="cannot be downloaded"):
        data.load("cifar10", "test-jpeg", data_dir=tmp_path, download=True)
    with pytest.raises(TypeError, match="download"):
        data.load("mnist", "test", data_dir=tmp_path, download="yes")


def _tfds_or_skip():
    """scripts/test.sh installs the tfds extra, so under CI=true a missing tensorflow-datasets
    is a failure, not a skip."""
    if os.environ.get("CI", "").lower() == "true":
        import tensorflow_datasets as tfds

        return tfds
    return pytest.importorskip("tensorflow_datasets")


def test_download_with_mock_data(tmp_path):
    """``download=True`` goes through tensorflow-datasets (on its mock data: no network)."""
    tfds = _tfds_or_skip()
    empty = tmp_path / "empty"
    empty.mkdir()
    with tfds.testing.mock_data(num_examples=5):
        x, y, classes = data.load("mnist", "test", data_dir=empty, download=True)
        xc, yc, cifar_classes = data.load(
            "cifar10", "train", data_dir=empty, limit=3, download=True
        )
    assert x.shape == (5, 28, 28, 1) and x.dtype == np.uint8
    assert y.dtype == np.int32 and len(classes) == 10 and ((y >= 0) & (y < 10)).all()
    assert xc.shape == (3, 32, 32, 3) and xc.dtype == np.uint8 and yc.shape == (3,)
    assert cifar_classes[:2] == ["airplane", "automobile"]


def test_download_dir_follows_data_dir_then_env(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert data.download_dir(tmp_path / "x") == tmp_path / "x"
    assert data.download_dir() == tmp_path / "env"
    monkeypatch.delenv(data.ENV_VAR)
    assert data.download_dir().parts[-2:] == ("onepixel_jax", "data")


def test_prepared_tfds_copy_is_found_without_download(tmp_path):
    assert not data.download.prepared(tmp_path, "mnist")
    version = tmp_path / "tfds" / "mnist" / "3.0.1"
    version.mkdir(parents=True)
    (version / "dataset_info.json").write_text("{}")
    assert data.download.prepared(tmp_path, "mnist")
