"""Price features (the reference ten): returns, trend ratios, volatility, oscillators.

All are causal: row t uses bars <= t only (positive lags, trailing windows,
recursive ``ewm(adjust=False)`` averages, which are prefix-invariant: a value
never changes when later bars arrive). Ratios are taken in logs so they are
symmetric and scale-free. Recursive averages are defined from row 0 but are
dominated by their seed at first, so their warm-up lasts until the seed's
weight (1 - alpha)^n drops below 5%.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pandas as pd

from mtl_bt.errors import ConfigError
from mtl_bt.features import ops
from mtl_bt.features.base import feature, positive, window
from mtl_bt.features.base import windows as window_list
from mtl_bt.features.streaming import (
    BarBuffer,
    BatchBars,
    Ewm,
    EwmBatch,
    Windows,
    batch_log_close,
    log,
    log_close,
    window_std,
    window_stds,
    window_sum,
    window_sums,
)
from mtl_bt.features.streaming import safe_div as scalar_div

NAN = float("nan")

#: the warm-up of a recursive average ends when its seed weighs less than this
SEED_WEIGHT = 0.05


def ema_warmup(alpha: float) -> int:
    """Bars until an ``ewm(alpha, adjust=False)`` seed weighs < 5%."""
    if alpha >= 1.0:
        return 0
    return math.ceil(math.log(SEED_WEIGHT) / math.log(1.0 - alpha))


def span_alpha(span: int) -> float:
    return 2.0 / (span + 1.0)


def _win(name: str, value: object, minimum: int = 1) -> int:
    """Validate the integer ``window`` parameter of feature ``name``."""
    return window(name, "window", value, minimum)


def _out(frame: pd.DataFrame, **columns: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(columns, index=frame.index)


# -- log returns -----------------------------------------------------------------


def _ret_windows(value: list[int] | tuple[int, ...]) -> list[int]:
    return window_list("log_return", "windows", value)


def _log_return_core(windows: list[int]):
    def core(close: np.ndarray) -> list[np.ndarray]:
        lc = np.log(close)
        return [lc - ops.lag(lc, w) for w in windows]

    return core


class _LagStream:
    """log(close[t] / close[t-w]) for each lag w bar by bar: the last max(w) + 1 log closes
    (``lc - ops.lag(lc, w)``: one subtraction, NaN until w bars came before)."""

    window = 0  # reads the newest bar only

    def __init__(self, lags: list[int]) -> None:
        self.lags = [-1 - w for w in lags]
        self.lc: deque[float] = deque(maxlen=max(lags) + 1)

    def update(self, bars: BarBuffer) -> list[float]:
        lc = self.lc
        x = log_close(bars)
        lc.append(x)
        n = len(lc)
        return [x - lc[k] if n >= -k else NAN for k in self.lags]


def _log_return_stream(windows: list[int] | tuple[int, ...] = (1, 5, 10)) -> _LagStream:
    return _LagStream(_ret_windows(windows))


class _LagBatch:
    """_LagStream for many assets: the last max(w) + 1 log closes of each."""

    def __init__(self, n: int, lags: list[int]) -> None:
        self.lags = lags
        self.lc = Windows(n, max(lags) + 1)

    def update(self, bars: BatchBars) -> list[np.ndarray]:
        x = self.lc.push(bars, batch_log_close(bars))
        return [x[-1] - x[-1 - w] for w in self.lags]


def _log_return_batch(n: int, windows: list[int] | tuple[int, ...] = (1, 5, 10)) -> _LagBatch:
    return _LagBatch(n, _ret_windows(windows))


@feature(
    warmup=lambda windows=(1, 5, 10): max(_ret_windows(windows)),
    columns=lambda windows=(1, 5, 10): [f"log_return_{w}" for w in _ret_windows(windows)],
    stream=_log_return_stream,
    batch=_log_return_batch,
)
def log_return(
    frame: pd.DataFrame, windows: list[int] | tuple[int, ...] = (1, 5, 10)
) -> pd.DataFrame:
    """log(close[t] / close[t-w]) for each window w."""
    ws = _ret_windows(windows)
    out = _log_return_core(ws)(ops.column(frame, "close"))
    return _out(frame, **{f"log_return_{w}": x for w, x in zip(ws, out, strict=True)})


# -- trend ratios ----------------------------------------------------------------


def _sma_core(window: int):
    return lambda close: [np.log(close / ops.rolling_mean(close, window))]


class _SmaStream:
    """close_sma bar by bar: the window's closes added oldest first (``ops.rolling_mean``)."""

    window = 0

    def __init__(self, window: int = 20) -> None:
        self.w = _win("close_sma", window)
        self.close: deque[float] = deque(maxlen=self.w)

    def update(self, bars: BarBuffer) -> tuple[float]:
        c = bars.bar[4]
        self.close.append(c)
        if len(self.close) < self.w:
            return (NAN,)
        return (log(c / (window_sum(self.close) / self.w)),)


class _SmaBatch:
    def __init__(self, n: int, window: int = 20) -> None:
        self.close = Windows(n, _win("close_sma", window))

    def update(self, bars: BatchBars) -> list[np.ndarray]:
        x = self.close.push(bars, bars.close)
        return [np.log(bars.close / (window_sums(x) / self.close.w))]


@feature(warmup=lambda window=20: _win("close_sma", window) - 1, stream=_SmaStream, batch=_SmaBatch)
def close_sma(frame: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """log(close / SMA(close, window))."""
    (out,) = _sma_core(_win("close_sma", window))(ops.column(frame, "close"))
    return _out(frame, close_sma=out)


def _ema_warmup(span: int = 20) -> int:
    return ema_warmup(span_alpha(window("close_ema", "span", span)))


class _CloseEmaStream:
    """close_ema bar by bar: the recursive EMA carried forward (pandas' arithmetic)."""

    window = 0

    def __init__(self, span: int = 20) -> None:
        self.ema = Ewm(span_alpha(window("close_ema", "span", span)))
        self.warm = _ema_warmup(span)

    def update(self, bars: BarBuffer) -> tuple[float]:
        c = bars.bar[4]
        ema = self.ema.update(c)
        if bars.count <= self.warm:
            return (NAN,)
        return (log(c / ema),)


class _CloseEmaBatch:
    def __init__(self, n: int, span: int = 20) -> None:
        self.ema = EwmBatch(n, span_alpha(window("close_ema", "span", span)))
        self.warm = _ema_warmup(span)

    def update(self, bars: BatchBars) -> list[np.ndarray]:
        out = np.log(bars.close / self.ema.update(bars, bars.close))
        out[bars.count <= self.warm] = np.nan
        return [out]


@feature(warmup=_ema_warmup, stream=_CloseEmaStream, batch=_CloseEmaBatch)
def close_ema(frame: pd.DataFrame, span: int = 20) -> pd.DataFrame:
    """log(close / EMA(close, span)), recursive EMA with alpha = 2/(span+1)."""
    close = ops.column(frame, "close")
    ema = ops.ewm_mean(close, span_alpha(window("close_ema", "span", span)))
    return _out(frame, close_ema=ops.mask_head(np.log(close / ema), _ema_warmup(span)))


# -- volatility and momentum -------------------------------------------------------


def _vol_core(window: int):
    return lambda close: [ops.rolling_std(ops.diff(np.log(close)), window, ddof=1)]


def _momentum_core(window: int):
    def core(close: np.ndarray) -> list[np.ndarray]:
        lc = np.log(close)
        return [lc - ops.lag(lc, window)]

    return core


class _VolStream:
    """volatility bar by bar: the last ``window`` 1-bar log returns, two-pass std
    (``ops.rolling_std`` on one window)."""

    window = 0

    def __init__(self, window: int = 20) -> None:
        self.w = _win("volatility", window, 2)
        self.ret: deque[float] = deque(maxlen=self.w)
        self.prev = NAN

    def update(self, bars: BarBuffer) -> tuple[float]:
        x = log_close(bars)
        if bars.count > 1:
            self.ret.append(x - self.prev)
        self.prev = x
        if len(self.ret) < self.w:
            return (NAN,)
        return (window_std(self.ret, 1),)


class _VolBatch:
    def __init__(self, n: int, window: int = 20) -> None:
        self.ret = Windows(n, _win("volatility", window, 2))
        self.prev = np.full(n, np.nan)

    def update(self, bars: BatchBars) -> list[np.ndarray]:
        lc = batch_log_close(bars)
        x = self.ret.push(bars, lc - self.prev[bars.sel()])
        self.prev[bars.sel()] = lc
        return [window_stds(x, window_sums(x) / self.ret.w, 1)]


@feature(warmup=lambda window=20: _win("volatility", window, 2), stream=_VolStream, batch=_VolBatch)
def volatility(frame: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """Rolling std (ddof=1) of 1-bar log returns: per-bar volatility, not annualised."""
    (out,) = _vol_core(_win("volatility", window, 2))(ops.column(frame, "close"))
    return _out(frame, volatility=out)


@feature(
    warmup=lambda window=20: _win("momentum", window),
    stream=lambda window=20: _LagStream([_win("momentum", window)]),
    batch=lambda n, window=20: _LagBatch(n, [_win("momentum", window)]),
)
def momentum(frame: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """log(close[t] / close[t-window]): the longer-horizon trend."""
    (out,) = _momentum_core(_win("momentum", window))(ops.column(frame, "close"))
    return _out(frame, momentum=out)


# -- oscillators -------------------------------------------------------------------


def _rsi_warmup(window: int = 14) -> int:
    return 1 + ema_warmup(1.0 / _win("rsi", window))


class _RsiStream:
    """rsi bar by bar: Wilder's recursive averages of gains and losses carried forward."""

    window = 0

    def __init__(self, window: int = 14) -> None:
        w = _win("rsi", window)
        self.gain, self.loss = Ewm(1.0 / w), Ewm(1.0 / w)
        self.warm = _rsi_warmup(w)
        self.prev = NAN

    def update(self, bars: BarBuffer) -> tuple[float]:
        c = bars.bar[4]
        delta = c - self.prev  # NaN at the first bar
        self.prev = c
        if delta != delta:
            gain = loss = NAN
        else:
            gain, loss = (delta if delta > 0 else 0.0), (-delta if delta < 0 else 0.0)
        g, lo = self.gain.update(gain), self.loss.update(loss)
        if bars.count <= self.warm:
            return (NAN,)
        if lo > 0:  # g / lo is finite: lo > 0 and g is finite
            return (100.0 - 100.0 / (1.0 + g / lo),)
        return (100.0 if g > 0 else 50.0,)


class _RsiBatch:
    def __init__(self, n: int, window: int = 14) -> None:
        w = _win("rsi", window)
        self.gain, self.loss = EwmBatch(n, 1.0 / w), EwmBatch(n, 1.0 / w)
        self.warm = _rsi_warmup(w)
        self.prev = np.full(n, np.nan)

    def update(self, bars: BatchBars) -> list[np.ndarray]:
        delta = bars.close - self.prev[bars.sel()]
        self.prev[bars.sel()] = bars.close
        nan = np.isnan(delta)
        gain = self.gain.update(bars, np.where(delta > 0, delta, np.where(nan, np.nan, 0.0)))
        loss = self.loss.update(bars, np.where(delta < 0, -delta, np.where(nan, np.nan, 0.0)))
        with np.errstate(divide="ignore", invalid="ignore"):
            value = 100.0 - 100.0 / (1.0 + gain / loss)
        value = np.where(loss > 0, value, np.where(gain > 0, 100.0, 50.0))
        value[bars.count <= self.warm] = np.nan
        return [value]


@feature(warmup=_rsi_warmup, stream=_RsiStream, batch=_RsiBatch)
def rsi(frame: pd.DataFrame, window: int = 14) -> pd.DataFrame:
    """Wilder's RSI in [0, 100]: recursive averages (alpha = 1/window) of gains and
    losses. No losses -> 100; no gains and no losses (flat price) -> 50."""
    w = _win("rsi", window)
    delta = ops.diff(ops.column(frame, "close"))
    gain = ops.ewm_mean(np.where(delta > 0, delta, np.where(np.isnan(delta), np.nan, 0.0)), 1.0 / w)
    loss = ops.ewm_mean(
        np.where(delta < 0, -delta, np.where(np.isnan(delta), np.nan, 0.0)), 1.0 / w
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 - 100.0 / (1.0 + gain / loss)
    value = np.where(loss > 0, value, np.where(gain > 0, 100.0, 50.0))
    return _out(frame, rsi=ops.mask_head(value, _rsi_warmup(w)))


def _macd_warmup(fast: int = 12, slow: int = 26) -> int:
    f = window("macd", "fast", fast)
    s = window("macd", "slow", slow)
    if f >= s:
        raise ConfigError(f"features.params.macd: fast = {f} must be < slow = {s}")
    return ema_warmup(span_alpha(s))


class _MacdStream:
    """macd bar by bar: both recursive EMAs carried forward."""

    window = 0

    def __init__(self, fast: int = 12, slow: int = 26) -> None:
        self.warm = _macd_warmup(fast, slow)
        self.fast, self.slow = Ewm(span_alpha(fast)), Ewm(span_alpha(slow))

    def update(self, bars: BarBuffer) -> tuple[float]:
        c = bars.bar[4]
        line = self.fast.update(c) - self.slow.update(c)
        if bars.count <= self.warm:
            return (NAN,)
        return (line / c,)


class _MacdBatch:
    def __init__(self, n: int, fast: int = 12, slow: int = 26) -> None:
        self.warm = _macd_warmup(fast, slow)
        self.fast, self.slow = EwmBatch(n, span_alpha(fast)), EwmBatch(n, span_alpha(slow))

    def update(self, bars: BatchBars) -> list[np.ndarray]:
        c = bars.close
        out = (self.fast.update(bars, c) - self.slow.update(bars, c)) / c
        out[bars.count <= self.warm] = np.nan
        return [out]


@feature(warmup=_macd_warmup, stream=_MacdStream, batch=_MacdBatch)
def macd(frame: pd.DataFrame, fast: int = 12, slow: int = 26) -> pd.DataFrame:
    """(EMA_fast - EMA_slow) / close: the MACD line relative to price."""
    warm = _macd_warmup(fast, slow)
    close = ops.column(frame, "close")
    line = ops.ewm_mean(close, span_alpha(fast)) - ops.ewm_mean(close, span_alpha(slow))
    return _out(frame, macd=ops.mask_head(line / close, warm))


def _bollinger_warmup(window: int = 20, k: float = 2.0) -> int:
    positive("bollinger", "k", k)
    return _win("bollinger", window, 2) - 1


def _bollinger_core(window: int, k: float):
    def core(close: np.ndarray) -> list[np.ndarray]:
        mid = ops.rolling_mean(close, window)
        sd = ops.rolling_std(close, window, ddof=0)
        return [ops.safe_div(close - mid, float(k) * sd, 1e-12 * close, 0.0)]

    return core


class _BollingerStream:
    """bollinger bar by bar: the window's mean and population std (``ops`` on one window)."""

    window = 0

    def __init__(self, window: int = 20, k: float = 2.0) -> None:
        _bollinger_warmup(window, k)
        self.w, self.k = window, float(k)
        self.close: deque[float] = deque(maxlen=window)

    def update(self, bars: BarBuffer) -> tuple[float]:
        c = bars.bar[4]
        self.close.append(c)
        if len(self.close) < self.w:
            return (NAN,)
        mid = window_sum(self.close) / self.w
        sd = window_std(self.close, 0)
        return (scalar_div(c - mid, self.k * sd, 1e-12 * c, 0.0),)


def _bollinger_stream(window: int = 20, k: float = 2.0) -> _BollingerStream:
    return _BollingerStream(window, k)


class _BollingerBatch:
    def __init__(self, n: int, window: int = 20, k: float = 2.0) -> None:
        _bollinger_warmup(window, k)
        self.close, self.k = Windows(n, window), float(k)

    def update(self, bars: BatchBars) -> list[np.ndarray]:
        c = bars.close
        x = self.close.push(bars, c)
        mid = window_sums(x) / self.close.w
        sd = window_stds(x, mid, 0)
        return [ops.safe_div(c - mid, self.k * sd, 1e-12 * c, 0.0)]


@feature(warmup=_bollinger_warmup, stream=_bollinger_stream, batch=_BollingerBatch)
def bollinger(frame: pd.DataFrame, window: int = 20, k: float = 2.0) -> pd.DataFrame:
    """(close - SMA) / (k * std): 0 at the middle band, +-1 at the bands.

    std is the population std (ddof=0), as in Bollinger's definition; a flat
    window (std ~ 0) gives 0.
    """
    _bollinger_warmup(window, k)
    (out,) = _bollinger_core(window, k)(ops.column(frame, "close"))
    return _out(frame, bollinger=out)
