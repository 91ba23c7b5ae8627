"""Signal rules: predictions to target weights."""

from mtl_bt.signals.base import SignalRule

__all__ = ["SignalRule"]
