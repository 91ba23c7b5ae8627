"""The comparison table: mean +- std over seeds, paired Sharpe-difference CIs and deflated Sharpe.

Read only from the job folders (``runs/<variant>/seed_<k>/``), so a re-run that skipped finished
jobs produces the same table as the run that trained them.

Statistics (see docs/results.md for how to read them):
- Seed ensemble: a variant's per-bar return is the mean over its successful seeds (capital
  split equally across the seed models). The paired bootstrap and the DSR use that series.
- Paired bootstrap: Sharpe(variant) - Sharpe(single-task model of the same architecture) on the
  bars both traded, circular block bootstrap, annualised.
- DSR: PSR of the variant's Sharpe against the expected best Sharpe of N unskilled trials,
  N = number of trained variants (MTL and single-task), V = variance of their Sharpe ratios.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt import stats
from mtl_bt.compare.variants import BUY_AND_HOLD, SINGLE_TASK, Variant
from mtl_bt.report.oos import headline
from mtl_bt.report.run_report import read_json, read_returns

#: portfolio metrics aggregated over seeds, in table order
PERF = ["sharpe", "sortino", "max_drawdown", "profit_factor", "cagr", "turnover"]
PERF_LABELS = {
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "max_drawdown": "Max DD",
    "profit_factor": "Profit factor",
    "cagr": "CAGR",
    "turnover": "Turnover",
}


@dataclass
class Comparison:
    table: pd.DataFrame  # one row per variant; every number (comparison.csv)
    ensembles: dict[str, pd.Series] = field(default_factory=dict)  # seed-averaged returns
    periods_per_year: float = float("nan")
    n_trials: int = 0
    sr_variance: float = float("nan")


def _num(value: Any) -> float:
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan")
    with np.errstate(invalid="ignore"):
        mean = float(np.mean(arr))
        std = float(np.std(arr, ddof=1)) if arr.size > 1 else float("nan")
    return mean, std


def seed_dirs(runs_dir: Path, variant: str, seeds: list[int]) -> list[Path]:
    """Folders of the finished (marker present) seeds of ``variant``."""
    out = []
    for seed in seeds:
        folder = runs_dir / variant / f"seed_{seed}"
        if (folder / "job.json").exists() and (folder / "metrics.json").exists():
            out.append(folder)
    return out


def _oos(folder: Path) -> dict[str, float]:
    path = folder / "oos_metrics.csv"
    if not path.exists():
        return {}
    return headline(pd.read_csv(path))


def _ensemble(folders: list[Path]) -> pd.Series | None:
    series = [s for s in (read_returns(f / "returns.csv") for f in folders) if s is not None]
    if not series:
        return None
    frame = pd.concat(series, axis=1, join="inner")
    return frame.mean(axis=1)


def build(
    runs_dir: Path, variants: list[Variant], seeds: list[int], buy_and_hold_dir: Path | None
) -> Comparison:
    """Aggregate the finished jobs into the comparison table."""
    rows: list[dict[str, Any]] = []
    ensembles: dict[str, pd.Series] = {}
    ppy = float("nan")
    for variant in variants:
        folders = seed_dirs(runs_dir, variant.name, seeds)
        row: dict[str, Any] = {
            "variant": variant.name,
            "kind": variant.kind,
            "architecture": variant.architecture,
            "weighting": variant.weighting if variant.kind != SINGLE_TASK else "",
            "seeds_ok": len(folders),
            "seeds": len(seeds),
        }
        metrics = [read_json(f / "metrics.json") or {} for f in folders]
        for m in metrics:
            if m.get("periods_per_year"):
                ppy = float(m["periods_per_year"])
        for key in PERF:
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(
                [_num(m.get("portfolio", {}).get(key)) for m in metrics]
            )
        oos = [_oos(f) for f in folders]
        for name in dict.fromkeys(k for o in oos for k in o):
            col = name.replace(" ", "_")
            row[f"{col}_mean"], row[f"{col}_std"] = _mean_std([o.get(name, np.nan) for o in oos])
        ens = _ensemble(folders)
        if ens is not None and len(ens):
            ensembles[variant.name] = ens
        rows.append(row)

    trial_sr = {
        name: stats.sharpe(series.to_numpy())
        for name, series in ensembles.items()
        if len(series) > 2
    }
    finite = [v for v in trial_sr.values() if math.isfinite(v)]
    n_trials = max(1, len(finite))
    sr_var = float(np.var(finite, ddof=1)) if len(finite) > 1 else 0.0
    scale = math.sqrt(ppy) if math.isfinite(ppy) else 1.0
    by_name = {v.name: v for v in variants}
    for row in rows:
        name = row["variant"]
        variant = by_name[name]
        series = ensembles.get(name)
        row["ensemble_sharpe"] = trial_sr.get(name, float("nan")) * scale
        row["psr"] = row["dsr"] = float("nan")
        if series is not None and len(series) > 2 and math.isfinite(trial_sr.get(name, np.nan)):
            row["psr"] = stats.probabilistic_sharpe_ratio(series.to_numpy())
            row["dsr"] = stats.deflated_sharpe_ratio(
                series.to_numpy(), n_trials=n_trials, sr_variance=sr_var
            )
        row.update(
            sharpe_diff=np.nan,
            sharpe_diff_low=np.nan,
            sharpe_diff_high=np.nan,
            sharpe_diff_p=np.nan,
            paired_bars=0,
        )
        if variant.kind == "mtl":
            base = ensembles.get(variant.baseline)
            if series is not None and base is not None:
                joined = pd.concat([series, base], axis=1, join="inner").dropna()
                if len(joined) >= 3:
                    res = stats.paired_bootstrap_sharpe_diff(
                        joined.iloc[:, 0].to_numpy(),
                        joined.iloc[:, 1].to_numpy(),
                        n_boot=2000,
                        seed=0,
                        periods_per_year=ppy if math.isfinite(ppy) else 1.0,
                    )
                    row.update(
                        sharpe_diff=res.diff,
                        sharpe_diff_low=res.low,
                        sharpe_diff_high=res.high,
                        sharpe_diff_p=res.p_value,
                        paired_bars=res.n,
                    )
    if buy_and_hold_dir is not None and (buy_and_hold_dir / "metrics.json").exists():
        m = read_json(buy_and_hold_dir / "metrics.json") or {}
        row = {
            "variant": BUY_AND_HOLD,
            "kind": "baseline",
            "architecture": "",
            "weighting": "",
            "seeds_ok": 1,
            "seeds": 1,
        }
        for key in PERF:
            row[f"{key}_mean"], row[f"{key}_std"] = _num(m.get("portfolio", {}).get(key)), np.nan
        bh = read_returns(buy_and_hold_dir / "returns.csv")
        if bh is not None and len(bh) > 2:
            ensembles[BUY_AND_HOLD] = bh
            row["ensemble_sharpe"] = stats.sharpe(bh.to_numpy()) * scale
            row["psr"] = stats.probabilistic_sharpe_ratio(bh.to_numpy())
        rows.append(row)
    table = pd.DataFrame(rows)
    return Comparison(table, ensembles, ppy, n_trials, sr_var)


def _pm(mean: float, std: float) -> str:
    from mtl_bt.report.document import fmt

    if not math.isfinite(mean) and not math.isinf(mean):
        return "—"
    return fmt(mean, 3) if not math.isfinite(std) else f"{fmt(mean, 3)} ± {fmt(std, 2)}"


def performance_view(table: pd.DataFrame) -> pd.DataFrame:
    """Human table: variant, seeds, mean +- std of the portfolio metrics."""
    out = pd.DataFrame({"variant": table["variant"]})
    out["seeds"] = [
        f"{int(a)}/{int(b)}" if r != "baseline" else "—"
        for a, b, r in zip(table["seeds_ok"], table["seeds"], table["kind"], strict=True)
    ]
    for key in PERF:
        out[PERF_LABELS[key]] = [
            _pm(m, s) for m, s in zip(table[f"{key}_mean"], table[f"{key}_std"], strict=True)
        ]
    return out


def task_view(table: pd.DataFrame) -> pd.DataFrame:
    """Human table of the out-of-sample task metrics (mean +- std over seeds)."""
    cols = [c[: -len("_mean")] for c in table.columns if "@" in c and c.endswith("_mean")]
    rows = table[table["kind"] != "baseline"]
    out = pd.DataFrame({"variant": rows["variant"]})
    for col in cols:
        out[col.replace("_", " ", 1)] = [
            _pm(m, s) for m, s in zip(rows[f"{col}_mean"], rows[f"{col}_std"], strict=True)
        ]
    return out.reset_index(drop=True)


def significance_view(table: pd.DataFrame) -> pd.DataFrame:
    """Per trained variant: seed-ensemble Sharpe, PSR, DSR and the paired difference CI."""
    from mtl_bt.report.document import fmt

    rows = table[table["kind"] != "baseline"]
    out = pd.DataFrame({"variant": rows["variant"]})
    out["ensemble Sharpe"] = rows["ensemble_sharpe"].to_numpy()
    out["PSR"] = rows["psr"].to_numpy()
    out["DSR"] = rows["dsr"].to_numpy()
    out["ΔSharpe vs single-task"] = rows["sharpe_diff"].to_numpy()
    out["95% CI"] = [
        f"[{fmt(lo, 3)}, {fmt(hi, 3)}]" if math.isfinite(lo) else "—"
        for lo, hi in zip(rows["sharpe_diff_low"], rows["sharpe_diff_high"], strict=True)
    ]
    out["p"] = rows["sharpe_diff_p"].to_numpy()
    return out.reset_index(drop=True)
