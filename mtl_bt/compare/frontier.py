"""The default rule's turnover frontier on a finished run: ``python -m mtl_bt.compare.frontier``.

Backtests a run's fold checkpoints (``mtl-bt run`` output: ``checkpoints/``, ``config.toml``)
again with a grid of ``agree_voltarget`` options (entry margin, hysteresis, exit threshold),
the model, data, costs and everything else unchanged, and prints one row per setting:
two-way turnover a year, costs a year, Sharpe before and after costs. It is how the default
options were chosen (docs/results.md, "The default rule's turnover frontier"); run it on
your own run to see what a stricter or looser rule would have traded.

    python -m mtl_bt.compare.frontier RUN_DIR [--margins 0,4,10] [--exits entry,0.01]
        [--bands 0.25,0.5] [--json FILE]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

#: metrics.json keys shown per setting
COLUMNS = ("turnover", "cost_drag", "gross_sharpe", "sharpe", "num_trades")


def grid(margins: list[float], exits: list[float | None], bands: list[float]) -> list[dict]:
    """The memoryless rule (the default before the cost-aware one), then every (margin,
    exit threshold, resize band) with hysteresis (exit None: the entry threshold)."""
    out: list[dict[str, Any]] = [{"hysteresis": False, "margin": 0.0}]
    for margin, exit_, band in itertools.product(margins, exits, bands):
        out.append(
            {"hysteresis": True, "margin": margin, "exit_threshold": exit_, "resize_band": band}
        )
    return out


def frontier(run_dir: str | Path, settings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One backtest of ``run_dir``'s checkpoints per rule setting (other options kept)."""
    from mtl_bt.backtesting.runner import load_predictors, run_backtest
    from mtl_bt.config import load as load_config
    from mtl_bt.data import load_frames

    run = Path(run_dir)
    cfg = load_config(run / "config.toml")
    predictors = load_predictors([str(run / "checkpoints")])
    frames = load_frames(cfg.data)
    rows = []
    for options in settings:
        merged = {**cfg.backtest.signal_options, **options}
        bt_cfg = cfg.backtest.model_copy(update={"signal_options": merged})
        t0 = time.perf_counter()
        result = run_backtest(frames, predictors, bt_cfg)
        m = result.metrics
        row = {**options, **{k: m.get(k) for k in COLUMNS}}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _g(value: float | None) -> str:
    return "=entry" if value is None else f"{value:g}"


def _line(row: dict[str, Any]) -> str:
    head = (
        "memoryless (margin 0)"
        if not row.get("hysteresis")
        else f"margin {row['margin']:g}, exit {_g(row['exit_threshold'])}, "
        f"band {row['resize_band']:g}"
    )

    def f(key: str) -> str:
        v = row.get(key)
        return "n/a" if v is None else f"{v:.3f}"

    return (
        f"{head:<40} turnover {f('turnover'):>8}  costs/yr {f('cost_drag'):>6}  "
        f"gross Sharpe {f('gross_sharpe'):>7}  Sharpe {f('sharpe'):>7}  "
        f"trades {row.get('num_trades')}  ({row['seconds']}s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtl_bt.compare.frontier")
    parser.add_argument("run_dir")
    parser.add_argument("--margins", default="0,1,2,4")
    parser.add_argument("--exits", default="entry", help="numbers or 'entry'")
    parser.add_argument("--bands", default="0.25", help="resize bands")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    try:
        margins = [float(x) for x in args.margins.split(",") if x]
        exits = [None if x == "entry" else float(x) for x in args.exits.split(",") if x]
        bands = [float(x) for x in args.bands.split(",") if x]
    except ValueError:
        print("--margins and --exits take comma-separated numbers", file=sys.stderr)
        return 2
    rows = frontier(args.run_dir, grid(margins, exits, bands))
    if args.json:
        from mtl_bt.atomic import write_text

        write_text(Path(args.json), json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
