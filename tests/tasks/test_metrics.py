"""mtl_bt.metrics.prediction against scipy and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from mtl_bt.metrics import prediction as pm

# scaled integers: realistic magnitudes, many ties, no subnormal underflow
floats = st.integers(-100_000, 100_000).map(lambda i: i / 100)


def _auc_brute(score, label):
    pos = [s for s, y in zip(score, label, strict=True) if y > 0.5]
    neg = [s for s, y in zip(score, label, strict=True) if y <= 0.5]
    total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return total / (len(pos) * len(neg))


@given(st.lists(st.tuples(floats, floats), min_size=3, max_size=60))
def test_ic_and_rank_ic_match_scipy(pairs):
    x, y = np.array(pairs).T
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        assert math.isnan(pm.ic(x, y)) and math.isnan(pm.rank_ic(x, y))
        return
    ref = stats.pearsonr(x, y).statistic
    if np.isfinite(ref):
        assert pm.ic(x, y) == pytest.approx(ref, abs=1e-9)
    assert pm.rank_ic(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-9)


@given(st.lists(st.integers(-5, 5), min_size=1, max_size=50))
def test_rankdata_matches_scipy_average_ties(values):
    np.testing.assert_array_equal(pm.rankdata(np.array(values, float)), stats.rankdata(values))


@given(
    st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=2, max_size=40).filter(
        lambda v: 0 < sum(b for _, b in v) < len(v)
    )
)
def test_auc_matches_brute_force_with_ties(pairs):
    score = np.array([float(s) for s, _ in pairs])
    label = np.array([float(b) for _, b in pairs])
    assert pm.auc(score, label) == pytest.approx(_auc_brute(score, label), abs=1e-12)


def test_auc_known_values():
    assert pm.auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert pm.auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert pm.auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    assert math.isnan(pm.auc([0.1, 0.2], [1, 1]))  # one class: undefined


def test_rmse_accuracy_base_rate_log_loss():
    assert pm.rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert pm.accuracy([0.9, 0.4, 0.6, 0.5], [1, 0, 0, 0]) == 0.75  # 0.5 is "down"
    assert pm.base_rate([1, 0, 1, 1]) == 0.75
    assert pm.log_loss([0.8, 0.3], [1, 0]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)


def test_qlike_zero_at_truth_positive_elsewhere():
    s = np.array([1e-4, 4e-4, 2.5e-5])
    assert pm.qlike(s, s) == pytest.approx(0.0, abs=1e-15)
    assert pm.qlike(2 * s, s) == pytest.approx(0.5 - math.log(0.5) - 1)
    # asymmetric: under-forecasting variance costs more than over-forecasting
    assert pm.qlike(s / 2, s) > pm.qlike(2 * s, s) > 0


def test_nan_pairs_are_dropped():
    p = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    t = np.array([1.0, 2.5, 3.0, np.inf, 4.0])
    keep = [0, 1, 4]
    assert pm.ic(p, t) == pytest.approx(pm.ic(p[keep], t[keep]))
    assert pm.rmse(p, t) == pytest.approx(pm.rmse(p[keep], t[keep]))
    assert math.isnan(pm.ic([np.nan, 1.0], [1.0, 2.0]))
    assert math.isnan(pm.rmse([], []))
    with pytest.raises(ValueError, match="length mismatch"):
        pm.ic([1.0, 2.0], [1.0])
