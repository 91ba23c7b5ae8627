"""One run owns its output directory: a lock, a staging folder, a manifest.

``owned(out)`` is how every command that writes a run folder (``run``, ``demo``,
``train``, ``backtest``) uses it:

* a lock file beside the folder (``.<name>.lock``, holding the pid) refuses a
  second run into the same folder; a lock left by a dead process is taken over;
* the run writes into a fresh staging folder beside ``out`` and, when it finished,
  the staging folder replaces ``out`` as a whole (two renames), so the previous
  run's files never sit beside the new ones and an interrupted run leaves the
  previous folder untouched;
* ``manifest.json`` (config hash, every file with its sha256) is written last, so a
  folder with a manifest is a finished run, and ``backtest --model DIR`` refuses
  checkpoints that do not belong to it (``verify``).

A folder that exists, is not empty and has no manifest is not replaced unless
``force`` (it may hold the user's own files). See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mtl_bt.atomic import size_text, write_text
from mtl_bt.errors import CheckpointError, DiskFullError, OutputError, UserError

MANIFEST = "manifest.json"
FORMAT = "mtl-bt-run"
#: a lock file younger than this with unreadable content is being written, not stale
_FRESH_SECONDS = 10.0


def config_hash(config: Any) -> str:
    """sha256 of a config (a ``Config`` or its plain ``model_dump(mode="json")`` dict)."""
    plain = config.model_dump(mode="json") if hasattr(config, "model_dump") else config
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_writable(path: str | os.PathLike[str], what: str) -> Path:
    """Create ``path`` (a folder) if needed and prove a file can be written in it, before any
    work starts; one-line ``OutputError`` naming the path otherwise."""
    path = Path(path).expanduser()
    try:
        if path.exists() and not path.is_dir():
            raise OutputError(f"{what} {path} is a file, not a folder; choose a folder")
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".mtl-bt-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(
            f"{what} {path} is not writable ({exc.strerror or exc}); choose another location "
            "or fix its permissions"
        ) from None
    return path


def resolve_out(out: str | os.PathLike[str], what: str = "--out") -> Path:
    """The folder ``out`` names, with a symlink followed to its target: a run replaces the
    folder it writes (staging + rename), so it must replace the target and keep the user's
    link. A dangling or looping link is refused before any work starts."""
    path = Path(out).expanduser().absolute()
    if not path.is_symlink():
        return path
    link = os.readlink(path)
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing target, or a loop (RuntimeError before 3.13)
        raise OutputError(
            f"{what} {path} is a symlink to {link}, which does not exist or links back to "
            "itself; point the link at a folder, or choose another location"
        ) from None
    if not target.is_dir():
        raise OutputError(f"{what} {path} is a symlink to {target}, a file, not a folder")
    return target


# -- the lock ----------------------------------------------------------------
def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _holder(lock: Path) -> dict[str, Any] | None:
    """The lock's content, ``None`` when it is stale (its process is gone)."""
    try:
        info = json.loads(lock.read_text(encoding="utf-8"))
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        try:
            young = time.time() - lock.stat().st_mtime < _FRESH_SECONDS
        except OSError:
            return None
        return {"pid": "?", "started": "just now", "command": "?"} if young else None
    if info.get("host") not in (None, socket.gethostname()):
        return info  # another machine's run: we cannot tell, so it holds the folder
    return info if _alive(pid) else None


def acquire(out: Path) -> Path:
    """Take the lock of ``out`` or raise ``OutputError`` naming the run that holds it."""
    lock = lock_path(out)
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300],
    }
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            if holder is None:  # stale: its run died without releasing it
                lock.unlink(missing_ok=True)
                continue
            raise OutputError(
                f"output folder {out} is in use by another mtl-bt run (pid {holder.get('pid')}, "
                f"started {holder.get('started')}: {holder.get('command')}); wait for it to "
                f"finish or choose another --out (if no such run is alive, delete {lock})"
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(info, handle)
        _recover(out)
        return lock
    raise OutputError(f"could not take the lock {lock}; delete it if no mtl-bt run is using {out}")


def release(lock: Path) -> None:
    with contextlib.suppress(OSError):
        if json.loads(lock.read_text(encoding="utf-8")).get("pid") == os.getpid():
            lock.unlink()


def _recover(out: Path) -> None:
    """Clean up after a run that died while it held the lock (we hold it now): its staging
    folder is dropped; a previous run moved aside but not yet replaced is put back."""
    for leftover in out.parent.glob(f".{out.name}.staging-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for old in sorted(out.parent.glob(f".{out.name}.old-*")):
        if not out.exists():
            os.replace(old, out)
        else:
            shutil.rmtree(old, ignore_errors=True)


# -- the manifest --------------------------------------------------------------
def write_manifest(
    folder: Path, kind: str, config: Any = None, *, complete: bool = True, reason: str = ""
) -> Path:
    """``manifest.json``: what wrote the folder, its config hash, every file's sha256."""
    from mtl_bt import __version__

    files = {
        p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    doc = {
        "format": FORMAT,
        "version": 1,
        "kind": kind,
        "mtl_bt": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config_sha256": config_hash(config) if config is not None else None,
        "complete": complete,
        "files": files,
    }
    if not complete:
        doc["stopped_by"] = reason
    return write_text(folder / MANIFEST, json.dumps(doc, indent=2) + "\n")


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT or not isinstance(doc.get("files"), dict):
            raise ValueError("not an mtl-bt run manifest")
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is unreadable ({exc}); re-run to rewrite it") from None
    return doc


def verify_checkpoints(folder: Path, checkpoints: list[Path]) -> None:
    """Every checkpoint in ``folder`` must be listed in its manifest with the same sha256, and
    every listed checkpoint must be present (a folder without a manifest is not checked)."""
    doc = read_manifest(folder)
    if doc is None:
        return
    listed = {k: v for k, v in doc["files"].items() if k.endswith(".pt")}
    found = {p.relative_to(folder).as_posix(): p for p in checkpoints}
    for rel, path in found.items():
        if rel not in listed:
            raise CheckpointError(
                f"{path} is not part of the run in {folder} (its manifest.json does not list it): "
                "it was left by another run; delete it or re-run"
            )
        if sha256_file(path) != listed[rel]["sha256"]:
            raise CheckpointError(
                f"{path} was changed after the run in {folder} wrote it (sha256 differs from "
                "manifest.json); re-run to train it again"
            )
    missing = sorted(set(listed) - set(found))
    if missing:
        raise CheckpointError(
            f"{folder}: checkpoint(s) {missing} listed in manifest.json are missing; the run is "
            "incomplete: re-run it"
        )


# -- owning a folder -------------------------------------------------------------
@contextlib.contextmanager
def locked(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Only the lock (for a resumable folder such as ``compare``'s: written in place)."""
    out = check_writable(resolve_out(out), "--out")
    lock = acquire(out)
    try:
        yield out
    finally:
        release(lock)


#: what mtl-bt writes at the top of a run folder: a folder holding only these (written by an
#: mtl-bt from before manifests) is a run folder too, and may be replaced
_ARTEFACTS = frozenset(
    {
        "config.toml", "data.json", "folds.json", "train_log.csv", "predictions.parquet",
        "fold_metrics.csv", "oos_metrics.csv", "metrics.json", "returns.csv", "orders.csv",
        "trades.csv", "report.md", "report.html", "checkpoints", "baselines", "plots",
        "error.txt", MANIFEST,
    }
)  # fmt: skip


def _replaceable(path: Path) -> bool:
    """Empty, absent, or an mtl-bt run folder (a manifest, or only mtl-bt's artefacts)."""
    if not path.exists() or (path / MANIFEST).exists():
        return True
    return all(p.name in _ARTEFACTS for p in path.iterdir())


@contextlib.contextmanager
def owned(
    out: str | os.PathLike[str], *, kind: str, config: Any = None, force: bool = False
) -> Iterator[Path]:
    """Own ``out`` for one run: yields the staging folder to write into; on success it
    replaces ``out`` as a whole (with ``manifest.json``); on failure ``out`` is untouched.
    A symlink ``out`` is followed: its target is replaced, the link stays."""
    out = resolve_out(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder; choose a folder")
    check_writable(out.parent, "output folder's parent")
    lock = acquire(out)
    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    try:
        if not (force or _replaceable(out)):
            raise OutputError(
                f"--out {out} is not empty and is not an mtl-bt run folder (no {MANIFEST}); "
                "choose a new or empty folder, or pass --force to replace its contents"
            )
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            yield staging
            write_manifest(staging, kind, config)
            _swap(out, staging)
        except BaseException as exc:
            staged = _size(staging)
            kept = _keep_partial(out, staging, kind, config, exc)
            if isinstance(exc, DiskFullError):
                raise _disk_full(out, staging, exc, staged, kept) from None
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        release(lock)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _disk_full(
    out: Path, staging: Path, exc: DiskFullError, staged: int, kept: Path | None
) -> OutputError:
    """The disk filled up during the run: name the file as it would be in ``out`` (not the
    staging folder, which is removed) and the space the run needs at least."""
    try:
        name = out / Path(str(exc.path)).relative_to(staging)
    except ValueError:
        name = Path(str(exc.path))
    return OutputError(
        f"no space left on the device holding --out {out} while writing {name} "
        f"({size_text(exc.free)} free): this run had written {size_text(staged)} by then and "
        "needs more than that; free space or choose --out on another disk, and run again"
        + (
            f" (what it finished is kept in {kept}, its manifest says complete: false)"
            if kept is not None
            else " (its unfinished files were removed)"
        )
    )


def _keep_partial(
    out: Path, staging: Path, kind: str, config: Any, exc: BaseException
) -> Path | None:
    """A run that stopped keeps what it finished (a crash loses no finished work) without
    mixing it into a previous run: into ``out`` when that held no finished run, else into
    ``<out>.interrupted``. Its manifest says ``complete: false``."""
    if not staging.exists() or not any(
        p.is_file() and p.name != "config.toml" for p in staging.rglob("*")
    ):
        return None  # nothing finished yet (a config copy is not work): nothing to keep
    reason = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
    try:
        write_manifest(staging, kind, config, complete=False, reason=reason[:300])
        previous = read_manifest_quiet(out)
        if previous is None or not previous.get("complete", True):
            _swap(out, staging)
            return out
        where = out.parent / f"{out.name}.interrupted"
        shutil.rmtree(where, ignore_errors=True)
        os.replace(staging, where)
        print(
            f"the stopped run's finished files are in {where}; the previous run in {out} "
            "is untouched",
            file=sys.stderr,
        )
        return where
    except (OSError, UserError):  # e.g. the disk is full: the staging folder is removed
        return None


def read_manifest_quiet(folder: Path) -> dict[str, Any] | None:
    """The manifest, or ``None`` when absent or unreadable."""
    try:
        return read_manifest(folder)
    except CheckpointError:
        return None


def _swap(out: Path, staging: Path) -> None:
    """``staging`` becomes ``out``; the previous ``out`` is removed once the new one is in."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
