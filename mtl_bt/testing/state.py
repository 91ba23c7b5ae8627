"""State kept between calls: a feature's rows must depend on the frame it is given only.

The look-ahead laws compare a feature's output on different inputs (a truncated prefix,
a perturbed future). A feature that keeps state between calls - a module-level cache filled
from the first frame it sees, keyed by nothing or by the first bar - answers every later
call from that state, so those comparisons see the same rows and pass, whatever the rows
hide. The run then trains on the cached (say, leaky) values.

The law checked here: **the same input gives the same output whatever was called before.**
Each call runs in a *fresh copy* of the feature's module (the module's file executed again
under a private name: new module-level globals, caches, ``functools.cache`` wrappers and
class attributes, as in a fresh interpreter). Copy A computes a prefix and then the whole
frame, copy B the whole frame and then the prefix; A's whole frame must equal B's (B's
first call) and B's prefix A's (A's first call). A cache filled by the first call fails one
of the two, whatever it is keyed by. So does a feature that is not deterministic.

Limits: state kept outside the feature's module (another module it imports, a file on
disk) survives a fresh copy; a feature defined inside a function (a closure, a lambda) or
in ``__main__`` cannot be copied and is reported as not checked.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.testing.lookahead import Finding, first_difference

_COPIES = itertools.count()

#: the law's name in reports and messages
LAW = "state between calls"


def fresh_copy(fn: Callable[..., Any]) -> Callable[..., Any] | None:
    """``fn`` from a freshly executed copy of its module (new module-level state), or
    None when it cannot be copied (no module file, defined in a function or ``__main__``)."""
    name = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    module = sys.modules.get(name or "")
    path = getattr(module, "__file__", None)
    if module is None or not path or name == "__main__" or "<" in qualname:
        return None
    package = getattr(module, "__package__", None) or ""
    if path.endswith("__init__.py"):
        package = name or ""
    base = (name or "").rpartition(".")[2]
    private = f"{package + '.' if package else ''}_mtl_bt_fresh_{next(_COPIES)}_{base}"
    spec = importlib.util.spec_from_file_location(private, path)
    if spec is None or spec.loader is None:
        return None
    copy = importlib.util.module_from_spec(spec)
    sys.modules[private] = copy  # dataclasses and the like look their module up while executing
    try:
        spec.loader.exec_module(copy)
    except Exception:
        return None
    finally:
        sys.modules.pop(private, None)
    found: Any = copy
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found if callable(found) else None


def _values(fn: Callable[..., Any], frame: pd.DataFrame, params: dict[str, Any]) -> np.ndarray:
    out = fn(frame, **params)
    return np.asarray(out.to_numpy(dtype=np.float64) if hasattr(out, "to_numpy") else out)


def state_findings(
    fn: Callable[..., Any],
    params: dict[str, Any],
    frame: pd.DataFrame,
    cut: int,
    columns: list[str],
) -> list[Finding] | None:
    """The law on ``frame`` and its first ``cut`` bars (module docstring); [] when it holds,
    None when ``fn`` cannot be copied (not checked)."""
    a, b = fresh_copy(fn), fresh_copy(fn)
    if a is None or b is None:
        return None
    prefix = frame.iloc[:cut]
    a_prefix = _values(a, prefix, params)
    a_full = _values(a, frame, params)
    b_full = _values(b, frame, params)
    b_prefix = _values(b, prefix, params)
    for later, first, what in (
        (a_full, b_full, f"after a call on its first {cut} bars"),
        (b_prefix, a_prefix, f"on the first {cut} bars after a call on all {len(frame)}"),
    ):
        later, first = np.atleast_2d(later.T).T, np.atleast_2d(first.T).T
        if later.shape != first.shape:
            return [Finding(LAW, columns[0], 0, frame.index[0], f"{what}: other shape")]
        where = first_difference(later, first)
        if where is not None:
            row, col = where
            return [
                Finding(
                    LAW,
                    columns[col],
                    row,
                    frame.index[row],
                    f"{what} it returns {float(later[row, col])!r}, as a first call "
                    f"{float(first[row, col])!r}: it keeps state between calls (a cache?) "
                    "or is not deterministic",
                )
            ]
    return []
