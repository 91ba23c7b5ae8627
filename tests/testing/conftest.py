"""The throwaway bad plugins, registered in-process for the kit's tests."""

import importlib.util
import sys
from pathlib import Path

import pytest

from mtl_bt import registry

pytest_plugins = ["mtl_bt.testing.fixtures"]


def _load_bad():
    path = Path(__file__).with_name("bad_plugins.py")
    spec = importlib.util.spec_from_file_location("mtl_bt_tests_bad_plugins", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


BAD = _load_bad()


@pytest.fixture
def bad_plugins():
    registry.register_plugin(BAD.plugin(), "bad_plugins")
    yield BAD
    registry.unregister_plugin("bad_plugins")
