"""opj.data.checksums: the known-checksum table, SHA256SUMS files and verified reading."""

from __future__ import annotations

import hashlib
import os

import pytest

from onepixel_jax.data import checksums


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_sha256sums_file_adds_to_the_table(tmp_path):
    (tmp_path / "mnist").mkdir()
    path = tmp_path / "mnist" / "extra.bin"
    path.write_bytes(b"payload")
    (tmp_path / "SHA256SUMS").write_text(f"{_sha(b'payload')}  ./mnist/extra.bin\nnot a line\n")
    sums = checksums.known_sums(tmp_path)
    assert sums["mnist/extra.bin"] == _sha(b"payload")
    assert sums["cifar10/train_1.npz"] == checksums.KNOWN_SHA256["cifar10/train_1.npz"]
    assert checksums.read_verified(path, tmp_path) == b"payload"


def test_mismatch_names_the_file_and_unknown_files_pass(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"changed")
    table = {"a.bin": _sha(b"original")}
    with pytest.raises(ValueError, match=r"a\.bin: SHA-256 .* truncated or corrupt"):
        checksums.read_verified(path, tmp_path, table)
    os.utime(path, ns=(1, 1))  # a failed check is not remembered as verified
    with pytest.raises(ValueError, match="does not match"):
        checksums.read_verified(path, tmp_path, table)
    assert checksums.read_verified(path, tmp_path, {}) == b"changed"
    with pytest.raises(ValueError, match="cannot read"):
        checksums.read_verified(tmp_path / "missing.bin", tmp_path, table)


def test_dataset_checksums_for_model_cards():
    mnist = checksums.dataset_checksums("mnist", ["test"])
    assert set(mnist) == {"mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"}
    assert all(len(v) == 64 for v in mnist.values())
    cifar = checksums.dataset_checksums("cifar10", ["train", "test", "test-jpeg"])
    assert len(cifar) == 7
    assert "scikit-learn" in checksums.dataset_checksums("digits", ["train"])["source"]
