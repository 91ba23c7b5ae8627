"""``MTLPredictions``: a multi-task model's predictions as Backtrader lines.

::

    preds = MTLPredictions(self.data, model="runs/demo_crypto")  # in a strategy's __init__
    if preds.return_24[0] > 0 and preds.direction_24[0] > 0.55: ...

One line per task head, named by the task with ``@`` (and any other character a Python name
cannot hold) replaced by ``_`` (``return@24`` -> ``return_24``), plus ``fold``: the fold
number of the model that decided the bar, NaN where no model may (outside every test
window, before a model's train_end, during the features' warm-up).

The lines come from the model, so each set of task names gets its own subclass (Backtrader
declares lines per class): ``MTLPredictions(data, model=...)`` loads the model, then builds
the instance from ``lines_class(names)``, a cached subclass that pickles by its names.

Backtrader picks how the lines are filled: ``once`` on preloaded feeds (all bars at once,
vectorised), ``next`` on streaming ones (``preload=False``, replay, live feeds,
``runonce=False``); both give the same values, bit for bit (tests). See ``engine.py``.
"""

from __future__ import annotations

import array
import copyreg
import itertools
import keyword
import math
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

import backtrader as bt
import numpy as np

from mtl_bt.errors import UserError
from mtl_bt.indicators.engine import PredictionEngine

__all__ = [
    "FollowingLine",
    "MTLPredictions",
    "follow_feeds",
    "line_name",
    "lines_class",
    "stop_following",
]

#: Backtrader's mode of a line that keeps every bar (``LineBuffer.UnBounded``)
_UNBOUNDED = bt.linebuffer.LineBuffer.UnBounded

#: names a line cannot take (they are attributes every indicator has)
_TAKEN = frozenset(dir(bt.Indicator)) | {"fold", "engine", "asset", "model"}


def line_name(task: str) -> str:
    """The line name of a task: every character a Python name cannot hold becomes ``_``."""
    name = re.sub(r"\W", "_", str(task), flags=re.ASCII)
    if not name or name[0].isdigit() or keyword.iskeyword(name):
        name = f"t_{name}"
    return name


def task_lines(tasks: Sequence[str]) -> tuple[str, ...]:
    """Line names of a model's tasks; two tasks on one name, or a reserved name, refused."""
    names = tuple(line_name(t) for t in tasks)
    for task, name in zip(tasks, names, strict=True):
        if name in _TAKEN:
            raise UserError(
                f"task {task!r} would be the line {name!r}, a name every Backtrader indicator "
                "already uses; rename the task"
            )
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        clash = [t for t, n in zip(tasks, names, strict=True) if n == dup]
        raise UserError(f"tasks {clash} would share the line {dup!r}; rename one of them")
    return names


def _family(name: str) -> str:
    """A line's head family (plotted together): the task name before its horizon."""
    return name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name


class _Meta(type(bt.Indicator)):
    """``MTLPredictions(data, model=...)`` builds the subclass whose lines are the model's."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls._task_lines is None:
            engine = kwargs.get("engine")
            if engine is None:
                engine = PredictionEngine(
                    kwargs.get("model"), any_bar_size=bool(kwargs.get("any_bar_size", False))
                )
                kwargs["engine"] = engine
            return lines_class(task_lines(engine.task_names))(*args, **kwargs)
        return super().__call__(*args, **kwargs)


def _reduce_class(cls: type) -> Any:
    """Pickle a generated class by its line names (the public class by its name)."""
    if cls._task_lines is None:
        return cls.__qualname__
    return lines_class, (cls._task_lines,)


copyreg.pickle(_Meta, _reduce_class)


class MTLPredictions(bt.Indicator, metaclass=_Meta):
    """A model's predictions as lines (see the module docstring).

    ``model``: a checkpoint, a list of fold checkpoints, a train/run output directory, or a
    ``Predictor`` (or a list of them). ``engine``: share one ``PredictionEngine`` between
    feeds (what ``MTLStrategy`` does: one forward pass per bar for all of them); not needed
    otherwise. A model with an asset embedding reads the symbol from the feed's name
    (``cerebro.adddata(feed, name="BTC/USDT")``) and refuses an unnamed feed.

    Feeds the model does not belong on are refused before the run (one-line ``DataError``,
    the same rules as ``MTLStrategy``): no bar inside any test window of the models, bars
    of another size than the model's training bars (``any_bar_size=True``: lines anyway),
    fewer bars than the features' warm-up + 1.
    """

    params = (("model", None), ("engine", None), ("any_bar_size", False))
    plotinfo = dict(subplot=True, plotname="MTLPredictions")
    _task_lines: tuple[str, ...] | None = None

    def __init__(self) -> None:
        data = self.data
        if not isinstance(data, bt.AbstractDataBase):
            raise UserError(
                f"MTLPredictions needs a data feed (OHLCV bars), not {type(data).__name__}: "
                "MTLPredictions(self.datas[i], model=...)"
            )
        self.engine: PredictionEngine = self.p.engine
        self.asset = self.engine.add(self, data)
        if self.engine.force_streaming:
            self._nextforce = True  # the per-bar path even on preloaded feeds (parity runs)
        self._plot_views: list[Any] | None = None

    @property
    def symbol(self) -> str:
        return self.engine.symbols[self.asset]

    def nextstart(self) -> None:
        self.next()

    def next(self) -> None:
        got = self.engine.take(self.asset)
        if got is None:
            return
        values, fold = got
        lines = self.lines
        for j, v in enumerate(values.tolist()):
            lines[j][0] = v
        lines[len(values)][0] = fold

    # -- Backtrader's line bookkeeping, each line's index moved in place ------------------
    # On the runonce path Backtrader calls ``advance`` on every indicator of a strategy on
    # every bar, and ``forward`` once with the run's length; its own versions go through
    # Lines -> LineBuffer -> the ``idx`` property line by line (``forward`` appends one
    # value at a time). These do the same to each unbounded line (the mode of every line
    # unless ``exactbars`` makes them queues, which keep Backtrader's own code).
    def advance(self, size: int = 1) -> None:
        lines = self.lines.lines
        if lines[0].lencount >= len(self._clock):  # Indicator.advance: len(self) < clock
            return
        for line in lines:
            if line.mode == _UNBOUNDED:
                line._idx += size
                line.lencount += size
            else:
                line.advance(size)

    def forward(self, value: float = math.nan, size: int = 1) -> None:
        for line in self.lines.lines:
            if line.mode == _UNBOUNDED:
                line._idx += size
                line.lencount += size
                line.array.extend(itertools.repeat(value, size))
            else:
                line.forward(value, size=size)

    def preonce(self, start: int, end: int) -> None:
        pass

    def oncestart(self, start: int, end: int) -> None:
        pass

    def once(self, start: int, end: int) -> None:
        engine = self.engine
        engine.fill()
        a = self.asset
        values, folds = engine.values[a], engine.folds[a]
        n = min(len(folds), self.buflen())
        columns = [values[:n, j] for j in range(values.shape[1])] + [folds[:n]]
        for line, col in zip(self.lines, columns, strict=True):
            line.array[:n] = array.array("d", np.ascontiguousarray(col, dtype=np.float64).tobytes())

    # -- plotting: one subplot per head family -------------------------------------------
    def _plotinit(self) -> None:
        """Called by ``cerebro.plot()`` before it lays out the strategy's indicators: this
        indicator shows the first head family; each other family becomes a view (its lines
        are this indicator's) added after it to the strategy's list, so it gets its own
        subplot below the same feed."""
        if self._plot_views is not None:
            return
        self._plot_views = []
        owner = self._owner
        if not isinstance(owner, bt.Strategy):
            return
        names = list(self._task_lines or ())
        families: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            families.setdefault(_family(name), []).append(i)
        for fam, idx in list(families.items())[1:]:
            view = _view_class(tuple(names[i] for i in idx))(self.data)
            view.lines.lines = [self.lines[i] for i in idx]
            view.plotinfo.plotname = f"{fam} ({self.symbol})"
            owner._lineiterators[bt.LineIterator.IndType].append(view)
            self._plot_views.append(view)
        first = next(iter(families), "")
        self.plotinfo.plotname = f"{first} ({self.symbol})"


def _moved(self: Any, value: Any) -> None:
    raise RuntimeError(
        "an MTLPredictions line that follows its feed was moved during the run; its length "
        "and index are its feed's (MTLStrategy.follow_own_lines)"
    )


class FollowingLine(bt.linebuffer.LineBuffer):
    """A line of an ``MTLPredictions`` whose length and index are read off its feed instead
    of being moved bar by bar: on the runonce path ``Indicator.advance`` gives an indicator
    clocked by its feed exactly the feed's length on every bar (one bar on whenever the feed
    moved), so the line needs no per-bar work at all. Set on a line's instance for a run
    (``follow_feeds``), taken off after it (``stop_following``)."""

    # the feed's own buffer (a data descriptor shadows the instance's stored values)
    lencount = property(lambda self: self._feed_line.lencount, _moved)
    _idx = property(lambda self: self._feed_line.lencount - 1, _moved)


def follow_feeds(indicators: Sequence[MTLPredictions]) -> list[Any] | None:
    """Make every line of ``indicators`` follow its feed (``FollowingLine``) and return the
    lines; None (nothing changed) when one cannot: a line that is not unbounded (``exactbars``
    queues keep Backtrader's own ``advance``), is not at its start, or an indicator that is
    not clocked by its feed."""
    lines: list[tuple[Any, Any]] = []
    for ind in indicators:
        feed_line = ind._clock.lines.lines[0] if ind._clock is ind.data else None
        for line in ind.lines.lines:
            if feed_line is None or type(line) is not bt.linebuffer.LineBuffer:
                return None
            if line.mode != _UNBOUNDED or line.lencount != 0 or line._idx != -1:
                return None
            lines.append((line, feed_line))
    for line, feed_line in lines:
        line._feed_line = feed_line
        line.__class__ = FollowingLine
    return [line for line, _ in lines]


def stop_following(lines: Sequence[Any]) -> None:
    """``follow_feeds`` undone: each line keeps the length and index it has now."""
    for line in lines:
        count = line.lencount
        line.__class__ = bt.linebuffer.LineBuffer
        line.lencount = count
        line._idx = count - 1
        del line._feed_line


@cache
def lines_class(names: tuple[str, ...]) -> type[MTLPredictions]:
    """The ``MTLPredictions`` subclass with one line per name, plus ``fold`` (cached: one
    class per set of names; pickles by its names, so ``optstrategy`` can ship it)."""
    first = _family(names[0]) if names else None
    plotlines = {n: dict(_plotskip=True) for n in names if _family(n) != first}
    plotlines["fold"] = dict(_plotskip=True)
    return _Meta(
        "_MTLPredictions",
        (MTLPredictions,),
        {
            "lines": (*names, "fold"),
            "plotlines": plotlines,
            "_task_lines": names,
            "__module__": __name__,
        },
    )


@cache
def _view_class(names: tuple[str, ...]) -> type:
    """A plot-only indicator showing some lines of an ``MTLPredictions`` (one family)."""
    return type(bt.Indicator)(
        "_MTLPredictionsView",
        (bt.Indicator,),
        {"lines": names, "plotinfo": dict(subplot=True), "__module__": __name__},
    )
