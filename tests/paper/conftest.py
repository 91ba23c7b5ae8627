"""Fixtures for the paper-trading tests (helpers in paper_testkit.py)."""

from __future__ import annotations

import os
import sys

import pandas as pd
import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "data"))

from data_testkit import BybitServer, ExchangeClock  # noqa: E402
from paper_testkit import PAIRS, make_state, paper_config_dict  # noqa: E402


@pytest.fixture(scope="session")
def sample_frames(crypto_frames) -> dict[str, pd.DataFrame]:
    return {PAIRS[s]: crypto_frames[s] for s in PAIRS}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_BT_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def exchange(sample_frames):
    """``start(clock, **state) -> (url, state)``: a loopback Bybit with the sample bars."""
    servers: list[BybitServer] = []

    def start(clock: ExchangeClock, **kwargs):
        server = BybitServer(make_state(sample_frames, clock, **kwargs)).__enter__()
        servers.append(server)
        return server.url, server.state

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def paper_model(tmp_path_factory, crypto_frames):
    """(config dict, checkpoint) of a real tiny model trained on the three sample pairs."""
    from mtl_bt import config as config_mod
    from mtl_bt.training.pipeline import train_walk_forward

    data = paper_config_dict("http://unused")
    cfg = config_mod.from_dict(data)
    end = pd.Timestamp("2024-02-20", tz="UTC")
    frames = {s: crypto_frames[s].loc[:end].iloc[-400:] for s in PAIRS}
    out = tmp_path_factory.mktemp("paper_model")
    result = train_walk_forward(cfg, frames, out)
    return result.checkpoints[-1]
