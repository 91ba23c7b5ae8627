"""The bootstrap's scorer of resampled rows equals scoring the resampled arrays: rank IC
from per-replicate group counts is pandas' average rank of the resample, bit for bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt.compare.delta import TaskMetric, _Scorer


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 60),
    levels=st.integers(1, 8),
    nan_share=st.sampled_from([0.0, 0.1, 0.5]),
    binary=st.booleans(),
)
def test_resampled_score_equals_scoring_the_resample(seed, n, levels, nan_share, binary):
    rng = np.random.default_rng(seed)
    # few distinct values: many ties, inside one resample and across the two arrays
    values = rng.integers(0, levels, n).astype(float) * 0.25 - 0.5
    target = rng.normal(size=n).round(1)
    if binary:  # direction targets as 0/1 labels (else the sign of a return)
        target = (target > 0).astype(float)
    values[rng.random(n) < nan_share] = np.nan
    target[rng.random(n) < nan_share / 2] = np.inf
    specs = [
        TaskMetric("return@1", "rank_ic"),
        TaskMetric("return@1", "ic"),
        TaskMetric("volume@1", "ic"),
        TaskMetric("volume@1", "rank_ic"),
        TaskMetric("direction@1", "auc"),
    ]
    for _ in range(5):
        rows = rng.integers(0, n, rng.integers(1, 2 * n + 1))  # repeats and omissions
        for spec in specs:
            want = spec.score(values[rows], target[rows])
            got = _Scorer(spec, values, target).score(rows)
            assert (np.isnan(want) and np.isnan(got)) or got == want, (spec, rows, got, want)


def test_the_fast_path_is_taken_for_rank_ic_and_auc():
    values, target = np.arange(5.0), np.arange(5.0)[::-1].copy()
    assert _Scorer(TaskMetric("direction@1", "auc"), values, target).fast
    assert not _Scorer(TaskMetric("volatility@1", "qlike"), values, target).fast
    scorer = _Scorer(TaskMetric("return@1", "rank_ic"), values, target)
    assert scorer.fast
    assert scorer.score(np.array([0, 0, 1, 4])) == TaskMetric("return@1", "rank_ic").score(
        values[[0, 0, 1, 4]], target[[0, 0, 1, 4]]
    )
