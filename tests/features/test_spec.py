"""FeatureSpec, compute, drop_warmup: plain data, validation, clear errors."""

from __future__ import annotations

import io
import json
import re
import sys
import types

import numpy as np
import pandas as pd
import pytest
import torch

from mtl_bt import registry
from mtl_bt.data.synthetic import garch_bars
from mtl_bt.errors import ConfigError, DataError, PluginError
from mtl_bt.features import (
    DEFAULT_FEATURES,
    PRICE_FEATURES,
    REFERENCE_FEATURES,
    FeatureSpec,
    compute,
    drop_warmup,
    feature,
)


def test_builtins_registered_with_descriptions():
    names = registry.names("feature")
    for name in DEFAULT_FEATURES:
        assert name in names
        assert registry.registry().entry("feature", name).description


def test_default_spec_order_and_reference_ten():
    spec = FeatureSpec()
    assert spec.names == list(DEFAULT_FEATURES)
    ref = FeatureSpec(names=list(REFERENCE_FEATURES)).columns()
    assert len(ref) == 10
    assert ref[:3] == ["log_return_1", "log_return_5", "log_return_10"]
    assert spec.columns()[:10] == ref
    assert spec.warmup() == max(FeatureSpec(names=[n]).warmup() for n in DEFAULT_FEATURES)


def test_to_dict_is_plain_and_round_trips_through_weights_only_checkpoint():
    spec = FeatureSpec(names=["log_return", "rsi"], params={"log_return": {"windows": (2, 4)}})
    data = spec.to_dict()
    assert data == {
        "names": ["log_return", "rsi"],
        "params": {"log_return": {"windows": [2, 4]}, "rsi": {"window": 14}},
    }
    json.dumps(data)
    buf = io.BytesIO()
    torch.save({"feature_spec": data}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)["feature_spec"]
    again = FeatureSpec.from_dict(loaded)
    assert again == spec and again.columns() == spec.columns() and again.warmup() == spec.warmup()
    assert FeatureSpec() != spec


def test_from_config():
    from mtl_bt.config import FeaturesConfig

    spec = FeatureSpec.from_config(
        FeaturesConfig(names=["macd"], params={"macd": {"fast": 3, "slow": 9}})
    )
    assert spec.columns() == ["macd"] and spec.resolved_params() == {"macd": {"fast": 3, "slow": 9}}


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"params": {"rsi": {"windw": 3}}}, ["rsi", "windw", "window"]),
        ({"params": {"rsi": {"window": 0}}}, ["rsi.window", "0"]),
        ({"params": {"rsi": {"window": 2.5}}}, ["rsi.window"]),
        ({"params": {"macd": {"fast": 30}}}, ["macd", "fast", "slow"]),
        ({"params": {"log_return": {"windows": []}}}, ["log_return.windows"]),
        ({"params": {"bollinger": {"k": -1}}}, ["bollinger.k"]),
        ({"names": ["rsi"], "params": {"macd": {"fast": 3}}}, ["macd", "not in features.names"]),
        ({"names": ["rsi", "rsi"]}, ["rsi", "more than once"]),
        ({"names": []}, ["features.names"]),
    ],
)
def test_bad_spec_is_a_config_error_naming_the_problem(kwargs, words):
    with pytest.raises(ConfigError) as err:
        FeatureSpec(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_unknown_feature_is_the_registry_error():
    with pytest.raises(PluginError, match="unknown feature 'rsii'.*Did you mean 'rsi'"):
        FeatureSpec(names=["rsii"])


def test_compute_columns_index_and_warmup_nan():
    frame = garch_bars(300, seed=5, symbol="XYZ")
    spec = FeatureSpec()
    out = compute(frame, spec)
    assert list(out.columns) == spec.columns()
    assert out.index.equals(frame.index) and (out.dtypes == "float64").all()
    assert out.iloc[: spec.warmup()].isna().any(axis=1).all()
    kept, dropped = drop_warmup(out, spec, "XYZ")
    assert dropped == spec.warmup() and len(kept) == 300 - dropped
    assert kept.index[0] == frame.index[dropped]
    assert np.isfinite(kept.to_numpy()).all()


def test_drop_warmup_names_feature_symbol_and_timestamp():
    frame = garch_bars(120, seed=6)
    spec = FeatureSpec(names=["log_return", "rsi"])
    out = compute(frame, spec)
    bad_at = frame.index[90]
    out.loc[bad_at, "rsi"] = np.inf
    out.loc[frame.index[100], "rsi"] = np.nan
    with pytest.raises(DataError) as err:
        drop_warmup(out, spec, "ETH/USDT")
    msg = str(err.value)
    assert "'rsi'" in msg and "ETH/USDT" in msg and str(bad_at) in msg and "2 bad rows" in msg


def test_too_short_history_is_a_clear_error():
    spec = FeatureSpec()
    frame = garch_bars(spec.warmup(), seed=1)
    with pytest.raises(DataError, match=rf"{spec.warmup()} bars.*{spec.warmup()} warm-up"):
        drop_warmup(compute(frame, spec), spec, "SYN")


@pytest.mark.parametrize("bad", ["nan", "zeros", "missing"])
def test_missing_volume_refused_naming_symbol_and_fix(bad):
    frame = garch_bars(100, seed=2, symbol="EURUSD")
    if bad == "nan":
        frame["volume"] = np.nan
    elif bad == "zeros":
        frame["volume"] = 0.0
    else:
        frame = frame.drop(columns="volume")
    with pytest.raises(DataError) as err:
        compute(frame, FeatureSpec())
    msg = str(err.value)
    assert "EURUSD" in msg and "volume_ratio" in msg and "volume_zscore" in msg
    assert "features.names" in msg
    # the documented way out: price-only features
    out = compute(frame, FeatureSpec(names=list(PRICE_FEATURES)))
    assert np.isfinite(
        out.iloc[FeatureSpec(names=list(PRICE_FEATURES)).warmup() :].to_numpy()
    ).all()


def test_bad_prices_refused_with_timestamp():
    frame = garch_bars(50, seed=2, symbol="BAD")
    frame.iloc[33, 3] = -1.0
    with pytest.raises(DataError, match=re.escape(f"BAD: close is -1.0 at {frame.index[33]}")):
        compute(frame, FeatureSpec(names=["rsi"]))


@pytest.fixture
def third_party():
    """A plugin feature registered like a third-party package would."""
    from mtl_bt import hookimpl

    @feature(warmup=lambda lag=3: lag, columns=lambda lag=3: [f"hl_{lag}"])
    def hl_lag(frame, lag=3):
        x = (frame["high"] / frame["low"]).shift(lag)
        return pd.DataFrame({f"hl_{lag}": x}, index=frame.index)

    def lying(frame):  # declares no warm-up
        return pd.DataFrame({"lying": frame["close"].diff()}, index=frame.index)

    @feature(warmup=0)
    def short(frame):  # declares 0 but needs 2 bars
        return pd.DataFrame({"short": frame["close"].diff(2)}, index=frame.index)

    mod = types.ModuleType("tp_features")

    @hookimpl
    def register_features(register):
        register("hl_lag", hl_lag, "test")
        register("lying", lying, "test")
        register("short", short, "test")

    mod.register_features = register_features
    sys.modules["tp_features"] = mod
    registry.register_plugin(mod, "tp_features")
    yield
    registry.unregister_plugin("tp_features")
    sys.modules.pop("tp_features", None)


def test_third_party_feature_plugin(third_party):
    spec = FeatureSpec(names=["hl_lag", "rsi"], params={"hl_lag": {"lag": 5}})
    assert (
        spec.columns() == ["hl_5", "rsi"] and spec.warmup() == FeatureSpec(names=["rsi"]).warmup()
    )
    out = compute(garch_bars(80, seed=1), spec)
    assert out["hl_5"].isna().sum() == 5
    with pytest.raises(PluginError, match="does not declare its warm-up"):
        FeatureSpec(names=["lying"])
    frame = garch_bars(80, seed=1)
    spec = FeatureSpec(names=["short"])
    with pytest.raises(DataError, match=re.escape(f"'short' is nan at {frame.index[0]}")):
        drop_warmup(compute(frame, spec), spec, "SYN")


def test_docs_cover_every_builtin_feature():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "features.md").read_text()
    for name in DEFAULT_FEATURES:
        assert f"`{name}`" in text, name
        for param in FeatureSpec(names=[name]).resolved_params()[name]:
            assert f"`{param}`" in text, (name, param)
