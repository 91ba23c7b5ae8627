"""Issue 16, goal 1: the demo's own workload, MTLStrategy vs an empty strategy.

The bundled crypto sample (5 assets x 8,760 hourly bars, 2024) on plain
``bt.feeds.PandasData``, Backtrader's own broker with the demo's 0.1% commission, the
demo config's fold models (trained here with the real trainer) and the demo's
strategy settings (``strategy_params`` of its ``[backtest]`` section). Four variants
alternate in rotating order in one process: the empty strategy, ``MTLStrategy`` in
precomputed mode and in live mode, and "same orders" (the precomputed run's own orders
replayed by a strategy with no model on the same feeds and broker: what Backtrader
itself charges for those orders and the positions they leave, the floor no strategy
placing them can go below); medians of the repeats. Each run is timed in wall seconds
and in this process's CPU seconds (``time.process_time``: on a shared machine the
other jobs' load inflates wall time far more than CPU time).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import backtrader as bt


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
    from benchmarks.bench_backtest import ReplayStrategy, order_plan
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

    def _mtl_strategy(mode: str) -> Any:
        rule = registry.create("signal", bc.signal, **bc.signal_options)
        kwargs = strategy_params(bc.model_copy(update={"mode": mode}), predictors, rule)
        cerebro = _cerebro(frames, bc.commission)
        cerebro.addstrategy(MTLStrategy, **kwargs)
        return cerebro.run()[0]

    def mtl(mode: str) -> int:
        return int(_mtl_strategy(mode).decisions)

    def empty() -> int:
        cerebro = _cerebro(frames, bc.commission)
        cerebro.addstrategy(EmptyStrategy)
        return len(cerebro.run()[0])

    plan: dict[str, Any] = {}

    def precomputed() -> int:
        strat = _mtl_strategy("precomputed")
        if not plan:
            plan["plan"] = order_plan(strat)
        return int(strat.decisions)

    def same_orders() -> int:
        cerebro = _cerebro(frames, bc.commission)
        cerebro.addstrategy(ReplayStrategy, plan=plan["plan"])
        return len(cerebro.run()[0].broker.orders)

    runs = {"empty": empty, "precomputed": precomputed, "live": lambda: mtl("live")}
    runs["same_orders"] = same_orders  # last in round 0, so after precomputed
    times, cpu, last = _alternate(runs, repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    out = {
        "assets": len(frames),
        "bars": int(max(len(f) for f in frames.values())),
        "folds": len(predictors),
        "architecture": cfg.model.architecture,
        "repeats": repeats,
        "seconds": med,
        "all_seconds": times,
        "decisions": {k: last[k] for k in ("precomputed", "live")},
        "orders": last["same_orders"],
        "ratio_precomputed": med["precomputed"] / med["empty"],
        "ratio_live": med["live"] / med["empty"],
        "ratio_same_orders": med["same_orders"] / med["empty"],
        "cpu_seconds": med_cpu,
        "all_cpu_seconds": cpu,
        "cpu_ratio_precomputed": med_cpu["precomputed"] / med_cpu["empty"],
        "cpu_ratio_live": med_cpu["live"] / med_cpu["empty"],
        "cpu_ratio_same_orders": med_cpu["same_orders"] / med_cpu["empty"],
    }
    log(
        f"  demo workload: empty {med['empty']:.2f}s, precomputed {out['ratio_precomputed']:.2f}x, "
        f"live {out['ratio_live']:.2f}x, same orders {out['ratio_same_orders']:.2f}x "
        f"(CPU time: {out['cpu_ratio_precomputed']:.2f}x / {out['cpu_ratio_live']:.2f}x / "
        f"{out['cpu_ratio_same_orders']:.2f}x)"
    )
    return out


def _alternate(
    runs: dict[str, Any], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, Any]]:
    """``benchmarks.common.alternate`` (rotating round-robin) timing wall and CPU seconds."""
    from benchmarks.common import fresh_heap

    names = list(runs)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    last: dict[str, Any] = {}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fresh_heap()
            t0, c0 = time.perf_counter(), time.process_time()
            last[name] = runs[name]()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu, last


if __name__ == "__main__":
    run()
