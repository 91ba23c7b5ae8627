"""Registers ``probe_plugins`` (this folder's third-party-style plugin module) in-process."""

import importlib.util
import sys
from pathlib import Path

import pytest

from mtl_bt import registry


def _load():
    path = Path(__file__).with_name("probe_plugins.py")
    spec = importlib.util.spec_from_file_location("mtl_bt_probe_plugins", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


PROBES = _load()


@pytest.fixture
def probes():
    PROBES.reset()
    registry.register_plugin(PROBES, "probe_plugins")
    yield PROBES
    registry.unregister_plugin("probe_plugins")
    PROBES.reset()
