"""The plugin registry: loads plugins through the ``mtl_bt`` entry-point group
and answers ``get(kind, name)`` / ``names(kind)``.

Loading fails small: a plugin that cannot be imported, whose hook raises, or
that registers a bad item is skipped with a ``PluginWarning`` and recorded in
``Registry.failures`` (``mtl-bt plugins`` lists it with its error); only a run
that asks for one of its items fails, naming it. Two plugins registering one
(kind, name) make that name ambiguous: asking for it is an error naming both.

Environment switches (comma-separated entry-point names; ``builtin`` stands for
every ``builtin_*`` entry point):
- ``MTL_BT_DISABLE_PLUGINS``: never load these plugins.
- ``MTL_BT_LOAD_PLUGINS``: load only these third-party plugins. The built-ins
  stay unless the list names built-ins itself (then only those), or they are
  disabled with ``MTL_BT_DISABLE_PLUGINS=builtin``.
Unknown names in either variable are an error listing the installed plugins.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import os
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from mtl_bt import hookspecs
from mtl_bt.errors import PluginError

ENTRY_POINT_GROUP = "mtl_bt"
#: the alias for every built-in entry point in the env switches
BUILTIN = "builtin"
BUILTIN_PREFIX = "builtin_"

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
_IMPL_ATTR = "mtl_bt_impl"  # what ``HookimplMarker("mtl_bt")`` sets on a function


class PluginWarning(UserWarning):
    """A plugin was skipped or looks wrong; the message names it and what to do."""


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
    #: where the implementation comes from when it wraps another library
    source: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "description": self.description,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
            "source": self.source,
            "status": "ok",
        }


@dataclass(frozen=True)
class Failure:
    """A plugin (or one of its items) that was skipped, and why."""

    plugin: str
    error: str
    distribution: str | None = None
    kind: str | None = None
    name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "status": "failed",
            "error": self.error,
        }


@dataclass
class _Conflict:
    kind: str
    name: str
    entries: list[Entry] = field(default_factory=list)

    def error(self) -> PluginError:
        who = " and ".join(
            f"plugin {e.plugin!r} ({e.distribution or 'not installed'})" for e in self.entries
        )
        return PluginError(
            f"{self.kind} {self.name!r} is registered by {who}; disable one with "
            f"MTL_BT_DISABLE_PLUGINS={self.entries[-1].plugin}"
        )


def _env_list(var: str) -> list[str]:
    return [item.strip() for item in os.environ.get(var, "").split(",") if item.strip()]


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, PluginError):
        return " ".join(str(exc).split())
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _match(name: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _closest(name: str, choices: list[str]) -> str:
    close = _match(name, choices)
    return f" Did you mean {close!r}?" if close else ""


class Registry:
    """Plugins loaded into a pluggy manager, and the items they registered."""

    def __init__(self, extra_plugins: dict[str, object] | None = None) -> None:
        self.pm = pluggy.PluginManager("mtl_bt")
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[Failure] = []
        self.notes: list[str] = []  # warnings that did not skip anything
        self._dists: dict[str, tuple[str, str]] = {}
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._conflicts: dict[tuple[str, str], _Conflict] = {}
        #: plugins not loaded because of MTL_BT_DISABLE_PLUGINS / MTL_BT_LOAD_PLUGINS
        self.blocked: dict[str, str] = {}
        #: the plugin being imported or whose hook runs (named by re-entrancy errors)
        self.current: str | None = None
        self._load_entry_points()
        for name, plugin in (extra_plugins or {}).items():
            self._register(plugin, name)
        for kind in KINDS:
            self._collect(kind)
        self.current = None

    # -- loading ---------------------------------------------------------
    def _fail(
        self, plugin: str, error: str, kind: str | None = None, name: str | None = None
    ) -> None:
        dist = self._dists.get(plugin, (None, None))[0]
        self.failures.append(Failure(plugin, error, dist, kind, name))
        warnings.warn(f"{error} (skipped)", PluginWarning, stacklevel=4)

    def _note(self, message: str) -> None:
        self.notes.append(message)
        warnings.warn(message, PluginWarning, stacklevel=4)

    def _load_entry_points(self) -> None:
        eps = _entry_points()
        available = sorted({ep.name for ep in eps})
        builtins = [n for n in available if n.startswith(BUILTIN_PREFIX)]

        def expand(var: str) -> set[str]:
            names = _env_list(var)
            unknown = [n for n in names if n != BUILTIN and n not in available]
            if unknown:
                raise PluginError(
                    f"{var} names unknown plugin(s) {unknown}; installed plugins: "
                    f"{', '.join(available) or '(none)'} (or {BUILTIN!r} for all built-ins)"
                )
            return {b for n in names for b in (builtins if n == BUILTIN else [n])}

        disabled = expand("MTL_BT_DISABLE_PLUGINS")
        only = expand("MTL_BT_LOAD_PLUGINS") if _env_list("MTL_BT_LOAD_PLUGINS") else None
        if only is not None and not (only & set(builtins)):
            only |= set(builtins)  # built-ins stay unless the list names some itself
        for name in available:
            if name in disabled or (only is not None and name not in only):
                self.pm.set_blocked(name)
                self.blocked[name] = (
                    "MTL_BT_DISABLE_PLUGINS" if name in disabled else "MTL_BT_LOAD_PLUGINS"
                )
        for ep in eps:
            if self.pm.is_blocked(ep.name) or self.pm.get_plugin(ep.name) is not None:
                continue
            if ep.dist is not None:
                self._dists[ep.name] = (ep.dist.metadata["Name"], ep.dist.version)
            self.current = ep.name
            try:
                plugin = ep.load()
            except Exception as exc:
                self._fail(
                    ep.name,
                    f"plugin {ep.name!r} ({ep.value}) failed to import: {_one_line(exc)}. Fix it, or "
                    f"disable it with MTL_BT_DISABLE_PLUGINS={ep.name}",
                )
                continue
            finally:
                self.current = None
            self._register(plugin, ep.name)

    def _register(self, plugin: object, name: str) -> None:
        if self.pm.get_plugin(name) is not None or self.pm.is_registered(plugin):
            other = self.pm.get_name(plugin) if self.pm.is_registered(plugin) else name
            self._fail(
                name,
                f"plugin {name!r} is installed twice (also as {other!r}); uninstall one copy",
            )
            return
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            self._fail(
                name,
                f"plugin {name!r} does not match mtl-bt's hook specs: {' '.join(str(exc).split())} "
                "Hooks take one "
                f"argument, `register`. Fix it, or disable it with MTL_BT_DISABLE_PLUGINS={name}",
            )
            return
        self._check_hook_names(plugin, name)

    def _check_hook_names(self, plugin: object, name: str) -> None:
        """Warn about misspelled hooks (did you mean) and hooks missing ``@hookimpl``."""
        hooks = list(KINDS.values())
        for attr in dir(plugin):
            if not attr.startswith("register"):
                continue
            fn = getattr(plugin, attr, None)
            if not callable(fn):
                continue
            marked = hasattr(fn, _IMPL_ATTR)
            if inspect.ismodule(plugin) and getattr(fn, "__module__", None) != plugin.__name__:
                if not marked:
                    continue  # imported from elsewhere (e.g. `from x import register_y`)
            if marked and attr not in hooks:
                self._note(
                    f"plugin {name!r} implements hook {attr!r}, which mtl-bt does not define;"
                    f"{_closest(attr, hooks)} Hooks are: {', '.join(hooks)}"
                )
            elif not marked and (attr in hooks or _match(attr, hooks)):
                hint = attr if attr in hooks else _match(attr, hooks)
                self._note(
                    f"plugin {name!r} defines {attr}() without @mtl_bt.hookimpl, so mtl-bt never "
                    f"calls it; decorate it with @hookimpl"
                    + ("" if attr in hooks else f" and name it {hint!r}")
                )

    def _collect(self, kind: str) -> None:
        hook = getattr(self.pm.hook, KINDS[kind])
        # pluggy calls the last-registered implementation first; reverse so that
        # registration order (built-ins before later plugins) is kept.
        for impl in reversed(hook.get_hookimpls()):
            plugin_name = impl.plugin_name
            if any(f.plugin == plugin_name and f.kind is None for f in self.failures):
                continue  # already skipped whole
            dist_name, version = self._dists.get(plugin_name, (None, None))
            pending: list[Entry] = []

            def register(
                name: str,
                factory: Callable[..., Any],
                description: str = "",
                *,
                source: str | None = None,
                _plugin: str = plugin_name,
                _dist: str | None = dist_name,
                _version: str | None = version,
                _pending: list[Entry] = pending,
            ) -> None:
                _pending.append(
                    Entry(kind, name, factory, description, _plugin, _dist, _version, source)
                )

            self.current = plugin_name
            try:
                impl.function(register=register)
            except Exception as exc:
                self._fail(
                    plugin_name,
                    f"plugin {plugin_name!r} raised in {KINDS[kind]}: {_one_line(exc)}; none of its "
                    f"{kind}s are registered. Fix it, or disable it with "
                    f"MTL_BT_DISABLE_PLUGINS={plugin_name}",
                    kind=kind,
                )
                continue
            finally:
                self.current = None
            for entry in pending:
                self._add(entry)

    def _add(self, entry: Entry) -> None:
        where = f"plugin {entry.plugin!r}"
        problem = None
        if not isinstance(entry.name, str) or not _NAME.match(entry.name):
            problem = (
                f"{where} tried to register {entry.kind} {entry.name!r}: names must be "
                "lowercase snake_case (letters, digits, underscores; starting with a letter)"
            )
        elif not callable(entry.factory):
            problem = (
                f"{where} tried to register {entry.kind} {entry.name!r} with a "
                f"non-callable factory {entry.factory!r}; register a class or function"
            )
        elif not isinstance(entry.description, str):
            problem = f"{where}: description of {entry.kind} {entry.name!r} must be a string"
        if problem is not None:
            self._fail(entry.plugin, problem, kind=entry.kind, name=str(entry.name))
            return
        key = (entry.kind, entry.name)
        if key in self._conflicts:
            self._conflicts[key].entries.append(entry)
            self._note(str(self._conflicts[key].error()))
            return
        existing = self._entries[entry.kind].pop(entry.name, None)
        if existing is not None:
            conflict = _Conflict(entry.kind, entry.name, [existing, entry])
            self._conflicts[key] = conflict
            self._note(str(conflict.error()))
            return
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
        found = self._entries[kind].get(name)
        if found is not None:
            return found
        conflict = self._conflicts.get((kind, name))
        if conflict is not None:
            raise conflict.error()
        own = [f for f in self.failures if f.name == name and f.kind in (kind, None)]
        maybe = [
            f for f in self.failures if f.name is None and f.kind in (kind, None) and f not in own
        ]
        if own:
            raise PluginError(f"{kind} {name!r} could not be registered: {own[0].error}")
        available = self.names(kind)
        hint = _closest(str(name), available)
        broken = ""
        if maybe:
            broken = " Skipped plugin(s) that may provide it: " + "; ".join(f.error for f in maybe)
        for var in sorted(set(self.blocked.values())):
            names = sorted(n for n, v in self.blocked.items() if v == var)
            broken += (
                f" {var}={os.environ.get(var, '')} keeps plugin(s) {', '.join(names)} from "
                "loading, which may provide it; change that variable to use them."
            )
        raise PluginError(
            f"unknown {kind} {name!r}.{hint} Available: {', '.join(available) or '(none)'}.{broken}"
        )

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        return self.entry(kind, name).factory

    def entries(self) -> list[Entry]:
        return [entry for kind in KINDS for _, entry in sorted(self._entries[kind].items())]

    def conflicts(self) -> list[Failure]:
        """Ambiguous names, as failures (for ``mtl-bt plugins``)."""
        return [
            Failure(
                c.entries[-1].plugin, str(c.error()), c.entries[-1].distribution, c.kind, c.name
            )
            for c in self._conflicts.values()
        ]

    def is_builtin(self, kind: str, name: str) -> bool:
        """Registered by one of mtl-bt's own ``builtin_*`` entry points."""
        return self.entry(kind, name).plugin.startswith(BUILTIN_PREFIX)


_lock = threading.Lock()
_registry: Registry | None = None
_building: Registry | None = None
_builder: int | None = None  # thread id building the registry
_extra: dict[str, object] = {}


def registry() -> Registry:
    """The process-wide registry, built on first use.

    A plugin that asks for the registry while it is being built (at import or
    in its hook) would wait for itself forever; that is an error naming it.
    """
    global _registry, _building, _builder
    if _builder == threading.get_ident():
        who = _building.current if _building is not None else None
        raise PluginError(
            f"plugin {who!r} uses the mtl-bt registry while plugins are being registered "
            "(at import time or inside its register_* hook). Look items up when they are "
            "used (inside the factory), not while registering"
        )
    with _lock:
        if _registry is None:
            _builder = threading.get_ident()
            try:
                # built in two steps so that a re-entrant call can name the plugin
                # being loaded (``reg.current``) instead of waiting on the lock forever
                reg = Registry.__new__(Registry)
                _building = reg
                reg.__init__(dict(_extra))
            finally:
                _builder = None
                _building = None
            _registry = reg
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


def is_builtin(kind: str, name: str) -> bool:
    """True when ``name`` comes from one of mtl-bt's built-in entry points."""
    return registry().is_builtin(kind, name)
