"""The plugin registry: loads plugins through the ``mtl_bt`` entry-point group
and answers ``get(kind, name)`` / ``names(kind)``.

Environment switches (comma-separated entry-point names):
- ``MTL_BT_DISABLE_PLUGINS``: never load these plugins.
- ``MTL_BT_LOAD_PLUGINS``: load only these plugins.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

from mtl_bt import hookspecs
from mtl_bt.errors import PluginError

ENTRY_POINT_GROUP = "mtl_bt"

#: plugin kind -> hook that registers it
KINDS: dict[str, str] = {
    "source": "register_sources",
    "feature": "register_features",
    "task": "register_tasks",
    "architecture": "register_architectures",
    "weighting": "register_weightings",
    "signal": "register_signals",
}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Entry:
    """One registered item and where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    description: str
    plugin: str
    distribution: str | None
    version: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "description": self.description,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
        }


def _env_list(var: str) -> list[str]:
    return [item.strip() for item in os.environ.get(var, "").split(",") if item.strip()]


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


class Registry:
    """Plugins loaded into a pluggy manager, and the items they registered."""

    def __init__(self, extra_plugins: dict[str, object] | None = None) -> None:
        self.pm = pluggy.PluginManager("mtl_bt")
        self.pm.add_hookspecs(hookspecs)
        self._load_entry_points()
        for name, plugin in (extra_plugins or {}).items():
            self._register(plugin, name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(
                f"plugin {exc.plugin!r} implements a hook mtl-bt does not define: {exc}. "
                "Fix the plugin, or block it with MTL_BT_DISABLE_PLUGINS="
                f"{self.pm.get_name(exc.plugin) or exc.plugin}"
            ) from exc
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        for kind in KINDS:
            self._collect(kind)

    # -- loading ---------------------------------------------------------
    def _load_entry_points(self) -> None:
        eps = _entry_points()
        available = sorted({ep.name for ep in eps})
        disabled = set(_env_list("MTL_BT_DISABLE_PLUGINS"))
        only = _env_list("MTL_BT_LOAD_PLUGINS")
        unknown = [name for name in only if name not in available]
        if unknown:
            raise PluginError(
                f"MTL_BT_LOAD_PLUGINS names unknown plugin(s) {unknown}; "
                f"installed plugins: {', '.join(available) or '(none)'}"
            )
        for name in available:
            if name in disabled or (only and name not in only):
                self.pm.set_blocked(name)
        for ep in eps:
            if self.pm.is_blocked(ep.name) or self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} ({ep.value}) failed to import: {exc!r}. "
                    f"Block it with MTL_BT_DISABLE_PLUGINS={ep.name}"
                ) from exc
            self._register(plugin, ep.name, dist=ep.dist)

    def _register(self, plugin: object, name: str, dist: Any = None) -> None:
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(
                f"plugin {name!r} does not match mtl-bt's hook specs: {exc}. "
                f"Fix it, or block it with MTL_BT_DISABLE_PLUGINS={name}"
            ) from exc
        except ValueError as exc:  # already registered under that name
            raise PluginError(f"plugin name {name!r} registered twice: {exc}") from exc
        self._dists = getattr(self, "_dists", {})
        if dist is not None:
            self._dists[name] = (dist.metadata["Name"], dist.version)

    def _collect(self, kind: str) -> None:
        hook = getattr(self.pm.hook, KINDS[kind])
        # pluggy calls the last-registered implementation first; reverse so that
        # registration order (built-ins before later plugins) is kept.
        for impl in reversed(hook.get_hookimpls()):
            plugin_name = impl.plugin_name
            dist_name, version = getattr(self, "_dists", {}).get(plugin_name, (None, None))

            def register(
                name: str,
                factory: Callable[..., Any],
                description: str = "",
                *,
                _plugin: str = plugin_name,
                _dist: str | None = dist_name,
                _version: str | None = version,
            ) -> None:
                self._add(Entry(kind, name, factory, description, _plugin, _dist, _version))

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {plugin_name!r} raised in {KINDS[kind]}: {exc!r}. "
                    f"Fix it, or block it with MTL_BT_DISABLE_PLUGINS={plugin_name}"
                ) from exc

    def _add(self, entry: Entry) -> None:
        where = f"plugin {entry.plugin!r}"
        if not isinstance(entry.name, str) or not _NAME.match(entry.name):
            raise PluginError(
                f"{where} tried to register {entry.kind} {entry.name!r}: names must be "
                "lowercase snake_case (letters, digits, underscores; starting with a letter)"
            )
        if not callable(entry.factory):
            raise PluginError(
                f"{where} tried to register {entry.kind} {entry.name!r} with a "
                f"non-callable factory {entry.factory!r}; register a class or function"
            )
        if not isinstance(entry.description, str):
            raise PluginError(
                f"{where}: description of {entry.kind} {entry.name!r} must be a string"
            )
        existing = self._entries[entry.kind].get(entry.name)
        if existing is not None:
            raise PluginError(
                f"{entry.kind} {entry.name!r} is registered twice: by plugin "
                f"{existing.plugin!r} ({existing.distribution or 'not installed'}) and by plugin "
                f"{entry.plugin!r} ({entry.distribution or 'not installed'}). Disable one with "
                "MTL_BT_DISABLE_PLUGINS"
            )
        self._entries[entry.kind][entry.name] = entry

    # -- lookup ----------------------------------------------------------
    def _check_kind(self, kind: str) -> None:
        if kind not in KINDS:
            raise PluginError(f"unknown plugin kind {kind!r}; kinds are: {', '.join(KINDS)}")

    def names(self, kind: str) -> list[str]:
        self._check_kind(kind)
        return sorted(self._entries[kind])

    def entry(self, kind: str, name: str) -> Entry:
        self._check_kind(kind)
        try:
            return self._entries[kind][name]
        except KeyError:
            available = self.names(kind)
            close = difflib.get_close_matches(str(name), available, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise PluginError(
                f"unknown {kind} {name!r}.{hint} Available: {', '.join(available) or '(none)'}"
            ) from None

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        return self.entry(kind, name).factory

    def entries(self) -> list[Entry]:
        return [entry for kind in KINDS for _, entry in sorted(self._entries[kind].items())]


_lock = threading.Lock()
_registry: Registry | None = None
_extra: dict[str, object] = {}


def registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = Registry(dict(_extra))
        return _registry


def reset() -> None:
    """Forget the loaded registry (after changing env vars or installing plugins)."""
    global _registry
    with _lock:
        _registry = None


def register_plugin(plugin: object, name: str) -> None:
    """Add an in-process plugin (a module or object with hookimpls), e.g. in tests."""
    _extra[name] = plugin
    reset()


def unregister_plugin(name: str) -> None:
    _extra.pop(name, None)
    reset()


def get(kind: str, name: str) -> Callable[..., Any]:
    """The factory registered as ``name`` for ``kind``; clear error if unknown."""
    return registry().get(kind, name)


def names(kind: str) -> list[str]:
    """Registered names for ``kind``, sorted."""
    return registry().names(kind)


def create(kind: str, name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Look up ``name`` and call its factory."""
    return get(kind, name)(*args, **kwargs)
