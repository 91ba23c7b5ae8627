"""Do auxiliary multi-horizon return heads help the main horizon? (Qlib's TCTS claim)

Wu et al., "Temporally Correlated Task Scheduling for Sequence Learning" (ICML 2021) train
a return forecaster with auxiliary return labels at other horizons (Qlib's MTL baseline:
1-, 2- and 3-day returns, the 1-day one the main task) and report a better main-task IC than
the single-task network. This experiment tests the part of that claim that needs no learned
scheduler: fixed-weight auxiliary heads versus the main head alone, on the bundled data.

Variants, trained by the real walk-forward trainer (``mtl_bt.compare.jobs.train_fold``, one
job per fold, run by ``mtl_bt.compare.executor.run_jobs``), with the *same* architecture,
widths, epochs, early stopping, features, folds (both purged by the largest horizon) and
seeds:

- ``single``: one head, ``return@<main>`` (``training.single_task`` of the config below);
- ``aux_<w>``: heads ``return@<main>`` and ``return@<h>`` for each auxiliary h, weighted by
  ``w`` (the config's weighting scheme by default; ``equal`` is fixed equal weights).

The main head's out-of-sample rank IC and MSE are compared per (seed, asset, fold) and pooled;
intervals resample seeds and blocks of time together (``seed_time_mean_ci``), and Holm's
correction runs over every test of the table (``mtl_bt.stats.holm``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from mtl_bt.config import Config, TaskConfig, WeightingConfig
from mtl_bt.errors import UserError

SINGLE = "single"
#: the auxiliary horizons of Qlib's TCTS/MTL benchmark configs (1-, 2-, 3-bar returns)
DEFAULT_AUX = (1, 2, 3)
JOB_FN = "mtl_bt.compare.jobs:train_fold"


class ExperimentError(UserError):
    """Bad arguments of an experiment (exit code 2 on the command line)."""


@dataclass(frozen=True)
class Setup:
    """What is compared: the main return horizon, the auxiliary ones, the aux weightings."""

    main: int
    aux: tuple[int, ...]
    weightings: tuple[str, ...]

    @property
    def main_task(self) -> str:
        return f"return@{self.main}"

    @property
    def purge(self) -> int:
        """Both variants' folds are purged by the largest horizon of either."""
        return max(self.main, *self.aux)


def aux_name(weighting: str) -> str:
    return f"aux_{weighting}"


def default_main(base: Config) -> int:
    """The return horizon the config's rule trades, else its first return horizon."""
    from mtl_bt.compare.variants import traded_return

    try:
        return int(traded_return(base).partition("@")[2])
    except UserError:
        for task in base.tasks:
            if task.name == "return":
                return int(task.horizons[0])
    raise ExperimentError(
        "the config has no 'return' task; give the main horizon with --main H (e.g. --main 24)"
    )


def make_setup(
    base: Config, main: int | None, aux: Sequence[int] | None, weightings: Sequence[str] | None
) -> Setup:
    """Validated setup; defaults: the traded return horizon, aux 1/2/3 (minus the main one),
    the config's weighting. Unknown weightings and bad horizons fail here, before any work."""
    from mtl_bt import registry

    main = default_main(base) if main is None else int(main)
    if main < 1:
        raise ExperimentError(f"--main {main}: the main horizon must be >= 1 bar")
    if aux is None:
        aux_t = tuple(h for h in DEFAULT_AUX if h != main)
    else:
        aux_t = tuple(dict.fromkeys(int(h) for h in aux))
        bad = [h for h in aux_t if h < 1 or h == main]
        if bad:
            raise ExperimentError(
                f"--aux {','.join(map(str, aux))}: auxiliary horizons must be >= 1 and differ "
                f"from the main horizon {main} (got {bad[0]})"
            )
    if not aux_t:
        raise ExperimentError("--aux names no auxiliary horizon; give e.g. --aux 1,2,3")
    names = tuple(dict.fromkeys(weightings or (base.weighting.name,)))
    for name in names:
        registry.get("weighting", name)  # unknown: the registry's "did you mean" error
    return Setup(main, aux_t, names)


def variant_configs(base: Config, setup: Setup) -> dict[str, Config]:
    """``single`` and one ``aux_<w>`` config per weighting; everything else is the base's.

    The return task keeps the base's options (loss, scale); other tasks are dropped, so the
    question is only "do other return horizons help". ``single`` is
    ``training.single_task`` of the multi-horizon config, so the two cannot drift apart.
    """
    from mtl_bt.training import single_task

    options = next((dict(t.options) for t in base.tasks if t.name == "return"), {})
    task = TaskConfig(name="return", horizons=[setup.main, *setup.aux], options=options)
    wf = base.walk_forward.model_copy(update={"purge_bars": setup.purge})
    multi = base.model_copy(update={"tasks": [task], "walk_forward": wf}, deep=True)
    out = {SINGLE: single_task(multi, setup.main_task)}
    for name in setup.weightings:
        if name == base.weighting.name:
            weighting = base.weighting.model_copy(deep=True)
        else:
            weighting = WeightingConfig(name=name)
        out[aux_name(name)] = multi.model_copy(update={"weighting": weighting}, deep=True)
    for cfg in out.values():  # plugins and options are built now: a typo fails before training
        from mtl_bt.training import build_components

        build_components(cfg)
    return out


def seeded(cfg: Config, seed: int) -> Config:
    training = cfg.training.model_copy(update={"seed": seed})
    return cfg.model_copy(update={"training": training})


def job_dir(out: Path, variant: str, seed: int, fold: int) -> Path:
    return out / "runs" / variant / f"seed_{seed:03d}" / f"fold_{fold:03d}"


def plan_jobs(configs: dict[str, Config], seeds: Sequence[int], folds: Sequence[int], out: Path):
    """One ``train_fold`` job per (variant, seed, fold), as ``mtl-bt compare`` runs them."""
    from mtl_bt.compare.executor import Job

    return [
        Job(
            name=f"{variant}/seed_{seed}/fold_{fold}",
            fn=JOB_FN,
            params={"config": seeded(cfg, seed).model_dump(mode="json"), "fold": fold},
            out_dir=job_dir(out, variant, seed, fold),
        )
        for variant, cfg in configs.items()
        for seed in seeds
        for fold in folds
    ]


def collect(
    out: Path, variants: Sequence[str], seeds: Sequence[int], folds: Sequence[int], task: str
) -> pd.DataFrame:
    """Main-head predictions of every job: variant, seed, datetime, symbol, fold, pred, target."""
    parts = []
    for variant in variants:
        for seed in seeds:
            for fold in folds:
                path = job_dir(out, variant, seed, fold) / "predictions.parquet"
                frame = pd.read_parquet(
                    path, columns=["datetime", "symbol", "fold", task, f"target_{task}"]
                )
                frame = frame.rename(columns={task: "pred", f"target_{task}": "target"})
                parts.append(frame.assign(variant=variant, seed=seed))
    return pd.concat(parts, ignore_index=True)


def paired(preds: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Rows both variants predicted for the same (seed, datetime, symbol, fold) with a finite
    target: columns pred_a, pred_b, target. The targets must agree (same data, same task)."""
    key = ["seed", "datetime", "symbol", "fold"]
    left = preds[preds["variant"] == a][[*key, "pred", "target"]]
    right = preds[preds["variant"] == b][[*key, "pred", "target"]]
    both = left.merge(right, on=key, suffixes=("_a", "_b"), validate="one_to_one")
    ta, tb = both["target_a"].to_numpy(), both["target_b"].to_numpy()
    if not np.allclose(ta, tb, equal_nan=True, rtol=0, atol=1e-12):
        raise RuntimeError(f"variants {a} and {b} disagree on the main target; rerun them")
    both = both[np.isfinite(ta)].rename(columns={"target_a": "target"}).drop(columns="target_b")
    return both.sort_values(key, ignore_index=True)


def contributions(both: pd.DataFrame) -> pd.DataFrame:
    """Per row, what each variant adds to its cell's metrics (cell = seed, symbol, fold):
    ``u_a``/``u_b`` = product of standardised ranks of forecast and target, whose cell mean
    *is* the cell's rank IC (Spearman = Pearson on average ranks, population s.d.), and
    ``e_a``/``e_b`` = squared error, whose cell mean is the MSE. A constant forecast has no
    ranking: its rows add 0 (rank IC 0)."""
    cell = ["seed", "symbol", "fold"]
    g = both.groupby(cell, sort=False)

    def z(col: str) -> pd.Series:
        r = g[col].rank(method="average")
        rg = r.groupby([both[c] for c in cell], sort=False)
        sd = rg.transform(lambda x: x.std(ddof=0))
        return ((r - rg.transform("mean")) / sd).where(sd > 0, 0.0)

    zy = z("target")
    out = both[[*cell, "datetime"]].copy()
    out["y2"] = both["target"] ** 2  # the squared error of forecasting 0 (a reference MSE)
    for side in ("a", "b"):
        out[f"u_{side}"] = z(f"pred_{side}") * zy
        out[f"e_{side}"] = (both[f"pred_{side}"] - both["target"]) ** 2
    return out


def cell_table(contrib: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Rank IC and MSE of both variants per (seed, symbol, fold), and their differences."""
    g = contrib.groupby(["seed", "symbol", "fold"], sort=True)
    cells = g[["u_a", "u_b", "e_a", "e_b"]].mean()
    cells.columns = [f"rank_ic_{a}", f"rank_ic_{b}", f"mse_{a}", f"mse_{b}"]
    cells["n"] = g.size()
    cells["d_rank_ic"] = cells[f"rank_ic_{b}"] - cells[f"rank_ic_{a}"]
    cells["d_mse"] = cells[f"mse_{b}"] - cells[f"mse_{a}"]
    return cells.reset_index()


@dataclass(frozen=True)
class MeanCI:
    estimate: float
    low: float
    high: float
    p_value: float
    n_seeds: int
    n_times: int
    block: int


def seed_time_mean_ci(
    sums: np.ndarray,
    counts: np.ndarray,
    *,
    block: int,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> MeanCI:
    """Mean of a paired difference over seeds and bars, with a bootstrap interval that
    resamples seeds *and* circular blocks of time together.

    ``sums`` (k seeds, n times): the per-time sum of the differences over assets;
    ``counts`` (n,): how many assets contribute at each time (the same for every seed).
    The estimate is the mean over seeds of the per-seed mean over (time, asset). A replicate
    draws k seeds with replacement and one block-resampled time axis, so the interval holds
    the training-seed variance and the sampling variance over time; assets at the same time
    stay together (their cross-correlation is kept). p-value: two-sided, how often the
    replicates cross 0.
    """
    s = np.atleast_2d(np.asarray(sums, dtype=float))
    c = np.asarray(counts, dtype=float)
    k, n = s.shape
    if c.shape != (n,) or not (np.all(np.isfinite(s)) and np.all(np.isfinite(c))):
        raise ValueError("sums (seeds, times) and counts (times,) must be finite and aligned")
    if n < 2 or c.sum() <= 0:
        raise ValueError("need at least 2 times with data")
    block = int(min(max(1, block), n))
    estimate = float(s.sum() / (k * c.sum()))
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    n_blocks = -(-n // block)
    chunk = max(1, 4_000_000 // n)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        weights = rng.multinomial(k, np.full(k, 1.0 / k), size=m) / k  # (m, k) seed draws
        starts = rng.integers(0, n, size=(m, n_blocks))
        idx = ((starts[:, :, None] + np.arange(block)) % n).reshape(m, -1)[:, :n]
        per_time = weights @ s  # (m, n): the drawn seeds' mean sum at each time
        num = np.take_along_axis(per_time, idx, axis=1).sum(axis=1)
        draws[start : start + m] = num / c[idx].sum(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    p = min(1.0, 2.0 * min((draws <= 0).mean(), (draws >= 0).mean()))
    return MeanCI(estimate, float(low), float(high), float(p), k, n, block)


def _by_time(
    contrib: pd.DataFrame, col: str, seeds: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, times) sums over assets of ``col`` and the (times,) asset counts."""
    table = contrib.pivot_table(index="datetime", columns="seed", values=col, aggfunc="sum")
    table = table.reindex(columns=list(seeds))
    counts = contrib[contrib["seed"] == seeds[0]].groupby("datetime").size()
    counts = counts.reindex(table.index)
    if table.isna().to_numpy().any() or counts.isna().any():
        raise RuntimeError("seeds cover different bars; rerun the experiment")
    return table.to_numpy().T, counts.to_numpy()


def compare_rows(
    contrib: pd.DataFrame,
    seeds: Sequence[int],
    a: str,
    b: str,
    *,
    block: int,
    n_boot: int,
    scopes: Sequence[str | None],
) -> list[dict[str, Any]]:
    """One row per (metric, scope): both variants' means, the paired difference b - a, its
    seed x time interval and p-value, and in how many seeds b did better."""
    rows = []
    for scope in scopes:
        part = contrib if scope is None else contrib[contrib["symbol"] == scope]
        for metric, col, better in (("rank_ic", "u", 1.0), ("mse", "e", -1.0)):
            part = part.assign(d=part[f"{col}_b"] - part[f"{col}_a"])
            sums, counts = _by_time(part, "d", seeds)
            ci = seed_time_mean_ci(sums, counts, block=block, n_boot=n_boot)
            per_seed = sums.sum(axis=1) / counts.sum()
            rows.append(
                {
                    "comparison": f"{b} - {a}",
                    "metric": metric,
                    "scope": scope or "all assets",
                    a: float(part[f"{col}_a"].mean()),
                    b: float(part[f"{col}_b"].mean()),
                    "zero_forecast": float(part["y2"].mean()) if metric == "mse" else math.nan,
                    "diff": ci.estimate,
                    "ci_low": ci.low,
                    "ci_high": ci.high,
                    "p": ci.p_value,
                    "seeds_better": int((better * per_seed > 0).sum()),
                    "n_seeds": ci.n_seeds,
                    "n_bars": ci.n_times,
                    "block": ci.block,
                }
            )
    return rows


def verdict(row: dict[str, Any], alpha: float = 0.05) -> str:
    """Plain words for one test; 'better' follows the metric (higher rank IC, lower MSE)."""
    if not (row["ci_low"] > 0 or row["ci_high"] < 0):
        return "no evidence either way"
    helps = (row["diff"] > 0) == (row["metric"] == "rank_ic")
    word = "aux heads better" if helps else "aux heads worse"
    return word if row["p_holm"] <= alpha else f"{word} (nominal; not after Holm)"


def analyse(
    preds: pd.DataFrame, setup: Setup, seeds: Sequence[int], *, block: int | None, n_boot: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tests, cells): the table of tests (Holm over all its rows) and the per-cell table."""
    from mtl_bt.stats import holm

    rows: list[dict[str, Any]] = []
    cells = []
    for name in setup.weightings:
        b = aux_name(name)
        contrib = contributions(paired(preds, SINGLE, b))
        cells.append(cell_table(contrib, SINGLE, b).assign(comparison=f"{b} - {SINGLE}"))
        n_times = contrib["datetime"].nunique()
        blk = block or max(2 * setup.main, round(n_times ** (1 / 3)))
        symbols = sorted(contrib["symbol"].unique())
        rows += compare_rows(
            contrib, seeds, SINGLE, b, block=blk, n_boot=n_boot, scopes=[None, *symbols]
        )
    tests = pd.DataFrame(rows)
    tests["p_holm"] = holm(tests["p"].to_numpy())
    tests["verdict"] = [verdict(r) for r in tests.to_dict("records")]
    return tests, pd.concat(cells, ignore_index=True)


def _num(x: float, metric: str) -> str:
    if not math.isfinite(x):
        return "nan"
    return f"{x:+.4f}" if metric == "rank_ic" else f"{x:+.3e}"


def markdown(tests: pd.DataFrame, setup: Setup) -> str:
    """The table of tests as Markdown (pooled rows first, then per asset)."""
    head = (
        f"Main head `{setup.main_task}`; auxiliary heads "
        f"{', '.join(f'`return@{h}`' for h in setup.aux)}. Difference = aux - single "
        "(rank IC: higher is better; MSE: lower is better); 95% interval resampling seeds and "
        "time blocks; Holm over every row; 0-forecast: the MSE of forecasting a zero return.\n\n"
        "| comparison | metric | assets | single | aux | 0-forecast | diff [95% CI] | p | p Holm | "
        "seeds better | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in tests.to_dict("records"):
        aux_col = r["comparison"].split(" - ")[0]
        m = r["metric"]
        lines.append(
            f"| {r['comparison']} | {m} | {r['scope']} | {_num(r[SINGLE], m)} | "
            f"{_num(r[aux_col], m)} | {_num(r['zero_forecast'], m) if m == 'mse' else ''} | "
            f"{_num(r['diff'], m)} [{_num(r['ci_low'], m)}, "
            f"{_num(r['ci_high'], m)}] | {r['p']:.3f} | {r['p_holm']:.3f} | "
            f"{r['seeds_better']}/{r['n_seeds']} | {r['verdict']} |"
        )
    return head + "\n".join(lines) + "\n"


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    from mtl_bt.atomic import write_text

    write_text(path, frame.to_csv(index=False))


def run(
    base: Config,
    setup: Setup,
    *,
    seeds: Sequence[int],
    out: Path,
    workers: int = 2,
    block: int | None = None,
    n_boot: int = 2000,
    log=None,
) -> pd.DataFrame:
    """Train every (variant, seed, fold) (finished jobs are skipped on a re-run), then write
    ``tests.csv``, ``tests.md``, ``cells.csv`` and ``summary.json`` to ``out``."""
    from mtl_bt.atomic import write_text
    from mtl_bt.compare.executor import run_jobs
    from mtl_bt.pipeline import load_data
    from mtl_bt.training.pipeline import fold_numbers

    t0 = time.perf_counter()
    configs = variant_configs(base, setup)
    frames = load_data(base)
    folds = {name: fold_numbers(cfg, frames) for name, cfg in configs.items()}
    if len({tuple(f) for f in folds.values()}) != 1:  # same purge and data: cannot differ
        raise RuntimeError(f"variants have different folds: {folds}")
    fold_list = folds[SINGLE]
    jobs = plan_jobs(configs, seeds, fold_list, out)
    done = [0]

    def on_done(result) -> None:
        done[0] += 1
        if log is not None:
            state = "skipped" if result.skipped else ("ok" if result.ok else "FAILED")
            log(f"[{done[0]}/{len(jobs)}] {result.name} {state} ({result.seconds:.1f} s)")

    results = run_jobs(jobs, shared={"frames": frames}, workers=workers, on_done=on_done)
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError("jobs failed: " + "; ".join(f"{r.name}: {r.error}" for r in failed))
    preds = collect(out, list(configs), seeds, fold_list, setup.main_task)
    tests, cells = analyse(preds, setup, seeds, block=block, n_boot=n_boot)
    _write_csv(out / "tests.csv", tests)
    _write_csv(out / "cells.csv", cells)
    write_text(out / "tests.md", markdown(tests, setup))
    summary = {
        "main": setup.main_task,
        "aux": [f"return@{h}" for h in setup.aux],
        "weightings": list(setup.weightings),
        "seeds": list(seeds),
        "folds": fold_list,
        "purge_bars": setup.purge,
        "epochs": base.training.epochs,
        "patience": base.training.patience,
        "n_boot": n_boot,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return tests


def _ints(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ExperimentError(f"{option} {text!r}: give bar counts separated by commas, e.g. 1,2,3")
    return [int(p) for p in parts]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("config")
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="training seeds (the config's seed, +1, ...)",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="output folder (a re-run skips finished jobs)",
)
@click.option(
    "--main",
    "main",
    type=click.IntRange(min=1),
    default=None,
    help="main return horizon in bars [default: the one the config's rule trades]",
)
@click.option("--aux", default=None, help="auxiliary return horizons [default: 1,2,3]")
@click.option(
    "--weightings",
    default=None,
    help="aux variants' weightings, comma-separated [default: the config's]",
)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--block",
    type=click.IntRange(min=1),
    default=None,
    help="bootstrap block in bars [default: max(2 x main, n^(1/3))]",
)
@click.option("--n-boot", type=click.IntRange(min=100), default=2000, show_default=True)
@click.option("--set", "overrides", multiple=True, help="config override KEY=VALUE")
def cli(config, seeds, out, main, aux, weightings, workers, block, n_boot, overrides) -> None:
    """Single-task main return head vs the same network with auxiliary return heads.

    CONFIG is a TOML file (or `crypto` / `stocks` for a shipped config)."""
    from mtl_bt.cli.configs import load_config
    from mtl_bt.compare.variants import split_names

    if out.exists() and not out.is_dir():
        raise ExperimentError(f"--out {out} is a file; give a folder")
    base = load_config(config, overrides)
    names = split_names(weightings) if weightings is not None else None
    if weightings is not None and not names:
        raise ExperimentError(f"--weightings {weightings!r} names nothing")
    setup = make_setup(base, main, _ints(aux, "--aux"), names)
    seed_list = [base.training.seed + i for i in range(seeds)]
    tests = run(
        base,
        setup,
        seeds=seed_list,
        out=out,
        workers=workers,
        block=block,
        n_boot=n_boot,
        log=lambda line: click.echo(line, err=True),
    )
    click.echo(markdown(tests, setup))
    click.echo(f"wrote {out}/tests.md, tests.csv, cells.csv, summary.json")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: user errors are one ``Error:`` line and exit code 2."""
    try:
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except UserError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except click.UsageError as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)


if __name__ == "__main__":
    main()
