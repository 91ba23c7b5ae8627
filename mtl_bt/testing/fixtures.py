"""pytest fixtures for plugin authors: ``pytest_plugins = ["mtl_bt.testing.fixtures"]``
in your ``conftest.py`` gives ``garch_frame``, ``sample_frame`` and ``tiny_config``."""

from __future__ import annotations

import pandas as pd
import pytest

from mtl_bt.testing import data


@pytest.fixture(scope="session")
def garch_frame() -> pd.DataFrame:
    """800 synthetic hourly bars (seeded GARCH(1,1): clustered volatility, real volume)."""
    return data.garch_bars(800, seed=7, freq="1h")


@pytest.fixture(scope="session")
def sample_frame() -> pd.DataFrame:
    """The last 1500 bars of the bundled real BTC/USDT hourly sample."""
    return data.sample_bars("BTC/USDT")


@pytest.fixture
def tiny_config():
    """A function ``(**sections) -> Config``: a small fast config on the bundled sample."""
    return data.tiny_config
