"""The paper-trading journal: one SQLite database (standard library, WAL mode) per ``--out``.

One transaction per decided bar holds everything that bar changed: the bar
(time, cash, equity, model), the symbols decided, the orders created, the order
updates (filled, cancelled, rejected with size, price, commission), the
positions after it and the strategy's own resumable state. ``kill -9`` at any
moment therefore loses at most the bar in progress, and a restart resumes from
the last committed bar: nothing is decided twice, no order is created twice
(``UNIQUE`` constraints refuse it even if the code tried).

``orders.csv`` and ``equity.csv`` are exported from the database atomically.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_bt.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bars (
    seq INTEGER PRIMARY KEY,
    datetime TEXT NOT NULL UNIQUE,
    cash REAL NOT NULL,
    equity REAL NOT NULL,
    model_sha256 TEXT NOT NULL,
    strategy_state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decided (
    symbol TEXT NOT NULL,
    datetime TEXT NOT NULL,
    PRIMARY KEY (symbol, datetime)
);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY,
    created TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    created_size REAL NOT NULL,
    created_price REAL NOT NULL,
    status TEXT NOT NULL,
    datetime TEXT,
    size REAL,
    price REAL,
    commission REAL NOT NULL DEFAULT 0,
    n INTEGER NOT NULL,
    UNIQUE (created, symbol, n)
);
CREATE TABLE IF NOT EXISTS positions (
    datetime TEXT NOT NULL,
    symbol TEXT NOT NULL,
    size REAL NOT NULL,
    price REAL NOT NULL,
    PRIMARY KEY (datetime, symbol)
);
CREATE TABLE IF NOT EXISTS ohlcv (
    symbol TEXT NOT NULL,
    datetime TEXT NOT NULL,
    open REAL NOT NULL,
    high REAL NOT NULL,
    low REAL NOT NULL,
    close REAL NOT NULL,
    volume REAL NOT NULL,
    live INTEGER NOT NULL,
    PRIMARY KEY (symbol, datetime)
);
CREATE TABLE IF NOT EXISTS sessions (
    seq INTEGER PRIMARY KEY,
    started TEXT NOT NULL,
    pid INTEGER NOT NULL,
    bars INTEGER NOT NULL,
    operational TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    seq INTEGER PRIMARY KEY,
    datetime TEXT,
    event TEXT NOT NULL,
    path TEXT,
    sha256 TEXT,
    error TEXT
);
"""

#: orders.csv: the backtest's columns first (datetime = fill time), then the journal's own
ORDER_COLUMNS = [
    "datetime",
    "symbol",
    "side",
    "size",
    "price",
    "status",
    "commission",
    "id",
    "created",
    "created_size",
    "created_price",
]


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").isoformat()


@dataclass
class OrderRow:
    created: str
    symbol: str
    side: str
    size: float
    price: float


@dataclass
class BarRecord:
    """Everything one decided bar changed (committed in one transaction)."""

    datetime: str
    cash: float
    equity: float
    model_sha256: str
    symbols: list[str]
    created: list[OrderRow] = field(default_factory=list)
    #: (order id, status, fill time, size, price, commission)
    updates: list[tuple[int, str, str | None, float | None, float | None, float]] = field(
        default_factory=list
    )
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)
    strategy_state: dict[str, Any] = field(default_factory=dict)
    #: run facts recorded once, with the first bar (e.g. where the history starts)
    meta: dict[str, str] = field(default_factory=dict)
    #: every bar the feeds delivered since the last commit (history and back-fill too):
    #: (symbol, time, open, high, low, close, volume, live)
    ohlcv: list[tuple[str, str, float, float, float, float, float, int]] = field(
        default_factory=list
    )


@dataclass
class Resume:
    """What a restart restores (from the last committed bar)."""

    datetime: str | None
    cash: float | None
    positions: dict[str, tuple[float, float]]
    open_orders: list[dict[str, Any]]
    strategy_state: dict[str, Any]
    bars: int


class PaperState:
    """The journal of one paper run (see module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- identity -------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta"))

    def claim(self, identity: dict[str, str], where: str) -> None:
        """Record ``identity`` (config and model hashes) or refuse a different one."""
        have = self.meta()
        if have:
            diff = [k for k, v in identity.items() if have.get(k) != v]
            if diff:
                raise UserError(
                    f"{where} holds a paper run with a different {' and '.join(diff)}; "
                    "resume it with the same config and --model, use another --out, or pass "
                    "--reset to start over (its journal is deleted)"
                )
            return
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(identity.items()))

    def record_session(self, operational: dict[str, Any], bars: int) -> None:
        """One row per invocation: when, which process, the journal's bars at its start and
        its operational settings (those may change on resume: mtl_bt.paper.settings)."""
        import os

        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO sessions (started, pid, bars, operational) VALUES (?, ?, ?, ?)",
                (
                    iso(pd.Timestamp.now(tz="UTC")),
                    os.getpid(),
                    bars,
                    json.dumps(operational, sort_keys=True),
                ),
            )

    @staticmethod
    def reset(path: str | Path) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    # -- per bar --------------------------------------------------------------
    def commit(self, rec: BarRecord) -> list[int]:
        """One decided bar in one transaction; returns the ids of the orders it created."""
        db = self.db
        ids = []
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO bars (datetime, cash, equity, model_sha256, strategy_state) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    rec.datetime,
                    rec.cash,
                    rec.equity,
                    rec.model_sha256,
                    json.dumps(rec.strategy_state, sort_keys=True),
                ),
            )
            db.executemany(
                "INSERT INTO decided VALUES (?, ?)", [(s, rec.datetime) for s in rec.symbols]
            )
            for order_id, status, when, size, price, comm in rec.updates:
                db.execute(
                    "UPDATE orders SET status=?, datetime=?, size=?, price=?, commission=? "
                    "WHERE id=?",
                    (status, when, size, price, comm, order_id),
                )
            for n, o in enumerate(rec.created):
                cur = db.execute(
                    "INSERT INTO orders (created, symbol, side, created_size, created_price, "
                    "status, n) VALUES (?, ?, ?, ?, ?, 'created', ?)",
                    (o.created, o.symbol, o.side, o.size, o.price, n),
                )
                ids.append(int(cur.lastrowid))
            db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", sorted(rec.meta.items()))
            # the first copy stays: what the bars decided so far were decided on
            db.executemany("INSERT OR IGNORE INTO ohlcv VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rec.ohlcv)
            db.executemany(
                "INSERT INTO positions VALUES (?, ?, ?, ?)",
                [(rec.datetime, s, size, price) for s, (size, price) in rec.positions.items()],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return ids

    def record_model(
        self, event: str, path: str | None, sha: str | None, when: str | None, error: str = ""
    ) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO models (datetime, event, path, sha256, error) VALUES (?, ?, ?, ?, ?)",
                (when, event, path, sha, error or None),
            )

    # -- resume ---------------------------------------------------------------
    def resume(self) -> Resume:
        row = self.db.execute(
            "SELECT datetime, cash, strategy_state FROM bars ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        n = int(self.db.execute("SELECT COUNT(*) FROM bars").fetchone()[0])
        if row is None:
            return Resume(None, None, {}, [], {}, 0)
        when, cash, state = row
        positions = {
            s: (size, price)
            for s, size, price in self.db.execute(
                "SELECT symbol, size, price FROM positions WHERE datetime=?", (when,)
            )
        }
        cols = ["id", "created", "symbol", "side", "created_size", "created_price"]
        open_orders = [
            dict(zip(cols, r, strict=True))
            for r in self.db.execute(
                f"SELECT {', '.join(cols)} FROM orders WHERE status='created' ORDER BY id"
            )
        ]
        return Resume(when, float(cash), positions, open_orders, json.loads(state), n)

    # -- exports --------------------------------------------------------------
    def orders(self) -> pd.DataFrame:
        return pd.read_sql_query(
            f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders ORDER BY id", self.db
        )

    def equity(self) -> pd.DataFrame:
        return pd.read_sql_query(
            "SELECT datetime, cash, equity, model_sha256 FROM bars ORDER BY seq", self.db
        )

    def export(self, out: str | Path) -> None:
        """orders.csv and equity.csv, each written atomically."""
        from mtl_bt.atomic import atomic_write

        out = Path(out)
        orders, equity = self.orders(), self.equity()
        atomic_write(
            out / "orders.csv", lambda p: orders.to_csv(p, index=False, float_format="%.17g")
        )
        atomic_write(
            out / "equity.csv", lambda p: equity.to_csv(p, index=False, float_format="%.17g")
        )
