"""Does a volatility forecast pay in trading? ``vol_managed`` on identical bars, five inputs.

Reads a finished ``mtl-bt compare`` folder and backtests the ``vol_managed`` rule (long
every asset, target_vol / predicted vol) per seed with the fold models it already has:

- ``mtl``: the MTL variant's ``volatility@h`` head;
- ``single_task``: the single-task volatility model (the ensemble's member);
- ``ewma``: the EWMA forecast with λ from the bar size (an 11.2-day half-life in calendar
  time, ``mtl_bt.metrics.volatility.ewma_lambda``: 0.94 daily, about 0.9974 hourly; the
  backtest's own EWMA sizing input uses the same λ);
- ``har``: HAR-RV refitted per fold on the rows before its test window;
- ``trailing``: the strategy's trailing 20-bar realised vol (``volatility_input = "trailing"``).

``ewma`` and ``har`` are the same per-bar forecasts the task metrics score (``qlike_ewma``,
``qlike_har``: ``add_baselines`` on the run's out-of-sample rows), fed to the rule in place
of the head (``ForecastPredictor``). Same bars, costs and caps for all five; a table of
Sharpe (net and gross), annual volatility and costs per seed-ensemble, and paired Sharpe
differences (each forecast against the trailing vol; the learned ones against EWMA and
HAR; the MTL head against the single-task model), with raw and Holm-adjusted p-values,
and the DSR deflated for every input x seed x target tried. Over a grid of ``target_vol``
values (default 0.05, 0.10, 0.15, 0.20; every target tried is published: one table, one row
per input and target; Holm runs over every comparison of every target)::

    python -m mtl_bt.compare.vol_managed OUT MTL_VARIANT ARCH SEEDS [0.05,0.1,0.15,0.2]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtl_bt import stats


def _checkpoints(folder: Path) -> list[Path]:
    return sorted((folder / "checkpoints").glob("fold_*.pt"))


class ForecastPredictor:
    """A fold model whose ``volatility@h`` head is replaced by a table of per-bar forecasts,
    so the rule sizes on the EWMA or HAR-RV forecast with everything else (bars, fold
    windows, return head, costs) unchanged.

    ``predict`` gets feature rows, not times: each row is matched to its bar by its raw
    feature values (``keys``, from ``forecast_keys``: the model's own causal features of
    every bar of the symbol, ``Predictor.features``). A row that matches no bar with a
    forecast is an error rather than a silent fallback."""

    def __init__(self, inner, task: str, keys: dict[str, dict[bytes, float]]) -> None:
        self._inner = inner
        self._task = task
        self._keys = keys

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def predict(self, x: np.ndarray, asset_ids: np.ndarray | None = None) -> dict:
        out = dict(self._inner.predict(x, asset_ids))
        rows = np.asarray(x, dtype=np.float32)
        if rows.ndim == 3:  # a sequence window: its last row is the decision bar
            rows = rows[:, -1, :]
        ids = np.zeros(len(rows), dtype=np.int64) if asset_ids is None else asset_ids
        symbols = self._inner.symbols
        vol = np.empty(len(rows))
        for i, (row, a) in enumerate(zip(rows, ids, strict=True)):
            symbol = symbols[int(np.asarray(a).reshape(-1)[0])]
            hit = self._keys[symbol].get(np.ascontiguousarray(row).tobytes())
            if hit is None:
                raise RuntimeError(
                    f"vol_managed: a feature row of {symbol} matches no bar with a "
                    f"{self._task} forecast"
                )
            vol[i] = hit
        out[self._task] = vol
        return out


def forecast_keys(predictor, frames, forecasts: pd.DataFrame, column: str, task: str):
    """Per symbol, {raw feature row bytes: forecast} for the bars of ``forecasts``
    (``datetime, symbol, <column>``): what ``ForecastPredictor`` looks rows up in."""
    keys: dict[str, dict[bytes, float]] = {}
    for symbol, frame in frames.items():
        mine = forecasts[forecasts["symbol"] == symbol]
        by_time = pd.Series(
            mine[column].to_numpy(dtype=float),
            index=pd.DatetimeIndex(pd.to_datetime(mine["datetime"], utc=True)),
        )
        feats = predictor.features(frame)
        index = pd.DatetimeIndex(feats.index)
        index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
        values = by_time.reindex(index).to_numpy()
        rows = np.ascontiguousarray(feats.to_numpy(dtype=np.float32))
        table: dict[bytes, float] = {}
        for row, value in zip(rows, values, strict=True):
            if np.isfinite(value):
                table.setdefault(row.tobytes(), float(value))
        keys[symbol] = table
    return keys


def _vol_task(cfg) -> str:
    """The ``volatility@h`` task the rule sizes with: h = the smallest return horizon (the
    rule's default) when such a volatility task exists, else the first volatility task."""
    names = cfg.task_names()
    vols = [t for t in names if t.startswith("volatility@")]
    if not vols:
        from mtl_bt.errors import ConfigError

        raise ConfigError("vol_managed study: the config has no volatility@h task")
    rets = sorted(int(t.split("@")[1]) for t in names if t.startswith("return@"))
    for h in rets:
        if f"volatility@{h}" in vols:
            return f"volatility@{h}"
    return vols[0]


def reference_forecasts(run: Path, frames, task: str) -> pd.DataFrame:
    """The run's out-of-sample rows with the EWMA (λ from the bar size) and HAR-RV (refitted
    per fold on the rows before its test window) forecasts of ``task``: the same numbers as
    the task metrics' ``qlike_ewma`` / ``qlike_har`` (``add_baselines``)."""
    import json

    from mtl_bt.metrics.volatility import add_baselines

    # recomputed even when the run's file has them: a run written by older code may hold
    # another λ
    predictions = pd.read_parquet(run / "predictions.parquet")
    folds = json.loads((run / "folds.json").read_text())["folds"]
    return add_baselines(predictions, frames, folds)


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
    bt = cfg.backtest.model_copy(
        update={"signal": "vol_managed", "signal_options": options, "mode": "precomputed"}
    )
    off = bt.model_copy(update={"signal_options": {**options, "volatility_input": "trailing"}})
    runs = out / "runs"
    series: dict[str, list[pd.Series]] = {k: [] for k in INPUTS}
    metrics: dict[str, list[dict]] = {k: [] for k in series}
    task = _vol_task(cfg)
    for seed in seeds:
        run = runs / mtl_variant / f"seed_{seed}"
        mtl = [Predictor.from_checkpoint(p) for p in _checkpoints(run)]
        members = runs / f"st_ensemble[{architecture}]" / f"seed_{seed}" / "members"
        tasks = [t for t in cfg.task_names() if (members / t).is_dir()]
        per_task = {t: _checkpoints(members / t) for t in tasks}
        ens = [
            EnsemblePredictor([Predictor.from_checkpoint(per_task[t][k]) for t in tasks], tasks)
            for k in range(len(mtl))
        ]
        reference = reference_forecasts(run, frames, task)
        tables = {
            tag: forecast_keys(mtl[0], frames, reference, f"{tag}_{task}", task)
            for tag in ("ewma", "har")
        }
        for name, models, config in (
            ("mtl", mtl, bt),
            ("single_task", ens, bt),
            # the model only fixes the traded bars and horizon; the reference forecast sizes
            ("ewma", [ForecastPredictor(m, task, tables["ewma"]) for m in mtl], bt),
            ("har", [ForecastPredictor(m, task, tables["har"]) for m in mtl], bt),
            ("trailing", mtl, off),
        ):
            res = run_backtest(frames, models, config)
            series[name].append(res.returns)
            metrics[name].append(res.metrics)
    return series, metrics


#: the volatility inputs, in table order
INPUTS = ("mtl", "single_task", "ewma", "har", "trailing")

#: (comparator, rows compared with it): every forecast against trailing realised vol, the
#: learned forecasts against EWMA, and joint training (MTL head) against the single-task model
COMPARISONS = (
    ("trailing", ("mtl", "single_task", "ewma", "har")),
    ("ewma", ("mtl", "single_task")),
    ("har", ("mtl", "single_task")),
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


#: the target volatilities ``grid`` tries by default (every one is published)
TARGETS = (0.05, 0.10, 0.15, 0.20)


def with_dsr(frame: pd.DataFrame, runs: list[dict[str, list[pd.Series]]]) -> pd.DataFrame:
    """``DSR`` beside each row's seed-ensemble Sharpe: deflated for every backtest tried in
    the study (each input x seed x target: ``runs``, one dict per target in row order)."""
    per_seed = [s for series in runs for values in series.values() for s in values]
    srs = [stats.sharpe(s.to_numpy()) for s in per_seed if len(s) > 2]
    finite = [v for v in srs if np.isfinite(v)]
    n_trials = max(1, len(finite))
    var = float(np.var(finite, ddof=1)) if len(finite) > 1 else 0.0
    dsr = []
    for series in runs:
        for values in series.values():
            ens = pd.concat(values, axis=1, join="inner").mean(axis=1).to_numpy()
            dsr.append(
                stats.deflated_sharpe_ratio(ens, n_trials=n_trials, sr_variance=var)
                if len(ens) > 2
                else np.nan
            )
    out = frame.copy()
    out["DSR"] = dsr
    out["DSR trials"] = n_trials
    return out


def grid(
    out: str,
    mtl_variant: str,
    architecture: str,
    seeds: int,
    targets: list[float] | tuple[float, ...] = TARGETS,
    frames=None,
) -> pd.DataFrame:
    """The study at every target of ``targets``: one table (``target_vol`` column), Holm over
    all of it, the DSR deflated for every input x seed x target tried. ``frames``: the
    compare's data already loaded (default: load it from its config)."""
    import json

    from mtl_bt import config as config_mod
    from mtl_bt import pipeline
    from mtl_bt.pipeline import torch_threads

    folder = Path(out)
    cfg = config_mod.load(folder / "config.toml")
    frames = pipeline.load_data(cfg) if frames is None else frames
    seed_list = [cfg.training.seed + k for k in range(seeds)]
    first = folder / "runs" / mtl_variant / f"seed_{seed_list[0]}" / "metrics.json"
    ppy = float(json.loads(first.read_text())["periods_per_year"])
    parts, runs = [], []
    with torch_threads(1):
        for t in targets:
            series, metrics = backtests(
                folder, mtl_variant, architecture, seed_list, frames, cfg, float(t)
            )
            part = table(series, metrics, ppy)
            part.insert(0, "target_vol", float(t))
            parts.append(part)
            runs.append(series)
    return with_dsr(with_holm(pd.concat(parts, ignore_index=True)), runs)


def main(
    out: str, mtl_variant: str, architecture: str, seeds: int, target_vol: float = 0.2
) -> pd.DataFrame:
    """The study at one target (``grid`` publishes a whole grid)."""
    return grid(out, mtl_variant, architecture, seeds, [target_vol])


def cli(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from mtl_bt.errors import UserError
    from mtl_bt.report.document import table_markdown

    parser = argparse.ArgumentParser(prog="python -m mtl_bt.compare.vol_managed")
    parser.add_argument("out", help="a finished mtl-bt compare folder")
    parser.add_argument("mtl_variant", help="e.g. shared_bottom+uncertainty")
    parser.add_argument("architecture", help="whose single-task volatility model, e.g. mmoe")
    parser.add_argument("seeds", type=int, help="seeds to use (training.seed, +1, ...)")
    parser.add_argument(
        "targets",
        nargs="?",
        default=",".join(f"{t:g}" for t in TARGETS),
        help="comma-separated target vols (default %(default)s)",
    )
    parser.add_argument("--csv", default=None, help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    try:
        targets = [float(t) for t in args.targets.split(",") if t.strip()]
    except ValueError:
        print(f"error: targets {args.targets!r} are not numbers, e.g. 0.05,0.1", file=sys.stderr)
        return 2
    if not targets or any(not t > 0 for t in targets):
        print(f"error: targets {args.targets!r} must be > 0, e.g. 0.05,0.1", file=sys.stderr)
        return 2
    try:
        frame = grid(args.out, args.mtl_variant, args.architecture, args.seeds, targets)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table_markdown(frame))
    if args.csv:
        from mtl_bt.report.io import write_csv

        write_csv(Path(args.csv), frame)
    return 0


if __name__ == "__main__":  # python -m mtl_bt.compare.vol_managed OUT MTL ARCH SEEDS [T1,T2,..]
    raise SystemExit(cli())
