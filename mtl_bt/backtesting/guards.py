"""Refusals of a model used where it does not belong (each a one-line ``UserError``).

Each of these ran silently before: a model entirely outside its test windows gave 0
orders; an hourly model on daily bars (or the reverse) traded normally on features of the
wrong scale; a feed shorter than the features' warm-up gave 0 orders. ``check_feeds``
runs on the bars a strategy will trade: before the run on preloaded feeds, after a
streaming run that is not live (its bars are only known then); live feeds are left to
the paper trader's own checks (a live run is stopped long before it has all its bars).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.errors import DataError, UserError

_DAY = 86400.0
_MONTH = 28 * _DAY


def bar_label(seconds: float) -> str:
    """'1h', '4h', '1d', '1w', '15m', '30s' (``format_timeframe``); months as '1mo'."""
    from mtl_bt.data.timeframe import format_timeframe

    if seconds >= _MONTH:
        return f"{round(seconds / (30 * _DAY))}mo"
    if seconds >= 1 and float(seconds).is_integer():
        return format_timeframe(pd.Timedelta(seconds=seconds))
    return f"{seconds:g}s"


def same_bar_size(a: float, b: float) -> bool:
    """Equal bar sizes; monthly bars (28-31 days apart) count as one size."""
    if a >= _MONTH and b >= _MONTH:
        return round(a / (30 * _DAY)) == round(b / (30 * _DAY))
    return abs(a - b) <= 1e-6 * max(a, b)


def needed_bars(predictor: Any) -> int | None:
    """Bars a feed needs for one decision: the features' warm-up, one row, and the rest of a
    sequence model's lookback; None when the model does not say."""
    spec = getattr(predictor, "feature_spec", None)
    warmup = getattr(spec, "warmup", None)
    if warmup is None:
        return None
    lookback = max(1, int(getattr(predictor, "lookback", 1) or 1))
    return int(warmup()) + 1 + (lookback - 1)


#: how to trade a model on bars of another size anyway, said by the bar-size refusal
STRATEGY_ESCAPE = "MTLStrategy(any_bar_size=True) trades it anyway"


def check_bar_size(
    symbol: str,
    feed_seconds: float | None,
    model_seconds: float | None,
    escape: str = STRATEGY_ESCAPE,
) -> None:
    """A feed whose bars differ from the model's training bars is refused, naming both."""
    if feed_seconds is None or model_seconds is None:
        return
    if same_bar_size(feed_seconds, model_seconds):
        return
    raise DataError(
        f"feed {symbol!r} has {bar_label(feed_seconds)} bars but the model was trained on "
        f"{bar_label(model_seconds)} bars: its features and horizons are counted in bars. "
        f"Feed {bar_label(model_seconds)} bars (cerebro.resampledata) or train on "
        f"{bar_label(feed_seconds)}; {escape}"
    )


def check_enough_bars(symbol: str, bars: int, needed: int | None, streaming: bool) -> None:
    """A feed too short for one decision is refused (it would trade nothing, silently)."""
    if needed is None or bars >= needed:
        return
    how = " (preload=False: counted after the run)" if streaming else ""
    raise DataError(
        f"feed {symbol!r}: {bars} bars{how}, but the model needs {needed} (its features' "
        f"warm-up of {needed - 1} bars + 1) to decide once; give the feed more history"
    )


def check_in_windows(
    spans: Sequence[tuple[str, pd.Timestamp, pd.Timestamp]],
    in_window: Sequence[bool],
    predictors: Sequence[Any],
) -> None:
    """No bar of any feed inside any model's test window: refused with both date ranges."""
    if not spans or any(in_window):
        return
    from mtl_bt.backtesting.folds import utc_ts

    single = len(predictors) == 1
    starts, ends = [], []
    for p in predictors:
        fold = dict(getattr(p, "fold", None) or {})
        start = utc_ts(fold.get("test_start")) or utc_ts(fold.get("train_end"))
        if start is not None:
            starts.append(start)
        end = None if single else utc_ts(fold.get("test_end"))
        if end is not None:
            ends.append(end)
    if not starts:
        return
    first = min(s for _, s, _ in spans)
    last = max(e for _, _, e in spans)
    window = f"{min(starts):%Y-%m-%d %H:%M}" + (
        f" .. {max(ends):%Y-%m-%d %H:%M}" if ends else " on (after train_end)"
    )
    raise DataError(
        f"no bar of the feeds ({first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M}) is inside a "
        f"test window of the models ({window}): nothing would be traded. Give bars of the "
        "test windows, or the models of a run that covers these dates"
    )


def check_feed_bar_size(
    data: Any, symbol: str, nums: np.ndarray, model_seconds: float | None, escape: str
) -> Any:
    """``check_bar_size`` for one feed: its stated bar size, else its bars' spacing (date
    numbers ``nums``, at least 2 bars); returns the bars' UTC index."""
    from mtl_bt.backtesting.bars import datenum_index
    from mtl_bt.backtesting.calendar import feed_bar_seconds

    index = datenum_index(nums)
    check_bar_size(symbol, feed_bar_seconds(data, index, symbol), model_seconds, escape)
    return index


def check_feed_bars(
    datas: Sequence[Any],
    symbols: Sequence[str],
    predictors: Sequence[Any],
    schedule: Any,
    *,
    any_bar_size: bool = False,
    bars: Sequence[int] | None = None,
    escape: str = STRATEGY_ESCAPE,
) -> None:
    """Every refusal above for feeds a model decides, from the bars in their lines: what
    ``MTLStrategy`` and a standalone ``MTLPredictions`` both run (one set of rules).

    ``bars``: the bars each feed delivered, for a check after a streaming run (None: the
    feeds are preloaded, their lines hold every bar). Live feeds are not checked, nor a
    bounded buffer (``exactbars``) whose bars are gone. ``escape``: how the bar-size
    refusal says to trade anyway (the caller's own ``any_bar_size=True``).
    """
    from mtl_bt.backtesting.folds import model_bar_seconds

    if any(getattr(d, "islive", lambda: False)() for d in datas):
        return
    model_seconds = None if any_bar_size else model_bar_seconds(predictors[0])
    needed = needed_bars(predictors[0])
    spans, in_window = [], []
    for a, data in enumerate(datas):
        symbol = symbols[a]
        nums = np.asarray(data.datetime.array, dtype=np.float64)
        count = len(nums) if bars is None else int(bars[a])
        if bars is not None and len(nums) != count:
            return  # a bounded buffer: the bars are gone
        check_enough_bars(symbol, count, needed, streaming=bars is not None)
        if count < 2:
            continue
        index = check_feed_bar_size(data, symbol, nums, model_seconds, escape)
        spans.append((symbol, index[0], index[-1]))
        in_window.append(bool((schedule.rows(nums) >= 0).any()))
    check_in_windows(spans, in_window, predictors)


def check_feeds(strategy: Any, after_run: bool = False) -> None:
    """``check_feed_bars`` for an MTLStrategy's feeds.

    Called before the run on preloaded feeds and after it on streaming ones
    (``after_run``): a bounded buffer (``exactbars``) or a live feed is not checked.
    """
    check_feed_bars(
        strategy.datas,
        strategy.symbols,
        strategy.predictors,
        strategy.schedule,
        any_bar_size=bool(strategy.p.any_bar_size),
        bars=strategy._bars if after_run else None,
    )


def check_optimized_model(strategy: Any, given: Any) -> None:
    """``cerebro.optstrategy(MTLStrategy, predictor=[fold_000.pt, fold_001.pt, ...])``
    makes one run per fold model, each trading as a single model: refused, saying how to
    pass the fold list as ONE value. Only inside an optimization, and only for one fold of a
    run with several (a single model of its own run is a legitimate value to try)."""
    from pathlib import Path

    from mtl_bt.backtesting.models import Models

    if not getattr(strategy.env, "_dooptimize", False) or isinstance(given, Models):
        return
    if isinstance(given, list | tuple) or len(strategy.predictors) != 1:
        return
    path = given if isinstance(given, str | Path) else None
    if path is None:
        path = getattr(getattr(given, "checkpoint", None), "path", None)
    if path is None or not Path(path).is_file():
        return
    folder = Path(path).parent
    folds = sorted(folder.glob("fold_*.pt"))
    if len(folds) < 2:
        return
    run = folder.parent if folder.name == "checkpoints" else folder
    raise UserError(
        f"optstrategy gave MTLStrategy one fold model ({Path(path).name}) of a run with "
        f"{len(folds)} folds: Backtrader tries every item of a list parameter in a run of its "
        f"own. Pass the run directory ({run}) or mtl_bt.backtesting.Models([...]) as one "
        "value (predictor=[Models(a), Models(b)] tries two model sets)"
    )


def warn_unused_settings(strategy: Any, own_sizes: bool) -> None:
    """A sizer (``cerebro.addsizer``) MTLStrategy's default orders do not use is said, not
    ignored: orders are sized from the target weights (``order_targets``), and Backtrader
    consults a sizer only for ``buy()``/``sell()`` without a size, so it is never called.
    (``cheat_on_open=True`` is honoured instead: ``mtl_bt.backtesting.fills.defer_to_open``.)

    One warning per run (``UserWarning``). ``own_sizes``: the strategy's orders are
    sized by the weights (the default ``order_targets``); a subclass that overrides it (and
    may use the sizer) is not warned about the sizer.
    """
    import warnings

    import backtrader as bt

    cls = type(strategy)
    sizer = strategy.getsizer()
    default = type(sizer) is bt.sizers.FixedSize and sizer.p.stake == 1 and sizer.p.tranches == 1
    if not default and own_sizes:
        warnings.warn(
            f"cerebro.addsizer({type(sizer).__name__}) is not used by {cls.__name__}: it sizes "
            "its orders from the target weights (order_targets). To size with the sizer, "
            "override order_targets and call self.buy(data=feed) without a size",
            UserWarning,
            stacklevel=2,
        )
