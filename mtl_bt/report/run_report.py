"""The report of one run, built only from the artefact files in its folder.

Reading files (not in-memory objects) means ``mtl-bt run`` and a later re-render show exactly
what was saved; a report can never contain a number that is not on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_bt.report import plots
from mtl_bt.report.document import (
    Code,
    Document,
    Heading,
    Image,
    Paragraph,
    Table,
    fmt,
    to_html,
    to_markdown,
)
from mtl_bt.report.io import write_csv, write_text
from mtl_bt.report.oos import oos_metrics

#: portfolio metrics shown in tables, in order, with their labels
METRICS: list[tuple[str, str]] = [
    ("sharpe", "Sharpe"),
    ("sortino", "Sortino"),
    ("max_drawdown", "Max drawdown"),
    ("profit_factor", "Profit factor"),
    ("win_rate", "Win rate"),
    ("cagr", "CAGR"),
    ("annual_volatility", "Annual volatility"),
    ("calmar", "Calmar"),
    ("num_trades", "Trades"),
    ("exposure", "Exposure"),
    ("turnover", "Turnover (two-way)"),
    ("gross_sharpe", "Sharpe before costs"),
    ("gross_cagr", "CAGR before costs"),
    ("cost_drag", "Costs per year (fraction of value)"),
    ("rejected_orders", "Rejected orders"),  # refused by the broker (orders.csv says why)
]

#: what the task metrics mean, inline: a link to docs/run.md is dead once the report is shared
METRIC_NOTES = (
    "Pooled over all folds and symbols. ic / rank_ic: Pearson / Spearman correlation of "
    "prediction and realised value (0: no skill); auc: chance that an up-move bar scores above "
    "a down-move bar (0.5: no skill); accuracy: share of bars whose direction was called "
    "right; qlike: volatility forecast loss (0 is perfect, lower is better); calibration: "
    "RMS realised / RMS predicted volatility (1 is calibrated, > 1 under-predicts); _ewma / "
    "_har: the same for the EWMA and HAR-RV baseline forecasts."
)

STRATEGY = "MTL strategy"
BUY_AND_HOLD = "buy & hold (equal weight)"


def read_returns(path: Path) -> pd.Series | None:
    """``returns.csv`` (datetime, portfolio_return) as a Series indexed by UTC datetime."""
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    if frame.empty:
        return pd.Series(dtype=float)
    index = pd.to_datetime(frame.iloc[:, 0], utc=True)
    return pd.Series(frame.iloc[:, 1].to_numpy(dtype=float), index=index, name="return")


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def metrics_table(columns: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Rows = metrics, one column per strategy (``columns``: name -> portfolio metrics)."""
    rows = []
    for key, label in METRICS:
        rows.append({"metric": label, **{name: m.get(key) for name, m in columns.items()}})
    return pd.DataFrame(rows)


def per_asset_table(per_asset: dict[str, dict[str, Any]]) -> pd.DataFrame:
    keys = ["sharpe", "max_drawdown", "profit_factor", "num_trades", "exposure", "turnover"]
    rows = []
    for symbol, m in per_asset.items():
        rows.append({"symbol": symbol, **{k: m.get(k) for k in keys}})
    return pd.DataFrame(rows)


def calibration_table(fold_metrics: pd.DataFrame) -> pd.DataFrame:
    """Per fold (and pooled) RMS(realised) / RMS(predicted), the Mincer-Zarnowitz slope and
    intercept with their HAC standard errors, and QLIKE of every volatility task (and every
    ``volatility_ratio`` task's anchored level, ``volatility_anchored@h``), next to the
    EWMA and HAR-RV forecasts on the same rows."""
    from mtl_bt.metrics.volatility import LEVEL_TASKS

    keep = [
        "calibration",
        "mz_slope",
        "mz_slope_se",
        "mz_intercept",
        "mz_intercept_se",
        "calibration_ewma",
        "calibration_har",
        "qlike",
        "qlike_ewma",
        "qlike_har",
    ]
    vol = fold_metrics[
        fold_metrics["task"].astype(str).str.startswith(LEVEL_TASKS)
        & fold_metrics["metric"].isin(keep)
    ]
    if vol.empty:
        return pd.DataFrame()
    wide = vol.pivot_table(index=["task", "fold"], columns="metric", values="value", sort=False)
    return wide[[c for c in keep if c in wide.columns]].reset_index()


def target_vol_table(metrics: dict[str, Any], config_text: str | None) -> pd.DataFrame:
    """Per asset: the rule's ``target_vol`` against the realised annualised volatility of the
    asset's contribution while a position was open, ``annual_volatility / sqrt(exposure)``
    (flat bars contribute 0; the approximation ignores the mean). Below target is expected
    where ``max_weight`` or the gross cap bind; above it means the volatility forecast was
    too low."""
    import tomllib

    target = None
    if config_text:
        try:
            backtest = tomllib.loads(config_text).get("backtest", {})
        except tomllib.TOMLDecodeError:
            backtest = {}
        target = backtest.get("signal_options", {}).get("target_vol")
        if target is None:  # the rule's default
            import inspect

            from mtl_bt import registry

            try:
                factory = registry.get("signal", backtest.get("signal", "agree_voltarget"))
                param = inspect.signature(factory).parameters.get("target_vol")
                target = None if param is None else param.default
            except Exception:  # noqa: BLE001 - an unknown rule: no target to show
                target = None
    rows = []
    for symbol, m in (metrics.get("per_asset") or {}).items():
        vol, exposure = m.get("annual_volatility"), m.get("exposure")
        held = vol / exposure**0.5 if vol is not None and exposure else None
        rows.append({"symbol": symbol, "exposure": exposure, "realised vol while held": held})
    table = pd.DataFrame(rows)
    if not table.empty:
        table.insert(1, "target_vol", target if target is not None else "—")
    return table


def _summary_line(summary: dict[str, Any]) -> str:
    parts = []
    if summary.get("tasks"):
        parts.append("tasks " + ", ".join(f"`{t}`" for t in summary["tasks"]))
    if summary.get("folds_done") is not None:
        parts.append(f"{summary['folds_done']} walk-forward fold(s)")
    if summary.get("purge") is not None:
        parts.append(f"purge {summary['purge']} bar(s)")
    if summary.get("bars_on_axis") is not None:
        parts.append(
            f"{summary['bars_on_axis']} bars on the training time axis after warm-up (all "
            "symbols' bars, in and out of sample)"
        )
    return "; ".join(parts).capitalize() + "." if parts else ""


def verdict(strategy: dict[str, Any], buy_hold: dict[str, Any] | None) -> str:
    """One sentence in plain words that opens the report: what the strategy earned a year
    after and before costs, against buy-and-hold on the same bars, and what costs took."""

    def pct(v: Any) -> str | None:
        try:
            return f"{100 * float(v):+.1f}%"
        except (TypeError, ValueError):
            return None

    def num(v: Any) -> str | None:
        try:
            return f"{float(v):.2f}"
        except (TypeError, ValueError):
            return None

    net, gross = pct(strategy.get("cagr")), pct(strategy.get("gross_cagr"))
    if net is None:
        return ""
    text = f"The strategy earned {net} a year after costs"
    if gross is not None:
        text += f" ({gross} before costs)"
    sharpe, gross_sharpe = num(strategy.get("sharpe")), num(strategy.get("gross_sharpe"))
    if sharpe is not None:
        text += f", Sharpe {sharpe}" + (f" ({gross_sharpe} before costs)" if gross_sharpe else "")
    bh = buy_hold or {}
    if pct(bh.get("cagr")) is not None:
        text += f"; buy-and-hold earned {pct(bh.get('cagr'))} a year"
        if num(bh.get("sharpe")) is not None:
            text += f", Sharpe {num(bh.get('sharpe'))}"
        text += ", on the same bars"
    costs, turnover = strategy.get("cost_drag"), strategy.get("turnover")
    if costs is not None:
        text += f". Costs took {100 * float(costs):.1f}% of value a year"
        if turnover is not None:
            text += f" at {float(turnover):.0f}x two-way turnover"
    return text + "."


#: the simple baselines ``python -m mtl_bt.compare.baselines`` writes under ``baselines/``
SIMPLE_MODELS = ("linear", "lightgbm")


def simple_baselines(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Portfolio metrics of the simple baselines traded by the run's own rule, when
    ``python -m mtl_bt.compare.baselines`` has been run on this folder."""
    out = {}
    for model in SIMPLE_MODELS:
        doc = read_json(run_dir / "baselines" / model / "metrics.json")
        if doc and doc.get("portfolio"):
            out[model] = doc["portfolio"]
    return out


def baseline_headlines(run_dir: Path) -> pd.DataFrame:
    """Each task's headline metric per fold, the run beside the simple baselines (from
    ``baselines/task_metrics.csv``); empty when they were not fitted."""
    from mtl_bt.report.oos import HEADLINE

    path = run_dir / "baselines" / "task_metrics.csv"
    if not path.exists():
        return pd.DataFrame()
    table = pd.read_csv(path)
    kind = table["task"].astype(str).str.split("@").str[0]
    keep = table["metric"] == kind.map(HEADLINE)
    return table[keep].reset_index(drop=True)


def _lost(rows: pd.DataFrame) -> list[str]:
    """``task metric vs model`` wherever a baseline's mean over folds beats the run's."""
    lower = {"qlike", "rmse", "log_loss", "brier"}
    lost = []
    for (task, metric), group in rows.groupby(["task", "metric"], sort=False):
        sign = -1.0 if metric in lower else 1.0
        for model in SIMPLE_MODELS:
            if model in group and "mtl" in group:
                if sign * group[model].mean() > sign * group["mtl"].mean():
                    lost.append(f"{task} {metric} (vs {model})")
    return lost


def data_ranges_table(data: dict[str, Any]) -> pd.DataFrame:
    rows = [{"symbol": s, **info} for s, info in data.get("symbols", {}).items()]
    return pd.DataFrame(rows)


def write_run_report(
    run_dir: str | Path,
    title: str | None = None,
    *,
    plots_on: bool = True,
    html: bool = True,
    intro: str | None = None,
) -> dict[str, Path]:
    """Plots, report.md and report.html for a finished run folder; returns what was written."""
    run_dir = Path(run_dir)
    plot_dir = run_dir / "plots"
    metrics = read_json(run_dir / "metrics.json") or {}
    ppy = float(metrics.get("periods_per_year") or 252)
    strategy = read_returns(run_dir / "returns.csv")
    bh_dir = run_dir / "baselines" / "buy_and_hold"
    buy_hold = read_returns(bh_dir / "returns.csv")
    bh_metrics = (read_json(bh_dir / "metrics.json") or {}).get("portfolio")
    curves = {STRATEGY: strategy}
    if buy_hold is not None and strategy is not None and len(strategy):
        curves[BUY_AND_HOLD] = buy_hold.reindex(strategy.index).fillna(0.0)
    data = read_json(run_dir / "data.json") or {}
    train_log = (
        pd.read_csv(run_dir / "train_log.csv") if (run_dir / "train_log.csv").exists() else None
    )
    pred_path = run_dir / "predictions.parquet"
    predictions = pd.read_parquet(pred_path) if pred_path.exists() else None
    if (run_dir / "oos_metrics.csv").exists():  # written by the run with its tasks + baselines
        fold_metrics = pd.read_csv(run_dir / "oos_metrics.csv")
    else:
        fold_metrics = oos_metrics(predictions) if predictions is not None else None
        if fold_metrics is not None and not fold_metrics.empty:
            write_csv(run_dir / "oos_metrics.csv", fold_metrics)

    written: dict[str, Path] = {}
    doc = Document(title or f"mtl-bt run report: {run_dir.name}")
    sentence = verdict(metrics.get("portfolio", {}), bh_metrics)
    if sentence:
        doc.add(Paragraph(f"**{sentence}**"))
    doc.add(
        Paragraph(
            intro
            or "Out-of-sample backtest: every bar is traded with the model of the walk-forward "
            "fold whose training window ended before it; buy & hold covers the same bars."
        )
    )
    summary = data.get("summary") or {}
    if summary:
        doc.add(Paragraph(_summary_line(summary)))
    doc.add(Heading("Portfolio metrics"))
    columns = {STRATEGY: metrics.get("portfolio", {})}
    if bh_metrics:
        columns[BUY_AND_HOLD] = bh_metrics
    simple = simple_baselines(run_dir)
    for model, portfolio in simple.items():
        columns[model] = portfolio
    caption = f"annualised with {ppy:g} periods per year."
    if strategy is not None:  # label the bar count: not the time axis, not the loaded bars
        caption = f"{len(strategy)} out-of-sample bars (the returns the metrics come from); " + (
            caption
        )
    doc.add(Table(metrics_table(columns), caption=caption[0].upper() + caption[1:]))
    if metrics.get("per_asset"):
        doc.add(Heading("Per asset", 3))
        doc.add(Table(per_asset_table(metrics["per_asset"])))

    figures = (
        _figures(plot_dir, curves, ppy, fold_metrics, train_log, predictions) if plots_on else []
    )
    if fold_metrics is not None and not fold_metrics.empty:
        doc.add(Heading("Out-of-sample task metrics"))
        pooled = fold_metrics[fold_metrics["fold"].astype(str) == "all"]
        wide = pooled.pivot_table(index="task", columns="metric", values="value", sort=False)
        doc.add(
            Table(
                wide.reset_index(),
                caption=METRIC_NOTES,
            )
        )
    if fold_metrics is not None and not fold_metrics.empty:
        calibration = calibration_table(fold_metrics)
        if not calibration.empty:
            doc.add(Heading("Volatility calibration", 3))
            doc.add(
                Table(
                    calibration,
                    caption="calibration = RMS(realised vol) / RMS(predicted vol) per fold "
                    "(1 = calibrated, > 1 = the forecast is too low and vol-targeted positions "
                    "too large); mz_slope / mz_intercept: Mincer-Zarnowitz regression realised "
                    "= a + b predicted (b = 1, a = 0 when calibrated; b < 1: the forecast moves "
                    "too much) with Newey-West HAC standard errors (_se); _ewma / _har: the "
                    "EWMA (half-life 11.2 days of calendar time) and HAR-RV forecasts on the "
                    "same rows. A pooled ratio near 1 can hide folds far from it: read the rows.",
                )
            )
    headline_rows = baseline_headlines(run_dir)
    if not headline_rows.empty:
        doc.add(Heading("Strong simple baselines", 3))
        doc.add(
            Table(
                headline_rows,
                caption="Each task's headline metric per walk-forward fold: this run (mtl) "
                "beside ridge / logistic (linear) and LightGBM fitted per fold on the same "
                "rows, features, scaler, folds and purge (`python -m "
                "mtl_bt.compare.baselines RUN_DIR`, run.md); their backtests by this run's "
                "rule are the `linear` / `lightgbm` columns of the portfolio table. "
                + (
                    "The model does not beat them on " + ", ".join(lost) + "."
                    if (lost := _lost(headline_rows))
                    else "The model beats both on every task's mean over folds."
                ),
            )
        )
    config_text = (
        (run_dir / "config.toml").read_text() if (run_dir / "config.toml").exists() else None
    )
    target = target_vol_table(metrics, config_text)
    if not target.empty:
        doc.add(Heading("Realised vs target volatility", 3))
        doc.add(
            Table(
                target,
                caption="Portfolio: realised annual volatility "
                f"{fmt(metrics.get('portfolio', {}).get('annual_volatility'), 3)}. Per asset: "
                "annual volatility of its contribution / sqrt(exposure) (vol while held).",
            )
        )
    doc.add(Heading("Plots"))
    for name, path, caption in figures:
        if path is not None:
            written[name] = path
            doc.add(Image(path, caption))
    if data.get("symbols"):
        doc.add(Heading("Data"))
        doc.add(Table(data_ranges_table(data), caption="bars: every bar loaded per symbol."))
    if data.get("folds"):
        doc.add(Heading("Walk-forward folds", 3))
        doc.add(Table(pd.DataFrame(data["folds"])))
    config_path = run_dir / "config.toml"
    if config_path.exists():
        doc.add(Heading("Configuration (resolved)"))
        doc.add(Code(config_path.read_text(), "toml"))
    written["report.md"] = write_text(run_dir / "report.md", to_markdown(doc, run_dir))
    if html:
        written["report.html"] = write_text(run_dir / "report.html", to_html(doc))
    return written


def _figures(
    plot_dir: Path,
    curves: dict[str, pd.Series | None],
    ppy: float,
    fold_metrics: pd.DataFrame | None,
    train_log: pd.DataFrame | None,
    predictions: pd.DataFrame | None,
) -> list[tuple[str, Path | None, str]]:
    strategy = curves.get(STRATEGY)
    figures: list[tuple[str, Path | None, str]] = []
    if strategy is not None and len(strategy):
        figures.append(
            (
                "equity",
                plots.plot_equity(
                    curves, plot_dir / "equity.png", "Equity: strategy vs buy & hold"
                ),
                "Equity curves (growth of 1), strategy vs baselines",
            )
        )
        figures.append(
            ("drawdown", plots.plot_drawdown(curves, plot_dir / "drawdown.png"), "Drawdown")
        )
        figures.append(
            (
                "rolling_sharpe",
                plots.plot_rolling_sharpe(curves, plot_dir / "rolling_sharpe.png", ppy),
                "Rolling Sharpe",
            )
        )
    if fold_metrics is not None and not fold_metrics.empty:
        by_fold = fold_metrics[
            (fold_metrics["fold"].astype(str) != "all") & (fold_metrics["metric"] != "n")
        ]
        figures.append(
            (
                "fold_metrics",
                plots.plot_fold_metrics(
                    by_fold.astype({"fold": int}), plot_dir / "fold_metrics.png"
                ),
                "Out-of-sample task metrics by fold",
            )
        )
    if train_log is not None:
        figures.append(
            (
                "task_weights",
                plots.plot_task_weights(train_log, plot_dir / "task_weights.png"),
                "Task weights over epochs",
            )
        )
    if predictions is not None:
        vol_tasks = [c for c in predictions.columns if str(c).startswith("volatility@")]
        if vol_tasks:
            figures.append(
                (
                    "volatility",
                    plots.plot_volatility(predictions, vol_tasks[0], plot_dir / "volatility.png"),
                    f"Predicted vs realised volatility ({vol_tasks[0]})",
                )
            )
    return figures
