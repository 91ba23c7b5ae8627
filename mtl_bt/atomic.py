"""Atomic file writes: a temp file beside the target, fsync, then ``os.replace``.

Every artefact mtl-bt writes goes through here, so a crash or Ctrl-C leaves either
the old file or the new one, never a half-written file (re-runs trust what exists).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from mtl_bt.errors import DiskFullError

#: errno values meaning "the file system is full" (no space, or the user's quota)
_FULL = {errno.ENOSPC, errno.EDQUOT}


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: the classic read-and-restore
    os.umask(mask)
    return mask


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the file system is full. Writers differ: ``OSError`` carries the
    errno, pyarrow puts it in its message (``[errno 28] No space left on device``), torch's
    zip writer says only ``file write failed``, so that one is judged by the free space."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return True
    text = str(exc)
    return any(
        mark in text for mark in ("No space left on device", "Disk quota exceeded", "errno 28")
    )


def size_text(size: int) -> str:
    """``12 kB``, ``3.4 MB``, ``1.2 GB``."""
    if size < 1 << 20:
        return f"{size / 1024:,.0f} kB"
    return f"{size / (1 << 20):,.1f} MB" if size < 1 << 30 else f"{size / (1 << 30):,.1f} GB"


def full_error(path: Path, written: int | None = None) -> DiskFullError:
    """The one-line error for a full file system while writing ``path``."""
    try:
        free = shutil.disk_usage(path.parent if not path.is_dir() else path).free
    except OSError:
        free = 0
    size = f" after {size_text(written)}" if written else ""
    return DiskFullError(
        f"no space left on the device holding {path}: the write stopped{size} with "
        f"{size_text(free)} free; free some space (or choose a location on another disk) and "
        "run again - nothing half-written was kept",
        path,
        free,
    )


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path``, then rename it over ``path``.

    A crash or exception midway leaves any old ``path`` untouched and no temp file behind;
    a full disk is an ``OutputError`` naming the path and the free space (any writer's way of
    saying so). A symlink ``path`` is followed: its target is replaced, the link stays.
    The file gets the mode an ordinary ``open()`` would give it (0644 under umask 022), not
    the temp file's private 0600: reports are meant to be shared.
    """
    target = Path(path)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        if disk_full(exc):
            raise full_error(target) from None
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        written = tmp.stat().st_size if tmp.exists() else None
        tmp.unlink(missing_ok=True)
        if isinstance(exc, Exception) and (disk_full(exc) or _torch_full(exc, target)):
            raise full_error(target, written) from None
        raise
    return target


def _torch_full(exc: BaseException, target: Path) -> bool:
    """torch's zip writer reports a full disk as ``file write failed`` with no errno: it is
    a full disk when the file system has (next to) nothing free."""
    if not (isinstance(exc, RuntimeError) and "write failed" in str(exc)):
        return False
    try:
        return shutil.disk_usage(target.parent).free < 1 << 20
    except OSError:
        return False


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))
