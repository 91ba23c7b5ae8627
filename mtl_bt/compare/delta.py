"""Δm: the mean relative per-task change of an MTL model against its single-task models.

    Δm = (1/K) Σ_k s_k (M_k − S_k) / |S_k|,   s_k = +1 if higher is better, −1 otherwise

(Maninis et al. 2019; LibMTL), M_k / S_k the out-of-sample headline metric of task k
(``Task.headline_metric``: return rank IC, direction AUC, volatility QLIKE (lower is better),
volume IC; a plugin task declares its own) of the MTL and the single-task model. Δm > 0: MTL
is better on average. Per seed, from the runs' ``oos_metrics.csv`` (mean ± std over seeds);
and on the seed-averaged predictions with a paired circular block bootstrap over *time*
(every symbol's row of a resampled bar moves together), which gives a CI for each per-task
difference M_k − S_k and for Δm.

A relative change divides by |S_k|: a single-task metric near 0 (a return rank IC of 0.001)
makes Δm explode and its interval swing with the bootstrap seed. So:

- a task whose single-task metric is indistinguishable from 0 (|S_k| <= 1.96 σ_k, σ_k the
  bootstrap standard error of S_k over time) is **flagged** and left out of Δm (LibMTL's
  formula over the other tasks; the per-seed Δm leaves out the same tasks);
- the **stable** form divides by a scale that cannot be near 0, the same σ_k:

      Δm_σ = (1/K) Σ_k s_k (M_k − S_k) / σ_k

  each task's difference in units of the single-task metric's own sampling noise (a
  z-score-like, scale-free number; every task counts, flagged or not). Its CI comes from the
  same resamples with σ_k held fixed.

Every per-task difference also gets a two-sided p-value (``p``), which the table
Holm-adjusts over all tasks and variants: the bootstrap z-test, ``p = erfc(|d| / (sd*
sqrt(2)))`` with sd the standard deviation of the resampled differences. Why not the share
of resamples that cross 0: with the 300 resamples this bootstrap affords, that share cannot
go below 1/300, so a difference many standard errors from 0 got p = 0, and after Holm over
16 tests "p < 0.01" claimed more than 300 draws can resolve (its honest bound was 0.11).
The differences of correlations, AUCs and QLIKE means here are close to normal over
resamples, which the z-test assumes; the percentile interval beside it is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.report.oos import _corr, task_metrics


@dataclass(frozen=True)
class TaskMetric:
    """Which metric of a task enters Δm, and its direction."""

    task: str  # e.g. "return@24"
    metric: str  # e.g. "rank_ic"
    higher_is_better: bool = True
    task_obj: Any = None  # a plugin task scores itself

    @property
    def kind(self) -> str:
        return self.task.split("@", 1)[0]

    @property
    def horizon(self) -> int:
        h = self.task.split("@", 1)[1] if "@" in self.task else "1"
        return int(h) if h.isdigit() else 1

    def score(self, pred: np.ndarray, target: np.ndarray) -> float:
        return float(task_metrics(self.kind, pred, target, self.task_obj).get(self.metric, np.nan))


def task_metric_specs(tasks: Sequence[Any]) -> list[TaskMetric]:
    """The Δm metric of every task that declares one (``headline_metric``)."""
    out = []
    for t in tasks:
        metric = getattr(t, "headline_metric", None)
        if metric:
            out.append(TaskMetric(t.name, metric, bool(getattr(t, "higher_is_better", True)), t))
    return out


def relative(m: float, s: float, higher_is_better: bool) -> float:
    """s_k (M − S) / |S| (NaN when S is 0 or either is undefined)."""
    if not (math.isfinite(m) and math.isfinite(s)) or s == 0:
        return float("nan")
    return (1.0 if higher_is_better else -1.0) * (m - s) / abs(s)


def delta_m_of(
    mtl: Mapping[str, float], single: Mapping[str, float], specs: Sequence[TaskMetric]
) -> float:
    """Δm from per-task metric values (keys: task names); NaN if any task is missing."""
    parts = [
        relative(mtl.get(s.task, np.nan), single.get(s.task, np.nan), s.higher_is_better)
        for s in specs
    ]
    if not parts or not all(math.isfinite(p) for p in parts):
        return float("nan")
    return float(np.mean(parts))


def metrics_from_csv(path: Path, specs: Sequence[TaskMetric]) -> dict[str, float]:
    """Pooled (fold == "all") headline metrics of ``oos_metrics.csv``."""
    if not path.exists():
        return {}
    table = pd.read_csv(path)
    pooled = table[table["fold"].astype(str) == "all"]
    out = {}
    for spec in specs:
        hit = pooled[(pooled["task"] == spec.task) & (pooled["metric"] == spec.metric)]
        if not hit.empty:
            out[spec.task] = float(hit["value"].iloc[0])
    return out


def seed_mean_predictions(folders: Sequence[Path], tasks: Sequence[str]) -> pd.DataFrame | None:
    """``datetime, symbol, <task>, target_<task>`` averaged over the seeds' predictions."""
    frames = []
    for folder in folders:
        path = folder / "predictions.parquet"
        if not path.exists():
            continue
        table = pd.read_parquet(path)
        cols = [c for t in tasks for c in (t, f"target_{t}") if c in table]
        frames.append(table[["datetime", "symbol", *cols]])
    if not frames:
        return None
    joined = pd.concat(frames, ignore_index=True)
    return joined.groupby(["datetime", "symbol"], sort=True).mean().reset_index()


@dataclass
class DeltaResult:
    delta_m: float
    low: float
    high: float
    per_task: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # diff, lo, hi
    relative: dict[str, float] = field(default_factory=dict)
    n_bars: int = 0
    block: int = 0
    n_boot: int = 0
    #: Δm_σ (differences over the single-task metric's bootstrap s.e.) and its CI
    stable: float = float("nan")
    stable_low: float = float("nan")
    stable_high: float = float("nan")
    scale: dict[str, float] = field(default_factory=dict)  # σ_k per task
    p_values: dict[str, float] = field(default_factory=dict)  # per-task two-sided p
    flagged: list[str] = field(default_factory=list)  # S_k indistinguishable from 0


#: |S_k| <= Z_FLAG σ_k: the single-task metric is indistinguishable from 0 (not divided by)
Z_FLAG = 1.96


def delta_m_without(relatives: Mapping[str, float], flagged: Sequence[str]) -> float:
    """LibMTL's Δm over the tasks not flagged (NaN if none is left or one is undefined)."""
    parts = [v for t, v in relatives.items() if t not in flagged]
    if not parts or not all(math.isfinite(p) for p in parts):
        return float("nan")
    return float(np.mean(parts))


class _Scorer:
    """``spec.score(values[rows], target[rows])`` for many bootstrap row sets.

    A rank IC re-sorts every resample otherwise (most of a compare's table time). A resample
    only repeats or drops the original rows, so each value's average rank in it follows
    from how many resampled values fall in each group of equal original values: sorted
    once, counted per replicate (``np.bincount``), the same numbers as ranking the
    resample (``pandas.Series.rank(method="average")``, tested equal). Return/volume
    ``ic``/``rank_ic`` and direction ``auc`` take this path; other metrics (and plugin
    tasks) use ``spec.score`` as it is.
    """

    def __init__(self, spec: TaskMetric, values: np.ndarray, target: np.ndarray) -> None:
        self.spec, self.values, self.target = spec, values, target
        self.ok = np.isfinite(values) & np.isfinite(target)
        self.fast = (
            spec.kind in ("return", "volume")
            and spec.metric in ("ic", "rank_ic")
            or (spec.kind == "direction" and spec.metric == "auc")
        )
        if self.fast and spec.metric in ("rank_ic", "auc"):
            # group ids of equal values (any id for a non-finite value: never counted)
            self._vg = np.unique(np.where(self.ok, values, 0.0), return_inverse=True)[1]
            self._tg = np.unique(np.where(self.ok, target, 0.0), return_inverse=True)[1]
            self._binary = np.isin(target, (0.0, 1.0))  # see report.oos._direction_labels

    @staticmethod
    def _ranks(groups: np.ndarray) -> np.ndarray:
        counts = np.bincount(groups).astype(np.float64)
        average = np.cumsum(counts) - counts + (counts + 1.0) / 2.0
        return average[groups]

    def score(self, rows: np.ndarray) -> float:
        if not self.fast:
            return self.spec.score(self.values[rows], self.target[rows])
        rows = rows[self.ok[rows]]
        if self.spec.metric == "ic":
            return _corr(self.values[rows], self.target[rows])
        if self.spec.metric == "auc":
            y = self.target[rows]
            label = y > 0.5 if self._binary[rows].all() else y > 0
            pos = int(label.sum())
            neg = label.size - pos
            if pos == 0 or neg == 0:
                return float("nan")
            ranks = self._ranks(self._vg[rows])
            return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))
        if rows.size == 0:
            return float("nan")
        return _corr(self._ranks(self._vg[rows]), self._ranks(self._tg[rows]))


def bootstrap_z_p(point: float, resampled: np.ndarray) -> float:
    """Two-sided p-value of "no difference" from the bootstrap standard error: ``erfc(|z| /
    sqrt 2)``, ``z = point / sd(resampled)``. NaN with fewer than 10 finite resamples or no
    point estimate; a spread of 0 gives 1 for a point of 0 and 0 otherwise."""
    ok = resampled[np.isfinite(resampled)]
    if ok.size < 10 or not math.isfinite(point):
        return float("nan")
    sd = float(np.std(ok, ddof=1))
    if sd == 0.0:
        return 1.0 if point == 0.0 else 0.0
    return float(math.erfc(abs(point) / (sd * math.sqrt(2.0))))


def _time_blocks(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row ranges of each distinct time (rows sorted by time): starts, lengths."""
    _, starts, counts = np.unique(times, return_index=True, return_counts=True)
    return starts, counts


def bootstrap_delta(
    mtl: pd.DataFrame,
    single: pd.DataFrame,
    specs: Sequence[TaskMetric],
    *,
    n_boot: int = 300,
    seed: int = 0,
    block: int | None = None,
    level: float = 0.95,
) -> DeltaResult:
    """Paired circular block bootstrap over time of every per-task difference and of Δm.

    ``mtl`` / ``single``: ``datetime, symbol, <task>, target_<task>`` (seed-averaged
    predictions); rows are paired on (datetime, symbol). ``block`` defaults to
    max(round(T^(1/3)), 2 x the largest horizon) bars: overlapping h-bar targets are
    autocorrelated over ~h bars, and a block must keep that dependence.
    """
    from mtl_bt.stats import _block_indices

    keys = ["datetime", "symbol"]
    cols = [s.task for s in specs]
    left = mtl[
        keys + [c for c in cols if c in mtl] + [f"target_{c}" for c in cols if f"target_{c}" in mtl]
    ]
    right = single[keys + [c for c in cols if c in single]]
    joined = left.merge(right, on=keys, how="inner", suffixes=("", "__st"))
    joined = joined.sort_values(keys, kind="stable").reset_index(drop=True)
    nan = float("nan")
    usable = [
        s
        for s in specs
        if s.task in joined and f"{s.task}__st" in joined and f"target_{s.task}" in joined
    ]
    if joined.empty or not usable:
        return DeltaResult(nan, nan, nan)
    times = joined["datetime"].to_numpy()
    starts, counts = _time_blocks(times)
    n_t = len(starts)
    horizon = max(s.horizon for s in usable)
    blk = max(1, round(n_t ** (1 / 3)), 2 * horizon) if block is None else int(block)
    blk = min(blk, n_t)
    arrays = {
        s.task: (
            joined[s.task].to_numpy(float),
            joined[f"{s.task}__st"].to_numpy(float),
            joined[f"target_{s.task}"].to_numpy(float),
        )
        for s in usable
    }

    scorers = {
        s.task: (_Scorer(s, arrays[s.task][0], arrays[s.task][2]), _Scorer(s, *arrays[s.task][1:]))
        for s in usable
    }

    def stats(rows: np.ndarray | None) -> tuple[dict, dict, dict]:
        diffs, rels, singles = {}, {}, {}
        for s in usable:
            if rows is None:
                m, st, y = arrays[s.task]
                a, b = s.score(m, y), s.score(st, y)
            else:
                score_m, score_st = scorers[s.task]
                a, b = score_m.score(rows), score_st.score(rows)
            diffs[s.task] = a - b
            rels[s.task] = relative(a, b, s.higher_is_better)
            singles[s.task] = b
        return diffs, rels, singles

    point_diff, point_rel, point_single = stats(None)
    rng = np.random.default_rng(seed)
    idx = _block_indices(n_t, blk, n_boot, rng)
    boot_diff = {s.task: np.full(n_boot, nan) for s in usable}
    boot_rel = {s.task: np.full(n_boot, nan) for s in usable}
    boot_single = {s.task: np.full(n_boot, nan) for s in usable}
    for b in range(n_boot):
        picked = idx[b]
        lengths = counts[picked]
        offsets = np.repeat(starts[picked] - np.cumsum(lengths) + lengths, lengths)
        rows = offsets + np.arange(lengths.sum())
        diffs, rels, singles = stats(rows)
        for t in diffs:
            boot_diff[t][b], boot_rel[t][b], boot_single[t][b] = diffs[t], rels[t], singles[t]
    scale = {}
    for t, values in boot_single.items():
        ok = values[np.isfinite(values)]
        scale[t] = float(np.std(ok, ddof=1)) if ok.size > 1 else nan
    flagged = [
        t
        for t in point_single
        if not (math.isfinite(scale[t]) and abs(point_single[t]) > Z_FLAG * scale[t])
    ]
    point_dm = delta_m_without(point_rel, flagged)
    kept = [t for t in point_rel if t not in flagged]
    boot_dm = (
        np.mean(np.stack([boot_rel[t] for t in kept]), axis=0) if kept else np.full(n_boot, nan)
    )
    sign = {s.task: 1.0 if s.higher_is_better else -1.0 for s in usable}
    ok_scale = all(math.isfinite(v) and v > 0 for v in scale.values())

    def standardised(diffs: Mapping[str, Any]) -> Any:
        return sum(sign[t] * np.asarray(diffs[t]) / scale[t] for t in diffs) / len(diffs)

    stable = float(standardised(point_diff)) if ok_scale else nan
    boot_stable = standardised(boot_diff) if ok_scale else np.full(n_boot, nan)
    alpha = (1.0 - level) / 2.0

    def interval(values: np.ndarray) -> tuple[float, float]:
        ok = values[np.isfinite(values)]
        if ok.size < 10:
            return nan, nan
        return float(np.quantile(ok, alpha)), float(np.quantile(ok, 1.0 - alpha))

    per_task = {t: (point_diff[t], *interval(boot_diff[t])) for t in point_diff}
    low, high = interval(boot_dm) if math.isfinite(point_dm) else (nan, nan)
    s_low, s_high = interval(boot_stable)
    return DeltaResult(
        point_dm,
        low,
        high,
        per_task,
        point_rel,
        n_t,
        blk,
        n_boot,
        stable=stable,
        stable_low=s_low,
        stable_high=s_high,
        scale=scale,
        p_values={t: bootstrap_z_p(point_diff[t], boot_diff[t]) for t in point_diff},
        flagged=flagged,
    )
