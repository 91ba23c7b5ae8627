"""Backtest overhead: MTLStrategy on our feed vs an empty strategy on stock PandasData.

Both sides get the same synthetic hourly bars (``garch_bars``, fixed seeds). The
baseline is what Backtrader costs with nothing on top: ``bt.Cerebro`` +
``bt.feeds.PandasData`` per asset + a strategy whose ``next`` does nothing. The
MTL side is ``run_backtest`` exactly as users call it: our ``FrameFeed``,
causal features, ``MTLStrategy`` with one batched forward pass per bar
(``rebalance="bar"``), the ``agree_voltarget`` signal with threshold 0 (so it
trades), orders with commission and slippage, the portfolio analyzer and the
result tables. ``mode="precomputed"`` runs the model once over all rows before
the run instead. A third reference, the empty strategy on our ``FrameFeed``,
splits the ratio into "feed saving" and "what the model and trading cost".

The model is a small real checkpoint: ``train_walk_forward`` (the real trainer,
1 fold, few epochs) on separate synthetic bars that end years before the
benchmark bars, saved to disk and loaded with ``Predictor.from_checkpoint``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import backtrader as bt
import pandas as pd

from benchmarks.common import alternate, loadavg, median

#: the benchmark bars start after the training bars end, so every bar is out of sample
BENCH_START = "2012-01-02"
TRAIN_START = "2000-01-03"
TASKS = ("return", "direction", "volatility", "volume")


class EmptyStrategy(bt.Strategy):
    """The baseline: Backtrader's own per-bar cost and nothing else."""

    def next(self) -> None:
        pass


def make_frames(n_assets: int, n_bars: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """``n_assets`` synthetic hourly GARCH assets of ``n_bars`` bars (seed, seed+1, ...)."""
    from mtl_bt.data.synthetic import garch_bars

    return {
        f"SYN{i:03d}": garch_bars(
            n_bars, seed=seed + i, freq="1h", start=BENCH_START, symbol=f"SYN{i:03d}"
        )
        for i in range(n_assets)
    }


def model_config(epochs: int = 3, hidden: tuple[int, ...] = (64, 32)) -> Any:
    """The benchmark model: shared_bottom, four 1-bar tasks, equal weighting, 1 thread."""
    from mtl_bt.config import from_dict

    return from_dict(
        {
            "data": {"source": "csv", "symbols": ["TRAIN0", "TRAIN1"], "timeframe": "1h"},
            "tasks": [{"name": t, "horizons": [1]} for t in TASKS],
            "model": {"architecture": "shared_bottom", "hidden": list(hidden), "dropout": 0.1},
            "weighting": {"name": "equal"},
            "training": {"epochs": epochs, "batch_size": 256, "patience": epochs, "threads": 1},
            "walk_forward": {"train_bars": 2000, "test_bars": 500, "max_folds": 1},
        }
    )


def train_model(out_dir: str | Path, bars: int = 3000, epochs: int = 3) -> tuple[Any, dict]:
    """Train the benchmark checkpoint with the real trainer; return (Predictor, info)."""
    from mtl_bt.data.synthetic import garch_bars
    from mtl_bt.predictor import Predictor
    from mtl_bt.training import train_walk_forward

    frames = {
        f"TRAIN{i}": garch_bars(
            bars, seed=100 + i, freq="1h", start=TRAIN_START, symbol=f"TRAIN{i}"
        )
        for i in range(2)
    }
    config = model_config(epochs)
    # one fold over these bars: warm-up (~50) + train + purge + test
    config.walk_forward.train_bars = int(0.75 * (bars - 100))
    config.walk_forward.test_bars = bars - 100 - config.walk_forward.train_bars
    result = train_walk_forward(config, frames, out_dir=out_dir)
    path = result.checkpoints[0]
    predictor = Predictor.from_checkpoint(path)
    info = {
        "how": "train_walk_forward (real trainer), 1 fold, saved + Predictor.from_checkpoint",
        "architecture": config.model.architecture,
        "hidden": list(config.model.hidden),
        "tasks": predictor.task_names,
        "features": len(predictor.feature_columns),
        "train_assets": len(frames),
        "train_bars_per_asset": bars,
        "epochs_run": int(result.folds[0]["epochs_run"]),
        "train_seconds": float(result.summary["seconds"]),
        "checkpoint_bytes": Path(path).stat().st_size,
    }
    return predictor, info


def run_empty_pandas(frames: dict[str, pd.DataFrame]) -> int:
    """Empty strategy on stock ``bt.feeds.PandasData``; returns the bars seen."""
    cerebro = bt.Cerebro(stdstats=False, maxcpus=1)
    for symbol, frame in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=symbol)
    cerebro.addstrategy(EmptyStrategy)
    strat = cerebro.run()[0]
    return len(strat)


def run_empty_fast(frames: dict[str, pd.DataFrame]) -> int:
    """Empty strategy on our ``FrameFeed`` (isolates the feed's share of the ratio)."""
    from mtl_bt.backtesting.feeds import frame_feed

    cerebro = bt.Cerebro(stdstats=False, maxcpus=1)
    for symbol, frame in frames.items():
        cerebro.adddata(frame_feed(frame, name=symbol), name=symbol)
    cerebro.addstrategy(EmptyStrategy)
    strat = cerebro.run()[0]
    return len(strat)


class ReplayStrategy(bt.Strategy):
    """Places a given list of orders (no model, no signal): Backtrader's own cost of trading."""

    params = (("plan", None),)

    def next(self) -> None:
        todo = self.p.plan.get(self.datetime[0])
        if todo:
            for i, is_buy, size in todo:
                (self.buy if is_buy else self.sell)(data=self.datas[i], size=size)


def order_plan(strategy: Any) -> dict[float, list[tuple[int, bool, float]]]:
    """The orders a finished MTL run submitted: {bar date number: [(asset, buy?, size)]}."""
    index = {id(d): i for i, d in enumerate(strategy.datas)}
    plan: dict[float, list[tuple[int, bool, float]]] = {}
    for order in strategy.broker.orders:
        plan.setdefault(order.created.dt, []).append(
            (index[id(order.data)], bool(order.isbuy()), abs(float(order.created.size)))
        )
    return plan


def run_replay(frames: dict[str, pd.DataFrame], plan: dict) -> int:
    """The MTL run's own orders on the same broker setup (our feed), nothing else."""
    from mtl_bt.backtesting.runner import make_cerebro
    from mtl_bt.config import BacktestConfig

    cerebro = make_cerebro(frames, BacktestConfig())
    cerebro.addstrategy(ReplayStrategy, plan=plan)
    strat = cerebro.run()[0]
    return len(strat.broker.orders)


def run_mtl(
    frames: dict[str, pd.DataFrame], predictor: Any, mode: str, keep: bool = False
) -> dict[str, Any]:
    """The full MTL backtest (``run_backtest``); returns counts proving it really traded."""
    from mtl_bt.backtesting.runner import run_backtest
    from mtl_bt.config import BacktestConfig

    cfg = BacktestConfig(
        mode=mode, rebalance="bar", signal_options={"threshold": 0.0}, max_weight=0.5
    )
    result = run_backtest(frames, predictor, cfg)
    strat = result.strategy
    out: dict[str, Any] = {
        "decisions": int(strat.decisions),
        "orders": int(len(result.orders)),  # orders in the result table
        "submitted": int(len(strat.broker.orders)),  # incl. ones left pending at the end
        "bars": int(len(result.returns)),
    }
    if keep:
        out["plan"] = order_plan(strat)
    return out


VARIANTS = ("empty_pandas", "mtl_live", "mtl_precomputed", "empty_fast", "same_orders")


def measure(
    predictor: Any,
    sizes: list[tuple[int, int, int]],
    variants: tuple[str, ...] = VARIANTS,
    log: Any = print,
) -> list[dict[str, Any]]:
    """One row per (assets, bars, repeats): median seconds of each variant and the ratios.

    Variants alternate in rotating order. ``same_orders`` replays the order plan of the
    first ``mtl_precomputed`` run (the rotation runs that one first in round 0).
    """
    rows = []
    for n, bars, reps in sizes:
        frames = make_frames(n, bars)
        plan: dict[str, Any] = {}

        def mtl_pre(f: dict = frames, p: dict = plan) -> dict[str, Any]:
            out = run_mtl(f, predictor, "precomputed", keep=not p)
            if "plan" in out:
                p["plan"] = out.pop("plan")
            return out

        runs = {
            "empty_pandas": lambda f=frames: run_empty_pandas(f),
            "mtl_precomputed": mtl_pre,
            "mtl_live": lambda f=frames: run_mtl(f, predictor, "live"),
            "empty_fast": lambda f=frames: run_empty_fast(f),
            "same_orders": lambda f=frames, p=plan: run_replay(f, p["plan"]),
        }
        runs = {k: v for k, v in runs.items() if k in variants}
        load0 = loadavg()
        times, last = alternate(runs, reps)
        med = {k: median(v) for k, v in times.items()}
        row: dict[str, Any] = {
            "assets": n,
            "bars": bars,
            "repeats": reps,
            "seconds": med,
            "all_seconds": times,
            "load_average": [load0, loadavg()],
        }
        base = med.get("empty_pandas")
        if base:
            for k in ("mtl_live", "mtl_precomputed", "empty_fast", "same_orders"):
                if k in med:
                    row[f"ratio_{k}"] = med[k] / base
        for k in ("mtl_live", "mtl_precomputed"):
            if k in last:
                row[f"{k}_counts"] = last[k]
        if "empty_pandas" in last:
            row["empty_bars"] = last["empty_pandas"]
        if "same_orders" in last:
            row["same_orders_orders"] = last["same_orders"]
        rows.append(row)
        log(
            f"  backtest {n} asset(s) x {bars} bars (x{reps}): "
            + ", ".join(f"{k} {v:.2f}s" for k, v in med.items())
            + (f"; ratio live {row['ratio_mtl_live']:.3f}" if "ratio_mtl_live" in row else "")
        )
    return rows


def inference_micro(predictor: Any, calls: int = 2000) -> dict[str, float]:
    """Microseconds per call: ``Predictor.predict`` for 1 and 50 rows, the bare model
    forward for 1 row, and a ``torch.jit.trace``d forward (what the per-bar module
    overhead could shrink to). Median of 5 blocks of ``calls`` calls."""
    import statistics
    import time
    import warnings

    import numpy as np
    import torch

    f = len(predictor.feature_columns)
    x1 = np.random.default_rng(0).standard_normal((1, f)).astype(np.float32)
    x50 = np.random.default_rng(1).standard_normal((50, f)).astype(np.float32)
    z1 = torch.from_numpy(x1)
    model = predictor.model

    def per_call(fn: Any) -> float:
        fn()
        blocks = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(calls // 5):
                fn()
            blocks.append((time.perf_counter() - t0) / (calls // 5))
        return 1e6 * statistics.median(blocks)

    out = {
        "predict_1_row_us": per_call(lambda: predictor.predict(x1)),
        "predict_50_rows_us": per_call(lambda: predictor.predict(x50)),
    }
    with torch.inference_mode():
        out["model_forward_1_row_us"] = per_call(lambda: model(z1, None))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(model, (z1,), strict=False, check_trace=False)
            out["traced_forward_1_row_us"] = per_call(lambda: traced(z1))
        except Exception:  # noqa: BLE001 - tracing is only a what-if
            out["traced_forward_1_row_us"] = float("nan")
    return out


def profile_live(predictor: Any, assets: int, bars: int) -> dict[str, Any]:
    """cProfile one live MTL backtest and split its time into parts (seconds, shares).

    Parts are cumulative times of the entry points (they do not overlap):
    per-bar inference, signal rule, order submission, broker (fills + notifications),
    the rest of the strategy's per-bar code, the pre-run start (features +
    vectorised pass), the analyzer, result building; "engine" is the remainder
    (Backtrader's loop, feeds, lines). cProfile inflates Python-heavy parts.
    """
    import cProfile
    import pstats

    frames = make_frames(assets, bars)
    run_mtl(frames, predictor, "live")  # warm
    prof = cProfile.Profile()
    prof.enable()
    run_mtl(frames, predictor, "live")
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]

    def cum(path_end: str, func: str) -> float:
        return sum(v[3] for (f, _, fn), v in stats.items() if f.endswith(path_end) and fn == func)

    total = cum("benchmarks/bench_backtest.py", "run_mtl")
    parts = {
        "inference (Predictor.predict)": cum("mtl_bt/predictor.py", "predict"),
        "signal rule (weights)": cum("plugins/signals/agree_voltarget.py", "weights"),
        "order submission (buy/sell)": cum("backtrader/strategy.py", "buy")
        + cum("backtrader/strategy.py", "sell"),
        "broker fills + notifications": cum("backtrader/cerebro.py", "_brokernotify"),
        "start (features, vectorised pass)": cum("strategies/mtl.py", "start"),
        "analyzer": cum("mtl_bt/backtesting/analyzers.py", "next"),
        "result building": cum("mtl_bt/backtesting/runner.py", "_build_result"),
    }
    strat_next = cum("strategies/mtl.py", "next")
    parts["strategy per-bar logic (rest)"] = max(
        0.0,
        strat_next
        - parts["inference (Predictor.predict)"]
        - parts["signal rule (weights)"]
        - parts["order submission (buy/sell)"],
    )
    parts["engine (loop, feeds, lines)"] = max(0.0, total - sum(parts.values()))
    return {
        "assets": assets,
        "bars": bars,
        "total_seconds": total,
        "parts": parts,
        "shares": {k: v / total for k, v in parts.items()} if total else {},
    }


def run(
    sizes: list[tuple[int, int, int]],
    profile: tuple[int, int] | None = None,
    epochs: int = 3,
    log: Any = print,
) -> dict[str, Any]:
    """Train the model, measure every (assets, bars, repeats), profile one live run."""
    with tempfile.TemporaryDirectory(prefix="mtlbt-bench-") as tmp:
        predictor, info = train_model(tmp, epochs=epochs)
    log(f"  model: {info['how']}, {info['epochs_run']} epochs in {info['train_seconds']:.1f}s")
    out: dict[str, Any] = {"model": info, "rows": measure(predictor, sizes, log=log)}
    out["inference_us"] = inference_micro(predictor)
    if profile:
        out["profile"] = profile_live(predictor, *profile)
        top = max(out["profile"]["shares"].items(), key=lambda kv: kv[1])
        log(f"  profile {profile[0]} x {profile[1]} live: top part {top[0]} {top[1]:.0%}")
    return out
