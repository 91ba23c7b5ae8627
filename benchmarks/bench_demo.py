"""Issue 16, goal 1: the demo's own workload, MTLStrategy vs an empty strategy.

The bundled crypto sample (5 assets x 8,760 hourly bars, 2024) on plain
``bt.feeds.PandasData``, Backtrader's own broker with the demo's 0.1% commission, the
demo config's fold models (trained here with the real trainer) and the demo's
strategy settings (``strategy_params`` of its ``[backtest]`` section). Three variants
alternate in rotating order in one process: the empty strategy, ``MTLStrategy`` in
precomputed mode and in live mode; medians of the repeats.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import backtrader as bt

from benchmarks.common import alternate


class EmptyStrategy(bt.Strategy):
    def next(self) -> None:
        pass


def _cerebro(frames: dict, commission: float) -> bt.Cerebro:
    cerebro = bt.Cerebro(stdstats=False, maxcpus=1)
    for symbol, frame in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=symbol)
    cerebro.broker.setcommission(commission=commission)
    return cerebro


def run(repeats: int = 3, log: Any = print) -> dict[str, Any]:
    from mtl_bt import pipeline, registry
    from mtl_bt.backtesting.runner import load_predictors, strategy_params
    from mtl_bt.cli.run_cmd import shipped_config
    from mtl_bt.config import load
    from mtl_bt.strategies.mtl import MTLStrategy
    from mtl_bt.training import train_walk_forward

    cfg = load(shipped_config("crypto"), ["training.threads=1"])
    frames = pipeline.load_data(cfg, progress=False)
    with tempfile.TemporaryDirectory(prefix="mtlbt-demo-") as tmp:
        train_walk_forward(cfg, frames, out_dir=Path(tmp))
        predictors = load_predictors(Path(tmp))
    bc = cfg.backtest

    def mtl(mode: str) -> int:
        rule = registry.create("signal", bc.signal, **bc.signal_options)
        kwargs = strategy_params(bc.model_copy(update={"mode": mode}), predictors, rule)
        cerebro = _cerebro(frames, bc.commission)
        cerebro.addstrategy(MTLStrategy, **kwargs)
        return int(cerebro.run()[0].decisions)

    def empty() -> int:
        cerebro = _cerebro(frames, bc.commission)
        cerebro.addstrategy(EmptyStrategy)
        return len(cerebro.run()[0])

    runs = {"empty": empty, "precomputed": lambda: mtl("precomputed"), "live": lambda: mtl("live")}
    times, last = alternate(runs, repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "assets": len(frames),
        "bars": int(max(len(f) for f in frames.values())),
        "folds": len(predictors),
        "architecture": cfg.model.architecture,
        "repeats": repeats,
        "seconds": med,
        "all_seconds": times,
        "decisions": {k: last[k] for k in ("precomputed", "live")},
        "ratio_precomputed": med["precomputed"] / med["empty"],
        "ratio_live": med["live"] / med["empty"],
    }
    log(
        f"  demo workload: empty {med['empty']:.2f}s, precomputed {out['ratio_precomputed']:.2f}x, "
        f"live {out['ratio_live']:.2f}x"
    )
    return out


if __name__ == "__main__":
    run()
