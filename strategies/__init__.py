"""Backtrader strategies. Installed as ``mtl_bt.strategies``.

``MTLStrategy`` trades a multi-task model; ``BuyAndHold`` is the equal-weight baseline.
"""

from mtl_bt.strategies.buy_and_hold import BuyAndHold
from mtl_bt.strategies.mtl import MTLStrategy

__all__ = ["BuyAndHold", "MTLStrategy"]
