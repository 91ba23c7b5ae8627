"""The compare driver: load data once, run (variant x seed) jobs, write the comparison.

Layout of ``out/``::

    config.toml, data.json                 base config and data ranges
    runs/<variant>/seed_<k>/               one job each (metrics.json, returns.csv, ..., job.json)
    baselines/buy_and_hold/                equal-weight buy-and-hold over the out-of-sample bars
    comparison.csv, comparison.md, comparison.html, plots/*.png
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mtl_bt import pipeline
from mtl_bt.compare import table as tables
from mtl_bt.compare.executor import Job, JobResult, run_jobs
from mtl_bt.compare.variants import BUY_AND_HOLD, Variant, build_variants
from mtl_bt.config import Config, dumps
from mtl_bt.report import plots
from mtl_bt.report.document import (
    Code,
    Document,
    Heading,
    Image,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)
from mtl_bt.report.io import write_csv, write_json, write_text

JOB_FN = "mtl_bt.compare.jobs:run_variant"


@dataclass
class CompareResult:
    out_dir: Path
    table: pd.DataFrame
    jobs: list[JobResult]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def failed(self) -> list[JobResult]:
        return [j for j in self.jobs if not j.ok]


def make_jobs(base: Config, variants: list[Variant], seeds: list[int], out: Path) -> list[Job]:
    jobs = []
    for variant in variants:
        for seed in seeds:
            cfg = variant.config(base, seed)
            jobs.append(
                Job(
                    name=f"{variant.name}/seed_{seed}",
                    fn=JOB_FN,
                    params={"config": cfg.model_dump(mode="json")},
                    out_dir=out / "runs" / variant.name / f"seed_{seed}",
                )
            )
    return jobs


def _progress(total: int, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="jobs", unit="job", file=sys.stderr)


def compare(
    base: Config,
    out_dir: str | Path,
    *,
    architectures: list[str] | None = None,
    weightings: list[str] | None = None,
    seeds: int = 1,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    no_cache: bool = False,
    progress: bool = False,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> CompareResult:
    """Run every (variant, seed) job not already finished and write the comparison."""
    say = log or (lambda _msg: None)
    if seeds < 1:
        from mtl_bt.errors import ConfigError

        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    out = Path(out_dir)
    variants = build_variants(base, architectures, weightings)
    seed_list = [base.training.seed + k for k in range(seeds)]
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.toml", dumps(base))
    frames = pipeline.load_data(base, no_cache=no_cache, progress=progress)
    write_json(out / "data.json", {"symbols": pipeline.data_summary(frames)})
    jobs = make_jobs(base, variants, seed_list, out)
    say(
        f"{len(variants)} variants x {len(seed_list)} seed(s) = {len(jobs)} jobs "
        f"({executor} executor)"
    )
    bar = _progress(len(jobs), progress)
    t0 = time.perf_counter()

    def done(result: JobResult) -> None:
        if bar is not None:
            bar.update(1)
        status = "skipped (done)" if result.skipped else ("ok" if result.ok else "FAILED")
        detail = f" {result.seconds:.1f}s" if result.ok and not result.skipped else ""
        say(f"  {result.name}: {status}{detail}" + (f": {result.error}" if result.error else ""))

    try:
        results = run_jobs(
            jobs,
            shared={"frames": frames},
            executor=executor,
            workers=workers,
            address=address,
            on_done=done,
        )
    finally:
        if bar is not None:
            bar.close()
    say(f"jobs finished in {time.perf_counter() - t0:.1f}s")

    runs = out / "runs"
    bh_dir = out / "baselines" / BUY_AND_HOLD
    start = _oos_start(runs, variants, seed_list)
    if start is not None:
        bh = pipeline.backtest_buy_and_hold(base, pipeline.clip_frames(frames, start))
        from mtl_bt.backtesting import write_outputs

        write_outputs(bh, bh_dir)
    comparison = tables.build(runs, variants, seed_list, bh_dir if start is not None else None)
    files = write_comparison(out, comparison, results, command=command, seeds=seed_list)
    return CompareResult(out, comparison.table, results, files)


def _oos_start(runs: Path, variants: list[Variant], seeds: list[int]) -> pd.Timestamp | None:
    """Earliest out-of-sample bar traded by any finished job."""
    starts = []
    for variant in variants:
        for folder in tables.seed_dirs(runs, variant.name, seeds):
            returns = pd.read_csv(folder / "returns.csv", nrows=1)
            if len(returns):
                starts.append(pd.Timestamp(returns.iloc[0, 0]))
    if not starts:
        return None
    start = min(starts)
    return start.tz_localize("UTC") if start.tz is None else start


def write_comparison(
    out: Path,
    comparison: tables.Comparison,
    results: list[JobResult],
    *,
    command: str | None = None,
    seeds: list[int] | None = None,
) -> dict[str, Path]:
    files: dict[str, Path] = {}
    table = comparison.table
    files["comparison.csv"] = write_csv(out / "comparison.csv", table)
    plot_dir = out / "plots"
    doc = Document("mtl-bt comparison: multi-task vs single-task")
    if command:
        doc.add(Paragraph("Produced by:"))
        doc.add(Code(command, "sh"))
    doc.add(
        Paragraph(
            f"Seeds {seeds}. Mean ± std over seeds (sample std; one seed shows the mean only). "
            "Every variant trains on the same data with the same walk-forward folds; all numbers "
            "are out of sample. `single_task[arch]` is the return-only model (at the horizon the "
            "signal trades) of the same architecture and widths; buy_and_hold holds the assets in "
            "equal weights over the same out-of-sample bars."
        )
    )
    doc.add(Heading("Portfolio metrics"))
    doc.add(Table(tables.performance_view(table)))
    task_view = tables.task_view(table)
    if task_view.shape[1] > 1:
        doc.add(Heading("Out-of-sample task metrics"))
        doc.add(
            Paragraph(
                "IC = Pearson correlation of prediction and realised target, rank IC = Spearman, "
                "AUC for direction, QLIKE for volatility (lower is better); pooled over symbols "
                "and folds."
            )
        )
        doc.add(Table(task_view))
    doc.add(Heading("Is the difference real?"))
    doc.add(
        Paragraph(
            "Per variant, the seed ensemble (returns averaged over seeds). ΔSharpe = annualised "
            "Sharpe(variant) − Sharpe(single-task model of the same architecture) on the bars both "
            "traded, with a paired circular-block bootstrap 95% CI and two-sided p-value. PSR = "
            "probability the true Sharpe is > 0; DSR = the same against the best Sharpe expected "
            f"from {comparison.n_trials} unskilled trials (the trained variants here), "
            "Bailey & López de Prado (2014). An interval that contains 0 means no evidence either way."
        )
    )
    doc.add(Table(tables.significance_view(table)))
    failed = [r for r in results if not r.ok]
    if failed:
        doc.add(Heading("Failed jobs"))
        doc.add(
            Table(
                pd.DataFrame(
                    {"job": [r.name for r in failed], "error": [r.error or "" for r in failed]}
                )
            )
        )
    figures = []
    curves = {name: s for name, s in comparison.ensembles.items()}
    figures.append(
        (
            plots.plot_equity(
                curves, plot_dir / "equity.png", "Equity (seed ensembles) vs buy & hold"
            ),
            "Equity curves of the seed ensembles",
        )
    )
    figures.append((plots.plot_drawdown(curves, plot_dir / "drawdown.png"), "Drawdown"))
    sharpe = table[["variant", "sharpe_mean", "sharpe_std"]]
    figures.append(
        (
            plots.plot_bars(
                sharpe,
                "sharpe_mean",
                "sharpe_std",
                plot_dir / "sharpe.png",
                "Sharpe ratio, mean ± std over seeds",
            ),
            "Sharpe by variant",
        )
    )
    diffs = table[table["kind"] == "mtl"][
        ["variant", "sharpe_diff", "sharpe_diff_low", "sharpe_diff_high"]
    ]
    diffs = diffs.rename(
        columns={"sharpe_diff": "diff", "sharpe_diff_low": "low", "sharpe_diff_high": "high"}
    )
    figures.append(
        (
            plots.plot_intervals(
                diffs, plot_dir / "sharpe_diff.png", "Sharpe(MTL) − Sharpe(single-task), 95% CI"
            ),
            "Paired bootstrap CI of the Sharpe difference",
        )
    )
    doc.add(Heading("Plots"))
    for path, caption in figures:
        if path is not None:
            files[path.name] = path
            doc.add(Image(path, caption))
    files["comparison.md"] = write_text(out / "comparison.md", to_markdown(doc, out))
    files["comparison.html"] = write_text(out / "comparison.html", to_html(doc))
    return files
