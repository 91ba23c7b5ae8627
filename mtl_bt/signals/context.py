"""Calling a signal rule: the documented context, and the limits held for every rule.

``RuleCaller`` is what a strategy calls once per decision bar. It passes the rule the
full context (docs/plugins.md, "register_signals"), then holds the output to the
portfolio limits with ``mtl_bt.signals.clip.clip_weights``, the same function for
every rule, built-in or not. A rule whose raw weights broke a limit is counted
(``clipped``, reported in the run's metrics as ``signal_clipped``) and warned about
once, naming the rule and the limit.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from mtl_bt.errors import PluginError
from mtl_bt.registry import PluginWarning
from mtl_bt.signals.clip import (
    SMALL,
    clip_each_floats,
    clip_weights,
    scale_floats_to_gross,
    violations,
)


def sees_all_assets(rule: Any) -> bool:
    """A cross-sectional rule (``all_assets = True``) gets every asset with a usable
    prediction on every decision bar, not only the assets due for rebalancing."""
    return bool(getattr(rule, "all_assets", False))


def is_separable(rule: Any, promise: str = "separable") -> bool:
    """``rule.separable`` as its class declared it, only while ``weights`` is the one that
    class defined: a subclass that overrides ``weights`` (e.g. a spy or a variant of a
    built-in) is called bar by bar unless it declares ``separable = True`` itself. An
    instance may only withdraw the promise (``self.separable = False``: e.g. a rule whose
    options make it read the current weights), never make it. ``promise``: the attribute
    read (``"separable_when_flat"``: the same rules for that promise)."""
    if getattr(rule, "__dict__", {}).get(promise, True) is False:
        return False
    for klass in type(rule).__mro__:
        if "weights" in klass.__dict__ and promise not in klass.__dict__:
            return False  # weights overridden below the declaration
        if promise in klass.__dict__:
            return bool(klass.__dict__[promise])
    return False


def is_separable_when_flat(rule: Any) -> bool:
    """``SignalRule.separable_when_flat`` held as ``is_separable`` holds ``separable``; a
    separable rule is separable on a flat batch too."""
    return is_separable(rule) or is_separable(rule, "separable_when_flat")


class SignalWarning(PluginWarning):
    """A signal rule's weights broke a portfolio limit and were clipped."""


def rule_name(rule: Any) -> str:
    """The name ``rule``'s class is registered under, else its ``name`` or class name."""
    from mtl_bt import registry

    try:
        for entry in registry.registry().entries():
            if entry.kind == "signal" and entry.factory is type(rule):
                return entry.name
    except PluginError:  # pragma: no cover - a registry that cannot load
        pass
    return str(getattr(rule, "name", None) or type(rule).__name__)


class RuleCaller:
    """Calls ``rule.weights`` with the full context and clips the result."""

    def __init__(self, rule: Any, name: str | None = None) -> None:
        self.rule = rule
        self.name = name or rule_name(rule)
        self.calls = 0
        #: decisions whose raw weights broke a limit, per limit
        self.clipped: dict[str, int] = {}
        #: decisions whose raw weights broke at least one limit
        self.clipped_decisions = 0
        self._warned = False

    def __call__(
        self,
        predictions: dict[str, np.ndarray],
        *,
        symbols: Sequence[str],
        max_weight: float,
        max_gross_leverage: float,
        allow_short: bool,
        **context: Any,
    ) -> np.ndarray:
        n = len(symbols)
        raw = self.rule.weights(
            predictions,
            symbols=list(symbols),
            max_weight=max_weight,
            max_gross_leverage=max_gross_leverage,
            allow_short=allow_short,
            **context,
        )
        try:
            weights = np.asarray(raw, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise PluginError(
                f"signal {self.name!r} returned {type(raw).__name__}; expected one number per "
                f"asset of the batch ({n})"
            ) from None
        if weights.shape != (n,):
            raise PluginError(
                f"signal {self.name!r} returned {weights.shape[0]} weights for a batch of {n} "
                f"assets ({list(symbols)}); return one weight per asset, in batch order"
            )
        self.calls += 1
        broken = violations(weights, max_weight, max_gross_leverage, allow_short)
        if not broken:
            return weights
        self.clipped_decisions += 1
        for limit in broken:
            self.clipped[limit] = self.clipped.get(limit, 0) + 1
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"signal {self.name!r} returned weights {np.round(weights, 4).tolist()} for "
                f"{list(symbols)}, breaking {', '.join(broken)}; they were clipped (counted as "
                "signal_clipped in the run's metrics). Fix the rule to stay within the limits",
                SignalWarning,
                stacklevel=2,
            )
        return clip_weights(weights, max_weight, max_gross_leverage, allow_short)

    def precomputed(
        self, raw: np.ndarray, *, max_weight: float, max_gross_leverage: float, allow_short: bool
    ) -> np.ndarray:
        """One bar's weights of a ``separable`` rule from raw weights computed before the run:
        ``clip_weights`` is the rule's own last step, so this equals calling the rule (its
        output then breaks no limit and is never clipped again). A few weights are clipped
        in Python floats (a list, the same values)."""
        self.calls += 1
        if type(raw) is np.ndarray and raw.ndim == 1 and raw.shape[0] <= SMALL:
            each = clip_each_floats(raw.tolist(), max_weight, allow_short)
            return scale_floats_to_gross(each, max_gross_leverage)
        return clip_weights(raw, max_weight, max_gross_leverage, allow_short)

    def precomputed_clipped(self, each: list[float], *, max_gross_leverage: float) -> list[float]:
        """``precomputed`` for raw weights already through ``clip_each`` (elementwise, so
        done for every bar before the run): only the cross-sectional gross cap is left."""
        self.calls += 1
        return scale_floats_to_gross(each, max_gross_leverage)
