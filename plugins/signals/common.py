"""Helpers shared by the built-in signal rules: portfolio caps (head lookup: mtl_bt.signals).

``cap_weights`` is ``mtl_bt.signals.clip.clip_weights``: one clipping function for every
rule (the strategy applies it again to whatever any rule returns).
"""

from __future__ import annotations

from mtl_bt.signals.clip import clip_weights as cap_weights

__all__ = ["cap_weights"]
