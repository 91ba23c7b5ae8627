"""Calling a plugin's code: its exception becomes one line naming the plugin and the input.

A user who runs someone else's plugin should see which plugin failed on which symbol, not
a traceback from inside mtl-bt (the CLI prints a ``UserError``'s line and exits 2). A
``UserError`` the plugin raised on purpose, or mtl-bt's own (a bad config, bad data),
passes unchanged; built-ins are not wrapped (their exception is mtl-bt's bug, to be seen
with its traceback).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from mtl_bt import registry
from mtl_bt.errors import PluginError, UserError

T = TypeVar("T")


class PluginRaised(PluginError):
    """A plugin's own code raised ``original`` on ``where`` (``mtl-bt check`` reports it as
    the plugin's finding; everything else prints the one line)."""

    def __init__(self, message: str, where: str, original: BaseException) -> None:
        super().__init__(message)
        self.where, self.original = where, original


def plugin_of(kind: str, name: str) -> str:
    """'plugin NAME (distribution)' of a registered item, for messages."""
    entry = registry.registry().entry(kind, name)
    return f"plugin {entry.plugin!r}" + (f" ({entry.distribution})" if entry.distribution else "")


def feature_named(name: str) -> str:
    """'feature NAME from plugin P (distribution)' of a feature or an instance name
    (``plugin@label``), for messages."""
    return f"feature {name!r} from {plugin_of('feature', str(name).split('@', 1)[0])}"


def calling(
    what: str | Callable[[], str], where: str | Callable[[], str], call: Callable[[], T]
) -> T:
    """``call()``; an exception from plugin code becomes one ``PluginRaised`` line naming
    ``what`` and ``where`` (either may be a callable, worded only on failure; a UserError
    passes unchanged)."""
    try:
        return call()
    except UserError:
        raise
    except Exception as exc:
        detail = str(exc).replace("\n", " ")
        named = what() if callable(what) else what
        place = where() if callable(where) else where
        raise PluginRaised(
            f"{named} raised {type(exc).__name__} on {place}: {detail}. Fix the plugin "
            "(reproduce it with `mtl-bt check CONFIG`)",
            place,
            exc,
        ) from exc


def call_feature(name: str, fn: Any, frame: Any, params: dict[str, Any]) -> Any:
    """``fn(frame, **params)`` of feature ``name`` (a plugin name or ``plugin@label``); a
    third-party plugin's exception names it and the frame's symbol."""
    plugin = str(name).split("@", 1)[0]  # an instance's plugin (features.spec.plugin_name)
    if registry.is_builtin("feature", plugin):
        return fn(frame, **params)
    where = str(frame.attrs.get("symbol", "(unknown symbol)"))
    return calling(lambda: feature_named(name), where, lambda: fn(frame, **params))
