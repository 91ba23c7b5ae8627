"""What every experiment shares: models trained on a *pool* of assets, scored per bar, paired.

An experiment compares *arms* (e.g. ``pooled`` vs ``own``) that differ only in the rows a
model trains on. Everything else is the config's: features, the single-task model of
``mtl-bt compare`` (``Variant.config``: same architecture, widths, epochs, early stopping,
and the MTL config's purge so every arm shares the folds), the walk-forward folds of the
*full* dataset, and the trainer (``training.train_fold``). A :class:`Pool` names the symbols
a model trains on and the symbols it forecasts; restricting the dataset's sample rows
(:func:`restrict`) keeps the time axis, so every pool gets the same folds, and the fold's
scaler is fitted on the pool's own training rows only.

Scores are out of sample only. Each task's headline metric is written as per-bar *terms*
whose mean over a (seed, asset, fold) cell is exactly that cell's metric
(:func:`metric_terms`), so the paired difference of two arms is a mean of per-bar
differences and its confidence interval can resample seeds and blocks of time together
(``stats.seed_time_bootstrap_mean``). :func:`paired_table` builds the table (one row per
task over all assets, then one per task and asset; Holm within each of the two families).
:func:`command` is the command line of an experiment.

A new experiment whose arms differ in the training rows is a :class:`Design` and
:func:`design_command`. One whose arms differ otherwise (e.g. the heads a model has) makes
its own forecasts as rows ``arm, seed, symbol, fold, pos, prediction, target`` and reuses
:func:`paired_terms`, :func:`paired_table`, :func:`write_results` and :func:`command`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from mtl_bt.config import Config
from mtl_bt.errors import ConfigError, DataError, UserError

#: direction of each supported headline metric (True: higher is better)
HIGHER_IS_BETTER = {"mse": False, "qlike": False, "rank_ic": True}
#: why a pool's fold model is not trained when its symbols have no bars in the training window
NO_ROWS = "no training or validation rows (no bars there yet)"
#: bootstrap draws of every interval
N_BOOT = 2000


@dataclass(frozen=True)
class Pool:
    """One model per fold: trained on the rows of ``train``, forecasting ``predict``.

    ``arm`` names the side of the comparison the forecasts belong to; in one run every
    (arm, symbol) is forecast by exactly one pool.
    """

    arm: str
    train: tuple[str, ...]
    predict: tuple[str, ...]


def load(config: str | Path, overrides: Sequence[str] = ()) -> Config:
    """CONFIG as ``mtl-bt run`` reads it (a TOML file or a shipped name) with ``--set``."""
    from mtl_bt.cli.configs import load_config

    return load_config(config, tuple(overrides))


def task_name(base: Config, kind: str) -> str:
    """``"volatility"`` -> the configured ``"volatility@<first horizon>"``; ConfigError
    when the config has no such task."""
    for tc in base.tasks:
        if tc.name == kind:
            return f"{kind}@{tc.horizons[0]}"
    raise ConfigError(
        f"this experiment needs a {kind!r} task in [[tasks]]; configured: {base.task_names()}"
    )


def single_task_config(
    base: Config, task: str, seed: int, *, asset_embedding: int | None = None
) -> Config:
    """The single-task model of ``mtl-bt compare`` for ``task`` and ``seed``
    (``Variant.config``), optionally with another ``model.asset_embedding``."""
    from mtl_bt.compare.variants import SINGLE_TASK, Variant, single_task_name

    arch = base.model.architecture
    variant = Variant(single_task_name(arch, task), SINGLE_TASK, arch, "equal", task=task)
    cfg = variant.config(base, seed)
    if asset_embedding is not None:
        model = cfg.model.model_copy(update={"asset_embedding": asset_embedding})
        cfg = cfg.model_copy(update={"model": model})
    return cfg


def check_symbols(base: Config, minimum: int) -> list[str]:
    symbols = list(base.data.symbols)
    if len(symbols) < minimum:
        raise ConfigError(
            f"[data] symbols has {len(symbols)} symbol(s); this experiment needs at least {minimum}"
        )
    return symbols


def restrict(ds: Any, symbols: Sequence[str]) -> Any:
    """``ds`` whose sample rows are those of ``symbols`` only (same axis, same folds)."""
    ids = [ds.symbols.index(s) for s in symbols]
    keep = np.isin(ds.asset[ds.samples], ids)
    return dataclasses.replace(ds, samples=ds.samples[keep])


@dataclass
class PoolRun:
    """Out-of-sample forecasts of every pool: one row per (arm, fold, symbol, bar).

    ``models``: ``(fold, pool index) -> state_dict`` when asked (``keep_models``);
    ``skipped``: the (fold, pool) models not trained, and why (e.g. a symbol with no bars
    yet in an early fold's training window: FB in the stocks sample before 2012)."""

    predictions: pd.DataFrame
    models: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)


def train_pools(
    config: Config,
    frames: Mapping[str, pd.DataFrame],
    pools: Sequence[Pool],
    *,
    keep_models: bool = False,
    log: Callable[[str], None] | None = None,
) -> PoolRun:
    """Per walk-forward fold of ``config`` (one task), one model per pool, trained by the
    real trainer on the pool's training rows (its scaler fitted on them), forecasting the
    pool's ``predict`` symbols on the fold's test window.

    Columns: ``arm, fold, symbol, datetime, pos`` (the bar's position on the shared time
    axis), ``prediction``, ``target``.
    """
    import torch

    from mtl_bt.pipeline import torch_threads
    from mtl_bt.training import build_components, make_batches, predict_raw, splits_for
    from mtl_bt.training import train_fold as fit_fold
    from mtl_bt.training.dataset import cached_dataset
    from mtl_bt.training.guards import check_causal

    t0 = time.perf_counter()
    comp = build_components(config)
    check_causal(comp.feature_spec, comp.tasks, frames)
    (task,) = comp.tasks
    parts: list[pd.DataFrame] = []
    models: dict[tuple[int, int], dict[str, Any]] = {}
    skipped: list[str] = []
    with torch_threads(config.training.threads):
        ds = cached_dataset(frames, comp.feature_spec, comp.tasks, comp.lookback)
        for split in splits_for(config, ds):
            for k, pool in enumerate(pools):
                train_ds = restrict(ds, pool.train)
                rows = restrict(ds, pool.predict).rows_in(
                    split.test_start, split.test_end, trainable=False
                )
                why = _nothing_to_do(train_ds, split, rows)
                if why:
                    skipped.append(f"fold {split.fold} {pool.arm} {'+'.join(pool.train)}: {why}")
                    continue
                model, _, fd = fit_fold(config, comp, train_ds, split)
                batches = make_batches(fd.scaled, rows, ds.asset, None, ds.lookback)
                with torch.no_grad():
                    pred = predict_raw(model, comp.tasks, batches)[task.name]
                parts.append(
                    pd.DataFrame(
                        {
                            "arm": pool.arm,
                            "fold": split.fold,
                            "symbol": np.asarray(ds.symbols, dtype=object)[ds.asset[rows]],
                            "datetime": pd.DatetimeIndex(ds.times[rows], tz="UTC"),
                            "pos": ds.pos[rows],
                            "prediction": pred,
                            "target": ds.targets[rows, 0].astype(np.float64),
                        }
                    )
                )
                if keep_models:
                    models[(split.fold, k)] = {
                        n: v.detach().clone() for n, v in model.state_dict().items()
                    }
            if log is not None:
                log(f"{task.name} seed {config.training.seed}: fold {split.fold} done")
    if not parts:
        raise DataError(f"{task.name}: no pool could be trained on any fold ({skipped[:3]})")
    frame = pd.concat(parts, ignore_index=True)
    return PoolRun(frame, models, time.perf_counter() - t0, skipped)


def _nothing_to_do(ds: Any, split: Any, test_rows: np.ndarray) -> str:
    """Why a pool's fold model is not trained ("" when it is): no bars to forecast, or no
    training / validation rows (the trainer needs both)."""
    if len(test_rows) == 0:
        return "no bars to forecast in the test window"
    fit = ds.rows_in(split.train_start, split.fit_end, trainable=True, label_before=split.val_start)
    val = ds.rows_in(
        split.val_start, split.train_end, trainable=True, label_before=split.test_start
    )
    if len(fit) == 0 or len(val) == 0:
        return NO_ROWS
    return ""


def metric_terms(
    metric: str, prediction: np.ndarray, target: np.ndarray, floor: float | None = None
) -> np.ndarray:
    """Per-bar terms whose mean is ``metric`` on these pairs (NaN where a pair is unusable).

    ``qlike`` (a volatility forecast, compared as variances): ``s/h - log(s/h) - 1``, both
    volatilities raised to ``floor`` first as the volatility task's own metric does.
    ``mse``: the squared error.
    ``rank_ic``: the product of the standardised ranks of prediction and target (population
    standard deviation), whose mean is their Pearson correlation, i.e. Spearman's rank IC.
    Resampling these terms keeps the ranks fixed at the cell's: a first-order
    (influence-function) view of the rank IC's sampling error.
    """
    p = np.asarray(prediction, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    if metric == "qlike":
        if floor is not None:
            p, y = np.maximum(p, floor), np.maximum(y, floor)  # NaN stays NaN
        h, s = p**2, y**2
        ok = np.isfinite(h) & np.isfinite(s) & (h > 0) & (s > 0)
        ratio = s[ok] / h[ok]
        out[ok] = ratio - np.log(ratio) - 1.0
        return out
    if metric == "mse":  # squared error: its mean is the MSE (the return task's loss)
        return (p - y) ** 2
    if metric == "rank_ic":
        from mtl_bt.metrics.prediction import rankdata

        ok = np.isfinite(p) & np.isfinite(y)
        if ok.sum() < 2:
            return out
        rp, ry = rankdata(p[ok]), rankdata(y[ok])
        sp, sy = rp.std(), ry.std()
        if not (sp > 0 and sy > 0):
            return out
        out[ok] = (rp - rp.mean()) / sp * (ry - ry.mean()) / sy
        return out
    raise ConfigError(
        f"no per-bar form of the metric {metric!r}; known: {sorted(HIGHER_IS_BETTER)}"
    )


def headline_metric(config: Config) -> tuple[str, float | None]:
    """The headline metric of ``config``'s one task (``Task.headline_metric``) and the
    task's ``floor`` option (the volatility task scores forecasts raised to it)."""
    from mtl_bt.tasks import build_tasks

    (task,) = build_tasks(config.tasks)
    metric = getattr(task, "headline_metric", None)
    if metric not in HIGHER_IS_BETTER:
        raise ConfigError(
            f"task {task.name!r}: its headline metric {metric!r} has no per-bar form; "
            f"experiments support {sorted(HIGHER_IS_BETTER)}"
        )
    floor = task.spec.options.get("floor")
    return str(metric), None if floor is None else float(floor)


def paired_terms(
    predictions: pd.DataFrame, metric: str, arms: tuple[str, str], floor: float | None = None
) -> pd.DataFrame:
    """Per-bar metric terms of both arms on the bars both forecast.

    ``predictions``: :func:`train_pools` rows with a ``seed`` column. Terms are computed per
    (seed, symbol, fold) cell and arm; rows: ``seed, symbol, fold, pos, a, b`` (a, b: the
    arms' terms).
    """
    a, b = arms
    keys = ["seed", "symbol", "fold", "pos"]
    wide = predictions.pivot_table(index=keys, columns="arm", values="prediction", aggfunc="first")
    missing = [arm for arm in arms if arm not in wide.columns]
    if missing:
        raise ValueError(f"no forecasts of arm(s) {missing}")
    target = predictions.drop_duplicates(keys).set_index(keys)["target"]
    wide = wide[[a, b]].join(target).dropna(subset=[a, b]).reset_index()
    out = []
    for _, cell in wide.groupby(["seed", "symbol", "fold"], sort=True):
        y = cell["target"].to_numpy()
        out.append(
            cell[keys].assign(
                a=metric_terms(metric, cell[a].to_numpy(), y, floor),
                b=metric_terms(metric, cell[b].to_numpy(), y, floor),
            )
        )
    return pd.concat(out, ignore_index=True)


def cells(terms: pd.DataFrame) -> pd.DataFrame:
    """Each (seed, symbol, fold) cell's metric per arm (mean of its terms) and a - b."""
    grouped = terms.groupby(["seed", "symbol", "fold"], sort=True)
    out = grouped[["a", "b"]].mean().reset_index()
    out["n"] = grouped["a"].count().to_numpy()
    out["diff"] = out["a"] - out["b"]
    return out


def bootstrap_diff(terms: pd.DataFrame, horizon: int, seed: int = 0) -> Any:
    """``stats.seed_time_bootstrap_mean`` of the per-bar differences a - b: seeds drawn
    with replacement, time by circular blocks of max(2 x horizon, n^(1/3)) bars shared by
    every seed and symbol (a target spans ``horizon`` bars, so neighbouring terms overlap)."""
    from mtl_bt.stats import seed_time_bootstrap_mean

    d = terms.assign(d=terms["a"] - terms["b"]).dropna(subset=["d"])
    seeds = sorted(d["seed"].unique())
    symbols = sorted(d["symbol"].unique())
    lo, hi = int(d["pos"].min()), int(d["pos"].max())
    n = hi - lo + 1
    cube = np.full((len(seeds), len(symbols), n), np.nan)
    cube[
        d["seed"].map({s: i for i, s in enumerate(seeds)}).to_numpy(),
        d["symbol"].map({s: i for i, s in enumerate(symbols)}).to_numpy(),
        d["pos"].to_numpy() - lo,
    ] = d["d"].to_numpy()
    block = min(n, max(2 * horizon, round(n ** (1 / 3))))
    return seed_time_bootstrap_mean(cube, n_boot=N_BOOT, block=block, seed=seed)


def verdict(low: float, high: float, p_holm: float, a: str, b: str, higher: bool) -> str:
    """Plain words for one row: which arm the interval favours, else no evidence."""
    if not (math.isfinite(low) and math.isfinite(high)) or (low <= 0 <= high):
        return "no evidence either way"
    a_better = (low > 0) == higher
    winner = a if a_better else b
    if not (p_holm <= 0.05):
        return f"{winner} better, not after Holm"
    return f"{winner} better"


def paired_table(
    results: Sequence[tuple[str, str, int, pd.DataFrame]],
    arms: tuple[str, str],
    symbols: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per task over every symbol, then one per (task, symbol) in ``symbols``'
    order (default: sorted).

    ``results``: ``(task, metric, horizon, terms)`` with ``terms`` from
    :func:`paired_terms`. ``diff`` is ``arms[0] - arms[1]`` of the metric (row-weighted mean
    over cells); ``low``/``high`` its 95% seed-and-time bootstrap interval, ``p`` the
    two-sided bootstrap p-value, ``p_holm`` Holm-adjusted within the family (the task rows
    over all symbols are one family, the per-symbol rows another); ``cells_a_better`` the
    share of (seed, symbol, fold) cells where ``arms[0]`` scored better.
    """
    from mtl_bt.stats import holm

    a, b = arms
    rows = []
    for task, metric, horizon, terms in results:
        by_symbol = dict(tuple(terms.groupby("symbol")))
        order = [s for s in (symbols or sorted(by_symbol)) if s in by_symbol]
        scopes = [("all", terms)] + [(str(s), by_symbol[s]) for s in order]
        for scope, part in scopes:
            c = cells(part)
            ci = bootstrap_diff(part, horizon)
            higher = HIGHER_IS_BETTER[metric]
            better = (c["diff"] > 0) if higher else (c["diff"] < 0)
            rows.append(
                {
                    "task": task,
                    "metric": metric,
                    "symbol": scope,
                    a: float(part["a"].mean()),
                    b: float(part["b"].mean()),
                    "diff": ci.diff,
                    "low": ci.low,
                    "high": ci.high,
                    "p": ci.p_value,
                    "seeds": int(part["seed"].nunique()),
                    "cells": len(c),
                    "cells_a_better": float(better.mean()),
                    "better_when": "higher" if higher else "lower",
                }
            )
    table = pd.DataFrame(rows)
    table["p_holm"] = np.nan
    for family in (table["symbol"] == "all", table["symbol"] != "all"):
        if family.any():
            table.loc[family, "p_holm"] = holm(table.loc[family, "p"].to_numpy())
    table["verdict"] = [
        verdict(r.low, r.high, r.p_holm, a, b, HIGHER_IS_BETTER[r.metric])
        for r in table.itertuples()
    ]
    return table


def markdown(table: pd.DataFrame) -> str:
    """The table as markdown (``report.document``'s cells; p-values and shares to 3 d.p.,
    a p-value of 0 as "<0.001": with 2000 draws the bootstrap cannot resolve less)."""
    from mtl_bt.report.document import table_markdown

    shown = table.copy()
    for col in ("p", "p_holm", "cells_a_better"):
        shown[col] = shown[col].round(3)
    for col in ("p", "p_holm"):  # a bootstrap p-value of 0 means below its resolution
        shown[col] = shown[col].astype(object).where(shown[col] != 0, f"<{2 / N_BOOT:g}")
    return table_markdown(shown) + "\n"


def write_results(
    out: Path, table: pd.DataFrame, terms: pd.DataFrame, predictions: pd.DataFrame, head: str
) -> str:
    """Write ``table.csv``, ``table.md`` (``head`` + the table), ``cells.csv`` and
    ``predictions.parquet`` into ``out`` (each atomically); returns the markdown."""
    from mtl_bt.atomic import atomic_write, write_text

    text = head.rstrip() + "\n\n" + markdown(table)
    atomic_write(out / "table.csv", lambda p: table.to_csv(p, index=False))
    write_text(out / "table.md", text)
    cell_rows = pd.concat(
        [cells(t).assign(task=task) for task, t in terms.groupby("task", sort=False)],
        ignore_index=True,
    )
    atomic_write(out / "cells.csv", lambda p: cell_rows.to_csv(p, index=False))
    atomic_write(out / "predictions.parquet", lambda p: predictions.to_parquet(p, index=False))
    return text


@dataclass(frozen=True)
class Design:
    """What distinguishes one experiment: its arms, the task kinds it scores, the pools of
    every (seed, task) and the model's asset embedding (``None``: the config's)."""

    name: str
    arms: tuple[str, str]
    tasks: tuple[str, ...]
    pools: Callable[[list[str]], list[Pool]]
    asset_embedding: int | None = None
    min_symbols: int = 2
    title: str = ""
    #: refuse features that read other symbols (a held-out asset would reach training)
    own_features_only: bool = False


def check(design: Design, base: Config) -> list[str]:
    """Validate ``base`` for ``design`` before any data is read; returns the task names."""
    from mtl_bt.training import build_components

    check_symbols(base, design.min_symbols)
    names = [task_name(base, kind) for kind in design.tasks]
    for name in names:
        cfg = single_task_config(
            base, name, base.training.seed, asset_embedding=design.asset_embedding
        )
        comp = build_components(cfg)  # plugin names and options
        headline_metric(cfg)
        reads = sorted(comp.feature_spec.reads())
        if design.own_features_only and reads:
            raise ConfigError(
                f"{design.name}: the features {reads} read other symbols, so a held-out "
                "asset would reach the training rows through them; remove them from "
                "[features] names"
            )
    return names


def run_design(
    design: Design, base: Config, seeds: Sequence[int], out: Path, log: Callable[[str], None]
) -> str:
    """Train every (task, seed) of ``design`` on ``base``'s data, pair the arms, write the
    files (:func:`write_results`) and return the markdown table with its heading."""
    from mtl_bt.pipeline import load_data

    names = check(design, base)
    frames = load_data(base)
    symbols = list(frames)
    pools = design.pools(symbols)
    results, preds, seconds = [], [], {}
    skipped: dict[str, None] = {}  # ordered set: the same folds are skipped for every seed
    for name in names:
        t0 = time.perf_counter()
        parts = []
        for seed in seeds:
            cfg = single_task_config(base, name, seed, asset_embedding=design.asset_embedding)
            run = train_pools(cfg, frames, pools, log=log)
            parts.append(run.predictions.assign(seed=seed, task=name))
            skipped.update(dict.fromkeys(f"{name} {why}" for why in run.skipped))
        frame = pd.concat(parts, ignore_index=True)
        metric, floor = headline_metric(cfg)
        terms = paired_terms(frame, metric, design.arms, floor).assign(task=name)
        results.append((name, metric, int(name.rpartition("@")[2]), terms))
        preds.append(frame)
        seconds[name] = time.perf_counter() - t0
        log(f"{design.name}: {name} done in {seconds[name]:.0f}s")
    table = paired_table(results, design.arms, symbols)
    a, b = design.arms
    head = (
        f"## {design.title or design.name}\n\n"
        f"{len(seeds)} seeds ({seeds[0]}..{seeds[-1]}), symbols {', '.join(symbols)}; "
        f"diff = {a} - {b}; 95% intervals resample seeds and blocks of time; "
        "training time " + ", ".join(f"{n} {s / 60:.1f} min" for n, s in seconds.items()) + "."
    )
    if skipped:
        head += " Not trained (their bars are unpaired): " + "; ".join(skipped) + "."
    terms = pd.concat([r[3] for r in results], ignore_index=True)
    return write_results(out, table, terms, pd.concat(preds, ignore_index=True), head)


class _OneLineErrors(click.Command):
    """A ``UserError`` prints as one ``Error:`` line with exit code 2, as in ``mtl-bt``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)


def command(
    name: str,
    doc: str,
    validate: Callable[[Config], Any],
    run: Callable[[Config, list[int], Path, Callable[[str], None]], str],
) -> click.Command:
    """``python -m mtl_bt.experiments.<name> CONFIG --seeds N --out DIR [--set K=V]``.

    ``validate(base)`` runs before DIR is touched (a ``UserError`` is one line, exit 2);
    ``run(base, seeds, staging, log)`` writes its files into ``staging`` (one run owns DIR:
    ``rundir.owned``) and returns the markdown to print. Seeds are ``training.seed`` ..
    ``training.seed + N - 1``. :func:`design_command` is this for a :class:`Design`.
    """

    @click.command(name=name, cls=_OneLineErrors, help=doc)
    @click.argument("config", type=click.Path(dir_okay=False))
    @click.option("--seeds", type=click.IntRange(min=1), default=10, show_default=True)
    @click.option("--out", required=True, type=click.Path(file_okay=False), help="output folder")
    @click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set training.epochs=3 (repeatable)",
    )
    @click.option("--quiet", is_flag=True, help="no progress messages")
    @click.option("--force", is_flag=True, help="replace a non-empty folder that is not a run")
    def main(
        config: str, seeds: int, out: str, overrides: tuple[str, ...], quiet: bool, force: bool
    ) -> None:
        from mtl_bt import rundir

        base = load(config, overrides)
        validate(base)
        t0 = time.perf_counter()
        first = base.training.seed
        say = (lambda _m: None) if quiet else (lambda m: click.echo(m, err=True))
        with rundir.owned(out, kind=f"experiment:{name}", config=base, force=force) as staging:
            text = run(base, list(range(first, first + seeds)), staging, say)
        click.echo(text, nl=False)
        click.echo(f"\n{name}: {time.perf_counter() - t0:.0f}s; files in {out}/", err=True)

    return main


def design_command(design: Design, doc: str) -> click.Command:
    """:func:`command` for a pool :class:`Design` (:func:`check`, :func:`run_design`)."""
    return command(
        design.name,
        doc,
        lambda base: check(design, base),
        lambda base, seeds, out, log: run_design(design, base, seeds, out, log),
    )
