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

The main head's out-of-sample rank IC and MSE are compared per (seed, asset, fold) and pooled
by ``experiments.common`` (per-bar metric terms, ``paired_table``): intervals resample seeds
and blocks of time together (``stats.seed_time_bootstrap_mean``), Holm's correction runs
within the all-assets rows and within the per-asset rows.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
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
    """Main-head forecasts of every job: variant, seed, datetime, symbol, fold, prediction,
    target."""
    parts = []
    for variant in variants:
        for seed in seeds:
            for fold in folds:
                path = job_dir(out, variant, seed, fold) / "predictions.parquet"
                cols = ["datetime", "symbol", "fold", task, f"target_{task}"]
                frame = pd.read_parquet(path, columns=cols)
                frame = frame.rename(columns={task: "prediction", f"target_{task}": "target"})
                parts.append(frame.assign(variant=variant, seed=seed))
    return pd.concat(parts, ignore_index=True)


def arms(preds: pd.DataFrame, aux_variant: str) -> pd.DataFrame:
    """The rows of ``single`` and ``aux_variant`` as the two arms ``single`` / ``aux`` of
    ``experiments.common.paired_terms``, on one time axis (``pos``: the bar's position among
    every forecast bar). The arms must agree on the target of every bar."""
    part = preds[preds["variant"].isin([SINGLE, aux_variant])]
    key = ["seed", "symbol", "fold", "datetime"]
    g = part.groupby(key)["target"]
    spread = (g.max() - g.min()).fillna(0.0)  # NaN: no target on that bar (both arms)
    if (spread > 1e-12).any() or (g.size() != 2).any() or g.count().isin([1]).any():
        raise RuntimeError(f"{SINGLE} and {aux_variant} did not forecast the same bars; rerun")
    times = np.sort(preds["datetime"].unique())
    pos = pd.Series(np.arange(len(times)), index=times)
    arm = np.where(part["variant"] == SINGLE, "single", "aux")
    return part.assign(arm=arm, pos=pos.reindex(part["datetime"]).to_numpy())


def analyse(preds: pd.DataFrame, setup: Setup) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table, cells): ``experiments.common.paired_table`` of aux - single per auxiliary
    variant and metric (rank IC, MSE of the main head), over all assets and per asset (Holm
    within each family), with the zero-forecast MSE of the same bars beside the MSE rows."""
    from mtl_bt.experiments.common import cells, paired_table, paired_terms

    results, cell_parts, zero = [], [], {}
    for name in setup.weightings:
        variant = aux_name(name)
        frame = arms(preds, variant)
        for metric in ("rank_ic", "mse"):
            terms = paired_terms(frame, metric, ("aux", "single"))
            results.append((variant, metric, setup.main, terms))
            cell_parts.append(cells(terms).assign(variant=variant, metric=metric))
        single = frame[(frame["arm"] == "single") & frame["target"].notna()]
        zero[(variant, "all")] = float((single["target"] ** 2).mean())
        for symbol, rows in single.groupby("symbol"):
            zero[(variant, str(symbol))] = float((rows["target"] ** 2).mean())
    table = paired_table(results, ("aux", "single"))
    table = table.rename(columns={"task": "variant"})
    first = (table["symbol"] != "all").to_numpy()  # the all-assets rows first, then per asset
    table = table.iloc[np.argsort(first, kind="stable")].reset_index(drop=True)
    table["zero_forecast"] = [
        zero[(v, s)] if m == "mse" else np.nan
        for v, s, m in zip(table["variant"], table["symbol"], table["metric"], strict=True)
    ]
    return table, pd.concat(cell_parts, ignore_index=True)


def heading(setup: Setup, seeds: Sequence[int], timing: dict[str, Any]) -> str:
    aux = ", ".join(f"`return@{h}`" for h in setup.aux)
    return (
        f"## Auxiliary return heads vs the main head alone: `{setup.main_task}`\n\n"
        f"Auxiliary heads {aux}; {len(seeds)} seeds ({seeds[0]}..{seeds[-1]}); diff = aux - "
        "single (rank IC: higher is better; MSE: lower is better); 95% intervals resample "
        "seeds and blocks of time; Holm within the all-assets rows and within the per-asset "
        "rows; `zero_forecast`: the MSE of forecasting a zero return on the same bars. "
        f"{timing['jobs']} fold jobs, {timing['job_seconds'] / 60:.1f} min of job time "
        f"(summed over workers); this invocation trained {timing['jobs_trained']} of them "
        f"in {timing['wall_seconds'] / 60:.1f} min wall."
    )


def _job_seconds(jobs: Sequence[Any]) -> float:
    """Training time of every job as its marker recorded it (also for jobs a re-run skipped)."""
    from mtl_bt.compare.executor import MARKER

    return float(sum(json.loads((j.out_dir / MARKER).read_text())["seconds"] for j in jobs))


def run(
    base: Config,
    setup: Setup,
    *,
    seeds: Sequence[int],
    out: Path,
    workers: int = 2,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Train every (variant, seed, fold) (finished jobs are skipped on a re-run), then write
    ``table.md``, ``table.csv``, ``cells.csv`` and ``summary.json`` to ``out``."""
    from mtl_bt.atomic import write_text
    from mtl_bt.compare.executor import run_jobs
    from mtl_bt.experiments.common import markdown
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
        if log is not None and not result.skipped:  # finished jobs are reused silently
            state = "ok" if result.ok else "FAILED"
            log(f"[{done[0]}/{len(jobs)}] {result.name} {state} ({result.seconds:.1f} s)")

    results = run_jobs(jobs, shared={"frames": frames}, workers=workers, on_done=on_done)
    reused = sum(r.skipped for r in results)
    if log is not None and reused:
        log(f"{reused} of {len(jobs)} fold jobs were finished already (reused)")
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError("jobs failed: " + "; ".join(f"{r.name}: {r.error}" for r in failed))
    preds = collect(out, list(configs), seeds, fold_list, setup.main_task)
    table, cell_rows = analyse(preds, setup)
    timing = {
        "jobs": len(jobs),
        "jobs_trained": sum(not r.skipped for r in results),
        "job_seconds": round(_job_seconds(jobs), 1),
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    _write_csv(out / "table.csv", table)
    _write_csv(out / "cells.csv", cell_rows)
    write_text(out / "table.md", heading(setup, seeds, timing) + "\n\n" + markdown(table))
    summary = {
        "main": setup.main_task,
        "aux": [f"return@{h}" for h in setup.aux],
        "weightings": list(setup.weightings),
        "seeds": list(seeds),
        "folds": fold_list,
        "purge_bars": setup.purge,
        "epochs": base.training.epochs,
        "patience": base.training.patience,
        **timing,
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return table


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    from mtl_bt.atomic import write_text

    write_text(path, frame.to_csv(index=False))


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
@click.option("--set", "overrides", multiple=True, help="config override KEY=VALUE")
def cli(config, seeds, out, main, aux, weightings, workers, overrides) -> None:
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
    run(
        base,
        setup,
        seeds=seed_list,
        out=out,
        workers=workers,
        log=lambda m: click.echo(m, err=True),
    )
    click.echo((out / "table.md").read_text())
    click.echo(f"wrote {out}/table.md, table.csv, cells.csv, summary.json")


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
