"""The plugin registry: entry points, env switches, and every bad-input case."""

from __future__ import annotations

import types

import pytest

from mtl_bt import hookimpl, registry
from mtl_bt.errors import PluginError
from mtl_bt.weighting import Weighting

BUILTIN_ENTRY_POINTS = {
    "builtin_sources",
    "builtin_features",
    "builtin_tasks",
    "builtin_architectures",
    "builtin_weightings",
    "builtin_signals",
}


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    monkeypatch.delenv("MTL_BT_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("MTL_BT_LOAD_PLUGINS", raising=False)
    registry.reset()
    yield
    for name in list(registry._extra):
        registry.unregister_plugin(name)
    registry.reset()


def _plugin(**hooks) -> types.ModuleType:
    module = types.ModuleType("test_plugin_module")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def test_builtins_load_through_the_entry_point_group():
    reg = registry.registry()
    names = {name for name, _ in reg.pm.list_name_plugin()}
    assert BUILTIN_ENTRY_POINTS <= names
    entry = reg.entry("weighting", "equal")
    assert entry.plugin == "builtin_weightings"
    assert entry.distribution == "mtl-bt"
    assert entry.version
    assert registry.names("weighting")[:2] == sorted(registry.names("weighting"))[:2]


def test_get_returns_the_registered_factory():
    from mtl_bt.plugins.weightings.simple import Equal

    assert registry.get("weighting", "equal") is Equal
    weighting = registry.create("weighting", "equal", ["a", "b"])
    assert weighting.weights() == {"a": 1.0, "b": 1.0}


def test_disable_plugins_blocks_by_entry_point_name(monkeypatch):
    monkeypatch.setenv("MTL_BT_DISABLE_PLUGINS", "builtin_weightings")
    registry.reset()
    assert registry.names("weighting") == []
    assert registry.registry().pm.is_blocked("builtin_weightings")


def test_load_plugins_loads_only_those(monkeypatch):
    monkeypatch.setenv("MTL_BT_LOAD_PLUGINS", "builtin_weightings")
    registry.reset()
    loaded = {name for name, plugin in registry.registry().pm.list_name_plugin() if plugin}
    assert loaded == {"builtin_weightings"}
    assert "equal" in registry.names("weighting")


def test_load_plugins_with_unknown_name_lists_installed(monkeypatch):
    monkeypatch.setenv("MTL_BT_LOAD_PLUGINS", "no_such_plugin")
    registry.reset()
    with pytest.raises(PluginError, match="no_such_plugin.*builtin_weightings"):
        registry.registry()


def test_unknown_name_lists_available_and_closest_match():
    with pytest.raises(PluginError) as info:
        registry.get("weighting", "eqaul")
    message = str(info.value)
    assert "Did you mean 'equal'" in message
    assert "fixed" in message


def test_unknown_kind_is_refused():
    with pytest.raises(PluginError, match="unknown plugin kind 'colour'"):
        registry.names("colour")


def test_duplicate_registration_names_both_plugins():
    def register_weightings(register):
        register("equal", Weighting, "a second equal")

    registry.register_plugin(_plugin(register_weightings=register_weightings), "dup_plugin")
    with pytest.raises(PluginError) as info:
        registry.registry()
    assert "builtin_weightings" in str(info.value)
    assert "dup_plugin" in str(info.value)


def test_hook_that_raises_names_the_plugin_and_the_way_out():
    def register_tasks(register):
        raise RuntimeError("boom")

    registry.register_plugin(_plugin(register_tasks=register_tasks), "exploding")
    with pytest.raises(PluginError, match="exploding.*boom.*MTL_BT_DISABLE_PLUGINS=exploding"):
        registry.registry()


def test_hookimpl_without_spec_names_the_plugin():
    def register_colours(register):
        pass

    registry.register_plugin(_plugin(register_colours=register_colours), "stray")
    with pytest.raises(PluginError, match="stray"):
        registry.registry()


def test_hookimpl_with_wrong_arguments_names_the_plugin():
    def register_weightings(register, extra):
        pass

    registry.register_plugin(_plugin(register_weightings=register_weightings), "badargs")
    with pytest.raises(PluginError, match="badargs"):
        registry.registry()


@pytest.mark.parametrize("bad_name", ["Has Space", "UPPER", "9lives", "dash-name", ""])
def test_bad_names_are_refused(bad_name):
    def register_weightings(register):
        register(bad_name, Weighting, "bad")

    registry.register_plugin(_plugin(register_weightings=register_weightings), "badname")
    with pytest.raises(PluginError, match="snake_case"):
        registry.registry()


def test_non_callable_factory_is_refused():
    def register_weightings(register):
        register("not_callable", 42, "bad")

    registry.register_plugin(_plugin(register_weightings=register_weightings), "noncall")
    with pytest.raises(PluginError, match="non-callable"):
        registry.registry()


def test_in_process_plugin_registers_and_unregisters():
    def register_weightings(register):
        register("my_equal", Weighting, "mine")

    registry.register_plugin(_plugin(register_weightings=register_weightings), "mine")
    entry = registry.registry().entry("weighting", "my_equal")
    assert (entry.plugin, entry.distribution) == ("mine", None)
    registry.unregister_plugin("mine")
    assert "my_equal" not in registry.names("weighting")
