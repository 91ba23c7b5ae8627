"""Fixtures for the data tests: an isolated plugin registry, a private cache dir, and a
loopback Bybit v5 server (see data_testkit.py)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # importlib mode: make data_testkit importable

from data_testkit import BybitServer  # noqa: E402

from mtl_bt import registry  # noqa: E402


@pytest.fixture
def bybit():
    """(base_url, state) of a loopback Bybit v5 server on a free port."""
    with BybitServer() as server:
        yield server.url, server.state


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Only the built-in sources (other plugins are someone else's work in progress) and a
    private cache dir per test."""
    monkeypatch.setenv("MTL_BT_LOAD_PLUGINS", "builtin_sources")
    monkeypatch.setenv("MTL_BT_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    registry.reset()
    yield
    registry.reset()
