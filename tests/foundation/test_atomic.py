"""Atomic writes: old file or new file, never half of one; ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from mtl_bt.atomic import write_text


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_umask_mode_not_the_temp_files(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        path = write_text(tmp_path / "report.html", "<p>shared</p>")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = write_text(tmp_path / "a.txt", "old")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("crash")

    from mtl_bt.atomic import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
