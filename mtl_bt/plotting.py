"""``cerebro.plot()`` without a display.

Backtrader's plot module forces matplotlib's TkAgg backend when it is imported,
and TkAgg fails on a machine without a display (a server, CI, a container).
``headless_plotting()`` runs at ``import mtl_bt``: when there is no display and
the user chose no backend (``MPLBACKEND``, ``matplotlib.use``, matplotlibrc),
it lets Backtrader make its choice and then selects Agg, so ``cerebro.plot()``
returns figures to save. With a display, or a backend the user set, it does nothing.

It does so when ``backtrader.plot`` is first imported (``cerebro.plot()`` imports it),
not at ``import mtl_bt``: importing the plot module and matplotlib up front cost every
process 0.4-1.2 s (CLI start-up, each worker of ``mtl-bt compare``) for plots most
runs never draw.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from typing import Any

_PLOT = "backtrader.plot"


def has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def user_backend() -> str | None:
    """The backend the user set, or None (matplotlib would pick one itself)."""
    if os.environ.get("MPLBACKEND"):
        return os.environ["MPLBACKEND"]
    if "matplotlib" not in sys.modules:
        try:
            import matplotlib
        except ImportError:
            return None
    import matplotlib

    getter = getattr(matplotlib.rcParams, "_get_backend_or_none", None)
    return getter() if getter is not None else None


def headless_plotting() -> bool:
    """Select Agg for Backtrader's plots when headless and no backend was chosen: now if
    ``backtrader.plot`` is loaded already, else when it is imported. True if armed."""
    if has_display():
        return False
    if _PLOT in sys.modules:  # too late to ask what the user chose before it forced TkAgg
        try:
            import matplotlib
        except ImportError:
            return False
        if not os.environ.get("MPLBACKEND"):
            matplotlib.use("Agg", force=True)
        return True
    if not any(isinstance(f, _PlotImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _PlotImportHook())
    return True


class _PlotImportHook(importlib.abc.MetaPathFinder):
    """Finds ``backtrader.plot`` as Python would and wraps its loader (``_AggAfter``)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != _PLOT:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _AggAfter(spec.loader)
        return spec


class _AggAfter(importlib.abc.Loader):
    """Runs ``backtrader.plot`` (which calls ``matplotlib.use("TkAgg")``), then selects Agg,
    or the backend the user had chosen before it ran (without a display, TkAgg cannot be
    anyone's choice)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        chosen = user_backend()
        self.loader.exec_module(module)
        if not has_display():
            import matplotlib

            matplotlib.use(chosen or "Agg", force=True)
