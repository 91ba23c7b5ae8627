"""Every built-in plugin passes the conformance kit it ships (mtl_bt.testing)."""

from __future__ import annotations

import pytest

from mtl_bt import registry
from mtl_bt.testing import (
    check_architecture,
    check_feature,
    check_signal,
    check_source,
    check_task,
    check_weighting,
    sample_bars,
)

BUILTIN = "MTL_BT_LOAD_PLUGINS=builtin (tests/conftest.py)"


def _names(kind):
    return [n for n in registry.names(kind) if registry.is_builtin(kind, n)]


WEIGHTING_OPTIONS = {
    "fixed": {"weights": {"return@1": 1.0, "direction@1": 2.0, "volatility@5": 0.5}},
    "curriculum": {"schedule": {"direction@1": {"start": 1, "ramp": 1}}},
}


#: features that need a parameter: cross_asset reads a symbol of the run (the kit's BBB)
FEATURE_PARAMS = {"cross_asset": {"of": "BBB"}}


@pytest.mark.parametrize("name", _names("feature"))
def test_builtin_feature(name, sample_frame):
    check_feature(name, **FEATURE_PARAMS.get(name, {}))  # synthetic GARCH bars
    check_feature(name, sample_frame, **FEATURE_PARAMS.get(name, {}))  # real BTC/USDT hours


@pytest.mark.parametrize("horizon", [1, 5])
@pytest.mark.parametrize("name", _names("task"))
def test_builtin_task(name, horizon):
    check_task(name, horizon=horizon)


@pytest.mark.parametrize("stage", [{}, {"encoder": "gru", "lookback": 4, "encoder_hidden": 4}])
@pytest.mark.parametrize("name", _names("architecture"))
def test_builtin_architecture(name, stage):
    check_architecture(name, hidden=[8, 6], **stage)


@pytest.mark.parametrize("name", _names("weighting"))
def test_builtin_weighting(name):
    check_weighting(name, **WEIGHTING_OPTIONS.get(name, {}))


@pytest.mark.parametrize("name", _names("signal"))
def test_builtin_signal(name):
    check_signal(name)


def test_builtin_sample_source():
    check_source("sample", ["BTC/USDT", "ETH/USDT"], timeframe="1h")


def test_builtin_csv_source(tmp_path):
    frame = sample_bars("ETH/USDT", 200)
    path = tmp_path / "eth.csv"
    frame.to_csv(path)
    check_source("csv", ["ETH/USDT"], timeframe="1h", path=str(path))


def test_the_kit_covers_thirty_builtins():
    total = sum(len(_names(kind)) for kind in registry.KINDS)
    assert total >= 30, total
