"""Streaming feature cost per asset per bar (feeds that are not preloaded) against the number
of assets, the current path next to the previous one, in one process.

    .venv/bin/python -m benchmarks.bench_streaming [--assets 1 5 20 50 200] [--repeats 3]
                                                   [--plot docs/benchmarks_streaming.png]

For each number of assets n, n feature streams (the default feature set, every built-in)
receive bars step by step, every asset one bar per step, as ``StreamingBook`` feeds them;
after a warm-up long enough for every window to be full, the timed bars give microseconds
per asset per bar. Side by side, alternating in rotating order, median of the repeats:

- ``new``: ``FeatureStream.push`` with the built-ins' stream updaters (scalar Python-float
  updaters keeping their own windows);
- ``old``: the previous path, rebuilt here: every rolling built-in reran its numpy core over
  its window (``TailStream``) and the recursive ones read the numpy bar buffer;
- ``book``: ``StreamingBook.advance`` (the new features plus the book's own per-bar work:
  reading the feed's bar, spacing and calendar bookkeeping, the float32 row).

A single-asset table adds the vectorised ``compute`` (the preloaded path, per bar) and the
fallback a third-party feature without a stream updater gets. The bars are the bundled
hourly crypto sample (5 symbols), asset i using symbol i % 5 with its prices scaled by
1 + i/1000, so every stream has its own numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import alternate, loadavg, machine_info, median

ASSETS = (1, 5, 20, 50, 200)
GOAL_US = 50.0
#: bars pushed before timing (every default window is full after 73: rsi's warm-up)
WARM = 80
REPO = Path(__file__).resolve().parent.parent


def _frames() -> list[pd.DataFrame]:
    from mtl_bt.config import DataConfig
    from mtl_bt.data import load_frames

    cfg = DataConfig(
        source="sample",
        symbols=["BTC/USDT", "ETH/USDT", "SOL/USDT", "AVAX/USDT", "DOT/USDT"],
        timeframe="1h",
    )
    return list(load_frames(cfg).values())


def _bars(frame: pd.DataFrame, scale: float) -> list[tuple[float, ...]]:
    nums = pd.DatetimeIndex(frame.index).tz_convert("UTC").as_unit("us").asi8.astype(np.float64)
    values = frame[["open", "high", "low", "close", "volume"]].to_numpy(np.float64) * scale
    return [(float(t), *map(float, v)) for t, v in zip(nums, values, strict=True)]


# -- the previous path (before issue 16's streaming work), for the side-by-side baseline ----


class _OldCloseEma:
    def __init__(self, span: int = 20) -> None:
        from mtl_bt.features.streaming import Ewm
        from mtl_bt.plugins.features.price import _ema_warmup, span_alpha

        self.ema, self.warm = Ewm(span_alpha(span)), _ema_warmup(span)

    def update(self, bars: Any) -> tuple[float]:
        close = bars.column("close", 1)
        ema = self.ema.update(float(close[0]))
        if bars.count <= self.warm:
            return (np.nan,)
        return (float(np.log(close / ema)[0]),)


class _OldRsi:
    window = 2

    def __init__(self, window: int = 14) -> None:
        from mtl_bt.features.streaming import Ewm
        from mtl_bt.plugins.features.price import _rsi_warmup

        self.gain, self.loss, self.warm = Ewm(1.0 / window), Ewm(1.0 / window), _rsi_warmup(window)

    def update(self, bars: Any) -> tuple[float]:
        close = bars.column("close", 2)
        delta = float(close[1] - close[0]) if len(close) == 2 else np.nan
        if np.isnan(delta):
            gain = loss = np.nan
        else:
            gain, loss = (delta if delta > 0 else 0.0), (-delta if delta < 0 else 0.0)
        g, lo = self.gain.update(gain), self.loss.update(loss)
        if bars.count <= self.warm:
            return (np.nan,)
        g64, l64 = np.float64(g), np.float64(lo)
        if l64 > 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                return (float(100.0 - 100.0 / (1.0 + g64 / l64)),)
        return (100.0 if g64 > 0 else 50.0,)


class _OldMacd:
    def __init__(self, fast: int = 12, slow: int = 26) -> None:
        from mtl_bt.features.streaming import Ewm
        from mtl_bt.plugins.features.price import _macd_warmup, span_alpha

        self.warm = _macd_warmup(fast, slow)
        self.fast, self.slow = Ewm(span_alpha(fast)), Ewm(span_alpha(slow))

    def update(self, bars: Any) -> tuple[float]:
        close = bars.column("close", 1)
        c = float(close[0])
        line = np.float64(self.fast.update(c)) - np.float64(self.slow.update(c))
        if bars.count <= self.warm:
            return (np.nan,)
        return (float(line / close[0]),)


def old_factories() -> dict[str, Callable[..., Any]]:
    """The stream factories of the previous path: numpy cores over the window."""
    from mtl_bt.features.streaming import TailStream
    from mtl_bt.plugins.features import price, range_vol, volume

    def tail(core: Callable[..., Any], fields: Sequence[str], window: Callable[..., int]):
        return lambda **p: TailStream(core(**p), fields, window(**p))

    return {
        "log_return": lambda windows=(1, 5, 10): TailStream(
            price._log_return_core(list(windows)), ["close"], max(windows) + 1
        ),
        "close_sma": tail(
            lambda window=20: price._sma_core(window), ["close"], lambda window=20: window
        ),
        "close_ema": _OldCloseEma,
        "volatility": tail(
            lambda window=20: price._vol_core(window), ["close"], lambda window=20: window + 1
        ),
        "momentum": tail(
            lambda window=20: price._momentum_core(window), ["close"], lambda window=20: window + 1
        ),
        "rsi": _OldRsi,
        "macd": _OldMacd,
        "bollinger": lambda window=20, k=2.0: TailStream(
            price._bollinger_core(window, k), ["close"], window
        ),
        "volume_ratio": lambda window=20, floor=1e-3: TailStream(
            volume._ratio_core(window, floor), ["volume"], window
        ),
        "volume_zscore": tail(
            lambda window=20: volume._z_core(window), ["volume"], lambda window=20: window
        ),
        "parkinson": tail(
            lambda window=20: range_vol._pk_core(window), ["high", "low"], lambda window=20: window
        ),
        "garman_klass": tail(
            lambda window=20: range_vol._gk_core(window),
            ["open", "high", "low", "close"],
            lambda window=20: window,
        ),
    }


# -- the measurement --------------------------------------------------------------------


class _Line:
    """What ``current_bar`` reads of a Backtrader line: ``line[0]``, the feed's current bar."""

    __slots__ = ("feed", "values")

    def __init__(self, feed: _Feed, values: np.ndarray) -> None:
        self.feed, self.values = feed, values

    def __getitem__(self, i: int) -> float:
        return self.values[self.feed.i + i]


class _Feed:
    """A stand-in feed over precomputed bars; ``i`` is its current bar (Backtrader's job)."""

    def __init__(self, bars: list[tuple[float, ...]]) -> None:
        from mtl_bt.backtesting.feeds import bt_datenums

        cols = np.array(bars, dtype=np.float64).T
        nums = bt_datenums(pd.DatetimeIndex(cols[0].astype(np.int64), tz="UTC").as_unit("us"))
        self.i = 0
        self.datetime = _Line(self, np.asarray(nums, dtype=np.float64))
        self.open, self.high, self.low, self.close, self.volume = (
            _Line(self, cols[k]) for k in range(1, 6)
        )


class _Predictor:
    def __init__(self, spec: Any) -> None:
        self.feature_spec, self.feature_columns = spec, spec.columns()


def _runs(n: int, frames: list[pd.DataFrame], timed: int) -> dict[str, Callable[[], float]]:
    """name -> callable returning the seconds of its timed bars (set-up and warm-up untimed)."""
    from mtl_bt.backtesting.streaming import StreamingBook
    from mtl_bt.features import FeatureSpec
    from mtl_bt.features.streaming import BatchStream, FeatureStream

    spec = FeatureSpec()
    bars = [_bars(frames[i % len(frames)].iloc[: WARM + timed], 1 + i / 1000) for i in range(n)]
    feeds = [_Feed(b) for b in bars]
    old = old_factories()
    last: dict[str, np.ndarray] = {}

    def streams(factories: Any) -> Callable[[], float]:
        def run() -> float:
            made = [FeatureStream(spec, symbol=f"A{i}", factories=factories) for i in range(n)]
            for t in range(WARM):
                for a in range(n):
                    made[a].push(bars[a][t])
            out = None
            t0 = time.perf_counter()
            for t in range(WARM, WARM + timed):
                for a in range(n):
                    out = made[a].push(bars[a][t])
            dt = time.perf_counter() - t0
            last["new" if factories is None else "old"] = out  # the last asset's last row
            return dt

        return run

    def batched() -> float:
        stream = BatchStream(spec, [f"A{i}" for i in range(n)])
        idx = list(range(n))
        steps = [[bars[a][t] for a in idx] for t in range(WARM + timed)]
        for t in range(WARM):
            stream.push(idx, steps[t])
        t0 = time.perf_counter()
        for t in range(WARM, WARM + timed):
            out = stream.push(idx, steps[t])
        dt = time.perf_counter() - t0
        last["batch"] = out[-1]
        return dt

    def book() -> float:
        b = StreamingBook(_Predictor(spec), [f"A{i}" for i in range(n)], 1, 20)
        for t in range(WARM):
            for a in range(n):
                feeds[a].i = t
                b.advance(a, feeds[a])
            b.ready(0, 0)
        t0 = time.perf_counter()
        for t in range(WARM, WARM + timed):
            for a in range(n):
                feeds[a].i = t
                b.advance(a, feeds[a])
            b.ready(0, 0)  # the strategy's first question computes the step's rows
        return time.perf_counter() - t0

    runs: dict[str, Callable[[], float]] = {
        "old": streams(old),
        "new": streams(None),
        "batch": batched,
        "book": book,
    }
    runs["_last"] = lambda: last  # type: ignore[assignment]
    return runs


def measure_assets(
    assets: Sequence[int] = ASSETS, repeats: int = 3, budget: int = 2000, log: Any = print
) -> list[dict[str, Any]]:
    """Microseconds per asset per bar, old vs new vs book, for each number of assets.

    ``budget``: asset-bars timed per repeat (n assets get ``max(10, budget // n)`` bars)."""
    from mtl_bt.backtesting.streaming import BATCH_MIN_ASSETS

    frames = _frames()
    rows = []
    for n in assets:
        timed = max(10, budget // n)
        runs = _runs(n, frames, timed)
        last = runs.pop("_last")
        # each run returns the seconds of its timed bars only (set-up and warm-up excluded)
        timed_s: dict[str, list[float]] = {k: [] for k in runs}
        alternate(
            {k: (lambda k=k, f=f, out=timed_s: out[k].append(f())) for k, f in runs.items()},
            repeats=repeats,
        )
        us = {k: median(v) / (n * timed) * 1e6 for k, v in timed_s.items()}
        got = last()
        best = min(us["new"], us["batch"])
        row = {
            "assets": n,
            "bars_timed": timed,
            "old_us": us["old"],
            "scalar_us": us["new"],
            "batch_us": us["batch"],
            "book_us": us["book"],
            "book_engine": "batch" if n >= BATCH_MIN_ASSETS else "scalar",
            "speedup": us["old"] / best,
            "goal_met": best <= GOAL_US,
            "same_rows": bool(
                np.array_equal(got["old"], got["new"], equal_nan=True)
                and np.array_equal(got["old"], got["batch"], equal_nan=True)
            ),
            "load": loadavg(),
        }
        log(
            f"  {n:4d} assets x {timed:4d} bars: old {row['old_us']:7.1f}  scalar "
            f"{row['scalar_us']:6.1f}  batch {row['batch_us']:6.1f}  book "
            f"{row['book_us']:6.1f} us/asset/bar  x{row['speedup']:.1f}  load {row['load']}"
        )
        rows.append(row)
    return rows


def measure_single(bars: int = 1000, repeats: int = 3) -> dict[str, Any]:
    """One asset: vectorised compute, new and old streaming, the generic fallback."""
    from mtl_bt import registry
    from mtl_bt.features import FeatureSpec, compute
    from mtl_bt.features.streaming import stream_frame

    frame = _frames()[0].iloc[:bars]
    spec = FeatureSpec()
    one = FeatureSpec(names=["close_sma"])
    fn = registry.get("feature", "close_sma")
    old = old_factories()

    def old_stream() -> np.ndarray:
        from mtl_bt.features.streaming import FeatureStream

        stream = FeatureStream(spec, factories=old)
        return np.array([stream.push(b) for b in _bars(frame, 1.0)])

    def fallback() -> np.ndarray:
        saved = fn.stream
        fn.stream = None  # what a plugin without a stream updater gets
        try:
            return stream_frame(one, frame)
        finally:
            fn.stream = saved

    runs = {
        "vectorised compute (preloaded)": lambda: compute(frame, spec).to_numpy(),
        "streaming, all 12 built-ins (new)": lambda: stream_frame(spec, frame),
        "streaming, all 12 built-ins (old)": old_stream,
        "streaming, close_sma (new)": lambda: stream_frame(one, frame),
        "fallback recompute, close_sma": fallback,
    }
    times, last = alternate(runs, repeats=repeats, warmup=1)
    want = last["vectorised compute (preloaded)"]
    same = all(
        np.array_equal(want, last[k], equal_nan=True)
        for k in ("streaming, all 12 built-ins (new)", "streaming, all 12 built-ins (old)")
    )
    base = median(times["vectorised compute (preloaded)"])
    return {
        "bars": len(frame),
        "identical_rows": bool(same),
        "rows": {
            name: {
                "us_per_bar": median(t) / len(frame) * 1e6,
                "ratio_to_vectorised": median(t) / base,
            }
            for name, t in times.items()
        },
    }


def measure(
    assets: Sequence[int] = ASSETS,
    repeats: int = 3,
    budget: int = 2000,
    single_bars: int = 1000,
    log: Any = print,
) -> dict[str, Any]:
    machine = machine_info()
    log(f"  load {machine.get('load_average_at_start')}")
    single = measure_single(single_bars, repeats)
    for name, row in single["rows"].items():
        log(
            f"  1 asset, {name:36s} {row['us_per_bar']:8.1f} us/bar  x{row['ratio_to_vectorised']:.1f}"
        )
    rows = measure_assets(assets, repeats, budget, log)
    return {
        "goal_us": GOAL_US,
        "warm_bars": WARM,
        "repeats": repeats,
        "rows": rows,
        "single": single,
        "load_average_at_end": loadavg(),
        "machine": machine,
    }


def plot(res: dict[str, Any], path: Path) -> Path:
    """us per asset per bar vs assets (log-log): old, new, book, the goal line."""

    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = res["rows"]
    n = [r["assets"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(n, [r["old_us"] for r in rows], "o-", label="old: numpy core over the window")
    ax.plot(n, [r["scalar_us"] for r in rows], "o-", label="new: scalar updaters, per asset")
    ax.plot(n, [r["batch_us"] for r in rows], "o-", label="new: batch over the step's assets")
    ax.plot(n, [r["book_us"] for r in rows], "s--", label="StreamingBook (engine by assets)")
    ax.axhline(res["goal_us"], color="k", lw=0.8, ls=":", label=f"goal {res['goal_us']:.0f} us")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(n, [str(x) for x in n])
    ax.set_xlabel("assets (each gets a bar every step)")
    ax.set_ylabel("us per asset per bar (default features)")
    load = res["machine"].get("load_average_at_start")
    ax.set_title(
        f"Streaming features, 12 built-ins (load {load} -> {res['load_average_at_end']})",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    from mtl_bt.atomic import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", type=int, nargs="+", default=list(ASSETS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=int, default=2000, help="asset-bars timed per repeat")
    ap.add_argument("--plot", default=str(REPO / "docs" / "benchmarks_streaming.png"))
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    res = measure(
        args.assets, args.repeats, args.budget, log=(lambda _m: None) if args.json else print
    )
    if args.plot:
        plot(res, Path(args.plot))
    if args.json:
        print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
