"""Streaming feature cost per asset per bar (feeds that are not preloaded), side by side
with the vectorised preloaded computation over the same bars, in one process.

    .venv/bin/python -m benchmarks.bench_streaming [--bars 2000] [--repeats 3]

Prints microseconds per bar for: the vectorised ``compute`` over the whole frame (the
preloaded path, divided by the bar count), the streaming ``FeatureStream.push`` (every
built-in feature: the recursive ones carried forward, the rolling ones over their window),
and the generic fallback a third-party feature without a stream updater gets (the feature
function over its trailing window), measured on one rolling built-in. Ratios are against
the vectorised path. Real bundled BTC/USDT hourly bars.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd

from benchmarks.common import alternate, machine_info, median


def _frame(bars: int) -> pd.DataFrame:
    from mtl_bt.config import DataConfig
    from mtl_bt.data import load_frames

    cfg = DataConfig(source="sample", symbols=["BTC/USDT"], timeframe="1h")
    return load_frames(cfg)["BTC/USDT"].iloc[:bars]


def measure(bars: int = 2000, repeats: int = 3) -> dict:
    from mtl_bt import registry
    from mtl_bt.features import FeatureSpec, compute
    from mtl_bt.features.streaming import stream_frame

    frame = _frame(bars)
    spec = FeatureSpec()
    one = FeatureSpec(names=["close_sma"])
    fn = registry.get("feature", "close_sma")

    def fallback() -> np.ndarray:
        saved = fn.stream
        fn.stream = None  # what a plugin without a stream updater gets
        try:
            return stream_frame(one, frame)
        finally:
            fn.stream = saved

    runs = {
        "vectorised (preloaded)": lambda: compute(frame, spec).to_numpy(),
        "streaming, all 12 built-ins": lambda: stream_frame(spec, frame),
        "streaming, close_sma": lambda: stream_frame(one, frame),
        "fallback recompute, close_sma": fallback,
    }
    times, last = alternate(runs, repeats=repeats, warmup=1)
    same = np.array_equal(
        last["vectorised (preloaded)"], last["streaming, all 12 built-ins"], equal_nan=True
    )
    base = median(times["vectorised (preloaded)"])
    rows = {
        name: {
            "us_per_bar": median(t) / len(frame) * 1e6,
            "ratio_to_vectorised": median(t) / base,
        }
        for name, t in times.items()
    }
    return {
        "bars": len(frame),
        "identical_rows": bool(same),
        "rows": rows,
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    res = measure(args.bars, args.repeats)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"{res['bars']} bars, identical rows streaming vs vectorised: {res['identical_rows']}")
    print(f"load {res['machine'].get('load')}")
    for name, row in res["rows"].items():
        print(f"  {name:32s} {row['us_per_bar']:10.1f} us/bar  x{row['ratio_to_vectorised']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
