"""Dataset assembly: pooled time axis, per-row purge, windows that never cross symbols."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt.errors import DataError
from mtl_bt.training import build_components, build_dataset
from mtl_bt.training.dataset import NO_LABEL, assemble, symbol_block
from mtl_bt.training.trainer import make_batches

from .conftest import synthetic_frames, tiny_config


def _block(symbol: str, index: pd.DatetimeIndex, horizon: int, warmup: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"close": np.exp(np.cumsum(rng.normal(0, 0.01, len(index))))}, index=index)
    feats = pd.DataFrame(
        {"f0": np.arange(len(index), dtype=float), "f1": rng.normal(size=len(index))}, index=index
    ).iloc[warmup:]
    lc = np.log(frame["close"])
    targets = pd.DataFrame({"t@h": lc.shift(-horizon) - lc}, index=index)
    return symbol_block(symbol, frame, feats, targets, horizon)


@st.composite
def calendars(draw):
    """2-3 symbols on an hourly grid with their own starts, ends and holes."""
    grid = pd.date_range("2024-01-01", periods=120, freq="1h", tz="UTC")
    out = []
    for _ in range(draw(st.integers(2, 3))):
        start = draw(st.integers(0, 40))
        stop = draw(st.integers(start + 30, 120))
        keep = np.array(draw(st.lists(st.booleans(), min_size=stop - start, max_size=stop - start)))
        keep[:3] = True
        keep = keep | (np.arange(stop - start) % 3 == 0)  # at most two missing bars in a row
        out.append(grid[start:stop][keep])
    return out


@given(calendars(), st.integers(1, 6), st.integers(1, 5))
def test_pooled_rows_windows_and_per_row_purge(indexes, horizon, lookback):
    blocks = [_block(f"S{i}", ix, horizon, seed=i) for i, ix in enumerate(indexes)]
    ds = assemble(blocks, ["f0", "f1"], ["t@h"], horizon, lookback)
    # the axis is the union of post-warm-up timestamps; rows sit at their time
    union = sorted(set().union(*[set(b.features.index) for b in blocks]))
    assert list(ds.axis) == union
    assert (ds.axis[ds.pos] == pd.DatetimeIndex(ds.times, tz="UTC")).all()
    # samples are time-ordered, then by asset
    keys = list(zip(ds.pos[ds.samples], ds.asset[ds.samples], strict=True))
    assert keys == sorted(keys)
    # every window: one symbol, consecutive rows of it, ending at the sample
    win = ds.window_rows(ds.samples)
    assert (ds.asset[win] == ds.asset[ds.samples][:, None]).all()
    assert (np.diff(ds.times[win], axis=1) > 0).all()
    assert (win[:, -1] == ds.samples).all()
    # rows lacking a full window are counted, not hidden
    assert len(ds.samples) + sum(ds.no_window.values()) == len(ds.times)
    # label_end is the axis position of the symbol's own bar t+h
    for b_id, b in enumerate(blocks):
        rows = np.flatnonzero(ds.asset == b_id)
        for k, r in enumerate(rows):
            if ds.label_end[r] == NO_LABEL:
                assert not ds.trainable[r]  # the target runs past the data
                continue
            raw = b.targets.index  # the full bar index of that symbol
            ahead = raw[raw.get_loc(b.features.index[k]) + horizon]
            assert ds.axis[ds.label_end[r]] == ahead
    # a purged selection never holds a row whose target reaches the cut
    cut = len(ds.axis) // 2
    sel = ds.rows_in(0, cut, trainable=True, label_before=cut)
    assert (ds.label_end[sel] < cut).all() and ds.trainable[sel].all()
    assert (ds.pos[sel] < cut).all()


def test_sequence_batches_gather_windows_without_copying_the_matrix():
    a = _block("A", pd.date_range("2024-01-01", periods=20, freq="1h", tz="UTC"), 2)
    b = _block("B", pd.date_range("2024-01-01", periods=20, freq="1h", tz="UTC"), 2, seed=1)
    ds = assemble([a, b], ["f0", "f1"], ["t@h"], 2, lookback=4)
    scaled = torch.from_numpy(ds.features)
    batches = make_batches(scaled, ds.samples, ds.asset, ds.targets, ds.lookback)
    assert batches.x.data_ptr() == scaled.data_ptr()  # the shared matrix, not a copy
    x, asset = batches.inputs(torch.arange(len(batches)))
    assert x.shape == (len(ds.samples), 4, 2)
    # f0 counts rows within a symbol: a window is 4 consecutive rows of one symbol
    assert (torch.diff(x[:, :, 0], dim=1) == 1).all()
    assert x[:, 0, 0].min() == 2  # first full window starts at the first post-warm-up row
    assert (asset == torch.from_numpy(ds.asset[ds.samples])).all()


def test_end_rows_are_predictable_but_never_train():
    ds = assemble(
        [_block("A", pd.date_range("2024-01-01", periods=30, freq="1h", tz="UTC"), 3)],
        ["f0", "f1"],
        ["t@h"],
        3,
    )
    last = ds.samples[-3:]
    assert not ds.trainable[last].any() and ds.trainable[ds.samples[:-3]].all()
    assert len(ds.rows_in(0, len(ds.axis), trainable=False)) == 28


def test_non_finite_feature_names_column_symbol_and_time():
    blk = _block("A", pd.date_range("2024-01-01", periods=30, freq="1h", tz="UTC"), 1)
    blk.features.iloc[5, 1] = np.inf
    with pytest.raises(DataError, match=r"A: feature 'f1' is not finite at 2024-01-01 07:00"):
        assemble([blk], ["f0", "f1"], ["t@h"], 1)


def test_build_dataset_counts_warmup_and_keeps_symbol_order():
    cfg = tiny_config()
    comp = build_components(cfg)
    frames = synthetic_frames(n=300, symbols=("ZZZ", "AAA"))
    ds = build_dataset(frames, comp.feature_spec, comp.tasks, 1)
    warm = comp.feature_spec.warmup()
    assert ds.symbols == ["ZZZ", "AAA"] and ds.warmup == {"ZZZ": warm, "AAA": warm}
    assert len(ds.times) == 2 * (300 - warm)
    assert ds.feature_columns == comp.feature_spec.columns()
    assert ds.horizon == 4 and (~ds.trainable).sum() == 2 * 4  # last 4 bars lack volatility@4
    with pytest.raises(DataError, match="ZZZ"):
        build_dataset({"ZZZ": synthetic_frames(n=warm)["AAA"]}, comp.feature_spec, comp.tasks, 1)
