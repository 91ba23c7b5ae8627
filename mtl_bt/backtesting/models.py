"""The ``predictor=`` value of MTLStrategy as ONE parameter value: ``Models``.

Why: ``cerebro.optstrategy`` treats every iterable parameter as a list of values to try,
one run each, so ``predictor=[fold paths]`` ran every fold model alone (10 runs instead
of 2, each trading one fold's window as a single model). A run directory (a ``str`` or
``Path``) is one value already; ``Models(...)`` wraps anything else (a list of checkpoints
or ``Predictor`` objects) in a value that is not iterable.

It is also cheap to pickle, for ``optstrategy`` with ``maxcpus > 1`` (Backtrader pickles
the parameters to its worker processes): it sends the checkpoint paths, never the loaded
models, and each process loads a set of checkpoints once (a process-wide cache keyed by
path, size and modification time), not once per run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtl_bt.errors import UserError

#: (path, size, mtime_ns) of each checkpoint file -> loaded predictors, per process
_CACHE: dict[tuple[tuple[str, int, int], ...], list[Any]] = {}


def _is_path(item: Any) -> bool:
    return isinstance(item, str | os.PathLike)


class Models:
    """A checkpoint, a train/run output directory, a ``Predictor``, or a list of those
    (walk-forward fold models), as one parameter value (see module docstring)."""

    __slots__ = ("_items", "_loaded")

    def __init__(self, models: Any) -> None:
        if isinstance(models, Models):
            models = models._items
        items = list(models) if isinstance(models, list | tuple) else [models]
        if not items:
            raise UserError("Models() got an empty list: give a checkpoint or a run directory")
        self._items: list[Any] = items
        self._loaded: list[Any] | None = None

    def load(self) -> list[Any]:
        """The predictors, in fold order (loaded once; checked as ``mtl-bt backtest`` does)."""
        if self._loaded is None:
            if all(_is_path(i) for i in self._items):
                self._loaded = _load_paths(self._items)
            else:
                from mtl_bt.backtesting.inputs import load_predictors

                self._loaded = load_predictors(self._items)
        return self._loaded

    def paths(self) -> list[Path] | None:
        """The checkpoint files behind every model, or None when a model has none."""
        out = []
        for item in self._items:
            if _is_path(item):
                out.append(Path(item))
                continue
            path = getattr(getattr(item, "checkpoint", None), "path", None)
            if path is None:
                return None
            out.append(Path(path))
        return out

    def __getstate__(self) -> dict[str, Any]:
        paths = self.paths()  # the paths travel, not the models (when they have paths)
        return {"items": [str(p) for p in paths] if paths is not None else self._items}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._items = state["items"]
        self._loaded = None

    def __repr__(self) -> str:
        return f"Models({self._items!r})"


def _load_paths(items: Sequence[str | os.PathLike[str]]) -> list[Any]:
    from mtl_bt.backtesting.inputs import find_checkpoints, load_predictors

    files = [p for item in items for p in find_checkpoints(item)]
    key = tuple((str(p.resolve()), (st := p.stat()).st_size, st.st_mtime_ns) for p in files)
    if key not in _CACHE:  # the files found above (a directory's run checks ran once)
        _CACHE[key] = load_predictors(files)
    return _CACHE[key]


def resolve_models(value: Any) -> list[Any]:
    """MTLStrategy's ``predictor=``: a ``Models``, a run dir / checkpoint path, a
    ``Predictor``, or a list of those -> the list of predictors."""
    if isinstance(value, Models):
        return value.load()
    if _is_path(value):
        return Models(value).load()
    if isinstance(value, list | tuple):
        if not value:
            raise UserError("MTLStrategy got an empty predictor list")
        if all(_is_path(v) for v in value):
            return Models(value).load()
        return [Models(v).load()[0] if _is_path(v) else v for v in value]
    return [value]
