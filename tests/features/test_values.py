"""Each built-in feature against a slow, loop-based reference of its formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtl_bt.data.synthetic import garch_bars
from mtl_bt.features import FeatureSpec, compute

N = 160


@pytest.fixture(scope="module")
def frame():
    return garch_bars(N, seed=11)


def _one(frame, name, **params):
    spec = FeatureSpec(names=[name], params={name: params} if params else {})
    return compute(frame, spec), spec.warmup()


def _ema_ref(x, alpha):
    out, y = [], x[0]
    for v in x:
        y = alpha * v + (1 - alpha) * y
        out.append(y)
    return np.array(out)


def _check(got, ref, warm):
    got = np.asarray(got, dtype=float)
    assert np.isnan(got[:warm]).all()
    np.testing.assert_allclose(got[warm:], np.asarray(ref)[warm:], rtol=1e-9, atol=1e-12)


def test_log_return(frame):
    out, warm = _one(frame, "log_return", windows=[1, 3, 7])
    c = frame["close"].to_numpy()
    assert list(out.columns) == ["log_return_1", "log_return_3", "log_return_7"] and warm == 7
    for w in (1, 3, 7):
        ref = [math.log(c[t] / c[t - w]) if t >= w else np.nan for t in range(N)]
        _check(out[f"log_return_{w}"].to_numpy()[w:], ref[w:], 0)
        assert np.isnan(out[f"log_return_{w}"].to_numpy()[:w]).all()


def test_close_sma_and_momentum(frame):
    c = frame["close"].to_numpy()
    out, warm = _one(frame, "close_sma", window=9)
    assert warm == 8
    _check(
        out["close_sma"],
        [math.log(c[t] / c[t - 8 : t + 1].mean()) if t >= 8 else 0 for t in range(N)],
        8,
    )
    out, warm = _one(frame, "momentum", window=6)
    _check(out["momentum"], [math.log(c[t] / c[t - 6]) if t >= 6 else 0 for t in range(N)], warm)


def test_close_ema_and_macd(frame):
    c = frame["close"].to_numpy()
    out, warm = _one(frame, "close_ema", span=10)
    # seed weight (9/11)^n < 5% first at n = 15
    assert warm == 15
    _check(out["close_ema"], np.log(c / _ema_ref(c, 2 / 11)), warm)
    out, warm = _one(frame, "macd", fast=5, slow=10)
    assert warm == 15
    ref = (_ema_ref(c, 2 / 6) - _ema_ref(c, 2 / 11)) / c
    _check(out["macd"], ref, warm)


def test_volatility(frame):
    r = np.diff(np.log(frame["close"].to_numpy()))
    out, warm = _one(frame, "volatility", window=12)
    assert warm == 12
    ref = [np.std(r[t - 12 : t], ddof=1) if t >= 12 else 0 for t in range(N)]
    _check(out["volatility"], ref, warm)


def test_rsi_is_wilder(frame):
    c = frame["close"].to_numpy()
    out, warm = _one(frame, "rsi", window=7)
    assert warm == 1 + math.ceil(math.log(0.05) / math.log(6 / 7))
    d = np.diff(c)
    g = _ema_ref(np.maximum(d, 0), 1 / 7)
    lo = _ema_ref(np.maximum(-d, 0), 1 / 7)
    with np.errstate(divide="ignore"):
        ref = np.concatenate([[np.nan], 100 - 100 / (1 + g / lo)])
    _check(out["rsi"], ref, warm)
    assert ((out["rsi"].dropna() >= 0) & (out["rsi"].dropna() <= 100)).all()


def test_rsi_edge_cases():
    up = garch_bars(80, seed=1)
    up["close"] = np.linspace(100, 200, 80)
    out, warm = _one(up, "rsi", window=5)
    assert (out["rsi"].iloc[warm:] == 100.0).all()
    flat = garch_bars(80, seed=1)
    flat["close"] = 100.0
    out, warm = _one(flat, "rsi", window=5)
    assert (out["rsi"].iloc[warm:] == 50.0).all()


def test_bollinger(frame):
    c = frame["close"].to_numpy()
    out, warm = _one(frame, "bollinger", window=10, k=1.5)
    assert warm == 9
    ref = [
        (c[t] - c[t - 9 : t + 1].mean()) / (1.5 * c[t - 9 : t + 1].std()) if t >= 9 else 0
        for t in range(N)
    ]
    _check(out["bollinger"], ref, warm)


def test_bollinger_flat_window_is_zero_not_inf():
    f = garch_bars(60, seed=2)
    f.iloc[20:45, :4] = 101.3
    out, warm = _one(f, "bollinger", window=10)
    assert np.isfinite(out["bollinger"].iloc[warm:]).all()
    assert (out["bollinger"].iloc[29:45] == 0.0).all()


def test_volume_features(frame):
    v = frame["volume"].to_numpy()
    out, warm = _one(frame, "volume_ratio", window=8)
    assert warm == 7
    _check(
        out["volume_ratio"],
        [math.log(v[t] / v[t - 7 : t + 1].mean()) if t >= 7 else 0 for t in range(N)],
        7,
    )
    out, warm = _one(frame, "volume_zscore", window=8)
    ref = [
        (v[t] - v[t - 7 : t + 1].mean()) / v[t - 7 : t + 1].std(ddof=1) if t >= 7 else 0
        for t in range(N)
    ]
    _check(out["volume_zscore"], ref, warm)


def test_zero_volume_bars_stay_finite():
    f = garch_bars(80, seed=4)
    f.iloc[30:55, 4] = 0.0
    spec = FeatureSpec(
        names=["volume_ratio", "volume_zscore"], params={"volume_ratio": {"window": 5}}
    )
    out = compute(f, spec).iloc[spec.warmup() :]
    assert np.isfinite(out.to_numpy()).all()
    # all-zero window: ratio 1 -> 0; zero bar in a live window: floored at log(1e-3)
    assert out["volume_ratio"].loc[f.index[40]] == 0.0
    assert out["volume_ratio"].loc[f.index[30]] == pytest.approx(math.log(1e-3))


def test_range_volatility(frame):
    o, h, lo, c = (frame[k].to_numpy() for k in ("open", "high", "low", "close"))
    hl2 = np.log(h / lo) ** 2
    out, warm = _one(frame, "parkinson", window=10)
    assert warm == 9
    ref = [
        math.sqrt(hl2[t - 9 : t + 1].mean() / (4 * math.log(2))) if t >= 9 else 0 for t in range(N)
    ]
    _check(out["parkinson"], ref, warm)
    gk = 0.5 * hl2 - (2 * math.log(2) - 1) * np.log(c / o) ** 2
    out, warm = _one(frame, "garman_klass", window=10)
    ref = [math.sqrt(max(gk[t - 9 : t + 1].mean(), 0)) if t >= 9 else 0 for t in range(N)]
    _check(out["garman_klass"], ref, warm)
    # both estimate the same per-bar volatility scale as close-to-close vol
    vol = compute(frame, FeatureSpec(names=["volatility"]))["volatility"].iloc[40:].mean()
    assert 0.3 < out["garman_klass"].iloc[40:].mean() / vol < 3.0
