"""Look-ahead and warm-up analysis of features and targets, for any plugin.

The laws (``docs/plugins.md``):
- **prefix invariance**: a feature computed on the first ``cut`` bars equals the
  full computation on those rows, at every cut point;
- **perturbed future**: changing every bar after ``cut`` leaves rows <= cut unchanged;
- **warm-up**: after its declared warm-up a feature no longer depends on where the
  history starts (values computed from a later start agree with the full history);
- a **target** at bar t uses bars t-lookback..t+h only, and really uses the future
  (it changes when bars t+1..t+h change).
Each finding names the column and the first bar that broke the law.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: two values are "the same" within this (absolute + relative) tolerance
RTOL = 1e-9
ATOL = 1e-12
#: after its declared warm-up, a later start may change a value by at most this many
#: standard deviations of the column (more fails the check) ...
WARMUP_TOL = 1.0
#: ... and by at most this many without a note in the report (recursive averages that
#: keep a visible trace of their seed past the declared warm-up)
WARMUP_NOTE_TOL = 0.1


@dataclass(frozen=True)
class Finding:
    """One broken law: which law, column, first bar (time and row) and the detail."""

    law: str
    column: str
    row: int
    time: object
    detail: str

    def __str__(self) -> str:
        where = "first differs at" if self.law != "target alignment" else "e.g. at"
        return f"{self.law}: column {self.column!r} {where} bar {self.row} ({self.time}); {self.detail}"


def default_cuts(n: int, start: int = 0, count: int = 4) -> list[int]:
    """Cut points spread over ``(start, n)``: early, middle and late, plus n-1."""
    lo = max(start + 2, 2)
    if n - 1 <= lo:
        return [max(1, n - 1)]
    cuts = {int(lo + (n - 1 - lo) * k / count) for k in range(count)} | {n - 1}
    return sorted(c for c in cuts if 1 <= c < n)


def reshape_bars(
    frame: pd.DataFrame, rows: slice, price: np.ndarray, rng: np.random.Generator
) -> None:
    """Give ``frame``'s bars ``rows`` (in place) another valid OHLCV: prices times
    ``price`` (one factor per bar) and each bar's shape changed too - open and close moved
    apart, high and low moved outward - so a scale-free value of those bars (log(high/low),
    close/open) changes as well as a price level; volume times independent factors."""
    n = len(price)
    cols = frame.columns
    o, h, lo, c = (
        frame[k].to_numpy(np.float64)[rows] * price for k in ("open", "high", "low", "close")
    )
    o = o * np.exp(rng.normal(0.0, 0.01, n))
    c = c * np.exp(rng.normal(0.0, 0.01, n))
    h = np.maximum.reduce([h * np.exp(rng.uniform(0.002, 0.02, n)), o, c])
    lo = np.minimum.reduce([lo * np.exp(-rng.uniform(0.002, 0.02, n)), o, c])
    for k, v in (("open", o), ("high", h), ("low", lo), ("close", c)):
        frame.iloc[rows, cols.get_loc(k)] = v
    if "volume" in cols:
        vol = frame["volume"].to_numpy(np.float64)[rows]
        frame.iloc[rows, cols.get_loc("volume")] = vol * np.exp(rng.normal(0, 0.5, n))


def perturb_future(frame: pd.DataFrame, cut: int, seed: int = 0) -> pd.DataFrame:
    """A copy whose bars after row ``cut`` are a different (valid OHLCV) future: prices
    rescaled by a random walk of factors and every bar's shape changed (``reshape_bars``)."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    n = len(frame) - cut - 1
    if n <= 0:
        return out
    factor = np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    reshape_bars(out, slice(cut + 1, len(frame)), factor, rng)
    out.attrs = dict(frame.attrs)
    return out


def first_difference(a: np.ndarray, b: np.ndarray) -> tuple[int, int] | None:
    """(row, col) of the first element where ``a`` and ``b`` differ (NaN == NaN)."""
    same = np.isclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True)
    if same.all():
        return None
    rows, cols = np.nonzero(~same)
    first = int(np.argmin(rows))
    return int(rows[first]), int(cols[first])


def _finding(law, columns, index, a, b, where, detail) -> Finding:
    row, col = where
    return Finding(
        law,
        str(columns[col]),
        row,
        index[row],
        f"{detail}: {float(a[row, col])!r} vs {float(b[row, col])!r}",
    )


Compute = Callable[[pd.DataFrame], pd.DataFrame]


def prefix_findings(
    compute: Compute, frame: pd.DataFrame, cuts: Sequence[int], full: pd.DataFrame | None = None
) -> list[Finding]:
    """Rows < cut computed on ``frame[:cut]`` vs on the whole frame, per cut (first finding)."""
    full = compute(frame) if full is None else full
    values = full.to_numpy(np.float64)
    for cut in cuts:
        part = compute(frame.iloc[:cut]).to_numpy(np.float64)
        where = first_difference(part, values[:cut])
        if where is not None:
            return [
                _finding(
                    "prefix invariance",
                    full.columns,
                    frame.index,
                    part,
                    values,
                    where,
                    f"computed on the first {cut} bars vs on all {len(frame)}",
                )
            ]
    return []


def future_findings(
    compute: Compute,
    frame: pd.DataFrame,
    cuts: Sequence[int],
    full: pd.DataFrame | None = None,
    seed: int = 0,
    span: int | None = None,
) -> list[Finding]:
    """Rows <= cut with a perturbed future vs the original, per cut (first finding).

    ``span``: perturb (and keep) only the ``span`` bars after each cut, so a check on a long
    history costs ``cut + span`` bars per cut, not the whole frame."""
    full = compute(frame) if full is None else full
    values = full.to_numpy(np.float64)
    for i, cut in enumerate(cuts):
        part = frame if span is None else frame.iloc[: cut + 1 + span]
        other = compute(perturb_future(part, cut, seed + i)).to_numpy(np.float64)
        where = first_difference(other[: cut + 1], values[: cut + 1])
        if where is not None:
            return [
                _finding(
                    "perturbed future",
                    full.columns,
                    frame.index,
                    other,
                    values,
                    where,
                    f"bars after {cut} changed",
                )
            ]
    return []


def measured_warmup(
    compute: Compute,
    frame: pd.DataFrame,
    starts: Sequence[int],
    full: pd.DataFrame | None = None,
    tol: float = WARMUP_TOL,
) -> dict[str, int | None]:
    """Per column: bars after which values no longer depend on the start of the history.

    For each start s, values computed on ``frame[s:]`` are compared with the full
    history's on the same rows. A row still depends on the start while it is NaN on one
    side only, or while the two differ by more than ``tol`` standard deviations of the
    column. The column's warm-up is the largest such row count over the starts;
    ``None``: it never settles within the frame (cumulative or start-anchored values).
    """
    full = compute(frame) if full is None else full
    values = full.to_numpy(np.float64)
    scale = np.nanstd(values, axis=0) if len(values) else np.ones(values.shape[1])
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    out: dict[str, int | None] = {str(c): 0 for c in full.columns}
    for s in starts:
        if s <= 0 or s >= len(frame) - 1:
            continue
        part = compute(frame.iloc[s:]).to_numpy(np.float64)
        ref = values[s:]
        one_nan = np.isnan(part) != np.isnan(ref)
        diff = np.abs(part - ref)
        far = np.where(np.isnan(diff), False, diff > tol * scale + ATOL)
        bad = one_nan | far
        for j, col in enumerate(full.columns):
            rows = np.flatnonzero(bad[:, j])
            if not len(rows):
                continue
            last = int(rows[-1]) + 1
            if last >= len(ref) - max(5, len(ref) // 20):
                out[str(col)] = None  # never settles within the frame
            elif out[str(col)] is not None:
                out[str(col)] = max(out[str(col)], last)
    return out


def default_starts(n: int, declared: int) -> list[int]:
    """History starts to compare: a few, each leaving room for several warm-ups."""
    room = n - 1 - 3 * max(declared, 10)
    if room <= 1:
        return [1] if n > 3 else []
    return sorted({1, max(1, room // 3), max(1, 2 * room // 3)})


# -- targets -----------------------------------------------------------------------


def target_findings(
    build: Callable[[pd.DataFrame], pd.Series],
    frame: pd.DataFrame,
    horizon: int,
    lookback: int,
    cuts: Sequence[int],
    seed: int = 0,
) -> list[Finding]:
    """A target at t may use bars t-lookback..t+h only, and must use t+1..t+h."""
    name = "target"
    full = build(frame)
    values = full.to_numpy(np.float64)[:, None]
    index = frame.index
    n = len(frame)
    # 1. the last h rows are unknown
    tail = values[max(0, n - horizon) :, 0]
    if np.isfinite(tail).any():
        row = n - horizon + int(np.argmax(np.isfinite(tail)))
        return [
            Finding(
                "target horizon",
                name,
                row,
                index[row],
                f"finite value {float(values[row, 0])!r} in the last {horizon} rows, whose "
                f"future (bars t+1..t+{horizon}) is not in the data",
            )
        ]
    for i, cut in enumerate(cuts):
        # 2. future beyond t+h: bars after cut perturbed -> rows <= cut - h unchanged
        other = build(perturb_future(frame, cut, seed + i)).to_numpy(np.float64)[:, None]
        keep = max(0, cut - horizon + 1)
        where = first_difference(other[:keep], values[:keep])
        if where is not None:
            return [
                _finding(
                    "target uses bars beyond t+h",
                    [name],
                    index,
                    other,
                    values,
                    where,
                    f"bars after {cut} changed (horizon {horizon})",
                )
            ]
        # 3. the past before t-lookback: a truncated start leaves rows >= s+lookback unchanged
        s = cut
        if s + lookback + horizon < n:
            part = build(frame.iloc[s:]).to_numpy(np.float64)[:, None]
            ref = values[s:]
            where = first_difference(part[lookback:], ref[lookback:])
            if where is not None:
                row = where[0] + lookback + s
                return [
                    Finding(
                        "target uses bars before t-lookback",
                        name,
                        row,
                        index[row],
                        f"history before bar {s} changed it (declared lookback {lookback})",
                    )
                ]
    # 4. aligned: changing bars t+1..t+h changes the target at t (for most t)
    rng = np.random.default_rng(seed)
    lo, hi = lookback + 1, n - horizon - 2
    rows = (
        rng.choice(np.arange(lo, hi), size=min(8, max(0, hi - lo)), replace=False)
        if hi > lo
        else []
    )
    moved = 0
    for t in rows:
        t = int(t)
        for _attempt in range(3):
            # bar-by-bar price factors and new bar shapes, so ratio, sign and scale-free
            # targets (log(high/low) of a future bar) move too
            other = frame.copy()
            reshape_bars(other, slice(t + 1, t + 1 + horizon), rng.uniform(0.7, 1.4, horizon), rng)
            value = float(build(other).iloc[t])
            if not np.isclose(value, values[t, 0], rtol=RTOL, atol=ATOL, equal_nan=True):
                moved += 1
                break
    if len(rows) and moved == 0:
        t = int(rows[0])
        return [
            Finding(
                "target alignment",
                name,
                t,
                index[t],
                f"changing bars t+1..t+{horizon} did not change the target at t at any of "
                f"{len(rows)} sampled bars: the target does not look {horizon} bar(s) ahead "
                "(misaligned, or built from past bars only)",
            )
        ]
    return []
