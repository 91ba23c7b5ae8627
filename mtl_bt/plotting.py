"""``cerebro.plot()`` without a display.

Backtrader's plot module forces matplotlib's TkAgg backend when it is imported,
and TkAgg fails on a machine without a display (a server, CI, a container).
``headless_plotting()`` runs at ``import mtl_bt``: when there is no display and
the user chose no backend (``MPLBACKEND``, ``matplotlib.use``, matplotlibrc),
it lets Backtrader make its choice and then selects Agg, so ``cerebro.plot()``
returns figures to save. With a display, or a backend the user set, it does nothing.
"""

from __future__ import annotations

import os
import sys


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
    """Select Agg for Backtrader's plots when headless and no backend was chosen; True if so."""
    if has_display():
        return False
    try:
        if user_backend() is not None:
            return False
        import backtrader.plot  # noqa: F401  (forces TkAgg on import; undo it below)
        import matplotlib

        matplotlib.use("Agg", force=True)
    except ImportError:
        return False
    return True
