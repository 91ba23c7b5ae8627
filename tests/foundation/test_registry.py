"""The plugin registry: entry points, env switches, and every bad-input case."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import pytest

from mtl_bt import hookimpl, registry
from mtl_bt.errors import PluginError
from mtl_bt.registry import PluginWarning
from mtl_bt.weighting import Weighting

BIN = Path(sys.executable).parent

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
    monkeypatch.setenv("MTL_BT_LOAD_PLUGINS", "builtin")  # whatever else is installed
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
    with pytest.warns(PluginWarning, match="dup_plugin"):
        reg = registry.registry()
    assert "fixed" in reg.names("weighting")  # every other name still works
    assert "equal" not in reg.names("weighting")  # ambiguous: never picked silently
    with pytest.raises(PluginError) as info:
        registry.get("weighting", "equal")
    assert "builtin_weightings" in str(info.value)
    assert "dup_plugin" in str(info.value)
    assert "MTL_BT_DISABLE_PLUGINS" in str(info.value)


def test_hook_that_raises_names_the_plugin_and_the_way_out():
    def register_tasks(register):
        raise RuntimeError("boom")

    registry.register_plugin(_plugin(register_tasks=register_tasks), "exploding")
    with pytest.warns(PluginWarning, match="exploding.*boom.*MTL_BT_DISABLE_PLUGINS=exploding"):
        reg = registry.registry()
    assert "return" in reg.names("task")  # the built-ins are unaffected
    [failure] = reg.failures
    assert failure.plugin == "exploding" and "boom" in failure.error


def test_hookimpl_without_spec_names_the_plugin():
    def register_colours(register):
        pass

    registry.register_plugin(_plugin(register_colours=register_colours), "stray")
    with pytest.warns(PluginWarning, match="stray.*register_colours"):
        registry.registry()


def test_misspelled_hook_says_did_you_mean():
    def register_feature(register):
        pass

    registry.register_plugin(_plugin(register_feature=register_feature), "typo")
    with pytest.warns(PluginWarning) as record:
        registry.registry()
    [message] = [str(w.message) for w in record if "typo" in str(w.message)]
    assert "Did you mean 'register_features'?" in message
    assert message.count("typo_plugin_module") == 0  # names the plugin, not a module repr


def test_forgotten_hookimpl_is_a_warning_naming_the_plugin():
    module = types.ModuleType("forgetful_module")

    def register_weightings(register):
        register("forgotten", Weighting, "never registered")

    register_weightings.__module__ = module.__name__
    module.register_weightings = register_weightings
    registry.register_plugin(module, "forgetful")
    with pytest.warns(PluginWarning, match="forgetful.*register_weightings.*@mtl_bt.hookimpl"):
        reg = registry.registry()
    assert "forgotten" not in reg.names("weighting")


def test_builtins_load_without_any_warning(recwarn):
    registry.registry()
    assert not [w for w in recwarn if issubclass(w.category, PluginWarning)]


def test_hookimpl_with_wrong_arguments_names_the_plugin():
    def register_weightings(register, extra):
        pass

    registry.register_plugin(_plugin(register_weightings=register_weightings), "badargs")
    with pytest.warns(PluginWarning, match="badargs.*`register`"):
        reg = registry.registry()
    assert [f.plugin for f in reg.failures] == ["badargs"]


@pytest.mark.parametrize("bad_name", ["Has Space", "UPPER", "9lives", "dash-name", ""])
def test_bad_names_are_refused(bad_name):
    def register_weightings(register):
        register(bad_name, Weighting, "bad")

    registry.register_plugin(_plugin(register_weightings=register_weightings), "badname")
    with pytest.warns(PluginWarning, match="badname.*snake_case"):
        registry.registry()


def test_non_callable_factory_is_refused():
    def register_weightings(register):
        register("not_callable", 42, "bad")

    registry.register_plugin(_plugin(register_weightings=register_weightings), "noncall")
    with pytest.warns(PluginWarning, match="non-callable"):
        registry.registry()
    with pytest.raises(PluginError, match="could not be registered.*non-callable"):
        registry.get("weighting", "not_callable")


def test_in_process_plugin_registers_and_unregisters():
    def register_weightings(register):
        register("my_equal", Weighting, "mine")

    registry.register_plugin(_plugin(register_weightings=register_weightings), "mine")
    entry = registry.registry().entry("weighting", "my_equal")
    assert (entry.plugin, entry.distribution) == ("mine", None)
    registry.unregister_plugin("mine")
    assert "my_equal" not in registry.names("weighting")


def test_disable_plugins_with_unknown_name_is_an_error(monkeypatch):
    monkeypatch.setenv("MTL_BT_DISABLE_PLUGINS", "builtin_weightings,no_such_plugin")
    registry.reset()
    with pytest.raises(PluginError, match="MTL_BT_DISABLE_PLUGINS.*no_such_plugin.*builtin_tasks"):
        registry.registry()


def test_builtin_alias_disables_every_builtin(monkeypatch):
    monkeypatch.setenv("MTL_BT_DISABLE_PLUGINS", "builtin")
    registry.reset()
    assert all(registry.names(kind) == [] for kind in registry.KINDS)


def test_load_plugins_naming_a_third_party_plugin_keeps_the_builtins(monkeypatch):
    """MTL_BT_LOAD_PLUGINS=extra must not drop the built-ins (`unknown source 'sample'`)."""
    monkeypatch.setattr(registry, "_entry_points", lambda: _with_fake_entry_point("extra"))
    monkeypatch.setenv("MTL_BT_LOAD_PLUGINS", "extra")
    registry.reset()
    assert "sample" in registry.names("source")
    assert "extra_equal" in registry.names("weighting")
    monkeypatch.setenv("MTL_BT_LOAD_PLUGINS", "extra,builtin_weightings")
    registry.reset()
    assert registry.names("source") == []  # built-ins named: only those
    assert {"equal", "extra_equal"} <= set(registry.names("weighting"))


def _with_fake_entry_point(name: str, value: str = "fake_extra_plugin"):
    import importlib.metadata

    module = types.ModuleType(value)

    @hookimpl
    def register_weightings(register):
        register("extra_equal", Weighting, "extra")

    module.register_weightings = register_weightings
    sys.modules[value] = module
    ep = importlib.metadata.EntryPoint(name=name, value=value, group="mtl_bt")
    return [*importlib.metadata.entry_points(group="mtl_bt"), ep]


def test_plugin_that_fails_to_import_is_skipped_and_named_when_used(monkeypatch):
    import importlib.metadata

    broken = importlib.metadata.EntryPoint(
        name="broken", value="mtl_bt_no_such_module_xyz", group="mtl_bt"
    )
    monkeypatch.setattr(
        registry,
        "_entry_points",
        lambda: [*importlib.metadata.entry_points(group="mtl_bt"), broken],
    )
    monkeypatch.delenv("MTL_BT_LOAD_PLUGINS")
    registry.reset()
    with pytest.warns(PluginWarning, match="broken.*failed to import"):
        reg = registry.registry()
    assert "equal" in reg.names("weighting")
    with pytest.raises(PluginError, match="unknown weighting 'theirs'.*broken.*failed to import"):
        registry.get("weighting", "theirs")


def test_plugin_calling_the_registry_while_registering_fails_clearly_instead_of_hanging():
    def register_features(register):
        registry.names("feature")  # re-entrant: used to deadlock on the registry lock

    registry.register_plugin(_plugin(register_features=register_features), "reentrant")
    result: dict = {}

    def build():
        try:
            with pytest.warns(PluginWarning) as record:
                result["reg"] = registry.registry()
            result["messages"] = [str(w.message) for w in record]
        except BaseException as exc:  # pragma: no cover - reported below
            result["exc"] = exc

    worker = threading.Thread(target=build, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "registry() hung on a re-entrant plugin"
    assert "exc" not in result, result.get("exc")
    [message] = [m for m in result["messages"] if "reentrant" in m]
    assert "while plugins are being registered" in message
    assert "log_return" in result["reg"].names("feature")


def _install_fake_distribution(tmp_path: Path, body: str, ep_name: str = "thirdparty") -> dict:
    """A real entry point in a throw-away site folder (dist-info + module)."""
    import os

    site = tmp_path / "site"
    dist = site / "mtl_bt_thirdparty-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mtl-bt-thirdparty\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[mtl_bt]\n{ep_name} = mtl_bt_thirdparty\n")
    (site / "mtl_bt_thirdparty.py").write_text(textwrap.dedent(body))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env["MTL_BT_LOAD_PLUGINS"] = f"builtin,{ep_name}"
    return env


def test_cli_lists_a_plugin_that_raises_on_import_and_other_commands_still_work(tmp_path):
    env = _install_fake_distribution(tmp_path, "raise RuntimeError('kaboom at import')\n")
    out = subprocess.run([str(BIN / "mtl-bt"), "plugins"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "FAILED  plugin 'thirdparty'" in out.stdout and "kaboom" in out.stdout
    assert "Warning: plugin 'thirdparty'" in out.stderr
    assert "Traceback" not in out.stderr
    assert "equal" in out.stdout


def test_cli_duplicate_names_block_only_that_name(tmp_path):
    env = _install_fake_distribution(
        tmp_path,
        """
        from mtl_bt import hookimpl
        from mtl_bt.weighting import Weighting

        @hookimpl
        def register_weightings(register):
            register("equal", Weighting, "clash")
        """,
    )
    out = subprocess.run(
        [str(BIN / "mtl-bt"), "plugins", "--json"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "'equal' is registered by plugin 'builtin_weightings'" in out.stdout
