"""The default rule's turnover frontier on a finished run: ``python -m mtl_bt.compare.frontier``.

Backtests a run's fold checkpoints (``mtl-bt run`` output: ``checkpoints/``, ``config.toml``)
again with a grid of ``agree_voltarget`` options (entry margin per decision or per day of
holding, hysteresis, exit threshold),
the model, data, costs and everything else unchanged, and prints one row per setting:
two-way turnover a year, costs a year, Sharpe before and after costs. It is how the default
options were chosen (docs/results.md, "The default rule's turnover frontier"); run it on
your own run to see what a stricter or looser rule would have traded.

    python -m mtl_bt.compare.frontier RUN_DIR [--margins 0,4,10] [--daily-margins 7,15]
        [--exits entry,0.01] [--bands 0.25,0.5] [--json FILE] [--calibration]
        [--calibrated-margins 0,1]

``--calibration`` also prints, per fold, how the return head's raw forecast relates to the
realised return on that fold's validation slice (``validation_calibration``: a
Mincer-Zarnowitz fit realised = a + b * prediction, from bars before the fold's test
window only), and the per-decision margin on the raw forecast that trading a calibrated
edge ``a + b * prediction`` past one round trip would amount to, ``1 / b - 1``: how much
the data say the raw forecast should be discounted. ``--calibrated-margins`` backtests that
rule: each fold model's return head replaced by its calibrated edge, traded past one round
trip times ``1 + margin``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: metrics.json keys shown per setting
COLUMNS = ("turnover", "cost_drag", "gross_sharpe", "sharpe", "num_trades")


def grid(
    margins: list[float],
    exits: list[float | None],
    bands: list[float],
    daily_margins: Sequence[float] = (),
) -> list[dict]:
    """The memoryless rule (the default before the cost-aware one), then every (margin,
    exit threshold, resize band) with hysteresis (exit None: the entry threshold): first the
    per-decision ``margins``, then the ``daily_margins`` (margin per day of holding, scaled
    by the run's bar size and horizon; ``margin`` left unset)."""
    out: list[dict[str, Any]] = [{"hysteresis": False, "margin": 0.0}]
    for margin, exit_, band in itertools.product(margins, exits, bands):
        out.append(
            {"hysteresis": True, "margin": margin, "exit_threshold": exit_, "resize_band": band}
        )
    for daily, exit_, band in itertools.product(daily_margins, exits, bands):
        out.append(
            {
                "hysteresis": True,
                "margin": None,
                "daily_margin": daily,
                "exit_threshold": exit_,
                "resize_band": band,
            }
        )
    return out


def calibrated(predictor: Any, fit: dict[str, Any], horizon: int | None = None) -> Any:
    """A copy of ``predictor`` whose return head predicts the calibrated edge
    ``a + b * r`` (``fit``: ``validation_calibration``'s clipped a, b); other heads unchanged.
    Every backtest path (preloaded and live) reads a model through ``predict``."""
    import copy

    import numpy as np

    from mtl_bt.signals.base import pick_horizon

    h = pick_horizon({n: None for n in predictor.task_names}, horizon, "calibrated")
    name, a, b = f"return@{h}", float(fit["a_clipped"]), float(fit["b_clipped"])
    raw = predictor.predict
    out = copy.copy(predictor)

    def predict(x: Any, asset_ids: Any = None) -> dict[str, Any]:
        res = dict(raw(x, asset_ids))
        res[name] = a + b * np.asarray(res[name], dtype=np.float64)
        return res

    out.predict = predict
    return out


def frontier(
    run_dir: str | Path, settings: list[dict[str, Any]], calibrate: bool = False
) -> list[dict[str, Any]]:
    """One backtest of ``run_dir``'s checkpoints per rule setting (other options kept);
    ``calibrate``: every fold model's return head replaced by its calibrated edge (fitted on
    that fold's validation slice, ``validation_calibration``)."""
    from mtl_bt.backtesting.runner import load_predictors, run_backtest
    from mtl_bt.config import load as load_config
    from mtl_bt.data import load_frames

    run = Path(run_dir)
    cfg = load_config(run / "config.toml")
    predictors = load_predictors([str(run / "checkpoints")])
    frames = load_frames(cfg.data)
    if calibrate:
        predictors = [calibrated(p, validation_calibration(frames, p)) for p in predictors]
    rows = []
    for options in settings:
        merged = {**cfg.backtest.signal_options, **options}
        bt_cfg = cfg.backtest.model_copy(update={"signal_options": merged})
        t0 = time.perf_counter()
        result = run_backtest(frames, predictors, bt_cfg)
        m = result.metrics
        row = {**options, "calibrated": calibrate, **{k: m.get(k) for k in COLUMNS}}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def validation_calibration(
    frames: dict[str, Any], predictor: Any, horizon: int | None = None
) -> dict[str, float]:
    """Mincer-Zarnowitz fit of the realised h-bar log return on the return head's prediction
    over one fold model's validation slice (``val_start`` .. ``train_end``).

    Causal by construction: every frame is cut before the fold's ``test_start`` before
    features, predictions or targets are computed, so a target whose h bars reach the test
    window is NaN and dropped; test-window bars cannot move the result. Returns n, a, b (OLS),
    b_clipped = max(b, 0) with its intercept, Pearson and rank IC, the prediction's and the
    realised return's standard deviation."""
    import numpy as np
    import pandas as pd

    from mtl_bt.errors import UserError
    from mtl_bt.features.frames import named_frames
    from mtl_bt.features.spec import compute
    from mtl_bt.signals.base import pick_horizon
    from mtl_bt.tasks.targets import forward_log_return

    fold = dict(getattr(predictor, "fold", None) or {})
    missing = [k for k in ("val_start", "train_end", "test_start") if not fold.get(k)]
    if missing:
        raise UserError(
            f"validation calibration needs a walk-forward fold model; this checkpoint's fold "
            f"has no {', '.join(missing)} (train it with mtl-bt run / mtl-bt train)"
        )

    def utc(key: str) -> pd.Timestamp:
        t = pd.Timestamp(fold[key])
        return t.tz_localize("UTC") if t.tz is None else t.tz_convert("UTC")

    val_start, val_end, test_start = utc("val_start"), utc("train_end"), utc("test_start")
    h = pick_horizon({n: None for n in predictor.task_names}, horizon, "validation_calibration")
    past = {}
    for symbol, frame in frames.items():
        index = frame.index if frame.index.tz is not None else frame.index.tz_localize("UTC")
        past[symbol] = frame.loc[np.asarray(index < test_start)]
    context = named_frames(past)
    spec = predictor.feature_spec
    preds, real = [], []
    for symbol, frame in context.items():
        feats = compute(frame, spec, context if spec.reads() else None)
        pred = predictor.predict_frame({symbol: feats[predictor.feature_columns]})
        index = frame.index if frame.index.tz is not None else frame.index.tz_localize("UTC")
        inside = np.asarray((index >= val_start) & (index <= val_end))
        y = forward_log_return(frame["close"].astype("float64"), h).to_numpy()
        preds.append(pred[f"return@{h}"].to_numpy(np.float64)[inside])
        real.append(y[inside])
    x, y = np.concatenate(preds), np.concatenate(real)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or not np.std(x) > 0:
        raise UserError(
            f"fold {fold.get('fold')}: fewer than 3 validation rows with a prediction and a "
            "known target before the test window; cannot calibrate"
        )
    b = float(np.cov(x, y, bias=True)[0, 1] / np.var(x))
    a = float(y.mean() - b * x.mean())
    b_clip = max(b, 0.0)
    rank = pd.Series(x).rank().corr(pd.Series(y).rank())
    return {
        "fold": fold.get("fold"),
        "n": int(len(x)),
        "a": a,
        "b": b,
        "b_clipped": b_clip,
        "a_clipped": float(y.mean() - b_clip * x.mean()),
        "ic": float(np.corrcoef(x, y)[0, 1]),
        "rank_ic": float(rank),
        "pred_std": float(np.std(x)),
        "realised_std": float(np.std(y)),
    }


def calibration_table(run_dir: str | Path) -> list[dict[str, Any]]:
    """``validation_calibration`` of every fold model of a run, printed one line per fold."""
    from mtl_bt.backtesting.runner import load_predictors
    from mtl_bt.config import load as load_config
    from mtl_bt.data import load_frames

    run = Path(run_dir)
    frames = load_frames(load_config(run / "config.toml").data)
    rows = []
    for predictor in load_predictors([str(run / "checkpoints")]):
        row = validation_calibration(frames, predictor)
        b = row["b_clipped"]
        row["raw_margin"] = float("inf") if b == 0 else 1.0 / b - 1.0
        rows.append(row)
        print(
            f"fold {row['fold']}: n {row['n']}  b {row['b']:+.3f}  a {row['a']:+.5f}  "
            f"IC {row['ic']:+.3f}  rank IC {row['rank_ic']:+.3f}  "
            f"std pred {row['pred_std']:.4f} realised {row['realised_std']:.4f}  "
            f"calibrated edge past one round trip = raw margin {row['raw_margin']:.1f}",
            flush=True,
        )
    return rows


def _g(value: float | None) -> str:
    return "=entry" if value is None else f"{value:g}"


def _line(row: dict[str, Any]) -> str:
    if not row.get("hysteresis"):
        head = "memoryless (margin 0)"
    elif row.get("calibrated"):
        head = f"calibrated edge, margin {row['margin']:g}, band {row['resize_band']:g}"
    else:
        margin = (
            f"daily margin {row['daily_margin']:g}"
            if row.get("margin") is None
            else f"margin {row['margin']:g}"
        )
        head = f"{margin}, exit {_g(row['exit_threshold'])}, band {row['resize_band']:g}"

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
    parser.add_argument(
        "--daily-margins", default="", help="margins per day of holding (scaled per run)"
    )
    parser.add_argument("--exits", default="entry", help="numbers or 'entry'")
    parser.add_argument("--bands", default="0.25", help="resize bands")
    parser.add_argument(
        "--calibration", action="store_true", help="also print the per-fold validation fit"
    )
    parser.add_argument(
        "--calibrated-margins",
        default="",
        help="also backtest the calibrated edge a + b * r with these per-decision margins",
    )
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    try:
        margins = [float(x) for x in args.margins.split(",") if x]
        exits = [None if x == "entry" else float(x) for x in args.exits.split(",") if x]
        bands = [float(x) for x in args.bands.split(",") if x]
        daily = [float(x) for x in args.daily_margins.split(",") if x]
        cal = [float(x) for x in args.calibrated_margins.split(",") if x]
    except ValueError:
        print(
            "--margins, --daily-margins, --exits and --bands take comma-separated numbers",
            file=sys.stderr,
        )
        return 2
    if args.calibration:
        calibration_table(args.run_dir)
    rows = frontier(args.run_dir, grid(margins, exits, bands, daily))
    if cal:
        rows += frontier(args.run_dir, grid(cal, exits, bands)[1:], calibrate=True)
    if args.json:
        from mtl_bt.atomic import write_text

        write_text(Path(args.json), json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
