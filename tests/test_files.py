"""textseq.files: whole files or none, under one temporary-name rule."""

import errno

import pytest

from textseq import files


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    files.write_atomically(target, '{"epoch": 1}')
    assert target.read_text() == '{"epoch": 1}' and not files.temporary(target).exists()

    def full_disk(path, data):
        path.write_bytes(data[:3])  # part of it reached the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "write_file", full_disk)
    with pytest.raises(OSError):
        files.write_atomically(target, '{"epoch": 2}')
    assert target.read_text() == '{"epoch": 1}' and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_what_unfinished_writes_left_is_removed_and_nothing_else(tmp_path):
    (tmp_path / "model.weights.h5.tmp").write_bytes(b"half")
    (tmp_path / "epoch-0002.resume.tmp").mkdir()
    (tmp_path / "epoch-0002.resume.tmp" / "state.index").write_bytes(b"half")
    (tmp_path / "notes.txt").write_text("mine")
    removed = files.remove_temporaries(tmp_path, tmp_path / "missing")
    assert sorted(p.name for p in removed) == ["epoch-0002.resume.tmp", "model.weights.h5.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
