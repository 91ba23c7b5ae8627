"""The compare driver: load data once, run the jobs, write the comparison.

Every (variant, seed) is one run: one training job per walk-forward fold (all folds of all
runs in parallel), then one backtest job that joins its folds. Layout of ``out/``::

    config.toml, data.json                 base config and data ranges
    runs/<variant>/seed_<k>/               one run (metrics.json, returns.csv, ..., job.json)
    runs/<variant>/seed_<k>/folds/fold_<i>/  its fold training jobs (checkpoint, tables, job.json)
    baselines/buy_and_hold/                equal-weight buy-and-hold over the out-of-sample bars
    comparison.csv, comparison.md, comparison.html, plots/*.png
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_bt import pipeline
from mtl_bt.compare import table as tables
from mtl_bt.compare.executor import ERROR_FILE, MARKER, Job, JobResult, run_jobs
from mtl_bt.compare.variants import BUY_AND_HOLD, SIMPLE, Variant, build_variants
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

FOLD_FN = "mtl_bt.compare.jobs:train_fold"
BACKTEST_FN = "mtl_bt.compare.jobs:backtest_run"
ENSEMBLE_FN = "mtl_bt.compare.jobs:backtest_ensemble"
EVALUATE_FN = "mtl_bt.compare.jobs:evaluate_run"
BASELINE_FN = "mtl_bt.compare.jobs:backtest_baseline"
PLACEBO_FN = "mtl_bt.compare.jobs:placebo_run"
#: block-shuffled placebo backtests ``compare`` runs by default (``--placebo-draws``)
PLACEBO_DRAWS = 19


@dataclass
class CompareResult:
    out_dir: Path
    table: pd.DataFrame
    jobs: list[JobResult]
    files: dict[str, Path] = field(default_factory=dict)
    vs_simple: pd.DataFrame = field(default_factory=pd.DataFrame)
    specs: list[Any] = field(default_factory=list)  # the tasks' headline metrics
    placebo: dict[str, Any] | None = None  # the placebo study (placebo.json), if it ran

    @property
    def failed(self) -> list[JobResult]:
        return [j for j in self.jobs if not j.ok]


@dataclass
class RunPlan:
    """One (variant, seed): the fold training jobs it needs, then its backtest job.

    A trained variant owns its fold jobs; a backtest-only variant borrows them (``no_aux``:
    its MTL variant's; ``ensemble``: every member's, by task).
    """

    name: str
    out_dir: Path
    config: dict[str, Any]
    fold_jobs: list[Job]
    error: str | None = None  # the config cannot be planned (e.g. a rejected option)
    trace: str = ""
    owns_folds: bool = True
    members: dict[str, list[Job]] = field(default_factory=dict)  # ensemble: task -> folds
    traded: bool = True  # False: a member model the rule cannot trade alone (evaluated only)
    #: another job than the backtest joining ``fold_jobs`` (a simple baseline, a placebo
    #: study): its function and extra parameters
    fn: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def needed(self) -> list[Job]:
        """Every fold job whose files the backtest joins."""
        if self.members:
            return [j for jobs in self.members.values() for j in jobs]
        return list(self.fold_jobs)

    def backtest_job(self) -> Job:
        """Joins the fold jobs' files (shared with the workers, not parameters)."""
        if self.members:
            return Job(
                name=self.name,
                fn=ENSEMBLE_FN,
                params={
                    "config": self.config,
                    "members": {t: [j.name for j in jobs] for t, jobs in self.members.items()},
                    "member_digests": [j.digest() for j in self.needed()],
                },
                out_dir=self.out_dir,
            )
        return Job(
            name=self.name,
            fn=self.fn or (BACKTEST_FN if self.traded else EVALUATE_FN),
            params={
                "config": self.config,
                "fold_jobs": [j.name for j in self.fold_jobs],
                "fold_digests": [j.digest() for j in self.fold_jobs],
                **self.params,
            },
            out_dir=self.out_dir,
        )


def plan_runs(
    base: Config, variants: list[Variant], seeds: list[int], out: Path, frames: Any
) -> list[RunPlan]:
    """The jobs of every (variant, seed): one training job per walk-forward fold of each
    trained variant; backtest-only variants borrow their sources' fold jobs.

    The folds are counted on the data without training (they are the same for every
    variant and seed); a config that cannot even be planned becomes a failed run.
    """
    from mtl_bt.errors import UserError
    from mtl_bt.training.pipeline import fold_numbers

    plans = []
    by_key: dict[tuple[str, int], RunPlan] = {}
    counted: dict[str, list[int] | tuple[str, str]] = {}
    for variant in sorted(variants, key=lambda v: not v.trained):  # sources first
        for seed in seeds[:1] if variant.seedless else seeds:
            cfg = variant.config(base, seed)
            dumped = cfg.model_dump(mode="json")
            name = f"{variant.name}/seed_{seed}"
            run_dir = out / "runs" / variant.name / f"seed_{seed}"
            if not variant.trained:
                sources = dict(variant.members) if variant.members else {"": variant.source or ""}
                borrowed = {t: by_key[(src, seed)] for t, src in sources.items()}
                bad = next((p for p in borrowed.values() if p.error), None)
                plan = RunPlan(
                    name,
                    run_dir,
                    dumped,
                    [] if variant.members else borrowed[""].fold_jobs,
                    None if bad is None else f"{bad.name}: {bad.error}",
                    "" if bad is None else bad.trace,
                    owns_folds=False,
                    members={t: p.fold_jobs for t, p in borrowed.items()}
                    if variant.members
                    else {},
                )
                if variant.kind == SIMPLE:
                    plan.fn, plan.params = BASELINE_FN, {"model": variant.name}
                by_key[(variant.name, seed)] = plan
                plans.append(plan)
                continue
            unseeded = {**dumped, "training": {**dumped["training"], "seed": None}}
            key = json.dumps(unseeded, sort_keys=True)  # the folds do not depend on the seed
            if key not in counted:
                try:
                    counted[key] = fold_numbers(cfg, frames)
                except UserError as exc:
                    counted[key] = (f"{type(exc).__name__}: {exc}", traceback.format_exc())
            folds = counted[key]
            fold_jobs = [
                Job(
                    name=f"{name}/fold_{k:03d}",
                    fn=FOLD_FN,
                    params={"config": dumped, "fold": k},
                    out_dir=run_dir / "folds" / f"fold_{k:03d}",
                )
                for k in (folds if isinstance(folds, list) else [])
            ]
            error, trace = folds if isinstance(folds, tuple) else (None, "")
            plan = RunPlan(name, run_dir, dumped, fold_jobs, error, trace)
            plan.traded = variant.traded_alone
            by_key[(variant.name, seed)] = plan
            plans.append(plan)
    order = {v.name: i for i, v in enumerate(variants)}
    plans.sort(key=lambda p: order[p.name.rsplit("/seed_", 1)[0]])  # stable: seeds in order
    return plans


def _fold_files(job: Job) -> dict[str, bytes]:
    """A finished fold job's files (what its backtest job joins)."""
    return {
        p.relative_to(job.out_dir).as_posix(): p.read_bytes()
        for p in sorted(job.out_dir.rglob("*"))
        if p.is_file() and p.name not in (MARKER, ERROR_FILE)
    }


def _fail_run(plan: RunPlan, error: str, trace: str = "") -> JobResult:
    """Record a run that could not be backtested (its planning or a fold failed)."""
    write_text(plan.out_dir / ERROR_FILE, f"{error}\n\n{trace}")
    (plan.out_dir / MARKER).unlink(missing_ok=True)
    return JobResult(plan.name, plan.out_dir, False, error=error)


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
    baselines: list[str] | None = None,
    placebo_draws: int = PLACEBO_DRAWS,
) -> CompareResult:
    """Run every (variant, seed) job not already finished and write the comparison.

    ``baselines``: the simple baselines to add (``linear``, ``lightgbm``); None = both when
    scikit-learn and LightGBM are installed, else none with a one-line install hint; naming
    them when they are not installed is an error. ``placebo_draws``: block-shuffled placebo
    backtests of the demo variant's first seed (0: none).
    """
    from mtl_bt.errors import ConfigError

    say = log or (lambda _msg: None)
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if placebo_draws < 0:
        raise ConfigError(f"--placebo-draws must be >= 0, got {placebo_draws}")
    simple = pick_baselines(baselines, say)
    out = Path(out_dir)
    variants = build_variants(base, architectures, weightings, simple)
    seed_list = [base.training.seed + k for k in range(seeds)]
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.toml", dumps(base))
    frames = pipeline.load_data(base, no_cache=no_cache, progress=progress)
    write_json(out / "data.json", {"symbols": pipeline.data_summary(frames)})
    plans = plan_runs(base, variants, seed_list, out, frames)
    placebo = placebo_plan(base, plans, variants, seed_list[0], out, placebo_draws)
    if placebo is not None:
        plans.append(placebo)
    fold_jobs = [j for plan in plans if plan.owns_folds for j in plan.fold_jobs]
    n_runs = len(plans) - (placebo is not None)
    say(
        f"{len(variants)} variants, {len(seed_list)} seed(s): {n_runs} runs, "
        f"{len(fold_jobs)} fold training jobs, then {n_runs} backtests ({executor} executor)"
        + (
            f", and up to {placebo_draws} placebo backtests of {placebo.name} in one job"
            if placebo is not None
            else ""
        )
    )
    bar = _progress(len(fold_jobs) + len(plans), progress)
    t0 = time.perf_counter()

    def done(result: JobResult) -> None:
        if bar is not None:
            bar.update(1)
        status = "skipped (done)" if result.skipped else ("ok" if result.ok else "FAILED")
        detail = f" {result.seconds:.1f}s" if result.ok and not result.skipped else ""
        say(f"  {result.name}: {status}{detail}" + (f": {result.error}" if result.error else ""))

    # One pool for every job: a run's backtest starts as soon as its last fold job is
    # stored (ahead of the fold jobs still queued), in the workers that trained them.
    fold_results: dict[str, JobResult] = {}
    fold_files: dict[str, dict[str, bytes]] = {}
    by_name: dict[str, JobResult] = {}
    waiting = {plan.name: {j.name for j in plan.needed()} for plan in plans}
    users: dict[str, list[RunPlan]] = {}
    for plan in plans:
        for job in plan.needed():
            users.setdefault(job.name, []).append(plan)
    unreleased = {name: len(plans_) for name, plans_ in users.items()}

    def release(plan: RunPlan) -> list[Job]:
        """The plan's backtest job once every fold it needs is stored, else its failure."""
        bad = [fold_results[j.name] for j in plan.needed() if not fold_results[j.name].ok]
        if plan.error is not None or bad:
            error = plan.error or f"fold job {bad[0].name} failed: {bad[0].error}"
            trace = plan.trace
            if bad:
                trace = (Path(bad[0].out_dir) / ERROR_FILE).read_text()
            by_name[plan.name] = _fail_run(plan, error, trace)
            done(by_name[plan.name])
            return []
        files = {}
        for job in plan.needed():
            if job.name not in fold_files:
                fold_files[job.name] = _fold_files(job)
            files[job.name] = fold_files[job.name]
            unreleased[job.name] -= 1
            if not unreleased[job.name]:  # its last backtest has it: free the bytes
                del fold_files[job.name]
        return [replace(plan.backtest_job(), inputs={"fold_files": files})]

    def then(result: JobResult) -> list[Job]:
        if result.name not in users:  # a backtest job
            by_name[result.name] = result
            return []
        fold_results[result.name] = result
        ready = []
        for plan in users[result.name]:
            waiting[plan.name].discard(result.name)
            if not waiting[plan.name]:
                ready += release(plan)
        return ready

    try:
        first = [plan for plan in plans if not waiting[plan.name]]  # nothing to wait for
        for plan in first:
            for job in release(plan):  # (a plan that has no folds failed to plan)
                fold_jobs.append(job)
        run_jobs(
            fold_jobs,
            shared={"frames": frames},
            executor=executor,
            workers=workers,
            address=address,
            on_done=done,
            then=then,
        )
        results = [by_name[plan.name] for plan in plans]
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
    from mtl_bt.compare.delta import task_metric_specs
    from mtl_bt.tasks import build_tasks

    specs = task_metric_specs(build_tasks(base.tasks))
    comparison = tables.build(
        runs, variants, seed_list, bh_dir if start is not None else None, specs=specs
    )
    study = read_placebo(placebo)
    files = write_comparison(
        out,
        comparison,
        results,
        command=command,
        seeds=seed_list,
        specs=specs,
        variants=variants,
        placebo=study,
    )
    return CompareResult(out, comparison.table, results, files, comparison.vs_simple, specs, study)


def pick_baselines(asked: list[str] | None, say: Callable[[str], None]) -> list[str]:
    """The simple baselines to run: ``asked`` (checked, and their packages required), or by
    default every one when scikit-learn and LightGBM import, else none with one line saying
    how to install them."""
    from mtl_bt.compare import baselines as bl
    from mtl_bt.errors import ConfigError, UserError

    if asked is not None:
        unknown = [m for m in asked if m not in bl.MODELS]
        if unknown:
            raise ConfigError(
                f"--baselines: unknown baseline(s) {unknown}; choose from "
                f"{', '.join(bl.MODELS)}, or none"
            )
        if asked:
            bl.check_installed()
        return list(asked)
    try:
        bl.check_installed()
    except UserError:
        say(f"simple baselines (linear, LightGBM) skipped: {bl.INSTALL} to add them")
        return []
    return list(bl.MODELS)


def placebo_plan(
    base: Config, plans: list[RunPlan], variants: list[Variant], seed: int, out: Path, draws: int
) -> RunPlan | None:
    """The placebo study of the demo variant (the base config's own architecture and
    weighting, else the first MTL variant) at ``seed``: it borrows that run's fold jobs."""
    if draws <= 0:
        return None
    from mtl_bt.compare.variants import demo_variant

    name = demo_variant(base, variants).name
    source = next(p for p in plans if p.name == f"{name}/seed_{seed}")
    return RunPlan(
        f"placebo/{name}/seed_{seed}",
        out / "placebo" / name / f"seed_{seed}",
        source.config,
        source.fold_jobs,
        source.error,
        source.trace,
        owns_folds=False,
        fn=PLACEBO_FN,
        params={"draws": int(draws)},
    )


def read_placebo(plan: RunPlan | None) -> dict[str, Any] | None:
    """The placebo study's result (None when none ran or it failed)."""
    if plan is None or not (plan.out_dir / "placebo.json").exists():
        return None
    return {"name": plan.name, **json.loads((plan.out_dir / "placebo.json").read_text())}


def _oos_start(runs: Path, variants: list[Variant], seeds: list[int]) -> pd.Timestamp | None:
    """Earliest out-of-sample bar traded by any finished job."""
    starts = []
    for variant in variants:
        if not variant.trained:
            continue
        for folder in tables.seed_dirs(runs, variant.name, seeds):
            if not (folder / "returns.csv").exists():  # an evaluated-only member
                continue
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
    specs: list[Any] | None = None,
    variants: list[Variant] | None = None,
    placebo: dict[str, Any] | None = None,
) -> dict[str, Path]:
    files: dict[str, Path] = {}
    table = comparison.table
    files["comparison.csv"] = write_csv(out / "comparison.csv", table)
    if not comparison.vs_simple.empty:
        files["vs_baselines.csv"] = write_csv(out / "vs_baselines.csv", comparison.vs_simple)
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
            "signal trades) of the same architecture and widths, traded with the rule's "
            "fallbacks; `single_task[arch]:<task>` is the single-task model of each other task "
            "(same architecture, widths, data, folds, seeds and epochs; early stopping on its "
            "own validation loss); `st_ensemble[arch]` joins them into one model that the same "
            "rule trades with the same heads as the MTL model, so ΔSharpe(MTL − ensemble) "
            "isolates joint training; `<mtl>:no_aux` is the MTL model traded with the rule's "
            "auxiliary inputs off (return head only), against the return-only model. "
            "buy_and_hold holds the assets in equal weights over the same out-of-sample bars. "
            "Sharpe is after costs; gross Sharpe before; costs/yr = commission + slippage per "
            "year as a fraction of value; turnover is two-way (a full switch counts 2). "
            "`linear` and `lightgbm` are the strong simple baselines: ridge / logistic "
            "regression and LightGBM, one per task, fitted per fold on the same rows, "
            "features, scaler, folds and purge (deterministic fits: LightGBM without bagging, "
            "so each runs once, at the first seed) and traded by the same rule reading the "
            "same heads, on their whole-frame predictions (precomputed mode)."
        )
    )
    simple_line = tables.simple_verdict(comparison.vs_simple, list(specs or []))
    if simple_line:
        doc.add(Paragraph(simple_line))
    doc.add(Heading("Portfolio metrics"))
    doc.add(Table(tables.performance_view(table)))
    task_view = tables.task_view(table)
    if task_view.shape[1] > 1:
        doc.add(Heading("Out-of-sample task metrics"))
        doc.add(
            Paragraph(
                "IC = Pearson correlation of prediction and realised target, rank IC = Spearman, "
                "AUC for direction, QLIKE for volatility (lower is better; `qlike_ewma`, "
                "`qlike_har`: the RiskMetrics EWMA and HAR-RV forecasts on the same rows), "
                "calibration = RMS(realised vol) / RMS(predicted vol) (1 = calibrated); pooled "
                "over symbols and folds. Plugin tasks show their own metrics."
            )
        )
        doc.add(Table(task_view))
    calibration = tables.calibration_view(out / "runs", variants or [], seeds or [])
    if not calibration.empty:
        doc.add(Heading("Volatility calibration per fold"))
        doc.add(
            Paragraph(
                "Per walk-forward fold (all = pooled), mean ± std over seeds: calibration = "
                "RMS(realised vol) / RMS(predicted vol); mz_slope / mz_intercept: the "
                "Mincer-Zarnowitz regression realised = a + b predicted (b = 1, a = 0 when "
                "calibrated; each seed's Newey-West HAC standard errors are in its "
                "oos_metrics.csv); QLIKE beside the EWMA forecast's (λ from the bar size). A "
                "pooled ratio near 1 can hide folds far from it."
            )
        )
        doc.add(Table(calibration))
    delta_view = tables.delta_view(table, list(specs or []))
    if not delta_view.empty:
        doc.add(Heading("Δm: MTL vs its single-task models"))
        doc.add(
            Paragraph(
                "Δm = mean over tasks of ±(M − S)/|S| (+ when higher is better), M the MTL "
                "model's and S the single-task model's out-of-sample metric "
                + ", ".join(
                    f"{s.task}: {s.metric}{'' if s.higher_is_better else ' (lower better)'}"
                    for s in (specs or [])
                )
                + ". Per seed: mean ± std over seeds. Seed ensemble: on the seed-averaged "
                "predictions, with a paired circular block bootstrap over time (95% CI; every "
                "symbol of a resampled bar moves together); per-task columns are M − S with "
                "their CI, raw two-sided bootstrap p-value and Holm-adjusted p-value (over every "
                "task and variant of this table). A task whose single-task metric is "
                "indistinguishable from 0 (|S| <= 1.96 σ, σ its bootstrap standard error) is "
                "flagged and left out of Δm instead of being divided by. Δm_σ, the stable form, "
                "is the mean over all tasks of ±(M − S)/σ: each difference in units of the "
                "single-task metric's own sampling noise (a scale that cannot be near 0). A CI "
                "that contains 0 means no evidence either way."
            )
        )
        doc.add(Table(delta_view))
    doc.add(Heading("Is the difference real?"))
    doc.add(
        Paragraph(
            "Per variant, the seed ensemble (returns averaged over seeds). ΔSharpe = annualised "
            "Sharpe(variant) − Sharpe(comparator) on the bars both traded; the comparator is "
            "the single-task ensemble (same rule, same heads) and, separately, the return-only "
            "model. Two 95% CIs with two-sided p-values: over time (paired circular-block "
            "bootstrap of the seed ensembles) and over seeds and time (each replicate also "
            "redraws each side's seeds with replacement, so training-seed variance is in the "
            "interval). Holm-adjusted p-values are beside the raw ones (one family per kind of "
            "interval, all comparisons of this table). PSR = probability the true Sharpe is > "
            "0; DSR = the same against the best Sharpe expected from "
            f"{comparison.n_trials} unskilled trials (every backtest tried here: each variant "
            "x seed), Bailey & López de Prado (2014). An interval that contains 0 means no "
            "evidence either way."
        )
    )
    doc.add(Table(tables.significance_view(table)))
    simple_view = tables.simple_view(comparison.vs_simple, list(specs or []))
    if not simple_view.empty:
        doc.add(Heading("MTL vs the simple baselines"))
        doc.add(
            Paragraph(
                "Per MTL variant and simple baseline, on the seed ensembles: ΔSharpe(MTL − "
                "baseline) with its 95% CI over time (paired circular block bootstrap) and "
                "over seeds and time, and per task the headline-metric difference M − B on "
                "the seed-averaged predictions (paired block bootstrap over time, 95% CI). "
                "Holm-adjusted p-values: one family per kind of Sharpe interval, one for "
                "every task test of this table. A CI that contains 0 means no evidence either "
                "way. " + simple_line
            )
        )
        doc.add(Table(simple_view))
    if placebo is not None:
        doc.add(Heading("Placebo backtests"))
        doc.add(Paragraph(placebo_sentence(placebo)))
        doc.add(Table(placebo_view(placebo)))
    doc.add(Heading("Overfitting and stability"))
    doc.add(
        Paragraph(
            "val/train loss: per task, the validation loss over the training loss at the epoch "
            "early stopping kept, both measured in eval mode (dropout off) after that epoch, "
            "mean over folds and seeds (> 1 is a generalisation gap). "
            "std of fold Sharpe: the dispersion of the seed ensemble's annualised Sharpe over "
            "the walk-forward test windows (market regimes)."
        )
    )
    doc.add(Table(tables.robustness_view(table)))
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
                diffs, plot_dir / "sharpe_diff.png", "Sharpe(MTL) − Sharpe(ST ensemble), 95% CI"
            ),
            "Paired bootstrap CI of the Sharpe difference",
        )
    )
    if "delta_m" in table:
        dm = table[table["kind"] == "mtl"][["variant", "delta_m", "delta_m_low", "delta_m_high"]]
        dm = dm.rename(columns={"delta_m": "diff", "delta_m_low": "low", "delta_m_high": "high"})
        figures.append(
            (
                plots.plot_intervals(
                    dm, plot_dir / "delta_m.png", "Δm (MTL vs single-task models), 95% CI"
                ),
                "Δm with its paired block-bootstrap CI",
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


def placebo_view(result: dict[str, Any]) -> pd.DataFrame:
    """The placebo study as rows: the real backtest, the block-shuffled draws' quantiles and
    the lagged runs, each with net and gross Sharpe."""
    import numpy as np

    def q(key: str) -> list[float]:
        values = np.array([s[key] for s in result["shuffled"]], dtype=float)
        if not np.isfinite(values).any():
            return [float("nan")] * 3
        return list(np.nanquantile(values, [0.05, 0.5, 0.95]))

    from mtl_bt.compare.placebo import draws_note

    net, gross = q("sharpe"), q("gross_sharpe")
    rows = [
        ("real predictions", result["real"]["sharpe"], result["real"]["gross_sharpe"], ""),
        ("shuffled, 5%", net[0], gross[0], draws_note(result)),
        ("shuffled, median", net[1], gross[1], ""),
        ("shuffled, 95%", net[2], gross[2], ""),
        ("p (real vs shuffled)", result["p_sharpe"], result["p_gross_sharpe"], "one-sided"),
    ]
    for k, m in result["lagged"].items():
        rows.append((f"lagged {k} bar(s)", m["sharpe"], m["gross_sharpe"], ""))
    return pd.DataFrame(rows, columns=["backtest", "Sharpe", "gross Sharpe", "note"])


def placebo_sentence(result: dict[str, Any]) -> str:
    """Where the real Sharpe sits among the placebos, in words."""
    p = float(result["p_sharpe"])
    real = float(result["real"]["sharpe"])
    said = (
        "the profit depends on the timing of the predictions"
        if p <= 0.05
        else "the placebos do as well: no evidence that the profit comes from forecasting "
        "rather than from the rule or the market"
    )
    from mtl_bt.compare.placebo import draws_note

    most = int(result.get("max_draws", result["draws"]))
    h = int(result.get("stop_after") or 0)
    rule = (
        f"drawing stops once {h} placebos reach the real net and gross Sharpe, Besag & "
        f"Clifford 1991: p = {h} / draws then, else (1 + #placebo ≥ real) / (1 + draws)"
        if h
        else "(1 + #placebo ≥ real) / (1 + draws)"
    )
    return (
        f"{result['name']}: the same fold models, rule, costs and bars with the predictions "
        f"block-shuffled in time within each fold ({draws_note(result)}; blocks of "
        f"{result['block']} bars, one permutation per draw and asset) and lagged by k bars. "
        f"The real Sharpe {real:.2f} has p = {p:.3f} against the shuffled draws (one-sided; "
        f"{rule}; the smallest possible is {1 / (1 + most):.3f}): {said}."
    )
