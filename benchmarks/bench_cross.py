"""Streaming cost of cross-frame features, per asset-bar, on vs off (issue 29).

``python -m benchmarks.bench_cross [--bars N]``: the five bundled crypto symbols' hourly
bars pushed step by step (every symbol's bar of a step at once), as the streaming book
does, through
- ``scalar``: one ``FeatureStream`` per asset (the engine below 8 feeds without cross
  features), the default single-frame features;
- ``batch``: ``BatchStream`` over the step's assets, the same features;
- ``cross``: ``CrossRows`` (what the book uses with cross-frame features: ``BatchStream``
  for the single-frame part plus ``CrossStream``), the same features plus
  ``cross_asset`` (BTC), ``market`` and ``higher_tf`` (1d), each with ``log_return``;
  ``xscalar``: the same with a ``FeatureStream`` per asset for the single-frame part (what
  the book uses below 8 feeds).
Prints microseconds per asset-bar (best of 3) side by side in one process.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

CROSS = {
    "cross_asset": {"of": "BTC/USDT", "params": {"windows": [1, 5]}},
    "market": {"params": {"windows": [1]}},
    "higher_tf": {"timeframe": "1d", "params": {"windows": [1, 5]}},
}


def main(argv: list[str] | None = None) -> None:
    from mtl_bt.features import DEFAULT_FEATURES, FeatureSpec
    from mtl_bt.features.cross_stream import CrossRows
    from mtl_bt.features.frames import micros_of
    from mtl_bt.features.streaming import BatchStream, FeatureStream
    from mtl_bt.testing import sample_bars

    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=2000)
    args = ap.parse_args(argv)
    symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "AVAX/USDT", "DOT/USDT"]
    frames = {s: sample_bars(s, args.bars) for s in symbols}
    cols = ["open", "high", "low", "close", "volume"]
    steps = []
    for i in range(args.bars):
        steps.append(
            [
                (float(micros_of(f.index[i : i + 1])[0]), *f[cols].iloc[i].to_numpy(np.float64))
                for f in frames.values()
            ]
        )
    ids = list(range(len(symbols)))
    local = FeatureSpec(names=list(DEFAULT_FEATURES))
    cross = FeatureSpec(names=[*DEFAULT_FEATURES, *CROSS], params=CROSS)

    def scalar():
        streams = [FeatureStream(local, symbol=s) for s in symbols]
        for bars in steps:
            for a in ids:
                streams[a].push(bars[a])

    def batch():
        stream = BatchStream(local, symbols)
        for bars in steps:
            stream.push(ids, bars)

    def crossed():
        stream = CrossRows(cross, symbols)
        for bars in steps:
            stream.push(ids, bars)

    def crossed_scalar():
        stream = CrossRows(cross, symbols, batch=False)
        for bars in steps:
            stream.push(ids, bars)

    per = args.bars * len(symbols)
    out = {}
    runs = (("scalar", scalar), ("batch", batch), ("cross", crossed), ("xscalar", crossed_scalar))
    for name, fn in runs:
        best = min(_time(fn) for _ in range(3))
        out[name] = best / per * 1e6
    print(f"{len(symbols)} assets x {args.bars} hourly bars, us per asset-bar (best of 3):")
    print(
        f"  {len(local.columns())} single-frame columns, scalar FeatureStream: {out['scalar']:.1f}"
    )
    print(
        f"  {len(local.columns())} single-frame columns, BatchStream:          {out['batch']:.1f}"
    )
    print(
        f"  + {len(cross.columns()) - len(local.columns())} cross-frame columns, CrossRows:"
        f"           {out['cross']:.1f}  ({out['cross'] / out['scalar']:.2f}x scalar, "
        f"{out['cross'] / out['batch']:.2f}x batch)"
    )
    print(
        f"  + {len(cross.columns()) - len(local.columns())} cross-frame columns, CrossRows with "
        f"per-asset FeatureStreams (the book below 8 feeds): {out['xscalar']:.1f}  "
        f"({out['xscalar'] / out['scalar']:.2f}x scalar)"
    )


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
