"""Targets: exact definitions, NaN tails, and which bars each target may depend on."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt.data.synthetic import garch_bars
from mtl_bt.errors import DataError
from mtl_bt.tasks import build_targets, build_tasks

KINDS = ["return", "direction", "volatility", "volume"]


def _task(kind, h, **options):
    return build_tasks([{"name": kind, "horizons": [h], "options": options}])[0]


def test_definitions_against_loops():
    f = garch_bars(90, seed=8)
    c, v = f["close"].to_numpy(), f["volume"].to_numpy()
    h, w = 4, 6
    r = np.diff(np.log(c), prepend=np.nan)
    tasks = [
        _task("return", h),
        _task("direction", h),
        _task("volatility", h),
        _task("volume", h, window=w),
    ]
    T = build_targets(f, tasks)
    assert list(T.columns) == ["return@4", "direction@4", "volatility@4", "volume@4"]
    for t in range(len(f)):
        known = t + h < len(f)
        ret = math.log(c[t + h] / c[t]) if known else np.nan
        vol = math.sqrt(np.mean(r[t + 1 : t + h + 1] ** 2)) if known else np.nan
        volu = (
            math.log(v[t + 1 : t + h + 1].mean() / v[t - w + 1 : t + 1].mean())
            if known and t >= w - 1
            else np.nan
        )
        np.testing.assert_allclose(
            T.iloc[t].to_numpy(),
            [ret, (1.0 if ret > 0 else 0.0) if known else np.nan, vol, volu],
            rtol=1e-12,
            equal_nan=True,
        )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("h", [1, 3, 10])
def test_nan_exactly_where_unknown(kind, h):
    f = garch_bars(120, seed=h)
    task = _task(kind, h)
    y = task.build_target(f)
    assert y.index.equals(f.index) and y.name == f"{kind}@{h}"
    assert y.iloc[-h:].isna().all()
    assert np.isfinite(y.iloc[task.lookback : -h]).all()
    assert y.iloc[: task.lookback].isna().all()
    assert task.lookback == (19 if kind == "volume" else 0)


@given(kind=st.sampled_from(KINDS), h=st.integers(1, 8), seed=st.integers(0, 1000), data=st.data())
def test_target_depends_only_on_its_window(kind, h, seed, data):
    """Target at t is a function of bars t-lookback..t+h only: perturbing any bar
    outside that window leaves it unchanged (no hidden further look-ahead)."""
    n = 80
    task = _task(kind, h, **({"window": 5} if kind == "volume" else {}))
    f = garch_bars(n, seed=seed)
    t = data.draw(st.integers(task.lookback, n - h - 1), label="t")
    outside = [i for i in range(n) if i < t - task.lookback or i > t + h]
    if not outside:
        return
    picks = data.draw(st.lists(st.sampled_from(outside), min_size=1, max_size=5), label="bars")
    g = f.copy()
    for i in picks:
        g.iloc[i, :5] = g.iloc[i, :5].to_numpy() * data.draw(st.floats(0.5, 2.0), label="x")
    assert task.build_target(f).iloc[t] == task.build_target(g).iloc[t]


@given(
    kind=st.sampled_from(["return", "volatility", "volume"]),
    h=st.integers(1, 8),
    seed=st.integers(0, 1000),
    data=st.data(),
)
def test_target_reacts_to_the_future_bars_it_uses(kind, h, seed, data):
    """...and it does react to the bars t+1..t+h (so the previous law is not vacuous)."""
    n = 60
    task = _task(kind, h, **({"window": 5} if kind == "volume" else {}))
    f = garch_bars(n, seed=seed)
    t = data.draw(st.integers(task.lookback, n - h - 1), label="t")
    # the return target depends on close[t+h] only; vol and volume on every bar t+1..t+h
    i = t + h if kind == "return" else data.draw(st.integers(t + 1, t + h), label="i")
    g = f.copy()
    g.iloc[i, :5] = g.iloc[i, :5].to_numpy() * 1.1
    assert task.build_target(f).iloc[t] != task.build_target(g).iloc[t]


def test_direction_tie_is_down_and_volatility_zero_move():
    f = garch_bars(10, seed=1)
    f["close"] = 100.0
    assert (_task("direction", 2).build_target(f).iloc[:-2] == 0.0).all()
    vol = _task("volatility", 2).build_target(f)
    assert (vol.iloc[1:-2] == 0.0).all()  # a real zero, floored only inside the loss


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda f: f.assign(volume=np.nan), ["missing (NaN/inf) in 50 of 50 bars"]),
        (lambda f: f.assign(volume=0.0), ["zero in every bar"]),
        (lambda f: f.assign(volume=1234.0), ["constant (1234)"]),
        (lambda f: f.drop(columns="volume"), ["no volume column"]),
    ],
)
def test_volume_task_refuses_constant_or_missing_volume(change, words):
    f = change(garch_bars(50, seed=3, symbol="IDX"))
    f.attrs["symbol"] = "IDX"
    with pytest.raises(DataError) as err:
        build_targets(f, build_tasks([{"name": "volume", "horizons": [1]}]))
    msg = str(err.value)
    for word in ["IDX", "volume@1", "uncertainty weighting", "[[tasks]]", *words]:
        assert word in msg


def test_volume_target_zero_volume_windows_are_clipped_not_inf():
    f = garch_bars(60, seed=5)
    f.iloc[30:36, 4] = 0.0
    y = _task("volume", 1, window=3).build_target(f)
    finite = y.iloc[2:-1]
    assert np.isfinite(finite).all()
    assert finite.min() == pytest.approx(math.log(1e-3)) and finite.max() == pytest.approx(
        math.log(1e3)
    )


def test_real_data_targets(crypto_frames):
    tasks = build_tasks(
        [
            {"name": "return", "horizons": [1, 5]},
            {"name": "direction", "horizons": [1]},
            {"name": "volatility", "horizons": [1, 24]},
            {"name": "volume", "horizons": [1]},
        ]
    )
    for symbol, frame in crypto_frames.items():
        T = build_targets(frame, tasks)
        body = T.iloc[19:-24]
        assert np.isfinite(body.to_numpy()).all(), symbol
        assert 0.4 < body["direction@1"].mean() < 0.6
        # per-bar vol of the next day vs realised over 1 bar: same scale, hourly ~ 0.2%-2%
        assert 0.001 < body["volatility@24"].median() < 0.02
        assert abs(body["volume@1"].median()) < 1.0
        r5 = np.log(frame["close"]).diff(5).shift(-5)
        pd.testing.assert_series_equal(
            T["return@5"], r5.rename("return@5"), check_exact=False, rtol=1e-9
        )
