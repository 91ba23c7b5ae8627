"""Does a volatility forecast pay in trading? ``vol_managed`` on identical bars, four inputs.

Reads a finished ``mtl-bt compare`` folder and backtests the ``vol_managed`` rule (long
every asset, target_vol / predicted vol) per seed with the fold models it already has:

- ``mtl``: the MTL variant's ``volatility@h`` head;
- ``single_task``: the single-task volatility model (the ensemble's member);
- ``ewma``: the RiskMetrics EWMA (the backtest's sizing input, lambda from the bar size with
  an 11.2-day half-life like the task metrics' ``qlike_ewma``:
  ``mtl_bt.metrics.volatility.timeframe_lambda``) of the bars up to the decision bar
  (``volatility_input = "ewma"``);
- ``trailing``: the strategy's trailing 20-bar realised vol (``volatility_input = "trailing"``).

Same bars, costs and caps for all four; a table of Sharpe (net and gross), annual
volatility and costs per seed-ensemble, and the paired Sharpe difference of each forecast
against the trailing realised vol, with raw and Holm-adjusted p-values. Over a grid of
``target_vol`` values (every target tried is published: one table, one row per input and
target; Holm runs over every comparison of every target). It runs after ``mtl-bt
compare``, not inside it (docs/run.md says why)::

    python -m mtl_bt.compare.vol_managed OUT MTL_VARIANT ARCH SEEDS 0.05,0.1,0.15
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtl_bt import stats


def _checkpoints(folder: Path) -> list[Path]:
    return sorted((folder / "checkpoints").glob("fold_*.pt"))


def backtests(
    out: Path,
    mtl_variant: str,
    architecture: str,
    seeds: list[int],
    frames,
    cfg,
    target_vol: float = 0.2,
):
    """Per input, the per-bar returns of each seed (dict input -> list of Series)."""
    from mtl_bt.backtesting.runner import run_backtest
    from mtl_bt.compare.ensemble import EnsemblePredictor
    from mtl_bt.predictor import Predictor

    options = {"target_vol": target_vol}
    bt = cfg.backtest.model_copy(update={"signal": "vol_managed", "signal_options": options})
    off = bt.model_copy(update={"signal_options": {**options, "volatility_input": "trailing"}})
    ewma = bt.model_copy(update={"signal_options": {**options, "volatility_input": "ewma"}})
    runs = out / "runs"
    series: dict[str, list[pd.Series]] = {"mtl": [], "single_task": [], "ewma": [], "trailing": []}
    metrics: dict[str, list[dict]] = {k: [] for k in series}
    for seed in seeds:
        mtl = [
            Predictor.from_checkpoint(p) for p in _checkpoints(runs / mtl_variant / f"seed_{seed}")
        ]
        members = runs / f"st_ensemble[{architecture}]" / f"seed_{seed}" / "members"
        tasks = [t for t in cfg.task_names() if (members / t).is_dir()]
        per_task = {t: _checkpoints(members / t) for t in tasks}
        ens = [
            EnsemblePredictor([Predictor.from_checkpoint(per_task[t][k]) for t in tasks], tasks)
            for k in range(len(mtl))
        ]
        for name, models, config in (
            ("mtl", mtl, bt),
            ("single_task", ens, bt),
            ("ewma", mtl, ewma),  # the model only fixes the traded bars; EWMA sizes
            ("trailing", mtl, off),
        ):
            res = run_backtest(frames, models, config)
            series[name].append(res.returns)
            metrics[name].append(res.metrics)
    return series, metrics


#: (comparator, rows compared with it): every forecast against trailing realised vol, the
#: learned forecasts against EWMA, and joint training (MTL head) against the single-task model
COMPARISONS = (
    ("trailing", ("mtl", "single_task", "ewma")),
    ("ewma", ("mtl", "single_task")),
    ("single_task", ("mtl",)),
)


def _paired(a: pd.Series, b: pd.Series, ppy: float):
    joined = pd.concat([a, b], axis=1, join="inner").dropna()
    return stats.paired_bootstrap_sharpe_diff(
        joined.iloc[:, 0].to_numpy(),
        joined.iloc[:, 1].to_numpy(),
        n_boot=2000,
        seed=0,
        periods_per_year=ppy,
    )


def table(series, metrics, ppy: float) -> pd.DataFrame:
    rows = []
    ens = {k: pd.concat(v, axis=1, join="inner").mean(axis=1) for k, v in series.items()}
    for name, values in metrics.items():
        row = {"volatility input": name}
        for key in ("sharpe", "gross_sharpe", "annual_volatility", "cost_drag", "turnover"):
            vals = [m.get(key) for m in values if m.get(key) is not None]
            row[f"{key} mean"] = float(np.mean(vals)) if vals else np.nan
            row[f"{key} std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else np.nan
        row["seed-ensemble Sharpe"] = stats.sharpe(ens[name].to_numpy()) * np.sqrt(ppy)
        for other, names in COMPARISONS:
            ci = "95% CI" if other == "trailing" else f"95% CI ({other})"
            if name in names and other in ens:
                res = _paired(ens[name], ens[other], ppy)
                row[f"ΔSharpe vs {other}"] = res.diff
                row[ci] = f"[{res.low:.3f}, {res.high:.3f}]"
                row[f"p vs {other}"] = res.p_value
            else:
                row[f"ΔSharpe vs {other}"] = np.nan
                row[ci] = None
                row[f"p vs {other}"] = np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def with_holm(frame: pd.DataFrame) -> pd.DataFrame:
    """``p Holm vs <x>`` beside every ``p vs <x>``, adjusted over all of them together (every
    comparison of every target in the table is one family)."""
    cols = [c for c in frame.columns if c.startswith("p vs ")]
    if not cols:
        return frame
    flat = np.concatenate([frame[c].to_numpy(dtype=float) for c in cols])
    adjusted = stats.holm(flat)
    out = frame.copy()
    n = len(frame)
    for i, col in enumerate(cols):
        out[col.replace("p vs ", "p Holm vs ")] = adjusted[i * n : (i + 1) * n]
    return out


def grid(
    out: str, mtl_variant: str, architecture: str, seeds: int, targets: list[float]
) -> pd.DataFrame:
    """The study at every target of ``targets``: one table (``target_vol`` column), Holm over
    all of it."""
    frames = [main(out, mtl_variant, architecture, seeds, t) for t in targets]
    for t, frame in zip(targets, frames, strict=True):
        frame.insert(0, "target_vol", t)
    return with_holm(pd.concat(frames, ignore_index=True))


def main(
    out: str, mtl_variant: str, architecture: str, seeds: int, target_vol: float = 0.2
) -> pd.DataFrame:
    from mtl_bt import config as config_mod
    from mtl_bt import pipeline
    from mtl_bt.pipeline import torch_threads

    folder = Path(out)
    cfg = config_mod.load(folder / "config.toml")
    frames = pipeline.load_data(cfg)
    with torch_threads(1):
        series, metrics = backtests(
            folder, mtl_variant, architecture, list(range(seeds)), frames, cfg, target_vol
        )
    import json

    first = folder / "runs" / mtl_variant / "seed_0" / "metrics.json"
    ppy = float(json.loads(first.read_text())["periods_per_year"])
    return table(series, metrics, ppy)


if __name__ == "__main__":  # python -m mtl_bt.compare.vol_managed OUT MTL ARCH SEEDS T1,T2,..
    import sys

    from mtl_bt.report.document import table_markdown

    targets = [float(t) for t in sys.argv[5].split(",") if t]
    frame = grid(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), targets)
    print(table_markdown(frame))
