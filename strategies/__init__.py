"""Backtrader strategies. Installed as ``mtl_bt.strategies``."""
