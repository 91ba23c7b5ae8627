"""The look-ahead laws across frames, for features that read other symbols or higher timeframes.

A cross-frame feature's row at the target's bar t (time T) may use bars of any frame with a
label <= T only. So, per cut T:
- **prefix invariance, every frame**: every frame of the run cut after T gives the same
  rows <= T as the whole data;
- **perturbed future, per frame**: a different future (bars after T) of *one* frame (the
  target's own, or any other symbol's) leaves the rows <= T unchanged. A daily value
  forward-filled onto hourly bars the naive pandas way (``resample('1D').last().ffill()``)
  fails here: the day's close is used before the day ends;
- **streaming = preloaded**: the rows computed bar by bar with the symbols' bars merged by
  time (``mtl_bt.features.cross_stream.cross_frames``) equal ``compute`` (the built-ins bit
  for bit; a pandas ``rolling`` over a window may differ in the last bits);
- **warm-up on every frame**: the rows left NaN while the frames it reads warm up are
  leading rows only (``drop_warmup`` leaves no NaN), and the function forgets the start of
  its source's history within its declared warm-up (counted in the source's bars).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.features.frames import named_frames
from mtl_bt.testing import lookahead

named = named_frames  # the frames with ``attrs["symbol"]`` set (what ``compute`` reads)


def perturb_after(frame: pd.DataFrame, when: pd.Timestamp, seed: int) -> pd.DataFrame:
    """``lookahead.perturb_future`` of the bars labelled after ``when``."""
    cut = int(np.searchsorted(frame.index, when, side="right")) - 1
    return lookahead.perturb_future(frame, cut, seed)


def cross_findings(
    spec: Any,
    frames: Mapping[str, pd.DataFrame],
    target: str,
    cuts: Sequence[int] | None = None,
    seed: int = 0,
) -> list[lookahead.Finding]:
    """The first broken law (prefix of every frame; perturbed future of each frame) of the
    features of ``spec`` on ``target``'s bars, the rest of ``frames`` as the run."""
    from mtl_bt.features import compute

    frames = named(frames)

    def rows(context: Mapping[str, pd.DataFrame]) -> np.ndarray:
        return compute(context[target], spec, context).to_numpy(np.float64)

    index = frames[target].index
    full = rows(frames)
    cuts = list(cuts) if cuts is not None else lookahead.default_cuts(len(index))
    for i, cut in enumerate(cuts):
        when = index[cut]
        cut_all = {s: f[f.index <= when] for s, f in frames.items()}
        part = rows(cut_all)
        where = lookahead.first_difference(part, full[: cut + 1])
        if where is not None:
            return [
                lookahead._finding(
                    "prefix invariance",
                    spec.columns(),
                    index,
                    part,
                    full,
                    where,
                    f"every frame cut after {when} vs the whole data",
                )
            ]
        for j, s in enumerate(frames):
            other = dict(frames)
            other[s] = perturb_after(frames[s], when, seed + 31 * i + j)
            moved = rows(other)
            where = lookahead.first_difference(moved[: cut + 1], full[: cut + 1])
            if where is not None:
                return [
                    lookahead._finding(
                        "perturbed future",
                        spec.columns(),
                        index,
                        moved,
                        full,
                        where,
                        f"bars of {s} after {when} changed",
                    )
                ]
    return []


def stream_findings(
    spec: Any,
    frames: Mapping[str, pd.DataFrame],
    rtol: float = lookahead.RTOL,
    atol: float = lookahead.ATOL,
) -> list[str]:
    """Symbols whose rows streamed bar by bar differ from ``compute`` (with the first
    column and time), the symbols' bars merged by time. ``rtol=atol=0``: bit for bit (the
    built-ins); the default tolerates the last bits a pandas ``rolling`` changes when it
    runs over a window instead of the whole series."""
    from mtl_bt.features import compute
    from mtl_bt.features.cross_stream import cross_frames

    frames = named(frames)
    streamed = cross_frames(spec, frames)
    out = []
    for s, f in frames.items():
        want = compute(f, spec, frames).to_numpy(np.float64)
        got = streamed[s]
        same = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
        if not same.all():
            row, col = np.argwhere(~same)[0]
            out.append(
                f"{s}: column {spec.columns()[col]!r} streams to {got[row, col]!r} but computes "
                f"{want[row, col]!r} at {f.index[row]}"
            )
    return out


def source_frames(
    name: str, spec: Any, frames: Mapping[str, pd.DataFrame]
) -> dict[str, pd.DataFrame]:
    """The frames feature ``name``'s function runs on (aggregated for a higher timeframe)."""
    from mtl_bt.features.frames import aggregate

    reads = spec.reads()[name]
    symbols = list(frames) if reads.all_symbols or reads.symbol is None else [reads.symbol]
    out = {}
    for s in symbols:
        f = frames[s]
        out[s] = aggregate(f, reads.timeframe, reads.tz)[0] if reads.timeframe else f
    return out


def source_warmup(
    name: str, spec: Any, frames: Mapping[str, pd.DataFrame]
) -> dict[str, int | None]:
    """Per column, the most source bars after which the function no longer depends on where
    its source's history starts (``lookahead.measured_warmup`` on each source frame)."""
    from mtl_bt.features.base import declared_warmup
    from mtl_bt.features.spec import feature_fn

    fn = feature_fn(name)
    params = spec.resolved_params()[name]
    declared = declared_warmup(name, fn, params)

    def run(f: pd.DataFrame) -> pd.DataFrame:
        return fn(f, **params)

    worst: dict[str, int | None] = {}
    for source in source_frames(name, spec, named(frames)).values():
        starts = lookahead.default_starts(len(source), declared)
        for column, value in lookahead.measured_warmup(run, source, starts).items():
            if value is None or worst.get(column, 0) is None:
                worst[column] = None
            else:
                worst[column] = max(worst.get(column) or 0, value)
    return worst


def ragged_frames(
    symbols: Sequence[str] = ("AAA", "BBB", "CCC"),
    bars: int = 900,
    index: pd.DatetimeIndex | None = None,
) -> dict[str, pd.DataFrame]:
    """Hourly synthetic symbols on different calendars: one starts late and misses a day,
    one misses random bars (the frames ``check_cross_feature`` uses by default); on
    ``index`` (another frame's bars) instead of hourly bars from 2010 if given."""
    from mtl_bt.data.synthetic import garch_bars

    rng = np.random.default_rng(11)
    out = {}
    for i, s in enumerate(symbols):
        f = garch_bars(bars if index is None else len(index), seed=20 + i, freq="1h")
        if index is not None:
            f.index = index
        if i % 3 == 1:
            f = f.iloc[np.sort(rng.choice(len(f), len(f) * 5 // 6, replace=False))]
        elif i % 3 == 2:
            f = f.drop(f.index[200:224]).iloc[30:]
        f.attrs = {"symbol": s}
        out[s] = f
    return out


def config_rows(
    name: str, spec: Any, frames: Mapping[str, pd.DataFrame], bars: int, cuts: int
) -> list[tuple[str, str, str]]:
    """``mtl-bt check``'s rows (law, status, detail) for one cross-frame feature on the
    config's data: look-ahead across frames for every symbol as the target, the warm-up of
    every frame it reads, and streaming = compute with the symbols' bars merged by time."""
    from mtl_bt.features import compute, drop_warmup
    from mtl_bt.features.base import declared_warmup
    from mtl_bt.features.spec import feature_fn

    frames = named(frames)
    end = min(f.index[-1] for f in frames.values())
    run = {s: f[f.index <= end].iloc[-bars:] for s, f in frames.items()}
    rows: list[tuple[str, str, str]] = []
    found: list[tuple[str, lookahead.Finding]] = []
    for s, f in run.items():
        points = lookahead.default_cuts(len(f), 0, cuts)
        hit = cross_findings(spec, run, s, points)
        if hit:
            found.append((s, hit[0]))
            break
    if found:
        rows.append(("look-ahead", "FAIL", f"{found[0][0]}: {found[0][1]}"))
    else:
        rows.append(
            (
                "look-ahead",
                "pass",
                f"{cuts} cuts x {len(run)} symbols, every frame cut and perturbed",
            )
        )
    declared = declared_warmup(name, feature_fn(name), spec.resolved_params()[name])
    measured = source_warmup(name, spec, run)
    over = {c: v for c, v in measured.items() if v is None or v > declared}
    short = ""
    for s, f in run.items():
        try:
            drop_warmup(compute(f, spec, run), spec, s)
        except Exception as exc:  # noqa: BLE001 - reported as the row's detail
            short = str(exc)
            break
    if over or short:
        detail = short or f"source columns {over} settle after the declared warm-up {declared}"
        rows.append(("warm-up", "FAIL", detail))
    else:
        rows.append(("warm-up", "pass", f"declared {declared} source bars, measured {measured}"))
    bad = stream_findings(spec, run)
    rows.append(
        ("streaming = compute", "FAIL", bad[0])
        if bad
        else ("streaming = compute", "pass", "bars of every symbol merged by time")
    )
    return rows
