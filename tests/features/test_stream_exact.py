"""The streaming feature paths equal the vectorised ``compute`` bit for bit.

Two engines (``mtl_bt.features.streaming``): ``FeatureStream`` (one asset, scalar
updaters) and ``BatchStream`` (a step's bars of many assets, one vectorised update per
feature). Both are held to ``compute`` exactly: on the bundled crypto sample, with assets
arriving at different steps, and on hypothesis-generated bars and parameters.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt import registry
from mtl_bt.data.synthetic import garch_bars
from mtl_bt.errors import DataError
from mtl_bt.features import DEFAULT_FEATURES, FeatureSpec, compute
from mtl_bt.features.streaming import BatchStream, batch_frames, stream_frame

sys.path.insert(0, str(Path(__file__).parent))
from test_causality import _params, _shaped  # noqa: E402


def _want(frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    return compute(frame, spec).to_numpy(np.float64)


def _ragged(frames: dict[str, pd.DataFrame], seed: int) -> list[pd.DataFrame]:
    """The frames with different calendars: one starts late, one misses random bars, one
    ends early, so steps deliver different subsets of the assets."""
    rng = np.random.default_rng(seed)
    out = []
    for i, f in enumerate(frames.values()):
        if i % 3 == 1:
            f = f.iloc[np.sort(rng.choice(len(f), len(f) * 3 // 4, replace=False))]
        elif i % 3 == 2:
            f = f.iloc[len(f) // 5 : len(f) - len(f) // 7]
        out.append(f)
    return out


@pytest.fixture(scope="module")
def crypto(crypto_frames):
    return {s: f.iloc[:1200] for s, f in crypto_frames.items()}


def test_every_built_in_streams_exactly_on_the_sample_one_asset_and_batched(crypto):
    spec = FeatureSpec()
    assert spec.names == list(DEFAULT_FEATURES)
    frames = _ragged(crypto, 0)
    batched = batch_frames(spec, frames)
    for frame, got in zip(frames, batched, strict=True):
        want = _want(frame, spec)
        np.testing.assert_array_equal(stream_frame(spec, frame), want)  # NaN warm-up included
        np.testing.assert_array_equal(got, want)
    # every asset alone in a BatchStream (steps of one asset) as well
    (alone,) = batch_frames(spec, frames[:1])
    np.testing.assert_array_equal(alone, _want(frames[0], spec))


def test_non_default_parameters_and_a_column_subset(crypto):
    params = {
        "log_return": {"windows": [2, 3, 17]},
        "close_sma": {"window": 1},
        "close_ema": {"span": 3},
        "volatility": {"window": 2},
        "momentum": {"window": 7},
        "rsi": {"window": 5},
        "macd": {"fast": 3, "slow": 9},
        "bollinger": {"window": 9, "k": 1.5},
        "volume_ratio": {"window": 4, "floor": 0.5},
        "volume_zscore": {"window": 33},
        "parkinson": {"window": 1},
        "garman_klass": {"window": 12},
    }
    spec = FeatureSpec(params=params)
    frames = _ragged(crypto, 1)
    cols = spec.columns()[::-3]
    for frame, got in zip(frames, batch_frames(spec, frames, cols), strict=True):
        want = compute(frame, spec)[cols].to_numpy(np.float64)
        np.testing.assert_array_equal(stream_frame(spec, frame, cols), want)
        np.testing.assert_array_equal(got, want)


@given(seed=st.integers(0, 10_000), n=st.integers(2, 160), data=st.data())
def test_streamed_rows_equal_compute_on_generated_bars(seed: int, n: int, data) -> None:
    """Random GARCH bars with flat stretches, jumps and volume spikes or zeros, random
    windows, three assets with random arrival patterns: both engines equal compute."""
    frames = []
    rng = np.random.default_rng(seed)
    for k in range(3):
        f = _shaped(garch_bars(n, seed=seed + k), data)
        drop = data.draw(st.sampled_from([0.0, 0.1, 0.5]), label=f"drop{k}")
        keep = rng.random(n) >= drop  # this asset misses about that share of the steps
        if keep.any():
            f = f.iloc[np.flatnonzero(keep)]
        frames.append(f)
    spec = FeatureSpec(params=_params(data) if data.draw(st.booleans(), label="p") else {})
    try:
        wants = [_want(f, spec) for f in frames]
    except DataError:  # a frame whose volume is zero in every bar: compute refuses it
        return
    for frame, got, want in zip(frames, batch_frames(spec, frames), wants, strict=True):
        np.testing.assert_array_equal(stream_frame(spec, frame), want)
        np.testing.assert_array_equal(got, want)


def test_a_feature_without_updaters_falls_back_to_recompute_in_both_engines(crypto, monkeypatch):
    """A third-party feature (here close_sma and volume_zscore with their updaters removed)
    is recomputed over its window per asset; exact for a window-only feature."""
    for name in ("close_sma", "volume_zscore"):
        fn = registry.get("feature", name)
        monkeypatch.setattr(fn, "stream", None)
        monkeypatch.setattr(fn, "batch", None)
    spec = FeatureSpec(names=["close_sma", "rsi", "volume_zscore"])
    # 400 bars each (the recompute is per bar over the window): ragged calendars all the same
    frames = _ragged({s: f.iloc[:400] for s, f in crypto.items()}, 2)[:3]
    for frame, got in zip(frames, batch_frames(spec, frames), strict=True):
        want = _want(frame, spec)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(stream_frame(spec, frame), want)


def test_batch_refuses_a_bad_bar_naming_the_asset_and_a_double_bar():
    stream = BatchStream(FeatureSpec(), ["A", "B"])
    good = (1.7e15, 10.0, 11.0, 9.0, 10.5, 5.0)
    stream.push([0, 1], [good, good])
    with pytest.raises(DataError, match=r"B: low is -9.0 .*bar 1"):
        stream.push([0, 1], [good, (1.8e15, 10.0, 11.0, -9.0, 10.5, 5.0)])
    with pytest.raises(DataError, match=r"A: volume is nan"):
        stream.push([0], [(1.8e15, 10.0, 11.0, 9.0, 10.5, float("nan"))])
    with pytest.raises(ValueError, match="two bars in one step"):
        stream.push([1, 1], [good, good])
