"""mtl-bt: plugin-based multi-task learning for Backtrader."""

from mtl_bt.hookspecs import hookimpl

__version__ = "0.1.0"


def _plotting() -> None:
    from mtl_bt.plotting import headless_plotting

    headless_plotting()


_plotting()

__all__ = ["__version__", "hookimpl"]
