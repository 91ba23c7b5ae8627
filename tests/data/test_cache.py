"""The on-disk cache: hit, partial top-up, corrupt file recovered, atomic writes, clear."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtl_bt import hookimpl, registry
from mtl_bt.config import DataConfig
from mtl_bt.data import load_frames
from mtl_bt.data.cache import BARS_DIR, Cache, CacheKey, cache_dir
from mtl_bt.data.source import Source, clip
from mtl_bt.data.synthetic import garch_bars
from mtl_bt.data.validate import DataWarning

#: the whole "exchange history" the counting source serves
HISTORY = garch_bars(24 * 60, seed=11, freq="1h", start="2024-01-01")
NOW = pd.Timestamp("2024-03-01 00:30", tz="UTC")  # the 2024-03-01 00:00 bar is forming


class CountingSource(Source):
    """A network-like source over a fixed synthetic history that records every request."""

    name = "counting"
    cacheable = True
    default_timeframe = "1h"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []

    def cache_namespace(self, options: dict[str, Any]) -> str:
        return "venue-" + str(options.get("venue", "a"))

    def fetch(self, symbols, *, timeframe=None, since=None, until=None, **options):
        self.calls.append((since, until))
        out = {}
        for symbol in symbols:
            frame = clip(HISTORY, since, until)
            frame = frame[frame.index <= NOW]  # includes the forming bar, like an exchange
            frame = frame * (2.0 if symbol == "B" else 1.0)
            frame.attrs = {"symbol": symbol, "timeframe": "1h", "source": "counting"}
            out[symbol] = frame
        return out


@pytest.fixture
def counting():
    source = CountingSource()

    class Plugin:
        @hookimpl
        def register_sources(self, register):
            register("counting", lambda: source, "test source")

    registry.register_plugin(Plugin(), "counting_plugin")
    yield source
    registry.unregister_plugin("counting_plugin")


def _cfg(**kw) -> DataConfig:
    base = {"source": "counting", "symbols": ["A"], "timeframe": "1h"}
    return DataConfig(**{**base, **kw})


def _load(cfg, root, **kw):
    return load_frames(cfg, cache_dir=root, now=lambda: NOW, **kw)


def _expected(since, until, scale=1.0):
    return clip(HISTORY, pd.Timestamp(since, tz="UTC"), pd.Timestamp(until, tz="UTC")) * scale


def test_hit_and_partial_top_up(counting, tmp_path):
    cfg = _cfg(symbols=["A", "B"], since="2024-01-10", until="2024-01-20")
    first = _load(cfg, tmp_path)
    assert len(counting.calls) == 1  # both symbols cold: one batched call
    assert Cache(tmp_path).files() and len(Cache(tmp_path).files()) == 2
    second = _load(cfg, tmp_path)
    assert len(counting.calls) == 1  # hit: no request
    for symbol, scale in (("A", 1.0), ("B", 2.0)):
        pd.testing.assert_frame_equal(second[symbol], first[symbol])
        np.testing.assert_array_equal(
            first[symbol].to_numpy(), _expected("2024-01-10", "2024-01-20", scale).to_numpy()
        )
    # a sub-range is served from the cache too
    inner = _load(_cfg(since="2024-01-12", until="2024-01-13"), tmp_path)["A"]
    assert len(counting.calls) == 1 and len(inner) == 24
    # wider on both sides: only the two missing pieces are requested
    wide = _load(_cfg(since="2024-01-05", until="2024-01-25"), tmp_path)["A"]
    assert counting.calls[1:] == [
        (pd.Timestamp("2024-01-05", tz="UTC"), pd.Timestamp("2024-01-10", tz="UTC")),
        (pd.Timestamp("2024-01-20", tz="UTC"), pd.Timestamp("2024-01-25", tz="UTC")),
    ]
    np.testing.assert_array_equal(wide.to_numpy(), _expected("2024-01-05", "2024-01-25").to_numpy())
    assert wide.index.equals(_expected("2024-01-05", "2024-01-25").index)


def test_open_ended_request_never_caches_the_forming_bar(counting, tmp_path):
    frame = _load(_cfg(since="2024-02-28"), tmp_path)["A"]
    assert frame.index[-1] == pd.Timestamp("2024-02-29 23:00", tz="UTC")
    entry = Cache(tmp_path).load(CacheKey("counting", "venue-a", "A", "1h"))
    assert entry is not None and entry.frame.index[-1] == frame.index[-1]
    assert entry.end <= NOW - pd.Timedelta("1h") + pd.Timedelta("1us")
    _load(_cfg(since="2024-02-28"), tmp_path)
    assert len(counting.calls) == 1  # nothing new has closed since


def test_cache_key_separates_namespaces_and_no_cache_bypasses(counting, tmp_path):
    cfg = _cfg(since="2024-01-10", until="2024-01-11")
    _load(cfg, tmp_path)
    _load(cfg.model_copy(update={"options": {"venue": "b"}}), tmp_path)
    assert len(counting.calls) == 2
    _load(cfg, tmp_path, no_cache=True)
    _load(cfg.model_copy(update={"cache": False}), tmp_path)
    assert len(counting.calls) == 4
    assert len(Cache(tmp_path).files()) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "invalid_bars"])
def test_corrupt_cache_file_is_reported_and_refetched(counting, tmp_path, damage):
    cfg = _cfg(since="2024-01-10", until="2024-01-12")
    good = _load(cfg, tmp_path)["A"]
    (path,) = Cache(tmp_path).files()
    if damage == "garbage":
        path.write_bytes(b"this is not parquet")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # readable Parquet, but the bars break the rules (high below close)
        table = pq.read_table(path)
        frame = table.to_pandas()
        frame["high"] = frame["low"] * 0.5
        broken = pa.Table.from_pandas(frame).replace_schema_metadata(table.schema.metadata)
        pq.write_table(broken, path)
    with pytest.warns(DataWarning, match=rf"cache file {path} is corrupt.*refetching"):
        again = _load(cfg, tmp_path)["A"]
    assert len(counting.calls) == 2
    pd.testing.assert_frame_equal(again, good)
    assert Cache(tmp_path).load(CacheKey("counting", "venue-a", "A", "1h")) is not None


def test_interrupted_cache_write_leaves_old_file_intact(counting, tmp_path, monkeypatch):
    cfg = _cfg(since="2024-01-10", until="2024-01-12")
    _load(cfg, tmp_path)
    (path,) = Cache(tmp_path).files()
    before = path.read_bytes()

    def killed(table, where, *args, **kwargs):
        with open(where, "wb") as handle:
            handle.write(before[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(pq, "write_table", killed)
    with pytest.raises(KeyboardInterrupt):
        _load(_cfg(since="2024-01-05", until="2024-01-12"), tmp_path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    entry = Cache(tmp_path).load(CacheKey("counting", "venue-a", "A", "1h"))
    assert entry is not None and entry.start == pd.Timestamp("2024-01-10", tz="UTC")


def test_cache_dir_resolution_and_clear(counting, tmp_path, monkeypatch):
    assert cache_dir(tmp_path / "opt") == tmp_path / "opt"
    monkeypatch.setenv("MTL_BT_CACHE_DIR", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    monkeypatch.delenv("MTL_BT_CACHE_DIR")
    assert "mtl-bt" in str(cache_dir())
    monkeypatch.setenv("MTL_BT_CACHE_DIR", str(tmp_path / "env"))
    _load(_cfg(since="2024-01-10", until="2024-01-11"), None)
    (tmp_path / "env" / "keep.txt").write_text("not ours")
    files, size, failed = Cache().clear()
    assert failed == []
    assert files == 1 and size > 0
    assert not (tmp_path / "env" / BARS_DIR).exists()
    assert (tmp_path / "env" / "keep.txt").exists()  # only mtl-bt's folder is removed
    assert os.listdir(tmp_path / "env") == ["keep.txt"]


def test_bar_that_closes_exactly_now_is_kept_and_cache_stays_valid(counting, tmp_path):
    exact = NOW.floor("1h")  # 2024-03-01 00:00: the 23:00 bar closed exactly then
    cfg = _cfg(since="2024-02-29 20:00")
    early = load_frames(cfg, cache_dir=tmp_path, now=lambda: exact - pd.Timedelta("90min"))
    assert early["A"].index[-1] == pd.Timestamp("2024-02-29 21:00", tz="UTC")
    frames = load_frames(cfg, cache_dir=tmp_path, now=lambda: exact)  # tops up the tail
    assert frames["A"].index[-1] == pd.Timestamp("2024-02-29 23:00", tz="UTC")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # no "corrupt" report
        entry = Cache(tmp_path).load(CacheKey("counting", "venue-a", "A", "1h"))
    assert entry is not None and entry.frame.index[-1] == pd.Timestamp("2024-02-29 23:00", tz="UTC")
    assert len(entry.frame) == 4 and len(counting.calls) == 2
