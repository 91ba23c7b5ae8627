"""mtl-bt: plugin-based multi-task learning for Backtrader."""

from mtl_bt.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
