"""The comparison table: mean +- std over seeds, paired Sharpe-difference CIs and deflated Sharpe.

Read only from the job folders (``runs/<variant>/seed_<k>/``), so a re-run that skipped finished
jobs produces the same table as the run that trained them.

Statistics (see docs/results.md for how to read them):
- Seed ensemble: a variant's per-bar return is the mean over its successful seeds (capital
  split equally across the seed models). The paired bootstrap and the DSR use that series.
- Paired bootstrap: Sharpe(variant) - Sharpe(single-task model of the same architecture) on the
  bars both traded, circular block bootstrap, annualised.
- DSR: PSR of the variant's Sharpe against the expected best Sharpe of N unskilled trials,
  N = every backtest tried (each variant x seed), V = the variance of their Sharpe ratios.
- ΔSharpe intervals twice: over time (the seed ensembles, paired block bootstrap) and over
  seeds and time (``stats.seed_time_bootstrap_sharpe_diff``).
- Holm-adjusted p-values (``*_p_holm``) beside the raw ones, one family per table of tests.
- MTL vs the simple baselines (``vs_simple``): per (MTL variant, baseline), ΔSharpe with both
  intervals and per task the metric difference M − B with its paired block-bootstrap CI and
  p-value; Holm over every test of that table (one family for the Sharpe tests, one for the
  task tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt import stats
from mtl_bt.compare import delta as deltas
from mtl_bt.compare.variants import BUY_AND_HOLD, NO_AUX, SIMPLE, Variant
from mtl_bt.report.oos import headline
from mtl_bt.report.run_report import read_json, read_returns

#: portfolio metrics aggregated over seeds, in table order
PERF = [
    "sharpe",
    "gross_sharpe",
    "sortino",
    "max_drawdown",
    "profit_factor",
    "cagr",
    "annual_volatility",
    "cost_drag",
    "turnover",
]
PERF_LABELS = {
    "sharpe": "Sharpe",
    "gross_sharpe": "gross Sharpe",
    "sortino": "Sortino",
    "max_drawdown": "Max DD",
    "profit_factor": "Profit factor",
    "cagr": "CAGR",
    "annual_volatility": "ann. vol",
    "cost_drag": "costs/yr",
    "turnover": "Turnover (2-way)",
}


@dataclass
class Comparison:
    table: pd.DataFrame  # one row per variant; every number (comparison.csv)
    ensembles: dict[str, pd.Series] = field(default_factory=dict)  # seed-averaged returns
    periods_per_year: float = float("nan")
    n_trials: int = 0
    sr_variance: float = float("nan")
    #: per (MTL variant, simple baseline): ΔSharpe and per-task differences (``vs_simple``)
    vs_simple: pd.DataFrame = field(default_factory=pd.DataFrame)


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
    """Folders of the finished (marker present) seeds of ``variant`` (an evaluated-only
    single-task member has no metrics.json)."""
    out = []
    for seed in seeds:
        folder = runs_dir / variant / f"seed_{seed}"
        if (folder / "job.json").exists() and (folder / "oos_metrics.csv").exists():
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


def _paired(a: pd.Series | None, b: pd.Series | None, ppy: float) -> dict[str, float]:
    nan = float("nan")
    out = {"diff": nan, "low": nan, "high": nan, "p": nan, "n": 0}
    if a is None or b is None:
        return out
    joined = pd.concat([a, b], axis=1, join="inner").dropna()
    if len(joined) < 3:
        return out
    res = stats.paired_bootstrap_sharpe_diff(
        joined.iloc[:, 0].to_numpy(),
        joined.iloc[:, 1].to_numpy(),
        n_boot=2000,
        seed=0,
        periods_per_year=ppy if math.isfinite(ppy) else 1.0,
    )
    return {"diff": res.diff, "low": res.low, "high": res.high, "p": res.p_value, "n": res.n}


def _paired_seeds(
    a: list[pd.Series] | None, b: list[pd.Series] | None, ppy: float
) -> dict[str, float]:
    """ΔSharpe CI resampling seeds and time (``stats.seed_time_bootstrap_sharpe_diff``)."""
    nan = float("nan")
    out = {"low": nan, "high": nan, "p": nan}
    if not a or not b:
        return out
    joined = pd.concat([*a, *b], axis=1, join="inner").dropna()
    if len(joined) < 3:
        return out
    values = joined.to_numpy().T
    res = stats.seed_time_bootstrap_sharpe_diff(
        values[: len(a)],
        values[len(a) :],
        n_boot=2000,
        seed=0,
        periods_per_year=ppy if math.isfinite(ppy) else 1.0,
    )
    return {"low": res.low, "high": res.high, "p": res.p_value}


def _sharpe_diffs(
    variant: Variant,
    series: pd.Series | None,
    ensembles: dict[str, pd.Series],
    ppy: float,
    per_seed: dict[str, list[pd.Series]] | None = None,
) -> dict[str, float]:
    """MTL: ΔSharpe vs the single-task ensemble (``sharpe_diff*``, same rule and heads) and vs
    the return-only model (``sharpe_diff_ro*``); no_aux: vs the return-only model. Two
    intervals each: over time only (the seed ensembles, ``_low``/``_high``/``_p``) and over
    seeds and time (``_seeds_low``/``_seeds_high``/``_seeds_p``)."""
    out: dict[str, float] = {}
    per_seed = per_seed or {}
    targets = {}
    if variant.kind == "mtl":
        targets = {"sharpe_diff": variant.ensemble, "sharpe_diff_ro": variant.baseline}
    elif variant.kind == NO_AUX:
        targets = {"sharpe_diff_ro": variant.baseline}
    for prefix in ("sharpe_diff", "sharpe_diff_ro"):
        res = _paired(series, ensembles.get(targets[prefix]), ppy) if prefix in targets else None
        res = res or {"diff": np.nan, "low": np.nan, "high": np.nan, "p": np.nan, "n": 0}
        out[prefix] = res["diff"]
        out[f"{prefix}_low"], out[f"{prefix}_high"] = res["low"], res["high"]
        out[f"{prefix}_p"] = res["p"]
        out["paired_bars" if prefix == "sharpe_diff" else "paired_bars_ro"] = res["n"]
        both = (
            _paired_seeds(per_seed.get(variant.name), per_seed.get(targets[prefix]), ppy)
            if prefix in targets
            else {"low": np.nan, "high": np.nan, "p": np.nan}
        )
        out[f"{prefix}_seeds_low"], out[f"{prefix}_seeds_high"] = both["low"], both["high"]
        out[f"{prefix}_seeds_p"] = both["p"]
    return out


#: families of tests adjusted together by Holm (one table each): raw p column -> members
HOLM_FAMILIES = {
    "sharpe_time": ("sharpe_diff_p", "sharpe_diff_ro_p"),
    "sharpe_seeds": ("sharpe_diff_seeds_p", "sharpe_diff_ro_seeds_p"),
}


def add_holm(table: pd.DataFrame, columns: list[str]) -> None:
    """``<col>_holm`` beside every raw p-value column in ``columns``: Holm-adjusted over every
    finite p-value of those columns together (one family: the tests of one table)."""
    present = [c for c in columns if c in table]
    if not present:
        return
    flat = np.concatenate([table[c].to_numpy(dtype=float) for c in present])
    adjusted = stats.holm(flat)
    n = len(table)
    for i, col in enumerate(present):
        table[f"{col}_holm"] = adjusted[i * n : (i + 1) * n]


def _delta_row(
    runs_dir: Path,
    variant: Variant,
    seeds: list[int],
    specs: list[deltas.TaskMetric],
    n_boot: int,
) -> dict[str, Any]:
    """Δm of an MTL variant against the single-task ensemble of its architecture: on the
    seed-averaged predictions with bootstrap CIs (LibMTL's form over the tasks whose
    single-task metric is distinguishable from 0, and the stable form Δm_σ), and per seed
    (mean ± std, leaving out the same flagged tasks)."""
    out: dict[str, Any] = {}
    names = [s.task for s in specs]
    mtl = deltas.seed_mean_predictions(seed_dirs(runs_dir, variant.name, seeds), names)
    single = deltas.seed_mean_predictions(seed_dirs(runs_dir, variant.ensemble, seeds), names)
    flagged: list[str] = []
    if mtl is not None and single is not None:
        res = deltas.bootstrap_delta(mtl, single, specs, n_boot=n_boot)
        flagged = list(res.flagged)
        out.update(delta_m=res.delta_m, delta_m_low=res.low, delta_m_high=res.high)
        out.update(
            delta_m_stable=res.stable,
            delta_m_stable_low=res.stable_low,
            delta_m_stable_high=res.stable_high,
        )
        out["delta_flagged"] = ",".join(flagged)
        out["delta_block"] = res.block
        for task, (diff, low, high) in res.per_task.items():
            out[f"d_{task}"], out[f"d_{task}_low"], out[f"d_{task}_high"] = diff, low, high
            out[f"d_{task}_p"] = res.p_values.get(task, np.nan)
            out[f"rel_{task}"] = res.relative.get(task, np.nan)
            out[f"sigma_{task}"] = res.scale.get(task, np.nan)
    per_seed = []
    for seed in seeds:
        m = runs_dir / variant.name / f"seed_{seed}"
        st = runs_dir / variant.ensemble / f"seed_{seed}"
        if (m / "job.json").exists() and (st / "job.json").exists():
            kept = [s for s in specs if s.task not in flagged]
            per_seed.append(
                deltas.delta_m_of(
                    deltas.metrics_from_csv(m / "oos_metrics.csv", kept),
                    deltas.metrics_from_csv(st / "oos_metrics.csv", kept),
                    kept,
                )
            )
    out["delta_m_mean"], out["delta_m_std"] = _mean_std([v for v in per_seed if math.isfinite(v)])
    return out


def _overfit(folders: list[Path], specs: list[deltas.TaskMetric]) -> dict[str, float]:
    """Per task, mean over folds and seeds of val loss / train loss at the epoch early
    stopping kept (the lowest val_score): > 1 is a generalisation gap. Both losses are the
    eval-mode ones measured after the same epoch (``train_loss_*``, ``val_loss_*``); a log
    without ``train_loss_*`` (older runs: only the train-mode running mean, dropout on) gives
    no ratio rather than a biased one."""
    ratios: dict[str, list[float]] = {}
    for folder in folders:
        path = folder / "train_log.csv"
        if not path.exists():
            continue
        log = pd.read_csv(path)
        if "val_score" not in log:
            continue
        keys = ["member", "fold"] if "member" in log else ["fold"]
        for _key, group in log.groupby(keys, sort=True):
            if group["val_score"].isna().all():
                continue
            best = group.loc[group["val_score"].idxmin()]
            for spec in specs:
                tr = best.get(f"train_loss_{spec.task}")
                va = best.get(f"val_loss_{spec.task}")
                if tr is not None and va is not None and np.isfinite(tr) and np.isfinite(va):
                    if tr > 0:
                        ratios.setdefault(spec.task, []).append(float(va / tr))
    return {f"gap_{t}": float(np.mean(v)) for t, v in ratios.items()}


def _fold_dispersion(folders: list[Path], series: pd.Series | None, ppy: float) -> float:
    """Std over walk-forward test windows of the seed ensemble's annualised Sharpe."""
    if series is None or not folders:
        return float("nan")
    data = read_json(folders[0] / "data.json") or {}
    scale = math.sqrt(ppy) if math.isfinite(ppy) else 1.0
    values = []
    for fold in data.get("folds", []):
        lo, hi = pd.Timestamp(fold["test_start"]), pd.Timestamp(fold["test_end"])
        part = series[(series.index >= lo) & (series.index <= hi)].to_numpy()
        if len(part) > 2:
            sr = stats.sharpe(part)
            if math.isfinite(sr):
                values.append(sr * scale)
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def build(
    runs_dir: Path,
    variants: list[Variant],
    seeds: list[int],
    buy_and_hold_dir: Path | None,
    specs: list[deltas.TaskMetric] | None = None,
    n_boot: int = 300,
    extra_trials: int = 0,
) -> Comparison:
    """Aggregate the finished jobs into the comparison table (``specs``: the Δm metrics;
    ``extra_trials``: backtests tried outside this table that the DSR must count)."""
    specs = specs or []
    rows: list[dict[str, Any]] = []
    ensembles: dict[str, pd.Series] = {}
    per_seed: dict[str, list[pd.Series]] = {}
    ppy = float("nan")
    for variant in variants:
        folders = seed_dirs(runs_dir, variant.name, seeds)
        row: dict[str, Any] = {
            "variant": variant.name,
            "kind": variant.kind,
            "architecture": variant.architecture,
            "weighting": variant.weighting if variant.kind in ("mtl", NO_AUX) else "",
            "task": variant.task or "",
            "seeds_ok": len(folders),
            "seeds": 1 if variant.seedless else len(seeds),
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
        runs = [s for s in (read_returns(f / "returns.csv") for f in folders) if s is not None]
        if runs:
            per_seed[variant.name] = runs
        rows.append(row)

    trial_sr = {
        name: stats.sharpe(series.to_numpy())
        for name, series in ensembles.items()
        if len(series) > 2
    }
    # DSR: every backtest tried is a trial (each variant x seed, plus what the caller tried
    # elsewhere, e.g. a grid of targets); V is the variance of their per-period Sharpes
    seed_sr = [stats.sharpe(r.to_numpy()) for runs in per_seed.values() for r in runs if len(r) > 2]
    finite = [v for v in seed_sr if math.isfinite(v)]
    n_trials = max(1, len(finite) + int(extra_trials))
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
        row.update(_sharpe_diffs(variant, series, ensembles, ppy, per_seed))
        if variant.kind == "mtl" and specs:
            row.update(_delta_row(runs_dir, variant, seeds, specs, n_boot))
        folders = seed_dirs(runs_dir, name, seeds)
        row.update(_overfit(folders, specs))
        row["fold_sharpe_std"] = _fold_dispersion(folders, series, ppy)
    rows = [r for r in rows if r is not None]
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
    for family in HOLM_FAMILIES.values():
        add_holm(table, list(family))
    add_holm(table, [f"d_{s.task}_p" for s in specs])
    simple = vs_simple(runs_dir, variants, seeds, specs, ensembles, per_seed, ppy, n_boot)
    return Comparison(table, ensembles, ppy, n_trials, sr_var, simple)


def vs_simple(
    runs_dir: Path,
    variants: list[Variant],
    seeds: list[int],
    specs: list[deltas.TaskMetric],
    ensembles: dict[str, pd.Series],
    per_seed: dict[str, list[pd.Series]],
    ppy: float,
    n_boot: int = 300,
) -> pd.DataFrame:
    """One row per (MTL variant, simple baseline): ΔSharpe(MTL − baseline) of the seed
    ensembles with its intervals over time and over seeds and time, and per task the
    headline-metric difference M − B on the seed-averaged predictions (paired block
    bootstrap over time, two-sided p). Holm-adjusted p-values beside the raw ones: one family
    for the Sharpe tests of each kind of interval, one for the task tests."""
    mtl = [v for v in variants if v.kind == "mtl"]
    simple = [v for v in variants if v.kind == SIMPLE]
    names = [s.task for s in specs]
    rows = []
    for base in simple:
        b_folders = seed_dirs(runs_dir, base.name, seeds)
        if not b_folders:
            continue
        b_preds = deltas.seed_mean_predictions(b_folders, names)
        for variant in mtl:
            folders = seed_dirs(runs_dir, variant.name, seeds)
            if not folders:
                continue
            row: dict[str, Any] = {"variant": variant.name, "baseline": base.name}
            row["sharpe"] = _ann_sharpe(ensembles.get(variant.name), ppy)
            row["baseline_sharpe"] = _ann_sharpe(ensembles.get(base.name), ppy)
            res = _paired(ensembles.get(variant.name), ensembles.get(base.name), ppy)
            row.update(
                sharpe_diff=res["diff"],
                sharpe_diff_low=res["low"],
                sharpe_diff_high=res["high"],
                sharpe_diff_p=res["p"],
            )
            both = _paired_seeds(per_seed.get(variant.name), per_seed.get(base.name), ppy)
            row.update(
                sharpe_diff_seeds_low=both["low"],
                sharpe_diff_seeds_high=both["high"],
                sharpe_diff_seeds_p=both["p"],
            )
            m_preds = deltas.seed_mean_predictions(folders, names)
            if m_preds is not None and b_preds is not None and specs:
                d = deltas.bootstrap_delta(m_preds, b_preds, specs, n_boot=n_boot)
                for task, (diff, low, high) in d.per_task.items():
                    row[f"d_{task}"], row[f"d_{task}_low"], row[f"d_{task}_high"] = diff, low, high
                    row[f"d_{task}_p"] = d.p_values.get(task, np.nan)
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    add_holm(table, ["sharpe_diff_p"])
    add_holm(table, ["sharpe_diff_seeds_p"])
    add_holm(table, [f"d_{s.task}_p" for s in specs])
    return table


def _ann_sharpe(series: pd.Series | None, ppy: float) -> float:
    if series is None or len(series) < 3:
        return float("nan")
    return stats.sharpe(series.to_numpy()) * (math.sqrt(ppy) if math.isfinite(ppy) else 1.0)


def simple_view(table: pd.DataFrame, specs: list[deltas.TaskMetric]) -> pd.DataFrame:
    """Human table of ``vs_simple``: ΔSharpe and per-task differences with CIs, raw and
    Holm-adjusted p-values."""
    from mtl_bt.report.document import fmt

    if table.empty:
        return pd.DataFrame()

    def interval(d: float, lo: float, hi: float) -> str:
        if not math.isfinite(d):
            return "—"
        if not math.isfinite(lo):
            return fmt(d, 3)
        return f"{fmt(d, 3)} [{fmt(lo, 3)}, {fmt(hi, 3)}]"

    out = pd.DataFrame({"MTL variant": table["variant"], "baseline": table["baseline"]})
    out["Sharpe MTL"] = table["sharpe"].to_numpy()
    out["Sharpe baseline"] = table["baseline_sharpe"].to_numpy()
    out["ΔSharpe [95% CI time]"] = [
        interval(d, lo, hi)
        for d, lo, hi in zip(
            table["sharpe_diff"], table["sharpe_diff_low"], table["sharpe_diff_high"], strict=True
        )
    ]
    out["p"] = table["sharpe_diff_p"].to_numpy()
    out["p Holm"] = table["sharpe_diff_p_holm"].to_numpy()
    out["95% CI seeds+time"] = [
        f"[{fmt(lo, 3)}, {fmt(hi, 3)}]" if math.isfinite(lo) else "—"
        for lo, hi in zip(
            table["sharpe_diff_seeds_low"], table["sharpe_diff_seeds_high"], strict=True
        )
    ]
    out["p Holm seeds+time"] = table["sharpe_diff_seeds_p_holm"].to_numpy()
    for spec in specs:
        col = f"d_{spec.task}"
        if col not in table:
            continue
        out[_delta_label(spec)] = _delta_intervals(table, col, interval)
        out[f"p Holm {spec.task}"] = table[f"{col}_p_holm"].to_numpy()
    return out.reset_index(drop=True)


def _delta_label(spec: deltas.TaskMetric) -> str:
    return f"Δ {spec.task} {spec.metric}" + ("" if spec.higher_is_better else " (lower better)")


def _delta_intervals(frame: pd.DataFrame, col: str, interval: Any) -> list[str]:
    """``col``'s differences with their 95% CI (``col_low``, ``col_high``), one cell a row,
    each written by ``interval(d, lo, hi)``."""
    return [
        interval(d, lo, hi)
        for d, lo, hi in zip(frame[col], frame[f"{col}_low"], frame[f"{col}_high"], strict=True)
    ]


def simple_verdict(table: pd.DataFrame, specs: list[deltas.TaskMetric]) -> str:
    """One plain sentence on the best MTL variant (by seed-ensemble Sharpe) against the
    simple baselines ('' without them). A difference counts only when its Holm-adjusted
    p-value is below 0.05 (Sharpe: the seeds-and-time interval); the rest is said to be no
    evidence either way, never "worse" or "better" on a point estimate."""
    if table.empty:
        return ""
    best = table.loc[table["sharpe"].fillna(-math.inf).idxmax(), "variant"]
    rows = table[table["variant"] == best]
    sharpe, silent = [], []
    for _, r in rows.iterrows():
        if not math.isfinite(r["baseline_sharpe"]):
            silent.append(str(r["baseline"]))
            continue
        p = r.get("sharpe_diff_seeds_p_holm", math.nan)
        word = _word(r["sharpe_diff"], p, higher_is_better=True)
        sharpe.append(
            f"vs {r['baseline']} {r['sharpe']:.2f} against {r['baseline_sharpe']:.2f} "
            f"(ΔSharpe {r['sharpe_diff']:+.2f}, 95% CI over seeds and time "
            f"[{r['sharpe_diff_seeds_low']:.2f}, {r['sharpe_diff_seeds_high']:.2f}], "
            f"Holm p {p:.2g}: {word})"
        )
    better, worse = [], []
    for spec in specs:
        col = f"d_{spec.task}"
        if col not in rows:
            continue
        for _, r in rows.iterrows():
            word = _word(r[col], r[f"{col}_p_holm"], spec.higher_is_better)
            label = f"{spec.task} {spec.metric} vs {r['baseline']}"
            if word == "MTL better":
                better.append(label)
            elif word == "baseline better":
                worse.append(label)
    parts = [f"The best MTL variant, {best}, against the simple baselines"]
    if sharpe:
        parts.append(": Sharpe " + "; ".join(sharpe))
    if silent:
        parts.append(
            f"{';' if sharpe else ':'} {', '.join(silent)} never traded under this rule "
            "(no Sharpe to compare)"
        )
    forecasts = (
        f"MTL better on {', '.join(better) if better else 'none'}, "
        f"baseline better on {', '.join(worse) if worse else 'none'}"
    )
    parts.append(f". Forecasts (Holm p < 0.05): {forecasts}; no evidence either way on the rest.")
    return "".join(parts)


def _word(diff: float, p_holm: float, higher_is_better: bool) -> str:
    """'MTL better' / 'baseline better' when Holm's p < 0.05, else no evidence either way."""
    if not (math.isfinite(diff) and math.isfinite(p_holm)) or p_holm >= 0.05 or diff == 0:
        return "no evidence either way"
    return "MTL better" if (diff > 0) == higher_is_better else "baseline better"


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
    out = out.reset_index(drop=True)
    # the EWMA and HAR-RV volatility forecasts as rows of their own (same rows, same folds;
    # they do not depend on the seed): read from the first MTL variant's columns
    mtl = rows[rows["kind"] == "mtl"]
    extra = []
    for tag, label in (("ewma", "ewma[volatility]"), ("har", "har_rv[volatility]")):
        found = {
            c[: -len(f"_{tag}")]: c
            for c in cols
            if c.endswith(f"_qlike_{tag}") or c.endswith(f"_calibration_{tag}")
        }
        if mtl.empty or not found:
            continue
        row = {"variant": label}
        for own, theirs in found.items():
            row[own.replace("_", " ", 1)] = _pm(float(mtl[f"{theirs}_mean"].iloc[0]), np.nan)
        extra.append(row)
    if extra:
        out = pd.concat([out, pd.DataFrame(extra)], ignore_index=True).fillna("—")
    return out


def significance_view(table: pd.DataFrame) -> pd.DataFrame:
    """Per trained variant: seed-ensemble Sharpe, PSR, DSR and the paired differences."""
    from mtl_bt.report.document import fmt

    rows = table[table["kind"] != "baseline"]

    def ci(prefix: str) -> list[str]:
        return [
            f"[{fmt(lo, 3)}, {fmt(hi, 3)}]" if math.isfinite(lo) else "—"
            for lo, hi in zip(rows[f"{prefix}_low"], rows[f"{prefix}_high"], strict=True)
        ]

    out = pd.DataFrame({"variant": rows["variant"]})
    out["ensemble Sharpe"] = rows["ensemble_sharpe"].to_numpy()
    out["PSR"] = rows["psr"].to_numpy()
    out["DSR"] = rows["dsr"].to_numpy()
    for prefix, label in (("sharpe_diff", "ST ensemble"), ("sharpe_diff_ro", "return-only")):
        if prefix not in rows:
            continue
        out[f"ΔSharpe vs {label}"] = rows[prefix].to_numpy()
        out[f"95% CI time ({label})"] = ci(prefix)
        out[f"p ({label})"] = rows[f"{prefix}_p"].to_numpy()
        out[f"p Holm ({label})"] = rows[f"{prefix}_p_holm"].to_numpy()
        if f"{prefix}_seeds_low" in rows:
            out[f"95% CI seeds+time ({label})"] = ci(f"{prefix}_seeds")
            out[f"p seeds+time ({label})"] = rows[f"{prefix}_seeds_p"].to_numpy()
            out[f"p Holm seeds+time ({label})"] = rows[f"{prefix}_seeds_p_holm"].to_numpy()
    return out.reset_index(drop=True)


def delta_view(table: pd.DataFrame, specs: list[deltas.TaskMetric]) -> pd.DataFrame:
    """Per MTL variant: Δm (LibMTL's form per seed and on the seed ensemble, over the tasks
    not flagged), the stable Δm_σ with its CI, the flagged tasks, and each task's metric
    difference MTL − single-task with its CI and raw / Holm-adjusted p-value."""
    from mtl_bt.report.document import fmt

    rows = table[table["kind"] == "mtl"]
    if rows.empty or "delta_m" not in rows:
        return pd.DataFrame()

    def interval(d: float, lo: float, hi: float, unit: str = "") -> str:
        if not math.isfinite(d):
            return "—"
        if not math.isfinite(lo):
            return f"{fmt(d, 3)}{unit}"
        return f"{fmt(d, 3)}{unit} [{fmt(lo, 3)}, {fmt(hi, 3)}]"

    out = pd.DataFrame({"variant": rows["variant"]})
    out["Δm per seed"] = [
        _pm(100 * m, 100 * s) + " %" if math.isfinite(m) else "—"
        for m, s in zip(rows["delta_m_mean"], rows["delta_m_std"], strict=True)
    ]
    out["Δm (seed ens.)"] = [
        interval(100 * d, 100 * lo, 100 * hi, " %")
        for d, lo, hi in zip(
            rows["delta_m"], rows["delta_m_low"], rows["delta_m_high"], strict=True
        )
    ]
    if "delta_m_stable" in rows:
        out["Δm_σ (seed ens.)"] = [
            interval(d, lo, hi)
            for d, lo, hi in zip(
                rows["delta_m_stable"],
                rows["delta_m_stable_low"],
                rows["delta_m_stable_high"],
                strict=True,
            )
        ]
        out["flagged (S ≈ 0)"] = [
            str(f) if isinstance(f, str) and f else "—" for f in rows["delta_flagged"]
        ]
    for spec in specs:
        col = f"d_{spec.task}"
        if col not in rows:
            continue
        out[_delta_label(spec)] = _delta_intervals(rows, col, interval)
        if f"{col}_p" in rows:
            out[f"p {spec.task}"] = rows[f"{col}_p"].to_numpy()
            out[f"p Holm {spec.task}"] = rows[f"{col}_p_holm"].to_numpy()
    return out.reset_index(drop=True)


def robustness_view(table: pd.DataFrame) -> pd.DataFrame:
    """Generalisation gap (val / train loss at the kept epoch) and per-fold Sharpe dispersion."""
    rows = table[table["kind"] != "baseline"]
    out = pd.DataFrame({"variant": rows["variant"]})
    for col in [c for c in rows.columns if c.startswith("gap_")]:
        out[f"val/train loss {col[4:]}"] = rows[col].to_numpy()
    out["std of fold Sharpe"] = rows["fold_sharpe_std"].to_numpy()
    return out.reset_index(drop=True)


#: per-fold calibration metrics of a volatility task shown by ``calibration_view``
CALIBRATION = ("calibration", "mz_slope", "mz_intercept", "qlike", "qlike_ewma")


def calibration_view(runs_dir: Path, variants: list[Variant], seeds: list[int]) -> pd.DataFrame:
    """Per variant with a volatility head, per walk-forward fold: RMS(realised)/RMS(predicted),
    the Mincer-Zarnowitz slope and intercept (mean ± std over seeds; each seed's own HAC s.e.
    is in its ``oos_metrics.csv``) and QLIKE beside EWMA's. A pooled ratio near 1 can hide
    folds far from it."""
    rows = []
    for variant in variants:
        tables = []
        for folder in seed_dirs(runs_dir, variant.name, seeds):
            path = folder / "oos_metrics.csv"
            table = pd.read_csv(path)
            table = table[
                table["task"].astype(str).str.startswith("volatility@")
                & table["metric"].isin(CALIBRATION)
            ]
            if not table.empty:
                tables.append(table)
        if not tables:
            continue
        both = pd.concat(tables, ignore_index=True)
        both["fold"] = both["fold"].astype(str)
        for (task, fold), group in both.groupby(["task", "fold"], sort=False):
            row: dict[str, Any] = {"variant": variant.name, "task": task, "fold": fold}
            for metric in CALIBRATION:
                values = group.loc[group["metric"] == metric, "value"].to_numpy(dtype=float)
                row[metric] = _pm(*_mean_std(list(values)))
            rows.append(row)
    if not rows:
        return pd.DataFrame()
    out = pd.DataFrame(rows)
    order = {"all": -1}
    out["_k"] = [order.get(f, int(f) if f.isdigit() else 10**6) for f in out["fold"]]
    return out.sort_values(["variant", "task", "_k"], kind="stable").drop(columns="_k")
