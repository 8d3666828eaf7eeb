"""The package's file writes: never through a link or over a non-regular file, and a full disk
named by its path (one line on the command line), leaving no temporary file behind."""

from __future__ import annotations

import argparse
import errno
import os

import pytest

from onepixel_jax import files
from onepixel_jax.cli import errors


def test_writes_refuse_links_fifos_and_folders(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("keep")
    (tmp_path / "link").symlink_to(target)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for name, kind in (("link", "symbolic link"), ("fifo", "fifo"), ("dir", "folder")):
        with pytest.raises(files.UnsafeFileError, match=kind):
            files.write_bytes_atomic(tmp_path / name, b"new")
        with pytest.raises(files.UnsafeFileError, match=kind):
            files.append_jsonl(tmp_path / name, [{"a": 1}])
    assert target.read_text() == "keep"
    assert (tmp_path / "link").is_symlink() and not (tmp_path / "fifo").is_file()
    # a user's output path: the link is followed to the regular file it names
    assert files.resolve_output(tmp_path / "link") == target.resolve()
    with pytest.raises(files.UnsafeFileError, match="fifo"):
        files.resolve_output(tmp_path / "fifo")


def test_reading_a_fifo_is_refused_instead_of_blocking(tmp_path):
    os.mkfifo(tmp_path / "run.json")
    with pytest.raises(files.DamagedFileError, match="fifo"):
        files.read_json_object(tmp_path / "run.json", "run info")
    os.mkfifo(tmp_path / "results.jsonl")
    with pytest.raises(files.DamagedFileError, match="fifo"):
        files.read_jsonl(tmp_path / "results.jsonl")


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch, capsys):
    path = tmp_path / "run.json"
    path.write_text("old")
    monkeypatch.setattr(files.os, "fsync", _full_disk)
    with pytest.raises(OSError) as info:
        files.write_json_atomic(path, {"a": 1})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["run.json"]
    with pytest.raises(OSError) as info:
        files.append_jsonl(tmp_path / "results.jsonl", [{"a": 1}])
    assert info.value.filename == str(tmp_path / "results.jsonl")

    def command(args):
        files.write_json_atomic(path, {"a": 1})

    assert errors.run_command("onepixel x", command, argparse.Namespace()) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "No space left" in err
    assert "run the same command again" in err
