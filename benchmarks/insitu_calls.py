"""What one model call costs inside the demo's live backtest (issue 27), not in a tight loop.

Between two decisions Backtrader runs a few bars of its own Python, which evicts the
runtime's code and data from the caches, so a call inside the run costs several times its
tight-loop figure. This times the per-decision call where the strategy makes it: one live
demo backtest (the bundled crypto sample, the demo config's fold models and ``[backtest]``
settings) with a ``perf_counter`` wrapper on the call, reported by batch size.

It runs on whichever checkout is importable: main (ONNX Runtime; the calls are
``Predictor.predict_row`` / ``predict_matrix``) or commit f270134 (its numba kernel; the
call is ``Predictor.predict``), so the removed kernel's in-run cost can be measured beside
today's::

    PYTHONPATH=. .venv/bin/python benchmarks/insitu_calls.py --models /tmp/demo-models
    # in a checkout of f270134, with this file copied in:
    PYTHONPATH=. .venv/bin/python insitu_calls.py --models /tmp/demo-models-before

``--models`` is trained there with that checkout's trainer when it does not exist.
``--memoryless``: the default rule without hysteresis and with margin 0 (f270134's default
rule, which decides on more bars). The wrapper adds ~0.3 us a call to what it times.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path
from typing import Any


def run(models: Path, memoryless: bool = False) -> dict[str, Any]:
    import backtrader as bt

    from mtl_bt import pipeline, registry
    from mtl_bt.backtesting.runner import load_predictors, strategy_params
    from mtl_bt.cli.run_cmd import shipped_config
    from mtl_bt.config import load
    from mtl_bt.predictor import Predictor
    from mtl_bt.strategies.mtl import MTLStrategy
    from mtl_bt.training import train_walk_forward

    cfg = load(shipped_config("crypto"), ["training.threads=1"])
    frames = pipeline.load_data(cfg, progress=False)
    if not models.exists():
        train_walk_forward(cfg, frames, out_dir=models)
    predictors = load_predictors(models)
    # main's per-decision calls; a checkout without them (f270134) calls predict
    names = [n for n in ("predict_row", "predict_matrix") if hasattr(Predictor, n)]
    names = names or ["predict"]
    calls: dict[int, list[float]] = {}
    clock = time.perf_counter

    def timed(name: str) -> Any:
        call = getattr(Predictor, name)

        def wrapper(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
            t = clock()
            out = call(self, x, *args, **kwargs)
            spent = clock() - t
            calls.setdefault(1 if name == "predict_row" else len(x), []).append(spent)
            return out

        return wrapper

    for name in names:
        setattr(Predictor, name, timed(name))
    bc = cfg.backtest
    options = dict(bc.signal_options)
    if memoryless:
        options.update(hysteresis=False, margin=0.0)
    rule = registry.create("signal", bc.signal, **options)
    kwargs = strategy_params(bc.model_copy(update={"mode": "live"}), predictors, rule)
    cerebro = bt.Cerebro(stdstats=False, maxcpus=1)
    for symbol, frame in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=symbol)
    cerebro.broker.setcommission(commission=bc.commission)
    cerebro.addstrategy(MTLStrategy, **kwargs)
    gc.collect()
    calls.clear()
    t0 = time.process_time()
    strat = cerebro.run()[0]
    cpu = time.process_time() - t0
    # a few-row decision, not the vectorised whole-fold passes f270134 made through predict
    decision = {n: v for n, v in calls.items() if n <= 16}
    every = [t for v in decision.values() for t in v]
    return {
        "backends": sorted({str(getattr(p, "backend", "?")) for p in predictors}),
        "calls": names,
        "cpu_seconds": round(cpu, 3),
        "decisions": int(strat.decisions),
        "decision_calls": len(every),
        "decision_call_seconds": round(sum(every), 4),
        "median_us": round(statistics.median(every) * 1e6, 1),
        "by_rows": {
            n: {
                "calls": len(v),
                "median_us": round(statistics.median(v) * 1e6, 1),
                "mean_us": round(statistics.mean(v) * 1e6, 1),
            }
            for n, v in sorted(decision.items())
        },
        "final_value": round(float(strat.broker.getvalue()), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--memoryless", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.models, args.memoryless)))


if __name__ == "__main__":
    main()
