"""The paper state folder: one process at a time, and a journal that is whole or refused.

``owned_folder(out)`` takes the same lock as ``run``/``train``/``compare``
(:mod:`mtl_bt.rundir`: ``.<name>.lock`` beside the folder, holding the pid): a
second ``mtl-bt paper`` on the folder exits 2 naming the holder's pid; a lock
left by a process that is gone is taken over, and said so.

``open_journal(out)`` opens ``paper.sqlite`` only if it is a whole journal: an
emptied (0-byte) or corrupt file, a broken header, or a missing/empty journal
beside ``equity.csv`` rows is refused with one line naming the file and the
choices (``--reset``, or restore the file), never silently restarted with fresh
cash. The CSVs are exports: they lack the strategy's state and the open orders,
so the journal cannot be rebuilt from them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from mtl_bt.errors import OutputError
from mtl_bt.paper.state import PaperState

log = logging.getLogger("mtl_bt.paper")

JOURNAL = "paper.sqlite"
EXPORTS = ("orders.csv", "equity.csv")


@contextlib.contextmanager
def owned_folder(out: str | Path) -> Iterator[Path]:
    """Hold ``out``'s lock while the run lasts (see module docstring)."""
    from mtl_bt import rundir

    out = rundir.check_writable(Path(out).expanduser().absolute(), "paper state folder --out")
    lock = rundir.lock_path(out)
    if lock.exists() and rundir._holder(lock) is None:
        try:
            pid = json.loads(lock.read_text(encoding="utf-8")).get("pid", "?")
        except (OSError, ValueError, AttributeError):
            pid = "?"
        log.warning(
            "took over the lock %s: the run that held it (pid %s) is no longer running", lock, pid
        )
    taken = rundir.acquire(out)
    try:
        yield out
    finally:
        rundir.release(taken)


def _equity_rows(out: Path) -> int:
    path = out / "equity.csv"
    try:
        with open(path, "rb") as fh:
            return max(0, sum(1 for line in fh if line.strip()) - 1)
    except OSError:
        return 0


def _damaged(path: Path, why: str) -> OutputError:
    return OutputError(
        f"{path} {why}: the run's state cannot be read. Restore {path.name} (with its -wal "
        "file) from a backup and run again, or pass --reset to start over (deletes the "
        "journal); the state cannot be rebuilt from equity.csv/orders.csv (they hold no "
        "strategy state or open orders)"
    )


def reset_folder(out: Path) -> None:
    """``--reset``: the journal and its exports go (the models it trained stay)."""
    PaperState.reset(out / JOURNAL)
    for name in EXPORTS:
        (out / name).unlink(missing_ok=True)


def open_journal(out: Path) -> PaperState:
    """The folder's journal, new or resumed; refuses a damaged one (module docstring)."""
    path = out / JOURNAL
    rows = _equity_rows(out)
    if path.exists() and path.stat().st_size == 0:
        raise _damaged(path, "is empty (0 bytes)")
    if not path.exists() and rows:
        raise _damaged(path, f"is missing but equity.csv holds {rows} decided bars")
    try:
        state = PaperState(path)
    except sqlite3.DatabaseError as exc:
        if "readonly" in str(exc) or "unable to open" in str(exc):
            raise OutputError(
                f"{path} cannot be written ({exc}); fix the permissions of {out} and its files"
            ) from None
        raise _damaged(path, f"is not a readable SQLite journal ({exc})") from None
    try:
        check = state.db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise _damaged(path, f"is corrupt ({check})")
        bars = state.db.execute("SELECT COUNT(*) FROM bars").fetchone()[0]
        # a write now, so a read-only file or folder is refused before any work starts
        state.db.execute("BEGIN IMMEDIATE")
        state.db.execute("ROLLBACK")
    except sqlite3.DatabaseError as exc:
        state.close()
        if "readonly" in str(exc):
            raise OutputError(
                f"{path} cannot be written ({exc}); fix the permissions of {out} and its files"
            ) from None
        raise _damaged(path, f"is corrupt ({exc})") from None
    except BaseException:
        state.close()
        raise
    if bars == 0 and rows:
        state.close()
        raise _damaged(path, f"holds no decided bar but equity.csv holds {rows}")
    return state
